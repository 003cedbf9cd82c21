"""Inverted dropout from scratch (D2L §5.6 "Dropout").

``rate`` is the probability of *dropping* a unit (the PyTorch/Flax meaning). Kept units are scaled by
``1 / (1 - rate)`` in training so that ``E[dropout(x)] = x``; evaluation is the identity.
"""
from __future__ import annotations

from typing import Any, Optional

import jax
import jax.numpy as jnp

from regjax._checks import noise_is_on
from regjax.base import Array, ArrayLike, PRNGKey

__all__ = ["dropout"]


def dropout(x: ArrayLike, rate: Any, *, key: Optional[PRNGKey] = None, train: bool = True) -> Array:
    """Inverted dropout: each element is ``0`` with probability ``rate``, else ``x / (1 - rate)``.

    Args:
      x: array of any shape.
      rate: drop probability in ``[0, 1]``; may be a traced scalar (e.g. vmapped over in a sweep). A concrete
        rate outside ``[0, 1]`` or NaN raises ``ValueError``; traced rates are the caller's responsibility.
      key: a ``jax.random`` key; required when ``train`` and the rate is not a concrete 0. Use a fresh key per
        step and per layer (``jax.random.fold_in(key, step)``) -- a reused key drops the same units forever.
      train: ``False`` returns ``x`` unchanged (evaluation mode). Must be a Python bool (static under jit).

    Returns:
      Array like ``x``. ``rate == 1`` gives zeros with finite (zero) gradients.
    """
    if not noise_is_on(x, rate, key, train):
        return x
    x = jnp.asarray(x)
    keep_prob = 1.0 - jnp.asarray(rate, dtype=x.dtype)
    keep = jax.random.bernoulli(key, keep_prob, x.shape)
    # Double-where keeps the scale (and its gradient) finite when keep_prob == 0: no 0 * inf = NaN.
    safe_keep_prob = jnp.where(keep_prob > 0, keep_prob, 1.0)
    scale = jnp.where(keep_prob > 0, 1.0 / safe_keep_prob, 0.0)
    return jnp.where(keep, x * scale, jnp.zeros_like(x))
