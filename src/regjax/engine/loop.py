"""The epoch driver ``fit`` and ``sweep`` share: the checks every run makes before it trains (the prologue), and
the loop over epochs around the compiled program -- timing, evaluation, the history, divergence, callbacks, and
members called chunk by chunk when they do not fit in memory at once.

What differs between a single run and a sweep -- the program's layout (``regjax.engine.program``), where
arguments are placed, chunks of members -- is handed in as a ``Loop``.
"""
from __future__ import annotations

import dataclasses
import time
from typing import Any, Callable, List, NamedTuple, Optional, Sequence, Tuple

import jax
import jax.numpy as jnp
import numpy as np

from regjax._checks import as_count, label_out_of_range
from regjax.base import Array, ArrayLike, Model, PyTree, TrainState
from regjax.engine.core import summarise
from regjax.engine.history import Diverged, History
from regjax.engine.hparams import check_hparams
from regjax.engine.members import concat, take
from regjax.engine.program import MemberInputs, Program, compile_program, executable
from regjax.engine.spec import TrainSpec

__all__ = ["check_data", "check_labels", "check_epochs", "num_outputs", "prologue", "Chunk", "Loop",
           "compile_loop", "run_epochs"]


# ---- before training: the prologue -----------------------------------------------------------------------------

def check_data(data: Any, task: str, *, stacked: bool = False) -> List[Array]:
    """``(x_train, y_train, x_test, y_test)`` as arrays, with matching lengths and non-empty splits; with
    ``stacked`` each array has a leading dataset axis (one dataset per fold) of one length."""
    if not isinstance(data, (tuple, list)) or len(data) != 4:
        raise ValueError("data must be a tuple (x_train, y_train, x_test, y_test)")
    arrays = [jnp.asarray(a) for a in data]
    if stacked:
        if len({a.shape[0] if a.ndim else None for a in arrays}) != 1 or arrays[0].ndim == 0:
            raise ValueError(f"stacked data (members with data_index) need one leading dataset axis of the same "
                             f"length on all four arrays, got shapes {[a.shape for a in arrays]}")
        check_data([a[0] for a in arrays], task)
        return arrays
    for split, (x, y) in (("training", arrays[:2]), ("test", arrays[2:])):
        if x.ndim == 0 or x.shape[0] == 0:
            raise ValueError(f"the {split} set is empty (x has shape {x.shape})")
        if y.ndim == 0 or y.shape[0] != x.shape[0]:
            raise ValueError(f"the {split} set has {x.shape[0]} inputs but labels/targets of shape {y.shape}")
        if task == "classification" and not jnp.issubdtype(y.dtype, jnp.integer):
            raise ValueError(f"classification needs integer class labels; the {split} labels have dtype {y.dtype}")
    return arrays


def check_labels(y: ArrayLike, num_classes: int, name: str) -> None:
    """Class labels must lie in ``[0, num_classes)``: -1 would silently mean the last class, ``num_classes``
    gives a NaN loss."""
    bad = label_out_of_range(y, num_classes)
    if bad is not None:
        raise ValueError(f"{name} holds label {bad}; labels must be in [0, {num_classes}) for this "
                         f"{num_classes}-class model")


def check_epochs(epochs: int, start_epoch: int) -> Tuple[int, int]:
    epochs = as_count(epochs, "epochs")
    start_epoch = as_count(start_epoch, "start_epoch", 0)
    if start_epoch > epochs:
        raise ValueError(f"start_epoch ({start_epoch}) is past epochs ({epochs}): the run already has more epochs")
    return epochs, start_epoch


def num_outputs(model: Model, params: PyTree, model_state: PyTree, x: Array, hparams: dict) -> int:
    """The model's output width on ``x`` (its class count), found with ``eval_shape``: nothing is computed."""
    out = jax.eval_shape(lambda p, ms, xb: model.apply(p, ms, xb, key=None, train=False, hparams=hparams)[0],
                         params, model_state, x[:1])
    return int(out.shape[-1])


def prologue(spec: TrainSpec, data: Sequence[Array], hparams: Any, *, state: Optional[TrainState],
             init: Callable[[], TrainState], history: History, start_epoch: int, num_members: int,
             first: Callable[[PyTree], PyTree], example_x: Array) -> Tuple[TrainState, dict]:
    """The checks every run makes before it trains, in order: the state (initialised, or a copy of the one to
    continue from: the epoch donates its input), the hyperparameters for this model and optimizer, the labels
    against the model's class count (on ``example_x``, with ``first`` picking one member's view of the stacked
    state and hparams), and the history to continue (its epochs must equal ``start_epoch``, its members
    ``num_members``). Returns ``(state, float32 hparams)``."""
    if state is None:
        if start_epoch:
            raise ValueError("start_epoch > 0 needs the state to continue from (state=)")
        state = init()
    else:
        state = jax.tree_util.tree_map(jnp.copy, jax.device_put(state))
    hparams = check_hparams(spec.model, state.opt_state, hparams)
    if spec.classify:
        one = first(state)
        classes = num_outputs(spec.model, one.params, one.model_state, example_x, first(hparams))
        check_labels(data[1], classes, "y_train")
        check_labels(data[3], classes, "y_test")
    if history.epochs != start_epoch or history.num_members != num_members:
        raise ValueError(f"history holds {history.epochs} epochs of {history.num_members} member(s) but start_epoch "
                         f"is {start_epoch} with {num_members} member(s)")
    return state, hparams


# ---- the loop over epochs --------------------------------------------------------------------------------------

class Chunk(NamedTuple):
    """Members called together: ``index`` (chunk-size member indices; the last chunk repeats its last member to
    fill up) and ``size``, how many of them are real."""

    index: np.ndarray
    size: int


@dataclasses.dataclass
class Loop:
    """What the epoch driver needs of a layout: the ``program``, the placed member ``inputs`` (their ``alive``
    flags are filled in every epoch) and ``data``, ``n`` (training examples per member, for examples/s),
    ``place`` (puts a per-epoch value -- the epoch index, the alive flags -- where the program expects it),
    ``members`` (whether there is a member axis) and ``chunks`` (the members of each call, ``Chunk``s; ``None``:
    one call for all)."""

    program: Program
    inputs: MemberInputs
    data: tuple
    n: int
    place: Callable[[Any], Any]
    members: bool
    chunks: Optional[List[Chunk]] = None

    def inputs_for(self, history: History) -> MemberInputs:
        """The member inputs of the next epoch: who is still alive."""
        flags = np.asarray(history.alive)
        return self.inputs._replace(alive=self.place(jnp.asarray(flags if self.members else flags[0])))

    def call(self, fn: Callable, state: TrainState, inputs: MemberInputs, *shared: Any) -> Any:
        """``fn(state, inputs, *shared)``, chunk by chunk when the members are chunked."""
        if self.chunks is None:
            return fn(state, inputs, *shared)
        return concat([take(fn(take(state, c.index), take(inputs, c.index), *shared), slice(0, c.size))
                       for c in self.chunks])

    def as_members(self, tree: PyTree) -> PyTree:
        """Host values with a member axis (a single run's scalars become arrays of one)."""
        return jax.tree_util.tree_map(lambda a: np.asarray(a).reshape((-1,)), tree)


def compile_loop(loop: Loop, state: TrainState, history: History, epoch: int) -> Tuple[Program, float]:
    """Compile the loop's train and evaluate programs for one call's arguments (a whole chunk's, when chunked);
    returns ``(Program of the executables, seconds)``."""
    inputs = loop.inputs_for(history)
    if loop.chunks is not None:
        first = loop.chunks[0].index
        state, inputs = take(state, first), take(inputs, first)
    train, t1 = compile_program(loop.program.train, state, inputs, loop.place(np.int32(epoch)), loop.data)
    evaluate, t2 = compile_program(loop.program.evaluate, state, inputs, loop.data)
    return Program(train, evaluate), t1 + t2


def run_epochs(loop: Loop, compiled: Program, state: TrainState, history: History, *, start_epoch: int,
               epochs: int, on_epoch: Optional[Callable] = None, after_epoch: Optional[Callable] = None
               ) -> TrainState:
    """Train epochs ``start_epoch .. epochs-1``: each epoch trains (timed alone: ``epoch_time_s``), evaluates
    (``eval_time_s``), records into ``history``, raises ``Diverged`` once no member is alive (the state then is
    each member's last finite one; ``on_epoch`` still sees that epoch), else calls ``after_epoch(epoch, state,
    history)`` (checkpoints) and then ``on_epoch(epoch, row)`` (progress): an epoch a user has seen reported
    is already handed to the checkpoint writer."""
    train = executable(loop.program.train, compiled.train)
    evaluate = executable(loop.program.evaluate, compiled.evaluate)
    history.status = "running"
    for epoch in range(start_epoch, epochs):
        inputs = loop.inputs_for(history)
        t0 = time.perf_counter()
        state, totals, ok, bad_step = loop.call(train, state, inputs, loop.place(np.int32(epoch)), loop.data)
        totals, ok, bad_step = jax.device_get((totals, ok, bad_step))  # waits for the epoch
        seconds, t0 = time.perf_counter() - t0, time.perf_counter()
        test = jax.device_get(loop.call(evaluate, state, inputs, loop.data))
        row = history.record(epoch, loop.as_members(summarise(totals)), loop.as_members(test),
                             loop.as_members(ok), loop.as_members(bad_step), seconds=seconds,
                             eval_seconds=time.perf_counter() - t0, n=loop.n)
        if not history.alive.any():
            if on_epoch is not None:
                on_epoch(epoch, row)
            history.status = "diverged"
            raise Diverged(epoch, history.first_diverged_step(), state, history)
        if after_epoch is not None:  # first: an epoch reported (and interrupted after) is already checkpointed
            after_epoch(epoch, state, history)
        if on_epoch is not None:
            on_epoch(epoch, row)
    history.status = "completed"
    return state
