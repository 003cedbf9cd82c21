"""D2L §5.7's exercises answered by cross-validation (numbered as the English edition numbers them; ``zh2`` is the
Chinese edition's extra question), and the house-price run's plots.

Every variant is cross-validated over the same small grid (``--exercise-lrs`` × ``--exercise-weight-decays``;
raw prices over ``--raw-lrs``: Adam's steps are in parameter units, and raw-price parameters are ~10⁵ times
larger), so each is compared at its own best configuration: a preprocessing choice is not judged at another
choice's learning rate.
"""
from __future__ import annotations

import argparse
from typing import Any, Optional

import jax
import numpy as np

from exercise_answers.common import answer, markdown, paired, signed
from kaggle_house.study import axes_of, best_line, cross_validate_house, missing_not_at_random

from regjax.plots import plot_heatmap, plot_panels

__all__ = ["EXERCISES", "exercise_variants", "answer_exercises", "house_plots"]

EXERCISES = ("2", "4", "5", "zh2")
QUESTIONS = {
    "2": "Is it always a good idea to replace missing values by a mean? Hint: can you construct a situation where "
         "the values are not missing at random?",
    "4": "Improve the score by improving the model (e.g., layers, weight decay, and dropout).",
    "5": "What happens if we do not standardize the continuous numerical features as we have done in this section?",
    "zh2": "(Chinese edition) Can you improve the model by minimizing the log-price directly? What happens if you "
           "try to predict the log price rather than the price?",
}
# The strongest single predictor, and not derived from other columns (GrLivArea is exactly 1stFlrSF + 2ndFlrSF +
# LowQualFinSF: hiding it hides nothing). Ties at the cut are broken by row order.
MNAR_COLUMN, MNAR_FRACTION = "OverallQual", 0.3


def _compare(run: Any, data: Any, exercise: str, variants: dict) -> dict:
    """Cross-validate each variant (name -> keyword overrides) and return {name: figures}."""
    out = {}
    for name, spec in variants.items():
        spec = dict(spec)
        train, test = spec.pop("frames", (data.train, data.test))
        model_args = spec.pop("model_args", None)
        axes = spec.pop("axes")
        cv, _, _ = cross_validate_house(run, f"ex{exercise}_{name}", train, test, axes, model_args=model_args,
                                        **spec)
        per_lambda = _best_per_lambda(cv)
        out[name] = {"best": cv.configs[cv.best], "mean": float(cv.mean[cv.best]), "std": float(cv.std[cv.best]),
                     "per_fold": cv.per_fold[:, cv.best].tolist(), "line": best_line(cv), "per_lambda": per_lambda}
        run.say(f"  [{exercise}] {name}: validation log RMSE {best_line(cv)}")
    return out


def _best_per_lambda(cv: Any) -> dict:
    """For each weight decay λ: the best mean over the other axes, with its std."""
    lams = sorted({c["weight_decay"] for c in cv.configs})
    rows = {"lambdas": lams, "mean": [], "std": []}
    for lam in lams:
        idx = [i for i, c in enumerate(cv.configs) if c["weight_decay"] == lam]
        finite = [i for i in idx if np.isfinite(cv.mean[i])]
        i = min(finite, key=lambda j: cv.mean[j]) if finite else idx[0]
        rows["mean"].append(float(cv.mean[i]))
        rows["std"].append(float(cv.std[i]))
    return rows


def exercise_variants(exercise: str, data: Any, args: argparse.Namespace) -> dict:
    """The variants an exercise compares: name -> the overrides of ``cross_validate_house`` (``frames``,
    ``model_args``, ``axes``, ``missing``, ``standardize``, ``target``)."""
    small = axes_of(args, args.exercise_lrs, args.exercise_weight_decays)
    if exercise == "2":
        key = jax.random.key(args.seed)

        def frames(at_random):
            return tuple(missing_not_at_random(f, MNAR_COLUMN, MNAR_FRACTION, k, at_random=at_random)
                         for f, k in zip((data.train, data.test), jax.random.split(key)))

        mnar, mcar = frames(False), frames(True)
        return {f"{what}_{mode}": {"frames": fr, "missing": mode, "axes": small}
                for what, fr in (("complete", (data.train, data.test)), ("mnar", mnar), ("mcar", mcar))
                for mode in ("mean", "indicator")}
    if exercise == "4":
        mlp = argparse.Namespace(**{**vars(args), "model": "mlp", "hidden": [64], "dropouts": [0.0, 0.2, 0.5]})
        return {"linear": {"axes": axes_of(argparse.Namespace(**{**vars(args), "model": "linear"}),
                                           args.exercise_lrs, args.exercise_weight_decays),
                           "model_args": argparse.Namespace(**{**vars(args), "model": "linear"})},
                "mlp_64_dropout": {"axes": axes_of(mlp, args.exercise_lrs, args.exercise_weight_decays),
                                   "model_args": mlp}}
    if exercise == "5":
        return {"standardized": {"axes": small}, "raw_features": {"axes": small, "standardize": False}}
    return {"log_prices": {"axes": small, "target": "log"},
            "raw_prices": {"axes": axes_of(args, args.raw_lrs, args.exercise_weight_decays), "target": "raw"}}


def _paired(r: dict, a: str, b: str) -> str:
    """'a − b = Δ ± SE': the difference of two variants' best figures, paired over the same folds."""
    diff = np.asarray(r[a]["per_fold"]) - np.asarray(r[b]["per_fold"])
    p = paired(diff)
    verdict = "within 2 SE" if not p["beyond"] else "lower" if p["mean"] < 0 else "higher"
    return (f"{a} − {b} = {signed(p)} (paired over folds: {verdict}; lower in {int((diff < 0).sum())} of "
            f"{len(diff)} folds)")


def _answer_text(exercise: str, r: dict) -> str:
    """The measured figures (each variant at its own best configuration) and the paired differences that answer
    the question; what they mean is left to the reader where the data do not settle it."""
    lines = "; ".join(f"{name} {v['line']}" for name, v in r.items())
    pairs = {"2": [("mnar_mean", "complete_mean"), ("mnar_indicator", "mnar_mean"), ("mcar_mean", "complete_mean"),
                   ("mcar_indicator", "mcar_mean")],
             "4": [("mlp_64_dropout", "linear")], "5": [("raw_features", "standardized")],
             "zh2": [("raw_prices", "log_prices")]}[exercise]
    setup = {"2": f"{MNAR_COLUMN} (overall quality, 1-10) removed from the {MNAR_FRACTION:.0%} highest values "
                  f"(MNAR) or from as many random rows (MCAR), in train and test; 'indicator' adds a 0/1 "
                  f"<column>_missing feature beside the mean. ",
             "4": "one hidden layer of 64 (ReLU, He init), dropout 0 / 0.2 / 0.5 and weight decay cross-validated. ",
             "5": "numeric features standardized vs left raw (mean-imputed). ",
             "zh2": "log prices with ½·MSE vs prices with MSE (the Chinese edition's code), scored by log RMSE. "}
    return (f"{setup[exercise]}Validation log RMSE: {lines}. " + "; ".join(_paired(r, a, b) for a, b in pairs)
            + ".")


def answer_exercises(run: Any, data: Any, args: argparse.Namespace) -> list:
    """Answer every exercise in ``args.exercises``; writes one plot each and exercises.md in ``--out``."""
    answers = []
    for exercise in args.exercises:
        run.say(f"exercise {exercise}: {QUESTIONS[exercise]}")
        results = _compare(run, data, exercise, exercise_variants(exercise, data, args))
        panels = [{"series": {name: (r["per_lambda"]["lambdas"], r["per_lambda"]["mean"])
                              for name, r in results.items()},
                   "xlabel": "weight decay λ (best lr at each)", "ylabel": "validation log RMSE (mean over folds)",
                   "xscale": "symlog", "yscale": "log", "title": f"§5.7 exercise {exercise}: over λ"},
                  {"series": {name: (np.arange(1, args.k + 1), r["per_fold"]) for name, r in results.items()},
                   "xlabel": "fold", "ylabel": "validation log RMSE", "yscale": "log",
                   "title": "each variant at its best, per fold (paired)"}]
        plot = plot_panels(panels, run.out / f"kaggle_ex_{exercise}.png", f"{args.k}-fold cross-validation")
        answers.append(answer(f"5.7.{exercise}", QUESTIONS[exercise], _answer_text(exercise, results), plot,
                              **results))
        run.say(f"  answer: {answers[-1]['answer']}")
    (run.out / "exercises.md").write_text(markdown(answers))
    return answers


def house_plots(run: Any, cv: Any, choice: int, ridge: Optional[dict], args: argparse.Namespace) -> list:
    """The validation heat map (λ × lr), the curve over λ at the chosen lr with the closed-form ridge beside it,
    and the chosen configuration's epoch curves per fold."""
    config = cv.configs[choice]
    same = [i for i, c in enumerate(cv.configs) if all(c[k] == config[k] for k in c if k not in ("weight_decay", "lr"))]
    lams, lrs = sorted({cv.configs[i]["weight_decay"] for i in same}), sorted({cv.configs[i]["lr"] for i in same})
    grid = np.full((len(lams), len(lrs)), np.nan)
    for i in same:
        grid[lams.index(cv.configs[i]["weight_decay"]), lrs.index(cv.configs[i]["lr"])] = cv.mean[i]
    heat = plot_heatmap(np.minimum(grid, 1.0), lams, lrs, run.out / "kaggle_house_grid.png", xlabel="learning rate",
                        ylabel="weight decay λ", title="validation log RMSE (mean over folds; capped at 1)")
    on_lr = sorted((i for i in same if cv.configs[i]["lr"] == config["lr"]),
                   key=lambda i: cv.configs[i]["weight_decay"])
    x = [cv.configs[i]["weight_decay"] for i in on_lr]
    series = {f"trained, lr {config['lr']}": (x, cv.mean[on_lr], cv.std[on_lr])}
    if ridge is not None:
        at = [ridge["lambdas"].index(v) for v in x]
        for name in ("clean", "leaky"):
            series[f"closed-form ridge ({name})"] = (x, np.asarray(ridge[name]).mean(axis=0)[at], None)
    marks = {f"best λ {cv.configs[cv.best]['weight_decay']:g}": cv.configs[cv.best]["weight_decay"],
             f"one-SE λ {cv.configs[cv.one_se]['weight_decay']:g}": cv.configs[cv.one_se]["weight_decay"]}
    members = cv.members_of(choice).reshape(-1)
    epochs = np.arange(1, cv.result.history.epochs + 1)
    curves = {f"{split} sqrt(2·loss)": (epochs, np.sqrt(2 * cv.result.history.metric(m)[:, members]).mean(axis=1),
                                         np.sqrt(2 * cv.result.history.metric(m)[:, members]).std(axis=1))
              for split, m in (("training", "train_loss"), ("validation", "test_loss"))}
    panels = [{"series": series, "marks": marks, "xlabel": "weight decay λ", "ylabel": "validation log RMSE",
               "xscale": "symlog", "title": "validation curve (± std over folds)"},
              {"series": curves, "xlabel": "epoch", "ylabel": "log RMSE" if args.target == "log" else "RMSE ($)",
               "yscale": "log", "title": "chosen configuration, mean ± std over folds"}]
    return [heat, plot_panels(panels, run.out / "kaggle_house.png", "house prices: k-fold cross-validation")]
