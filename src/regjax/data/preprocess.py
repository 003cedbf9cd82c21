"""Image preprocessing: to float, flatten for MLPs, NHWC for CNNs."""
from __future__ import annotations

import functools
from typing import Any

import numpy as np

__all__ = ["images_to_float", "images_to_float_on_device", "flatten_images", "to_nhwc"]


def images_to_float(x: Any) -> np.ndarray:
    """uint8 pixels -> float32 in [0, 1]; float images are returned as float32 unchanged."""
    x = np.asarray(x)
    if x.dtype == np.uint8:
        out = x.astype(np.float32)  # then divided in place: bit-identical to ``x.astype(np.float32) / 255.0``
        out /= np.float32(255.0)    # and without a second full-size float32 temporary
        return out
    if np.issubdtype(x.dtype, np.floating):
        return x.astype(np.float32)
    raise TypeError(f"images must be uint8 or floating point, got dtype {x.dtype}")


def images_to_float_on_device(x: Any) -> Any:
    """``images_to_float`` as a JAX array on the default device, without a float32 copy on the host: uint8
    pixels are looked up on the device in the 256-entry table ``images_to_float(arange(256))``, so every value
    has exactly the bits the host conversion gives (XLA's own ``x / 255`` rounds some of them differently).
    For Fashion-MNIST this skips two fresh 188 MB host buffers (the float32 copy and its copy to the device),
    which are slow to fault in where NumPy asks for transparent huge pages (``benchmarks/ab.py --startup``
    measures the whole start-up)."""
    import jax
    import jax.numpy as jnp

    x = np.asarray(x)
    if x.dtype != np.uint8:
        return jnp.asarray(images_to_float(x))
    return _lookup()(jnp.asarray(images_to_float(np.arange(256, dtype=np.uint8))), jax.device_put(x))


@functools.cache
def _lookup():
    """The jitted table lookup (built on first use: this module does not import JAX)."""
    import jax

    return jax.jit(lambda table, x: table[x.astype("int32")])


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
