"""``fit``: one training run -- the one-member case of the training core -- and ``run_steps``, the same
training as one scan over all steps that records the parameters after every step."""
from __future__ import annotations

from functools import partial
from typing import Any, Callable, Optional, Tuple

import jax
import numpy as np
import optax
from jax.sharding import Mesh

from regjax.base import Data, Model, PRNGKey, TrainState
from regjax.data.batching import epoch_batches, num_batches
from regjax.engine.core import Loop, check_data, check_epochs, compile_loop, prologue, run_epochs
from regjax.engine.history import History
from regjax.engine.hparams import check_hparams
from regjax.engine.program import initial_state, program
from regjax.engine.spec import TrainSpec
from regjax.engine.step import epoch_key, make_step, run_keys
from regjax.parallel import DATA_AXIS, replicate

__all__ = ["fit", "run_steps"]


def fit(model: Model, optimizer: Optional[optax.GradientTransformation], data: Data, *, epochs: int,
        batch_size: int, key: PRNGKey, hparams: Optional[dict] = None, loss: Any = "cross_entropy",
        task: Optional[str] = None, penalty_mask: Any = None, drop_remainder: bool = False,
        eval_batch_size: int = 1024, on_epoch: Optional[Callable[[int, dict], None]] = None,
        after_epoch: Optional[Callable] = None, on_start: Optional[Callable[[], None]] = None,
        state: Optional[TrainState] = None, start_epoch: int = 0, history: Optional[History] = None,
        data_mesh: Optional[Mesh] = None, shuffle: bool = True) -> Tuple[TrainState, History]:
    """Train until ``epochs`` epochs are done, evaluating after each; returns ``(state, History)``.

    Args:
      model, optimizer: a ``Model`` and an optax optimizer, or ``None`` for the scratch ``sgd_step`` (then
        ``hparams['lr']`` is required).
      data: ``(x_train, y_train, x_test, y_test)`` (moved to the device once).
      key: the run key: parameters (unless ``state`` is given), the dropout key of every step and the per-epoch
        shuffles (``regjax.engine.step`` spells the schedule), so epoch ``e`` is the same whether the
        run got there in one call or was continued: ``fit(..., state=s, start_epoch=e, history=h)`` with the
        ``s, h`` of an earlier call after ``e`` epochs (e.g. from a checkpoint) finishes bit-identically to one
        uninterrupted call.
      hparams: traced hyperparameters (``regjax.engine.hparams``): ``lr``, ``lam``, ``weight_decay``, model keys.
      loss, task, penalty_mask, batch_size, drop_remainder, eval_batch_size, shuffle: the ``TrainSpec``
        (``shuffle=False``: the examples in their given order every epoch; metrics follow
        ``task``: 'classification' gives loss and accuracy, 'regression' loss; known for named losses, required
        with a callable ``loss``).
      on_start: called once every argument has been checked, before compiling.
      on_epoch: ``on_epoch(epoch, row)`` with each epoch's metrics (progress, logging).
      after_epoch: ``after_epoch(epoch, state, history)`` after each finite epoch (checkpointing).
      history: extended in place when given.
      data_mesh: ``regjax.parallel.data_mesh(n)``: data parallelism over the mesh's devices -- the same step,
        each global batch split over the devices, state replicated; ``batch_size`` must be a multiple of the
        device count. Results equal the single-device ones to float tolerance.

    Returns:
      ``(state, history)``: the final ``TrainState`` and the per-epoch ``History`` (``status == 'completed'``).

    Raises ``ValueError`` for bad arguments before any training, and ``Diverged`` at the end of the first epoch
    whose training loss is not finite (``history.status == 'diverged'``; its ``state`` is the last finite one).
    """
    epochs, start_epoch = check_epochs(epochs, start_epoch)
    spec = TrainSpec.build(model, optimizer, batch_size=batch_size, loss=loss, task=task, penalty_mask=penalty_mask,
                           drop_remainder=drop_remainder, eval_batch_size=eval_batch_size, shuffle=shuffle)
    data = check_data(data, spec.task)
    n = int(data[0].shape[0])
    num_batches(n, batch_size, drop_remainder)
    if data_mesh is not None and tuple(data_mesh.axis_names) != (DATA_AXIS,):
        raise ValueError(f"data_mesh must have the one axis {DATA_AXIS!r} (regjax.parallel.data_mesh(n)), got axes "
                         f"{tuple(data_mesh.axis_names)}; a sweep's members go on sweep(member_mesh=...)")
    if data_mesh is not None and batch_size % data_mesh.size:
        size = data_mesh.size
        raise ValueError(f"batch_size {batch_size} is not a multiple of the {size} devices: every device gets "
                         f"an equal slice of each batch; use e.g. {batch_size - batch_size % size or size} "
                         f"or {batch_size + size - batch_size % size}")
    history = history if history is not None else History()
    state, hparams = prologue(spec, data, hparams, state=state, init=lambda: initial_state(model, optimizer, key),
                              history=history, start_epoch=start_epoch, num_members=1,
                              first=lambda tree: tree, example_x=data[0])
    if on_start is not None:
        on_start()
    if start_epoch == epochs:  # nothing left to train (a finished run restored from its checkpoint)
        history.status = "completed"
        return state, history
    place = jax.device_put if data_mesh is None else partial(replicate, mesh=data_mesh)
    state, hparams, key, data = place((state, hparams, key, tuple(data)))
    loop = Loop(program(spec, members=False, data_mesh=data_mesh), key, data, None, n, place, members=False)
    executables, seconds = compile_loop(loop, state, hparams, history, start_epoch)
    history.compile_time_s += seconds
    state = run_epochs(loop, executables, state, hparams, history, start_epoch=start_epoch, epochs=epochs,
                       on_epoch=on_epoch, after_epoch=after_epoch)
    return state, history


def run_steps(model: Model, optimizer: Optional[optax.GradientTransformation], x: Any, y: Any, *, epochs: int,
              batch_size: int, key: PRNGKey, hparams: Optional[dict] = None, loss: Any = "cross_entropy",
              task: Optional[str] = None, penalty_mask: Any = None,
              record: Callable = lambda params: params) -> Tuple[TrainState, Any]:
    """Train like ``fit`` (same keys, batches and step) but as one ``lax.scan`` over *all* steps, returning
    ``(state, record(params) after every step)`` -- for per-step trajectories such as ‖w‖ vs step."""
    epochs, _ = check_epochs(epochs, 0)
    spec = TrainSpec.build(model, optimizer, batch_size=batch_size, loss=loss, task=task, penalty_mask=penalty_mask)
    x, y = jax.numpy.asarray(x), jax.numpy.asarray(y)
    num_batches(int(x.shape[0]), batch_size)
    keys = run_keys(key)
    state = initial_state(model, optimizer, key)
    hparams = check_hparams(model, optimizer, state.opt_state, hparams)
    step = make_step(model, optimizer, spec.loss_fn, task=spec.task, penalty_mask=spec.mask())

    @jax.jit
    def run(state, x, y, hparams):
        batches = jax.vmap(lambda e: epoch_batches(epoch_key(keys.data, e), x, y, batch_size))(np.arange(epochs))
        flat = jax.tree_util.tree_map(lambda a: a.reshape((-1,) + a.shape[2:]), tuple(batches))

        def body(s, b):
            s, _ = step(s, b, hparams)
            return s, record(s.params)

        return jax.lax.scan(body, state, flat)

    return run(state, x, y, hparams)
