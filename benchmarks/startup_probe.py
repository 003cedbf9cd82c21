#!/usr/bin/env python
"""Run ``experiments/dropout_mlp.py`` in this process with a stopwatch around each stage; write the stages.

``python benchmarks/startup_probe.py OUT.json -- <dropout_mlp.py arguments>``. Stages: the imports, then every
call of the library functions the experiment goes through, whatever its CLI plumbing looks like: the dataset
loaders (``regjax.data.load_digits`` / ``load_fashion_mnist``), ``regjax.engine.fit`` (split with its own
``compile_time_s`` and ``epoch_time_s``; the rest is state init and evaluation with its compilation),
``regjax.plots.plot_histories`` and ``regjax.report.write_json_atomic``. Every module binding of those functions
is wrapped before the experiment is imported, so ``from regjax.engine import fit`` anywhere picks up the timer.
"""
from __future__ import annotations

import time

T0 = time.perf_counter()

import importlib.util  # noqa: E402
import json  # noqa: E402
import sys  # noqa: E402
from pathlib import Path  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
STAGES = {"load_digits": "load data", "load_fashion_mnist": "load data", "fit": "fit",
          "plot_histories": "plot", "write_json_atomic": "write results"}


def wrap_everywhere(original, label, stages, fit_detail):
    """Replace ``original`` by a timing wrapper in every loaded regjax module that binds it."""

    def wrapper(*a, **kw):
        t0 = time.perf_counter()
        result = original(*a, **kw)
        stages[label] = stages.get(label, 0.0) + time.perf_counter() - t0
        if label == "fit":
            history = result[1]
            fit_detail["compile_s"] = fit_detail.get("compile_s", 0.0) + history.compile_time_s
            fit_detail["epochs_s"] = fit_detail.get("epochs_s", 0.0) + sum(history.epoch_time_s)
            fit_detail["eval_s"] = fit_detail.get("eval_s", 0.0) + sum(getattr(history, "eval_time_s", []))
        return result

    for name, module in list(sys.modules.items()):
        if name.split(".")[0] == "regjax":
            for attr, value in list(vars(module).items()):
                if value is original:
                    setattr(module, attr, wrapper)


def main():
    out, argv = Path(sys.argv[1]), sys.argv[sys.argv.index("--") + 1:]
    stages, fit_detail, t = {}, {}, time.perf_counter()
    import flax  # noqa: F401
    import jax  # noqa: F401
    import optax  # noqa: F401

    import regjax.data
    import regjax.engine
    import regjax.plots
    import regjax.report
    import regjax.runner  # noqa: F401  -- with the data, engine and report modules the experiment uses

    stages["import jax, flax, optax, regjax.runner"] = time.perf_counter() - t
    for module in (regjax.data, regjax.engine, regjax.plots, regjax.report):
        for name, label in STAGES.items():
            if hasattr(module, name):
                wrap_everywhere(getattr(module, name), label, stages, fit_detail)
    t = time.perf_counter()
    spec = importlib.util.spec_from_file_location("dropout_mlp", ROOT / "experiments" / "dropout_mlp.py")
    exp = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(exp)
    stages["import the experiment"] = time.perf_counter() - t
    t = time.perf_counter()
    exp.main(argv)
    main_total = time.perf_counter() - t
    if "fit" in stages:
        fit_total = stages.pop("fit")
        stages["fit: compile (epoch and evaluation)"] = fit_detail["compile_s"]
        stages["fit: epochs"] = fit_detail["epochs_s"]
        stages["fit: evaluations"] = fit_detail["eval_s"]
        stages["fit: rest (state init, checks)"] = fit_total - sum(fit_detail.values())
    stages["main(): everything else"] = main_total - sum(v for k, v in stages.items() if not k.startswith("import"))
    stages["in-process total"] = time.perf_counter() - T0
    missing = sorted(set(STAGES.values()) - {k.split(":")[0] for k in stages})
    out.write_text(json.dumps({"stages_s": stages, "missing": missing, "fit": fit_detail}, indent=1))
    from regjax.runner.lifecycle import exit_finished

    exit_finished()  # leave as the CLI does (runner.script), so the parent's wall time compares


if __name__ == "__main__":
    main()
