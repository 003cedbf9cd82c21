"""What every suite shares: the run context, interleaved timing with warm-up, result rows, the environment
record, subprocess timing and the markdown table (GUIDE §5: warm up before timing, block until the device is
done, report the median and keep every repeat, name the device)."""
from __future__ import annotations

import dataclasses
import os
import platform
import re
import statistics
import subprocess
import time
from pathlib import Path
from typing import Callable, Optional

ROOT = Path(__file__).resolve().parents[1]  # the checkout whose regjax is measured


@dataclasses.dataclass
class Context:
    quick: bool
    threads: int           # cores JAX's CPU backend uses; torch is set to the same
    tmp: Path              # scratch folder, removed after the run
    results: dict          # results of the suites already run (later suites may reuse them)
    trace_dir: Optional[Path] = None  # where the profile suite keeps its trace (None: a scratch folder)
    torch_device_: Optional[str] = None  # resolved on first use: suites without PyTorch never import it

    @property
    def torch_device(self) -> str:
        """'cuda' where PyTorch sees a GPU, else 'cpu'; importing torch (set to ``threads`` threads) only now."""
        if self.torch_device_ is None:
            torch = torch_or_none()
            if torch is not None:
                torch.set_num_threads(self.threads)
            self.torch_device_ = "cuda" if torch is not None and torch.cuda.is_available() else "cpu"
        return self.torch_device_


def suite_result(method: str, rows=(), *, status: str = "ok", **extra) -> dict:
    return {"status": status, "method": method, "rows": list(rows), **extra}


def unavailable(method: str, reason: str, status: str = "skipped") -> dict:
    """A suite (or part of one) that cannot run here: it says why in the table instead of failing."""
    return suite_result(method, [row("-", None, "", note=f"{status}: {reason}")], status=status, reason=reason)


def not_run(why: str, status: str = "skipped") -> dict:
    """A suite's record when it did not run (time budget spent, timed out, failed to start): says why."""
    load = os.getloadavg()
    return {**unavailable(f"Not run: {why}.", why, status=status), "seconds": 0.0, "loadavg_before": load,
            "loadavg_after": load}


def seconds_arg(*, positive: bool) -> Callable[[str], float]:
    """An argparse ``type`` for a finite number of seconds, > 0 (``positive``) or >= 0."""
    import argparse

    def parse(text: str) -> float:
        value = float(text)
        if not (value > 0 if positive else value >= 0) or value == float("inf"):
            raise argparse.ArgumentTypeError(f"must be a {'positive ' if positive else ''}number of seconds"
                                             f"{'' if positive else ' >= 0'}, got {text}")
        return value

    return parse


def row(case: str, value, unit: str, *, times=None, note: str = "", ratios=None, **extra) -> dict:
    """One table line: ``value`` (a median) in ``unit``; ``times`` are the raw repeats in seconds, all kept."""
    out = {"case": case, "value": value, "unit": unit, "times_s": list(times or []), "note": note}
    if ratios:
        out["ratios"] = ratios
    return {**out, **extra}


def write_record(path: Path, record: dict) -> None:
    """A results record as indented JSON (anything else as its ``str``), atomically: temp file, then rename."""
    import json

    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(json.dumps(record, indent=1, default=str) + "\n")
    os.replace(tmp, path)


def median(xs):
    return statistics.median(xs)


def block(x):
    import jax

    return jax.block_until_ready(x)


def interleaved(fns: dict, rounds: int, sync: Callable = block) -> dict:
    """``{name: [first, *timed]}`` seconds: one first call of each callable (compilation, warm-up), then
    ``rounds`` rounds calling each in turn, so that a load change on a shared machine hits every variant alike
    and ratios within a run stay meaningful. ``sync`` waits for the device."""

    def timed(fn):
        t0 = time.perf_counter()
        sync(fn())
        return time.perf_counter() - t0

    times = {name: [timed(fn)] for name, fn in fns.items()}
    for _ in range(rounds):
        for name, fn in fns.items():
            times[name].append(timed(fn))
    return times


def device_loop(fn: Callable, consts, xs) -> Callable:
    """A no-argument callable running ``fn(consts, x)`` for every ``x`` along the leading axis of ``xs`` inside
    one jitted ``lax.scan``, summing all outputs into the carry: times per-item compute without per-call
    dispatch, with a different input each iteration so XLA cannot hoist the work out of the loop."""
    import jax
    import jax.numpy as jnp

    @jax.jit
    def loop(consts, xs):
        def body(acc, x):
            leaves = jax.tree_util.tree_leaves(fn(consts, x))
            return acc + sum(jnp.sum(leaf, dtype=jnp.float32) for leaf in leaves), None

        return jax.lax.scan(body, jnp.float32(0), xs)[0]

    return lambda: loop(consts, xs)


def run_timed(cmd, *, env=None, cwd=ROOT, check=True) -> tuple[float, subprocess.CompletedProcess]:
    """Wall seconds of a subprocess (process start to exit) and its completed process."""
    t0 = time.perf_counter()
    proc = subprocess.run([str(c) for c in cmd], env=env, cwd=cwd, capture_output=True, text=True)
    seconds = time.perf_counter() - t0
    if check and proc.returncode != 0:
        raise RuntimeError(f"{' '.join(map(str, cmd))} exited {proc.returncode}:\n{proc.stderr[-3000:]}")
    return seconds, proc


def child_env(**overrides) -> dict:
    """The environment for child Pythons: this checkout (its src/ and its root) first on PYTHONPATH, so they
    measure the same regjax; no
    JAX compilation cache of the caller's (``$JAX_COMPILATION_CACHE_DIR`` would make a "cold" run warm): the
    experiments keep theirs under ``$REGJAX_CACHE_DIR``, which the suites set."""
    env = {k: v for k, v in os.environ.items()
           if k not in ("JAX_COMPILATION_CACHE_DIR", "JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS")}
    env["PYTHONPATH"] = os.pathsep.join(p for p in (str(ROOT / "src"), str(ROOT), env.get("PYTHONPATH", "")) if p)
    env.update({k: str(v) for k, v in overrides.items()})
    return env


def torch_or_none():
    try:
        import torch
    except ImportError:
        return None
    return torch


def slug(text: str) -> str:
    return re.sub(r"[^a-z0-9]+", "-", text.lower()).strip("-") or "unknown"


def cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "cpu"


def available_cores() -> int:
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()


VERSIONED = ("jax", "jaxlib", "flax", "optax", "numpy", "torch", "jax-cuda12-plugin", "jax-cuda12-pjrt",
             "jax-cuda13-plugin", "jax-cuda13-pjrt", "nvidia-cuda-runtime-cu12", "nvidia-cudnn-cu12")


def _version(distribution: str):
    """An installed distribution's version from its metadata (nothing imported: importing torch costs ~1 s)."""
    from importlib import metadata

    try:
        return metadata.version(distribution)
    except metadata.PackageNotFoundError:
        return None


def _read(path: str):
    try:
        return Path(path).read_text().strip()
    except OSError:
        return None


def _git(*args):
    try:
        return subprocess.run(["git", "-C", str(ROOT), *args], capture_output=True, text=True,
                              timeout=10).stdout.strip()
    except (OSError, subprocess.TimeoutExpired):
        return None


def environment(threads: int) -> dict:
    """Device, versions, threads and the checkout measured (``torch_device`` is filled in by the run once a
    suite has used PyTorch)."""
    import jax

    import regjax

    devices = jax.devices()
    return {
        "backend": jax.default_backend(),
        "device": str(devices[0]),
        "device_kind": devices[0].device_kind,
        "devices": [str(d) for d in devices],
        "cpu_model": cpu_model(),
        "cpu_count": os.cpu_count(),
        "available_cores": available_cores(),
        "threads": {"jax": threads, "torch": threads,
                    "note": "XLA's CPU backend runs one intra-op thread per available core; torch is set to it"},
        "torch_device": None,
        "versions": {m: _version(m) for m in VERSIONED} | {"python": platform.python_version()},
        "platform": platform.platform(),
        "nice": os.nice(0),  # with sched_autogroup on, nice only ranks processes within this session
        "sched_autogroup": _read("/proc/sys/kernel/sched_autogroup_enabled"),
        "regjax": {"path": str(Path(regjax.__file__).parent), "git_commit": _git("rev-parse", "HEAD"),
                   "git_dirty_files": len((_git("status", "--porcelain") or "").splitlines())},
    }


def _fmt(value) -> str:
    if value is None:
        return "-"
    if isinstance(value, str):
        return value
    if value == 0 or 0.01 <= abs(value) < 1e6:
        return f"{value:,.3g}" if abs(value) < 100 else f"{value:,.0f}"
    return f"{value:.3g}"


def markdown_table(results: dict) -> str:
    """One line per row of every suite: median, unit, spread of the repeats, ratios, note."""
    lines = ["| suite | case | median | unit | repeats (min-max, n) | ratios | note |",
             "|---|---|---:|---|---|---|---|"]
    for suite, res in results.items():
        for r in res.get("rows", []):
            times = r.get("times_s") or []
            spread = f"{_fmt(min(times))}-{_fmt(max(times))} s, {len(times)}" if times else ""
            ratios = ", ".join(f"{k} {v:.2f}x" for k, v in (r.get("ratios") or {}).items() if v is not None)
            lines.append(f"| {suite} | {r['case']} | {_fmt(r['value'])} | {r['unit']} | {spread} | {ratios} | "
                         f"{r.get('note', '')} |")
    return "\n".join(lines)
