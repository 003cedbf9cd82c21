"""The one experiment runner behind every ``experiments/*.py``: arguments, validation before training, data with
the loud offline fallback, checkpoints and ``--resume``, signals, divergence, and ``results.json``.

An experiment keeps only what is its own (model, variants, plot)::

    def main(argv=None):
        p = cli.parser(__doc__, epochs=10, lr=0.5, batch_size=256, out="runs/mine", image_dataset=True)
        with cli.Run("mine", p, argv) as run:
            data = run.images(run.load_images(), flatten=True)
            state, history = run.fit("variant", model, None, data, epochs=run.epochs(), hparams={"lr": run.args.lr})
            run.finish({"final": history.final(), "plots": [...]})

Exit codes: 0 completed; 1 an unexpected error (traceback; ``status: "failed"``); 2 a bad argument, caught
before training (one line); 3 the training diverged (``status: "diverged"``); 130 / 143 interrupted by SIGINT /
SIGTERM (``status: "interrupted"``, every completed epoch kept, checkpoint saved: rerun with ``--resume``).
"""
from __future__ import annotations

import argparse
import datetime as _dt
import math
import os
import re
import signal
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

from regjax.checkpoint import CheckpointError, CheckpointWriter, load_checkpoint, read_checkpoint
from regjax.data import DataUnavailableError, flatten_images, images_to_float, load_digits, load_fashion_mnist
from regjax.data.fashion_mnist import cache_dir
from regjax.report import Progress, environment, write_json_atomic

__all__ = ["parser", "Run", "Terminated", "sgd_route", "load_images", "prepare_images", "IMAGE_DATASETS",
           "EXIT_CODES"]

IMAGE_DATASETS = ("fashion_mnist", "digits")
EXIT_CODES = {"completed": 0, "failed": 1, "usage": 2, "diverged": 3, "interrupted (SIGINT)": 130,
              "interrupted (SIGTERM)": 143}
# Arguments that may differ between a run and its --resume (they change where and how it reports, not what
# it computes; --epochs may grow to continue a finished run).
RESUME_FREE = {"out", "resume", "overwrite", "quiet", "no_compile_cache", "debug_nans", "epochs", "devices",
               "coordinator", "num_processes", "process_id", "distributed"}


class Terminated(BaseException):
    """Raised in the main thread by SIGTERM, like ``KeyboardInterrupt`` for SIGINT."""


class _Parser(argparse.ArgumentParser):
    def error(self, message):
        """One line, exit 2 -- no usage block to scroll past (``--help`` has it)."""
        self.exit(2, f"{self.prog}: error: {message}\n")


def parser(description: str, *, epochs: int, lr: float, batch_size: int, out: str, impls=None,
           image_dataset: bool = False, match_steps: bool = True) -> argparse.ArgumentParser:
    """The common flags; defaults are the D2L settings of each experiment."""
    p = _Parser(description=description, formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    if image_dataset and match_steps:
        p.add_argument("--epochs", type=positive_int, default=None,
                       help=f"default: {epochs} on Fashion-MNIST; on another dataset, as many epochs as make the "
                            f"same number of SGD steps as {epochs} Fashion-MNIST epochs")
        p.set_defaults(reference_epochs=epochs)
    else:
        p.add_argument("--epochs", type=positive_int, default=epochs)
    p.add_argument("--lr", type=positive_float, default=lr, help="learning rate")
    p.add_argument("--batch-size", type=positive_int, default=batch_size)
    p.add_argument("--seed", type=seed, default=0, help="the one seed every PRNG key derives from (0 <= seed < 2**32)")
    p.add_argument("--out", type=Path, default=Path(out), help="folder for results.json, plots and checkpoints")
    if impls:
        p.add_argument("--impl", choices=impls, default=impls[0])
    if image_dataset:
        p.add_argument("--dataset", choices=IMAGE_DATASETS, default=None,
                       help="default: fashion_mnist, falling back loudly to the bundled digits when it cannot be "
                            "obtained; naming it explicitly makes that a hard error")
        p.add_argument("--data-dir", type=Path, default=None,
                       help="folder with the Fashion-MNIST IDX files (default: $REGJAX_DATA_DIR)")
        p.add_argument("--train-size", type=positive_int, default=None,
                       help="use only the first N training examples (quick runs)")
    p.add_argument("--resume", action="store_true",
                   help="continue the run checkpointed in --out (same arguments; --epochs may grow); starts from "
                        "scratch if --out holds no checkpoint")
    p.add_argument("--overwrite", action="store_true",
                   help="replace an unfinished (interrupted, diverged, failed) run in --out instead of refusing")
    p.add_argument("--debug-nans", action="store_true",
                   help="turn on jax_debug_nans: stop at the first operation that produces a NaN (slow)")
    p.add_argument("--quiet", action="store_true", help="print nothing but warnings and errors (results.json has it all)")
    p.add_argument("--no-compile-cache", action="store_true", help="disable JAX's persistent compilation cache")
    scale = p.add_argument_group("scaling out (see README 'Scaling out')")
    scale.add_argument("--devices", type=device_count, default=None,
                       help="data-parallel over the first N devices, or 'all' (default: 1 device; all devices of "
                            "all processes in a multi-process run); the batch size must be a multiple of N")
    scale.add_argument("--distributed", action="store_true",
                       help="multi-process run on a cluster JAX detects (SLURM, TPU pod, Open MPI, ...)")
    scale.add_argument("--coordinator", metavar="HOST:PORT", default=None,
                       help="multi-process run: address of process 0 (with --num-processes and --process-id)")
    scale.add_argument("--num-processes", type=positive_int, default=None)
    scale.add_argument("--process-id", type=_nonnegative_int, default=None)
    return p


def device_count(text):
    return "all" if text == "all" else _number(text, int, lambda v: v >= 1, "a positive integer or 'all'")


def _nonnegative_int(text):
    return _number(text, int, lambda v: v >= 0, "an integer >= 0")


def _number(text, kind, ok, what):
    try:
        value = kind(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"must be {what}, got {text!r}") from None
    if not ok(value):
        raise argparse.ArgumentTypeError(f"must be {what}, got {text}")
    return value


def positive_int(text):
    return _number(text, int, lambda v: v >= 1, "a positive integer")


def seed(text):
    # jax.random.key takes 32 bits of the seed: larger or negative ones would silently alias smaller ones
    return _number(text, int, lambda v: 0 <= v < 2 ** 32, "an integer in [0, 2**32)")


def positive_float(text):
    # checked as float32 too, the precision training uses: 1e308 would become inf, 1e-50 zero
    return _number(text, float, lambda v: v > 0 and math.isfinite(v) and 0 < _f32(v) < np.inf,
                   "a positive finite number (in float32)")


def _f32(value: float):
    with np.errstate(over="ignore", under="ignore"):
        return np.float32(value)


def nonnegative_float(text):
    return _number(text, float, lambda v: v >= 0 and math.isfinite(v) and _f32(v) < np.inf,
                   "a finite number >= 0 (in float32)")


def rate(text):
    return _number(text, float, lambda v: 0 <= v <= 1, "a probability in [0, 1]")


def _now() -> str:
    return _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds")


def _slug(name: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.=-]+", "_", name).strip("_") or "run"


class Run:
    """One experiment run from the command line (a context manager; see the module docstring)."""

    def __init__(self, experiment: str, parser: argparse.ArgumentParser, argv=None):
        self.experiment, self.parser = experiment, parser
        self.args = parser.parse_args(argv)
        self.out = Path(self.args.out)
        self.ckpt_dir = self.out / "checkpoints"
        self.progress = Progress(quiet=self.args.quiet)
        self.histories: dict = {}
        self.dataset: dict | None = None
        self.ds = None
        self.training = False  # set once the first fit has checked its arguments
        self.resuming = False
        self._started, self._started_at = time.perf_counter(), _now()
        self._signals: dict = {}
        self._saved_run: dict | None = None
        self._slugs: dict = {}
        self.status: str | None = None
        self._writer: CheckpointWriter | None = None
        self.mesh = None      # a regjax.parallel data mesh when training on several devices
        self.primary = True   # process 0 of a multi-process run: the only one that writes

    # ---- before training -----------------------------------------------------------------------------
    def error(self, message: str):
        """A bad argument: one line, exit 2 (only before training; afterwards it is a failure)."""
        self.parser.error(message)

    def config(self) -> dict:
        return {k: (str(v) if isinstance(v, Path) else list(v) if isinstance(v, tuple) else v)
                for k, v in vars(self.args).items()}

    def __enter__(self):
        self._init_devices()
        self._check_out()
        self._plan_resume()
        if not self.args.no_compile_cache:
            import jax

            path = cache_dir() / "jax_compilation_cache"
            try:
                path.mkdir(parents=True, exist_ok=True)
                jax.config.update("jax_compilation_cache_dir", str(path))
            except OSError as err:
                print(f"WARNING: no compilation cache ({path}: {err.strerror or err}); set $REGJAX_CACHE_DIR to a "
                      f"writable folder to keep compiled programs between runs", file=sys.stderr, flush=True)
            jax.config.update("jax_persistent_cache_min_compile_time_secs", 0)  # small ones add up: cache all
        if self.args.debug_nans:  # for this run only (restored on exit: main() may be called in-process)
            import jax

            self._debug_nans_before = jax.config.jax_debug_nans
            jax.config.update("jax_debug_nans", True)
        self._install_signals()
        return self

    def _init_devices(self):
        """Multi-process initialisation (before anything touches JAX's devices), then the data mesh."""
        a = self.args
        explicit = [a.coordinator, a.num_processes, a.process_id]
        if any(v is not None for v in explicit) and not all(v is not None for v in explicit):
            self.error("--coordinator, --num-processes and --process-id go together")
        if a.distributed and a.coordinator:
            self.error("--distributed detects the cluster itself: give it or --coordinator, not both")
        if a.distributed or a.coordinator:
            from regjax.parallel import initialize_distributed

            if a.coordinator and a.process_id >= a.num_processes:
                self.error(f"--process-id {a.process_id} must be < --num-processes {a.num_processes}")
            if a.coordinator:
                print(f"process {a.process_id}: waiting for {a.num_processes} processes at {a.coordinator} ...",
                      file=sys.stderr, flush=True)
            try:
                initialize_distributed(a.coordinator, a.num_processes, a.process_id)
            except Exception as err:  # no cluster detected, bad address, ...
                self.error(f"multi-process initialisation failed: {type(err).__name__}: {err}")
        import jax

        self.primary = jax.process_index() == 0
        if not self.primary:  # the others train in lockstep but write and print nothing
            self.progress = Progress(quiet=True)
            self.out = Path(tempfile.mkdtemp(prefix=f"regjax-process{jax.process_index()}-"))
        multi = jax.process_count() > 1
        devices = a.devices if a.devices is not None else ("all" if multi else 1)
        if multi and devices != "all":
            self.error("a multi-process run trains on all devices of all processes: leave --devices out or say 'all'")
        n_available = jax.device_count()
        if devices != "all" and devices > n_available:
            hint = (" (on CPU, XLA_FLAGS=--xla_force_host_platform_device_count=N set before starting simulates N)"
                    if jax.default_backend() == "cpu" else "")
            self.error(f"--devices {devices}: only {n_available} {jax.default_backend()} device(s) available{hint}")
        n = n_available if devices == "all" else devices
        if n > 1 or multi:
            from regjax.parallel import data_mesh

            # (fit refuses a batch size the devices do not divide; a sweep splits its members instead)
            self.mesh = data_mesh(n)
        self.devices = n

    def _check_out(self):
        out = Path(self.args.out)
        if out.exists() and not out.is_dir():
            self.error(f"--out {out} is a file, not a folder")
        try:
            out.mkdir(parents=True, exist_ok=True)
            with tempfile.TemporaryFile(dir=out):
                pass
        except OSError as err:
            self.error(f"--out {out} is not a writable folder ({err.strerror or err})")

    def _previous_status(self):
        results = Path(self.args.out) / "results.json"
        if results.exists():
            import json

            try:
                return json.loads(results.read_text()).get("status", "unknown")
            except (ValueError, OSError, AttributeError):
                return "unreadable"
        return "unknown" if (self.ckpt_dir / "run.json").exists() else None

    def _plan_resume(self):
        previous = self._previous_status()
        run_file = self.ckpt_dir / "run.json"
        if self.args.resume and self.args.overwrite:
            self.error("--resume and --overwrite exclude each other")
        if self.args.resume:
            if not run_file.exists():
                self.progress.say(f"--resume: no checkpoint in {self.out}; starting from scratch")
                return
            import json

            try:
                saved = json.loads(run_file.read_text())
                saved["experiment"], saved["config"]
            except (ValueError, TypeError, KeyError) as err:
                self.error(f"--resume: {run_file} is corrupt ({type(err).__name__}); start over with --overwrite")
            self._saved_run = saved
            if saved.get("experiment") != self.experiment:
                self.error(f"--resume: {self.out} holds a run of {saved.get('experiment')!r}, not {self.experiment!r}")
            mine, theirs = self.config(), saved.get("config", {})
            diff = [k for k in sorted(set(mine) | set(theirs)) if k not in RESUME_FREE and mine.get(k) != theirs.get(k)]
            if diff:
                shown = "; ".join(f"--{k.replace('_', '-')}: checkpoint {theirs.get(k)!r}, now {mine.get(k)!r}"
                                  for k in diff)
                self.error(f"--resume: the checkpoint in {self.out} was made with other arguments ({shown}); "
                           f"rerun with the same arguments, or use --overwrite / another --out")
            for path in sorted(self.ckpt_dir.glob("*.msgpack")):
                try:
                    read_checkpoint(path)
                except CheckpointError as err:
                    self.error(f"{err}; delete it to retrain that part, or start over with --overwrite")
            self.resuming = True
        elif previous not in (None, "completed") and not self.args.overwrite:
            how = ("replace it with --overwrite (resuming would diverge again)" if previous == "diverged" else
                   "continue it with --resume, replace it with --overwrite")
            self.error(f"--out {self.out} holds an unfinished run (status: {previous}); {how}, or choose another --out")

    def load_images(self):
        """Fashion-MNIST, or -- only when ``--dataset`` was not given -- the digits with a loud warning."""
        self.ds = load_images(self.args, self.progress)
        if self.ds.meta.get("sha256_verified") is False:
            print(f"WARNING: the IDX files in {self.ds.source[4:]} are not the registered Fashion-MNIST (their "
                  f"SHA-256s differ, or they are not gzipped); results name them '{self.ds.name}'",
                  file=sys.stderr, flush=True)
        return self.ds

    def images(self, ds, *, flatten: bool, image_size=None, train_size=None):
        """Float training arrays from ``ds`` (``train_size`` or ``--train-size`` applied), checked against
        ``--batch-size``."""
        n_available = len(ds.x_train)
        train_size = train_size or getattr(self.args, "train_size", None)
        if train_size is not None and train_size > n_available:
            self.error(f"--train-size {train_size} exceeds the {n_available} training examples of {ds.name}")
        data = prepare_images(ds, flatten=flatten, train_size=train_size, image_size=image_size)
        self.set_dataset({**ds.summary(), "n_train": len(data[0]), "n_train_available": n_available,
                          **({"resized_to": list(image_size)} if image_size else {})}, n_train=len(data[0]))
        return data

    def set_dataset(self, summary: dict, *, n_train: int):
        """Record the data actually used; refuse a ``--batch-size`` larger than the training set, and a resume
        on other data than the checkpointed run's."""
        if self.args.batch_size > n_train:
            self.error(f"--batch-size {self.args.batch_size} exceeds the {n_train} training examples")
        saved = (getattr(self, "_saved_run", None) or {}).get("dataset")
        if self.resuming and saved:
            keys = ("name", "n_train", "n_test", "x_shape", "sha256_verified")
            diff = [k for k in keys if saved.get(k) != summary.get(k)]
            if diff:
                self.error("--resume: the checkpointed run trained on other data ("
                           + "; ".join(f"{k}: {saved.get(k)!r}, now {summary.get(k)!r}" for k in diff)
                           + "); provide the same data, or start over with --overwrite")
        self.dataset = summary

    def epochs(self) -> int:
        epochs = resolve_epochs(self.args, self.ds, self.dataset["n_train"])
        if self.args.epochs is None and epochs != getattr(self.args, "reference_epochs", epochs):
            self.say(f"{epochs} epochs on {self.ds.name} = the SGD steps of D2L's {self.args.reference_epochs} "
                     f"Fashion-MNIST epochs at batch {self.args.batch_size}")
        return epochs

    # ---- training ------------------------------------------------------------------------------------
    def start(self):
        """Declare that training starts (``fit`` does it by itself; experiments that train otherwise call it)."""
        self._begin()

    def _begin(self):
        """First training call, arguments checked: from here on, results.json describes this run."""
        if self.training:
            return
        self.training = True
        if not self.primary:
            return
        if not self.resuming:  # only regjax's own files: anything else a user keeps there stays
            for old in [*self.ckpt_dir.glob("*.msgpack"), self.ckpt_dir / "run.json"]:
                old.unlink(missing_ok=True)
        self.ckpt_dir.mkdir(parents=True, exist_ok=True)
        self._writer = CheckpointWriter()
        if not self.resuming:
            write_json_atomic(self.ckpt_dir / "run.json", {"experiment": self.experiment, "config": self.config(),
                                                           "dataset": self.dataset})
        self._write("running")

    def fit(self, name: str, model, optimizer, data, *, epochs: int, key=None, progress_every: int = 1, **kwargs):
        """``regjax.train.fit`` with this run's seed, progress, per-epoch checkpoint and resume."""
        import jax

        from regjax.train import Diverged, History, fit, init_state

        key = jax.random.key(self.args.seed) if key is None else key
        path = self.checkpoint_path(name)
        state, start, history = None, 0, History()
        if self.resuming and path.exists():
            ckpt = load_checkpoint(path, init_state(model, optimizer, jax.random.split(key)[0]))
            state, start, history = ckpt.state, ckpt.epoch, History.from_dict(ckpt.history)
            if start > epochs:
                raise ValueError(f"--epochs {epochs}: the checkpoint of {name!r} already has {start} epochs")
            self.progress.say(f"[{name}] resuming after epoch {start}/{epochs} ({path})")
        self.histories[name] = history
        on_epoch = self.progress.callback(name, epochs, initial=start)
        if on_epoch is not None and progress_every > 1:
            on_epoch = _every(on_epoch, progress_every, epochs)

        def after_epoch(epoch, state, history):
            if self._writer is not None:  # process 0 only
                self._writer.save(path, state, epoch=epoch + 1, history=history.to_dict(),
                                  meta={"experiment": self.experiment, "variant": name})

        try:
            return fit(model, optimizer, data, epochs=epochs, batch_size=self.args.batch_size, key=key,
                       on_start=self._begin, on_epoch=on_epoch, after_epoch=after_epoch, state=state,
                       start_epoch=start, history=history, mesh=self.mesh, **kwargs)
        except Diverged as err:
            err.variant = name
            raise

    def checkpoint_path(self, name: str) -> Path:
        """``checkpoints/<slug>.msgpack`` for a variant; two names with one slug would share a file: refused."""
        slug = _slug(name)
        owner = self._slugs.setdefault(slug, name)
        if owner != name:
            raise ValueError(f"variant names {owner!r} and {name!r} map to the same checkpoint file {slug}.msgpack")
        return self.ckpt_dir / f"{slug}.msgpack"

    def say(self, message: str):
        self.progress.say(message)

    # ---- after training ------------------------------------------------------------------------------
    def finish(self, payload: dict):
        """The run completed: write ``results.json`` (status ``completed``) with ``payload``."""
        self._begin()  # a run with nothing to train still describes itself
        path = self._write("completed", payload)
        self.say(f"results: {path}")
        return path

    def _write(self, status: str, payload: dict | None = None, exit_code: int | None = None):
        """results.json; a final status first waits until every checkpoint handed over is on disk."""
        checkpoint_error = None
        if status != "running" and self._writer is not None:
            try:
                self._writer.flush()
            except CheckpointError as err:  # record it; the final status is written regardless
                checkpoint_error = err
                payload = {**(payload or {}), "checkpoint_error": str(err)}
        self.status = status
        if not self.primary:
            return self.out / "results.json"
        histories = {k: h.to_dict() for k, h in self.histories.items()}
        result = {
            "experiment": self.experiment, "status": status,
            **({} if exit_code is None else {"exit_code": exit_code}),
            "config": self.config(), "environment": environment(), "dataset": self.dataset,
            "devices": getattr(self, "devices", 1), "processes": _process_count(),
            "resumed": self.resuming, "epochs_completed": {k: h.epochs for k, h in self.histories.items()},
            "history": histories, **(payload or {}),
            "started_at": self._started_at, "updated_at": _now(),
            "wall_time_s": time.perf_counter() - self._started,
        }
        path = write_json_atomic(self.out / "results.json", result)
        if checkpoint_error is not None and status == "completed":
            raise checkpoint_error  # the run finished but its last checkpoint is not on disk: say so
        return path

    def __exit__(self, exc_type, exc, tb):
        # From here to the end, a second Ctrl-C or a SIGTERM cannot cut the final results.json write short.
        self._ignore_signals()
        try:
            return self._exit(exc_type, exc)
        finally:
            self._restore_signals()

    def _exit(self, exc_type, exc):
        if hasattr(self, "_debug_nans_before"):
            import jax

            jax.config.update("jax_debug_nans", self._debug_nans_before)
        if exc_type is None:
            if self.status != "completed":
                self.finish({})
            return False
        if isinstance(exc, SystemExit):
            if self.training and self.status not in ("completed", "interrupted", "diverged"):
                self._write("failed", {"error": f"exit {exc.code}"}, exit_code=exc.code)
            return False
        from regjax.train import Diverged

        if isinstance(exc, (KeyboardInterrupt, Terminated)):
            code = 130 if isinstance(exc, KeyboardInterrupt) else 143
            # a run already reported completed stays completed; one that trained says where it stopped
            path = (self._write("interrupted", exit_code=code) if self.training and self.status != "completed"
                    else None)
            done = ", ".join(f"{k}: {h.epochs} epochs" for k, h in self.histories.items()) or "nothing trained"
            print(f"\ninterrupted ({'SIGINT' if code == 130 else 'SIGTERM'}); completed: {done}."
                  + (f"\nresults: {path}\ncontinue with the same command and --resume" if path else ""),
                  file=sys.stderr, flush=True)
            raise SystemExit(code) from None
        if isinstance(exc, FloatingPointError) and not isinstance(exc, Diverged):  # --debug-nans found one
            path = self._write("diverged", {"diverged": {"debug_nans": str(exc).splitlines()[0]}}, exit_code=3)
            print(f"error: training produced a NaN (jax_debug_nans): {exc}\nresults: {path} (status: diverged)",
                  file=sys.stderr, flush=True)
            raise SystemExit(3) from None
        if isinstance(exc, Diverged):
            where = {"variant": getattr(exc, "variant", None), "epoch": exc.epoch + 1, "step": exc.step}
            path = self._write("diverged", {"diverged": where}, exit_code=3)
            print(f"error: [{where['variant']}] {exc}\nresults: {path} (status: diverged)", file=sys.stderr,
                  flush=True)
            raise SystemExit(3) from None
        if not self.training and isinstance(exc, (ValueError, CheckpointError)):
            self.error(str(exc))
        if self.training:
            self._write("failed", {"error": f"{type(exc).__name__}: {exc}"}, exit_code=1)
        return False

    # ---- signals -------------------------------------------------------------------------------------
    def _install_signals(self):
        def terminate(signum, frame):
            raise Terminated()

        try:
            self._signals = {signal.SIGINT: signal.signal(signal.SIGINT, signal.default_int_handler),
                             signal.SIGTERM: signal.signal(signal.SIGTERM, terminate)}
        except ValueError:  # not the main thread: leave signals alone
            self._signals = {}

    def _ignore_signals(self):
        for sig in self._signals:
            signal.signal(sig, signal.SIG_IGN)

    def _restore_signals(self):
        for sig, handler in self._signals.items():
            signal.signal(sig, handler)
        self._signals = {}


def _process_count() -> int:
    import jax

    return jax.process_count()


def _every(callback, n, epochs):
    """Forward every n-th epoch (and the last) to the progress callback: 400 lines would drown the result."""

    def on_epoch(epoch, row):
        if (epoch + 1) % n == 0 or epoch + 1 == epochs:
            callback(epoch, row)

    return on_epoch


def load_images(args, progress: Progress):
    """Fashion-MNIST, or -- only when the user did not pass ``--dataset`` -- the digits with a loud warning."""
    if args.dataset == "digits":
        if args.data_dir is not None:
            _fail(2, "--data-dir applies to Fashion-MNIST; it cannot be combined with --dataset digits")
        return load_digits()
    try:
        return load_fashion_mnist(args.data_dir)
    except (DataUnavailableError, FileNotFoundError) as err:
        if args.dataset == "fashion_mnist" or args.data_dir is not None:  # asked for explicitly: no fallback
            _fail(2, f"error: {err}")
        banner = "!" * 78
        print(f"{banner}\nWARNING: Fashion-MNIST could not be obtained; FALLING BACK to the bundled scikit-learn "
              f"digits (8x8).\nResults are NOT comparable with D2L's Fashion-MNIST figures; results.json records "
              f"the dataset.\n{err}\n{banner}", file=sys.stderr, flush=True)
        return load_digits()


def peek_choice(argv, flag: str, choices, default):
    """The value of ``flag`` in ``argv`` (``sys.argv[1:]`` if None) before the full parser exists -- for CLIs
    whose other defaults depend on it (e.g. ``sweep.py --what``); a bad value is left for the full parser."""
    p = argparse.ArgumentParser(add_help=False)
    p.add_argument(flag, choices=choices, default=default)
    try:
        return vars(p.parse_known_args(sys.argv[1:] if argv is None else argv)[0])[flag.lstrip("-").replace("-", "_")]
    except SystemExit:
        return default


def _fail(code: int, message: str):
    print(message, file=sys.stderr, flush=True)
    raise SystemExit(code)


def script(main):
    """``if __name__ == '__main__': cli.script(main)``. An interrupted run leaves with ``os._exit`` once its
    results are written: letting the interpreter shut down while XLA may still be compiling in another thread
    was seen to segfault (exit 139 instead of 130/143)."""
    try:
        main()
    except SystemExit as exit_:
        if exit_.code in (130, 143):
            sys.stdout.flush()
            sys.stderr.flush()
            os._exit(exit_.code)
        raise


def resolve_epochs(args, ds, n_train: int) -> int:
    """``--epochs`` if given; else the D2L default on Fashion-MNIST, or the epoch count that gives the same
    number of SGD steps on a smaller dataset (digits: 6 steps an epoch at batch 256 instead of 235)."""
    if args.epochs is not None or not hasattr(args, "reference_epochs"):
        return args.epochs
    if ds.name == "fashion_mnist":
        return args.reference_epochs
    steps = args.reference_epochs * -(-60000 // args.batch_size)
    return -(-steps // -(-n_train // args.batch_size))


def prepare_images(ds, *, flatten: bool, train_size=None, image_size=None):
    """Float arrays for training: flattened (MLPs) or NHWC (CNNs, optionally resized to ``image_size``)."""
    import jax
    import jax.numpy as jnp

    x_train, y_train = ds.x_train, ds.y_train
    if train_size is not None:
        x_train, y_train = x_train[:train_size], y_train[:train_size]
    out = []
    for x in (x_train, ds.x_test):
        x = images_to_float(x)
        if flatten:
            x = flatten_images(x)
        else:
            x = jnp.asarray(x[..., None])
            if image_size is not None and x.shape[1:3] != tuple(image_size):
                x = jax.image.resize(x, (x.shape[0], *image_size, x.shape[-1]), "bilinear")
        out.append(x)
    return out[0], np.asarray(y_train, np.int32), out[1], np.asarray(ds.y_test, np.int32)


def sgd_route(args):
    """``(optimizer, hparams)`` for plain SGD at ``--lr``: the from-scratch ``sgd_step`` for ``--impl scratch``,
    else ``regjax.optim.sgd`` (optax, lr injectable). Both take ``hparams['lr']``."""
    from regjax.optim import sgd

    return (None if args.impl == "scratch" else sgd(args.lr)), {"lr": args.lr}
