"""Many training runs as ONE compiled program: ``jax.vmap`` over a *member* axis (D2L §3.7, §5.6, §8.5 exercises).

A sweep trains N configurations -- members -- that differ in traced hyperparameters (``lam``, ``weight_decay``,
``lr``, dropout ``rates``: every key ``regjax.train.check_hparams`` accepts) and in their seed, and optionally in
their training data (k-fold cross-validation: each member trains on its own fold). Structure (the model, the
optimizer's form, batch size, epochs) is shared: that is what lets one program serve all members.

Equivalence with single runs. Member ``i`` is the run ``fit(model, optimizer, data, key=members.keys[i],
hparams={k: v[i]})`` -- the same key derivation (``model_key, data_key = split(key)``; params from
``init_state(model, optimizer, model_key)``; epoch ``e`` shuffled with ``fold_in(data_key, e)``; dropout keys
``fold_in(state.key, step)``), the same step (``make_step``), epoch (``make_epoch``) and evaluation
(``make_evaluate``), ``vmap``ped. Results equal the solo runs to float tolerance (batched matrix products may
sum in another order), which the tests check for the dropout MLP, the §3.7 linear regression and LeNet-BN.

Layout. Everything per member is a plain array with the member axis FIRST: the stacked ``TrainState``
(``params``, ``opt_state`` -- including optax's injected hyperparameters --, BatchNorm ``model_state``, ``step``
(N,), ``key`` (N,)), ``Members.hparams`` (N, ...), ``Members.keys`` (N,). Sharding the member axis over devices
is therefore one ``NamedSharding(mesh, P('members'))`` on those arguments of ``_program``'s jit (issue 9); the
data are shared (replicated) or, for folds, stacked with their own leading axis and picked by
``Members.data_index``.

Memory. Members that do not fit run in chunks of ``chunk_size`` members, epoch by epoch (every member finishes
epoch e before any starts e+1, so a checkpoint always holds one epoch for all). Unless given, the chunk size is
*measured*: the program is compiled for all N members and XLA's ``memory_analysis()`` gives its peak bytes
(arguments + outputs − aliased + temporaries); if that exceeds the budget -- ``memory_fraction`` of the free
memory (``Device.memory_stats()`` on GPU/TPU: ``bytes_limit − bytes_in_use``; on CPU the free physical memory,
``os.sysconf('SC_AVPHYS_PAGES') × SC_PAGE_SIZE``) -- the bytes per member are ``(peak − shared data bytes) /
N`` and the chunk is as many members as fit in ``budget − shared data − the full stacked state``. The last
chunk is padded with copies of its last member (discarded), so one compiled program serves every chunk.

Divergence. A member whose training loss turns non-finite is marked ``diverged`` (epoch and global step
recorded); its state is frozen at the end of its last finite epoch and its later metrics are NaN (``null`` in
JSON), while the other members train on undisturbed -- vmapped members never mix values. Only when *every*
member has diverged does the sweep raise ``regjax.train.Diverged`` (the CLI then exits 3 with status
``diverged``, like a single run).
"""
from __future__ import annotations

import dataclasses
import functools
import itertools
import json
import math
import os
import time
from pathlib import Path
from typing import Callable, Optional, Sequence

import jax
import jax.numpy as jnp
import numpy as np
import optax

from regjax._checks import as_count, check_in_range
from regjax.base import Model, TrainState
from regjax.checkpoint import load_checkpoint
from regjax.data.batching import num_batches
from regjax.report import _clean, write_bytes_atomic
from regjax.train import (Diverged, _compiled, cached_build, check_data, check_hparams, check_labels, init_state,
                          make_epoch, make_evaluate, make_step, resolve_loss)

__all__ = ["Members", "grid", "SweepHistory", "SweepResult", "sweep", "run_sweep", "init_members",
           "member_program", "train_sequentially", "available_memory", "plan_chunk_size", "group_stats"]

METRICS = ("train_loss", "train_accuracy", "test_loss", "test_accuracy")


# ---- members --------------------------------------------------------------------------------------------------

@dataclasses.dataclass(frozen=True)
class Members:
    """N training configurations: ``keys`` (N,) -- the ``key`` each member's solo ``fit`` would get --,
    ``hparams`` (name -> float32 array (N, ...)), ``configs`` (N JSON-able dicts: the table's config columns)
    and ``data_index`` ((N,) ints or ``None``: which dataset of a stacked ``data`` tuple each member uses)."""

    keys: jax.Array
    hparams: dict
    configs: tuple
    data_index: Optional[np.ndarray] = None

    def __post_init__(self):
        n = len(self.configs)
        if n < 1:
            raise ValueError("a sweep needs at least one member")
        if self.keys.shape != (n,):
            raise ValueError(f"keys must have shape ({n},) (one PRNG key per member), got {self.keys.shape}")
        for k, v in self.hparams.items():
            if np.shape(v)[:1] != (n,):
                raise ValueError(f"hparams[{k!r}] must have the member axis first (length {n}), got shape "
                                 f"{np.shape(v)}")
        if self.data_index is not None and np.shape(self.data_index) != (n,):
            raise ValueError(f"data_index must have shape ({n},), got {np.shape(self.data_index)}")

    def __len__(self):
        return len(self.configs)

    def take(self, index) -> "Members":
        """The members at ``index`` (an int array; repeats allowed), in that order."""
        index = np.asarray(index)
        return Members(self.keys[index], {k: v[index] for k, v in self.hparams.items()},
                       tuple(self.configs[i] for i in index),
                       None if self.data_index is None else np.asarray(self.data_index)[index])


def _as_axis(name, values):
    """``values`` as a list of per-member values: a sequence is a grid axis, a number one fixed value."""
    if isinstance(values, (int, float, np.integer, np.floating)):
        return [values]
    values = list(values)
    if not values:
        raise ValueError(f"{name}: an empty list of values")
    return values


def grid(seeds: Sequence[int] = (0,), *, datasets: Optional[Sequence[dict]] = None, folds: Optional[int] = None,
         key_fn: Optional[Callable] = None, **hparams) -> Members:
    """Every combination of the given hyperparameter values and ``seeds`` (seeds vary fastest, then the
    keyword arguments from last to first; ``datasets`` outermost).

    ``grid(seeds=range(8), lam=[0, 1, 3], lr=0.003)`` is 24 members; a number (``lr=0.003``) is fixed for all,
    a sequence is a grid axis -- vector hyperparameters are always given as a sequence of vectors
    (``rates=[(0.2, 0.5), (0.5, 0.2)]``). Member keys are ``key_fn(seed)`` (default ``jax.random.key``, so a
    member equals ``fit(..., key=jax.random.key(seed))``). ``datasets`` (one JSON-able dict per dataset of a
    stacked ``data`` tuple, e.g. ``{'noise': 0.1, 'n_train': 20}``) adds a data axis: each member's config gets
    its dataset's entries and ``data_index`` picks that dataset; ``folds=k`` is short for
    ``datasets=[{'fold': 0}, ..., {'fold': k - 1}]`` (see ``regjax.selection``).
    """
    key_fn = key_fn or jax.random.key
    seeds = [int(s) for s in seeds]
    if not seeds:
        raise ValueError("seeds must name at least one seed")
    if folds is not None:
        if datasets is not None:
            raise ValueError("give datasets or folds, not both")
        datasets = [{"fold": i} for i in range(as_count(folds, "folds"))]
    axes = {name: _as_axis(name, v) for name, v in hparams.items()}
    configs, keys_of_seed, index = [], {s: key_fn(s) for s in seeds}, []
    columns = {name: [] for name in axes}
    for d, *values, seed in itertools.product(range(len(datasets or [None])), *axes.values(), seeds):
        config = dict(datasets[d]) if datasets is not None else {}
        for name, value in zip(axes, values):
            columns[name].append(value)
            config[name] = _jsonable(value)
        config["seed"] = seed
        configs.append(config)
        index.append(d)
    keys = jnp.stack([keys_of_seed[c["seed"]] for c in configs])
    return Members(keys, {k: np.asarray(v, np.float32) for k, v in columns.items()}, tuple(configs),
                   None if datasets is None else np.asarray(index, np.int32))


def _jsonable(value):
    if isinstance(value, (list, tuple, np.ndarray)):
        return [float(v) for v in np.ravel(value)]
    return float(value)


# ---- history and result -----------------------------------------------------------------------------------------

@dataclasses.dataclass
class SweepHistory:
    """Per-epoch metrics of every member: ``train_loss[e][i]`` (lists of epochs of members), like
    ``regjax.train.History`` but with a member axis. ``diverged_epoch[i]`` (1-based) and ``diverged_step[i]``
    are ``None`` for members that trained through; a diverged member's metrics are NaN from the epoch after
    its divergence on. ``status``: ``'running'``, ``'completed'``, ``'diverged'`` (every member) or, set by the
    runner, ``'interrupted'``. Duck-types ``History`` for ``regjax.cli.Run`` (``epochs``, ``to_dict``)."""

    num_members: int
    train_loss: list = dataclasses.field(default_factory=list)
    train_accuracy: list = dataclasses.field(default_factory=list)
    test_loss: list = dataclasses.field(default_factory=list)
    test_accuracy: list = dataclasses.field(default_factory=list)
    epoch_time_s: list = dataclasses.field(default_factory=list)
    diverged_epoch: list = None
    diverged_step: list = None
    chunk_size: Optional[int] = None
    compile_time_s: float = 0.0
    status: str = "running"

    def __post_init__(self):
        if self.diverged_epoch is None:
            self.diverged_epoch = [None] * self.num_members
        if self.diverged_step is None:
            self.diverged_step = [None] * self.num_members

    @property
    def epochs(self) -> int:
        return len(self.train_loss)

    @property
    def alive(self) -> np.ndarray:
        return np.array([d is None for d in self.diverged_epoch])

    def record(self, epoch: int, train: dict, test: dict, finite: np.ndarray, diverged_step: np.ndarray,
               seconds: float):
        """Append epoch ``epoch`` (0-based); members that were already dead get NaN."""
        alive = self.alive
        for name, values in (("train_loss", train["loss"]), ("train_accuracy", train.get("accuracy")),
                             ("test_loss", test["loss"]), ("test_accuracy", test.get("accuracy"))):
            if values is None:
                getattr(self, name).append(None)
                continue
            values = np.where(alive, np.asarray(values, np.float64), np.nan)
            getattr(self, name).append([float(v) for v in values])
        for i in np.flatnonzero(alive & ~finite):
            self.diverged_epoch[i] = epoch + 1
            self.diverged_step[i] = int(diverged_step[i])
        self.epoch_time_s.append(seconds)

    def member_status(self) -> list:
        done = self.status in ("completed", "diverged")
        return ["diverged" if d is not None else ("completed" if done else self.status) for d in self.diverged_epoch]

    def metric(self, name: str) -> np.ndarray:
        """``(epochs, members)`` float array (NaN where undefined)."""
        rows = getattr(self, name)
        if not rows or rows[0] is None:
            return np.full((len(rows), self.num_members), np.nan)
        return np.array([[np.nan if v is None else v for v in row] for row in rows], np.float64)

    def to_dict(self) -> dict:
        return {f.name: getattr(self, f.name) for f in dataclasses.fields(self)}

    @classmethod
    def from_dict(cls, d: dict) -> "SweepHistory":
        names = {f.name for f in dataclasses.fields(cls)}
        # JSON turns NaN into null; a restored history keeps NaN where a live one has it
        fixed = {k: ([None if row is None else [math.nan if v is None else v for v in row] for row in val]
                     if k in METRICS else val) for k, val in d.items() if k in names}
        return cls(**fixed)


@dataclasses.dataclass
class SweepResult:
    """What a sweep returns: the members, their stacked final ``state`` (member axis first; a diverged member's
    state is its last finite one), the per-epoch ``history``, and how it ran (``chunk_size``, ``memory``)."""

    members: Members
    state: TrainState
    history: SweepHistory
    chunk_size: int
    memory: dict

    def final(self, metric: str = "test_loss") -> np.ndarray:
        """(N,) the last epoch's ``metric`` per member (NaN for a diverged member)."""
        return self.history.metric(metric)[-1]

    def table(self, *, params: bool = False) -> list:
        """The tidy member table: one row per member with its config, status, final metrics and per-epoch
        metrics (lists over epochs); ``params=True`` adds the final parameters (nested lists)."""
        status = self.history.member_status()
        per_epoch = {m: self.history.metric(m) for m in METRICS if getattr(self.history, m) and
                     getattr(self.history, m)[0] is not None}
        rows = []
        for i, config in enumerate(self.members.configs):
            row = {"member": i, **config, "status": status[i], "diverged_epoch": self.history.diverged_epoch[i],
                   **{f"final_{m}": float(v[-1, i]) for m, v in per_epoch.items()},
                   "per_epoch": {m: v[:, i].tolist() for m, v in per_epoch.items()}}
            if params:
                row["params"] = jax.tree_util.tree_map(lambda a: np.asarray(a[i]).tolist(), self.state.params)
            rows.append(row)
        return rows

    def long_rows(self) -> list:
        """One row per (member, epoch): the long ("tidy data") layout for data-frame tools."""
        return [{"member": r["member"], "epoch": e + 1,
                 **{k: v for k, v in r.items() if k not in ("member", "per_epoch") and not k.startswith("final_")},
                 **{m: vals[e] for m, vals in r["per_epoch"].items()}}
                for r in self.table() for e in range(self.history.epochs)]

    def best(self, metric: str = "test_loss", mode: str = "min") -> dict:
        """The table row of the member with the best final ``metric`` (diverged members excluded)."""
        values = self.final(metric)
        if np.all(np.isnan(values)):
            raise ValueError(f"no member has a finite final {metric}")
        i = int(np.nanargmin(values) if mode == "min" else np.nanargmax(values))
        row = self.table()[i]
        row.pop("per_epoch")
        return row

    def to_dict(self, *, per_epoch: bool = False, params: bool = False) -> dict:
        """Summary and member table, JSON-able. Without ``per_epoch`` the rows hold final metrics only (the
        per-epoch metrics are in the ``SweepHistory``, which the runner writes into results.json anyway)."""
        rows = self.table(params=params)
        if not per_epoch:
            for row in rows:
                row.pop("per_epoch")
        return {"num_members": len(self.members), "epochs": self.history.epochs, "status": self.history.status,
                "chunk_size": self.chunk_size, "memory": self.memory,
                "compile_time_s": self.history.compile_time_s, "train_time_s": float(sum(self.history.epoch_time_s)),
                "members": rows}

    def save(self, path, *, params: bool = False) -> Path:
        """The full tidy table (per-epoch metrics included; ``params`` adds the final parameters) as compact
        JSON, written atomically; NaN becomes ``null``."""
        text = json.dumps(_clean(self.to_dict(per_epoch=True, params=params)), allow_nan=False, separators=(",", ":"))
        return write_bytes_atomic(path, text.encode())


def group_stats(configs: Sequence[dict], values, by: Sequence[str]) -> list:
    """Mean, standard deviation (ddof=1 when n > 1) and count of ``values`` (one per member) grouped by the
    config keys ``by`` -- e.g. over seeds: ``group_stats(result.members.configs, result.final(), ['lam'])``.
    Non-finite values (diverged members) are left out and counted in ``n_diverged``."""
    groups: dict = {}
    for config, v in zip(configs, np.asarray(values, np.float64)):
        key = tuple(_hashable(config[b]) for b in by)
        groups.setdefault(key, []).append(v)
    out = []
    for key, vals in groups.items():
        vals = np.asarray(vals)
        ok = vals[np.isfinite(vals)]
        out.append({**dict(zip(by, (list(k) if isinstance(k, tuple) else k for k in key))),
                    "mean": float(ok.mean()) if ok.size else math.nan,
                    "std": float(ok.std(ddof=1)) if ok.size > 1 else (0.0 if ok.size else math.nan),
                    "n": int(ok.size), "n_diverged": int(vals.size - ok.size)})
    return out


def _hashable(v):
    return tuple(v) if isinstance(v, list) else v


# ---- the compiled program -----------------------------------------------------------------------------------

def _keep_where(ok, new, old):
    """``new`` where ``ok`` else ``old``, leaf by leaf (PRNG keys never change during training: kept as new)."""
    def pick(a, b):
        if jax.dtypes.issubdtype(a.dtype, jax.dtypes.prng_key):
            return a
        return jnp.where(ok, a, b)

    return jax.tree_util.tree_map(pick, new, old)


def member_program(model: Model, optimizer, loss, task, penalty_mask, batch_size: int, drop_remainder: bool,
                   eval_batch_size: int):
    """``member(state, key, hparams, alive, epoch, data) -> (state, train_totals, test_metrics, ok, bad_step)``:
    ONE member's epoch -- exactly ``fit``'s epoch (same ``make_epoch``, shuffle key ``fold_in(data_key,
    epoch)``, ``make_evaluate``) -- plus the freeze of a diverged member. ``sweep`` vmaps it; jitted alone it
    is the fair sequential baseline (the same compiled single-run program, one member after another)."""
    epoch_fn = make_epoch(make_step(model, optimizer, loss, task=task, penalty_mask=penalty_mask), batch_size,
                          drop_remainder=drop_remainder)
    evaluate = make_evaluate(model, loss, eval_batch_size, task=task)

    def member(state, key, hparams, alive, epoch, data):
        x, y, x_test, y_test = data
        _, data_key = jax.random.split(key)
        new, totals = epoch_fn(state, x, y, jax.random.fold_in(data_key, epoch), hparams)
        ok = alive & jnp.isfinite(totals["loss_sum"])
        new = _keep_where(ok, new, state)
        test = evaluate(new.params, new.model_state, x_test, y_test, hparams)
        return new, totals, test, ok, state.step + totals["first_nonfinite"]

    return member


def _program(member, vmap_size: Optional[int] = None):
    """The sweep epoch over a chunk of members, jitted (state donated). With ``data_index`` (folds) each member
    picks its dataset from the stacked ``data``; otherwise the data are shared (not batched).

    ``vmap_size=None`` vmaps all members at once; ``vmap_size=b`` runs them ``b`` at a time inside the same
    program (``lax.map(..., batch_size=b)``: a scan over vmapped groups; ``b = 1`` is a plain loop over members
    in one program) -- for backends where a batched kernel is slower than b separate ones (XLA:CPU turns a
    vmapped convolution into a grouped convolution that is slower than the convolutions one by one)."""

    def program(states, keys, hparams, alive, epoch, data, data_index):
        def one(args):
            state, key, hp, a, index = args
            own = data if index is None else jax.tree_util.tree_map(lambda d: d[index], data)
            return member(state, key, hp, a, epoch, own)

        args = (states, keys, hparams, alive, data_index)
        if vmap_size is None:
            return jax.vmap(one)(args)
        return jax.lax.map(one, args, batch_size=vmap_size)

    return jax.jit(program, donate_argnums=(0,))


@functools.lru_cache(maxsize=32)
def _programs(model, optimizer, loss, task, penalty_mask, batch_size, drop_remainder, eval_batch_size, vmap_size):
    """The jitted sweep program of one configuration and its cache of compiled executables (one per member
    count and data shape), kept so that sweeps of the same model in one process compile once."""
    member = member_program(model, optimizer, loss, task, penalty_mask, batch_size, drop_remainder, eval_batch_size)
    return _program(member, vmap_size), {}


@functools.lru_cache(maxsize=32)
def _init_program(model, optimizer):
    return jax.jit(jax.vmap(lambda k: init_state(model, optimizer, jax.random.split(k)[0]))), {}


# XLA's CPU backend spends seconds optimizing the unrolled threefry of a vmapped initializer (10 s for LeNet on a
# busy 2-core machine, 1.5 s without backend optimization); it runs once, so it is compiled unoptimized -- the
# same bits either way (integer hashing, then the initializers' exact float ops; the tests compare with fit).
_INIT_COMPILER_OPTIONS = {"xla_backend_optimization_level": 0}


def init_members(model: Model, optimizer, keys) -> TrainState:
    """The stacked initial state: ``init_state(model, optimizer, split(key)[0])`` per member, vmapped -- the
    state each member's solo ``fit`` starts from (also the ``target`` to restore a sweep checkpoint into)."""
    init, cache = cached_build(_init_program, model, optimizer)
    signature = (keys.shape, str(keys.dtype))
    if signature not in cache:
        lowered = init.lower(keys)
        try:
            cache[signature] = lowered.compile(compiler_options=_INIT_COMPILER_OPTIONS)
        except Exception:  # a backend without that option
            cache[signature] = lowered.compile()
    return cache[signature](keys)


# ---- memory and chunks ----------------------------------------------------------------------------------------

def available_memory(device=None) -> tuple:
    """``(bytes, source)``: free memory of ``device`` (default: the first device). Accelerators report it
    through ``Device.memory_stats()`` (``bytes_limit − bytes_in_use``); the CPU backend does not, so it is the
    machine's free physical memory from ``os.sysconf``."""
    device = device or jax.devices()[0]
    stats = None
    try:
        stats = device.memory_stats()
    except Exception:  # some backends raise instead of returning None
        stats = None
    if stats and "bytes_limit" in stats:
        return int(stats["bytes_limit"] - stats.get("bytes_in_use", 0)), f"{device.platform} memory_stats"
    return int(os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")), "os.sysconf SC_AVPHYS_PAGES"


def _tree_bytes(tree) -> int:
    total = 0
    for leaf in jax.tree_util.tree_leaves(tree):
        if jax.dtypes.issubdtype(leaf.dtype, jax.dtypes.prng_key):
            leaf = jax.random.key_data(leaf)
        total += int(np.prod(leaf.shape)) * leaf.dtype.itemsize
    return total


def _peak_bytes(compiled) -> Optional[int]:
    try:
        m = compiled.memory_analysis()
    except Exception:
        return None
    if m is None:
        return None
    return int(m.argument_size_in_bytes + m.output_size_in_bytes - m.alias_size_in_bytes + m.temp_size_in_bytes)


def plan_chunk_size(peak_bytes: int, num_members: int, shared_bytes: int, state_bytes: int, budget: int) -> int:
    """Members per chunk for a program measured at ``peak_bytes`` with all ``num_members`` members:
    ``num_members`` if it fits ``budget``; else ``(budget − shared − state) // bytes_per_member`` with
    ``bytes_per_member = (peak − shared) / num_members``, at least 1 (and the caller learns it may not fit)."""
    if peak_bytes <= budget:
        return num_members
    per_member = max(1.0, (peak_bytes - shared_bytes) / num_members)
    return int(min(num_members, max(1, (budget - shared_bytes - state_bytes) // per_member)))


# ---- the sweep ------------------------------------------------------------------------------------------------

def _check_sweep_data(data, task, stacked: bool):
    if not stacked:
        return check_data(data, task)
    if not isinstance(data, (tuple, list)) or len(data) != 4:
        raise ValueError("data must be a tuple (x_train, y_train, x_test, y_test)")
    arrays = [jnp.asarray(a) for a in data]
    count = {a.shape[0] for a in arrays}
    if len(count) != 1:
        raise ValueError(f"stacked data (members with data_index) need one leading dataset axis of the same "
                         f"length on all four arrays, got shapes {[a.shape for a in arrays]}")
    check_data([a[0] for a in arrays], task)
    return arrays


def _take(tree, index):
    return jax.tree_util.tree_map(lambda a: a[index], tree)


def _concat(trees):
    if len(trees) == 1:
        return trees[0]
    return jax.tree_util.tree_map(lambda *xs: jnp.concatenate(xs), *trees)


def sweep(model: Model, optimizer: Optional[optax.GradientTransformation], data, members: Members, *, epochs: int,
          batch_size: int, loss="cross_entropy", task=None, penalty_mask=None, drop_remainder: bool = False,
          eval_batch_size: int = 1024, chunk_size: Optional[int] = None, memory_fraction: float = 0.5,
          memory_budget: Optional[int] = None, vmap_size: Optional[int] = None,
          on_start: Optional[Callable[[], None]] = None, on_epoch: Optional[Callable] = None,
          after_epoch: Optional[Callable] = None,
          state: Optional[TrainState] = None, start_epoch: int = 0,
          history: Optional[SweepHistory] = None, mesh=None) -> SweepResult:
    """Train every member of ``members`` for ``epochs`` epochs in one compiled program; returns a
    ``SweepResult``. Arguments as ``regjax.train.fit`` (which each member equals), plus:

    ``mesh`` (``regjax.parallel.data_mesh(n)``): split the *member* axis over the devices (each device trains
    N/n members; the data are replicated) -- many small models on many devices; N must be a multiple of n and
    the members are not chunked. Results equal the unsharded sweep to float tolerance.

    ``data``: ``(x_train, y_train, x_test, y_test)`` shared by all members, or -- when ``members.data_index``
    is set -- the same with a leading dataset axis (e.g. one entry per cross-validation fold, ``x_test`` then
    being the fold's validation set). ``chunk_size``: members per compiled call (default: measured, see the
    module docstring; ``memory_budget`` bytes overrides ``memory_fraction`` of the free memory). ``vmap_size``:
    members vectorized together inside the program, the rest following in the same program (see ``_program``;
    default all).
    ``on_epoch(epoch, row)`` gets the epoch's per-member metrics as arrays; ``after_epoch(epoch, state,
    history)`` runs after each epoch (checkpoints); ``state``/``start_epoch``/``history`` continue a sweep.

    Raises ``ValueError`` for bad arguments before training, and ``Diverged`` only if every member diverged.
    """
    epochs = as_count(epochs, "epochs")
    start_epoch = as_count(start_epoch, "start_epoch", 0)
    if start_epoch > epochs:
        raise ValueError(f"start_epoch ({start_epoch}) is past epochs ({epochs}): the sweep already has more epochs")
    check_in_range(memory_fraction, "memory_fraction", 0.0, 1.0, low_open=True)
    if chunk_size is not None:
        chunk_size = as_count(chunk_size, "chunk_size")
    if vmap_size is not None:
        vmap_size = as_count(vmap_size, "vmap_size")
    _, task = resolve_loss(loss, task)
    stacked = members.data_index is not None
    data = _check_sweep_data(data, task, stacked)
    if stacked and (members.data_index.min() < 0 or members.data_index.max() >= data[0].shape[0]):
        raise ValueError(f"data_index must lie in [0, {data[0].shape[0]}) (the stacked datasets)")
    n = int(data[0].shape[1] if stacked else data[0].shape[0])
    num_batches(n, batch_size, drop_remainder)
    N = len(members)
    if state is None:
        if start_epoch:
            raise ValueError("start_epoch > 0 needs the state to continue from (state=)")
        state = init_members(model, optimizer, members.keys)
    else:
        state = jax.tree_util.tree_map(jnp.copy, jax.device_put(state))  # the program donates its input state
    hparams = check_hparams(model, optimizer, state.opt_state, members.hparams)
    if task == "classification":
        one = _take(state, 0)
        x0 = data[0][0] if stacked else data[0]
        out = jax.eval_shape(lambda p, ms: model.apply(p, ms, x0[:1], key=None, train=False,
                                                       hparams=_take(hparams, 0))[0], one.params, one.model_state)
        for name, y in (("y_train", data[1]), ("y_test", data[3])):
            check_labels(y, int(out.shape[-1]), name)
    history = history if history is not None else SweepHistory(N)
    if history.epochs != start_epoch or history.num_members != N:
        raise ValueError(f"history holds {history.epochs} epochs of {history.num_members} members but start_epoch is "
                         f"{start_epoch} with {N} members")
    if on_start is not None:
        on_start()
    if start_epoch == epochs:
        history.status = "diverged" if not history.alive.any() else "completed"
        return SweepResult(members, state, history, chunk_size or N, {})
    history.status = "running"

    program, cache = cached_build(_programs, model, optimizer, loss, task, penalty_mask, batch_size,
                                  drop_remainder, eval_batch_size, vmap_size)
    data = tuple(jax.device_put(data))
    data_index = None if not stacked else jnp.asarray(members.data_index, jnp.int32)
    keys = members.keys
    place = lambda tree: tree  # noqa: E731
    if mesh is not None:  # many small models, many devices: the member axis is split, the data replicated
        from jax.sharding import NamedSharding, PartitionSpec

        from regjax.parallel import DATA_AXIS, replicate

        if N % mesh.size:
            raise ValueError(f"{N} members do not split evenly over the {mesh.size} devices of the mesh")
        if chunk_size is not None and chunk_size != N:
            raise ValueError("with a mesh the members are split over the devices, not chunked: leave chunk_size out")
        chunk_size = N
        place = lambda tree: jax.device_put(tree, NamedSharding(mesh, PartitionSpec(DATA_AXIS)))  # noqa: E731
        state, keys, hparams = place(state), place(keys), place(hparams)
        data = tuple(replicate(data, mesh))
        data_index = None if data_index is None else place(data_index)
    alive = place(jnp.asarray(history.alive))

    def compile_for(size):
        """The program compiled for chunks of ``size`` members (cached per signature), and its seconds."""
        take = (lambda t: t) if size == N else (lambda t: _take(t, slice(0, size)))
        args = (take(state), take(keys), take(hparams), take(alive), np.int32(start_epoch), data,
                None if data_index is None else take(data_index))
        return _compiled(program, cache, args)

    shared_bytes, state_bytes = _tree_bytes(data), _tree_bytes(state)
    if chunk_size is None:
        compiled, seconds = compile_for(N)
        peak = _peak_bytes(compiled)
        budget, source = (memory_budget, "memory_budget") if memory_budget is not None else available_memory()
        budget = int(budget * (1 if memory_budget is not None else memory_fraction))
        memory = {"peak_bytes_all_members": peak, "shared_data_bytes": shared_bytes, "state_bytes": state_bytes,
                  "budget_bytes": budget, "budget_source": source,
                  "bytes_per_member": None if peak is None else (peak - shared_bytes) / N}
        chunk_size = N if peak is None else plan_chunk_size(peak, N, shared_bytes, state_bytes, budget)
    else:
        chunk_size = min(chunk_size, N)
        memory, seconds = {"chunk_size_given": True}, 0.0
    if chunk_size < N or "chunk_size_given" in memory:
        compiled, more = compile_for(chunk_size)
        seconds += more
        memory["peak_bytes_per_chunk"] = _peak_bytes(compiled)
    memory["chunk_size"] = history.chunk_size = chunk_size
    history.compile_time_s += seconds
    if jax.config.jax_debug_nans:  # an AOT executable is not re-run op by op: take jit's path so JAX names the op
        compiled = program
    chunks = [np.minimum(np.arange(lo, lo + chunk_size), min(lo + chunk_size, N) - 1)
              for lo in range(0, N, chunk_size)]
    sizes = [min(chunk_size, N - lo) for lo in range(0, N, chunk_size)]

    for epoch in range(start_epoch, epochs):
        t0 = time.perf_counter()
        e = np.int32(epoch)
        if len(chunks) == 1:
            state, totals, test, ok, bad_step = compiled(state, keys, hparams, alive, e, data, data_index)
        else:
            outs = []
            for index, size in zip(chunks, sizes):
                out = compiled(_take(state, index), _take(keys, index), _take(hparams, index), alive[index], e,
                               data, None if data_index is None else data_index[index])
                outs.append(_take(out, slice(0, size)))
            state, totals, test, ok, bad_step = _concat(outs)
        totals, test, ok, bad_step = jax.device_get((totals, test, ok, bad_step))
        seconds = time.perf_counter() - t0
        train = {"loss": totals["loss_sum"] / totals["count"]}
        if "correct" in totals:
            train["accuracy"] = totals["correct"] / totals["count"]
        history.record(epoch, train, test, np.asarray(ok), np.asarray(bad_step), seconds)
        alive = place(jnp.asarray(history.alive))
        if on_epoch is not None:
            on_epoch(epoch, {"train_loss": history.metric("train_loss")[-1],
                             "test_loss": history.metric("test_loss")[-1],
                             "test_accuracy": history.metric("test_accuracy")[-1], "epoch_time_s": seconds,
                             "alive": history.alive})
        if not history.alive.any():
            history.status = "diverged"
            first = int(np.argmin([s for s in history.diverged_step]))
            raise Diverged(epoch, history.diverged_step[first], state, history)
        if after_epoch is not None:
            after_epoch(epoch, state, history)
    history.status = "completed"
    return SweepResult(members, state, history, chunk_size, memory)


def train_sequentially(model: Model, optimizer, data, members: Members, *, epochs: int, batch_size: int,
                       loss="cross_entropy", task=None, penalty_mask=None, drop_remainder: bool = False,
                       eval_batch_size: int = 1024) -> tuple:
    """The fair sequential baseline: the very program a sweep vmaps (``member_program``), compiled ONCE for a
    single member, and the members trained one after another in a Python loop (each epoch's metrics fetched,
    as the sweep does). Shared data only. Returns ``(stacked final states, {'compile_s', 'train_s'})``."""
    _, task = resolve_loss(loss, task)
    if members.data_index is not None:
        raise ValueError("train_sequentially takes shared data only (members without data_index)")
    data = tuple(jax.device_put(check_data(data, task)))
    member = jax.jit(member_program(model, optimizer, loss, task, penalty_mask, batch_size, drop_remainder,
                                    eval_batch_size), donate_argnums=(0,))
    states = init_members(model, optimizer, members.keys)
    hparams = check_hparams(model, optimizer, states.opt_state, members.hparams)
    alive = jnp.asarray(True)
    t0 = time.perf_counter()
    compiled = member.lower(_take(states, 0), members.keys[0], _take(hparams, 0), alive, np.int32(0),
                            data).compile()
    compile_s = time.perf_counter() - t0
    t0 = time.perf_counter()
    finals = []
    for i in range(len(members)):
        state, key, hp = _take(states, i), members.keys[i], _take(hparams, i)
        for epoch in range(epochs):
            state, totals, test, ok, _ = compiled(state, key, hp, alive, np.int32(epoch), data)
            jax.device_get((totals, test, ok))
        finals.append(jax.tree_util.tree_map(lambda a: a[None], state))
    train_s = time.perf_counter() - t0
    return _concat(finals), {"compile_s": compile_s, "train_s": train_s}


# ---- under the experiment runner --------------------------------------------------------------------------------

def run_sweep(run, name: str, model: Model, optimizer, data, members: Members, *, epochs: int,
              batch_size: Optional[int] = None, progress_every: int = 1, checkpoint_interval_s: float = 1.0,
              after_epoch: Optional[Callable] = None, **kwargs) -> SweepResult:
    """``sweep`` under a ``regjax.cli.Run``: the run's checks and statuses, checkpoints of the whole stacked
    state (``<out>/checkpoints/<name>.sweep.msgpack``), ``--resume`` from the last one (with the chunk size it
    was made with: a bit-identical continuation), one progress line per ``progress_every`` epochs, and the
    ``SweepHistory`` in ``run.histories[name]`` -- so an interrupted sweep's ``results.json`` holds every
    finished epoch of every member. A checkpoint made with other members (configs) is refused.

    Checkpoints are written after an epoch once ``checkpoint_interval_s`` seconds have passed since the last
    one, and after the last epoch: every epoch whenever epochs take longer than that (a single run's rule), at
    most about once a second for sweeps of tiny epochs -- a checkpoint serializes the whole per-member history,
    which for 128 members × 100 epochs of 2 ms would otherwise cost more than the training. An interruption then
    loses at most that interval of training. ``after_epoch(epoch, state, history)`` (optional) runs after that,
    e.g. to measure the stacked parameters every epoch."""
    from regjax.checkpoint import CheckpointError

    batch_size = run.args.batch_size if batch_size is None else batch_size
    path = run.checkpoint_path(name).with_suffix(".sweep.msgpack")
    configs = [dict(c) for c in members.configs]
    state, start, history = None, 0, SweepHistory(len(members))
    if run.resuming and path.exists():
        ckpt = load_checkpoint(path, init_members(model, optimizer, members.keys))
        if ckpt.meta.get("configs") != configs:
            raise CheckpointError(f"checkpoint {path} was made by a sweep over other members")
        state, start, history = ckpt.state, ckpt.epoch, SweepHistory.from_dict(ckpt.history)
        kwargs.setdefault("chunk_size", history.chunk_size)  # the same chunks: a bit-identical continuation
        if start > epochs:
            raise ValueError(f"--epochs {epochs}: the checkpoint of {name!r} already has {start} epochs")
        run.say(f"[{name}] resuming after epoch {start}/{epochs} ({path})")
    run.histories[name] = history

    def on_epoch(epoch, row):
        if run.args.quiet or ((epoch + 1) % progress_every and epoch + 1 != epochs):
            return
        loss = row["test_loss"]
        best = np.nanmin(loss) if np.isfinite(loss).any() else math.nan
        acc = row["test_accuracy"]
        acc_text = f" | best test acc {np.nanmax(acc):.4f}" if np.isfinite(acc).any() else ""
        run.say(f"[{name}] epoch {epoch + 1:>{len(str(epochs))}}/{epochs} | {len(members)} members | best test loss "
                f"{best:.4g}{acc_text} | diverged {int((~row['alive']).sum())} | {row['epoch_time_s']:.3f} s")

    last_save = [time.perf_counter()]

    def checkpoint(epoch, state, history):
        if run._writer is not None and (epoch + 1 == epochs
                                        or time.perf_counter() - last_save[0] >= checkpoint_interval_s):
            run._writer.save(path, state, epoch=epoch + 1, history=history.to_dict(),
                             meta={"experiment": run.experiment, "variant": name, "configs": configs})
            last_save[0] = time.perf_counter()
        if after_epoch is not None:
            after_epoch(epoch, state, history)

    if jax.process_count() > 1:
        raise ValueError("sweeps run in one process (possibly on several of its devices with --devices); "
                         "splitting the members across processes is not supported")
    if run.mesh is not None:  # --devices N: the members are split over the devices
        if len(members) % run.mesh.size:
            raise ValueError(f"--devices {run.mesh.size}: the {len(members)} members of {name!r} must split evenly "
                             f"over the devices")
        kwargs.setdefault("mesh", run.mesh)
    try:
        return sweep(model, optimizer, data, members, epochs=epochs, batch_size=batch_size, on_start=run._begin,
                     on_epoch=on_epoch, after_epoch=checkpoint, state=state, start_epoch=start, history=history,
                     **kwargs)
    except Diverged as err:
        err.variant = name
        raise
