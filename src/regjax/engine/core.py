"""The training loop every regjax run computes, top to bottom: the keys, the initial state, one step, one epoch
(``lax.scan`` over the batches) and the evaluation: D2L's ``Trainer.fit_epoch`` (§3.4) as pure functions to
compile.

The rest of ``regjax.engine`` wraps these functions and adds nothing to what they compute: ``program`` lays a
member's epoch out for one run or for many (``vmap``) and compiles it, ``loop`` drives the epochs (timing,
callbacks, divergence, chunks of members), ``train`` holds the front ends ``fit`` and ``sweep``.

Everything a run carries is one pytree, ``TrainState(params, opt_state, model_state, step, key)``, and every
hyperparameter a sweep may vary travels in an ``hparams`` dict of arrays passed *into* the compiled functions
(``regjax.engine.hparams``), so the same step can be vmapped over hyperparameters and seeds, sharded, or
checkpointed between epochs.

The key schedule (the only place it is spelled): a run's ``key`` splits into ``(model_key, data_key)``
(``run_keys``); parameters come from ``fold_in(model_key, 0)`` and the dropout base key is
``fold_in(model_key, 1)`` (``init_state``); step ``s`` draws its dropout masks from ``fold_in(dropout_key, s)``
(``make_step``) and epoch ``e`` is shuffled with ``fold_in(data_key, e)`` (``epoch_key``). Epoch ``e`` is
therefore the same whether a run got there in one call, was continued from a checkpoint, or is member ``i`` of a
sweep.
"""
from __future__ import annotations

import functools
from typing import Any, Callable, NamedTuple, Optional

import jax
import jax.numpy as jnp
import optax
from jax.sharding import Mesh

from regjax._checks import as_count
from regjax.base import Array, ArrayLike, Model, PRNGKey, PyTree, TrainState
from regjax.data.batching import epoch_batches
from regjax.engine.hparams import with_injected
from regjax.engine.spec import resolve_loss
from regjax.parallel import batch_sharding
from regjax.penalty import l2_penalty

__all__ = ["RunKeys", "run_keys", "epoch_key", "init_state", "make_step", "batch_metrics", "summarise", "epoch_fn",
           "evaluate_fn"]


# ---- the keys ------------------------------------------------------------------------------------------------

class RunKeys(NamedTuple):
    model: PRNGKey  # parameters and the dropout base key (init_state)
    data: PRNGKey   # the per-epoch shuffles (epoch_key)


def run_keys(key: PRNGKey) -> RunKeys:
    """``(model_key, data_key)`` of the run seeded by ``key``."""
    model_key, data_key = jax.random.split(key)
    return RunKeys(model_key, data_key)


def epoch_key(data_key: PRNGKey, epoch: ArrayLike) -> PRNGKey:
    """The shuffle key of epoch ``epoch`` (0-based; may be traced)."""
    return jax.random.fold_in(data_key, epoch)


# ---- the state a run starts from -----------------------------------------------------------------------------

def init_state(model: Model, optimizer: optax.GradientTransformation, key: PRNGKey) -> TrainState:
    """The state the run seeded by ``key`` starts from: parameters from ``fold_in(model_key, 0)``, the
    optimizer's state, step 0, and ``fold_in(model_key, 1)`` as the dropout base key.

    ``key`` may also hold one run key per member (shape ``(N,)``; raw ``uint32`` keys ``(N, 2)``): then the N
    states come stacked along a leading member axis, each the state its own key starts from (``sweep``'s members;
    see ``_stacked_init``).
    """
    if _has_member_axis(key):
        return _stacked_init(model, optimizer)(key)
    model_key = run_keys(key).model
    params, model_state = model.init(jax.random.fold_in(model_key, 0))
    return TrainState(params, optimizer.init(params), model_state, jnp.zeros((), jnp.int32),
                      jax.random.fold_in(model_key, 1))


# ---- one step --------------------------------------------------------------------------------------------------

def make_step(model: Model, optimizer: optax.GradientTransformation, loss: Any = "cross_entropy", *,
              task: Optional[str] = None, penalty_mask: Any = None) -> Callable:
    """``step(state, (x, y, weight), hparams) -> (state, metrics)``: one minibatch SGD step (D2L §3.4, §3.7).

    The objective is the loss averaged over the batch's real examples (``weight`` is 0 on the rows that pad the
    last batch), plus ``hparams['lam'] * l2_penalty(params, penalty_mask)`` when ``'lam'`` is given -- weight
    decay as a penalty. Its gradient updates the parameters through ``optimizer`` (``regjax.scratch_sgd`` is the
    from-scratch step), with ``hparams['lr']`` / ``['weight_decay']`` / ``['l1']`` written into its state when
    given. The metrics (``loss_sum``, ``count``, and ``correct`` for classification) follow ``task``.
    """
    loss_fn, task = resolve_loss(loss, task)
    classify = task == "classification"

    def step(state: TrainState, batch, hparams):
        x, y, weight = batch
        key = jax.random.fold_in(state.key, state.step)  # a fresh dropout key for every step

        def objective(params):
            out, model_state = model.apply(params, state.model_state, x, key=key, train=True, hparams=hparams)
            per_example = loss_fn(out, y)
            total = jnp.sum(per_example * weight) / jnp.sum(weight)
            if "lam" in hparams:
                total = total + hparams["lam"] * l2_penalty(params, penalty_mask)
            return total, (model_state, batch_metrics(out, y, weight, per_example, classify))

        grads, (model_state, metrics) = jax.grad(objective, has_aux=True)(state.params)
        updates, opt_state = optimizer.update(grads, with_injected(state.opt_state, hparams), state.params)
        params = optax.apply_updates(state.params, updates)
        return TrainState(params, opt_state, model_state, state.step + 1, state.key), metrics

    return step


def batch_metrics(outputs: Array, y: Array, weight: Array, per_example_loss: Array, classify: bool) -> dict:
    """A batch's summed metrics over its real examples: ``loss_sum``, ``count`` and (classification)
    ``correct``."""
    metrics = {"loss_sum": jnp.sum(per_example_loss * weight), "count": jnp.sum(weight)}
    if classify:
        metrics["correct"] = jnp.sum((jnp.argmax(outputs, -1) == y) * weight)
    return metrics


def summarise(totals: dict) -> dict:
    """``{'loss', 'accuracy'?}`` from summed metrics (``loss_sum``, ``count``, ``correct``); works on arrays of
    members as on scalars."""
    out = {"loss": totals["loss_sum"] / totals["count"]}
    if "correct" in totals:
        out["accuracy"] = totals["correct"] / totals["count"]
    return out


# ---- one epoch -------------------------------------------------------------------------------------------------

def epoch_fn(step: Callable, batch_size: int, *, drop_remainder: bool = False, data_mesh: Optional[Mesh] = None,
             shuffle: bool = True) -> Callable:
    """``epoch(state, x, y, data_key, hparams) -> (state, summed metrics)``, not jitted: shuffle with
    ``data_key`` (``shuffle=False``: the examples in their given order), batch, and ``lax.scan`` the step over the
    batches -- no Python loop, no host round trip. The metrics also carry ``first_nonfinite`` (the index in the
    epoch of the first step whose loss is not finite; 0 when every step is finite), so a divergence is named to
    the step at no extra cost. With a ``data_mesh`` each batch is split over its devices (data parallelism)."""

    def epoch(state, x, y, data_key, hparams):
        # Shuffle and batch *indices*; each step gathers its own rows. Materialising the whole shuffled
        # training set first (188 MB read + written per Fashion-MNIST epoch) cost ~13% of an epoch on CPU.
        indices = epoch_batches(data_key, jnp.arange(x.shape[0]), y, batch_size, drop_remainder=drop_remainder,
                                shuffle=shuffle)
        if data_mesh is not None:  # each device gets its slice of every global batch (GSPMD does the rest)
            indices = jax.lax.with_sharding_constraint(indices, batch_sharding(data_mesh))

        def body(s, batch):
            idx, yb, weight = batch
            return step(s, (jnp.take(x, idx, axis=0), yb, weight), hparams)

        state, metrics = jax.lax.scan(body, state, tuple(indices))
        totals = jax.tree_util.tree_map(jnp.sum, metrics)
        totals["first_nonfinite"] = jnp.argmin(jnp.isfinite(metrics["loss_sum"]))
        return state, totals

    return epoch


# ---- the evaluation ----------------------------------------------------------------------------------------------

def evaluate_fn(model: Model, loss: Any = "cross_entropy", batch_size: int = 1024, *, task: Optional[str] = None,
                data_mesh: Optional[Mesh] = None) -> Callable:
    """``evaluate(params, model_state, x, y, hparams) -> {'loss', 'accuracy'?}``, not jitted: eval mode (no
    dropout, BN moving statistics), deterministic, in fixed-size batches under ``lax.map`` so memory stays flat
    (on a ``data_mesh``, batches the device count divides are split over the devices)."""
    loss_fn, task = resolve_loss(loss, task)
    classify = task == "classification"
    batch_size = as_count(batch_size, "eval_batch_size")

    def evaluate(params: PyTree, model_state: PyTree, x: Array, y: Array, hparams: dict) -> dict:
        bs = min(batch_size, x.shape[0])
        batches = epoch_batches(None, x, y, bs, shuffle=False)
        if data_mesh is not None and bs % data_mesh.size == 0:
            batches = jax.lax.with_sharding_constraint(batches, batch_sharding(data_mesh))

        def one(batch):
            xb, yb, wb = batch
            out, _ = model.apply(params, model_state, xb, key=None, train=False, hparams=hparams)
            return batch_metrics(out, yb, wb, loss_fn(out, yb), classify)

        return summarise(jax.tree_util.tree_map(jnp.sum, jax.lax.map(one, tuple(batches))))

    return evaluate


# ---- machinery of init_state: the member axis ---------------------------------------------------------------

def _has_member_axis(key: PRNGKey) -> bool:
    """Whether ``key`` holds several run keys: a typed key array with an axis, or raw ``uint32`` key data
    (``jax.random.PRNGKey``, one key is shape ``(2,)``) with more than one."""
    typed = jax.dtypes.issubdtype(jnp.asarray(key).dtype, jax.dtypes.prng_key)
    return jnp.ndim(key) > (0 if typed else 1)


# XLA's CPU backend spends seconds optimizing the unrolled threefry of a vmapped initializer (10 s for LeNet on a
# busy 2-core machine, 1.5 s without backend optimization); it runs once per sweep, so it is compiled unoptimized.
_INIT_COMPILER_OPTIONS = {"xla_backend_optimization_level": 0}


@functools.lru_cache(maxsize=64)
def _stacked_init(model: Model, optimizer: optax.GradientTransformation) -> Callable:
    """``init_state`` vmapped over a leading axis of run keys and jitted (compiled unoptimized: it runs once).

    It agrees with one ``init_state`` per key exactly for uniform initializers (Xavier, LeNet's) and to the last
    bit of some weights for normal ones: the compiled sampler rounds a few draws differently (1 ulp). Members are
    compared with single runs to float tolerance anyway (a vmapped matrix product may sum in another order)."""
    return jax.jit(jax.vmap(lambda key: init_state(model, optimizer, key)),
                   compiler_options=_INIT_COMPILER_OPTIONS if jax.default_backend() == "cpu" else None)
