"""Suite ``startup``: how long the dropout experiment takes from process start to exit, and where it goes.

Part 1: ``experiments/dropout_mlp.py --dataset digits --epochs 1`` with an empty compilation cache vs a warm
one, and its stages. Part 2 (full runs, torch installed): the main job -- 10 epochs on Fashion-MNIST-shaped IDX
files -- against the d2l-style PyTorch script ``benchmarks/torch_mlp.py`` on the same files.
"""
from __future__ import annotations

import json
import re

import numpy as np

from benchmarks.common import ROOT, child_env, median, row, run_timed, suite_result, torch_or_none

EXPERIMENT = ROOT / "experiments" / "dropout_mlp.py"
PROBE = ROOT / "benchmarks" / "startup_probe.py"
TORCH_SCRIPT = ROOT / "benchmarks" / "torch_mlp.py"

METHOD = (
    "Wall time of child processes (process start to exit), measured by the parent with perf_counter. 'cold' = "
    "REGJAX_CACHE_DIR pointing at a fresh empty folder (no JAX compilation cache, no parsed-data cache); 'warm' "
    "= the same folder after one untimed run. Stages come from benchmarks/startup_probe.py, which runs the same "
    "experiment's main() in-process with timers wrapped around the library calls it makes (the dataset loader, "
    "regjax.engine.fit -- split with fit's own compile_time_s and epoch times; the rest of fit is state init and "
    "evaluation with its compilation -- plot_histories, write_json_atomic); 'interpreter start and exit, "
    "unaccounted' = probe wall minus its in-process total (includes interpreter teardown). Import time per "
    "top-level package comes from python -X importtime (cumulative, one run). End to end: "
    "experiments/dropout_mlp.py --dataset fashion_mnist --data-dir D (10 epochs, evaluation each epoch, plot, "
    "results.json) vs python benchmarks/torch_mlp.py --data-dir D (the same in PyTorch, d2l style, same threads; "
    "also with 1 thread, for context on a shared CPU) on random Fashion-MNIST-shaped .gz IDX files written with "
    "regjax.data.write_idx, runs interleaved; regjax's compile and parsed-data caches warm (one untimed run "
    "first), torch decodes the IDX files on every run (it has no such cache). Ratio = torch wall / regjax wall."
)


def experiment_cmd(python, out, *extra, experiment=EXPERIMENT):
    """The command line of a quiet dropout_mlp.py run writing to ``out`` (``experiment``: another checkout's)."""
    return [python, experiment, "--quiet", "--out", out, *extra]


def _importtime(python, env) -> tuple:
    """``(wall, {package: seconds})``: cumulative import seconds of each top-level import (>= 10 ms) of ``import
    jax, flax, optax, regjax``: each package counts what it imports first (regjax's own share excludes jax, flax
    and optax)."""
    wall, proc = run_timed([python, "-X", "importtime", "-c", "import jax, flax, optax, regjax"], env=env)
    out = {}
    for line in proc.stderr.splitlines():
        m = re.match(r"import time:\s+\d+ \|\s+(\d+) \| (\S.*)$", line)  # top level: no indent before the name
        if m:
            out[m.group(2)] = int(m.group(1)) / 1e6
    return wall, {k: v for k, v in sorted(out.items(), key=lambda kv: -kv[1]) if v >= 0.01}


def _digits_runs(ctx, python, repeats):
    """Walls of cold and warm runs (plain in full runs; the probe's own runs in --quick) and the stages."""
    tmp = ctx.tmp / "startup"
    args = ["--dataset", "digits", "--epochs", "1"]
    env = lambda cache: child_env(REGJAX_CACHE_DIR=tmp / cache, MPLBACKEND="Agg")  # noqa: E731
    walls = {"cold": []} if ctx.quick else {"cold": [], "warm": []}  # --quick: the wiring, one probe run
    for i in range(0 if ctx.quick else repeats):
        for kind in walls:  # cold first: the second run finds the cache the first one filled
            walls[kind].append(run_timed(experiment_cmd(python, tmp / "out", *args), env=env(f"cache-{i}"))[0])
    stages = {}
    for kind in walls:
        wall, _ = run_timed([python, PROBE, tmp / f"probe-{kind}.json", "--", "--quiet", "--out", tmp / "out",
                             *args], env=env("probe-cache"))
        probe = json.loads((tmp / f"probe-{kind}.json").read_text())
        probe["stages_s"]["interpreter start and exit, unaccounted"] = wall - probe["stages_s"]["in-process total"]
        probe["wall_s"] = wall
        stages[kind] = probe
        if ctx.quick:
            walls[kind].append(wall)
    return walls, stages


def write_fashion_like_idx(folder, n_train=60000, n_test=10000):
    from regjax.data import write_idx

    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(0)
    for prefix, n in (("train", n_train), ("t10k", n_test)):
        write_idx(folder / f"{prefix}-images-idx3-ubyte.gz", rng.integers(0, 256, (n, 28, 28), dtype=np.uint8))
        write_idx(folder / f"{prefix}-labels-idx1-ubyte.gz", rng.integers(0, 10, n, dtype=np.uint8))


def _end_to_end(ctx, python, repeats):
    tmp = ctx.tmp / "e2e"
    data = tmp / "data"
    write_fashion_like_idx(data)
    env = child_env(REGJAX_CACHE_DIR=tmp / "cache", MPLBACKEND="Agg")
    jax_cmd = experiment_cmd(python, tmp / "jax-out", "--dataset", "fashion_mnist", "--data-dir", data)
    run_timed(jax_cmd, env=env)  # untimed: fills the compile and parsed-data caches

    def torch_cmd(threads):
        return [python, TORCH_SCRIPT, "--data-dir", data, "--out", tmp / f"torch-{threads}", "--threads", threads]

    jax_t, train_t, torch_t, torch_train = [], [], {}, {}
    for _ in range(repeats):  # interleaved, so that load changes hit both alike
        jax_t.append(run_timed(jax_cmd, env=env)[0])
        hist = json.loads((tmp / "jax-out" / "results.json").read_text())["history"]["dropout"]
        train_t.append(hist["compile_time_s"] + sum(hist["epoch_time_s"]))
        # 1 thread: context on a shared CPU, as train_mlp (c1); on a GPU the threads only feed the DataLoader
        for threads in dict.fromkeys([ctx.threads] + ([1] if ctx.torch_device == "cpu" else [])):
            torch_t.setdefault(threads, []).append(run_timed(torch_cmd(threads), env=env)[0])
            result = json.loads((tmp / f"torch-{threads}" / "results.json").read_text())
            torch_train.setdefault(threads, []).append(sum(result["epoch_time_s"]))
    rows = [row("end to end, 10 epochs: regjax experiments/dropout_mlp.py", median(jax_t), "s", times=jax_t,
                ratios={f"torch {t} thr / regjax": median(v) / median(jax_t) for t, v in torch_t.items()},
                note=f"of which training (compile + epochs) {median(train_t):.1f} s")]
    rows += [row(f"end to end, 10 epochs: PyTorch d2l-style benchmarks/torch_mlp.py, {t} thread(s)", median(v),
                 "s", times=v, note=f"of which training epochs {median(torch_train[t]):.1f} s")
             for t, v in torch_t.items()]
    return rows


def run(ctx):
    import sys

    python, repeats = sys.executable, 1 if ctx.quick else 3
    env = child_env()
    interp = [run_timed([python, "-c", "pass"], env=env)[0] for _ in range(repeats)]
    importtime_wall, importtime = _importtime(python, env)
    if ctx.quick:  # one import run: the -X importtime one (its wall includes the tracing overhead)
        imports, imports_note = [importtime_wall], "from the -X importtime run (--quick)"
    else:
        imports = [run_timed([python, "-c", "import regjax, jax, flax, optax"], env=env)[0] for _ in range(repeats)]
        imports_note = ""
    walls, stages = _digits_runs(ctx, python, repeats)
    cold = walls["cold"]
    how = "the probe's runs (--quick)" if ctx.quick else "plain runs"
    rows = [
        row("python -c pass", median(interp), "s", times=interp),
        row('python -c "import regjax, jax, flax, optax"', median(imports), "s", times=imports, note=imports_note),
        row("dropout_mlp.py --dataset digits --epochs 1, cold compile cache", median(cold), "s", times=cold,
            note=how),
    ]
    if "warm" in walls:
        warm = walls["warm"]
        rows.append(row("dropout_mlp.py --dataset digits --epochs 1, warm compile cache", median(warm), "s",
                        times=warm, ratios={"cold / warm": median(cold) / median(warm)}, note=how))
    else:
        rows.append(row("dropout_mlp.py --dataset digits --epochs 1, warm compile cache", None, "",
                        note="skipped in --quick"))
    for kind, probe in stages.items():
        rows += [row(f"stage ({kind}): {name}", seconds, "s") for name, seconds in probe["stages_s"].items()
                 if name != "in-process total"]
        if probe["missing"]:
            rows.append(row(f"stage ({kind}): not found", None, "", note=", ".join(probe["missing"])))
    rows.append(row("import time by top-level package (-X importtime)", None, "",
                    note="; ".join(f"{k} {v:.2f} s" for k, v in importtime.items())))
    if ctx.quick:
        rows.append(row("end to end, 10 epochs vs PyTorch", None, "", note="skipped in --quick"))
    elif torch_or_none() is None:
        rows.append(row("end to end, 10 epochs vs PyTorch", None, "", note="skipped: torch not installed"))
    else:
        rows += _end_to_end(ctx, python, 2)
    return suite_result(METHOD, rows, stages=stages, importtime_s=importtime)
