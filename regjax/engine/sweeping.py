"""``sweep``: many training runs as ONE compiled program -- the N-member case of the training core (D2L §3.7,
§5.6, §8.5 exercises; k-fold selection).

A sweep trains N ``Members`` that differ in traced hyperparameters and in their seed, and optionally in their
training data (``data_index``: one stacked dataset per fold). Structure (the model, the optimizer's form, batch
size, epochs) is shared: that is what lets one program serve all members. Member ``i`` runs the very member
functions of ``fit(model, optimizer, data, key=members.keys[i], hparams={k: v[i]})``, ``jax.vmap``ped
(``regjax.engine.program``), so it equals that run by construction, to float round-off.

Layout. Everything per member is a plain array with the member axis FIRST: the stacked ``TrainState``
(``params``, ``opt_state`` -- including optax's injected hyperparameters --, BatchNorm ``model_state``, ``step``
(N,), ``key`` (N,)), ``Members.hparams`` (N, ...), ``Members.keys`` (N,). ``member_mesh`` splits that axis over
devices (many small models on many devices); the data are replicated.

Memory. Members that do not fit run in chunks of ``chunk_size`` members, epoch by epoch (every member finishes
epoch e before any starts e+1, so a checkpoint always holds one epoch for all); unless given, the chunk size is
measured (``regjax.engine.memory``). The last chunk is padded with copies of its last member (discarded), so
one compiled program serves every chunk.

Divergence. A member whose training loss turns non-finite is marked ``diverged`` (epoch and global step
recorded); its state is frozen at the end of its last finite epoch and its later metrics are NaN (``null`` in
JSON), while the other members train on undisturbed -- vmapped members never mix values. Only when *every*
member has diverged does the sweep raise ``Diverged`` (a single run is the case N = 1 of the same rule).
"""
from __future__ import annotations

import functools
import time
from typing import Any, Callable, Optional, Tuple

import jax
import jax.numpy as jnp
import numpy as np
import optax
from jax.sharding import Mesh, NamedSharding, PartitionSpec

from regjax._checks import as_count, check_in_range
from regjax.base import Data, Model, PRNGKey, TrainState
from regjax.data.batching import num_batches
from regjax.engine.core import Loop, check_data, check_epochs, compile_loop, concat, prologue, run_epochs, take
from regjax.engine.fitting import fit
from regjax.engine.history import Diverged, History, SweepHistory
from regjax.engine.hparams import check_hparams
from regjax.engine.members import Members
from regjax.engine.memory import available_memory, peak_bytes, plan_chunk_size, tree_bytes
from regjax.engine.program import initial_state, program
from regjax.engine.results import SweepResult
from regjax.engine.spec import TrainSpec
from regjax.parallel import replicate

__all__ = ["sweep", "init_members", "train_sequentially", "fit_loop"]


def init_members(model: Model, optimizer: Optional[optax.GradientTransformation], keys: PRNGKey) -> TrainState:
    """The stacked initial state: ``start_state(model, optimizer, key)`` per member key, vmapped -- the state
    each member's solo ``fit`` starts from (also the ``target`` to restore a sweep checkpoint into)."""
    return initial_state(model, optimizer, keys, members=True)


def _member_placement(member_mesh: Optional[Mesh]) -> Callable[[Any], Any]:
    """Where member-axis arrays go: the default device, or split over ``member_mesh`` (scalars replicated)."""
    if member_mesh is None:
        return jax.device_put
    split = NamedSharding(member_mesh, PartitionSpec(member_mesh.axis_names[0]))

    def place(tree):
        return jax.tree_util.tree_map(
            lambda a: replicate(a, member_mesh) if np.ndim(a) == 0 else jax.device_put(a, split), tree)

    return place


def _plan_chunks(loop: Loop, state: TrainState, hparams: dict, history: SweepHistory, start_epoch: int,
                 chunk_size: Optional[int], memory_fraction: float, memory_budget: Optional[int]
                 ) -> Tuple[tuple, float, int, dict]:
    """Compile the loop, choosing the chunk size from XLA's measured peak unless given (module docstring);
    returns ``(executables, compile seconds, chunk_size, memory record)`` and sets ``loop.chunks``."""
    n = history.num_members
    if chunk_size is None:
        executables, seconds = compile_loop(loop, state, hparams, history, start_epoch)
        peak = peak_bytes(*executables)
        shared, state_bytes = tree_bytes(loop.data), tree_bytes(state)
        given = memory_budget is not None
        budget, source = (memory_budget, "memory_budget") if given else available_memory()
        budget = int(budget * (1 if given else memory_fraction))
        memory = {"peak_bytes_all_members": peak, "shared_data_bytes": shared, "state_bytes": state_bytes,
                  "budget_bytes": budget, "budget_source": source,
                  "bytes_per_member": None if peak is None else (peak - shared) / n}
        chunk_size = n if peak is None else plan_chunk_size(peak, n, shared, state_bytes, budget)
    else:
        chunk_size, memory, seconds = min(chunk_size, n), {"chunk_size_given": True}, 0.0
    if chunk_size < n or "chunk_size_given" in memory:
        if chunk_size < n:
            loop.chunks = [(np.minimum(np.arange(lo, lo + chunk_size), min(lo + chunk_size, n) - 1),
                            min(chunk_size, n - lo)) for lo in range(0, n, chunk_size)]
        executables, more = compile_loop(loop, state, hparams, history, start_epoch)
        seconds += more
        memory["peak_bytes_per_chunk"] = peak_bytes(*executables)
    memory["chunk_size"] = chunk_size
    return executables, seconds, chunk_size, memory


def sweep(model: Model, optimizer: Optional[optax.GradientTransformation], data: Data, members: Members, *,
          epochs: int, batch_size: int, loss: Any = "cross_entropy", task: Optional[str] = None,
          penalty_mask: Any = None, drop_remainder: bool = False, eval_batch_size: int = 1024,
          chunk_size: Optional[int] = None, memory_fraction: float = 0.5, memory_budget: Optional[int] = None,
          vmap_size: Optional[int] = None, on_start: Optional[Callable[[], None]] = None,
          on_epoch: Optional[Callable] = None, after_epoch: Optional[Callable] = None,
          state: Optional[TrainState] = None, start_epoch: int = 0, history: Optional[SweepHistory] = None,
          member_mesh: Optional[Mesh] = None, shuffle: bool = True) -> SweepResult:
    """Train every member of ``members`` for ``epochs`` epochs in one compiled program; returns a
    ``SweepResult``. Arguments as ``regjax.engine.fit`` (which each member equals), plus:

    Args:
      data: ``(x_train, y_train, x_test, y_test)`` shared by all members, or -- when ``members.data_index`` is
        set -- the same with a leading dataset axis (e.g. one entry per cross-validation fold, ``x_test`` then
        being the fold's validation set).
      chunk_size: members per compiled call (default: measured; ``memory_budget`` bytes overrides
        ``memory_fraction`` of the free memory).
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
    if member_mesh is not None:
        if size % member_mesh.size:
            raise ValueError(f"{size} members do not split evenly over the {member_mesh.size} devices of the mesh")
        if chunk_size is not None and chunk_size != size:
            raise ValueError("with a member mesh the members are split over the devices, not chunked: leave "
                             "chunk_size out")
        chunk_size = size
    history = history if history is not None else SweepHistory(size)
    state, hparams = prologue(spec, data, members.hparams, state=state,
                              init=lambda: init_members(model, optimizer, members.keys), history=history,
                              start_epoch=start_epoch, num_members=size, first=lambda tree: take(tree, 0),
                              example_x=data[0][0] if stacked else data[0])
    if on_start is not None:
        on_start()
    if start_epoch == epochs:
        history.status = "diverged" if not history.alive.any() else "completed"
        return SweepResult(members, state, history, chunk_size or size, {})
    place = _member_placement(member_mesh)
    shared = jax.device_put if member_mesh is None else functools.partial(replicate, mesh=member_mesh)
    data_index = None if not stacked else place(jnp.asarray(members.data_index, jnp.int32))
    state, keys, hparams = place((state, members.keys, hparams))
    loop = Loop(program(spec, members=True, vmap_size=vmap_size), keys, tuple(shared(tuple(data))), data_index,
                n, place, members=True)
    executables, seconds, chunk_size, memory = _plan_chunks(loop, state, hparams, history, start_epoch,
                                                            chunk_size, memory_fraction, memory_budget)
    history.chunk_size = chunk_size
    history.compile_time_s += seconds
    state = run_epochs(loop, executables, state, hparams, history, start_epoch=start_epoch, epochs=epochs,
                       on_epoch=on_epoch, after_epoch=after_epoch)
    return SweepResult(members, state, history, chunk_size, memory)


def train_sequentially(model: Model, optimizer: Optional[optax.GradientTransformation], data: Data,
                       members: Members, *, epochs: int, batch_size: int, loss: Any = "cross_entropy",
                       task: Optional[str] = None, penalty_mask: Any = None, drop_remainder: bool = False,
                       eval_batch_size: int = 1024) -> Tuple[TrainState, dict]:
    """The fair sequential baseline: the member functions a sweep vmaps, compiled ONCE for a single member (the
    program ``fit`` runs), and the members trained one after another in a Python loop through the same epoch
    driver (each epoch's metrics fetched, as the sweep does). Shared data only. Returns ``(stacked final
    states, {'compile_s', 'train_s'})``."""
    spec = TrainSpec.build(model, optimizer, batch_size=batch_size, loss=loss, task=task, penalty_mask=penalty_mask,
                           drop_remainder=drop_remainder, eval_batch_size=eval_batch_size)
    if members.data_index is not None:
        raise ValueError("train_sequentially takes shared data only (members without data_index)")
    data = tuple(jax.device_put(check_data(data, spec.task)))
    states = init_members(model, optimizer, members.keys)
    hparams = check_hparams(model, optimizer, states.opt_state, members.hparams)
    loop = Loop(program(spec, members=False), members.keys[0], data, None, int(data[0].shape[0]), jax.device_put,
                members=False)
    t0 = time.perf_counter()
    executables, _ = compile_loop(loop, take(states, 0), take(hparams, 0), History(), 0)
    compile_s = time.perf_counter() - t0
    t0 = time.perf_counter()
    finals = []
    for i in range(len(members)):
        loop.keys = members.keys[i]
        try:
            state = run_epochs(loop, executables, take(states, i), take(hparams, i), History(), start_epoch=0,
                               epochs=epochs)
        except Diverged as err:  # a sweep freezes a diverged member; the baseline keeps its last finite state
            state = err.state
        finals.append(jax.tree_util.tree_map(lambda a: a[None], state))
    train_s = time.perf_counter() - t0
    return concat(finals), {"compile_s": compile_s, "train_s": train_s}


def fit_loop(model: Model, optimizer: Optional[optax.GradientTransformation], data: Data, members: Members, *,
             epochs: int, **fit_kwargs: Any) -> dict:
    """The natural sequential path: one ``fit`` call per member (its key and hyperparameters), timed. Returns
    ``{'compile_s', 'train_s', 'wall_s'}``: the compile seconds the ``fit`` calls report (the first compiles,
    the rest find the program cached), the rest of the wall time, and the whole."""
    t0 = time.perf_counter()
    compile_s = 0.0
    for i in range(len(members)):
        _, history = fit(model, optimizer, data, epochs=epochs, key=members.keys[i],
                         hparams=take(members.hparams, i), **fit_kwargs)
        compile_s += history.compile_time_s
    wall = time.perf_counter() - t0
    return {"compile_s": compile_s, "train_s": wall - compile_s, "wall_s": wall}
