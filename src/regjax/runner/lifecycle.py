"""A run's lifecycle, derived from ONE status: what results.json says, which exit code the process leaves with,
and how signals end it.

=============  =======================================================================================
status         meaning
=============  =======================================================================================
``None``       arguments and data are being checked: a refusal is a usage error (one line, exit 2)
``running``    training started: results.json describes this run (written at once, so an older file never
               looks current), checkpoints are written
``completed``  exit 0                   ``diverged``     exit 3 (the epoch and step are named)
``failed``     exit 1 (traceback)       ``interrupted``  exit 130 (SIGINT) / 143 (SIGTERM) / 129 (SIGHUP)
=============  =======================================================================================
"""
from __future__ import annotations

import datetime
import gc
import json
import os
import signal
import sys
import time
from pathlib import Path
from typing import Any, Callable, NoReturn, Optional

from regjax.checkpoint import CheckpointError, CheckpointWriter
from regjax.engine import Diverged
from regjax.runner.args import UsageError, command_line, on_command_line
from regjax.report import Progress, environment, write_json_atomic

__all__ = ["Terminated", "Lifecycle", "EXIT_CODES", "FINAL", "script", "exit_finished"]

EXIT_CODES = {"completed": 0, "failed": 1, "usage": 2, "diverged": 3, "interrupted (SIGINT)": 130,
              "interrupted (SIGTERM)": 143, "interrupted (SIGHUP)": 129}
INTERRUPT_CODES = {130: "SIGINT", 143: "SIGTERM", 129: "SIGHUP"}
FINAL = ("completed", "interrupted", "diverged", "failed")


class Terminated(BaseException):
    """Raised in the main thread by SIGTERM or SIGHUP (a closed terminal), like ``KeyboardInterrupt`` for
    SIGINT; ``signum`` says which."""

    def __init__(self, signum: int = signal.SIGTERM):
        super().__init__(signum)
        self.signum = int(signum)


def _now() -> str:
    return datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds")


class Lifecycle:
    """The status of one run and everything that follows from it (see the module docstring). ``Run`` adds
    arguments, devices, data and training on top."""

    def __init__(self, experiment: str, folder: Path, quiet: bool, config: dict,
                 refuse: Callable[[str], NoReturn]):
        self.experiment = experiment
        self.config = config  # the arguments, as results.json and run.json record them
        self.extra: dict = {}  # more of what results.json records (Run: devices and processes)
        self.refuse = refuse  # prints a usage error and exits 2
        self.folder = folder  # the run's folder (--out): its checkpoints, run.json, what --resume continues
        self.out = folder     # where this process writes results and plots: the folder, or on a process other
        #                       than 0 of a multi-process run a temporary one (only process 0 writes the run's)
        self.progress = Progress(quiet=quiet)
        self.histories: dict = {}
        self.checkpointed: dict = {}   # variant -> (epochs, history dict) of its last checkpoint handed over
        self.dataset: Optional[dict] = None
        self.datasets: list = []       # every dataset the run set, in order (run.json: what --resume compares)
        self.status: Optional[str] = None
        self.resuming = False
        self.primary = True
        self.writer: Optional[CheckpointWriter] = None  # the checkpoint writer, from start() on (process 0)
        self._started, self._started_at = time.perf_counter(), _now()
        self._began_wall = time.time()  # files written after this are this run's own, never "previous outputs"
        self._signals: dict = {}

    @property
    def ckpt_dir(self) -> Path:
        return self.folder / "checkpoints"

    @property
    def training(self) -> bool:
        """Training started: from here on a failure is recorded in results.json, not a usage error."""
        return self.status is not None

    def say(self, message: str) -> None:
        self.progress.say(message)

    def start(self) -> None:
        """Declare that training starts (the first ``fit``/``sweep`` does it once its arguments are checked;
        experiments that train otherwise call it): from here on, results.json describes this run."""
        if self.status is not None:
            return
        self.status = "running"
        if not self.primary:
            return
        if not self.resuming:  # only regjax's own files: anything else a user keeps there stays
            for old in [*self.ckpt_dir.glob("*.msgpack"), self.ckpt_dir / "run.json"]:
                old.unlink(missing_ok=True)
            for old in self._previous_outputs():
                try:  # a file this run already wrote before training (a table, a figure) stays
                    if (old.is_file() or old.is_symlink()) and old.lstat().st_mtime < self._began_wall:
                        old.unlink()
                except OSError:
                    pass  # a plot we cannot remove is no reason to fail a run
        self.ckpt_dir.mkdir(parents=True, exist_ok=True)
        self.writer = CheckpointWriter()
        if not self.resuming:
            self.write_run_file()
        self._write("running")

    def write_run_file(self) -> None:
        """``checkpoints/run.json``: the experiment, its arguments and every dataset set so far."""
        write_json_atomic(self.ckpt_dir / "run.json", {"experiment": self.experiment, "config": self.config,
                                                       "dataset": self.dataset, "datasets": self.datasets})

    def _previous_outputs(self) -> list:
        """The plots and other files (``plots``, ``outputs``) the run this one replaces listed in its
        results.json: a new run removes them, so the folder never mixes two runs' figures (say, an earlier
        ``--what``'s). A listed path is taken relative to that run's ``--out`` (it may have been started from
        another folder) and only files inside this folder are touched."""
        try:
            previous = json.loads((self.folder / "results.json").read_text())
            old_out = Path(str(previous["config"]["out"]))
            listed = [*(previous.get("plots") or []), *(previous.get("outputs") or [])]
        except (OSError, ValueError, TypeError, KeyError):
            return []
        folder, paths = self.folder.resolve(), []
        for item in listed:
            if not isinstance(item, str):
                continue
            try:
                path = self.folder / Path(item).relative_to(old_out)
            except ValueError:
                continue
            if folder in path.resolve().parents:
                paths.append(path)
        return paths

    def finish(self, payload: dict) -> Path:
        """The run completed: write ``results.json`` (status ``completed``) with ``payload``."""
        self.start()  # a run with nothing to train still describes itself
        path = self._write("completed", payload)
        self.say(f"results: {path}")
        return path

    def _write(self, status: str, payload: Optional[dict] = None, exit_code: Optional[int] = None) -> Path:
        """results.json; a final status first waits until every checkpoint handed over is on disk."""
        checkpoint_error = None
        if status != "running" and self.writer is not None:
            try:
                self.writer.flush()
            except CheckpointError as err:  # record it; the final status is written regardless
                checkpoint_error = err
                payload = {**(payload or {}), "checkpoint_error": str(err)}
        if not self.primary:
            self.status = status
            return self.out / "results.json"
        result = {
            "experiment": self.experiment, "status": status,
            **({} if exit_code is None else {"exit_code": exit_code}),
            "config": self.config, "environment": environment(), "dataset": self.dataset, **self.extra,
            "resumed": self.resuming, **self._progress_record(status), **(payload or {}),
            "started_at": self._started_at, "updated_at": _now(), "wall_time_s": time.perf_counter() - self._started,
        }
        path = write_json_atomic(self.out / "results.json", result)
        self.status = status  # only once the file says so: a signal during the write leaves the old status, so
        #                       the end of the run still writes its true one (not "running" forever)
        if checkpoint_error is not None and status == "completed":
            raise checkpoint_error  # the run finished but its last checkpoint is not on disk: say so
        return path

    def _progress_record(self, status: str) -> dict:
        """``epochs_completed`` and ``history`` per variant. An interrupted run reports what its checkpoints
        hold -- the epoch a signal lands in may be recorded but not yet checkpointed, and results.json must
        never promise more than ``--resume`` continues from."""
        if status == "interrupted":
            saved = {k: self.checkpointed.get(k, (0, None)) for k in self.histories}
            return {"epochs_completed": {k: e for k, (e, _) in saved.items()},
                    "history": {k: h for k, (_, h) in saved.items() if h is not None}}
        return {"epochs_completed": {k: h.epochs for k, h in self.histories.items()},
                "history": {k: h.to_dict() for k, h in self.histories.items()}}

    # ---- the end of a run ------------------------------------------------------------------------------
    def end(self, exc: Optional[BaseException]) -> bool:
        """Record how the run ended. On the command line, leave with its exit code (``SystemExit``); from Python
        (``main([...])``), let the exception go on -- ``KeyboardInterrupt``, ``Diverged`` named with the experiment
        and variant, ``UsageError`` for a refusal. ``False`` lets an unexpected error propagate (exit 1,
        traceback) after recording it."""
        if exc is None:
            if self.status != "completed":
                self.finish({})
            return False
        if isinstance(exc, (SystemExit, UsageError)):  # a refusal already made (one line and exit, or UsageError)
            if self.training and self.status not in FINAL:
                code = exc.code if isinstance(exc, SystemExit) else 2
                self._write("failed", {"error": f"exit {code}" if isinstance(exc, SystemExit) else str(exc)},
                            exit_code=code)
            return False
        if isinstance(exc, (KeyboardInterrupt, Terminated)):
            code = 130 if isinstance(exc, KeyboardInterrupt) else 128 + exc.signum
            # a run already reported completed stays completed; one that trained says where it stopped
            path = self._write("interrupted", exit_code=code) if self.training and self.status != "completed" else None
            done = ", ".join(f"{k}: {e} epochs" for k, e in self._progress_record("interrupted")["epochs_completed"]
                             .items()) or "nothing trained"
            print(f"\ninterrupted ({INTERRUPT_CODES.get(code, code)}); completed: {done}."
                  + (f"\nresults: {path}\ncontinue with the same command and --resume" if path else ""),
                  file=sys.stderr, flush=True)
            if not on_command_line():
                return False
            raise SystemExit(code) from None
        if isinstance(exc, FloatingPointError):  # Diverged, or a NaN --debug-nans found
            if isinstance(exc, Diverged):
                where = {"variant": getattr(exc, "variant", None), "epoch": exc.epoch + 1, "step": exc.step}
                message = f"error: [{where['variant']}] {exc}"
            else:
                where = {"debug_nans": str(exc).splitlines()[0]}
                message = f"error: training produced a NaN (jax_debug_nans): {exc}"
            path = self._write("diverged", {"diverged": where}, exit_code=3)
            if not on_command_line():
                exc.args = (f"{self.experiment}: {message.removeprefix('error: ')} (results: {path})",)
                return False
            print(f"{message}\nresults: {path} (status: diverged)", file=sys.stderr, flush=True)
            raise SystemExit(3) from None
        if not self.training and isinstance(exc, (ValueError, CheckpointError)):
            self.error(str(exc))
        if self.training:
            self._write("failed", {"error": f"{type(exc).__name__}: {exc}"}, exit_code=1)
        return False

    def error(self, message: str) -> NoReturn:
        """A bad argument, before training (afterwards it is a failure): one line and exit 2 on the command
        line, ``UsageError`` from Python."""
        try:
            self.refuse(message)
        except UsageError as err:
            raise err from None  # the refusal, not the check that found it

    # ---- signals -----------------------------------------------------------------------------------------
    def install_signals(self) -> None:
        """SIGINT raises ``KeyboardInterrupt``, SIGTERM and SIGHUP ``Terminated`` (only in the main thread)."""
        def terminate(signum, frame):
            raise Terminated(signum)

        try:
            self._signals = {signal.SIGINT: signal.signal(signal.SIGINT, signal.default_int_handler),
                             signal.SIGTERM: signal.signal(signal.SIGTERM, terminate),
                             signal.SIGHUP: signal.signal(signal.SIGHUP, terminate)}
        except ValueError:  # not the main thread: leave signals alone
            self._signals = {}

    def ignore_signals(self) -> None:
        """From here to the end, a second Ctrl-C or a SIGTERM cannot cut the final results.json write short."""
        for sig in self._signals:
            signal.signal(sig, signal.SIG_IGN)

    def restore_signals(self) -> None:
        for sig, handler in self._signals.items():
            signal.signal(sig, handler)
        self._signals = {}


def script(main: Any) -> None:
    """``if __name__ == '__main__': runner.script(main)``: the command line's own exit path (a notebook or
    ``main([...])`` never reaches it). A Ctrl-C outside the run (while importing, or after the results were
    written) is one line and exit 130, not a traceback. An interrupted run leaves with ``os._exit`` once its
    results are written: letting the interpreter shut down while XLA may still be compiling in another thread was
    seen to segfault (exit 139 instead of 130/143). A finished run ends through ``exit_finished``."""
    try:
        with command_line():
            main()
    except (KeyboardInterrupt, Terminated) as err:  # outside a run (start-up, or after its results were written)
        code = 130 if isinstance(err, KeyboardInterrupt) else 128 + err.signum
        print(f"\ninterrupted ({INTERRUPT_CODES.get(code, code)})", file=sys.stderr, flush=True)
        _exit_now(code)
    except SystemExit as exit_:
        if exit_.code in INTERRUPT_CODES:
            _exit_now(exit_.code)
        raise
    exit_finished()


def exit_finished() -> None:
    """End a finished command-line run (exit 0) without the interpreter's last garbage collections, which visit
    every object the run made one at a time: ``gc.freeze()`` moves them all to the permanent generation, which
    those collections skip. Measured on this project's 2-core CPU, a one-epoch main-job process ends 0.36 s
    sooner (3.20 s against 3.56 s: medians of 9 interleaved runs each, ``python benchmarks/exit_time.py``; 0.39 s
    in a second run). Everything else of a normal
    exit still happens: the ``atexit`` handlers (JAX's clean-up and distributed shutdown, logging, a user's own),
    the flushed streams, the modules' teardown. Inside pytest (a test running a CLI in-process) and under
    ``python -i`` this returns instead: the process goes on, and frozen objects would never be collected."""
    if "_pytest" in sys.modules or sys.flags.inspect:
        return
    gc.freeze()
    sys.exit(0)


def _exit_now(code: int) -> NoReturn:
    """Flush the streams and leave at once: no atexit handlers, no interpreter teardown."""
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(code)
