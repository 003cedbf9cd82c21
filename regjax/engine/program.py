"""One training program per (spec, layout), built once and cached: a member's epoch and evaluation, laid out as a
single run (``fit``) or over a leading member axis (``sweep``), plus the AOT compile cache behind both.

A *member* is one run: its state, run key, hyperparameters and data. ``member_functions(spec)`` gives the two
pure functions every run is made of -- ``train`` (one epoch: shuffle with ``fold_in(data_key, epoch)``, the
``lax.scan`` over the steps, the freeze of a diverged member) and ``evaluate`` (the test set in eval mode) --
and the layouts only say how members map onto them:

* ``single``: one member, no member axis (``fit``: no vmap, so it keeps its speed); a ``data_mesh`` splits every
  batch over its devices (data parallelism), state and outputs replicated.
* ``members``: N members along a leading axis, ``jax.vmap``ped (``sweep``), or ``vmap_size`` at a time inside
  the same program (``lax.map(..., batch_size=vmap_size)``: a scan over vmapped groups; ``vmap_size=1`` is a
  plain loop over members in one program -- for backends where a batched kernel is slower than b separate ones:
  XLA:CPU turns a vmapped convolution into a grouped convolution that is slower than one by one). With
  ``data_index`` each member picks its own dataset from stacked data (k-fold: one dataset per fold).

Because a sweep member runs the very functions a single run runs, "member i equals ``fit``" holds by
construction (to float round-off: a vmapped matrix product may sum in another order).
"""
from __future__ import annotations

import functools
import time
from typing import Any, Callable, NamedTuple, Optional, Tuple

import jax
import jax.numpy as jnp
from jax.sharding import Mesh, NamedSharding, PartitionSpec

from regjax.base import Array, Model, PRNGKey, PyTree, TrainState
from regjax.engine.spec import TrainSpec
from regjax.engine.step import epoch_fn, epoch_key, evaluate_fn, make_step, run_keys, start_state

__all__ = ["Program", "member_functions", "program", "initial_state", "compile_cached", "executable"]


def _keep_where(ok: Array, new: PyTree, old: PyTree) -> PyTree:
    """``new`` where ``ok`` else ``old``, leaf by leaf (PRNG keys never change during training: kept as new)."""
    def pick(a, b):
        if jax.dtypes.issubdtype(a.dtype, jax.dtypes.prng_key):
            return a
        return jnp.where(ok, a, b)

    return jax.tree_util.tree_map(pick, new, old)


def member_functions(spec: TrainSpec, data_mesh: Optional[Mesh] = None) -> Tuple[Callable, Callable]:
    """``(train, evaluate)`` of one member, un-jitted:

    ``train(state, key, hparams, alive, epoch, data) -> (state, train_totals, ok, bad_step)``: epoch ``epoch``
    of the run seeded by ``key`` on ``data = (x_train, y_train, x_test, y_test)``; ``ok`` is ``alive`` and a
    finite training loss; a member that is not ok keeps its state of before the epoch (frozen), and
    ``bad_step`` is the global step of its first non-finite loss.
    ``evaluate(state, hparams, data) -> {'loss', 'accuracy'?}`` on the test half of ``data``, in eval mode.
    """
    step = make_step(spec.model, spec.optimizer, spec.loss_fn, task=spec.task, penalty_mask=spec.mask())
    epoch = epoch_fn(step, spec.batch_size, drop_remainder=spec.drop_remainder, data_mesh=data_mesh,
                     shuffle=spec.shuffle)
    test = evaluate_fn(spec.model, spec.loss_fn, spec.eval_batch_size, task=spec.task, data_mesh=data_mesh)

    def train(state: TrainState, key: PRNGKey, hparams: dict, alive: Array, epoch_index: Array, data: tuple):
        new, totals = epoch(state, data[0], data[1], epoch_key(run_keys(key).data, epoch_index), hparams)
        ok = alive & jnp.isfinite(totals["loss_sum"])
        return _keep_where(ok, new, state), totals, ok, state.step + totals["first_nonfinite"]

    def evaluate(state: TrainState, hparams: dict, data: tuple) -> dict:
        return test(state.params, state.model_state, data[2], data[3], hparams)

    return train, evaluate


def _over_members(member_fn: Callable, vmap_size: Optional[int]) -> Callable:
    """``fn(per_member_args, data, data_index)``: ``member_fn(*one_members_args, its_data)`` for every member
    along the leading axis of ``per_member_args`` (vmapped, or ``vmap_size`` at a time)."""

    def over(per_member: tuple, data: tuple, data_index: Optional[Array]):
        def one(args):
            *mine, index = args
            own = data if index is None else jax.tree_util.tree_map(lambda d: d[index], data)
            return member_fn(*mine, own)

        args = (*per_member, data_index)
        if vmap_size is None:
            return jax.vmap(one)(args)
        return jax.lax.map(one, args, batch_size=vmap_size)

    return over


class Program(NamedTuple):
    """The jitted ``train(states, keys, hparams, alive, epoch, data, data_index)`` (states donated) and
    ``evaluate(states, hparams, data, data_index)`` of one spec and layout, and their compiled executables
    (``compile_cached``), one per abstract signature."""

    train: Callable
    evaluate: Callable
    cache: dict


@functools.lru_cache(maxsize=64)
def program(spec: TrainSpec, *, members: bool, data_mesh: Optional[Mesh] = None,
            vmap_size: Optional[int] = None) -> Program:
    """The ``Program`` of ``spec`` for a single run (``members=False``, optionally on a ``data_mesh``) or for
    members along a leading axis (``members=True``, ``vmap_size`` as in the module docstring). Cached: every
    ``fit`` or ``sweep`` of the same spec and layout in a process shares it (and its compiled executables)."""
    train, evaluate = member_functions(spec, data_mesh)
    if members:
        over_eval = _over_members(evaluate, vmap_size)

        def train_program(states, keys, hparams, alive, epoch, data, data_index):
            one = lambda state, key, hp, a, own: train(state, key, hp, a, epoch, own)  # noqa: E731 (epoch shared)
            return _over_members(one, vmap_size)((states, keys, hparams, alive), data, data_index)

        def eval_program(states, hparams, data, data_index):
            return over_eval((states, hparams), data, data_index)
    else:
        def train_program(state, key, hparams, alive, epoch, data, data_index):
            del data_index  # one member, one dataset
            return train(state, key, hparams, alive, epoch, data)

        def eval_program(state, hparams, data, data_index):
            del data_index
            return evaluate(state, hparams, data)

    replicated = {} if data_mesh is None else {"out_shardings": NamedSharding(data_mesh, PartitionSpec())}
    return Program(jax.jit(train_program, donate_argnums=(0,), **replicated), jax.jit(eval_program, **replicated),
                   {})


@functools.lru_cache(maxsize=64)
def _members_init(model: Model, optimizer: Any) -> Tuple[Callable, dict]:
    return jax.jit(jax.vmap(lambda key: start_state(model, optimizer, key))), {}


# XLA's CPU backend spends seconds optimizing the unrolled threefry of a vmapped initializer (10 s for LeNet on a
# busy 2-core machine, 1.5 s without backend optimization); it runs once, so it is compiled unoptimized.
_INIT_COMPILER_OPTIONS = {"xla_backend_optimization_level": 0}


def initial_state(model: Model, optimizer: Any, keys: PRNGKey, *, members: bool = False) -> TrainState:
    """The state runs start from: ``start_state(model, optimizer, key)`` for one run key, run op by op as it
    always has (so a run's figures stay what they were); with ``members=True`` vmapped over a leading axis of
    keys and compiled once per model, optimizer and key shape -- the start of every member of a sweep.

    The two agree exactly for uniform initializers (Xavier, LeNet's) and to the last bit of some weights for
    normal ones: the compiled sampler rounds a few draws differently (1 ulp). Members are compared with single
    runs to float tolerance anyway (a vmapped matrix product may sum in another order)."""
    if not members:
        return start_state(model, optimizer, keys)
    init, cache = _members_init(model, optimizer)
    signature = (keys.shape, str(keys.dtype))
    if signature not in cache:
        lowered = init.lower(keys)
        try:
            cache[signature] = lowered.compile(compiler_options=_INIT_COMPILER_OPTIONS)
        except Exception:  # a backend without that option
            cache[signature] = lowered.compile()
    return cache[signature](keys)


def compile_cached(fn: Callable, cache: dict, args: tuple) -> Tuple[Any, float]:
    """AOT-compile the jitted ``fn`` for ``args`` once per abstract signature (shapes, dtypes, shardings);
    returns ``(compiled, seconds spent compiling now)``."""
    leaves, tree = jax.tree_util.tree_flatten(args)
    signature = (fn, tree, tuple((jax.typeof(leaf), getattr(leaf, "sharding", None)) for leaf in leaves))
    if signature in cache:
        return cache[signature], 0.0
    start = time.perf_counter()
    cache[signature] = fn.lower(*args).compile()
    return cache[signature], time.perf_counter() - start


def executable(fn: Callable, compiled: Any) -> Callable:
    """What to run: the AOT executable, or under ``jax_debug_nans`` the jitted ``fn`` itself -- an AOT
    executable is never re-run op by op, so only jit's path lets JAX name the operation that made a NaN."""
    return fn if jax.config.jax_debug_nans else compiled
