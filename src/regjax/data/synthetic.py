"""Synthetic data from D2L, with correctly separated keys.

(d2l's JAX ``SyntheticRegressionData`` draws X and the noise from the same key, so the "noise" is a copy of the
first entries of X. Here each draw has its own subkey.)
"""
from __future__ import annotations

import dataclasses
import math
from typing import Sequence, Tuple

import jax
import jax.numpy as jnp

from regjax.base import Array, ArrayLike, PRNGKey

__all__ = ["seed_keys", "synthetic_linear", "weight_decay_data", "polynomial_data", "PolynomialData"]


def seed_keys(seed: int) -> Tuple[PRNGKey, PRNGKey]:
    """``(data_key, train_key)``: how an experiment on synthetic data splits its one ``--seed`` -- the data are
    drawn with the first key, and the second is the run key ``fit`` trains with."""
    data_key, train_key = jax.random.split(jax.random.key(seed))
    return data_key, train_key


def synthetic_linear(key: PRNGKey, w: ArrayLike, b: float, n: int, noise: float = 0.01) -> Tuple[Array, Array]:
    """``X ~ N(0, 1)^(n×d)``, ``y = X w + b + noise · ε`` with ε ~ N(0, 1) drawn from an independent subkey.

    Returns ``(X, y)`` with ``y`` of shape ``(n,)``. D2L §3.3 uses w = [2, −3.4], b = 4.2, n = 1000.
    """
    w = jnp.asarray(w, jnp.float32)
    if w.ndim != 1:
        raise ValueError(f"w must be a 1-D weight vector, got shape {w.shape}")
    if not isinstance(n, int) or n < 1:
        raise ValueError(f"n must be a positive int, got {n!r}")
    key_x, key_noise = jax.random.split(key)
    x = jax.random.normal(key_x, (n, w.shape[0]))
    y = x @ w + b + noise * jax.random.normal(key_noise, (n,))
    return x, y


@dataclasses.dataclass(frozen=True)
class PolynomialData:
    """Features ``x^i / i!`` for i = 0 … max_degree−1, labels, the raw x and the (zero-padded) true weights."""

    x_train: jax.Array
    y_train: jax.Array
    x_test: jax.Array
    y_test: jax.Array
    raw_train: jax.Array
    raw_test: jax.Array
    true_w: jax.Array


def polynomial_data(key: PRNGKey, n_train: int = 100, n_test: int = 100, max_degree: int = 20,
                    true_w: Sequence[float] = (5.0, 1.2, -3.4, 5.6), noise: float = 0.1) -> PolynomialData:
    """D2L §3.6's polynomial regression data: ``y = Σ_i w_i x^i / i! + noise · ε``, x ~ N(0, 1).

    Dividing by ``i!`` keeps high powers of x from producing huge features and gradients.
    """
    if len(true_w) > max_degree:
        raise ValueError(f"max_degree ({max_degree}) must be >= len(true_w) ({len(true_w)})")
    key_x, key_noise = jax.random.split(key)
    n = n_train + n_test
    x = jax.random.normal(key_x, (n,))
    powers = jnp.arange(max_degree)
    factorials = jnp.array([math.factorial(i) for i in range(max_degree)], jnp.float32)
    features = x[:, None] ** powers / factorials
    w = jnp.zeros(max_degree).at[: len(true_w)].set(jnp.asarray(true_w, jnp.float32))
    y = features @ w + noise * jax.random.normal(key_noise, (n,))
    return PolynomialData(features[:n_train], y[:n_train], features[n_train:], y[n_train:],
                          x[:n_train], x[n_train:], w)


def weight_decay_data(key: PRNGKey, n_train: int = 20, n_test: int = 100, num_inputs: int = 200,
                      noise: float = 0.01) -> Tuple[Array, Array, Array, Array]:
    """D2L §3.7's high-dimensional linear regression: ``y = 0.01·Σx + 0.05 + noise·ε`` with ``num_inputs``
    features and few training examples, so that a linear model overfits without weight decay. Returns
    ``(x_train, y_train, x_test, y_test)``."""
    x, y = synthetic_linear(key, 0.01 * jnp.ones(num_inputs), 0.05, n_train + n_test, noise)
    return x[:n_train], y[:n_train], x[n_train:], y[n_train:]
