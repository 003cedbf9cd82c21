"""What several test modules share: loading an experiment as a module, and the environment of child processes."""
import importlib.util
import os
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def load_experiment(name):
    """``experiments/<name>.py`` as a module (``load_experiment('dropout_mlp').main(argv)``)."""
    spec = importlib.util.spec_from_file_location(f"exp_{name}", ROOT / "experiments" / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def child_env(tmp_path, devices=None, **extra):
    """A minimal, offline environment for a child Python: CPU only, unbuffered output, its own regjax cache, the
    session's JAX compilation cache (see conftest), this checkout importable, and ``devices`` virtual CPU
    devices when given."""
    env = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "JAX_PLATFORMS": "cpu", "PYTHONUNBUFFERED": "1",
           "PYTHONPATH": str(ROOT), "REGJAX_CACHE_DIR": str(tmp_path / "cache")}
    for name in ("JAX_COMPILATION_CACHE_DIR", "JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS"):
        if name in os.environ:
            env[name] = os.environ[name]
    if devices is not None:
        env["XLA_FLAGS"] = f"--xla_force_host_platform_device_count={devices}"
    return {**env, **extra}
