"""Numerical stability and initialization diagnostics (D2L §5.4).

Per-layer activation variance and gradient norms at initialization, the symmetry of hidden units under
constant initialization, and the norms of products of random matrices (exploding gradients).
"""
from __future__ import annotations

import jax
import jax.numpy as jnp

from regjax.losses import softmax_cross_entropy

__all__ = ["layer_statistics", "matrix_product_norms", "hidden_unit_spread"]


def _forward(params, x, activation):
    """Plain MLP forward (no dropout) that also returns every hidden activation."""
    n = len(params)
    h, hidden = x, []
    for i in range(n - 1):
        h = activation(h @ params[f"dense{i}"]["kernel"] + params[f"dense{i}"]["bias"])
        hidden.append(h)
    return h @ params[f"dense{n - 1}"]["kernel"] + params[f"dense{n - 1}"]["bias"], hidden


def layer_statistics(params, x, y, activation=jax.nn.relu) -> dict:
    """For an MLP parameter dict: the variance of each hidden layer's activations, and the Frobenius norm of
    the cross-entropy gradient w.r.t. each layer's kernel (layer 0 = closest to the input)."""

    def loss(p):
        logits, _ = _forward(p, x, activation)
        return jnp.mean(softmax_cross_entropy(logits, y))

    _, hidden = _forward(params, x, activation)
    grads = jax.grad(loss)(params)
    return {
        "activation_var": [float(jnp.var(h)) for h in hidden],
        "grad_norm": [float(jnp.linalg.norm(grads[f"dense{i}"]["kernel"])) for i in range(len(params))],
    }


def matrix_product_norms(key, num_matrices: int = 100, size: int = 4):
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


def hidden_unit_spread(params, layer: int = 0) -> float:
    """Largest difference between any two hidden units' incoming weights in ``dense{layer}`` (columns of the
    kernel): exactly 0 when symmetry was never broken."""
    k = params[f"dense{layer}"]["kernel"]
    return float(jnp.max(jnp.max(k, axis=1) - jnp.min(k, axis=1)))
