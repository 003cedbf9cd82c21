#!/usr/bin/env python
"""D2L §3.2/§3.3: linear regression on synthetic data (w = [2, −3.4], b = 4.2, noise 0.01, 1000 examples,
batch 10, lr 0.03, 3 epochs), from scratch (``sgd_step``) and with ``optax.sgd``; prints the estimation error
of w and b."""
from __future__ import annotations

import time

import jax
import jax.numpy as jnp
import optax

from regjax import cli
from regjax.data import synthetic_linear
from regjax.models.adapters import scratch_linreg
from regjax.report import plot_histories
from regjax.train import fit

TRUE_W, TRUE_B = (2.0, -3.4), 4.2


def main(argv=None):
    p = cli.parser(__doc__, epochs=3, lr=0.03, batch_size=10, out="runs/linear_regression",
                   impls=["scratch", "optax"])
    p.add_argument("--n", type=int, default=1000, help="training examples (a fresh set of n is the test set)")
    args = p.parse_args(argv)
    started = time.perf_counter()
    progress = cli.setup(args)
    data_key, train_key = jax.random.split(jax.random.key(args.seed))
    x, y = synthetic_linear(data_key, jnp.array(TRUE_W), TRUE_B, 2 * args.n, 0.01)
    data = (x[:args.n], y[:args.n], x[args.n:], y[args.n:])
    optimizer = None if args.impl == "scratch" else optax.sgd(args.lr)
    hparams = {"lr": args.lr} if args.impl == "scratch" else {}
    state, history = fit(scratch_linreg(2), optimizer, data, epochs=args.epochs, batch_size=args.batch_size,
                         key=train_key, hparams=hparams, loss="squared",
                         on_epoch=progress.callback(args.impl, args.epochs))
    w = state.params["dense0"]["kernel"][:, 0]
    b = state.params["dense0"]["bias"][0]
    errors = {"w_error": (jnp.array(TRUE_W) - w).tolist(), "b_error": float(TRUE_B - b),
              "w": w.tolist(), "b": float(b)}
    progress.say(f"error in estimating w: {[f'{e:+.5f}' for e in errors['w_error']]}\n"
                 f"error in estimating b: {errors['b_error']:+.5f}")
    plot = plot_histories({args.impl: history}, args.out / "linear_regression.png", "Linear regression")
    progress.say(f"plot: {plot}")
    cli.save_results(args, "linear_regression", {"final": {**history.final(), **errors},
                                                 "history": history.to_dict(), "plots": [str(plot)]},
                     progress, started)
    return errors


if __name__ == "__main__":
    main()
