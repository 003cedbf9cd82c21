#!/usr/bin/env python
"""Explicit L2 penalty in the loss vs optax's add_decayed_weights, under SGD, SGD+momentum and Adam (where the
decay route is AdamW and the penalty route is Adam+L2). One table: max |Δw| between the routes over training
and the final ‖w‖; plot ‖w‖ vs step. Problem: D2L's high-dimensional linear regression.

Each route is one compiled program over all steps that records w after every step (``run_steps``), about a
second in all: there are no per-epoch checkpoints to resume from, and ``--resume`` simply runs it again (the
results are the same bit for bit)."""
from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import optax

from regjax import adamw, decayed_sgd, runner
from regjax.data import seed_keys, synthetic_linear
from regjax.engine import Diverged, run_steps
from regjax.models.adapters import scratch_linreg
from regjax.plots import plot_series


def main(argv=None):
    p = runner.parser(__doc__, epochs=100, lr=0.003, batch_size=5, out="runs/decay_vs_penalty")
    p.add_argument("--lam", type=runner.nonnegative_float, default=3.0)
    p.add_argument("--adam-lr", type=runner.positive_float, default=0.01)
    with runner.Run("decay_vs_penalty", p, argv) as run:
        args = run.args
        run.set_dataset({"name": "synthetic_linear", "n_train": 20, "d": 200}, n_train=20)
        data_key, train_key = seed_keys(args.seed)
        x, y = synthetic_linear(data_key, 0.01 * jnp.ones(200), 0.05, 20, 0.01)
        model = scratch_linreg(200, weight_init=jax.nn.initializers.normal(1.0))
        routes = {
            "SGD": (optax.sgd(args.lr), decayed_sgd(args.lr, args.lam)),
            "SGD+momentum 0.9": (optax.sgd(args.lr, 0.9), decayed_sgd(args.lr, args.lam, momentum=0.9)),
            "Adam (penalty = Adam+L2) vs AdamW": (optax.adam(args.adam_lr), adamw(args.adam_lr, args.lam)),
        }
        kernel = lambda params: params["dense0"]["kernel"][:, 0]
        rows, series = {}, {}
        run.start()
        for name, (plain, decayed) in routes.items():
            common = dict(epochs=args.epochs, batch_size=args.batch_size, key=train_key, loss="squared",
                          record=kernel)
            _, w_pen = run_steps(model, plain, x, y, hparams={"lam": args.lam}, **common)
            _, w_dec = run_steps(model, decayed, x, y, **common)
            for route, w in (("penalty", w_pen), ("decay", w_dec)):
                bad = ~np.isfinite(np.asarray(w)).all(axis=1)
                if bad.any():
                    step = int(np.argmax(bad))
                    err = Diverged(step // (len(w) // args.epochs), step, None, None)
                    err.variant = f"{name}: {route}"
                    raise err
            rows[name] = {"max_abs_dw": float(jnp.max(jnp.abs(w_pen - w_dec))),
                          "final_w_norm_penalty": float(jnp.linalg.norm(w_pen[-1])),
                          "final_w_norm_decay": float(jnp.linalg.norm(w_dec[-1]))}
            steps = range(1, len(w_pen) + 1)
            series[f"{name}: penalty"] = (steps, jnp.linalg.norm(w_pen, axis=1))
            series[f"{name}: decay"] = (steps, jnp.linalg.norm(w_dec, axis=1))
        header = f"{'optimizer':<36} {'max |dw|':>10} {'||w|| penalty':>14} {'||w|| decay':>12}"
        run.say("\n".join([header, "-" * len(header)] + [
            f"{n:<36} {r['max_abs_dw']:>10.3g} {r['final_w_norm_penalty']:>14.4f} {r['final_w_norm_decay']:>12.4f}"
            for n, r in rows.items()]))
        plot = plot_series(series, run.out / "decay_vs_penalty.png", xlabel="step", ylabel="||w||_2", logy=True,
                           title=f"penalty vs decoupled decay, lambda={args.lam:g}")
        run.say(f"plot: {plot}")
        run.finish({"final": rows, "plots": [str(plot)]})
    return rows


if __name__ == "__main__":
    runner.script(main)
