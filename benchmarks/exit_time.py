#!/usr/bin/env python
"""What ``regjax.runner.exit_finished`` saves: a one-epoch main-job process
(``experiments/dropout_mlp.py --dataset digits --epochs 1``) ended the CLI's way -- ``runner.script``, which
freezes the garbage collector before the normal exit -- against the same ``main`` ended by an ordinary interpreter
exit. Runs interleaved, one untimed run of each first (compile and data caches warm); wall time of the child
process as the parent measures it; the medians and every run are printed.

    python benchmarks/exit_time.py [--rounds 9]
"""
from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
EXPERIMENT = ROOT / "experiments" / "dropout_mlp.py"
PLAIN_EXIT = ("import runpy, sys; main = runpy.run_path(sys.argv[1])['main']; main(sys.argv[2:])  "
              "# the same main, then the interpreter's ordinary exit")


def main(argv=None) -> dict:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--rounds", type=int, default=9)
    args = p.parse_args(argv)
    tmp = Path(tempfile.mkdtemp(prefix="regjax-exit-"))
    env = {**os.environ, "REGJAX_CACHE_DIR": str(tmp / "cache"), "MPLBACKEND": "Agg"}
    run_args = ["--dataset", "digits", "--epochs", "1", "--quiet", "--overwrite"]
    commands = {"runner.script (gc frozen)": [sys.executable, str(EXPERIMENT), *run_args, "--out", str(tmp / "a")],
                "ordinary exit": [sys.executable, "-c", PLAIN_EXIT, str(EXPERIMENT), *run_args, "--out",
                                  str(tmp / "b")]}
    times = {name: [] for name in commands}
    for r in range(args.rounds + 1):
        for name in (list(commands) if r % 2 == 0 else list(reversed(commands))):
            t0 = time.perf_counter()
            subprocess.run(commands[name], env=env, cwd=ROOT, check=True, capture_output=True)
            if r:  # round 0 fills the caches
                times[name].append(time.perf_counter() - t0)
    medians = {name: statistics.median(v) for name, v in times.items()}
    result = {"cpu_count": os.cpu_count(), "rounds": args.rounds, "median_s": medians, "times_s": times,
              "saved_s": medians["ordinary exit"] - medians["runner.script (gc frozen)"]}
    print(json.dumps(result, indent=1))
    return result


if __name__ == "__main__":
    main()
