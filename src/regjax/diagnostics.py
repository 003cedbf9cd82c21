"""Numerical stability and initialization diagnostics (D2L §5.4).

Per-layer activation variance and gradient norms at initialization, the symmetry of hidden units under
constant initialization, and the norms of products of random matrices (exploding gradients).
"""
from __future__ import annotations

import functools
from typing import Callable

import jax
import jax.numpy as jnp

from regjax.base import Array, ArrayLike, PRNGKey, PyTree
from regjax.losses import softmax_cross_entropy
from regjax.models.scratch import mlp_layers

__all__ = ["layer_statistics", "matrix_product_norms", "hidden_unit_spread"]


@functools.partial(jax.jit, static_argnames="activation")
def _layer_statistics(params, x, y, activation):
    def loss(p):
        logits, _ = mlp_layers(p, x, activation=activation)
        return jnp.mean(softmax_cross_entropy(logits, y))

    _, hidden = mlp_layers(params, x, activation=activation)
    grads = jax.grad(loss)(params)
    return ([jnp.var(h) for h in hidden],
            [jnp.linalg.norm(grads[f"dense{i}"]["kernel"]) for i in range(len(params))])


def layer_statistics(params: PyTree, x: ArrayLike, y: ArrayLike, activation: Callable = jax.nn.relu) -> dict:
    """For an MLP parameter dict: the variance of each hidden layer's activations, and the Frobenius norm of
    the cross-entropy gradient w.r.t. each layer's kernel (layer 0 = closest to the input). One compiled
    program per activation and shapes."""
    variances, norms = jax.device_get(_layer_statistics(params, x, y, activation))
    return {"activation_var": [float(v) for v in variances], "grad_norm": [float(n) for n in norms]}


def matrix_product_norms(key: PRNGKey, num_matrices: int = 100, size: int = 4) -> Array:
    """log10 of the Frobenius norms of the running products ``M_1 M_2 … M_k`` of N(0, 1) matrices,
    k = 1 … num_matrices: the exploding-gradient picture (D2L multiplies 100 random 4×4 matrices).

    The product is renormalised every step and its log-norm accumulated, so the values stay finite even where
    the norm itself would overflow float32 (3.4e38).
    """
    mats = jax.random.normal(key, (num_matrices, size, size))

    def body(carry, m):
        direction, log10_norm = carry
        prod = direction @ m
        norm = jnp.linalg.norm(prod)
        log10_norm = log10_norm + jnp.log10(norm)
        return (prod / norm, log10_norm), log10_norm

    _, log10_norms = jax.lax.scan(body, (jnp.eye(size) / jnp.sqrt(size), 0.5 * jnp.log10(size)), mats)
    return log10_norms


def hidden_unit_spread(params: PyTree, layer: int = 0) -> float:
    """Largest difference between any two hidden units' incoming weights in ``dense{layer}`` (columns of the
    kernel): exactly 0 when symmetry was never broken."""
    k = params[f"dense{layer}"]["kernel"]
    return float(jnp.max(jnp.max(k, axis=1) - jnp.min(k, axis=1)))
