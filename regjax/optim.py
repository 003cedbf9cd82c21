"""Optimizers: the from-scratch SGD step (D2L §3.4) and the optax chains for the weight-decay comparison.

Under plain SGD and SGD with momentum, adding ``λ/2‖w‖²`` to the loss and decaying the weights with
``optax.add_decayed_weights(λ)`` *before* the SGD transform are the same trajectory: both feed
``g + λw`` into the same update. Every optax builder here is wrapped in ``optax.inject_hyperparams``, so the
engine's ``hparams['lr']`` and ``hparams['weight_decay']`` reach it as traced values (sweepable, and never
silently ignored). Under Adam they differ: Adam+L2 (``adam_l2``) rescales the decay term by
Adam's preconditioner, AdamW (``adamw``) applies it decoupled, after -- Loshchilov & Hutter's point.
"""
from __future__ import annotations

import math
from typing import Any, Optional

import jax
import optax

from regjax._checks import check_in_range, check_nonnegative
from regjax.base import PyTree
from regjax.penalty import weights_mask

__all__ = ["sgd_step", "sgd", "decayed_sgd", "adam_l2", "adamw"]


def sgd_step(params: PyTree, grads: PyTree, lr: Any) -> PyTree:
    """One minibatch SGD step from scratch: ``w ← w − lr · g`` for every leaf (pure; returns new params).

    ``grads`` should already be the *mean* over the batch's true size (the trainer weights a padded last batch
    by its real size; d2l's scratch ``sgd`` divides by the nominal batch size instead). A concrete ``lr`` must be
    finite and ``> 0``; a traced one (inside the engine) is checked where it enters ``fit``.
    """
    check_in_range(lr, "lr", 0.0, math.inf, low_open=True, high_open=True)
    return jax.tree_util.tree_map(lambda w, g: w - lr * g, params, grads)


def _mask(mask):
    return weights_mask if mask is None else mask


def _check_lr(lr):
    check_in_range(lr, "lr", 0.0, math.inf, low_open=True, high_open=True)


def sgd(lr: float, momentum: Optional[float] = None) -> optax.GradientTransformation:
    """``optax.sgd`` with its learning rate injectable: the engine's ``hparams['lr']`` sets it (traced, so it can
    be swept); without that key it stays ``lr``. Same updates as ``optax.sgd(lr, momentum)``."""
    _check_lr(lr)
    return optax.inject_hyperparams(optax.sgd)(learning_rate=lr, momentum=momentum)


def _decayed(inner):
    """``chain(add_decayed_weights(weight_decay, mask), inner(learning_rate, ...))`` as an injectable factory."""

    def factory(learning_rate, weight_decay, mask, momentum=None):
        step = inner(learning_rate) if momentum is None else inner(learning_rate, momentum)
        return optax.chain(optax.add_decayed_weights(weight_decay, _mask(mask)), step)

    return optax.inject_hyperparams(factory, static_args=("mask",))


def decayed_sgd(lr: float, weight_decay: float, mask: Any = None, momentum: Optional[float] = None
                ) -> optax.GradientTransformation:
    """``optax.chain(optax.add_decayed_weights(weight_decay, mask), optax.sgd(lr, momentum))``.

    Decay comes *before* SGD so that the gradient becomes ``g + λw`` and SGD scales it by ``−lr``. The other
    order, ``chain(sgd(lr), add_decayed_weights(λ))``, adds ``+λw`` to the already-negated update: every step
    multiplies the weights by ``(1 + λ)`` -- they grow instead of decaying. ``mask`` defaults to
    ``weights_mask`` (kernels only), the same default as ``l2_penalty``.
    """
    _check_lr(lr)
    check_nonnegative(weight_decay, "weight_decay")
    return _decayed(optax.sgd)(lr, weight_decay, mask, momentum=momentum)


def adam_l2(lr: float, weight_decay: float, mask: Any = None) -> optax.GradientTransformation:
    """Adam with an L2 penalty folded into the gradient (what ``torch.optim.Adam(weight_decay=…)`` does)."""
    _check_lr(lr)
    check_nonnegative(weight_decay, "weight_decay")
    return _decayed(optax.adam)(lr, weight_decay, mask)


def adamw(lr: float, weight_decay: float, mask: Any = None) -> optax.GradientTransformation:
    """Decoupled weight decay (``optax.adamw``), masked to the weights like the others.

    Note optax scales the decay by the learning rate: ``w ← w − lr·(adam_update + λw)``.
    """
    _check_lr(lr)
    check_nonnegative(weight_decay, "weight_decay")
    return optax.inject_hyperparams(optax.adamw, static_args=("mask",))(lr, weight_decay=weight_decay,
                                                                         mask=_mask(mask))
