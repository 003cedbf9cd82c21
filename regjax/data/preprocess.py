"""Image preprocessing: to float, flatten for MLPs, NHWC for CNNs."""
from __future__ import annotations

from typing import Any

import numpy as np

__all__ = ["images_to_float", "flatten_images", "to_nhwc"]


def images_to_float(x: Any) -> np.ndarray:
    """uint8 pixels -> float32 in [0, 1]; float images are returned as float32 unchanged."""
    x = np.asarray(x)
    if x.dtype == np.uint8:
        return x.astype(np.float32) / 255.0
    if np.issubdtype(x.dtype, np.floating):
        return x.astype(np.float32)
    raise TypeError(f"images must be uint8 or floating point, got dtype {x.dtype}")


def flatten_images(x: Any) -> np.ndarray:
    """(N, H, W[, C]) -> (N, H·W·C)."""
    x = np.asarray(x)
    return x.reshape(x.shape[0], -1)


def to_nhwc(x: Any) -> np.ndarray:
    """(N, H, W) -> (N, H, W, 1); NHWC input passes through; anything else is an error."""
    x = np.asarray(x)
    if x.ndim == 3:
        return x[..., None]
    if x.ndim == 4:
        return x
    raise ValueError(f"images must be (N, H, W) or NHWC (N, H, W, C), got shape {x.shape}")
