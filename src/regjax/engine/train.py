"""The front ends of the training core: ``fit`` (one run), ``sweep`` (N runs as ONE compiled program) and
``run_steps`` (one run as one scan over all steps, recording the parameters after each).

``fit`` is the one-member case and ``sweep`` the N-member case of the same core: both build the member functions
of ``regjax.engine.program`` from the step and epoch of ``regjax.engine.core`` and hand them to the epoch driver of
``regjax.engine.loop``. A sweep member ``i`` runs the very functions of ``fit(model, optimizer, data,
key=members.keys[i], hparams={k: v[i]})``, ``jax.vmap``ped, so it equals that run by construction (to float
round-off).

Sweeps (D2L §3.7, §5.6, §8.5 exercises; k-fold selection). N ``Members`` differ in traced hyperparameters and in
their seed, and optionally in their training data (``data_index``: one stacked dataset per fold); structure (the
model, the optimizer's form, batch size, epochs) is shared. Everything per member is a plain array with the
member axis FIRST: the stacked ``TrainState``, ``Members.hparams`` (N, ...), ``Members.keys`` (N,).
``member_mesh`` splits that axis over devices (many small models on many devices); the data are replicated.

Memory. Members that do not fit run in chunks, epoch by epoch (every member finishes epoch e before any starts
e+1, so a checkpoint always holds one epoch for all); unless given, the chunk size is measured
(``regjax.engine.memory``), and a continued sweep keeps the chunk size its history recorded.

Divergence. A member whose training loss turns non-finite is marked diverged (epoch and global step recorded);
its state is frozen at the end of its last finite epoch and its later metrics are NaN (``null`` in JSON), while
the other members train on undisturbed -- vmapped members never mix values. Only when *every* member has
diverged does the run raise ``Diverged`` (a single run is the case N = 1 of the same rule).
"""
from __future__ import annotations

import functools
from typing import Any, Callable, Optional, Tuple

import jax
import jax.numpy as jnp
import numpy as np
import optax
from jax.sharding import Mesh

from regjax._checks import as_count, check_in_range
from regjax.base import Data, Model, PRNGKey, TrainState
from regjax.data.batching import epoch_batches, num_batches
from regjax.engine.core import epoch_key, init_state, make_step, run_keys
from regjax.engine.history import History
from regjax.engine.hparams import check_hparams
from regjax.engine.loop import Loop, check_data, check_epochs, compile_loop, prologue, run_epochs
from regjax.engine.members import Members, take
from regjax.engine.memory import plan_chunks
from regjax.engine.program import MemberInputs, place_members, program
from regjax.engine.results import SweepResult
from regjax.engine.spec import TrainSpec
from regjax.parallel import DATA_AXIS, replicate

__all__ = ["fit", "sweep", "run_steps"]


def fit(model: Model, optimizer: optax.GradientTransformation, data: Data, *, epochs: int, batch_size: int,
        key: PRNGKey, hparams: Optional[dict] = None, loss: Any = "cross_entropy", task: Optional[str] = None,
        penalty_mask: Any = None, drop_remainder: bool = False, eval_batch_size: int = 1024,
        on_epoch: Optional[Callable[[int, dict], None]] = None, after_epoch: Optional[Callable] = None,
        on_start: Optional[Callable[[], None]] = None, state: Optional[TrainState] = None, start_epoch: int = 0,
        history: Optional[History] = None, data_mesh: Optional[Mesh] = None, shuffle: bool = True
        ) -> Tuple[TrainState, History]:
    """Train until ``epochs`` epochs are done, evaluating after each; returns ``(state, History)``. Each epoch is
    ``regjax.engine.core``'s: the step (loss + ``lam * l2_penalty``, its gradient, the optimizer's update) scanned
    over the shuffled batches.

    Args:
      model: a ``Model`` (``regjax.models``: scratch, linen or NNX).
      optimizer: an optax ``GradientTransformation``; ``regjax.scratch_sgd(lr)`` is D2L's from-scratch SGD step.
      data: ``(x_train, y_train, x_test, y_test)`` (moved to the device once).
      key: the run key: parameters (unless ``state`` is given), the dropout key of every step and the per-epoch
        shuffles (``regjax.engine.core`` spells the schedule), so epoch ``e`` is the same whether the run got there
        in one call or was continued: ``fit(..., state=s, start_epoch=e, history=h)`` with the ``s, h`` of an
        earlier call after ``e`` epochs (e.g. from a checkpoint) finishes bit-identically to one uninterrupted call.
      hparams: traced hyperparameters (``regjax.engine.hparams``): ``lr``, ``lam``, ``weight_decay``, ``l1``, model
        keys.
      loss, task, penalty_mask, batch_size, drop_remainder, eval_batch_size, shuffle: the ``TrainSpec``
        (``shuffle=False``: the examples in their given order every epoch; metrics follow ``task``:
        'classification' gives loss and accuracy, 'regression' loss; known for named losses, required with a
        callable ``loss``).
      on_start: called once every argument has been checked, before compiling.
      on_epoch: ``on_epoch(epoch, row)`` with each epoch's metrics (per-member arrays of one member).
      after_epoch: ``after_epoch(epoch, state, history)`` after each finite epoch (checkpointing).
      history: extended in place when given.
      data_mesh: ``regjax.parallel.data_mesh(n)``: data parallelism over the mesh's devices -- the same step,
        each global batch split over the devices, state replicated; ``batch_size`` must be a multiple of the
        device count. Results equal the single-device ones to float tolerance.

    Returns:
      ``(state, history)``: the final ``TrainState`` and the per-epoch ``History`` of its one member
      (``status == 'completed'``).

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
    state, hparams = prologue(spec, data, hparams, state=state, init=lambda: init_state(model, optimizer, key),
                              history=history, start_epoch=start_epoch, num_members=1, first=lambda tree: tree,
                              example_x=data[0])
    if on_start is not None:
        on_start()
    if start_epoch == epochs:  # nothing left to train (a finished run restored from its checkpoint)
        history.status = "completed"
        return state, history
    place = jax.device_put if data_mesh is None else functools.partial(replicate, mesh=data_mesh)
    state, inputs, data = place((state, MemberInputs(key, hparams, jnp.array(True), None), tuple(data)))
    loop = Loop(program(spec, members=False, data_mesh=data_mesh), inputs, data, n, place, members=False)
    compiled, seconds = compile_loop(loop, state, history, start_epoch)
    history.compile_time_s += seconds
    state = run_epochs(loop, compiled, state, history, start_epoch=start_epoch, epochs=epochs, on_epoch=on_epoch,
                       after_epoch=after_epoch)
    return state, history


def sweep(model: Model, optimizer: optax.GradientTransformation, data: Data, members: Members, *, epochs: int,
          batch_size: int, loss: Any = "cross_entropy", task: Optional[str] = None, penalty_mask: Any = None,
          drop_remainder: bool = False, eval_batch_size: int = 1024, chunk_size: Optional[int] = None,
          memory_fraction: float = 0.5, memory_budget: Optional[int] = None, vmap_size: Optional[int] = None,
          on_start: Optional[Callable[[], None]] = None, on_epoch: Optional[Callable] = None,
          after_epoch: Optional[Callable] = None, state: Optional[TrainState] = None, start_epoch: int = 0,
          history: Optional[History] = None, member_mesh: Optional[Mesh] = None, shuffle: bool = True
          ) -> SweepResult:
    """Train every member of ``members`` for ``epochs`` epochs in one compiled program; returns a
    ``SweepResult``. Arguments as ``fit`` (which each member equals), plus:

    Args:
      data: ``(x_train, y_train, x_test, y_test)`` shared by all members, or -- when ``members.data_index`` is
        set -- the same with a leading dataset axis (e.g. one entry per cross-validation fold, ``x_test`` then
        being the fold's validation set).
      chunk_size: members per compiled call (default: measured -- ``memory_budget`` bytes overrides
        ``memory_fraction`` of the free memory -- or, continuing a ``history``, the chunk size it recorded).
      vmap_size: members vectorized together inside the program, the rest following in the same program
        (default all; see ``regjax.engine.program``).
      on_epoch: ``on_epoch(epoch, row)`` with the epoch's per-member metrics as arrays.
      after_epoch, state, start_epoch, history: as for ``fit`` (the state and history of all members).
      member_mesh: a 1-D mesh (``regjax.parallel.member_mesh(n)``): the *member* axis is split over its devices
        (each trains N/n members; the data are replicated); N must be a multiple of n and the members are not
        chunked. Results equal the unsharded sweep to float tolerance.

    Raises ``ValueError`` for bad arguments before training, and ``Diverged`` only if every member diverged.
    """
    epochs, start_epoch = check_epochs(epochs, start_epoch)
    check_in_range(memory_fraction, "memory_fraction", 0.0, 1.0, low_open=True)
    chunk_size = None if chunk_size is None else as_count(chunk_size, "chunk_size")
    vmap_size = None if vmap_size is None else as_count(vmap_size, "vmap_size")
    spec = TrainSpec.build(model, optimizer, batch_size=batch_size, loss=loss, task=task, penalty_mask=penalty_mask,
                           drop_remainder=drop_remainder, eval_batch_size=eval_batch_size, shuffle=shuffle)
    stacked = members.data_index is not None
    data = check_data(data, spec.task, stacked=stacked)
    if stacked and (members.data_index.min() < 0 or members.data_index.max() >= data[0].shape[0]):
        raise ValueError(f"data_index must lie in [0, {data[0].shape[0]}) (the stacked datasets)")
    n = int(data[0].shape[1] if stacked else data[0].shape[0])
    num_batches(n, batch_size, drop_remainder)
    size = len(members)
    history = history if history is not None else History(size)
    chunk_size_from = "chunk_size"
    if chunk_size is None and start_epoch and history.chunk_size is not None and member_mesh is None:
        # the chunks the run was made with: a bit-identical continuation
        chunk_size, chunk_size_from = history.chunk_size, "history"
    if member_mesh is not None:
        if size % member_mesh.size:
            raise ValueError(f"{size} members do not split evenly over the {member_mesh.size} devices of the mesh")
        if chunk_size is not None and chunk_size != size:
            raise ValueError("with a member mesh the members are split over the devices, not chunked: leave "
                             "chunk_size out")
        chunk_size, chunk_size_from = size, "member_mesh"
    state, hparams = prologue(spec, data, members.hparams, state=state,
                              init=lambda: init_state(model, optimizer, members.keys), history=history,
                              start_epoch=start_epoch, num_members=size, first=lambda tree: take(tree, 0),
                              example_x=data[0][0] if stacked else data[0])
    if on_start is not None:
        on_start()
    if start_epoch == epochs:
        history.status = "diverged" if not history.alive.any() else "completed"
        return SweepResult(members, state, history, chunk_size or size, {})
    place = place_members(member_mesh)
    shared = jax.device_put if member_mesh is None else functools.partial(replicate, mesh=member_mesh)
    data_index = None if not stacked else jnp.asarray(members.data_index, jnp.int32)
    state, inputs = place((state, MemberInputs(members.keys, hparams, jnp.ones(size, bool), data_index)))
    loop = Loop(program(spec, members=True, vmap_size=vmap_size), inputs, tuple(shared(tuple(data))), n, place,
                members=True)
    compiled, seconds, chunk_size, memory = plan_chunks(loop, state, history, start_epoch, chunk_size,
                                                        memory_fraction, memory_budget, chunk_size_from)
    history.chunk_size = chunk_size
    history.compile_time_s += seconds
    state = run_epochs(loop, compiled, state, history, start_epoch=start_epoch, epochs=epochs,
                       on_epoch=on_epoch, after_epoch=after_epoch)
    return SweepResult(members, state, history, chunk_size, memory)


def run_steps(model: Model, optimizer: optax.GradientTransformation, x: Any, y: Any, *, epochs: int,
              batch_size: int, key: PRNGKey, hparams: Optional[dict] = None, loss: Any = "cross_entropy",
              task: Optional[str] = None, penalty_mask: Any = None,
              record: Callable = lambda params: params) -> Tuple[TrainState, Any]:
    """Train like ``fit`` (same keys, batches and step) but as one ``lax.scan`` over *all* steps, returning
    ``(state, record(params) after every step)`` -- for per-step trajectories such as ‖w‖ vs step."""
    epochs, _ = check_epochs(epochs, 0)
    spec = TrainSpec.build(model, optimizer, batch_size=batch_size, loss=loss, task=task, penalty_mask=penalty_mask)
    x, y = jnp.asarray(x), jnp.asarray(y)
    num_batches(int(x.shape[0]), batch_size)
    data_key = run_keys(key).data
    state = init_state(model, optimizer, key)
    hparams = check_hparams(model, state.opt_state, hparams)
    step = make_step(model, optimizer, spec.loss_fn, task=spec.task, penalty_mask=spec.mask())

    @jax.jit
    def run(state, x, y, hparams):
        batches = jax.vmap(lambda e: epoch_batches(epoch_key(data_key, e), x, y, batch_size))(np.arange(epochs))
        flat = jax.tree_util.tree_map(lambda a: a.reshape((-1,) + a.shape[2:]), tuple(batches))

        def body(s, b):
            s, _ = step(s, b, hparams)
            return s, record(s.params)

        return jax.lax.scan(body, state, flat)

    return run(state, x, y, hparams)
