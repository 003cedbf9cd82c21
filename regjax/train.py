"""The training engine: one jit-compiled step, one ``lax.scan`` per epoch, batched evaluation, ``fit``.

Everything the loop carries is one pytree, ``TrainState(params, opt_state, model_state, step, key)``, and every
hyperparameter that a sweep may vary travels in an ``hparams`` dict of arrays passed *into* the compiled
functions, so the same step can be ``vmap``ped over hyperparameters and seeds, sharded, or checkpointed
between epochs. ``fit`` starts from a given state and epoch when asked: continuing a run (``--resume``) is the
normal path, not a special one.

``hparams`` keys, each either honoured or refused (``ValueError`` naming the key and the allowed keys):

==================  ============================================================================================
``lr``              the learning rate: of the from-scratch ``sgd_step`` (``optimizer=None``, then required), or
                    of an optax optimizer built with ``optax.inject_hyperparams`` (``regjax.optim.sgd``,
                    ``decayed_sgd``, ``adam_l2``, ``adamw`` are), where it sets ``learning_rate``
``weight_decay``    λ of ``add_decayed_weights`` / AdamW inside an injectable optimizer (``decayed_sgd`` & co.)
``lam``             λ of the explicit penalty ``lam * l2_penalty(params, penalty_mask)`` added to the loss
model keys          what the model declares in ``Model.hparams`` (the scratch MLP: ``rates``)
==================  ============================================================================================

Concrete values are checked when they enter ``fit``/``run_steps`` (lr > 0, λ ≥ 0, rates in [0, 1], all
finite), labels against the model's number of classes, and the data against empty or ragged splits. The
compiled ``step``/``epoch`` themselves see only traced values and check nothing: called directly with a
negative ``lr`` they ascend, with a NaN they produce NaNs -- which ``fit`` then reports as a divergence.
"""
from __future__ import annotations

import dataclasses
import functools
import math
import time
from functools import partial
from typing import Callable, Optional

import jax
import jax.numpy as jnp
import numpy as np
import optax
from jax.sharding import NamedSharding, PartitionSpec

from regjax._checks import as_count, check_in_range, label_out_of_range
from regjax.base import TASKS, Model, TrainState
from regjax.data.batching import epoch_batches, num_batches
from regjax.losses import l1_loss, softmax_cross_entropy, squared_loss
from regjax.optim import sgd_step
from regjax.parallel import batch_sharding, replicate
from regjax.penalty import l2_penalty

__all__ = ["Model", "TrainState", "History", "Diverged", "LOSSES", "resolve_loss", "check_hparams", "make_step",
           "make_epoch", "make_evaluate", "init_state", "fit", "run_steps"]

# name -> (per-example loss, the task whose metrics it reports)
LOSSES = {
    "cross_entropy": (softmax_cross_entropy, "classification"),
    "squared": (squared_loss, "regression"),
    "l1": (l1_loss, "regression"),
}
# hparams key -> the hyperparameter's name inside an optax.inject_hyperparams state
INJECTED = {"lr": "learning_rate", "weight_decay": "weight_decay"}
# (low, high, low_open): the allowed interval of each known hyperparameter (all must be finite)
RANGES = {"lr": (0.0, math.inf, True), "lam": (0.0, math.inf, False), "weight_decay": (0.0, math.inf, False),
          "rates": (0.0, 1.0, False)}


class Diverged(FloatingPointError):
    """The training loss became non-finite. ``epoch`` (0-based) and ``step`` (global, 0-based) say where; the
    run's ``history`` (with that epoch, ``status == 'diverged'``) and last ``state`` travel with the error."""

    def __init__(self, epoch: int, step: int, state, history):
        super().__init__(f"training diverged: the training loss is not finite in epoch {epoch + 1} (first at global "
                         f"step {step}); lower the learning rate (or look at the data and the other hyperparameters); rerun "
                         f"with --debug-nans (jax_debug_nans) to find the operation")
        self.epoch, self.step, self.state, self.history = epoch, step, state, history


def resolve_loss(loss, task=None):
    """``(loss_fn, task)``: a loss by name (its task is known) or a callable with an explicit ``task``."""
    if task is not None and task not in TASKS:
        raise ValueError(f"task must be one of {TASKS}, got {task!r}")
    if callable(loss):
        if task is None:
            raise ValueError(f"task must be given with a custom loss callable: one of {TASKS}")
        return loss, task
    if loss not in LOSSES:
        raise ValueError(f"loss must be one of {sorted(LOSSES)} or a callable, got {loss!r}")
    fn, default_task = LOSSES[loss]
    return fn, task or default_task


def init_state(model: Model, optimizer: Optional[optax.GradientTransformation], key) -> TrainState:
    """Initialise params (with ``fold_in(key, 0)``) and keep ``fold_in(key, 1)`` as the dropout base key."""
    params, model_state = model.init(jax.random.fold_in(key, 0))
    opt_state = optimizer.init(params) if optimizer is not None else ()
    return TrainState(params, opt_state, model_state, jnp.zeros((), jnp.int32), jax.random.fold_in(key, 1))


def _injectable(opt_state) -> dict:
    """The hyperparameters an ``optax.inject_hyperparams`` state lets us set (``{}`` for any other state);
    scheduled ones are left out: optax recomputes them from their schedule and would overwrite ours."""
    if isinstance(opt_state, (optax.InjectHyperparamsState, optax.InjectStatefulHyperparamsState)):
        scheduled = getattr(opt_state, "hyperparams_states", {}) or {}
        return {k: v for k, v in opt_state.hyperparams.items() if k not in scheduled}
    return {}


def check_hparams(model: Model, optimizer, opt_state, hparams: Optional[dict]) -> dict:
    """Validate ``hparams`` for this model and optimizer; return them as float32 arrays.

    Every key must take effect on this route; concrete values must lie in their range (element-wise for the
    arrays of a sweep). Raises ``ValueError`` naming the key and what is allowed.
    """
    hparams = dict(hparams or {})
    injectable = _injectable(opt_state)
    allowed = {"lam", *model.hparams}
    allowed |= {"lr"} if optimizer is None else {k for k, name in INJECTED.items() if name in injectable}
    for key in hparams:
        if key in allowed:
            continue
        hint = ""
        if key in INJECTED and optimizer is not None:
            hint = (f" -- this optimizer exposes no injectable {INJECTED[key]!r}: build it with regjax.optim.sgd / "
                    f"decayed_sgd / adam_l2 / adamw or optax.inject_hyperparams, or leave {key!r} out")
        elif key == "weight_decay" and optimizer is None:
            hint = " -- the scratch SGD step decays through the penalty: use 'lam'"
        elif key == "rates":
            hint = (" -- this model's dropout rates are static (flax.linen.Dropout attributes): set them when "
                    "building the model; traced, sweepable rates need the scratch model (impl='scratch')")
        raise ValueError(f"unknown hparams key {key!r}; allowed here: {sorted(allowed)}{hint}")
    if optimizer is None and "lr" not in hparams:
        raise ValueError("hparams must contain 'lr' when optimizer is None (the scratch SGD step)")
    out = {}
    for key, value in hparams.items():
        with np.errstate(over="ignore", under="ignore"):
            out[key] = jnp.asarray(value, jnp.float32)
        if key in RANGES:  # the value given, and the float32 it becomes (1e-50 -> 0, 1e39 -> inf)
            low, high, low_open = RANGES[key]
            for v in (value, out[key]):
                check_in_range(v, f"hparams[{key!r}]", low, high, low_open=low_open, high_open=math.isinf(high))
    return out


def _with_injected(opt_state, hparams):
    """Write ``hparams['lr']`` / ``['weight_decay']`` into an injectable optimizer state before its update."""
    given = {INJECTED[k]: v for k, v in hparams.items() if k in INJECTED}
    if not given:
        return opt_state
    hp = opt_state.hyperparams
    return opt_state._replace(hyperparams={**hp, **{k: jnp.asarray(v, hp[k].dtype) for k, v in given.items()}})


def _batch_metrics(outputs, y, weight, per_example_loss, classify):
    metrics = {"loss_sum": jnp.sum(per_example_loss * weight), "count": jnp.sum(weight)}
    if classify:
        metrics["correct"] = jnp.sum((jnp.argmax(outputs, -1) == y) * weight)
    return metrics


def make_step(model: Model, optimizer: Optional[optax.GradientTransformation], loss="cross_entropy", *,
              task=None, penalty_mask=None):
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
            updates, opt_state = optimizer.update(grads, _with_injected(state.opt_state, hparams), state.params)
            params = optax.apply_updates(state.params, updates)
        return TrainState(params, opt_state, model_state, state.step + 1, state.key), metrics

    return step


def _split_batches(batches, mesh):
    """On a mesh, give each device its slice of every global batch (GSPMD partitions the step accordingly)."""
    if mesh is None:
        return batches
    return jax.lax.with_sharding_constraint(batches, batch_sharding(mesh))


def _jit(fn, mesh, **kwargs):
    """``jax.jit``; on a mesh every output (state, metrics) comes back replicated like the inputs."""
    if mesh is not None:
        kwargs["out_shardings"] = NamedSharding(mesh, PartitionSpec())
    return jax.jit(fn, **kwargs)


def make_epoch(step, batch_size: int, *, drop_remainder: bool = False, mesh=None):
    """``epoch(state, x, y, data_key, hparams) -> (state, summed metrics)``: shuffle with ``data_key``, batch,
    and ``lax.scan`` the step over the batches -- no Python loop, no host round trip. ``state`` is donated.
    The metrics also carry ``first_nonfinite`` (index in the epoch of the first step whose loss is not finite;
    0 when every step is finite) so a divergence can be named to the step at no extra cost. With a ``mesh``
    (``regjax.parallel.data_mesh``) each batch is split over its ``'data'`` axis: data parallelism."""

    def epoch(state, x, y, data_key, hparams):
        # Shuffle and batch *indices*; each step gathers its own rows. Materialising the whole shuffled
        # training set first (188 MB read + written per Fashion-MNIST epoch) cost ~13% of an epoch on CPU.
        index_batches = _split_batches(
            epoch_batches(data_key, jnp.arange(x.shape[0]), y, batch_size, drop_remainder=drop_remainder), mesh)

        def body(s, batch):
            idx, yb, weight = batch
            return step(s, (jnp.take(x, idx, axis=0), yb, weight), hparams)

        state, metrics = jax.lax.scan(body, state, tuple(index_batches))
        totals = jax.tree_util.tree_map(jnp.sum, metrics)
        totals["first_nonfinite"] = jnp.argmin(jnp.isfinite(metrics["loss_sum"]))
        return state, totals

    return _jit(epoch, mesh, donate_argnums=(0,))


def make_evaluate(model: Model, loss="cross_entropy", batch_size: int = 1024, *, task=None, mesh=None):
    """``evaluate(params, model_state, x, y, hparams) -> {'loss', 'accuracy'?}`` in eval mode (no dropout, BN
    moving statistics), deterministic, in fixed-size batches under ``lax.map`` so memory stays flat (on a
    ``mesh``, batches the device count divides are split over the devices)."""
    loss_fn, task = resolve_loss(loss, task)
    classify = task == "classification"
    batch_size = as_count(batch_size, "eval_batch_size")

    def evaluate(params, model_state, x, y, hparams):
        bs = min(batch_size, x.shape[0])
        batches = epoch_batches(None, x, y, bs, shuffle=False)
        if mesh is not None and bs % mesh.size == 0:
            batches = _split_batches(batches, mesh)

        def one(batch):
            xb, yb, wb = batch
            out, _ = model.apply(params, model_state, xb, key=None, train=False, hparams=hparams)
            return _batch_metrics(out, yb, wb, loss_fn(out, yb), classify)

        totals = jax.tree_util.tree_map(jnp.sum, jax.lax.map(one, tuple(batches)))
        return _summarise(totals)

    return _jit(evaluate, mesh)


def _summarise(totals):
    out = {"loss": totals["loss_sum"] / totals["count"]}
    if "correct" in totals:
        out["accuracy"] = totals["correct"] / totals["count"]
    return out


@dataclasses.dataclass
class History:
    """Per-epoch metrics of one run (train metrics are averaged over the epoch, in training mode).

    ``status`` is ``'running'`` while ``fit`` runs, then ``'completed'`` or ``'diverged'``; the command-line
    runner adds ``'interrupted'``."""

    train_loss: list = dataclasses.field(default_factory=list)
    train_accuracy: list = dataclasses.field(default_factory=list)
    test_loss: list = dataclasses.field(default_factory=list)
    test_accuracy: list = dataclasses.field(default_factory=list)
    epoch_time_s: list = dataclasses.field(default_factory=list)
    examples_per_s: list = dataclasses.field(default_factory=list)
    compile_time_s: float = 0.0
    status: str = "running"

    def record(self, train: dict, test: dict, seconds: float, n: int) -> dict:
        row = {
            "train_loss": float(train["loss"]), "train_accuracy": _maybe(train.get("accuracy")),
            "test_loss": float(test["loss"]), "test_accuracy": _maybe(test.get("accuracy")),
            "epoch_time_s": seconds, "examples_per_s": n / seconds if seconds > 0 else float("inf"),
        }
        for k, v in row.items():
            getattr(self, k).append(v)
        return row

    @property
    def epochs(self) -> int:
        return len(self.train_loss)

    def final(self) -> dict:
        return {k: getattr(self, k)[-1] for k in ("train_loss", "train_accuracy", "test_loss", "test_accuracy")}

    def to_dict(self) -> dict:
        return {f.name: (list(v) if isinstance(v := getattr(self, f.name), list) else v)
                for f in dataclasses.fields(self)}

    @classmethod
    def from_dict(cls, d: dict) -> "History":
        names = {f.name for f in dataclasses.fields(cls)}
        # JSON stores non-finite floats as null; a restored history keeps them NaN like the live one
        return cls(**{k: ([math.nan if v is None and not k.endswith("accuracy") else v for v in val]
                          if isinstance(val, list) else val) for k, val in d.items() if k in names})


def _maybe(v):
    return None if v is None else float(v)


@functools.lru_cache(maxsize=32)
def _programs(model, optimizer, loss, task, penalty_mask, batch_size, drop_remainder, eval_batch_size, mesh):
    """The jitted epoch and evaluation for one configuration, kept so repeated ``fit`` calls (continuing a
    run, variants sharing a model) reuse them instead of tracing and compiling again."""
    epoch = make_epoch(make_step(model, optimizer, loss, task=task, penalty_mask=penalty_mask), batch_size,
                       drop_remainder=drop_remainder, mesh=mesh)
    return epoch, make_evaluate(model, loss, eval_batch_size, task=task, mesh=mesh), {}


def cached_build(builder, *config):
    """``builder(*config)`` through its ``functools.lru_cache``; built afresh, uncached, when an argument is
    unhashable (e.g. a dict ``penalty_mask``)."""
    try:
        return builder(*config)
    except TypeError:
        return builder.__wrapped__(*config)


def _compiled(epoch_fn, cache: dict, args):
    """AOT-compile ``epoch_fn`` for ``args`` once per abstract signature; returns ``(compiled, seconds)``."""
    leaves, tree = jax.tree_util.tree_flatten(args)
    signature = (tree, tuple((jax.typeof(leaf), getattr(leaf, "sharding", None)) for leaf in leaves))
    if signature in cache:
        return cache[signature], 0.0
    start = time.perf_counter()
    cache[signature] = epoch_fn.lower(*args).compile()
    return cache[signature], time.perf_counter() - start


def check_data(data, task: str):
    """``(x_train, y_train, x_test, y_test)`` as arrays, with matching lengths and non-empty splits."""
    if not isinstance(data, (tuple, list)) or len(data) != 4:
        raise ValueError("data must be a tuple (x_train, y_train, x_test, y_test)")
    arrays = [jnp.asarray(a) for a in data]
    for split, (x, y) in (("training", arrays[:2]), ("test", arrays[2:])):
        if x.ndim == 0 or x.shape[0] == 0:
            raise ValueError(f"the {split} set is empty (x has shape {x.shape})")
        if y.ndim == 0 or y.shape[0] != x.shape[0]:
            raise ValueError(f"the {split} set has {x.shape[0]} inputs but labels/targets of shape {y.shape}")
        if task == "classification" and not jnp.issubdtype(y.dtype, jnp.integer):
            raise ValueError(f"classification needs integer class labels; the {split} labels have dtype {y.dtype}")
    return arrays


def check_labels(y, num_classes: int, name: str):
    """Class labels must lie in ``[0, num_classes)``: -1 would silently mean the last class, ``num_classes``
    gives a NaN loss."""
    bad = label_out_of_range(y, num_classes)
    if bad is not None:
        raise ValueError(f"{name} holds label {bad}; labels must be in [0, {num_classes}) for this "
                         f"{num_classes}-class model")


def _num_outputs(model: Model, state: TrainState, x, hparams) -> int:
    out = jax.eval_shape(lambda p, ms, xb: model.apply(p, ms, xb, key=None, train=False, hparams=hparams)[0],
                         state.params, state.model_state, x[:1])
    return int(out.shape[-1])


def fit(model: Model, optimizer: Optional[optax.GradientTransformation], data, *, epochs: int, batch_size: int,
        key, hparams: Optional[dict] = None, loss="cross_entropy", task=None, penalty_mask=None,
        drop_remainder=False, eval_batch_size: int = 1024, on_epoch: Optional[Callable[[int, dict], None]] = None,
        after_epoch: Optional[Callable] = None, on_start: Optional[Callable[[], None]] = None,
        state: Optional[TrainState] = None, start_epoch: int = 0, history: Optional[History] = None, mesh=None):
    """Train until ``epochs`` epochs are done, evaluating after each; returns ``(state, History)``.

    ``data`` is ``(x_train, y_train, x_test, y_test)`` (moved to the device once). ``key`` seeds the
    parameters (unless ``state`` is given), dropout (``fold_in(key, step)``) and the per-epoch shuffles
    (``fold_in(data_key, epoch)``), so epoch ``e`` is the same whether the run got there in one call or was
    continued: ``fit(..., state=s, start_epoch=e, history=h)`` with the ``s, h`` of an earlier call after ``e``
    epochs (e.g. from a checkpoint) finishes bit-identically to one uninterrupted call.

    ``on_start()`` is called once every argument has been checked, before compiling; ``on_epoch(epoch, row)``
    with each epoch's metrics (progress, logging); ``after_epoch(epoch, state, history)`` after each finite
    epoch (checkpointing). ``history`` (if given) is extended in place. Metrics follow ``task`` ('classification':
    loss and accuracy; 'regression': loss), known for named losses and required with a callable ``loss``.

    ``mesh`` (``regjax.parallel.data_mesh(n)``): data parallelism over the mesh's devices -- the same step,
    each global batch split over the devices, state replicated; ``batch_size`` must be a multiple of the
    device count. Results equal the single-device ones to float tolerance (see ``regjax.parallel``).

    Raises ``ValueError`` for bad arguments before any training, and ``Diverged`` at the end of the first epoch
    whose training loss is not finite (``history.status == 'diverged'``).
    """
    epochs = as_count(epochs, "epochs")
    start_epoch = as_count(start_epoch, "start_epoch", 0)
    if start_epoch > epochs:
        raise ValueError(f"start_epoch ({start_epoch}) is past epochs ({epochs}): the run already has more epochs")
    loss_fn, task = resolve_loss(loss, task)
    x_train, y_train, x_test, y_test = check_data(data, task)
    n = int(x_train.shape[0])
    num_batches(n, batch_size, drop_remainder)
    if mesh is not None and batch_size % mesh.size:
        raise ValueError(f"batch_size {batch_size} is not a multiple of the {mesh.size} devices: every device gets "
                         f"an equal slice of each batch; use e.g. {batch_size - batch_size % mesh.size or mesh.size} "
                         f"or {batch_size + mesh.size - batch_size % mesh.size}")
    model_key, data_key = jax.random.split(key)
    if state is None:
        if start_epoch:
            raise ValueError("start_epoch > 0 needs the state to continue from (state=)")
        state = init_state(model, optimizer, model_key)
    else:
        state = jax.tree_util.tree_map(jnp.copy, jax.device_put(state))  # the epoch donates its input state
    hparams = check_hparams(model, optimizer, state.opt_state, hparams)
    if task == "classification":
        num_classes = _num_outputs(model, state, x_train, hparams)
        check_labels(y_train, num_classes, "y_train")
        check_labels(y_test, num_classes, "y_test")
    history = history if history is not None else History()
    if history.epochs != start_epoch:
        raise ValueError(f"history holds {history.epochs} epochs but start_epoch is {start_epoch}")
    if on_start is not None:
        on_start()
    if start_epoch == epochs:  # nothing left to train (a finished run restored from its checkpoint)
        history.status = "completed"
        return state, history
    history.status = "running"
    epoch_fn, evaluate, cache = cached_build(_programs, model, optimizer, loss, task, penalty_mask, batch_size,
                                             drop_remainder, eval_batch_size, mesh)
    place = jax.device_put if mesh is None else partial(replicate, mesh=mesh)
    state, hparams, (x_train, y_train, x_test, y_test) = place((state, hparams, (x_train, y_train, x_test, y_test)))
    epoch_key = lambda e: place(jax.random.fold_in(data_key, e))
    compiled, seconds = _compiled(epoch_fn, cache, (state, x_train, y_train, epoch_key(start_epoch), hparams))
    if jax.config.jax_debug_nans:  # an AOT executable is not re-run op by op: take jit's path so JAX names the op
        compiled = epoch_fn
    history.compile_time_s += seconds
    for epoch in range(start_epoch, epochs):
        t0 = time.perf_counter()
        first_step = int(state.step)
        state, totals = compiled(state, x_train, y_train, epoch_key(epoch), hparams)
        totals = jax.device_get(totals)  # waits for the epoch; host scalars from here on
        seconds = time.perf_counter() - t0
        test = jax.device_get(evaluate(state.params, state.model_state, x_test, y_test, hparams))
        row = history.record(_summarise(totals), test, seconds, n)
        if on_epoch is not None:
            on_epoch(epoch, row)
        if not math.isfinite(row["train_loss"]):
            history.status = "diverged"
            raise Diverged(epoch, first_step + int(totals["first_nonfinite"]), state, history)
        if after_epoch is not None:
            after_epoch(epoch, state, history)
    history.status = "completed"
    return state, history


def run_steps(model: Model, optimizer: Optional[optax.GradientTransformation], x, y, *, epochs: int,
              batch_size: int, key, hparams: Optional[dict] = None, loss="cross_entropy", task=None,
              penalty_mask=None, record: Callable = lambda params: params):
    """Train like ``fit`` (same keys, batches and step) but as one ``lax.scan`` over *all* steps, returning
    ``(state, record(params) after every step)`` -- for per-step trajectories such as ‖w‖ vs step."""
    epochs = as_count(epochs, "epochs")
    _, task = resolve_loss(loss, task)
    x, y = jnp.asarray(x), jnp.asarray(y)
    num_batches(int(x.shape[0]), batch_size)
    model_key, data_key = jax.random.split(key)
    state = init_state(model, optimizer, model_key)
    hparams = check_hparams(model, optimizer, state.opt_state, hparams)
    step = make_step(model, optimizer, loss, task=task, penalty_mask=penalty_mask)

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
