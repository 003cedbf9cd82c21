#!/usr/bin/env python
"""D2L §3.6: under-/normal/over-fitting a cubic with 2, 4 and 20 polynomial features x^i/i! (100 train, 100
test, noise 0.1, 400 epochs, batch 10; lr 0.02 = D2L's 0.01 on MSELoss, whose gradient is twice that of our
½(ŷ−y)²). Prints the learned weights (4 features ≈ [5, 1.2, −3.4, 5.6]); ``--lam`` applies weight decay to the
20-feature fit."""
from __future__ import annotations

import jax

from regjax import cli
from regjax.data import polynomial_data
from regjax.models.adapters import scratch_linreg
from regjax.report import plot_histories


def main(argv=None):
    p = cli.parser(__doc__, epochs=400, lr=0.02, batch_size=10, out="runs/polynomial_fit")
    p.add_argument("--features", type=cli.positive_int, nargs="+", default=[4, 2, 20], help="feature counts to fit")
    p.add_argument("--lam", type=cli.nonnegative_float, default=0.0, help="weight decay for the 20-feature fit")
    with cli.Run("polynomial_fit", p, argv) as run:
        args = run.args
        run.set_dataset({"name": "polynomial", "n_train": 100, "n_test": 100}, n_train=100)
        data_key, train_key = jax.random.split(jax.random.key(args.seed))
        d = polynomial_data(data_key, 100, 100, max(20, *args.features))
        rows = {}
        for k in args.features:
            name = f"{k} features" + (f", lambda={args.lam:g}" if k == 20 and args.lam else "")
            hparams = {"lr": args.lr}
            if k == 20 and args.lam:
                hparams["lam"] = args.lam
            state, history = run.fit(name, scratch_linreg(k, use_bias=False), None,
                                     (d.x_train[:, :k], d.y_train, d.x_test[:, :k], d.y_test), epochs=args.epochs,
                                     key=train_key, hparams=hparams, loss="squared", progress_every=50)
            w = state.params["dense0"]["kernel"][:, 0]
            rows[name] = {"weights": w.tolist(), **history.final()}
            run.say(f"[{name}] weights {[round(float(v), 3) for v in w[:6]]}{' ...' if k > 6 else ''}  "
                    f"train {history.train_loss[-1]:.4f}  test {history.test_loss[-1]:.4f}")
        plot = plot_histories(run.histories, run.out / "polynomial_fit.png", "Polynomial fit")
        run.say(f"true weights [5.0, 1.2, -3.4, 5.6]\nplot: {plot}")
        run.finish({"true_w": d.true_w[:4].tolist(), "final": rows, "plots": [str(plot)]})
    return rows


if __name__ == "__main__":
    main()
