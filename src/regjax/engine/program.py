"""A member and the member axis: the two compiled functions every run is made of, laid out for one run
(``fit``) or for N members along a leading axis (``sweep``), and their compilation.

A *member* is one run: its state, its run key, its hyperparameters, whether it is still alive, and which dataset
it trains on. ``member_functions(spec)`` gives its two pure functions, built from ``regjax.engine.core``:

* ``train(state, inputs, epoch, data)``: epoch ``epoch`` of the run seeded by ``inputs.key`` -- shuffled with
  ``fold_in(data_key, epoch)``, the ``lax.scan`` over the steps -- and the freeze of a member whose loss turned
  non-finite (it keeps its state of before the epoch);
* ``evaluate(state, inputs, data)``: the test half of the member's data in eval mode.

The layouts only say how members map onto them:

* single: one member, no member axis (``fit``: no vmap, so it keeps its speed); a ``data_mesh`` splits every
  batch over its devices (data parallelism), state and outputs replicated.
* members: N members along a leading axis, ``jax.vmap``ped (``sweep``), or ``vmap_size`` at a time inside
  the same program (``lax.map(..., batch_size=vmap_size)``: a scan over vmapped groups; ``vmap_size=1`` is a
  plain loop over members in one program -- for backends where a batched kernel is slower than b separate ones:
  XLA:CPU turns a vmapped convolution into a grouped convolution that is slower than one by one). With
  ``inputs.data_index`` each member picks its own dataset from stacked data (k-fold: one dataset per fold).

Because a sweep member runs the very functions a single run runs, "member i equals ``fit``" holds by
construction (to float round-off: a vmapped matrix product may sum in another order).

Compilation is jit's own: ``compile_program`` lowers and compiles ahead of time (to time it and to ask XLA for
the memory a program needs); jit caches both steps, so a second ``lower(...).compile()`` of the same signature
returns the cached executable (0.04-0.14 ms measured on this project's 2-core CPU, against 15 ms for a first
compile of a 512x512 matmul).
"""
from __future__ import annotations

import functools
import time
from typing import Any, Callable, NamedTuple, Optional, Tuple

import jax
import jax.numpy as jnp
from jax.sharding import Mesh, NamedSharding, PartitionSpec

import numpy as np

from regjax.base import Array, Model, PRNGKey, PyTree, TrainState
from regjax.engine.core import epoch_fn, epoch_key, evaluate_fn, make_step, run_keys
from regjax.engine.spec import TrainSpec
from regjax.parallel import replicate

__all__ = ["MemberInputs", "Program", "member_functions", "program", "place_members", "compile_program",
           "executable", "make_epoch", "make_evaluate"]


class MemberInputs(NamedTuple):
    """What a member brings to a call besides its state; in a sweep every leaf has the member axis first."""

    key: PRNGKey                 # the run key (run_keys: its data key shuffles each epoch)
    hparams: dict                # the traced hyperparameters
    alive: Array                 # bool; False: the member diverged earlier, and its state stays frozen
    data_index: Optional[Array]  # which dataset of stacked data the member uses (None: shared data)


def _keep_where(ok: Array, new: PyTree, old: PyTree) -> PyTree:
    """``new`` where ``ok`` else ``old``, leaf by leaf (PRNG keys never change during training: kept as new)."""
    def pick(a, b):
        if jax.dtypes.issubdtype(a.dtype, jax.dtypes.prng_key):
            return a
        return jnp.where(ok, a, b)

    return jax.tree_util.tree_map(pick, new, old)


def _own(data: tuple, data_index: Optional[Array]) -> tuple:
    return data if data_index is None else jax.tree_util.tree_map(lambda d: d[data_index], data)


def member_functions(spec: TrainSpec, data_mesh: Optional[Mesh] = None) -> Tuple[Callable, Callable]:
    """``(train, evaluate)`` of one member, not jitted:

    ``train(state, inputs, epoch, data) -> (state, train_totals, ok, bad_step)``: ``ok`` is ``inputs.alive``
    and a finite training loss; a member that is not ok keeps its state of before the epoch (frozen), and
    ``bad_step`` is the global step of its first non-finite loss.
    ``evaluate(state, inputs, data) -> {'loss', 'accuracy'?}`` on the test half of ``data``.
    """
    step = make_step(spec.model, spec.optimizer, spec.loss_fn, task=spec.task, penalty_mask=spec.mask())
    epoch = epoch_fn(step, spec.batch_size, drop_remainder=spec.drop_remainder, data_mesh=data_mesh,
                     shuffle=spec.shuffle)
    test = evaluate_fn(spec.model, spec.loss_fn, spec.eval_batch_size, task=spec.task, data_mesh=data_mesh)

    def train(state: TrainState, inputs: MemberInputs, epoch_index: Array, data: tuple):
        x, y, _, _ = _own(data, inputs.data_index)
        new, totals = epoch(state, x, y, epoch_key(run_keys(inputs.key).data, epoch_index), inputs.hparams)
        ok = inputs.alive & jnp.isfinite(totals["loss_sum"])
        return _keep_where(ok, new, state), totals, ok, state.step + totals["first_nonfinite"]

    def evaluate(state: TrainState, inputs: MemberInputs, data: tuple) -> dict:
        _, _, x, y = _own(data, inputs.data_index)
        return test(state.params, state.model_state, x, y, inputs.hparams)

    return train, evaluate


class Program(NamedTuple):
    """The jitted ``train(state, inputs, epoch, data)`` (state donated) and ``evaluate(state, inputs, data)`` of
    one spec and layout -- or, compiled (``regjax.engine.loop.compile_loop``), their executables."""

    train: Callable
    evaluate: Callable


@functools.lru_cache(maxsize=64)
def program(spec: TrainSpec, *, members: bool, data_mesh: Optional[Mesh] = None,
            vmap_size: Optional[int] = None) -> Program:
    """The ``Program`` of ``spec`` for a single run (``members=False``, optionally on a ``data_mesh``) or for
    members along a leading axis (``members=True``, ``vmap_size`` as in the module docstring). Cached: every
    ``fit`` or ``sweep`` of the same spec and layout in a process shares it (and jit's compiled executables)."""
    train, evaluate = member_functions(spec, data_mesh)
    if members:
        train, evaluate = _over_members(train, vmap_size), _over_members(evaluate, vmap_size)
    replicated = {} if data_mesh is None else {"out_shardings": NamedSharding(data_mesh, PartitionSpec())}
    return Program(jax.jit(train, donate_argnums=(0,), **replicated), jax.jit(evaluate, **replicated))


def _over_members(member_fn: Callable, vmap_size: Optional[int]) -> Callable:
    """``member_fn(state, inputs, *shared)`` for every member along the leading axis of ``state`` and ``inputs``
    (vmapped, or ``vmap_size`` at a time); the ``shared`` arguments (the epoch, the data) are the same for all."""

    def over(state: TrainState, inputs: MemberInputs, *shared: Any):
        def one(member):
            return member_fn(*member, *shared)

        if vmap_size is None:
            return jax.vmap(one)((state, inputs))
        return jax.lax.map(one, (state, inputs), batch_size=vmap_size)

    return over


def place_members(member_mesh: Optional[Mesh]) -> Callable[[Any], Any]:
    """Where member-axis arrays go: the default device, or split over ``member_mesh`` along their leading axis
    (scalars replicated)."""
    if member_mesh is None:
        return jax.device_put
    split = NamedSharding(member_mesh, PartitionSpec(member_mesh.axis_names[0]))

    def place(tree):
        return jax.tree_util.tree_map(
            lambda a: replicate(a, member_mesh) if np.ndim(a) == 0 else jax.device_put(a, split), tree)

    return place


def compile_program(fn: Callable, *args: Any) -> Tuple[Any, float]:
    """Compile the jitted ``fn`` for ``args`` ahead of time: ``(executable, seconds spent)`` -- close to 0 when
    jit already holds it (module docstring)."""
    start = time.perf_counter()
    compiled = fn.lower(*args).compile()
    return compiled, time.perf_counter() - start


def executable(fn: Callable, compiled: Any) -> Callable:
    """What to run: the compiled executable, or under ``jax_debug_nans`` the jitted ``fn`` itself -- a compiled
    executable is never re-run op by op, so only jit's path lets JAX name the operation that made a NaN."""
    return fn if jax.config.jax_debug_nans else compiled


# ---- the lesson's epoch and evaluation compiled alone, for direct use (tests, benchmarks, probes) ---------------

def make_epoch(step: Callable, batch_size: int, *, drop_remainder: bool = False, data_mesh: Optional[Mesh] = None,
               shuffle: bool = True) -> Callable:
    """``regjax.engine.core.epoch_fn`` jitted, ``state`` donated; on a ``data_mesh`` the outputs come back
    replicated."""
    return _jit(epoch_fn(step, batch_size, drop_remainder=drop_remainder, data_mesh=data_mesh, shuffle=shuffle),
                data_mesh, donate_argnums=(0,))


def make_evaluate(model: Model, loss: Any = "cross_entropy", batch_size: int = 1024, *, task: Optional[str] = None,
                  data_mesh: Optional[Mesh] = None) -> Callable:
    """``regjax.engine.core.evaluate_fn`` jitted."""
    return _jit(evaluate_fn(model, loss, batch_size, task=task, data_mesh=data_mesh), data_mesh)


def _jit(fn, mesh, **kwargs):
    if mesh is not None:
        kwargs["out_shardings"] = NamedSharding(mesh, PartitionSpec())
    return jax.jit(fn, **kwargs)
