"""The training engine: one jit-compiled step, one ``lax.scan`` per epoch, batched evaluation, ``fit``.

Everything the loop carries is one pytree, ``TrainState(params, opt_state, model_state, step, key)``, and every
hyperparameter that a sweep may vary (``lr`` for the scratch SGD step, ``lam`` for the explicit penalty, the
dropout ``rates``) travels in an ``hparams`` dict of arrays passed *into* the compiled functions -- so the same
step can later be ``vmap``ped over hyperparameters and seeds, sharded, or checkpointed between epochs.

Scratch and Flax models meet the engine through ``Model(init, apply)``; see ``regjax.models.adapters``.
"""
from __future__ import annotations

import dataclasses
import time
from functools import partial
from typing import Any, Callable, NamedTuple, Optional

import jax
import jax.numpy as jnp
import optax

from regjax.data.batching import epoch_batches, num_batches
from regjax.losses import softmax_cross_entropy, squared_loss
from regjax.optim import sgd_step
from regjax.penalty import l2_penalty

__all__ = ["Model", "TrainState", "History", "LOSSES", "make_step", "make_epoch", "make_evaluate",
           "init_state", "fit"]

LOSSES = {"cross_entropy": softmax_cross_entropy, "squared": squared_loss}


class Model(NamedTuple):
    """``init(key) -> (params, model_state)``; ``apply(params, model_state, x, *, key, train, hparams) ->
    (outputs, new_model_state)``. ``model_state`` is ``{}`` for models without BatchNorm."""

    init: Callable
    apply: Callable


class TrainState(NamedTuple):
    params: Any
    opt_state: Any
    model_state: Any
    step: jax.Array  # int32 scalar: the global step, source of the per-step dropout key
    key: jax.Array   # base key for dropout; step keys are fold_in(key, step)


def init_state(model: Model, optimizer: Optional[optax.GradientTransformation], key) -> TrainState:
    """Initialise params (with ``fold_in(key, 0)``) and keep ``fold_in(key, 1)`` as the dropout base key."""
    params, model_state = model.init(jax.random.fold_in(key, 0))
    opt_state = optimizer.init(params) if optimizer is not None else ()
    return TrainState(params, opt_state, model_state, jnp.zeros((), jnp.int32), jax.random.fold_in(key, 1))


def _loss_fn(loss):
    if callable(loss):
        return loss
    if loss not in LOSSES:
        raise ValueError(f"loss must be one of {sorted(LOSSES)} or a callable, got {loss!r}")
    return LOSSES[loss]


def _batch_metrics(outputs, y, weight, per_example_loss, classify):
    metrics = {"loss_sum": jnp.sum(per_example_loss * weight), "count": jnp.sum(weight)}
    if classify:
        metrics["correct"] = jnp.sum((jnp.argmax(outputs, -1) == y) * weight)
    return metrics


def make_step(model: Model, optimizer: Optional[optax.GradientTransformation], loss="cross_entropy", *,
              penalty_mask=None):
    """``step(state, (x, y, weight), hparams) -> (state, metrics)``.

    Objective: the batch loss averaged over the batch's real examples (``weight``), plus
    ``hparams['lam'] * l2_penalty(params, penalty_mask)`` when ``'lam'`` is given. Update: the optax
    ``optimizer``, or with ``optimizer=None`` the from-scratch ``sgd_step`` with ``hparams['lr']``.
    """
    loss_fn = _loss_fn(loss)
    classify = loss_fn is not squared_loss

    def step(state: TrainState, batch, hparams):
        x, y, weight = batch
        key = jax.random.fold_in(state.key, state.step)

        def objective(params):
            out, model_state = model.apply(params, state.model_state, x, key=key, train=True, hparams=hparams)
            per_example = loss_fn(out, y)
            data_loss = jnp.sum(per_example * weight) / jnp.sum(weight)
            total = data_loss
            if "lam" in hparams:
                total = total + hparams["lam"] * l2_penalty(params, penalty_mask)
            return total, (model_state, _batch_metrics(out, y, weight, per_example, classify))

        grads, (model_state, metrics) = jax.grad(objective, has_aux=True)(state.params)
        if optimizer is None:
            params, opt_state = sgd_step(state.params, grads, hparams["lr"]), state.opt_state
        else:
            updates, opt_state = optimizer.update(grads, state.opt_state, state.params)
            params = optax.apply_updates(state.params, updates)
        return TrainState(params, opt_state, model_state, state.step + 1, state.key), metrics

    return step


def make_epoch(step, batch_size: int, *, drop_remainder: bool = False):
    """``epoch(state, x, y, data_key, hparams) -> (state, summed metrics)``: shuffle with ``data_key``, batch,
    and ``lax.scan`` the step over the batches -- no Python loop, no host round trip. ``state`` is donated."""

    @partial(jax.jit, donate_argnums=(0,))
    def epoch(state, x, y, data_key, hparams):
        batches = epoch_batches(data_key, x, y, batch_size, drop_remainder=drop_remainder)
        state, metrics = jax.lax.scan(lambda s, b: step(s, b, hparams), state, tuple(batches))
        return state, jax.tree_util.tree_map(jnp.sum, metrics)

    return epoch


def make_evaluate(model: Model, loss="cross_entropy", batch_size: int = 1024):
    """``evaluate(params, model_state, x, y, hparams) -> {'loss', 'accuracy'?}`` in eval mode (no dropout, BN
    moving statistics), deterministic, in fixed-size batches under ``lax.map`` so memory stays flat."""
    loss_fn = _loss_fn(loss)
    classify = loss_fn is not squared_loss

    @jax.jit
    def evaluate(params, model_state, x, y, hparams):
        bs = min(batch_size, x.shape[0])
        batches = epoch_batches(None, x, y, bs, shuffle=False)

        def one(batch):
            xb, yb, wb = batch
            out, _ = model.apply(params, model_state, xb, key=None, train=False, hparams=hparams)
            return _batch_metrics(out, yb, wb, loss_fn(out, yb), classify)

        totals = jax.tree_util.tree_map(jnp.sum, jax.lax.map(one, tuple(batches)))
        return _summarise(totals)

    return evaluate


def _summarise(totals):
    out = {"loss": totals["loss_sum"] / totals["count"]}
    if "correct" in totals:
        out["accuracy"] = totals["correct"] / totals["count"]
    return out


@dataclasses.dataclass
class History:
    """Per-epoch metrics of one run (train metrics are averaged over the epoch, in training mode)."""

    train_loss: list = dataclasses.field(default_factory=list)
    train_accuracy: list = dataclasses.field(default_factory=list)
    test_loss: list = dataclasses.field(default_factory=list)
    test_accuracy: list = dataclasses.field(default_factory=list)
    epoch_time_s: list = dataclasses.field(default_factory=list)
    examples_per_s: list = dataclasses.field(default_factory=list)
    compile_time_s: float = 0.0

    def record(self, train: dict, test: dict, seconds: float, n: int) -> dict:
        row = {
            "train_loss": float(train["loss"]), "train_accuracy": _maybe(train.get("accuracy")),
            "test_loss": float(test["loss"]), "test_accuracy": _maybe(test.get("accuracy")),
            "epoch_time_s": seconds, "examples_per_s": n / seconds if seconds > 0 else float("inf"),
        }
        for k, v in row.items():
            getattr(self, k).append(v)
        return row

    def final(self) -> dict:
        return {k: getattr(self, k)[-1] for k in ("train_loss", "train_accuracy", "test_loss", "test_accuracy")}

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)


def _maybe(v):
    return None if v is None else float(v)


def fit(model: Model, optimizer: Optional[optax.GradientTransformation], data, *, epochs: int, batch_size: int,
        key, hparams: Optional[dict] = None, loss="cross_entropy", penalty_mask=None, drop_remainder=False,
        eval_batch_size: int = 1024, on_epoch: Optional[Callable[[int, dict], None]] = None):
    """Train for ``epochs`` and evaluate after each; returns ``(state, History)``.

    ``data`` is ``(x_train, y_train, x_test, y_test)`` (arrays; moved to the device once). ``key`` seeds the
    parameters, dropout (``fold_in(key, step)``) and the per-epoch shuffles (``fold_in(data_key, epoch)``).
    ``on_epoch(epoch, row)`` is called with each epoch's metrics (progress bars, logging).
    """
    if not isinstance(epochs, int) or epochs < 1:
        raise ValueError(f"epochs must be a positive int, got {epochs!r}")
    hparams = {k: jnp.asarray(v, jnp.float32) for k, v in (hparams or {}).items()}
    if optimizer is None and "lr" not in hparams:
        raise ValueError("hparams must contain 'lr' when optimizer is None (the scratch SGD step)")
    x_train, y_train, x_test, y_test = (jax.device_put(jnp.asarray(a)) for a in data)
    num_batches(int(x_train.shape[0]), batch_size, drop_remainder)  # validates batch_size early
    model_key, data_key = jax.random.split(key)
    state = init_state(model, optimizer, model_key)
    epoch_fn = make_epoch(make_step(model, optimizer, loss, penalty_mask=penalty_mask), batch_size,
                          drop_remainder=drop_remainder)
    evaluate = make_evaluate(model, loss, eval_batch_size)
    history = History()
    start = time.perf_counter()
    compiled = epoch_fn.lower(state, x_train, y_train, jax.random.fold_in(data_key, 0), hparams).compile()
    history.compile_time_s = time.perf_counter() - start
    for epoch in range(epochs):
        t0 = time.perf_counter()
        state, totals = compiled(state, x_train, y_train, jax.random.fold_in(data_key, epoch), hparams)
        totals = jax.block_until_ready(totals)
        seconds = time.perf_counter() - t0
        test = evaluate(state.params, state.model_state, x_test, y_test, hparams)
        row = history.record(_summarise(totals), test, seconds, int(x_train.shape[0]))
        if on_epoch is not None:
            on_epoch(epoch, row)
    return state, history


def run_steps(model: Model, optimizer: Optional[optax.GradientTransformation], x, y, *, epochs: int,
              batch_size: int, key, hparams: Optional[dict] = None, loss="cross_entropy", penalty_mask=None,
              record: Callable = lambda params: params):
    """Train like ``fit`` (same keys, batches and step) but as one ``lax.scan`` over *all* steps, returning
    ``(state, record(params) after every step)`` -- for per-step trajectories such as ‖w‖ vs step."""
    hparams = {k: jnp.asarray(v, jnp.float32) for k, v in (hparams or {}).items()}
    x, y = jnp.asarray(x), jnp.asarray(y)
    model_key, data_key = jax.random.split(key)
    state = init_state(model, optimizer, model_key)
    step = make_step(model, optimizer, loss, penalty_mask=penalty_mask)

    @jax.jit
    def run(state, x, y, hparams):
        batches = jax.vmap(lambda e: epoch_batches(jax.random.fold_in(data_key, e), x, y, batch_size))(
            jnp.arange(epochs))
        flat = jax.tree_util.tree_map(lambda a: a.reshape((-1,) + a.shape[2:]), tuple(batches))

        def body(s, b):
            s, _ = step(s, b, hparams)
            return s, record(s.params)

        return jax.lax.scan(body, state, flat)

    return run(state, x, y, hparams)
