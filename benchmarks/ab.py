#!/usr/bin/env python
"""Two checkouts side by side in one run: is this commit's engine slower than REV's?

    python benchmarks/ab.py --baseline REV            # e.g. the commit before a change to the engine
    python benchmarks/ab.py --baseline REV --quick    # smoke run (small data, 2 rounds)
    python benchmarks/ab.py --baseline REV --startup  # start-up: a whole 1-epoch main-job process, both checkouts

REV is checked out into a temporary ``git worktree``. One worker process per checkout (``PYTHONPATH`` = that
checkout; this file's ``--worker`` mode) builds the D2L dropout MLP (784-256-256-10, rates 0.2/0.5, scratch
SGD lr 0.5, batch 256, N(0, 0.01²)) on 60,000 x 784 uniform Fashion-MNIST-shaped data and compiles; then the
parent times the workers in turn, round after round (a worker that is not being timed waits on its stdin, so
they never compete for the cores and a change of load hits both alike):

* ``engine epoch``: one ``make_epoch(make_step(model, scratch_sgd), 256)`` epoch, ended by ``block_until_ready`` --
  the building block the ``train_mlp`` suite's row (a) measures;
* ``fit, 2 epochs``: a whole warm ``fit(..., epochs=2)`` call (programs cached by the earlier calls): the
  prologue, two training epochs and two test-set evaluations (10,000 examples) -- what a CLI run pays per
  variant;
* ``fit epoch_time_s``: the median of the training epochs' own times as ``fit`` records them.

``--startup`` times whole processes instead: ``experiments/dropout_mlp.py --data-dir D --epochs 1`` (the main job
cut to one epoch, on random Fashion-MNIST-shaped .gz IDX files written once for both) from each checkout, with
its own warm compilation and parsed-data cache (one untimed run each first), and a bare ``python -c "import
jax"`` in every round. regjax's own start-up and teardown overhead = the run's wall time minus that round's bare
``import jax`` minus the epoch and its evaluation as the run's results.json records them.

Each checkout's worker finds the package where that checkout has it (``src/regjax``, or ``regjax`` before the src
layout), the engine there (``regjax.engine``, or ``regjax.train`` before the one-engine change) and the scratch SGD
step as that checkout spells it (``regjax.optim.scratch_sgd``, or ``optimizer=None`` before it was an optax
transformation); the learning rate comes in ``hparams`` on both. The JSON goes to ``benchmarks/results/ab-<date>[-label].json``; the table
(medians, every round kept in the JSON, ratio = baseline time / this checkout's time: > 1 is faster here) to
stdout.
"""
from __future__ import annotations

import argparse
import datetime
import json
import os
import platform
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
CASES = ("engine epoch", "fit, 2 epochs", "fit epoch_time_s")


def worker(n: int) -> None:
    """Serve timings on stdin/stdout: 'engine' or 'fit' -> seconds (fit: 'wall epoch_median')."""
    import jax
    import jax.numpy as jnp
    import numpy as np

    try:
        from regjax.engine import fit, init_state, make_epoch, make_step
    except ImportError:  # a checkout from before the one-engine change
        from regjax.train import fit, init_state, make_epoch, make_step
    from regjax.models.adapters import mlp_model
    try:
        from regjax.optim import scratch_sgd
        optimizer = scratch_sgd(0.5)
    except ImportError:  # a checkout from before scratch SGD was an optax transformation
        optimizer = None

    rng = np.random.default_rng(0)
    x = rng.random((n, 784), dtype=np.float32)
    y = rng.integers(0, 10, n).astype(np.int32)
    data = (x, y, x[: n // 6], y[: n // 6])
    model = mlp_model("scratch", 784, (256, 256), 10, (0.2, 0.5), "normal")
    epoch = make_epoch(make_step(model, optimizer), 256)
    state = init_state(model, optimizer, jax.random.key(0))
    hparams = {"lr": jnp.float32(0.5)}
    xd, yd = jax.device_put(x), jax.device_put(y)
    count = 0

    def engine():
        nonlocal state, count
        state, metrics = epoch(state, xd, yd, jax.random.fold_in(jax.random.key(1), count), hparams)
        count += 1
        jax.block_until_ready(metrics)

    def run_fit():
        return fit(model, optimizer, data, epochs=2, batch_size=256, key=jax.random.key(0), hparams={"lr": 0.5})[1]

    engine()
    run_fit()  # compile both
    import regjax

    print("ready", Path(regjax.__file__).parent, flush=True)
    for line in sys.stdin:
        t0 = time.perf_counter()
        if line.strip() == "engine":
            engine()
            print(time.perf_counter() - t0, flush=True)
        else:
            history = run_fit()
            print(time.perf_counter() - t0, statistics.median(history.epoch_time_s), flush=True)


def package_root(checkout: Path) -> Path:
    """The folder that holds a checkout's ``regjax`` package: ``src/`` (the src layout), or the checkout itself."""
    return checkout / "src" if (checkout / "src" / "regjax").is_dir() else checkout


def _start(checkout: Path, n: int) -> subprocess.Popen:
    env = {**os.environ, "PYTHONPATH": str(package_root(checkout)),
           "JAX_PLATFORMS": os.environ.get("JAX_PLATFORMS", "")}
    proc = subprocess.Popen([sys.executable, str(Path(__file__).resolve()), "--worker", str(n)], cwd=checkout,
                            stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True, env=env)
    word, _, measured = proc.stdout.readline().strip().partition(" ")
    if word != "ready" or Path(measured).resolve() != (package_root(checkout) / "regjax").resolve():
        raise RuntimeError(f"the worker for {checkout} did not start on its own regjax ({measured or 'no answer'})")
    return proc


def _engine_times(base: Path, n: int, rounds: int) -> dict:
    workers = {"baseline": _start(base, n), "this checkout": _start(ROOT, n)}
    times = {name: {case: [] for case in CASES} for name in workers}
    for r in range(rounds):
        order = list(workers) if r % 2 == 0 else list(reversed(workers))
        for name in order:
            times[name]["engine epoch"] += _ask(workers[name], "engine")
            wall, epoch = _ask(workers[name], "fit")
            times[name]["fit, 2 epochs"].append(wall)
            times[name]["fit epoch_time_s"].append(epoch)
    for proc in workers.values():
        proc.stdin.close()
        proc.wait(timeout=60)
    return times


def _ask(proc: subprocess.Popen, what: str) -> list:
    proc.stdin.write(what + "\n")
    proc.stdin.flush()
    return [float(v) for v in proc.stdout.readline().split()]


STARTUP_CASES = ("1-epoch run, wall", "bare import jax", "epoch + evaluation (results.json)", "regjax overhead")


def _startup_times(checkouts: dict, tmp: Path, rounds: int, n_train: int) -> dict:
    """``{checkout name: {case: [seconds per round]}}`` for ``--startup`` (module docstring)."""
    sys.path.insert(0, str(ROOT))
    from benchmarks.common import child_env, run_timed
    from benchmarks.startup import experiment_cmd, write_fashion_like_idx

    data = tmp / "fashion"
    write_fashion_like_idx(data, n_train, max(1, n_train // 6))

    def command(name, checkout):
        slug = name.replace(" ", "-")
        out = tmp / f"out-{slug}"
        cmd = experiment_cmd(sys.executable, out, "--data-dir", data, "--epochs", "1",
                             experiment=checkout / "experiments" / "dropout_mlp.py")
        env = child_env(PYTHONPATH=package_root(checkout), REGJAX_CACHE_DIR=tmp / f"cache-{slug}", MPLBACKEND="Agg")
        return cmd, env, checkout, out

    runs = {name: command(name, checkout) for name, checkout in checkouts.items()}
    for cmd, env, cwd, _ in runs.values():  # untimed: fills each checkout's compile and parsed-data caches
        run_timed(cmd, env=env, cwd=cwd)
    times = {name: {case: [] for case in STARTUP_CASES} for name in runs}
    bare_env = child_env()
    for r in range(rounds):
        bare = run_timed([sys.executable, "-c", "import jax"], env=bare_env)[0]
        for name in (list(runs) if r % 2 == 0 else list(reversed(runs))):
            cmd, env, cwd, out = runs[name]
            wall = run_timed(cmd, env=env, cwd=cwd)[0]
            result = json.loads((out / "results.json").read_text())["history"]["dropout"]
            work = sum(result["epoch_time_s"]) + sum(result.get("eval_time_s") or [])
            for case, value in zip(STARTUP_CASES, (wall, bare, work, wall - bare - work)):
                times[name][case].append(value)
    return times


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--baseline", required=True, help="the git revision to compare with (e.g. HEAD~1)")
    p.add_argument("--rounds", type=int, default=10)
    p.add_argument("--quick", action="store_true", help="2,560 examples and 2 rounds: checks the wiring only")
    p.add_argument("--startup", action="store_true", help="time whole 1-epoch main-job processes (start-up and "
                                                           "teardown overhead) instead of the engine")
    p.add_argument("--label", default="")
    p.add_argument("--out", type=Path, default=None)
    args = p.parse_args(argv)
    n, rounds = (2560, 2) if args.quick else (60000, args.rounds)
    rev = subprocess.run(["git", "rev-parse", args.baseline], cwd=ROOT, capture_output=True, text=True,
                         check=True).stdout.strip()
    here = subprocess.run(["git", "rev-parse", "HEAD"], cwd=ROOT, capture_output=True, text=True).stdout.strip()
    dirty = bool(subprocess.run(["git", "status", "--porcelain", "--", "src", "regjax"], cwd=ROOT, capture_output=True,
                                text=True).stdout.strip())
    tmp = Path(tempfile.mkdtemp(prefix="regjax-ab-"))
    base = tmp / "baseline"
    subprocess.run(["git", "worktree", "add", "--detach", str(base), rev], cwd=ROOT, check=True,
                   capture_output=True)
    load_before = os.getloadavg()
    cases = STARTUP_CASES if args.startup else CASES
    try:
        if args.startup:
            times = _startup_times({"baseline": base, "this checkout": ROOT}, tmp, rounds, n)
        else:
            times = _engine_times(base, n, rounds)
    finally:
        subprocess.run(["git", "worktree", "remove", "--force", str(base)], cwd=ROOT, capture_output=True)
        shutil.rmtree(tmp, ignore_errors=True)
    medians = {name: {case: statistics.median(v) for case, v in per.items()} for name, per in times.items()}
    rows = [{"case": case, "baseline_s": medians["baseline"][case], "this_s": medians["this checkout"][case],
             "ratio": medians["baseline"][case] / medians["this checkout"][case]} for case in cases]
    record = {"command": " ".join([Path(sys.executable).name, *sys.argv]), "baseline": rev, "this": here,
              "mode": "startup" if args.startup else "engine",
              "this_has_uncommitted_changes": dirty, "n": n, "rounds": rounds,
              "date": datetime.datetime.now().isoformat(timespec="seconds"), "cpu_count": os.cpu_count(),
              "platform": platform.platform(), "loadavg_before": load_before, "loadavg_after": os.getloadavg(),
              "times_s": times, "rows": rows}
    label = f"-{args.label}" if args.label else ""
    out = args.out or ROOT / "benchmarks" / "results" / f"ab-{datetime.date.today().isoformat()}{label}.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(record, indent=1) + "\n")
    print(f"baseline {rev[:10]} vs this checkout {here[:10]}{' (+ uncommitted changes)' if dirty else ''}, "
          f"{n} examples, {rounds} rounds, load {load_before[0]:.2f} -> {os.getloadavg()[0]:.2f}\n")
    print("| case | baseline (s) | this checkout (s) | baseline / this |\n|---|---|---|---|")
    for r in rows:
        print(f"| {r['case']} | {r['baseline_s']:.4f} | {r['this_s']:.4f} | {r['ratio']:.3f} |")
    print(f"\nresults: {out}")
    return 0


if __name__ == "__main__":
    if len(sys.argv) > 2 and sys.argv[1] == "--worker":
        worker(int(sys.argv[2]))
    else:
        sys.exit(main())
