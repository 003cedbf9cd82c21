#!/usr/bin/env python
"""Every GPU figure in one call (about 8 minutes, nothing installed, results under $OUT).

For the few minutes a GPU machine is lent:

    timeout 540 python benchmarks/gpu.py      # on the GPU machine: about 8 minutes
    python benchmarks/gpu.py --dry-run                         # tiny sizes on the CPU: proves the call works

It runs ``benchmarks/run.py`` once per suite, in order of value -- ``train_mlp`` (regjax's scan engine, the
per-step jit loop, NNX, PyTorch eager and ``torch.compile`` on CUDA), ``roofline`` (the matrix products of one
step on the GPU), ``profile`` (kernels per step and where an epoch's time goes, from a ``jax.profiler`` trace
kept under ``<out>/trace``), ``sweep``, ``batch_norm``, ``startup`` (the main job end to end against the PyTorch
script on the same files), ``scaling`` (1..N GPUs when there are several) and ``prng`` -- each in its own process with a
timeout: the lesser of its cap and what is left of ``--budget-s``. A suite that runs out of time is recorded as
``timed out`` and the next one starts; one that would start with under 20 s left is recorded as skipped. The
merged JSON (``<out>/<backend>-<time>.json``: device strings, versions -- jax, jaxlib, flax, optax, numpy,
torch, CUDA as torch reports it --, every repeat, and the markdown table) is rewritten after every suite, so a
call cut short still leaves every finished suite's figures.
"""
from __future__ import annotations

import argparse
import datetime
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

_CHECKOUT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(_CHECKOUT / "src"), str(_CHECKOUT)]  # this checkout's regjax and benchmarks

from benchmarks.common import ROOT, markdown_table, not_run, seconds_arg, write_record  # noqa: E402

SUITES = {  # name: cap in seconds on a GPU (the dry run has no caps but the budget)
    "train_mlp": 150, "roofline": 45, "profile": 60, "sweep": 150, "batch_norm": 45, "startup": 150, "scaling": 60,
    "prng": 60,
}
MIN_START_S = 20.0


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--dry-run", action="store_true",
                   help="tiny sizes (--quick) on the CPU (JAX_PLATFORMS=cpu): checks the whole call")
    p.add_argument("--out", type=Path, default=None,
                   help="results folder (default: $OUT, else benchmarks/results); the trace goes to <out>/trace")
    p.add_argument("--budget-s", type=seconds_arg(positive=True), default=480.0,
                   help="seconds for all suites together (default 480: the call ends within about 8 minutes)")
    p.add_argument("--suite", nargs="+", choices=list(SUITES), default=list(SUITES), metavar="NAME",
                   help=f"suites to run, in this order: {', '.join(SUITES)}")
    return p.parse_args(argv)


def main(argv=None) -> int:
    args = parse_args(argv)
    # `timeout` and the device tool end a call with SIGTERM: exit through Python, so the running suite's
    # process group is killed (above) and the merged JSON keeps every suite finished so far
    signal.signal(signal.SIGTERM, lambda signum, frame: sys.exit(128 + signum))
    out = args.out or Path(os.environ.get("OUT") or ROOT / "benchmarks" / "results")
    out.mkdir(parents=True, exist_ok=True)
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [str(ROOT / "src"), str(ROOT),
                                                                     os.environ.get("PYTHONPATH")]))}
    if args.dry_run:
        env["JAX_PLATFORMS"] = "cpu"  # the dry run must neither need nor grab a GPU
    stamp = datetime.datetime.now().strftime("%Y-%m-%dT%H%M%S")
    merged_path = out / f"{'dry-run' if args.dry_run else 'gpu'}-{stamp}.json"
    merged, failed = {"environment": None, "complete": False, "suites": {}}, []
    deadline = time.monotonic() + args.budget_s
    for name, cap in SUITES.items():
        if name not in args.suite:
            continue
        left = deadline - time.monotonic()
        part = out / f".{stamp}-{name}.json"
        if left < MIN_START_S:
            result = not_run(f"{left:.0f} s of the --budget-s {args.budget_s:g} left when it was due")
        else:
            cmd = [sys.executable, str(ROOT / "benchmarks" / "run.py"), "--suite", name, "--out", str(part),
                   "--trace-dir", str(out / "trace"), "--label", "gpu-dry-run" if args.dry_run else "gpu"]
            cmd += ["--quick"] if args.dry_run else []
            timeout = left if args.dry_run else min(left, cap)
            print(f"... {name} (at most {timeout:.0f} s)", flush=True)
            code = _run_group(cmd, env, timeout)
            record = json.loads(part.read_text()) if part.exists() else None
            part.unlink(missing_ok=True)
            if record is None or name not in record.get("suites", {}):
                why = f"timed out after {timeout:.0f} s" if code is None else f"exited {code}"
                result = not_run(why, status="timed out" if code is None else "error")
            else:
                result = record["suites"][name]
                if not merged.get("environment"):  # the first suite that ran names the machine and versions
                    merged.update({k: v for k, v in record.items()
                                   if k not in ("suites", "table", "caption", "complete", "loadavg_after")})
            if code != 0:
                failed.append(name)
        merged["suites"][name] = result
        _write(merged_path, merged, args)
    merged["complete"] = True
    _write(merged_path, merged, args)
    print(f"\n{merged['table']}\n\nresults: {merged_path}")
    return 1 if failed else 0


def _run_group(cmd: list, env: dict, timeout: float):
    """Run ``cmd`` in its own process group; on timeout kill the whole group (the suite's own children: the
    experiments and PyTorch scripts it times, the scaling worker, torch.compile's workers) so the next suite
    starts on an idle machine. Returns the exit code, or ``None`` on timeout; the child's stderr is echoed when
    it failed."""
    proc = subprocess.Popen(cmd, env=env, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            start_new_session=True)
    try:
        _, err = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        _, err = proc.communicate()
        sys.stderr.write((err or "")[-4000:])
        return None
    except BaseException:  # Ctrl-C or SIGTERM of this call: its own session would not get the signal
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()
        raise
    if proc.returncode:
        sys.stderr.write((err or "")[-4000:])
    return proc.returncode


def _write(path: Path, merged: dict, args) -> None:
    merged["command"] = " ".join([Path(sys.executable).name, *sys.argv])
    merged["gpu_call"] = {"dry_run": args.dry_run, "budget_s": args.budget_s, "caps_s": SUITES}
    merged["table"] = markdown_table(merged["suites"])
    write_record(path, merged)


if __name__ == "__main__":
    sys.exit(main())
