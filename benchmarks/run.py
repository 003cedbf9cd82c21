#!/usr/bin/env python
"""Run the regjax benchmark suites, write ``benchmarks/results/<backend>-<device>-<date>[-label].json`` and
print a markdown table. Method and conventions: benchmarks/README.md and ../shared/GUIDE.md §5.

    python benchmarks/run.py                      # every suite, full size
    python benchmarks/run.py --quick              # small data and few repeats (a smoke test, < 2 min on CPU)
    python benchmarks/run.py --suite train_mlp roofline --label after-engine
"""
from __future__ import annotations

import argparse
import datetime
import os
import shutil
import sys
import tempfile
import time
import traceback
from pathlib import Path

_CHECKOUT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(_CHECKOUT / "src"), str(_CHECKOUT)]  # measure this checkout's regjax and benchmarks

from benchmarks import batch_norm, epoch_profile, prng, roofline, scaling, startup, sweep, train_mlp  # noqa: E402
from benchmarks.common import (  # noqa: E402
    ROOT,
    Context,
    available_cores,
    environment,
    markdown_table,
    not_run,
    seconds_arg,
    slug,
    write_record,
)

SUITES = {  # run in this order: roofline reuses train_mlp's engine figure when both run
    "train_mlp": train_mlp.run,
    "roofline": roofline.run,
    "profile": epoch_profile.run,
    "prng": prng.run,
    "batch_norm": batch_norm.run,
    "sweep": sweep.run,
    "startup": startup.run,
    "scaling": scaling.run,
}


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--quick", action="store_true", help="small data, few repeats: checks the wiring, not speed")
    p.add_argument("--suite", nargs="+", choices=list(SUITES), default=list(SUITES), metavar="NAME",
                   help=f"suites to run (default: all): {', '.join(SUITES)}")
    p.add_argument("--label", default="", help="tag for the run, appended to the file name (e.g. baseline)")
    p.add_argument("--out", type=Path, default=None, help="results JSON path (default: benchmarks/results/...)")
    p.add_argument("--trace-dir", type=Path, default=None,
                   help="keep the profile suite's jax.profiler trace here (default: a scratch folder, removed)")
    p.add_argument("--budget-s", type=seconds_arg(positive=False), default=None,
                   help="start no suite after this many seconds; later ones are recorded as skipped")
    return p.parse_args(argv)


def default_path(env: dict, label: str) -> Path:
    """``benchmarks/results/<backend>-<device>-<date>[-label].json``; never an existing file: a second run the
    same day with the same label gets ``-2``, ``-3``, ... (an earlier run's figures are not overwritten)."""
    device = env["cpu_model"] if env["backend"] == "cpu" else env["device_kind"]
    name = "-".join(filter(None, [env["backend"], slug(device), datetime.date.today().isoformat(), slug(label)
                                  if label else ""]))
    folder = ROOT / "benchmarks" / "results"
    path, n = folder / f"{name}.json", 1
    while path.exists():
        n += 1
        path = folder / f"{name}-{n}.json"
    return path


def main(argv=None) -> int:
    args = parse_args(argv)
    threads = available_cores()
    env = environment(threads)
    out = args.out or default_path(env, args.label)
    tmp = Path(tempfile.mkdtemp(prefix="regjax-bench-"))
    ctx = Context(quick=args.quick, threads=threads, tmp=tmp, results={}, trace_dir=args.trace_dir)
    record = {"command": " ".join([Path(sys.executable).name, *sys.argv]), "label": args.label,
              "quick": args.quick, "date": datetime.datetime.now().isoformat(timespec="seconds"),
              "environment": env, "loadavg_before": os.getloadavg(), "suites": ctx.results, "complete": False}
    print(f"# regjax benchmarks on {env['device']} ({env['cpu_model']}), backend {env['backend']}, "
          f"{threads} threads, load {os.getloadavg()[0]:.2f}", flush=True)
    failed = []
    start = time.perf_counter()
    try:
        for name in args.suite:
            if args.budget_s is not None and time.perf_counter() - start > args.budget_s:
                why = f"the run's time budget (--budget-s {args.budget_s:g}) was spent"
                ctx.results[name] = not_run(why)
                print(f"... {name}: skipped, {why}", flush=True)
                continue
            print(f"... {name}", flush=True)
            t0, load = time.perf_counter(), os.getloadavg()
            try:
                result = SUITES[name](ctx)
            except Exception:
                failed.append(name)
                result = {"status": "error", "method": "", "error": traceback.format_exc(),
                          "rows": [{"case": "-", "value": None, "unit": "", "note": "error: see the JSON"}]}
                print(result["error"], file=sys.stderr, flush=True)
            ctx.results[name] = {**result, "seconds": time.perf_counter() - t0, "loadavg_before": load,
                                 "loadavg_after": os.getloadavg()}
            env["torch_device"] = ctx.torch_device_ or env["torch_device"]  # once a suite has used PyTorch
            _write(out, record)  # after every suite: a run cut short keeps the rest
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    record["complete"] = True
    _write(out, record)
    print(f"\n{record['caption']}\n\n{record['table']}\n\nresults: {out}")
    return 1 if failed else 0


def _write(out: Path, record: dict) -> None:
    """The record with its caption and table, written atomically (temp file, rename)."""
    env, threads = record["environment"], record["environment"]["threads"]["jax"]
    record["loadavg_after"] = os.getloadavg()
    record["caption"] = (f"{env['device']} ({env['cpu_model'] if env['backend'] == 'cpu' else env['device_kind']}),"
                         f" {threads} threads, load average {record['loadavg_before'][0]:.2f} before and "
                         f"{record['loadavg_after'][0]:.2f} after; `{record['command']}`, {record['date']}")
    record["table"] = markdown_table(record["suites"])
    write_record(out, record)


if __name__ == "__main__":
    sys.exit(main())
