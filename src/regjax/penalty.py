"""Weight decay as an explicit L2 penalty (D2L §3.7 "Weight Decay").

The penalty is ``λ/2 · ‖w‖²`` summed over the *weights* only: dense and conv kernels. Biases and BatchNorm
scale/bias are not decayed -- they do not control the capacity the way weights do, and decaying BN's scale
fights the normalisation. The same mask is what ``optax.add_decayed_weights`` needs, so it is exposed as
``weights_mask``.

The L1 penalty ``λ · Σ|w|`` (a §3.7 exercise) sits beside it: ``l1_penalty`` for the loss; its optimizer
counterpart, ``regjax.optim.l1_decayed_sgd`` (strength ``l1``), sits with the other decayed optimizers.
"""
from __future__ import annotations

from typing import Any, Callable

import jax
import jax.numpy as jnp

from regjax._checks import check_nonnegative
from regjax.base import Array, PyTree

__all__ = ["Mask", "weights_mask", "resolve_mask", "l2_penalty", "l1_penalty", "penalized"]

Mask = Any  # bool pytree (or a prefix of the params tree) or a callable params -> bool pytree


def weights_mask(params: PyTree) -> PyTree:
    """Default decay mask: ``True`` for leaves with ``ndim >= 2`` (dense/conv kernels), ``False`` otherwise.

    Usable directly as optax's ``mask=`` argument: ``optax.add_decayed_weights(lam, mask=weights_mask)``.
    """
    return jax.tree_util.tree_map(lambda p: jnp.ndim(p) >= 2, params)


def resolve_mask(params: PyTree, mask: Mask) -> PyTree:
    """A full bool pytree matching ``params`` from a mask, a mask prefix or a mask function (``None``:
    ``weights_mask``)."""
    if mask is None:
        mask = weights_mask
    if callable(mask):
        mask = mask(params)
    try:
        # Broadcast a prefix mask (e.g. {'dense0': True, 'dense1': False}) down to the leaves.
        return jax.tree_util.tree_map(
            lambda m, sub: jax.tree_util.tree_map(lambda _: bool(m), sub), mask, params
        )
    except (ValueError, TypeError) as err:
        raise ValueError(
            "mask must be a bool pytree with the structure of params (or a prefix of it), or a callable "
            f"params -> such a pytree; its structure does not fit params.\n"
            f"  mask:   {jax.tree_util.tree_structure(mask)}\n"
            f"  params: {jax.tree_util.tree_structure(params)}"
        ) from err


def _floating(p):
    """Integer and boolean leaves as the default float dtype: squares of int32 50000s or int8 100s would
    overflow in their own dtype (a silently wrong penalty)."""
    p = jnp.asarray(p)
    return p if jnp.issubdtype(p.dtype, jnp.inexact) else p.astype(jnp.result_type(float))


def _masked_sum(params, mask: Mask, term):
    """``Σ term(leaf)`` over the leaves ``mask`` selects, accumulated in floating point."""
    full_mask = resolve_mask(params, mask)
    terms = jax.tree_util.tree_map(lambda p, m: term(_floating(p)) if m else jnp.zeros((), _floating(p).dtype),
                                   params, full_mask)
    leaves = jax.tree_util.tree_leaves(terms)
    return sum(leaves[1:], leaves[0]) if leaves else jnp.zeros(())


def l2_penalty(params: PyTree, mask: Mask = None) -> Array:
    """``½ · Σ w²`` over the leaves selected by ``mask`` (default: ``weights_mask``, kernels only).

    The ½ makes the gradient exactly ``w``, so ``grad(lam * l2_penalty)`` is ``lam * w`` on weights and 0
    elsewhere -- the same update as ``optax.add_decayed_weights(lam)``.
    """
    return _masked_sum(params, mask, lambda p: 0.5 * jnp.sum(jnp.square(p)))


def l1_penalty(params: PyTree, mask: Mask = None) -> Array:
    """``Σ |w|`` over the leaves selected by ``mask`` (default: ``weights_mask``, kernels only) -- D2L §3.7's
    exercise "what if we used Σ|wᵢ| instead of ‖w‖²?" (no ½: the usual lasso convention).

    Its gradient is ``sign(w)`` away from 0: every weight is pulled toward 0 by the same amount ``λ`` per unit
    of learning rate, however small it already is, where L2's pull ``λw`` fades as ``w`` shrinks -- why L1
    drives weights to (near) zero and L2 only shrinks them. At ``w = 0`` it has no derivative; JAX's is 1 there.
    """
    return _masked_sum(params, mask, lambda p: jnp.sum(jnp.abs(p)))


def penalized(loss_fn: Callable, lam: Any, mask: Mask = None) -> Callable:
    """Wrap ``loss_fn(params, *args, **kwargs)`` into ``loss + lam * l2_penalty(params, mask)``.

    ``lam`` may be a traced scalar (vmapped sweeps); a concrete ``lam`` must be finite and ``>= 0``.
    """
    check_nonnegative(lam, "lam")

    def wrapped(params, *args, **kwargs):
        return loss_fn(params, *args, **kwargs) + lam * l2_penalty(params, mask)

    return wrapped
