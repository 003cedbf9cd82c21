"""Weight decay as an explicit L2 penalty (D2L §3.7 "Weight Decay").

The penalty is ``λ/2 · ‖w‖²`` summed over the *weights* only: dense and conv kernels. Biases and BatchNorm
scale/bias are not decayed -- they do not control the capacity the way weights do, and decaying BN's scale
fights the normalisation. The same mask is what ``optax.add_decayed_weights`` needs, so it is exposed as
``weights_mask``.
"""
from __future__ import annotations

from typing import Any, Callable

import jax
import jax.numpy as jnp

from regjax._checks import check_nonnegative

__all__ = ["weights_mask", "l2_penalty", "penalized"]

Mask = Any  # bool pytree (or a prefix of the params tree) or a callable params -> bool pytree


def weights_mask(params):
    """Default decay mask: ``True`` for leaves with ``ndim >= 2`` (dense/conv kernels), ``False`` otherwise.

    Usable directly as optax's ``mask=`` argument: ``optax.add_decayed_weights(lam, mask=weights_mask)``.
    """
    return jax.tree_util.tree_map(lambda p: jnp.ndim(p) >= 2, params)


def _resolve_mask(params, mask: Mask):
    """Return a full bool pytree matching ``params`` from a mask, a mask prefix or a mask function."""
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


def l2_penalty(params, mask: Mask = None):
    """``½ · Σ w²`` over the leaves selected by ``mask`` (default: ``weights_mask``, kernels only).

    The ½ makes the gradient exactly ``w``, so ``grad(lam * l2_penalty)`` is ``lam * w`` on weights and 0
    elsewhere -- the same update as ``optax.add_decayed_weights(lam)``.
    """
    full_mask = _resolve_mask(params, mask)
    terms = jax.tree_util.tree_map(
        lambda p, m: 0.5 * jnp.sum(jnp.square(p)) if m else jnp.zeros((), jnp.result_type(p)),
        params,
        full_mask,
    )
    leaves = jax.tree_util.tree_leaves(terms)
    return sum(leaves[1:], leaves[0]) if leaves else jnp.zeros(())


def penalized(loss_fn: Callable, lam, mask: Mask = None) -> Callable:
    """Wrap ``loss_fn(params, *args, **kwargs)`` into ``loss + lam * l2_penalty(params, mask)``.

    ``lam`` may be a traced scalar (vmapped sweeps); a concrete ``lam`` must be finite and ``>= 0``.
    """
    check_nonnegative(lam, "lam")

    def wrapped(params, *args, **kwargs):
        return loss_fn(params, *args, **kwargs) + lam * l2_penalty(params, mask)

    return wrapped
