"""What models and the training engine share, and nothing else: ``Model``, ``TrainState``, the task names and the
type vocabulary of the public API.

``regjax.models`` builds ``Model``s and ``regjax.engine`` trains them; both import this module and neither
imports the other, so the models layer never depends on the engine.
"""
from __future__ import annotations

from typing import Any, Callable, NamedTuple, Tuple

import jax

__all__ = ["Model", "TrainState", "TASKS", "Array", "ArrayLike", "PRNGKey", "PyTree", "Data"]

# The vocabulary of annotations, as optax has it: ``Array`` for what a function returns, ``ArrayLike`` for what
# it accepts (JAX or NumPy arrays, Python scalars), ``PRNGKey`` for a typed key (``jax.random.key``).
Array = jax.Array
ArrayLike = jax.typing.ArrayLike
PRNGKey = jax.Array
PyTree = Any
# ``(x_train, y_train, x_test, y_test)``: what the engine trains and evaluates on.
Data = Tuple[ArrayLike, ArrayLike, ArrayLike, ArrayLike]

TASKS = ("classification", "regression")


class Model(NamedTuple):
    """A model as two pure functions.

    ``init(key) -> (params, model_state)``; ``apply(params, model_state, x, *, key, train, hparams) ->
    (outputs, new_model_state)``. ``model_state`` is ``{}`` for models without BatchNorm.
    ``hparams`` names the hyperparameters ``apply`` reads from its ``hparams`` dict (e.g. ``("rates",)`` for
    the scratch dropout MLP); the engine refuses any other model-level key instead of ignoring it.
    """

    init: Callable
    apply: Callable
    hparams: tuple = ()


class TrainState(NamedTuple):
    """Everything a training run carries from step to step, as one pytree (checkpointed whole)."""

    params: Any
    opt_state: Any
    model_state: Any
    step: jax.Array  # int32 scalar: the global step, source of the per-step dropout key
    key: jax.Array   # base key for dropout; step keys are fold_in(key, step)
