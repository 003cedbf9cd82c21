"""``History``: the per-epoch metrics of a run's members (one for ``fit``, N for ``sweep``), and ``Diverged``.

Non-finite floats are kept as NaN in memory and become ``null`` in JSON; ``from_dict`` turns them back into NaN.
"""
from __future__ import annotations

import dataclasses
import math
from typing import Any, List, Optional

import numpy as np

__all__ = ["History", "Diverged", "METRICS", "LAYOUT"]

METRICS = ("train_loss", "train_accuracy", "test_loss", "test_accuracy")
LAYOUT = "curves per member"  # what to_dict writes and from_dict requires: test_loss[member][epoch]


class Diverged(FloatingPointError):
    """The training loss became non-finite (for a sweep: of every member). ``epoch`` (0-based) and ``step``
    (global, 0-based) say where; the run's ``history`` (``status == 'diverged'``) and its last finite ``state``
    travel with the error."""

    def __init__(self, epoch: int, step: int, state: Any, history: Any):
        super().__init__(f"training diverged: the training loss is not finite in epoch {epoch + 1} (first at global "
                         f"step {step}); lower the learning rate (or look at the data and the other hyperparameters); "
                         f"rerun with --debug-nans (jax_debug_nans) to find the operation")
        self.epoch, self.step, self.state, self.history = epoch, step, state, history


def _curves(n: int) -> list:
    return [[] for _ in range(n)]


@dataclasses.dataclass
class History:
    """Per-epoch metrics of every member of a run: ``test_loss[i][e]`` is member ``i``'s test loss after epoch
    ``e + 1``; a single run (``fit``) has one member, so ``history.test_loss[0]`` is its curve and
    ``history.final()`` its last epoch. Train metrics are averaged over the epoch, in training mode. A metric the
    task does not have (accuracy, in regression) is ``None``.

    ``diverged_epoch[i]`` (1-based) and ``diverged_step[i]`` (global) are ``None`` for members that trained
    through; a diverged member's metrics are NaN from the epoch after its divergence on (its test metrics already
    in that epoch: the model that epoch produced has no finite loss). ``status``: ``'running'``, ``'completed'``,
    ``'diverged'`` (every member) or, set by the command-line runner, ``'interrupted'``. ``chunk_size``: members
    per compiled call of a sweep (a continued sweep keeps it: the same chunks are a bit-identical continuation).
    """

    num_members: int = 1
    train_loss: Optional[list] = None
    train_accuracy: Optional[list] = None
    test_loss: Optional[list] = None
    test_accuracy: Optional[list] = None
    epoch_time_s: list = dataclasses.field(default_factory=list)    # per epoch: training alone, all members
    eval_time_s: list = dataclasses.field(default_factory=list)     # per epoch: the test-set evaluations
    examples_per_s: list = dataclasses.field(default_factory=list)  # per epoch: training examples of all members / s
    diverged_epoch: Optional[List[Optional[int]]] = None
    diverged_step: Optional[List[Optional[int]]] = None
    chunk_size: Optional[int] = None
    compile_time_s: float = 0.0
    status: str = "running"

    def __post_init__(self):
        for name in METRICS:
            if getattr(self, name) is None and not self.epoch_time_s:  # not recorded yet: it may get values
                setattr(self, name, _curves(self.num_members))
        if self.diverged_epoch is None:
            self.diverged_epoch = [None] * self.num_members
        if self.diverged_step is None:
            self.diverged_step = [None] * self.num_members

    # ---- what the epoch driver asks ----------------------------------------------------------------------------
    @property
    def epochs(self) -> int:
        return len(self.epoch_time_s)

    @property
    def alive(self) -> np.ndarray:
        """(N,) bool: the members that have not diverged."""
        return np.array([d is None for d in self.diverged_epoch])

    def record(self, epoch: int, train: dict, test: dict, ok: np.ndarray, bad_step: np.ndarray, *, seconds: float,
               eval_seconds: float, n: int) -> dict:
        """Append epoch ``epoch`` (0-based) from per-member host arrays (``n``: training examples per member);
        members that were already dead get NaN, and so do the test metrics of a member in the epoch it diverged in.
        Returns the progress row: this epoch's per-member metric arrays, the times, and which members are alive."""
        alive = self.alive
        row = {}
        for name, values, keep in (("train_loss", train["loss"], alive),
                                   ("train_accuracy", train.get("accuracy"), alive),
                                   ("test_loss", test["loss"], alive & ok),
                                   ("test_accuracy", test.get("accuracy"), alive & ok)):
            if values is None:
                setattr(self, name, None)
                continue
            row[name] = np.where(keep, np.asarray(values, np.float64), np.nan)
            for curve, value in zip(getattr(self, name), row[name]):
                curve.append(float(value))
        for i in np.flatnonzero(alive & ~ok):
            self.diverged_epoch[i] = epoch + 1
            self.diverged_step[i] = int(bad_step[i])
        per_s = n * self.num_members / seconds if seconds > 0 else float("inf")
        self.epoch_time_s.append(seconds)
        self.eval_time_s.append(eval_seconds)
        self.examples_per_s.append(per_s)
        return {**row, "epoch_time_s": seconds, "eval_time_s": eval_seconds, "examples_per_s": per_s,
                "alive": self.alive}

    def first_diverged_step(self) -> int:
        """The earliest global step at which a member diverged."""
        return min(s for s in self.diverged_step if s is not None)

    # ---- what readers ask ------------------------------------------------------------------------------------
    @property
    def run_time_s(self) -> float:
        """Seconds spent training and evaluating, all epochs and members (compilation excluded)."""
        return float(sum(self.epoch_time_s) + sum(self.eval_time_s))

    def metric(self, name: str) -> np.ndarray:
        """``(epochs, members)`` float array of ``name`` (NaN where undefined, e.g. accuracy in regression)."""
        curves = getattr(self, name)
        if curves is None:
            return np.full((self.epochs, self.num_members), np.nan)
        return np.array(curves, np.float64).T

    def final(self, member: int = 0) -> dict:
        """Member ``member``'s metrics after the last epoch (``None`` for a metric the task does not have)."""
        return {name: None if getattr(self, name) is None else getattr(self, name)[member][-1] for name in METRICS}

    def __repr__(self) -> str:
        """A line, not the numbers: ``History(1 member, 10 epochs, completed: train loss 0.3102, test loss
        0.3561, test accuracy 0.8712)``; a sweep's gives its best member's test loss and how many diverged."""
        head = f"History({self.num_members} member{'s' * (self.num_members != 1)}, {self.epochs} epochs, {self.status}"
        if not self.epochs:
            return head + ")"
        if self.num_members == 1:
            last = ", ".join(f"{name.replace('_', ' ')} {value:.4g}" for name, value in self.final().items()
                             if value is not None)
            return f"{head}: {last})"
        test = self.metric("test_loss")[-1]
        best = f"best test loss {np.nanmin(test):.4g}" if np.isfinite(test).any() else "no finite test loss"
        return f"{head}, {int((~self.alive).sum())} diverged: {best})"

    def member_status(self) -> list:
        done = self.status in ("completed", "diverged")
        return ["diverged" if d is not None else ("completed" if done else self.status) for d in self.diverged_epoch]

    # ---- to and from JSON ------------------------------------------------------------------------------------
    def to_dict(self) -> dict:
        """A snapshot with its ``layout`` (``LAYOUT``): the lists are copies (recorded values never change), so the
        history recording on leaves it as it was."""
        return {"layout": LAYOUT, **{f.name: _copy(getattr(self, f.name)) for f in dataclasses.fields(self)}}

    @classmethod
    def from_dict(cls, d: dict) -> "History":
        """A history that owns its lists: recording on never changes ``d``. JSON's ``null`` in a metric becomes
        NaN again. A dict in another layout (an earlier regjax's: one list per epoch) or whose curves do not match
        its members and epochs is a ``ValueError``."""
        if d.get("layout") != LAYOUT:
            raise ValueError("this history was written by an earlier regjax, in another layout (one list per epoch, "
                             "not one curve per member); start the run over (--overwrite)")
        names = {f.name for f in dataclasses.fields(cls)}
        fixed = {k: ([[math.nan if v is None else v for v in curve] for curve in val]
                     if k in METRICS and val is not None else _copy(val))
                 for k, val in d.items() if k in names}
        history = cls(**fixed)
        epochs, members = history.epochs, history.num_members
        for name in METRICS:
            curves = getattr(history, name)
            if curves is not None and (len(curves) != members or any(len(c) != epochs for c in curves)):
                raise ValueError(f"history: {name} does not hold {members} curve(s) of {epochs} epoch(s)")
        return history


def _copy(value: Any) -> Any:
    return [_copy(v) for v in value] if isinstance(value, list) else value
