"""Real datasets that work offline: scikit-learn ships them inside the package.

``load_digits``: 1,797 8×8 handwritten digits, 10 classes -- the offline stand-in for Fashion-MNIST.
``load_diabetes``: 442 patients × 10 features, a regression target -- real data for weight decay and k-fold λ
selection. Splits are fixed (stratified for digits) so results are comparable across runs and machines.
"""
from __future__ import annotations

import numpy as np

from regjax.data.dataset import Dataset

__all__ = ["load_digits", "load_diabetes"]


def _split(n_or_y, test_fraction, seed, stratify):
    from sklearn.model_selection import train_test_split

    if not 0.0 < test_fraction < 1.0:
        raise ValueError(f"test_fraction must be in (0, 1), got {test_fraction!r}")
    idx = np.arange(len(n_or_y))
    return train_test_split(idx, test_size=test_fraction, random_state=seed,
                            stratify=n_or_y if stratify else None)


def load_digits(test_fraction: float = 0.25, seed: int = 0) -> Dataset:
    """Digits as float32 images ``(N, 8, 8)`` in ``[0, 1]`` (pixel / 16) with int labels; stratified split."""
    from sklearn import datasets

    d = datasets.load_digits()
    x = (d.images / 16.0).astype(np.float32)
    y = d.target.astype(np.int32)
    tr, te = _split(y, test_fraction, seed, stratify=True)
    return Dataset("digits", x[tr], y[tr], x[te], y[te], class_names=tuple(str(c) for c in range(10)),
                   source="sklearn", meta={"test_fraction": test_fraction, "seed": seed})


def load_diabetes(test_fraction: float = 0.2, seed: int = 0, standardize: bool = True) -> Dataset:
    """Diabetes regression ``(442, 10)``. With ``standardize``, features and target are z-scored with the
    *training* mean/std (recorded in ``meta`` to map predictions back)."""
    from sklearn import datasets

    d = datasets.load_diabetes()
    x, y = d.data.astype(np.float32), d.target.astype(np.float32)
    tr, te = _split(y, test_fraction, seed, stratify=False)
    meta = {"test_fraction": test_fraction, "seed": seed, "feature_names": list(d.feature_names)}
    if standardize:
        mu, sd = x[tr].mean(0), x[tr].std(0)
        ymu, ysd = float(y[tr].mean()), float(y[tr].std())
        x, y = (x - mu) / sd, (y - ymu) / ysd
        meta.update(y_mean=ymu, y_std=ysd)
    return Dataset("diabetes", x[tr], y[tr], x[te], y[te], source="sklearn", meta=meta)
