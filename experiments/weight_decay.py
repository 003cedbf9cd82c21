#!/usr/bin/env python
"""D2L §3.7: weight decay on high-dimensional linear regression (n_train 20, n_test 100, d 200, batch 5,
lr 0.003, 100 epochs, w = 0.01·1, b = 0.05, noise 0.01, w0 ~ N(0, 1)). ``--impl scratch`` adds λ/2‖w‖² to the
loss; ``--impl optax`` uses add_decayed_weights (bias not decayed). Prints ‖w‖₂ per λ."""
from __future__ import annotations

import time

import jax
import jax.numpy as jnp

from regjax import cli, decayed_sgd
from regjax.data import synthetic_linear
from regjax.models.adapters import scratch_linreg
from regjax.report import plot_histories
from regjax.train import fit


def main(argv=None):
    p = cli.parser(__doc__, epochs=100, lr=0.003, batch_size=5, out="runs/weight_decay", impls=["scratch", "optax"])
    p.add_argument("--lambdas", type=float, nargs="+", default=[0.0, 3.0])
    p.add_argument("--n-train", type=int, default=20)
    p.add_argument("--n-test", type=int, default=100)
    p.add_argument("--num-inputs", type=int, default=200)
    args = p.parse_args(argv)
    if any(lam < 0 for lam in args.lambdas):
        p.error(f"--lambdas must be >= 0, got {args.lambdas}")
    started = time.perf_counter()
    progress = cli.setup(args)
    data_key, train_key = jax.random.split(jax.random.key(args.seed))
    x, y = synthetic_linear(data_key, 0.01 * jnp.ones(args.num_inputs), 0.05, args.n_train + args.n_test, 0.01)
    data = (x[:args.n_train], y[:args.n_train], x[args.n_train:], y[args.n_train:])
    model = scratch_linreg(args.num_inputs, weight_init=jax.nn.initializers.normal(1.0))
    histories, rows = {}, {}
    for lam in args.lambdas:
        name = f"lambda={lam:g}"
        if args.impl == "scratch":
            optimizer, hparams = None, {"lr": args.lr, "lam": lam}
        else:
            optimizer, hparams = decayed_sgd(args.lr, lam), {}
        state, history = fit(model, optimizer, data, epochs=args.epochs, batch_size=args.batch_size, key=train_key,
                             hparams=hparams, loss="squared", on_epoch=progress.callback(name, args.epochs))
        w_norm = float(jnp.linalg.norm(state.params["dense0"]["kernel"]))
        histories[name] = history
        rows[name] = {"lambda": lam, "w_norm": w_norm, **history.final()}
        progress.say(f"[{name}] ||w||_2 = {w_norm:.4f}  train loss {history.train_loss[-1]:.4g}  "
                     f"test loss {history.test_loss[-1]:.4g}")
    plot = plot_histories(histories, args.out / "weight_decay.png", f"Weight decay ({args.impl})")
    progress.say(f"plot: {plot}")
    cli.save_results(args, "weight_decay", {"dataset": {"name": "synthetic_linear", "n_train": args.n_train,
                                                        "n_test": args.n_test, "d": args.num_inputs},
                                            "final": rows, "history": {k: h.to_dict() for k, h in histories.items()},
                                            "plots": [str(plot)]}, progress, started)
    return rows


if __name__ == "__main__":
    main()
