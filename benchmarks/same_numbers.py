#!/usr/bin/env python
"""Does this checkout train exactly what REV trained? One experiment command, run in both checkouts, their
per-epoch metrics compared bit for bit.

    python benchmarks/same_numbers.py --baseline REV -- experiments/dropout_mlp.py --dataset digits
    python benchmarks/same_numbers.py --baseline REV -- experiments/batch_norm.py --epochs 20

REV is checked out into a temporary ``git worktree``; each checkout runs the command with its own package first on
``PYTHONPATH`` (``src/`` or the checkout itself), its own empty cache and output folder. Compared: every variant's
``train_loss``, ``train_accuracy``, ``test_loss`` and ``test_accuracy`` in results.json -- as float64 from JSON,
each value equal or both null. A history of one member is read in either layout (a list per epoch, or one such
list per member); a metric the task does not have is absent in either (null, or a list of nulls). Prints one line per variant and metric and exits 1 on any difference.
"""
from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
METRICS = ("train_loss", "train_accuracy", "test_loss", "test_accuracy")


def package_root(checkout: Path) -> Path:
    return checkout / "src" if (checkout / "src" / "regjax").is_dir() else checkout


def curve(history: dict, metric: str):
    """One member's per-epoch values, whichever layout wrote them."""
    values = history.get(metric)
    if "num_members" in history and values is not None:  # one curve per member
        assert history["num_members"] == 1, "a sweep: compare its member table instead"
        values = values[0]
    return None if values is None or all(v is None for v in values) else values  # no such metric (regression)


def run(checkout: Path, command: list, out: Path) -> dict:
    env = {**os.environ, "PYTHONPATH": str(package_root(checkout)), "REGJAX_CACHE_DIR": str(out) + "-cache",
           "MPLBACKEND": "Agg"}
    script, *args = command
    subprocess.run([sys.executable, str(checkout / script), *args, "--quiet", "--out", str(out)], env=env,
                   cwd=checkout, check=True)
    return json.loads((out / "results.json").read_text())


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--baseline", required=True)
    p.add_argument("command", nargs=argparse.REMAINDER, help="-- experiments/<name>.py [flags]")
    args = p.parse_args(argv)
    command = args.command[1:] if args.command[:1] == ["--"] else args.command
    rev = subprocess.run(["git", "rev-parse", args.baseline], cwd=ROOT, capture_output=True, text=True,
                         check=True).stdout.strip()
    tmp = Path(tempfile.mkdtemp(prefix="regjax-same-"))
    base = tmp / "baseline"
    subprocess.run(["git", "worktree", "add", "--detach", str(base), rev], cwd=ROOT, check=True, capture_output=True)
    try:
        results = {"baseline": run(base, command, tmp / "out-baseline"), "this": run(ROOT, command, tmp / "out-this")}
    finally:
        subprocess.run(["git", "worktree", "remove", "--force", str(base)], cwd=ROOT, capture_output=True)
        shutil.rmtree(tmp, ignore_errors=True)
    differ = 0
    print(f"{' '.join(command)}: baseline {rev[:10]} vs this checkout")
    for variant, history in results["baseline"]["history"].items():
        mine = results["this"]["history"][variant]
        for metric in METRICS:
            a, b = curve(history, metric), curve(mine, metric)
            same = a == b
            differ += not same
            epochs = "-" if a is None else len(a)
            print(f"  [{variant}] {metric}: {epochs} epochs, {'bit-identical' if same else 'DIFFERENT'}"
                  + ("" if a is None else f" (last {a[-1]!r})"))
    return 1 if differ else 0


if __name__ == "__main__":
    sys.exit(main())
