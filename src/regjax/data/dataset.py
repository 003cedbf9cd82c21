"""The in-memory dataset container every loader returns."""
from __future__ import annotations

import dataclasses
from typing import Optional

import numpy as np

from regjax._checks import label_out_of_range

__all__ = ["Dataset"]


@dataclasses.dataclass(frozen=True)
class Dataset:
    """Train/test arrays (numpy, host memory) plus where they came from.

    ``source`` says which route produced the data (``'idx:<dir>'``, ``'cache:<file>'``, ``'tfds'``,
    ``'download'``, ``'sklearn'``…) so results can record the dataset actually used.
    """

    name: str
    x_train: np.ndarray
    y_train: np.ndarray
    x_test: np.ndarray
    y_test: np.ndarray
    class_names: Optional[tuple] = None
    source: str = ""
    meta: dict = dataclasses.field(default_factory=dict)

    def __post_init__(self):
        for split in ("train", "test"):
            x, y = getattr(self, f"x_{split}"), getattr(self, f"y_{split}")
            if len(x) != len(y):
                raise ValueError(f"{self.name}: {len(x)} {split} inputs but {len(y)} {split} labels")
            bad = None if self.class_names is None else label_out_of_range(y, len(self.class_names))
            if bad is not None:
                raise ValueError(f"{self.name}: {split} label {bad} is outside [0, {len(self.class_names)})")

    @property
    def num_classes(self) -> Optional[int]:
        return None if self.class_names is None else len(self.class_names)

    def summary(self) -> dict:
        return {
            "name": self.name,
            "source": self.source,
            "n_train": int(len(self.x_train)),
            "n_test": int(len(self.x_test)),
            "x_shape": list(self.x_train.shape[1:]),
            "num_classes": self.num_classes,
            **({"sha256_verified": self.meta["sha256_verified"]} if "sha256_verified" in self.meta else {}),
        }
