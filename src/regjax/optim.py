"""Optimizers: the from-scratch SGD step (D2L §3.4), the same step as an optax transformation, and the decayed
optimizers of the weight-decay lessons (D2L §3.7).

Every optimizer here is an optax ``GradientTransformation`` built with ``optax.inject_hyperparams``, so the engine
has one optimizer path and its ``hparams['lr']`` (and ``['weight_decay']``, ``['l1']``) reach the optimizer as
traced values: sweepable, and never silently ignored.

Three names for three things:

* ``lam`` (not here: the engine's ``hparams['lam']``) -- the penalty ``lam * l2_penalty(params)`` added to the
  *loss* (``regjax.penalty``);
* ``weight_decay`` -- the decay *inside an optimizer*: ``decayed_sgd``, ``adam_l2``, ``adamw``;
* ``l1`` -- the strength of the L1 decay ``l1 · sign(w)`` inside ``l1_decayed_sgd``.

Under plain SGD and SGD with momentum, ``lam`` in the loss and ``weight_decay`` before the SGD transform are the
same trajectory: both feed ``g + λw`` into the same update. Under Adam they differ: Adam+L2 (``adam_l2``)
rescales the decay term by Adam's preconditioner, AdamW (``adamw``) applies it decoupled, after -- Loshchilov &
Hutter's point.
"""
from __future__ import annotations

import functools
import math
from typing import Any, Optional

import jax
import jax.numpy as jnp
import optax

from regjax._checks import check_in_range, check_nonnegative
from regjax.base import PyTree
from regjax.penalty import Mask, resolve_mask, weights_mask

__all__ = ["sgd_step", "scratch_sgd", "sgd", "sgd_for", "decayed_sgd", "adam_l2", "adamw", "add_l1_decay",
           "l1_decayed_sgd"]


def sgd_step(params: PyTree, grads: PyTree, lr: Any) -> PyTree:
    """One minibatch SGD step from scratch: ``w ← w − lr · g`` for every leaf (pure; returns new params).

    ``grads`` should already be the *mean* over the batch's true size (the trainer weights a padded last batch
    by its real size; d2l's scratch ``sgd`` divides by the nominal batch size instead). A concrete ``lr`` must be
    finite and ``> 0``; a traced one (inside the engine) is checked where it enters ``fit``.
    """
    _check_lr(lr)
    return jax.tree_util.tree_map(lambda w, g: w - lr * g, params, grads)


def scratch_sgd(lr: float) -> optax.GradientTransformation:
    """``sgd_step`` as an optax ``GradientTransformation``: the optimizer of the from-scratch lessons.

    An optax transformation returns an *update* that ``optax.apply_updates`` adds to the parameters; the update of
    ``w ← w − lr·g`` is ``−lr·g``, and ``w + (−lr·g)`` is ``sgd_step(w, g, lr)`` bit for bit, eagerly and under
    jit (tested). ``lr`` is injectable (the engine's ``hparams['lr']``, traced, so sweeps can vary it). One object
    per ``lr`` (like ``sgd``): runs at one learning rate share their compiled programs, which are cached by
    optimizer -- a second 1-epoch ``fit`` of the digits MLP compiles for 0.0007 s with the same object and 1.08 s
    with a new one (this project's 2-core CPU).

    (The update is written out rather than asked of ``sgd_step`` as its step from the origin, ``0 − lr·g``: that
    form keeps XLA from fusing the update into one multiply-add, which rounds once where ``w − lr·g`` fused does,
    and a fifth of the weights would differ from ``sgd_step``'s in the last bit.)
    """
    _check_lr(lr)
    return _scratch_sgd(float(lr))


@functools.lru_cache(maxsize=None)
def _scratch_sgd(lr: float) -> optax.GradientTransformation:
    def factory(learning_rate):
        def update(grads, state, params=None):
            del params
            return jax.tree_util.tree_map(lambda g: -learning_rate * g, grads), state

        return optax.GradientTransformation(lambda params: optax.EmptyState(), update)

    return optax.inject_hyperparams(factory)(learning_rate=lr)


def sgd(lr: float, momentum: Optional[float] = None) -> optax.GradientTransformation:
    """``optax.sgd`` with its learning rate injectable: the engine's ``hparams['lr']`` sets it (traced, so it can
    be swept); without that key it stays ``lr``. Same updates as ``optax.sgd(lr, momentum)``. One object per
    ``(lr, momentum)``, like ``scratch_sgd``."""
    _check_lr(lr)
    return _sgd(float(lr), None if momentum is None else float(momentum))


@functools.lru_cache(maxsize=None)
def _sgd(lr: float, momentum: Optional[float]) -> optax.GradientTransformation:
    return optax.inject_hyperparams(optax.sgd)(learning_rate=lr, momentum=momentum)


IMPL_OPTIMIZERS = {"scratch": scratch_sgd}  # every other model implementation trains with optax's sgd


def sgd_for(impl: str, lr: float) -> optax.GradientTransformation:
    """Plain SGD at ``lr`` for a model implementation: the from-scratch ``scratch_sgd`` for ``impl='scratch'``
    (the scratch models learn with the scratch step), ``sgd`` (optax) for the Flax models. Both take
    ``hparams['lr']``, so a sweep over the learning rate works on either."""
    return IMPL_OPTIMIZERS.get(impl, sgd)(lr)


def _check_lr(lr: Any) -> None:
    check_in_range(lr, "lr", 0.0, math.inf, low_open=True, high_open=True)


def _decayed(inner):
    """``chain(add_decayed_weights(weight_decay, mask), inner(learning_rate, ...))`` as an injectable factory."""

    def factory(learning_rate, weight_decay, mask, momentum=None):
        step = inner(learning_rate) if momentum is None else inner(learning_rate, momentum)
        return optax.chain(optax.add_decayed_weights(weight_decay, _mask(mask)), step)

    return optax.inject_hyperparams(factory, static_args=("mask",))


def _mask(mask: Mask) -> Mask:
    return weights_mask if mask is None else mask


def decayed_sgd(lr: float, weight_decay: float, mask: Mask = None, momentum: Optional[float] = None
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


def adam_l2(lr: float, weight_decay: float, mask: Mask = None) -> optax.GradientTransformation:
    """Adam with an L2 penalty folded into the gradient (what ``torch.optim.Adam(weight_decay=…)`` does)."""
    _check_lr(lr)
    check_nonnegative(weight_decay, "weight_decay")
    return _decayed(optax.adam)(lr, weight_decay, mask)


def adamw(lr: float, weight_decay: float, mask: Mask = None) -> optax.GradientTransformation:
    """Decoupled weight decay (``optax.adamw``), masked to the weights like the others.

    Note optax scales the decay by the learning rate: ``w ← w − lr·(adam_update + λw)``.
    """
    _check_lr(lr)
    check_nonnegative(weight_decay, "weight_decay")
    return optax.inject_hyperparams(optax.adamw, static_args=("mask",))(lr, weight_decay=weight_decay,
                                                                         mask=_mask(mask))


def add_l1_decay(l1: Any, mask: Mask = None) -> optax.GradientTransformation:
    """Add ``l1 · sign(w)`` to the updates of the masked leaves (default ``weights_mask``): the subgradient of
    ``l1 · l1_penalty``, with ``sign(0) = 0`` (the smallest subgradient, so a weight at exactly 0 is left there).
    Chain it *before* the optimizer, like ``optax.add_decayed_weights``.

    Plain (sub)gradient descent does not make weights exactly 0 -- they hop around 0 by ``lr · l1`` -- which is
    why lasso solvers use a proximal (soft-threshold) step; this keeps SGD's form so the L1/L2 contrast is one
    line (D2L §3.7 exercise).
    """

    def init(params):
        del params
        return optax.EmptyState()

    def update(updates, state, params):
        if params is None:
            raise ValueError("add_l1_decay needs params: call update(grads, state, params)")
        full_mask = resolve_mask(params, mask)
        new = jax.tree_util.tree_map(lambda u, p, m: u + l1 * jnp.sign(p) if m else u, updates, params, full_mask)
        return new, state

    return optax.GradientTransformation(init, update)


def l1_decayed_sgd(lr: float, l1: float, mask: Mask = None) -> optax.GradientTransformation:
    """``chain(add_l1_decay(l1, mask), sgd(lr))``, both hyperparameters injectable: the engine's ``hparams['lr']``
    and ``hparams['l1']`` reach it as traced values, so ``regjax.engine.sweep`` can vmap over L1 strengths. Same
    updates as ``l1 * l1_penalty`` in the loss under SGD."""
    _check_lr(lr)
    check_nonnegative(l1, "l1")

    def factory(learning_rate, l1, mask):
        return optax.chain(add_l1_decay(l1, mask), optax.sgd(learning_rate))

    return optax.inject_hyperparams(factory, static_args=("mask",))(lr, l1, mask)
