"""One named training inside a run -- a *variant* (``fit``) or a sweep -- and the path both share under the
runner: its checkpoint file, what ``--resume`` restores, its history registered in the run (so an interrupted
run's results.json holds every finished epoch), progress lines, and the checkpoint callback."""
from __future__ import annotations

import contextlib
import re
import signal
import threading
import time
from pathlib import Path
from typing import Any, Callable, Optional, Tuple

from regjax.checkpoint import CheckpointError, load_checkpoint
from regjax.engine import Diverged, History
from regjax.runner.resume import config_digest

__all__ = ["Variant", "slug"]


def slug(name: str) -> str:
    """A file-name-safe form of a variant's name."""
    return re.sub(r"[^A-Za-z0-9_.=-]+", "_", name).strip("_") or "run"


@contextlib.contextmanager
def _signals_deferred():
    """SIGINT, SIGTERM and SIGHUP held back (delivered when the block ends) -- in the main thread only."""
    held = {signal.SIGINT, signal.SIGTERM, signal.SIGHUP}
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    before = signal.pthread_sigmask(signal.SIG_BLOCK, held)
    try:
        yield
    finally:
        signal.pthread_sigmask(signal.SIG_SETMASK, before)


class Variant:
    """The variant ``name`` of ``run``, checkpointed at ``path``; ``meta`` is recorded in every checkpoint and
    must match on resume (a sweep's member configs: ``what`` names the mismatch)."""

    def __init__(self, run: Any, name: str, path: Path, meta: Optional[dict] = None, what: str = "another run"):
        self.run, self.name, self.path = run, name, path
        self.meta = {"experiment": run.experiment, "variant": name, "config_sha256": config_digest(run.config),
                     **(meta or {})}
        self.what = what

    def restore(self, target: Callable[[], Any], fresh: Any, epochs: int) -> Tuple[Optional[Any], int, Any]:
        """``(state, start_epoch, history)`` to train from: the checkpoint's when the run resumes and one
        exists (restored into the structure of ``target()``), else ``(None, 0, fresh)``. The history is
        registered in the run either way."""
        state, start, history = None, 0, fresh
        if self.run.resuming and self.path.exists():
            ckpt = load_checkpoint(self.path, target())
            for key, value in self.meta.items():
                if key == "config_sha256" and key not in ckpt.meta:
                    continue  # written before checkpoints recorded it (run.json's arguments were compared)
                if ckpt.meta.get(key) == value:
                    continue
                if key in ("experiment", "variant"):
                    raise CheckpointError(f"checkpoint {self.path} belongs to {key} {ckpt.meta.get(key)!r}, not "
                                          f"{value!r}; delete it to retrain that part, or start over with "
                                          f"--overwrite")
                raise CheckpointError(f"checkpoint {self.path} was made by {self.what}")
            state, start, history = ckpt.state, ckpt.epoch, History.from_dict(ckpt.history)
            self.run.checkpointed[self.name] = (start, ckpt.history)  # from_dict copied: ckpt.history stays
            if start > epochs:
                raise ValueError(f"--epochs {epochs}: the checkpoint of {self.name!r} already has {start} epochs")
            self.run.say(f"[{self.name}] resuming after epoch {start}/{epochs} ({self.path})")
        self.run.histories[self.name] = history
        return state, start, history

    def progress(self, epochs: int, start: int, every: Optional[int]) -> Optional[Callable]:
        """The ``on_epoch`` progress callback (bar and lines; ``None`` when quiet): a line every ``every``
        epochs and after the last -- by default at most ~50 lines (every epoch up to 50 epochs); the bar and
        results.json carry every epoch."""
        every = every or max(1, -(-epochs // 50))
        return self.run.progress.callback(self.name, epochs, initial=start, every=every)

    def saver(self, epochs: int, interval_s: float, then: Optional[Callable] = None) -> Callable:
        """The ``after_epoch`` callback: a checkpoint after an epoch once ``interval_s`` seconds have passed since
        the last one (0: every epoch) and always after the last epoch (process 0 only); then ``then``."""
        last = [time.perf_counter()]

        def after_epoch(epoch: int, state: Any, history: Any) -> None:
            writer = self.run.writer
            if writer is not None and (epoch + 1 == epochs or time.perf_counter() - last[0] >= interval_s):
                recorded = history.to_dict()   # a snapshot: recording later epochs leaves it as it is
                with _signals_deferred():  # handed to the writer and recorded as reported: both, or neither
                    writer.save(self.path, state, epoch=epoch + 1, history=recorded, meta=self.meta)
                    self.run.checkpointed[self.name] = (epoch + 1, recorded)   # what an interrupted run reports
                last[0] = time.perf_counter()
            if then is not None:
                then(epoch, state, history)

        return after_epoch

    def train(self, train: Callable, *args: Any, **kwargs: Any) -> Any:
        """``train(*args, on_start=run.start, **kwargs)``; a divergence is tagged with this variant's name."""
        try:
            return train(*args, on_start=self.run.start, **kwargs)
        except Diverged as err:
            err.variant = self.name
            raise
