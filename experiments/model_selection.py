#!/usr/bin/env python
"""Model selection by k-fold cross-validation (D2L §3.7 exercise: "use a validation set to find the optimal λ --
is it really the optimal value? does this matter?").

``regjax.selection.select_lambda`` trains folds × λ × seeds as ONE vectorized sweep (each fold its own model)
and returns the validation curve (mean ± std over folds), the best λ and the one-standard-error λ. The same λ
grid is then trained on the whole training set (× seeds) and scored on the test set: the test curve beside the
validation curve answers the question.

--data synthetic   D2L §3.7's problem (n_train 20, n_test 100, d 200, batch 5, lr 0.003, 100 epochs)
--data diabetes    scikit-learn's diabetes regression (353 train / 89 test, 10 standardized features)
"""
from __future__ import annotations

import argparse
import functools

import jax
import numpy as np

from regjax import runner, scratch_sgd
from regjax.data import load_diabetes
from regjax.engine import grid, group_stats
from regjax.models.adapters import scratch_linreg
from regjax.plots import plot_panels
from regjax.selection import select_lambda
from weight_decay import weight_decay_problem

DATASETS = ("synthetic", "diabetes")
DEFAULTS = {"synthetic": dict(epochs=100, lr=0.003, batch_size=5),
            "diabetes": dict(epochs=200, lr=0.01, batch_size=32)}
LAMBDAS = {"synthetic": [0.0] + [3.0 * 10 ** (j / 4) for j in range(-5, 10)],
           "diabetes": [0.0] + [float(v) for v in np.geomspace(1e-3, 10.0, 15)]}


def build_parser(dataset: str) -> argparse.ArgumentParser:
    p = runner.parser(__doc__, out=f"runs/model_selection_{dataset}", **DEFAULTS[dataset])
    p.add_argument("--data", choices=DATASETS, default="synthetic")
    p.add_argument("--k", type=runner.positive_int, default=5, help="folds")
    p.add_argument("--seeds", type=runner.positive_int, default=4, help="training seeds per (fold, λ)")
    p.add_argument("--lambdas", type=runner.nonnegative_float, nargs="+", default=LAMBDAS[dataset])
    return p


def load(args):
    """``(x_train, y_train, x_test, y_test, model, summary)`` for ``--data``."""
    if args.data == "synthetic":
        data, model = weight_decay_problem(args.seed)
        return (*map(np.asarray, data), model,
                {"name": "synthetic_linear (D2L §3.7)", "n_train": 20, "n_test": 100, "d": 200})
    ds = load_diabetes()
    return (ds.x_train, ds.y_train, ds.x_test, ds.y_test, scratch_linreg(ds.x_train.shape[1]),
            {**ds.summary(), "n_train": len(ds.x_train)})


def main(argv=None):
    dataset = runner.peek_choice(argv, "--data", DATASETS, "synthetic")
    with runner.Run(f"model_selection_{dataset}", build_parser(dataset), argv) as run:
        args = run.args
        runner.distinct_values(args.lambdas, "--lambdas", run.error)
        x, y, x_test, y_test, model, summary = load(args)
        n_fold_train = (len(x) // args.k) * (args.k - 1)
        if args.k > len(x) or args.batch_size > n_fold_train:
            run.error(f"--k {args.k} with {len(x)} training examples leaves {n_fold_train} per fold's training "
                      f"part; --batch-size {args.batch_size} must not exceed it")
        run.set_dataset(summary, n_train=len(x))
        lambdas = [float(v) for v in args.lambdas]
        seeds = list(range(args.seed, args.seed + args.seeds))
        hparams = {"lr": args.lr}
        run.say(f"{args.k}-fold CV on {summary['name']}: {args.k} folds x {len(lambdas)} λ x {len(seeds)} seeds = "
                f"{args.k * len(lambdas) * len(seeds)} models in one program, {args.epochs} epochs")
        sel = select_lambda(model, scratch_sgd(args.lr), x, y, lambdas, key=jax.random.key(args.seed), k=args.k, seeds=seeds,
                            epochs=args.epochs, batch_size=args.batch_size, hparams=hparams, loss="squared",
                            train=functools.partial(run.sweep, "cross_validation",
                                                    progress_every=max(1, args.epochs // 4)))
        # the test curve: each λ trained on the whole training set, scored on the test set
        members = grid(seeds, lam=lambdas, **hparams)
        test = run.sweep("full_train", model, scratch_sgd(args.lr), (x, y, x_test, y_test), members, epochs=args.epochs,
                         loss="squared", progress_every=max(1, args.epochs // 4))
        test_stats = group_stats(members.configs, test.final("test_loss"), ["lam"])
        test_mean = np.array([s["mean"] for s in test_stats])
        test_std = np.array([s["std"] for s in test_stats])
        best_test = float(lambdas[int(np.nanargmin(test_mean))])
        at = {lam: i for i, lam in enumerate(lambdas)}
        rows = [{"lambda": lam, "validation_mean": sel.mean[i], "validation_std": sel.std[i],
                 "test_mean": test_mean[i], "test_std": test_std[i]} for i, lam in enumerate(lambdas)]
        header = f"{'lambda':>9} {'validation loss (folds)':>24} {'test loss (seeds)':>22}"
        flags = lambda lam: " ".join(f for f, v in (("<- best validation", sel.best_lambda),
                                                     ("<- one-SE", sel.one_se_lambda), ("<- best test", best_test))
                                     if v == lam)
        run.say("\n".join([header] + [f"{r['lambda']:>9.4g} {r['validation_mean']:>13.4g} ± {r['validation_std']:<8.2g}"
                                      f"{r['test_mean']:>12.4g} ± {r['test_std']:<8.2g} {flags(r['lambda'])}"
                                      for r in rows]))
        chosen, one_se = test_mean[at[sel.best_lambda]], test_mean[at[sel.one_se_lambda]]
        optimum = test_mean[at[best_test]]
        answer = (f"validation picks λ = {sel.best_lambda:.4g} (one-SE rule: {sel.one_se_lambda:.4g}); the best λ on "
                  f"the test set is {best_test:.4g}. Test loss at the chosen λ {chosen:.4g} vs {optimum:.4g} at the "
                  f"test optimum ({100 * (chosen / optimum - 1):+.1f}%); at the one-SE λ {one_se:.4g} "
                  f"({100 * (one_se / optimum - 1):+.1f}%)")
        run.say(answer)
        lam = np.asarray(lambdas)
        marks = {f"best validation λ {sel.best_lambda:.3g}": sel.best_lambda,
                 f"one-SE λ {sel.one_se_lambda:.3g}": sel.one_se_lambda}
        panels = [{"series": {f"validation ({args.k} folds)": (lam, sel.mean, sel.std)}, "marks": marks,
                   "xlabel": "λ", "ylabel": "loss", "xscale": "symlog", "yscale": "log", "title": "validation curve"},
                  {"series": {f"test ({len(seeds)} seeds)": (lam, test_mean, test_std)},
                   "marks": {**marks, f"best test λ {best_test:.3g}": best_test}, "xlabel": "λ", "ylabel": "loss",
                   "xscale": "symlog", "yscale": "log", "title": "test curve (trained on all training data)"}]
        plot = plot_panels(panels, run.out / f"model_selection_{dataset}.png",
                           f"k-fold selection of λ on {summary['name']}")
        run.say(f"plot: {plot}")
        out = {"selection": sel.to_dict(), "best_test_lambda": best_test, "per_lambda": rows, "answer": answer,
               "cross_validation": sel.result.to_dict(), "full_train": test.to_dict(), "plots": [str(plot)]}
        run.finish(out)
    return out


if __name__ == "__main__":
    runner.script(main)
