"""The compiled pieces of training: one step, one ``lax.scan`` epoch, batched evaluation, and the key schedule.

Everything the loop carries is one pytree, ``TrainState(params, opt_state, model_state, step, key)``, and every
hyperparameter that a sweep may vary travels in an ``hparams`` dict of arrays passed *into* the compiled
functions (``regjax.engine.hparams``), so the same step can be ``vmap``ped over hyperparameters and seeds,
sharded, or checkpointed between epochs.

The key schedule (the only place it is spelled): a run's ``key`` splits into ``(model_key, data_key)``
(``run_keys``); parameters come from ``fold_in(model_key, 0)`` and the dropout base key is ``fold_in(model_key,
1)`` (``init_state``); step ``s`` draws its dropout masks from ``fold_in(dropout_key, s)`` and epoch ``e`` is
shuffled with ``fold_in(data_key, e)`` (``epoch_key``). Epoch ``e`` is therefore the same whether a run got there
in one call, was continued from a checkpoint, or is member ``i`` of a sweep.
"""
from __future__ import annotations

from typing import Any, Callable, NamedTuple, Optional

import jax
import jax.numpy as jnp
import optax
from jax.sharding import Mesh, NamedSharding, PartitionSpec

from regjax._checks import as_count
from regjax.base import Array, ArrayLike, Model, PRNGKey, PyTree, TrainState
from regjax.data.batching import epoch_batches
from regjax.engine.hparams import with_injected
from regjax.engine.spec import resolve_loss
from regjax.optim import sgd_step
from regjax.parallel import batch_sharding
from regjax.penalty import l2_penalty

__all__ = ["RunKeys", "run_keys", "epoch_key", "init_state", "start_state", "make_step", "epoch_fn", "make_epoch",
           "evaluate_fn", "make_evaluate", "summarise"]


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


def init_state(model: Model, optimizer: Optional[optax.GradientTransformation], key: PRNGKey) -> TrainState:
    """Initialise params (with ``fold_in(key, 0)``) and keep ``fold_in(key, 1)`` as the dropout base key."""
    params, model_state = model.init(jax.random.fold_in(key, 0))
    opt_state = optimizer.init(params) if optimizer is not None else ()
    return TrainState(params, opt_state, model_state, jnp.zeros((), jnp.int32), jax.random.fold_in(key, 1))


def start_state(model: Model, optimizer: Optional[optax.GradientTransformation], key: PRNGKey) -> TrainState:
    """The state a run seeded by ``key`` starts from: ``init_state`` with the run's model key."""
    return init_state(model, optimizer, run_keys(key).model)


def _batch_metrics(outputs, y, weight, per_example_loss, classify):
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


def make_step(model: Model, optimizer: Optional[optax.GradientTransformation], loss: Any = "cross_entropy", *,
              task: Optional[str] = None, penalty_mask: Any = None) -> Callable:
    """``step(state, (x, y, weight), hparams) -> (state, metrics)``.

    Objective: the batch loss averaged over the batch's real examples (``weight``), plus
    ``hparams['lam'] * l2_penalty(params, penalty_mask)`` when ``'lam'`` is given. Update: the optax
    ``optimizer`` (with ``hparams['lr']``/``['weight_decay']`` injected when given), or with ``optimizer=None``
    the from-scratch ``sgd_step`` with ``hparams['lr']``. Metrics (``loss_sum``, ``count``, and ``correct`` for
    classification) are chosen by ``task``.
    """
    loss_fn, task = resolve_loss(loss, task)
    classify = task == "classification"

    def step(state: TrainState, batch, hparams):
        x, y, weight = batch
        key = jax.random.fold_in(state.key, state.step)

        def objective(params):
            out, model_state = model.apply(params, state.model_state, x, key=key, train=True, hparams=hparams)
            per_example = loss_fn(out, y)
            total = jnp.sum(per_example * weight) / jnp.sum(weight)
            if "lam" in hparams:
                total = total + hparams["lam"] * l2_penalty(params, penalty_mask)
            return total, (model_state, _batch_metrics(out, y, weight, per_example, classify))

        grads, (model_state, metrics) = jax.grad(objective, has_aux=True)(state.params)
        if optimizer is None:
            params, opt_state = sgd_step(state.params, grads, hparams["lr"]), state.opt_state
        else:
            updates, opt_state = optimizer.update(grads, with_injected(state.opt_state, hparams), state.params)
            params = optax.apply_updates(state.params, updates)
        return TrainState(params, opt_state, model_state, state.step + 1, state.key), metrics

    return step


def _split_batches(batches, mesh):
    """On a mesh, give each device its slice of every global batch (GSPMD partitions the step accordingly)."""
    if mesh is None:
        return batches
    return jax.lax.with_sharding_constraint(batches, batch_sharding(mesh))


def epoch_fn(step: Callable, batch_size: int, *, drop_remainder: bool = False, data_mesh: Optional[Mesh] = None,
             shuffle: bool = True) -> Callable:
    """The un-jitted epoch of ``make_epoch`` (to jit, vmap or nest in a bigger program); ``shuffle=False``
    batches the examples in their given order every epoch (``data_key`` unused)."""

    def epoch(state, x, y, data_key, hparams):
        # Shuffle and batch *indices*; each step gathers its own rows. Materialising the whole shuffled
        # training set first (188 MB read + written per Fashion-MNIST epoch) cost ~13% of an epoch on CPU.
        index_batches = _split_batches(
            epoch_batches(data_key, jnp.arange(x.shape[0]), y, batch_size, drop_remainder=drop_remainder,
                          shuffle=shuffle), data_mesh)

        def body(s, batch):
            idx, yb, weight = batch
            return step(s, (jnp.take(x, idx, axis=0), yb, weight), hparams)

        state, metrics = jax.lax.scan(body, state, tuple(index_batches))
        totals = jax.tree_util.tree_map(jnp.sum, metrics)
        totals["first_nonfinite"] = jnp.argmin(jnp.isfinite(metrics["loss_sum"]))
        return state, totals

    return epoch


def _jit(fn, mesh, **kwargs):
    """``jax.jit``; on a mesh every output (state, metrics) comes back replicated like the inputs."""
    if mesh is not None:
        kwargs["out_shardings"] = NamedSharding(mesh, PartitionSpec())
    return jax.jit(fn, **kwargs)


def make_epoch(step: Callable, batch_size: int, *, drop_remainder: bool = False, data_mesh: Optional[Mesh] = None,
               shuffle: bool = True) -> Callable:
    """``epoch(state, x, y, data_key, hparams) -> (state, summed metrics)``, jitted: shuffle with ``data_key``,
    batch, and ``lax.scan`` the step over the batches -- no Python loop, no host round trip. ``state`` is
    donated. The metrics also carry ``first_nonfinite`` (index in the epoch of the first step whose loss is not
    finite; 0 when every step is finite) so a divergence can be named to the step at no extra cost. With a
    ``data_mesh`` (``regjax.parallel.data_mesh``) each batch is split over its ``'data'`` axis: data parallelism."""
    return _jit(epoch_fn(step, batch_size, drop_remainder=drop_remainder, data_mesh=data_mesh, shuffle=shuffle),
                data_mesh,
                donate_argnums=(0,))


def evaluate_fn(model: Model, loss: Any = "cross_entropy", batch_size: int = 1024, *, task: Optional[str] = None,
                data_mesh: Optional[Mesh] = None) -> Callable:
    """The un-jitted evaluation of ``make_evaluate``."""
    loss_fn, task = resolve_loss(loss, task)
    classify = task == "classification"
    batch_size = as_count(batch_size, "eval_batch_size")

    def evaluate(params: PyTree, model_state: PyTree, x: Array, y: Array, hparams: dict) -> dict:
        bs = min(batch_size, x.shape[0])
        batches = epoch_batches(None, x, y, bs, shuffle=False)
        if data_mesh is not None and bs % data_mesh.size == 0:
            batches = _split_batches(batches, data_mesh)

        def one(batch):
            xb, yb, wb = batch
            out, _ = model.apply(params, model_state, xb, key=None, train=False, hparams=hparams)
            return _batch_metrics(out, yb, wb, loss_fn(out, yb), classify)

        return summarise(jax.tree_util.tree_map(jnp.sum, jax.lax.map(one, tuple(batches))))

    return evaluate


def make_evaluate(model: Model, loss: Any = "cross_entropy", batch_size: int = 1024, *, task: Optional[str] = None,
                  data_mesh: Optional[Mesh] = None) -> Callable:
    """``evaluate(params, model_state, x, y, hparams) -> {'loss', 'accuracy'?}``, jitted, in eval mode (no
    dropout, BN moving statistics), deterministic, in fixed-size batches under ``lax.map`` so memory stays flat
    (on a ``data_mesh``, batches the device count divides are split over the devices)."""
    return _jit(evaluate_fn(model, loss, batch_size, task=task, data_mesh=data_mesh), data_mesh)
