#!/usr/bin/env python
"""D2L §3.2/§3.3: linear regression on synthetic data (w = [2, −3.4], b = 4.2, noise 0.01, 1000 examples,
lr 0.03, 3 epochs; batch 10 with ``--preset zh-v2``, the default, 32 with ``--preset en``), from scratch (``sgd_step``) and with ``optax.sgd``; prints the estimation error
of w and b."""
from __future__ import annotations

import jax.numpy as jnp

from regjax import runner
from regjax.data import seed_keys, synthetic_linear
from regjax.models.adapters import scratch_linreg
from regjax.optim import sgd_for

TRUE_W, TRUE_B = (2.0, -3.4), 4.2


def main(argv=None):
    p = runner.parser(__doc__, epochs=3, lr=0.03, batch_size=10, out="runs/linear_regression",
                   impls=["scratch", "optax"])
    p.add_argument("--n", type=runner.positive_int, default=1000,
                   help="training examples (a fresh set of n is the test set)")
    runner.add_presets(p, {"zh-v2": {"help": "the Chinese edition (zh-v2) and English r0.17", "batch_size": 10},
                           "en": {"help": "the English edition (d2l-en master)", "batch_size": 32}})
    with runner.Run("linear_regression", p, argv) as run:
        args = run.args
        run.set_dataset({"name": "synthetic_linear", "n_train": args.n, "n_test": args.n}, n_train=args.n)
        data_key, train_key = seed_keys(args.seed)
        x, y = synthetic_linear(data_key, jnp.array(TRUE_W), TRUE_B, 2 * args.n, 0.01)
        data = (x[:args.n], y[:args.n], x[args.n:], y[args.n:])
        state, history = run.fit(args.impl, scratch_linreg(2), sgd_for(args.impl, args.lr), data, epochs=args.epochs,
                                 key=train_key, loss="squared")
        w = state.params["dense0"]["kernel"][:, 0]
        b = state.params["dense0"]["bias"][0]
        errors = {"w_error": (jnp.array(TRUE_W) - w).tolist(), "b_error": float(TRUE_B - b),
                  "w": w.tolist(), "b": float(b)}
        run.say(f"error in estimating w: {[f'{e:+.5f}' for e in errors['w_error']]}\n"
                f"error in estimating b: {errors['b_error']:+.5f}")
        plot = run.plot_histories("linear_regression.png", "Linear regression")
        run.finish({"final": {**history.final(), **errors}, "plots": [str(plot)]})
    return errors


if __name__ == "__main__":
    runner.script(main)
