"""The members of a sweep: N training configurations that share one compiled program.

Members differ in traced hyperparameters (every key ``regjax.engine.hparams.check_hparams`` accepts), in their
seed (the run key of each), and optionally in their training data (``data_index``: k-fold cross-validation, one
dataset per fold). ``grid`` builds them as the product of value lists, seeds fastest.
"""
from __future__ import annotations

import dataclasses
import itertools
from typing import Any, Callable, Optional, Sequence

import jax
import jax.numpy as jnp
import numpy as np

from regjax._checks import as_count
from regjax.base import PyTree

__all__ = ["Members", "grid", "take", "concat"]


def take(tree: PyTree, index: Any) -> PyTree:
    """Every leaf indexed along its leading (member) axis."""
    return jax.tree_util.tree_map(lambda a: a[index], tree)


def concat(trees: Sequence[PyTree]) -> PyTree:
    """Leaves concatenated along the leading (member) axis."""
    if len(trees) == 1:
        return trees[0]
    return jax.tree_util.tree_map(lambda *xs: jnp.concatenate(xs), *trees)


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

    def __len__(self) -> int:
        return len(self.configs)

    def take(self, index: Any) -> "Members":
        """The members at ``index`` (an int array; repeats allowed), in that order."""
        index = np.asarray(index)
        return Members(self.keys[index], {k: v[index] for k, v in self.hparams.items()},
                       tuple(self.configs[i] for i in index),
                       None if self.data_index is None else np.asarray(self.data_index)[index])


def _as_axis(name: str, values: Any) -> list:
    """``values`` as a list of per-member values: a sequence is a grid axis, a number one fixed value."""
    if isinstance(values, (int, float, np.integer, np.floating)):
        return [values]
    values = list(values)
    if not values:
        raise ValueError(f"{name}: an empty list of values")
    return values


def grid(seeds: Sequence[int] = (0,), *, datasets: Optional[Sequence[dict]] = None, folds: Optional[int] = None,
         key_fn: Optional[Callable] = None, **hparams: Any) -> Members:
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


def _jsonable(value: Any) -> Any:
    if isinstance(value, (list, tuple, np.ndarray)):
        return [float(v) for v in np.ravel(value)]
    return float(value)
