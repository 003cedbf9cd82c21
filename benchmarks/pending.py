"""Suites not written yet: ``sweep`` (measures ``regjax.engine.sweep``) and ``scaling``
(measures ``regjax.parallel``). Each reports "not available yet" until it is written: then replace the entry
in ``benchmarks/run.py``'s ``SUITES`` with a real suite module (plan in each method text)."""
from __future__ import annotations

import importlib.util
from pathlib import Path

from benchmarks.common import unavailable


def _in_measured_regjax(module: str) -> bool:
    """Whether ``module`` is part of the regjax being measured (an editable install elsewhere could otherwise
    supply a module the checkout under test lacks)."""
    import regjax

    spec = importlib.util.find_spec(module)
    return spec is not None and Path(spec.origin).resolve().is_relative_to(Path(regjax.__file__).parent.resolve())


def _pending(module: str, plan: str):
    def run(ctx):
        exists = _in_measured_regjax(module)
        reason = (f"{module} exists but this suite is not written yet" if exists
                  else f"{module} does not exist yet")
        return unavailable(plan, reason, status="not available yet")

    return run


sweep = _pending("regjax.engine.sweeping", "Planned: N in {1, 8, 64} configurations of the D2L MLP vmapped in one "
                                 "compiled epoch vs the same configurations trained one after another.")
scaling = _pending("regjax.parallel", "Planned: examples/s against device count with data parallelism "
                                      "(virtual CPU devices prove the wiring, not speed; real figures on GPUs).")
