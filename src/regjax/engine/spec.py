"""The static half of a training run: ``TrainSpec``, validated once and hashable, the key of the program cache.

Everything that shapes the compiled program and is not a traced value lives here: the model and the optimizer
(their functions), the loss and the task whose metrics it reports, the batch sizes, ``drop_remainder`` and the
penalty mask, and ``shuffle`` (``False``: every epoch visits the training examples in their given order -- D2L
§3.4 ex. 9). Traced values -- hyperparameters, seeds, data -- stay outside, so one compiled program serves every
run of one spec: a single ``fit``, a continued one, or every member of a ``sweep``.
"""
from __future__ import annotations

import dataclasses
from typing import Any, Callable, Hashable, Optional, Tuple

import jax
import optax

from regjax._checks import as_count
from regjax.base import TASKS, Model, PyTree
from regjax.losses import l1_loss, softmax_cross_entropy, squared_loss

__all__ = ["LOSSES", "resolve_loss", "TrainSpec", "FrozenMask"]

# name -> (per-example loss, the task whose metrics it reports)
LOSSES = {
    "cross_entropy": (softmax_cross_entropy, "classification"),
    "squared": (squared_loss, "regression"),
    "l1": (l1_loss, "regression"),
}


def resolve_loss(loss: Any, task: Optional[str] = None) -> Tuple[Callable, str]:
    """``(loss_fn, task)``: a loss by name (its task is known) or a callable with an explicit ``task``."""
    if task is not None and task not in TASKS:
        raise ValueError(f"task must be one of {TASKS}, got {task!r}")
    if callable(loss):
        if task is None:
            raise ValueError(f"task must be given with a custom loss callable: one of {TASKS}")
        return loss, task
    if loss not in LOSSES:
        raise ValueError(f"loss must be one of {sorted(LOSSES)} or a callable, got {loss!r}")
    fn, default_task = LOSSES[loss]
    return fn, task or default_task


@dataclasses.dataclass(frozen=True)
class FrozenMask:
    """A bool pytree (a penalty mask, or a prefix of the params tree) in hashable form: its structure and leaves."""

    treedef: Any
    leaves: Tuple[bool, ...]

    @classmethod
    def of(cls, mask: PyTree) -> "FrozenMask":
        leaves, treedef = jax.tree_util.tree_flatten(mask)
        return cls(treedef, tuple(bool(leaf) for leaf in leaves))

    def tree(self) -> PyTree:
        return jax.tree_util.tree_unflatten(self.treedef, list(self.leaves))


def _freeze_mask(mask: Any) -> Hashable:
    if mask is None or callable(mask) or isinstance(mask, FrozenMask):
        return mask
    return FrozenMask.of(mask)


@dataclasses.dataclass(frozen=True)
class TrainSpec:
    """What a training program is made of, checked once (``TrainSpec.build``) and hashable.

    ``loss_fn`` is the per-example loss and ``task`` (``'classification'``/``'regression'``) chooses the
    metrics; ``penalty_mask`` selects the leaves of ``hparams['lam'] * l2_penalty`` (``None``: the kernels;
    a dict mask is stored frozen). Two specs are equal when they hold the same objects and values, and then
    share their compiled programs.
    """

    model: Model
    optimizer: optax.GradientTransformation
    loss_fn: Callable
    task: str
    batch_size: int
    penalty_mask: Hashable = None
    drop_remainder: bool = False
    eval_batch_size: int = 1024
    shuffle: bool = True

    @classmethod
    def build(cls, model: Model, optimizer: optax.GradientTransformation, *, batch_size: int,
              loss: Any = "cross_entropy", task: Optional[str] = None, penalty_mask: Any = None,
              drop_remainder: bool = False, eval_batch_size: int = 1024, shuffle: bool = True) -> "TrainSpec":
        """Validate the arguments ``fit`` and ``sweep`` share and freeze them into a spec.

        Raises ``ValueError`` naming the argument (a loss that is neither a known name nor a callable with a
        ``task``; counts that are not positive integers; a model that is not a ``regjax.base.Model``).
        """
        if not isinstance(model, Model):
            raise ValueError(f"model must be a regjax.base.Model(init, apply, hparams), got {type(model).__name__}")
        if not isinstance(optimizer, optax.GradientTransformation):
            raise ValueError(f"optimizer must be an optax.GradientTransformation (regjax.scratch_sgd(lr) is the "
                             f"from-scratch SGD step), got {type(optimizer).__name__}")
        if not isinstance(drop_remainder, bool):
            raise ValueError(f"drop_remainder must be a bool, got {drop_remainder!r}")
        if not isinstance(shuffle, bool):
            raise ValueError(f"shuffle must be a bool, got {shuffle!r}")
        loss_fn, task = resolve_loss(loss, task)
        model = model._replace(hparams=tuple(model.hparams))  # a list of names would make the spec unhashable
        spec = cls(model, optimizer, loss_fn, task, as_count(batch_size, "batch_size"), _freeze_mask(penalty_mask),
                   drop_remainder, as_count(eval_batch_size, "eval_batch_size"), shuffle)
        try:
            hash(spec)
        except TypeError as err:  # the program cache is keyed by the spec: say which part cannot be a key
            raise ValueError(f"the model, optimizer and loss must be hashable objects (functions, NamedTuples of "
                             f"functions), as the compiled programs are cached by them: {err}") from None
        return spec

    @property
    def classify(self) -> bool:
        return self.task == "classification"

    def mask(self) -> Any:
        """The penalty mask as ``l2_penalty`` takes it (a frozen dict mask thawed)."""
        return self.penalty_mask.tree() if isinstance(self.penalty_mask, FrozenMask) else self.penalty_mask
