"""Device-resident batching for the ``lax.scan`` training loop.

Each epoch draws a fresh permutation from a key *before* batching (d2l's Fashion-MNIST loader shuffles
batches after forming them, so batch membership is frozen) and reshapes into ``(num_batches, batch_size, …)``.
A last partial batch is either dropped or padded; padding rows carry weight 0, real rows weight 1, and the
trainer averages each batch's loss over its *true* size, ``Σ w·ℓ / Σ w``. (d2l's scratch ``sgd`` divides by
the nominal batch size, under-weighting the last batch.) Shapes stay static, so one compiled epoch serves all.
"""
from __future__ import annotations

from typing import NamedTuple, Optional

import jax
import jax.numpy as jnp
import numpy as np

from regjax._checks import as_count
from regjax.base import Array, ArrayLike, PRNGKey

__all__ = ["Batches", "num_batches", "epoch_batches", "batch_mean"]


class Batches(NamedTuple):
    x: jax.Array       # (num_batches, batch_size, ...)
    y: jax.Array       # (num_batches, batch_size, ...)
    weight: jax.Array  # (num_batches, batch_size): 1 for real examples, 0 for padding


def num_batches(n: int, batch_size: int, drop_remainder: bool = False) -> int:
    if isinstance(n, (int, np.integer)) and n < 1:
        raise ValueError(f"the data must hold at least one example, got n={n!r}")
    n = as_count(n, "n")
    batch_size = as_count(batch_size, "batch_size")
    if batch_size > n:
        raise ValueError(f"batch_size ({batch_size}) must be <= the number of examples ({n})")
    return n // batch_size if drop_remainder else -(-n // batch_size)


def epoch_batches(key: Optional[PRNGKey], x: ArrayLike, y: ArrayLike, batch_size: int, *, drop_remainder: bool = False,
                  shuffle: bool = True) -> Batches:
    """One epoch of batches: permute (if ``shuffle``) with ``key``, then batch; jittable (static batch_size)."""
    n = x.shape[0]
    if y.shape[0] != n:
        raise ValueError(f"x and y must hold the same number of examples, got {n} and {y.shape[0]}")
    nb = num_batches(n, batch_size, drop_remainder)
    order = jax.random.permutation(key, n) if shuffle else jnp.arange(n)
    total = nb * batch_size
    if drop_remainder:
        idx, weight = order[:total], jnp.ones((total,), jnp.float32)
    else:
        pad = total - n
        idx = jnp.concatenate([order, jnp.zeros((pad,), order.dtype)])
        weight = jnp.concatenate([jnp.ones((n,), jnp.float32), jnp.zeros((pad,), jnp.float32)])
    shape = (nb, batch_size)
    return Batches(
        jnp.take(x, idx, axis=0).reshape(shape + x.shape[1:]),
        jnp.take(y, idx, axis=0).reshape(shape + y.shape[1:]),
        weight.reshape(shape),
    )


def batch_mean(values: ArrayLike, weight: ArrayLike) -> Array:
    """Mean of per-example ``values`` over the batch's real examples: ``Σ w·v / Σ w``."""
    return jnp.sum(values * weight) / jnp.sum(weight)
