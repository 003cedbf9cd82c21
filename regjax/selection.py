"""Model selection: k-fold cross-validation of the weight-decay strength λ, vectorized over folds × λ × seeds
(D2L §3.7 exercise "use a validation set to find the optimal λ -- is it really optimal?", §3.6.2 k-fold).

Every (fold, λ, seed) is one member of ONE ``regjax.engine.sweep`` program; each fold's members train on that fold's
training part and are validated on its held-out part -- with their *own* parameters (d2l's ``k_fold`` helper
evaluates every fold with the last fold's model). Members of one seed share their initial parameters across
folds and λ (common random numbers: the curve's differences are not seed noise).

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
from regjax.engine import Members, SweepResult, grid, sweep

__all__ = ["equal_folds", "fold_data", "kfold_members", "select_lambda", "Selection", "curve", "one_se_index",
           "ridge_closed_form"]


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
    within one standard error of it."""
    lambdas, mean, se = map(np.asarray, (lambdas, mean, se))
    score = np.where(np.isfinite(mean), -mean if maximize else mean, np.inf)
    if not np.isfinite(score).any():
        raise ValueError("no λ has a finite validation curve (every member diverged)")
    best = int(np.argmin(score))
    ok = np.flatnonzero(score <= score[best] + se[best])
    return best, int(ok[np.argmax(lambdas[ok])])


@dataclasses.dataclass
class Selection:
    """The outcome of ``select_lambda``: the validation curve and the chosen λ's, plus the sweep behind it."""

    lambdas: np.ndarray
    metric: str              # 'loss' (lower is better) or 'accuracy' (higher is better)
    per_fold: np.ndarray     # (k, L): final validation metric per fold and λ (mean over seeds)
    mean: np.ndarray         # (L,)
    std: np.ndarray          # (L,) over folds, ddof=1
    se: np.ndarray           # (L,) std / sqrt(k)
    best_lambda: float
    one_se_lambda: float
    folds: np.ndarray        # (k, n // k) validation indices
    result: SweepResult

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
    lambdas = np.asarray(lambdas, np.float64)
    if lambdas.ndim != 1 or lambdas.size < 1:
        raise ValueError("lambdas must be a non-empty 1-D sequence")
    k = as_count(k, "k", 2)
    folds = equal_folds(len(x), k, key)
    members = kfold_members(lambdas, k, seeds=seeds, lam_key=lam_key, hparams=hparams)
    result = train(model, optimizer, fold_data(x, y, folds), members, epochs=epochs, batch_size=batch_size,
                   loss=loss, task=task, **sweep_kwargs)
    values = result.final(f"test_{metric}").reshape(k, len(lambdas), len(seeds)).mean(axis=2)
    mean, std, se = curve(values)
    best, one_se = one_se_index(lambdas, mean, se, maximize=metric == "accuracy")
    return Selection(lambdas, metric, values, mean, std, se, float(lambdas[best]), float(lambdas[one_se]), folds,
                     result)


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
