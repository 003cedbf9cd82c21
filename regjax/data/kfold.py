"""K-fold cross-validation indices (D2L §3.6.2, §5.7 "model selection")."""
from __future__ import annotations

import jax
import numpy as np

__all__ = ["kfold_splits"]


def kfold_splits(n: int, k: int, key) -> list[tuple[np.ndarray, np.ndarray]]:
    """``k`` pairs ``(train_idx, val_idx)``; a key-driven permutation is cut into k folds of sizes differing by
    at most one, so every example is validated exactly once and trained on in the other k−1 folds."""
    if not isinstance(n, int) or n < 2:
        raise ValueError(f"n must be an int >= 2, got {n!r}")
    if not isinstance(k, int) or not 2 <= k <= n:
        raise ValueError(f"k must be an int with 2 <= k <= n ({n}), got {k!r}")
    order = np.asarray(jax.random.permutation(key, n))
    folds = np.array_split(order, k)
    return [(np.sort(np.concatenate(folds[:i] + folds[i + 1:])), np.sort(fold)) for i, fold in enumerate(folds)]
