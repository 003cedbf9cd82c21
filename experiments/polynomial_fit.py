#!/usr/bin/env python
"""D2L §3.6: under-/normal/over-fitting a cubic with 2, 4 and 20 polynomial features x^i/i! (100 train, 100
test, noise 0.1, batch 10; lr 0.02 = D2L's 0.01 on MSELoss, whose gradient is twice that of our ½(ŷ−y)²).
Epochs follow D2L per model: 400 for 2 and 4 features, 1500 for the 20-feature (overfitting) fit -- in general
``--overfit-epochs``, by default ``--epochs`` × 1500/400. Prints the learned weights (4 features ≈ [5, 1.2, −3.4,
5.6]) and whether the 20-feature test loss ends above the 4-feature one; ``--lam`` applies weight decay to the
20-feature fit.

``--sweep`` shows *when* 20 features overfit, as vectorized sweeps (one compiled program per n_train): 4 vs 20
features × noise {0.1, 0.3, 1} × 10 data draws, for n_train {20, 100, 1000}, with the test loss after every
epoch. The 4-feature model there is the 20-feature one with features 5-20 set to 0 (same program, no gradient
reaches their weights). The ratio of the mean test losses (20 / 4 features) against epochs, and in how many
draws the 20-feature model tests worse, say where the overfit shows."""
from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np

from regjax import runner, scratch_sgd
from regjax.data import polynomial_data, seed_keys
from regjax.engine import grid
from regjax.models.adapters import scratch_linreg
from regjax.plots import plot_panels

SWEEP_NOISES = (0.1, 0.3, 1.0)
SWEEP_N_TRAIN = (20, 100, 1000)
SWEEP_DRAWS = 10


def main(argv=None):
    p = runner.parser(__doc__, epochs=400, lr=0.02, batch_size=10, out="runs/polynomial_fit")
    p.add_argument("--features", type=runner.positive_int, nargs="+", default=[4, 2, 20], help="feature counts to fit")
    p.add_argument("--lam", type=runner.nonnegative_float, default=0.0, help="weight decay for the 20-feature fit")
    p.add_argument("--overfit-epochs", type=runner.positive_int, default=None,
                   help="epochs of the 20-feature fit (default: --epochs x 1500/400, D2L's 1500 for 400)")
    p.add_argument("--sweep", action="store_true",
                   help="also sweep noise x n_train x data draws (4 vs 20 features, --overfit-epochs epochs)")
    with runner.Run("polynomial_fit", p, argv) as run:
        args = run.args
        run.set_dataset({"name": "polynomial", "n_train": 100, "n_test": 100}, n_train=100)
        data_key, train_key = seed_keys(args.seed)
        if len(set(args.features)) != len(args.features) or max(args.features) > 170:
            # x^i / i! needs i! as a float64: 170! is the largest that fits
            run.error(f"--features must be distinct counts in [1, 170], got {' '.join(map(str, args.features))}")
        d = polynomial_data(data_key, 100, 100, max(20, *args.features))
        rows = {}
        overfit_epochs = args.overfit_epochs or -(-args.epochs * 1500 // 400)
        variants = [(k, overfit_epochs if k == 20 else args.epochs) for k in args.features]
        if 4 in args.features and 20 in args.features and overfit_epochs != args.epochs:
            variants.append((4, overfit_epochs))  # the right model at the overfit model's epochs: a fair contrast
        for k, epochs in variants:
            name = f"{k} features" + (f", lambda={args.lam:g}" if k == 20 and args.lam else "")
            name += f", {epochs} epochs" if k == 4 and epochs != args.epochs else ""
            hparams = {"lam": args.lam} if k == 20 and args.lam else {}
            state, history = run.fit(name, scratch_linreg(k, use_bias=False), scratch_sgd(args.lr),
                                     (d.x_train[:, :k], d.y_train, d.x_test[:, :k], d.y_test), epochs=epochs,
                                     key=train_key, hparams=hparams, loss="squared", progress_every=50)
            w = state.params["dense0"]["kernel"][:, 0]
            rows[name] = {"features": k, "epochs": epochs, "weights": w.tolist(), **history.final()}
            run.say(f"[{name}] weights {[round(float(v), 3) for v in w[:6]]}{' ...' if k > 6 else ''}  "
                    f"train {rows[name]['train_loss']:.4f}  test {rows[name]['test_loss']:.4f}")
        plot = run.plot_histories("polynomial_fit.png", "Polynomial fit")
        run.say("true weights [5.0, 1.2, -3.4, 5.6]")
        overfit = _overfit_check(rows)
        if overfit:
            reach = {"train_abs_x_max": float(abs(d.raw_train).max()), "test_abs_x_max": float(abs(d.raw_test).max())}
            overfit.update(reach)
            run.say(f"{overfit['message']} (|x| reaches {reach['train_abs_x_max']:.2f} in training, "
                    f"{reach['test_abs_x_max']:.2f} in test)")
        out = {"true_w": d.true_w[:4].tolist(), "final": rows, "overfit_check": overfit, "plots": [str(plot)]}
        if args.sweep:
            out["sweep"] = overfit_sweep(run, overfit_epochs)
            out["plots"].append(out["sweep"]["plot"])
        run.finish(out)
    return rows


def overfit_sweep(run, epochs: int) -> dict:
    """Test loss of 20 vs 4 features over noise x data draws (one sweep per n_train), after every epoch."""
    args = run.args
    mask = {k: (jnp.arange(20) < k).astype(jnp.float32) for k in (4, 20)}
    x_epochs = np.arange(1, epochs + 1)
    panels, table = [], []
    for n_train in SWEEP_N_TRAIN:
        datasets, arrays, outside = [], [], []
        for noise in SWEEP_NOISES:
            for draw in range(SWEEP_DRAWS):
                key = jax.random.fold_in(jax.random.key(args.seed), 1000 * draw + int(noise * 100))
                d = polynomial_data(key, n_train, 100, 20, noise=noise)
                # does the test set reach beyond the training inputs (where x^19/19! extrapolates)?
                outside.append(float(jnp.abs(d.raw_test).max()) > float(jnp.abs(d.raw_train).max()))
                for k in (4, 20):
                    arrays.append((d.x_train * mask[k], d.y_train, d.x_test * mask[k], d.y_test))
                    datasets.append({"features": k, "noise": noise, "draw": draw})
        data = tuple(jnp.stack(a) for a in zip(*arrays))
        members = grid([args.seed], datasets=datasets, lr=args.lr)
        result = run.sweep(f"overfit sweep n_train={n_train}", scratch_linreg(20, use_bias=False),
                           scratch_sgd(args.lr), data,
                           members, epochs=epochs, batch_size=min(args.batch_size, n_train), loss="squared",
                           progress_every=epochs)
        test = result.history.metric("test_loss").reshape(epochs, len(SWEEP_NOISES), SWEEP_DRAWS, 2)
        mean = test.mean(axis=2)  # (epochs, noise, features) over the data draws
        outside_draws = np.asarray(outside).reshape(len(SWEEP_NOISES), SWEEP_DRAWS)
        series = {}
        for i, noise in enumerate(SWEEP_NOISES):
            series[f"noise {noise:g}"] = (x_epochs, mean[:, i, 1] / mean[:, i, 0])
            for at in sorted({min(400, epochs), epochs}):
                table.append({"n_train": n_train, "noise": noise, "epoch": at, "test_loss_4": float(mean[at - 1, i, 0]),
                              "test_loss_20": float(mean[at - 1, i, 1]),
                              "ratio": float(mean[at - 1, i, 1] / mean[at - 1, i, 0]),
                              "draws_20_worse": int((test[at - 1, i, :, 1] > test[at - 1, i, :, 0]).sum()),
                              "draws_test_outside": int(outside_draws[i].sum()),
                              "ratio_test_outside": _ratio(test[at - 1, i], outside_draws[i]),
                              "ratio_test_inside": _ratio(test[at - 1, i], ~outside_draws[i])})
        panels.append({"series": series, "xlabel": "epoch", "ylabel": "mean test loss, 20 / 4 features",
                       "xscale": "log", "yscale": "log", "title": f"n_train = {n_train}"})
    run.say("\n".join([f"{'n_train':>7} {'noise':>5} {'epoch':>5} {'test 4':>9} {'test 20':>9} {'20/4':>6} "
                        f"{'draws 20 worse':>14}   20/4 where the test set reaches beyond the training x: yes | no"] +
                       [f"{r['n_train']:>7} {r['noise']:>5g} {r['epoch']:>5} {r['test_loss_4']:>9.4g} "
                        f"{r['test_loss_20']:>9.4g} {r['ratio']:>6.2f} {r['draws_20_worse']:>8}/{SWEEP_DRAWS}"
                        f"   {r['ratio_test_outside']:>8.3g} ({r['draws_test_outside']} draws) | "
                        f"{r['ratio_test_inside']:.3g}" for r in table]))
    plot = plot_panels(panels, run.out / "polynomial_overfit_sweep.png",
                       f"When do 20 polynomial features overfit? (test losses averaged over {SWEEP_DRAWS} data draws)")
    run.say(f"plot: {plot}")
    return {"noises": list(SWEEP_NOISES), "n_train": list(SWEEP_N_TRAIN), "draws": SWEEP_DRAWS, "epochs": epochs,
            "table": table, "plot": str(plot)}


def _ratio(test, which):
    """Mean test loss of 20 over 4 features among the draws ``which`` (NaN if none)."""
    return float(test[which, 1].mean() / test[which, 0].mean()) if which.any() else float("nan")


def _overfit_check(rows):
    """20 features (no weight decay) against 4, at D2L's epochs per model and at equal epochs: is the final test
    loss of the big model above the right one's?"""
    twenty = next((r for n, r in rows.items() if r["features"] == 20 and "lambda" not in n), None)
    fours = [r for r in rows.values() if r["features"] == 4]
    if twenty is None or not fours:
        return None
    checks = [{"epochs_4": r["epochs"], "epochs_20": twenty["epochs"], "test_loss_4": r["test_loss"],
               "test_loss_20": twenty["test_loss"], "ratio": twenty["test_loss"] / r["test_loss"]} for r in fours]
    message = "overfit check: " + "; ".join(
        f"20 features ({c['epochs_20']} epochs) test loss {c['test_loss_20']:.4f} vs {c['test_loss_4']:.4f} for 4 "
        f"features ({c['epochs_4']} epochs): {c['ratio']:.2f}x" for c in checks)
    return {"checks": checks, "message": message}


if __name__ == "__main__":
    runner.script(main)
