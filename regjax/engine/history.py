"""Per-epoch metrics of a run (``History``) or of every member of a sweep (``SweepHistory``), and ``Diverged``.

Both record an epoch from the same inputs -- host arrays with a member axis (one member for a single run) -- so
the one epoch driver of ``regjax.engine.core`` serves both. Non-finite floats are kept as NaN in memory and
become ``null`` in JSON; ``from_dict`` turns them back into NaN.
"""
from __future__ import annotations

import dataclasses
import math
from typing import Any, List, Optional

import numpy as np

__all__ = ["History", "SweepHistory", "Diverged", "METRICS"]

METRICS = ("train_loss", "train_accuracy", "test_loss", "test_accuracy")


class Diverged(FloatingPointError):
    """The training loss became non-finite (for a sweep: of every member). ``epoch`` (0-based) and ``step``
    (global, 0-based) say where; the run's ``history`` (``status == 'diverged'``) and its last finite ``state``
    travel with the error."""

    def __init__(self, epoch: int, step: int, state: Any, history: Any):
        super().__init__(f"training diverged: the training loss is not finite in epoch {epoch + 1} (first at global "
                         f"step {step}); lower the learning rate (or look at the data and the other hyperparameters); rerun "
                         f"with --debug-nans (jax_debug_nans) to find the operation")
        self.epoch, self.step, self.state, self.history = epoch, step, state, history


def _float(v) -> Optional[float]:
    return None if v is None else float(v)


@dataclasses.dataclass
class History:
    """Per-epoch metrics of one run (train metrics are averaged over the epoch, in training mode).

    ``status`` is ``'running'`` while ``fit`` runs, then ``'completed'`` or ``'diverged'``; the command-line
    runner adds ``'interrupted'``."""

    train_loss: list = dataclasses.field(default_factory=list)
    train_accuracy: list = dataclasses.field(default_factory=list)
    test_loss: list = dataclasses.field(default_factory=list)
    test_accuracy: list = dataclasses.field(default_factory=list)
    epoch_time_s: list = dataclasses.field(default_factory=list)   # training alone
    examples_per_s: list = dataclasses.field(default_factory=list)
    eval_time_s: list = dataclasses.field(default_factory=list)    # the test-set evaluation after each epoch
    compile_time_s: float = 0.0
    status: str = "running"

    # not dataclass fields (not in to_dict): what the epoch driver asks of every history
    num_members = 1
    diverged_step = None  # the global step of the first non-finite loss, once the run diverged

    @property
    def alive(self) -> np.ndarray:
        return np.array([self.diverged_step is None])

    def first_diverged_step(self) -> Optional[int]:
        return self.diverged_step

    def record(self, epoch: int, train: dict, test: dict, ok: np.ndarray, bad_step: np.ndarray, *, seconds: float,
               eval_seconds: float, n: int) -> dict:
        """Append epoch ``epoch`` from the driver's member-axis arrays (one member); returns the row. In the epoch
        the run diverged in, the test metrics are NaN: the model that epoch produced has no finite loss."""
        del epoch
        if not ok[0]:
            self.diverged_step = int(bad_step[0])
        one = lambda d, k: None if d.get(k) is None else (d[k][0] if ok[0] else math.nan)  # noqa: E731
        row = {"train_loss": float(train["loss"][0]), "train_accuracy": _float(train.get("accuracy", [None])[0]),
               "test_loss": float(one(test, "loss")), "test_accuracy": _float(one(test, "accuracy")),
               "epoch_time_s": seconds, "examples_per_s": n / seconds if seconds > 0 else float("inf"),
               "eval_time_s": eval_seconds}
        for k, v in row.items():
            getattr(self, k).append(v)
        return row

    @property
    def epochs(self) -> int:
        return len(self.train_loss)

    def final(self) -> dict:
        return {k: getattr(self, k)[-1] for k in METRICS}

    def to_dict(self) -> dict:
        return {f.name: (list(v) if isinstance(v := getattr(self, f.name), list) else v)
                for f in dataclasses.fields(self)}

    @classmethod
    def from_dict(cls, d: dict) -> "History":
        names = {f.name for f in dataclasses.fields(cls)}
        # JSON stores non-finite floats as null; a restored history keeps them NaN like the live one
        return cls(**{k: ([math.nan if v is None and not k.endswith("accuracy") else v for v in val]
                          if isinstance(val, list) else val) for k, val in d.items() if k in names})


@dataclasses.dataclass
class SweepHistory:
    """Per-epoch metrics of every member: ``train_loss[e][i]`` (lists of epochs of members), like ``History``
    with a member axis. ``diverged_epoch[i]`` (1-based) and ``diverged_step[i]`` are ``None`` for members that
    trained through; a diverged member's metrics are NaN from the epoch after its divergence on. ``status``:
    ``'running'``, ``'completed'``, ``'diverged'`` (every member) or, set by the runner, ``'interrupted'``."""

    num_members: int
    train_loss: list = dataclasses.field(default_factory=list)
    train_accuracy: list = dataclasses.field(default_factory=list)
    test_loss: list = dataclasses.field(default_factory=list)
    test_accuracy: list = dataclasses.field(default_factory=list)
    epoch_time_s: list = dataclasses.field(default_factory=list)   # training alone, all members
    eval_time_s: list = dataclasses.field(default_factory=list)    # the test-set evaluations, all members
    diverged_epoch: Optional[List[Optional[int]]] = None
    diverged_step: Optional[List[Optional[int]]] = None
    chunk_size: Optional[int] = None
    compile_time_s: float = 0.0
    status: str = "running"

    def __post_init__(self):
        if self.diverged_epoch is None:
            self.diverged_epoch = [None] * self.num_members
        if self.diverged_step is None:
            self.diverged_step = [None] * self.num_members

    @property
    def run_time_s(self) -> float:
        """Seconds spent training and evaluating, all epochs and members (compilation excluded)."""
        return float(sum(self.epoch_time_s) + sum(self.eval_time_s))

    @property
    def epochs(self) -> int:
        return len(self.train_loss)

    @property
    def alive(self) -> np.ndarray:
        return np.array([d is None for d in self.diverged_epoch])

    def record(self, epoch: int, train: dict, test: dict, ok: np.ndarray, bad_step: np.ndarray, *, seconds: float,
               eval_seconds: float, n: int) -> dict:
        """Append epoch ``epoch`` (0-based); members that were already dead get NaN, and so do the test metrics of
        a member in the epoch it diverged in. Returns the progress row: this epoch's per-member arrays and which
        members are alive."""
        del n
        alive = self.alive
        for name, values, keep in (("train_loss", train["loss"], alive),
                                   ("train_accuracy", train.get("accuracy"), alive),
                                   ("test_loss", test["loss"], alive & ok),
                                   ("test_accuracy", test.get("accuracy"), alive & ok)):
            if values is None:
                getattr(self, name).append(None)
                continue
            values = np.where(keep, np.asarray(values, np.float64), np.nan)
            getattr(self, name).append([float(v) for v in values])
        for i in np.flatnonzero(alive & ~ok):
            self.diverged_epoch[i] = epoch + 1
            self.diverged_step[i] = int(bad_step[i])
        self.epoch_time_s.append(seconds)
        self.eval_time_s.append(eval_seconds)
        return {"train_loss": self.metric("train_loss")[-1], "test_loss": self.metric("test_loss")[-1],
                "test_accuracy": self.metric("test_accuracy")[-1], "epoch_time_s": seconds, "alive": self.alive}

    def first_diverged_step(self) -> int:
        """The earliest global step at which a member diverged."""
        return min(s for s in self.diverged_step if s is not None)

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
        """A snapshot, like ``History.to_dict``: the lists are copies (recorded rows are never changed, so the
        rows themselves are shared), so the history recording on leaves it as it was."""
        return {f.name: (list(v) if isinstance(v := getattr(self, f.name), list) else v)
                for f in dataclasses.fields(self)}

    @classmethod
    def from_dict(cls, d: dict) -> "SweepHistory":
        """A history that owns its lists: recording on never changes ``d``."""
        names = {f.name for f in dataclasses.fields(cls)}
        # JSON turns NaN into null; a restored history keeps NaN where a live one has it
        fixed = {k: ([None if row is None else [math.nan if v is None else v for v in row] for row in val]
                     if k in METRICS else list(val) if isinstance(val, list) else val)
                 for k, val in d.items() if k in names}
        return cls(**fixed)
