"""Model selection: k-fold cross-validation of the weight-decay strength λ (and any other hyperparameter),
vectorized over folds × configurations × seeds (D2L §3.7 exercise "use a validation set to find the optimal λ --
is it really optimal?", §3.6.2 k-fold, §5.7 the house prices).

Every (fold, configuration, seed) is one member of ONE ``regjax.engine.sweep`` program; each fold's members train
on that fold's training part and are validated on its held-out part with their own parameters (as d2l's
``k_fold`` does; the mix-up in d2l is elsewhere: its JAX edition's *ensemble prediction* of §5.7 applies the last
fold's ``trainer.state.params`` for every fold's model -- the house-price study in experiments/kaggle_house/ uses
each fold's own). Members of one seed share their initial parameters across folds and configurations (common
random numbers: the curve's differences are not seed noise). ``cross_validate`` takes per-fold data already stacked
(for preprocessing fitted per fold, as experiments/kaggle_house/study.py does) and any grid of hyperparameters;
``select_lambda`` is its one-axis case on data that ``fold_data`` splits.

Folds are of equal size (one compiled program needs equal shapes): ``regjax.data.kfold.equal_folds`` cuts a
key-driven permutation of the n examples into k folds of ``n // k``; the ``n mod k`` examples left over (fewer
than k) take no part in the cross-validation (d2l's ``get_k_fold_data`` rule). The curve is the final-epoch
validation metric averaged over seeds, then its mean and sample standard deviation (ddof=1) over folds; the
standard error is ``std / sqrt(k)``. The one-standard-error λ is the *largest* λ (the most regularized, simplest
model) whose mean is within one standard error of the best mean (Hastie, Tibshirani & Friedman, ESL §7.10).

``ridge_closed_form`` is the exact minimizer of the objective the engine trains -- ``(1/n)·Σ ½(xᵢᵀw + b − yᵢ)²
+ λ·½‖w‖²``, bias unpenalized: setting the gradients to zero gives ``b = ȳ − x̄ᵀw`` and, with centred data,
``(XcᵀXc + nλI) w = Xcᵀyc`` -- the ``(XᵀX + nλI)⁻¹Xᵀy`` of the textbook on centred X and y.
"""
from __future__ import annotations

import dataclasses
import math
from typing import Any, Callable, Optional, Sequence, Tuple

import numpy as np

from regjax._checks import as_count, check_nonnegative
from regjax.base import ArrayLike, Model, PRNGKey
from regjax.data.kfold import equal_folds, fold_data
from regjax.engine import Members, SweepResult, grid, resolve_loss, sweep

__all__ = ["equal_folds", "fold_data", "kfold_members", "select_lambda", "Selection", "cross_validate",
           "CrossValidation", "curve", "one_se_index", "ridge_closed_form"]


def kfold_members(lambdas: Sequence[float], k: int, *, seeds: Sequence[int] = (0,), lam_key: str = "lam",
                  hparams: Optional[dict] = None, key_fn: Optional[Callable] = None) -> Members:
    """Members fold × λ × seed (seed fastest); ``hparams`` (numbers) are fixed for all, e.g. ``{'lr': 0.01}``."""
    fixed = {name: float(v) for name, v in (hparams or {}).items()}
    if lam_key in fixed:
        raise ValueError(f"hparams must not contain {lam_key!r}: it is the swept λ")
    lambdas = [check_nonnegative(float(v), "lambdas") for v in lambdas]
    return grid(seeds, folds=k, key_fn=key_fn, **{lam_key: lambdas}, **fixed)


def curve(values: np.ndarray) -> Tuple[np.ndarray, np.ndarray, np.ndarray]:
    """``(mean, std, se)`` over folds of a ``(k, L)`` array: sample std (ddof=1), se = std / sqrt(k)."""
    k = values.shape[0]
    mean = values.mean(axis=0)
    std = values.std(axis=0, ddof=1) if k > 1 else np.zeros_like(mean)
    return mean, std, std / math.sqrt(k)


def one_se_index(lambdas: ArrayLike, mean: ArrayLike, se: ArrayLike, *, maximize: bool = False) -> Tuple[int, int]:
    """``(best, one_se)`` indices: the best mean (non-finite means excluded) and the largest λ whose mean is
    within one standard error of it (of several configurations with that λ, the best)."""
    lambdas, mean, se = map(np.asarray, (lambdas, mean, se))
    score = np.where(np.isfinite(mean), -mean if maximize else mean, np.inf)
    if not np.isfinite(score).any():
        raise ValueError("no configuration has a finite validation curve (every member diverged)")
    best = int(np.argmin(score))
    ok = np.flatnonzero(score <= score[best] + se[best])
    simplest = ok[lambdas[ok] == lambdas[ok].max()]
    return best, int(simplest[np.argmin(score[simplest])])


@dataclasses.dataclass
class CrossValidation:
    """The outcome of ``cross_validate``: one validation score per (fold, configuration), its mean ± std over
    folds, the best and the one-standard-error configurations, and the sweep behind it."""

    configs: list            # C configurations (dicts of the swept values), in grid order
    metric: str              # what ``per_fold`` holds
    maximize: bool
    per_fold: np.ndarray     # (k, C): final validation score per fold and configuration (mean over seeds)
    mean: np.ndarray         # (C,)
    std: np.ndarray          # (C,) over folds, ddof=1
    se: np.ndarray           # (C,) std / sqrt(k)
    best: int
    one_se: int
    seeds: int
    result: SweepResult

    def members_of(self, config: int) -> np.ndarray:
        """(k, seeds) member indices of configuration ``config``: fold i's models are row i."""
        k, c = self.per_fold.shape
        return (np.arange(k)[:, None] * c + config) * self.seeds + np.arange(self.seeds)[None, :]

    def to_dict(self) -> dict:
        return {"metric": self.metric, "maximize": self.maximize, "k": int(self.per_fold.shape[0]),
                "seeds": self.seeds, "configs": self.configs, "validation_mean": self.mean.tolist(),
                "validation_std": self.std.tolist(), "validation_se": self.se.tolist(),
                "per_fold": self.per_fold.tolist(), "best": self.configs[self.best],
                "one_se": self.configs[self.one_se]}


def cross_validate(model: Model, optimizer: Any, data: Any, axes: dict, *, epochs: int, batch_size: int,
                   seeds: Sequence[int] = (0,), hparams: Optional[dict] = None, simplest: Optional[str] = None,
                   score: Optional[Callable[[SweepResult], np.ndarray]] = None, metric: str = "test_loss",
                   maximize: bool = False, key_fn: Optional[Callable] = None, train: Callable = sweep,
                   **sweep_kwargs: Any) -> CrossValidation:
    """k-fold cross-validation of every combination of ``axes`` (name -> values, e.g. ``{'weight_decay': [...],
    'lr': [...]}``) in ONE sweep over folds × configurations × ``seeds``.

    ``data`` is ``(x_train, y_train, x_val, y_val)`` stacked per fold (leading axis k; ``fold_data``, or
    features fitted per fold). ``hparams`` are fixed for all members. ``score(result)`` gives each member's
    validation score (N,) (default: the final ``metric`` of the sweep's history; with ``score``, ``metric`` names
    it); the curve is its mean over
    seeds, then mean ± std over folds. ``simplest`` names the axis whose largest value is the most regularized
    (the one-standard-error rule picks it; default: the first axis). ``train`` is the sweep function."""
    if not axes:
        raise ValueError("axes must name at least one hyperparameter to cross-validate")
    k = as_count(np.shape(data[0])[0], "the folds of data (its leading axis)", 2)
    simplest = simplest or next(iter(axes))
    if simplest not in axes:
        raise ValueError(f"simplest must be one of the axes {list(axes)}, got {simplest!r}")
    seeds = list(seeds)
    members = grid(seeds, folds=k, key_fn=key_fn, **axes, **{n: float(v) for n, v in (hparams or {}).items()})
    result = train(model, optimizer, data, members, epochs=epochs, batch_size=batch_size, **sweep_kwargs)
    values = np.asarray(score(result) if score is not None else result.final(metric), np.float64)
    values = values.reshape(k, -1, len(seeds)).mean(axis=2)
    configs = [{name: c[name] for name in axes} for c in members.configs[: values.shape[1] * len(seeds)
                                                                           : len(seeds)]]
    mean, std, se = curve(values)
    best, one_se = one_se_index([c[simplest] for c in configs], mean, se, maximize=maximize)
    return CrossValidation(configs, metric, maximize, values, mean, std, se, best,
                           one_se, len(seeds), result)


@dataclasses.dataclass
class Selection:
    """The outcome of ``select_lambda``: its ``CrossValidation`` over the one axis λ, seen as a λ curve
    (``per_fold`` (k, L), ``mean``/``std``/``se`` (L,)), the chosen λ's, the folds and the sweep behind it."""

    cv: CrossValidation
    lambdas: np.ndarray
    metric: str              # 'loss' (lower is better) or 'accuracy' (higher is better)
    folds: np.ndarray        # (k, n // k) validation indices

    per_fold = property(lambda self: self.cv.per_fold)
    mean = property(lambda self: self.cv.mean)
    std = property(lambda self: self.cv.std)
    se = property(lambda self: self.cv.se)
    result = property(lambda self: self.cv.result)
    best_lambda = property(lambda self: float(self.lambdas[self.cv.best]))
    one_se_lambda = property(lambda self: float(self.lambdas[self.cv.one_se]))

    def to_dict(self) -> dict:
        return {"metric": self.metric, "lambdas": self.lambdas.tolist(), "k": int(len(self.folds)),
                "fold_size": int(self.folds.shape[1]), "validation_mean": self.mean.tolist(),
                "validation_std": self.std.tolist(), "validation_se": self.se.tolist(),
                "per_fold": self.per_fold.tolist(), "best_lambda": self.best_lambda,
                "one_se_lambda": self.one_se_lambda}


def select_lambda(model: Model, optimizer: Any, x: ArrayLike, y: ArrayLike, lambdas: Sequence[float], *,
                  key: PRNGKey, epochs: int, batch_size: int, k: int = 5, seeds: Sequence[int] = (0,),
                  hparams: Optional[dict] = None, lam_key: str = "lam", loss: Any = "squared",
                  task: Optional[str] = None, metric: str = "loss", train: Callable = sweep,
                  **sweep_kwargs: Any) -> Selection:
    """k-fold cross-validation of λ (``hparams[lam_key]``: ``'lam'`` -- the L2 penalty in the loss -- or
    ``'weight_decay'`` for an injectable decayed optimizer) in one vectorized sweep over folds × λ × seeds.

    ``key`` draws the folds; each member's training key is ``jax.random.key(seed)``. ``hparams`` holds the
    fixed hyperparameters (``{'lr': ...}``). ``metric``: ``'loss'`` (minimized) or ``'accuracy'``
    (maximized, classification). ``train`` is the sweep function (``regjax.engine.sweep``, or a runner's
    ``functools.partial(run.sweep, name)`` for checkpoints and resume); ``sweep_kwargs`` go to it.
    """
    if metric not in ("loss", "accuracy"):
        raise ValueError(f"metric must be 'loss' or 'accuracy', got {metric!r}")
    if metric == "accuracy" and resolve_loss(loss, task)[1] != "classification":
        raise ValueError(f"metric 'accuracy' needs a classification task; loss {loss!r} trains a "
                         f"{resolve_loss(loss, task)[1]} (use metric='loss')")
    lambdas = np.asarray(lambdas, np.float64)
    if lambdas.ndim != 1 or lambdas.size < 1:
        raise ValueError("lambdas must be a non-empty 1-D sequence")
    k = as_count(k, "k", 2)
    folds = equal_folds(len(x), k, key)
    kfold_members(lambdas, k, seeds=seeds, lam_key=lam_key, hparams=hparams)  # refuses bad λ and hparams early
    cv = cross_validate(model, optimizer, fold_data(x, y, folds), {lam_key: [float(v) for v in lambdas]},
                        epochs=epochs, batch_size=batch_size, seeds=seeds, hparams=hparams, loss=loss, task=task,
                        metric=f"test_{metric}", maximize=metric == "accuracy", train=train, **sweep_kwargs)
    return Selection(cv, lambdas, metric, folds)


def ridge_closed_form(x: ArrayLike, y: ArrayLike, lam: float) -> Tuple[np.ndarray, float]:
    """``(w, b)`` minimizing ``mean ½(xᵢᵀw + b − yᵢ)² + λ·½‖w‖²`` (bias unpenalized), in float64:
    ``w = (XcᵀXc + nλI)⁻¹ Xcᵀ yc`` on centred data, ``b = ȳ − x̄ᵀw``."""
    check_nonnegative(lam, "lam")
    x, y = np.asarray(x, np.float64), np.asarray(y, np.float64).reshape(-1)
    n, d = x.shape
    x_mean, y_mean = x.mean(axis=0), y.mean()
    xc, yc = x - x_mean, y - y_mean
    w = np.linalg.solve(xc.T @ xc + n * lam * np.eye(d), xc.T @ yc)
    return w, float(y_mean - x_mean @ w)
