#!/usr/bin/env python
"""Predicting house prices on Kaggle (D2L §5.7; Chinese edition §4.10), with d2l's bugs fixed: leak-free
features (fitted per fold on its training rows), Kaggle's log RMSE (d2l's ½-MSE "log mse" beside it), weight
decay λ × learning rate chosen by ONE vectorized sweep over folds × λ × lr × seeds, each fold's own model in the
ensemble, and submission.csv.

Defaults follow the Chinese edition (k=5, 100 epochs, Adam, batch 64; its lr 5 and weight decay 0 are in the
grid) but train on log prices like the English edition (--target raw: the Chinese edition's prices with MSE).
The English edition's setting: --optimizer sgd --epochs 10 --lrs 0.01 --weight-decays 0.

Data: --data-dir (or $REGJAX_KAGGLE_DIR) holding kaggle_house_pred_{train,test}.csv (or Kaggle's train.csv /
test.csv), else the cache, else a download checked against d2l's SHA-1s.
Outputs in --out: results.json, submission.csv (--submit: the k fold models' ensemble, English edition, or one
model trained on all rows, Chinese edition; both are also written as submission_ensemble.csv and
submission_all_rows.csv), plots, and with --exercises the section's exercises answered by cross-validation
(exercises.md).
"""
from __future__ import annotations

import sys
from pathlib import Path

import jax
import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # experiments/: this study and the exercise answers

from kaggle_house.answers import EXERCISES, answer_exercises, house_plots  # noqa: E402
from kaggle_house.study import (  # noqa: E402
    all_rows,
    axes_of,
    house_model,
    house_optimizer,
    cross_validate_house,
    fold_ensemble,
    house_folds,
    load_house,
    predict_prices,
    ridge_cv,
    write_submission,
)

from regjax import runner  # noqa: E402

LRS = [0.001, 0.003, 0.01, 0.03, 0.1, 0.3, 1.0, 5.0]
WEIGHT_DECAYS = [0.0, 1e-3, 3e-3, 1e-2, 3e-2, 0.1, 0.3, 1.0]
EXERCISE_LRS, EXERCISE_WEIGHT_DECAYS, RAW_LRS = [0.003, 0.01, 0.03], [0.0, 1e-3, 1e-2, 0.1], [1.0, 5.0, 30.0, 300.0]


def build_parser():
    p = runner.parser(__doc__, epochs=100, lr=5.0, batch_size=64, out="runs/kaggle_house")
    p.set_defaults(lr=None)           # the learning rate is a grid here (--lrs); a lone --lr is refused, not ignored
    p.add_argument("--data-dir", default=None, help="folder with the two CSVs (default: $REGJAX_KAGGLE_DIR)")
    p.add_argument("--k", type=runner.positive_int, default=5, help="folds (k >= 2)")
    p.add_argument("--seeds", type=runner.positive_int, default=1, help="training seeds per (fold, configuration)")
    p.add_argument("--model", choices=("linear", "mlp"), default="linear")
    p.add_argument("--hidden", type=runner.positive_int, nargs="+", default=[64], help="MLP hidden widths")
    p.add_argument("--dropouts", type=runner.rate, nargs="+", default=[0.0],
                   help="MLP dropout rates to cross-validate (one rate for every hidden layer)")
    p.add_argument("--optimizer", choices=("adam", "sgd"), default="adam",
                   help="adam: Adam + L2 (torch.optim.Adam(weight_decay=λ), the Chinese edition); sgd: SGD with "
                        "weight decay (the English edition)")
    p.add_argument("--lrs", type=runner.positive_float, nargs="+", default=LRS, help="learning rates to cross-validate")
    p.add_argument("--weight-decays", type=runner.nonnegative_float, nargs="+", default=WEIGHT_DECAYS,
                   help="weight decays λ to cross-validate (the penalty λ/2·‖w‖², weights only)")
    p.add_argument("--target", choices=("log", "raw"), default="log",
                   help="train on log prices (English edition) or on prices with MSE (Chinese edition's code)")
    p.add_argument("--missing", choices=("mean", "indicator"), default="mean",
                   help="numeric NaNs: the training mean, or the mean plus a 0/1 <column>_missing feature")
    p.add_argument("--no-standardize", action="store_true", help="keep raw numeric values (exercise 5)")
    p.add_argument("--leaky", action="store_true",
                   help="reproduce d2l's leak: fit standardisation and categories on train + test rows together")
    p.add_argument("--choose", choices=("best", "one-se"), default="best",
                   help="the configuration the final models use: the best mean, or the one-standard-error rule's")
    p.add_argument("--submit", choices=("ensemble", "all-rows"), default="ensemble",
                   help="submission.csv from the k fold models (English edition) or from one model trained on all "
                        "training rows (Chinese edition)")
    p.add_argument("--exercises", choices=EXERCISES, nargs="+", default=[],
                   help="also answer these exercises of §5.7 by cross-validation ('zh2': the Chinese edition's "
                        "log-vs-raw question); exercise 3 is the main run itself")
    p.add_argument("--exercise-lrs", type=runner.positive_float, nargs="+", default=EXERCISE_LRS)
    p.add_argument("--exercise-weight-decays", type=runner.nonnegative_float, nargs="+",
                   default=EXERCISE_WEIGHT_DECAYS)
    p.add_argument("--raw-lrs", type=runner.positive_float, nargs="+", default=RAW_LRS,
                   help="exercise zh2's learning rates for raw prices")
    return p


def _check(run):
    args = run.args
    if args.lr is not None:
        run.error(f"--lr: this experiment cross-validates a grid of learning rates; use --lrs {args.lr} for one")
    for flag in ("lrs", "weight_decays", "dropouts", "exercise_lrs", "exercise_weight_decays", "raw_lrs"):
        runner.distinct_values(getattr(args, flag), f"--{flag.replace('_', '-')}", run.error)
    if args.k < 2:
        run.error(f"--k must be at least 2, got {args.k}")
    if args.model == "linear" and (args.dropouts != [0.0] or args.hidden != [64]):
        run.error("--hidden and --dropouts apply to --model mlp")


def main(argv=None):
    with runner.Run("kaggle_house", build_parser(), argv) as run:
        args = run.args
        _check(run)
        data = load_house(run)
        options = dict(leaky=args.leaky, standardize=not args.no_standardize, missing=args.missing,
                       target=args.target)
        axes = axes_of(args)
        configs = int(np.prod([len(v) for v in axes.values()]))
        run.say(f"{args.k}-fold CV: {args.model} on {args.target} prices{', LEAKY features' if args.leaky else ''}, "
                f"{args.optimizer}, {args.epochs} epochs; {args.k} folds x {configs} configurations x {args.seeds} "
                f"seeds in one program")
        cv, folds, model = cross_validate_house(run, "cross_validation", data.train, data.test, axes, **options)
        choice = cv.best if args.choose == "best" else cv.one_se
        chosen = _report(run, cv, choice)
        ensemble = fold_ensemble(model, cv, folds, choice, args.target)
        x, y, x_test, names = all_rows(data.train, data.test, **options)
        whole = house_model(args, x.shape[1])
        state, history = run.fit("all_rows", whole, house_optimizer(args), (x, y, x, y), epochs=args.epochs,
                                 hparams=cv.configs[choice], loss="squared", progress_every=max(1, args.epochs // 5))
        single = predict_prices(whole, state.params, x_test, args.target, state.model_state)
        ids = data.test["Id"].to_numpy()
        ensemble.pop("prices")                                   # (models, n_test): the mean is what is submitted
        prices = {"ensemble": ensemble["mean_prices"], "all-rows": single}
        clipped = {kind: int((p < 1).sum()) for kind, p in prices.items()}   # below $1: d2l's clip, as the score
        if any(clipped.values()):
            run.say(f"WARNING: predictions below $1 clipped to 1: {clipped}")
        prices = {kind: np.maximum(p, 1.0) for kind, p in prices.items()}
        write_submission(run.out / "submission_ensemble.csv", ids, prices["ensemble"])
        write_submission(run.out / "submission_all_rows.csv", ids, prices["all-rows"])
        submission = write_submission(run.out / "submission.csv", ids, prices[args.submit])
        run.say(f"submission: {submission} ({len(ids)} rows) from "
                + (f"the {ensemble['models']} fold models" if args.submit == "ensemble" else "one model trained on all "
                   "rows") + "; both are kept as submission_ensemble.csv and submission_all_rows.csv")
        ridge = None
        if args.model == "linear":
            leaky = house_folds(data.train, data.test, args.k, jax.random.key(args.seed), **{**options, "leaky": True})
            ridge = {"lambdas": axes["weight_decay"], "clean": ridge_cv(folds, axes["weight_decay"], args.target),
                     "leaky": ridge_cv(leaky, axes["weight_decay"], args.target)}
        plots = house_plots(run, cv, choice, ridge, args)
        out = {"selection": cv.to_dict(), "chosen": {"rule": args.choose, **chosen},
               "ensemble": {k: v for k, v in ensemble.items() if k != "mean_prices"},
               "all_rows": {"config": cv.configs[choice], "features": len(names),
                            "final_train_loss": history.test_loss[-1]},
               "ridge_closed_form_cv": None if ridge is None else {k: np.asarray(v).tolist() for k, v in ridge.items()},
               "submission": str(submission), "submit": args.submit, "clipped_below_1": clipped,
               "cross_validation": cv.result.to_dict(), "plots": [str(p) for p in plots],
               "outputs": [str(run.out / f"submission{s}.csv") for s in ("", "_ensemble", "_all_rows")]}
        if args.exercises:
            out["exercises"] = answer_exercises(run, data, args)
            out["plots"] += [a["plot"] for a in out["exercises"]]
            out["outputs"].append(str(run.out / "exercises.md"))
        run.finish(out)
    return out


def _report(run, cv, choice):
    """Print the best configurations, the best and one-SE ones and the chosen one; return the chosen figures."""
    label = lambda c: ", ".join(f"{k} {v}" for k, v in c.items())
    order = np.argsort(np.where(np.isfinite(cv.mean), cv.mean, np.inf))
    lines = [f"{'configuration':<40} {'validation log RMSE (folds)':>28} {'½·MSE (d2l)':>11}"]
    for i in order[:8]:
        marks = " ".join(m for m, j in (("<- best", cv.best), ("<- one-SE", cv.one_se)) if j == i)
        lines.append(f"{label(cv.configs[i]):<40} {cv.mean[i]:>18.4f} ± {cv.std[i]:<7.4f} "
                     f"{_half_mse(cv, i):>11.5f} {marks}")
    zh = [i for i, c in enumerate(cv.configs) if c["lr"] == 5.0 and c["weight_decay"] == 0.0]
    if zh:
        lines.append(f"the Chinese edition's setting ({label(cv.configs[zh[0]])}): {cv.mean[zh[0]]:.4f} ± "
                     f"{cv.std[zh[0]]:.4f}")
    lines.append(f"chosen ({run.args.choose}): {label(cv.configs[choice])}: validation log RMSE "
                 f"{cv.mean[choice]:.4f} ± {cv.std[choice]:.4f} over {len(cv.per_fold)} folds")
    run.say("\n".join(lines))
    return {"config": cv.configs[choice], "validation_log_rmse_mean": float(cv.mean[choice]),
            "validation_log_rmse_std": float(cv.std[choice]),
            "validation_half_mse_log": _half_mse(cv, choice), "per_fold": cv.per_fold[:, choice].tolist()}


def _half_mse(cv, i):
    """d2l-en's "average validation log mse": the mean over folds of each fold's ½·MSE of log prices (each
    fold's log RMSE r gives ½·r²)."""
    return float(0.5 * np.mean(cv.per_fold[:, i] ** 2))


if __name__ == "__main__":
    runner.script(main)
