"""Losses (D2L §3.1, §4.1) -- per-example values, never reduced; the trainer chooses the reduction.

The from-scratch teaching versions (``squared_loss``, ``softmax_cross_entropy`` and the deliberately naive
``naive_softmax_cross_entropy``) are tested against optax. Losses that D2L's MXNet edition uses from
``gluon.loss`` and optax lacks (Poisson NLL, cosine embedding, L1) are added here; see the README's table for
the rest of the mapping.
"""
from __future__ import annotations

import jax
import jax.numpy as jnp

from regjax.base import Array, ArrayLike

__all__ = [
    "squared_loss",
    "softmax_cross_entropy",
    "naive_softmax_cross_entropy",
    "l1_loss",
    "poisson_nll_loss",
    "cosine_embedding_loss",
]


def _match_targets(y_hat, y, name="y"):
    """Reshape targets to the predictions' shape when they hold the same number of values per example.

    ``y_hat`` of shape (n, 1) against ``y`` of shape (n,) would silently broadcast to (n, n) with plain
    ``y_hat - y``: the classic D2L shape bug. Any other size mismatch is an error.
    """
    y_hat, y = jnp.asarray(y_hat), jnp.asarray(y)
    if y_hat.shape == y.shape:
        return y_hat, y
    if y_hat.ndim == 0 or y.ndim == 0 or y_hat.shape[0] != y.shape[0] or y_hat.size != y.size:
        raise ValueError(
            f"{name} has shape {y.shape} but predictions have shape {y_hat.shape}; they must hold the same "
            "number of examples and values per example (e.g. (n, 1) and (n,))"
        )
    return y_hat, y.reshape(y_hat.shape)


def _per_example(values):
    """Sum over every axis but the first, giving one loss per example."""
    return jnp.sum(values, axis=tuple(range(1, values.ndim))) if values.ndim > 1 else values


def squared_loss(y_hat: ArrayLike, y: ArrayLike) -> Array:
    """``½ (ŷ − y)²`` per example; ``ŷ`` (n, 1) against ``y`` (n,) gives n losses, never an (n, n) grid."""
    y_hat, y = _match_targets(y_hat, y)
    return _per_example(0.5 * jnp.square(y_hat - y))


def l1_loss(y_hat: ArrayLike, y: ArrayLike) -> Array:
    """``|ŷ − y|`` per example (``gluon.loss.L1Loss``)."""
    y_hat, y = _match_targets(y_hat, y)
    return _per_example(jnp.abs(y_hat - y))


def _check_labels(logits, labels):
    logits, labels = jnp.asarray(logits), jnp.asarray(labels)
    if not jnp.issubdtype(labels.dtype, jnp.integer):
        raise TypeError(f"labels must be integer class indices, got dtype {labels.dtype}")
    if logits.ndim < 1 or labels.shape != logits.shape[:-1]:
        raise ValueError(
            f"labels must have shape logits.shape[:-1] = {logits.shape[:-1]}, got {labels.shape}"
        )
    return logits, labels


def softmax_cross_entropy(logits: ArrayLike, labels: ArrayLike) -> Array:
    """Numerically stable ``−log softmax(logits)[label]`` per example, via log-sum-exp.

    ``log Σ exp(o_j) − o_y`` with the max subtracted inside the log-sum-exp, so logits of ±1e4 stay finite.
    Equal to ``optax.softmax_cross_entropy_with_integer_labels``.
    """
    logits, labels = _check_labels(logits, labels)
    label_logits = jnp.take_along_axis(logits, labels[..., None], axis=-1)[..., 0]
    return jax.nn.logsumexp(logits, axis=-1) - label_logits


def naive_softmax_cross_entropy(logits: ArrayLike, labels: ArrayLike) -> Array:
    """The textbook version: ``exp``, normalise, take the label's probability, ``−log``.

    Kept to *show* why it is not used: ``exp(89)`` is ``inf`` in float32, so large logits give ``nan``/``inf``,
    and very negative ones underflow to ``log(0) = −inf``.
    """
    logits, labels = _check_labels(logits, labels)
    exp = jnp.exp(logits)
    probs = exp / jnp.sum(exp, axis=-1, keepdims=True)
    return -jnp.log(jnp.take_along_axis(probs, labels[..., None], axis=-1)[..., 0])


def poisson_nll_loss(pred: ArrayLike, target: ArrayLike, *, from_logits: bool = True, compute_full: bool = False,
                     eps: float = 1e-8) -> Array:
    """Poisson negative log-likelihood per example (``gluon.loss.PoissonNLLLoss``; not in optax).

    ``from_logits=True``: ``pred`` is the log-rate, loss ``exp(pred) − target·pred``. Otherwise ``pred`` is the
    rate, loss ``pred − target·log(pred + eps)``. ``compute_full`` adds the Stirling approximation of
    ``log(target!)`` for ``target > 1`` (as MXNet and PyTorch do), making the value the exact NLL up to that
    approximation.
    """
    pred, target = _match_targets(pred, target, "target")
    if from_logits:
        loss = jnp.exp(pred) - target * pred
    else:
        loss = pred - target * jnp.log(pred + eps)
    if compute_full:
        safe_t = jnp.where(target > 1, target, 2.0)
        stirling = safe_t * jnp.log(safe_t) - safe_t + 0.5 * jnp.log(2 * jnp.pi * safe_t)
        loss = loss + jnp.where(target > 1, stirling, 0.0)
    return _per_example(loss)


def cosine_embedding_loss(x1: ArrayLike, x2: ArrayLike, labels: ArrayLike, *, margin: float = 0.0,
                          eps: float = 1e-12) -> Array:
    """``gluon.loss.CosineEmbeddingLoss`` per example (not in optax).

    ``1 − cos(x1, x2)`` where ``label == 1``; ``max(0, cos(x1, x2) − margin)`` where ``label == −1``.
    """
    x1, x2, labels = jnp.asarray(x1), jnp.asarray(x2), jnp.asarray(labels)
    if x1.shape != x2.shape or x1.ndim != 2 or labels.shape != x1.shape[:1]:
        raise ValueError(
            f"x1 and x2 must be (n, d) of equal shape and labels (n,); got {x1.shape}, {x2.shape}, {labels.shape}"
        )
    cos = jnp.sum(x1 * x2, axis=-1) / jnp.maximum(
        jnp.linalg.norm(x1, axis=-1) * jnp.linalg.norm(x2, axis=-1), eps
    )
    return jnp.where(labels > 0, 1.0 - cos, jnp.maximum(0.0, cos - margin))
