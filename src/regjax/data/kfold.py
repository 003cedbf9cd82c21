"""K-fold cross-validation (D2L §3.6.2, §5.7 "model selection"): ONE splitter, ``fold_indices``, and the views
the rest of the project takes of its folds.

A key-driven permutation of the ``n`` examples is cut into ``k`` folds. Two rules for the ``n mod k`` examples
that do not divide evenly:

* ``equal_sizes=False``: folds of sizes differing by at most one (``np.array_split``), so every example is
  validated exactly once -- ``kfold_splits``;
* ``equal_sizes=True``: ``k`` folds of ``n // k``; the ``n mod k`` examples left over (fewer than ``k``) take no
  part -- d2l's ``get_k_fold_data`` rule, and what a vectorized sweep needs (one compiled program needs equal
  shapes): ``equal_folds`` and ``fold_data`` (``regjax.selection``).

Both rules cut the same permutation, so with one key the folds differ only by where the remainder goes.
"""
from __future__ import annotations

from typing import Any, List, Tuple

import jax
import numpy as np

from regjax.base import PRNGKey

__all__ = ["fold_indices", "kfold_splits", "equal_folds", "fold_data"]


def fold_indices(n: int, k: int, key: PRNGKey, *, equal_sizes: bool = False) -> List[np.ndarray]:
    """The validation indices of each of the ``k`` folds (each sorted), by the rule ``equal_sizes`` picks."""
    if isinstance(n, bool) or not isinstance(n, (int, np.integer)) or n < 2:
        raise ValueError(f"n must be an integer >= 2, got {n!r}")
    if isinstance(k, bool) or not isinstance(k, (int, np.integer)) or not 2 <= k <= n:
        raise ValueError(f"k must be an integer with 2 <= k <= n ({n}), got {k!r}")
    order = np.asarray(jax.random.permutation(key, int(n)))
    if equal_sizes:
        size = n // k
        return [np.sort(fold) for fold in order[: k * size].reshape(k, size)]
    return [np.sort(fold) for fold in np.array_split(order, k)]


def kfold_splits(n: int, k: int, key: PRNGKey) -> List[Tuple[np.ndarray, np.ndarray]]:
    """``k`` pairs ``(train_idx, val_idx)``: every example is validated exactly once and trained on in the other
    k−1 folds (fold sizes differ by at most one)."""
    folds = fold_indices(n, k, key)
    return [(np.sort(np.concatenate(folds[:i] + folds[i + 1:])), fold) for i, fold in enumerate(folds)]


def equal_folds(n: int, k: int, key: PRNGKey) -> np.ndarray:
    """``(k, n // k)`` validation indices, one row per fold; the ``n mod k`` examples left over belong to no
    fold."""
    return np.stack(fold_indices(n, k, key, equal_sizes=True))


def fold_data(x: Any, y: Any, folds: np.ndarray) -> Tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Stacked ``(x_train, y_train, x_val, y_val)`` with a leading fold axis: fold ``i`` validates on
    ``folds[i]`` and trains on every other fold (in index order)."""
    x, y = np.asarray(x), np.asarray(y)
    k = len(folds)
    train = np.stack([np.sort(np.concatenate([folds[j] for j in range(k) if j != i])) for i in range(k)])
    return x[train], y[train], x[folds], y[folds]
