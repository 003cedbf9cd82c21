"""Suite ``scaling``: the D2L dropout MLP trained with data parallelism (``fit(..., data_mesh=data_mesh(k))``)
on k = 1, 2, 4, ... devices: examples/s against k, and how far each k's result lies from one device's.

On a CPU-only machine the devices are virtual (a child process started with
``XLA_FLAGS=--xla_force_host_platform_device_count=8``): they share the same cores, so the rows prove the wiring
(same program, same batches, results equal to float tolerance), not speed. Where several real devices exist (a
multi-GPU machine) the same measurement runs in-process over them.

``python benchmarks/scaling.py --worker N EPOCHS ROUNDS COUNTS...`` is the child's entry point (JSON on stdout).
"""
from __future__ import annotations

import json
import sys
from pathlib import Path

if __name__ == "__main__":  # the child process: measure this checkout
    sys.path[:0] = [str(Path(__file__).resolve().parents[1] / "src"), str(Path(__file__).resolve().parents[1])]

from benchmarks.common import child_env, median, row, run_timed, suite_result, unavailable  # noqa: E402

VIRTUAL_DEVICES = 8

METHOD = (
    "fit(mlp_model('scratch', 784, (256, 256), 10, (0.2, 0.5), 'normal'), scratch_sgd(0.5), data, epochs=1, "
    "batch_size=256, key=jax.random.key(0), data_mesh=data_mesh(k)) for k = 1, 2, 4, ... devices, on "
    "uniform Fashion-MNIST-shaped data (N = 20,000 train, 2,000 test; --quick 2,048 / 256 and k = 1, 8 only): "
    "every batch of 256 split over the k devices, parameters replicated, XLA's all-reduces for the gradients. "
    "Calls interleaved across k, round after round (the first round, which compiles each k's program, is "
    "discarded); examples/s = N / median of the epoch times fit records (training only: placement, "
    "compilation and the test-set evaluation excluded). 'largest parameter difference': max abs over all "
    "weights after the epoch against k = 1 -- the runs differ only in the order of the cross-device sums, a "
    "round-off that SGD then carries along its steps. On a CPU-only machine the devices are "
    f"{VIRTUAL_DEVICES} virtual ones (XLA_FLAGS=--xla_force_host_platform_device_count={VIRTUAL_DEVICES}) "
    "sharing the same cores: those rows prove the wiring, not speed. With several real devices (GPUs) the same "
    "runs in-process on 1, 2, 4, ... of them; with one accelerator the suite says so and stops (the CPU run "
    "proves the wiring)."
)


def measure(n: int, epochs: int, rounds: int, counts) -> dict:
    """``{k: {'epoch_s': [...], 'max_param_diff': float, 'device': str}}`` for each device count ``k``."""
    import jax
    import numpy as np

    from benchmarks.train_mlp import fashion_like
    from regjax.engine import fit
    from regjax.models.adapters import mlp_model
    from regjax.optim import scratch_sgd
    from regjax.parallel import data_mesh

    x, y = fashion_like(n)
    xt, yt = fashion_like(max(256, n // 10), seed=1)
    model = mlp_model("scratch", 784, (256, 256), 10, (0.2, 0.5), "normal")
    times = {k: [] for k in counts}
    params = {}
    for r in range(rounds + 1):
        for k in counts:
            state, history = fit(model, scratch_sgd(0.5), (x, y, xt, yt), epochs=epochs, batch_size=256,
                                 key=jax.random.key(0), data_mesh=data_mesh(k))
            if r:
                times[k].append(float(np.median(history.epoch_time_s)))
            else:
                params[k] = [np.asarray(leaf) for leaf in jax.tree_util.tree_leaves(state.params)]
    out = {}
    for k in counts:
        diff = max(float(np.max(np.abs(a - b))) for a, b in zip(params[k], params[counts[0]]))
        out[k] = {"epoch_s": times[k], "max_param_diff": diff, "device": str(jax.devices()[0].device_kind)}
    return out


def _counts(available: int) -> list:
    counts, k = [], 1
    while k <= available:
        counts.append(k)
        k *= 2
    return counts


def run(ctx):
    import jax

    n, epochs, rounds = (2048, 1, 1) if ctx.quick else (20000, 1, 3)
    real = jax.device_count()
    if real == 1 and jax.default_backend() != "cpu":
        return unavailable(METHOD, f"one {jax.default_backend()} device: nothing to scale over (the CPU run of this "
                                   "suite proves the wiring on virtual devices)")
    if real > 1:
        counts, kind = _counts(real), f"{real} real {jax.default_backend()} devices"
        measured = measure(n, epochs, rounds, counts)
    else:
        counts = [1, VIRTUAL_DEVICES] if ctx.quick else _counts(VIRTUAL_DEVICES)
        kind = f"{VIRTUAL_DEVICES} virtual CPU devices on {ctx.threads} cores: the wiring, not speed"
        cmd = [sys.executable, Path(__file__).resolve(), "--worker", n, epochs, rounds, *counts]
        env = child_env(XLA_FLAGS=f"--xla_force_host_platform_device_count={VIRTUAL_DEVICES}",
                        JAX_PLATFORMS="cpu")
        _, proc = run_timed(cmd, env=env)
        measured = {int(k): v for k, v in json.loads(proc.stdout.strip().splitlines()[-1]).items()}
    base = n / median(measured[counts[0]]["epoch_s"])
    rows = []
    for k in counts:
        m = measured[k]
        rate = n / median(m["epoch_s"])
        rows.append(row(f"data parallel, {k} device(s)", rate, "examples/s", times=m["epoch_s"],
                        ratios={"vs 1 device": rate / base},
                        note=f"{kind}; largest parameter difference from 1 device {m['max_param_diff']:.2g}"))
    return suite_result(METHOD, rows, devices=kind, counts=counts, measurements=measured, examples=n)


if __name__ == "__main__":
    if sys.argv[1:2] != ["--worker"]:
        sys.exit(f"usage: {sys.argv[0]} --worker N EPOCHS ROUNDS COUNTS... (benchmarks/run.py --suite scaling runs it)")
    n, epochs, rounds, *counts = (int(a) for a in sys.argv[2:])
    print(json.dumps(measure(n, epochs, rounds, counts)))
