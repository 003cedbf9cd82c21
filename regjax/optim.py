"""Optimizers: the from-scratch SGD step (D2L §3.4) and the optax chains for the weight-decay comparison.

Under plain SGD and SGD with momentum, adding ``λ/2‖w‖²`` to the loss and decaying the weights with
``optax.add_decayed_weights(λ)`` *before* the SGD transform are the same trajectory: both feed
``g + λw`` into the same update. Under Adam they differ: Adam+L2 (``adam_l2``) rescales the decay term by
Adam's preconditioner, AdamW (``adamw``) applies it decoupled, after -- Loshchilov & Hutter's point.
"""
from __future__ import annotations

import jax
import optax

from regjax._checks import check_nonnegative
from regjax.penalty import weights_mask

__all__ = ["sgd_step", "decayed_sgd", "adam_l2", "adamw"]


def sgd_step(params, grads, lr):
    """One minibatch SGD step from scratch: ``w ← w − lr · g`` for every leaf (pure; returns new params).

    ``grads`` should already be the *mean* over the batch's true size (the trainer weights a padded last batch
    by its real size; d2l's scratch ``sgd`` divides by the nominal batch size instead).
    """
    return jax.tree_util.tree_map(lambda w, g: w - lr * g, params, grads)


def _mask(mask):
    return weights_mask if mask is None else mask


def decayed_sgd(lr, weight_decay, mask=None, momentum=None) -> optax.GradientTransformation:
    """``optax.chain(optax.add_decayed_weights(weight_decay, mask), optax.sgd(lr, momentum))``.

    Decay comes *before* SGD so that the gradient becomes ``g + λw`` and SGD scales it by ``−lr``. The other
    order, ``chain(sgd(lr), add_decayed_weights(λ))``, adds ``+λw`` to the already-negated update: every step
    multiplies the weights by ``(1 + λ)`` -- they grow instead of decaying. ``mask`` defaults to
    ``weights_mask`` (kernels only), the same default as ``l2_penalty``.
    """
    check_nonnegative(weight_decay, "weight_decay")
    return optax.chain(optax.add_decayed_weights(weight_decay, _mask(mask)), optax.sgd(lr, momentum))


def adam_l2(lr, weight_decay, mask=None) -> optax.GradientTransformation:
    """Adam with an L2 penalty folded into the gradient (what ``torch.optim.Adam(weight_decay=…)`` does)."""
    check_nonnegative(weight_decay, "weight_decay")
    return optax.chain(optax.add_decayed_weights(weight_decay, _mask(mask)), optax.adam(lr))


def adamw(lr, weight_decay, mask=None) -> optax.GradientTransformation:
    """Decoupled weight decay (``optax.adamw``), masked to the weights like the others.

    Note optax scales the decay by the learning rate: ``w ← w − lr·(adam_update + λw)``.
    """
    check_nonnegative(weight_decay, "weight_decay")
    return optax.adamw(lr, weight_decay=weight_decay, mask=_mask(mask))
