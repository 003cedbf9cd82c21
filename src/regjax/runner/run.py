"""``Run``: one experiment run from the command line, a context manager around an experiment's ``main``.

It parses the arguments, sets up devices, checks ``--out`` and plans the resume before anything is computed;
loads image data with the loud offline fallback; trains variants (``fit``) and sweeps (``sweep``) with
checkpoints, ``--resume`` and progress through one shared path (``regjax.runner.variant``); and on exit records
the status and leaves with its exit code (``regjax.runner.lifecycle``)."""
from __future__ import annotations

import argparse
import os
import shutil
import sys
import tempfile
from pathlib import Path
from typing import Any, Optional, Sequence

from regjax.base import Data, Model
from regjax.data import Dataset
from regjax.data.fashion_mnist import cache_dir
from regjax.report import Progress
from regjax.runner.devices import Devices, setup_devices
from regjax.data.fashion_mnist import DataUnavailableError
from regjax.data.images import load_images, prepare_images
from regjax.runner.args import on_command_line
from regjax.runner.images import fail, resolve_epochs
from regjax.runner.lifecycle import Lifecycle
from regjax.runner.resume import ResumePlan, content_digest, data_differences, plan_resume
from regjax.runner.variant import Variant, slug

__all__ = ["Run"]


class Run(Lifecycle):
    """One experiment run (see ``regjax.runner``'s docstring for an example)."""

    def __init__(self, experiment: str, parser: argparse.ArgumentParser, argv: Optional[Sequence[str]] = None):
        self.parser = parser
        if not on_command_line():
            parser.prog = experiment  # what a refusal names in a notebook (not ipykernel_launcher.py)
        self.args = parser.parse_args(argv)
        config = {k: (str(v) if isinstance(v, Path) else list(v) if isinstance(v, tuple) else v)
                  for k, v in vars(self.args).items()}
        super().__init__(experiment, Path(self.args.out), self.args.quiet, config, parser.error)
        self.devices = Devices()
        self.plan = ResumePlan()
        self.ds: Optional[Dataset] = None
        self._slugs: dict = {}
        self._restore_config: dict = {}
        self._lock_fd: Optional[int] = None
        self._created = False

    # ---- before training -------------------------------------------------------------------------------
    def __enter__(self) -> "Run":
        # a single process, or process 0 of one started by hand, takes the folder before the distributed runtime
        # starts: a refusal then cannot leave the other processes waiting at their first collective
        early = not self.args.distributed and self.args.process_id in (None, 0)
        try:
            if early:
                self._check_out()
                self._lock()
            self.devices = setup_devices(self.args, self.error)
            self.extra = {"devices": self.devices.count, "processes": self.devices.processes}  # into results.json
            self.primary = self.devices.primary
            if not self.primary:  # the others train in lockstep but write and print nothing
                import jax

                self._unlock()
                self.progress = Progress(quiet=True)
                self.out = Path(tempfile.mkdtemp(prefix=f"regjax-process{jax.process_index()}-"))
            if not early:
                self._check_out()
                if self.primary:
                    self._lock()
            if self.primary:
                os.ftruncate(self._lock_fd, 0)  # the holder's pid, for the refusal of a second run
                os.write(self._lock_fd, str(os.getpid()).encode())
            return self._prepare()
        except BaseException:
            self._remove_if_unused()  # a refusal leaves no folder it created, and the folder free for the next run
            self._unlock()
            raise

    def _prepare(self) -> "Run":
        self.plan = plan_resume(self.folder, self.experiment, self.config, resume=self.args.resume,
                                overwrite=self.args.overwrite, refuse=self.error, say=self.say)
        self.resuming = self.plan.resuming
        import jax

        if self.args.no_compile_cache:  # for this run only (restored on exit: main() may be called in-process)
            self._set_config("jax_enable_compilation_cache", False)
        elif jax.config.jax_compilation_cache_dir is None:  # a folder the user chose (JAX_COMPILATION_CACHE_DIR) stays
            path = cache_dir() / "jax_compilation_cache"
            try:
                path.mkdir(parents=True, exist_ok=True)
                self._set_config("jax_compilation_cache_dir", str(path))
                self._set_config("jax_persistent_cache_min_compile_time_secs", 0)  # small ones add up: cache all
            except OSError as err:
                print(f"WARNING: no compilation cache ({path}: {err.strerror or err}); set $REGJAX_CACHE_DIR to a "
                      f"writable folder to keep compiled programs between runs", file=sys.stderr, flush=True)
        if self.args.debug_nans:
            self._set_config("jax_debug_nans", True)
        self.install_signals()
        return self

    def _set_config(self, name: str, value: Any) -> None:
        """A JAX option for this run only: the value before is restored on exit. JAX reads its compilation-cache
        options once, when it first uses the cache: changing one resets the cache so that it takes effect."""
        import jax
        from jax.experimental.compilation_cache import compilation_cache

        self._restore_config.setdefault(name, getattr(jax.config, name))
        jax.config.update(name, value)
        if "cache" in name:
            compilation_cache.reset_cache()

    def _lock(self) -> None:
        """One writer per folder: an advisory lock (``fcntl.flock`` on ``<out>/.regjax.lock``, released by the
        kernel when the process dies) held for the whole run; a second run into the folder is refused, naming
        the holder's pid, whatever its flags."""
        import fcntl

        path = self.folder / ".regjax.lock"
        for _ in range(3):  # a refused run may remove its lock file between our open and our flock: retry
            try:
                fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o666)
            except OSError as err:
                self.error(f"--out {self.folder}: cannot open its lock file {path.name} ({err.strerror or err})")
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except OSError:
                holder = os.read(fd, 32).decode(errors="replace").strip() or "unknown"
                os.close(fd)
                self.error(f"--out {self.folder} is in use by another run (pid {holder}); wait for it to finish "
                           f"or stop it, or choose another --out")
            self._lock_fd = fd
            try:
                if os.path.samestat(os.fstat(fd), os.stat(path)):
                    break
            except FileNotFoundError:
                pass
            self._unlock()  # we locked a file that was removed meanwhile: take the new one
        else:
            self.error(f"--out {self.folder}: its lock file keeps being replaced; is another run starting there?")

    def _unlock(self) -> None:
        if self._lock_fd is not None:
            os.close(self._lock_fd)  # closing the descriptor releases the lock
            self._lock_fd = None

    def _check_out(self) -> None:
        out = self.folder
        try:
            if out.is_symlink() and not out.exists():
                self.error(f"--out {out} is a symbolic link to nothing ({os.readlink(out)})")
            if out.exists() and not out.is_dir():
                self.error(f"--out {out} is a file, not a folder")
            created = not out.exists()
            out.mkdir(parents=True, exist_ok=True)
            self._created = created
            with tempfile.TemporaryFile(dir=out):
                pass
        except OSError as err:  # a name too long, no permission, a read-only file system ...
            self.error(f"--out {out} is not a writable folder ({err.strerror or err})")

    def _remove_if_unused(self) -> None:
        """A run refused before training leaves no folder it created behind (only its lock file was in it)."""
        if self._created and not self.training and self.primary:
            try:
                (self.folder / ".regjax.lock").unlink(missing_ok=True)
                self.folder.rmdir()          # only if empty: nothing else is ever removed
            except OSError:
                pass

    def __exit__(self, exc_type: Any, exc: Optional[BaseException], tb: Any) -> bool:
        self.ignore_signals()
        try:
            import jax
            from jax.experimental.compilation_cache import compilation_cache

            for name, value in self._restore_config.items():
                jax.config.update(name, value)
            if any("cache" in name for name in self._restore_config):
                compilation_cache.reset_cache()
            return self.end(exc)
        finally:
            self.restore_signals()
            self._remove_if_unused()  # while still holding the lock: no other run can have taken it meanwhile
            self._unlock()
            if self.out != self.folder:  # a non-primary process's own temporary folder
                shutil.rmtree(self.out, ignore_errors=True)

    # ---- data --------------------------------------------------------------------------------------------
    def load_images(self) -> Dataset:
        """Fashion-MNIST, or -- only when ``--dataset`` was not given -- the digits with the warning of
        ``regjax.data.load_images``; a dataset asked for by name that cannot be had is a refusal (exit 2)."""
        args = self.args
        if args.dataset == "digits" and args.data_dir is not None:
            fail(2, "--data-dir applies to Fashion-MNIST; it cannot be combined with --dataset digits")
        try:
            self.ds = load_images(args.dataset, args.data_dir)
        except (DataUnavailableError, FileNotFoundError) as err:
            fail(2, f"error: {err}")
        if self.ds.meta.get("sha256_verified") is False:
            print(f"WARNING: the IDX files in {self.ds.source[4:]} are not the registered Fashion-MNIST (their "
                  f"SHA-256s differ, or they are not gzipped); results name them '{self.ds.name}'",
                  file=sys.stderr, flush=True)
        return self.ds

    def images(self, ds: Dataset, *, flatten: bool, image_size: Optional[Sequence[int]] = None,
               train_size: Optional[int] = None) -> Data:
        """Float training arrays from ``ds`` (``train_size`` or ``--train-size`` applied), recorded and checked
        against ``--batch-size``."""
        n_available = len(ds.x_train)
        train_size = train_size or getattr(self.args, "train_size", None)
        if train_size is not None and train_size > n_available:
            self.error(f"--train-size {train_size} exceeds the {n_available} training examples of {ds.name}")
        data = prepare_images(ds, flatten=flatten, train_size=train_size, image_size=image_size)
        n = len(data[0])
        self.set_dataset({**ds.summary(), "n_train": n, "n_train_available": n_available,
                          "content_sha256": content_digest(ds.x_train[:n], ds.y_train[:n], ds.x_test, ds.y_test),
                          **({"resized_to": list(image_size)} if image_size else {})}, n_train=n)
        return data

    def set_dataset(self, summary: dict, *, n_train: int) -> None:
        """Record the data actually used; refuse a ``--batch-size`` larger than the training set, and a resume
        on other data than the checkpointed run's."""
        if self.args.batch_size > n_train:
            self.error(f"--batch-size {self.args.batch_size} exceeds the {n_train} training examples")
        if self.resuming:  # the i-th dataset of this run against the i-th of the checkpointed one
            saved = self.plan.saved or {}
            recorded = saved.get("datasets") or [saved.get("dataset")]
            index = len(self.datasets)
            differs = data_differences(recorded[index] if index < len(recorded) else None, summary)
            if differs:
                self.error(differs)
        self.dataset = summary
        self.datasets.append(summary)
        if self.training and not self.resuming and self.primary:  # a later section's data (exercises.py)
            self.write_run_file()

    def epochs(self) -> int:
        """``--epochs``, or the epoch policy of ``regjax.runner.images.resolve_epochs`` (said when it applies)."""
        epochs = resolve_epochs(self.args, self.ds, self.dataset["n_train"])
        if self.args.epochs is None and epochs != getattr(self.args, "reference_epochs", epochs):
            self.say(f"{epochs} epochs on {self.ds.name} = the SGD steps of D2L's {self.args.reference_epochs} "
                     f"Fashion-MNIST epochs at batch {self.args.batch_size}")
        return epochs

    def plot_histories(self, filename: str, title: str) -> Path:
        """The loss and accuracy curves of every variant this run trained with ``fit`` (one member each; a sweep's
        curves are its own plot's) as ``<out>/<filename>`` (``regjax.plots.plot_histories``); the path is said and
        returned (list it in ``finish``'s ``plots``)."""
        from regjax.plots import plot_histories

        runs = {name: h for name, h in self.histories.items() if h.num_members == 1}
        plot = plot_histories(runs, self.out / filename, title)
        self.say(f"plot: {plot}")
        return plot

    # ---- training ----------------------------------------------------------------------------------------
    def checkpoint_path(self, name: str, suffix: str = ".msgpack") -> Path:
        """``checkpoints/<slug><suffix>`` for a variant; two names with one slug would share a file: refused."""
        key = slug(name)
        owner = self._slugs.setdefault(key, name)
        if owner != name:
            raise ValueError(f"variant names {owner!r} and {name!r} map to the same checkpoint file {key}{suffix}")
        return self.ckpt_dir / f"{key}{suffix}"

    def fit(self, name: str, model: Model, optimizer: Any, data: Data, *, epochs: int, key: Any = None,
            progress_every: Optional[int] = None, **kwargs: Any) -> Any:
        """``regjax.engine.fit`` as the variant ``name``: this run's seed and ``--batch-size``, progress, a
        checkpoint after every epoch, ``--resume``, ``--devices`` (each batch split over them). What it trains is
        the step and the epoch of ``regjax.engine.core``, one file read top to bottom."""
        import jax

        from regjax.engine import History, fit, init_state

        key = jax.random.key(self.args.seed) if key is None else key
        variant = Variant(self, name, self.checkpoint_path(name))
        state, start, history = variant.restore(lambda: init_state(model, optimizer, key), History(), epochs)
        kwargs.setdefault("batch_size", self.args.batch_size)
        return variant.train(fit, model, optimizer, data, epochs=epochs, key=key, state=state, start_epoch=start,
                             history=history, on_epoch=variant.progress(epochs, start, progress_every),
                             after_epoch=variant.saver(epochs, 0.0), data_mesh=self.devices.data_mesh, **kwargs)

    def sweep(self, name: str, model: Model, optimizer: Any, data: Data, members: Any, *, epochs: int,
              progress_every: Optional[int] = None, checkpoint_interval_s: float = 1.0, after_epoch: Any = None,
              **kwargs: Any) -> Any:
        """``regjax.engine.sweep`` as the variant ``name``: checkpoints of the whole stacked state
        (``<out>/checkpoints/<name>.sweep.msgpack``), ``--resume`` from the last one (the engine continues with
        the chunk size the history recorded: a bit-identical continuation; a checkpoint of other members is
        refused), one progress line per ``progress_every`` epochs, ``--devices`` (the members split over them).

        Checkpoints are written after an epoch once ``checkpoint_interval_s`` seconds have passed since the last
        one, and after the last epoch: every epoch whenever epochs take longer than that, at most about once a
        second for sweeps of tiny epochs -- a checkpoint serializes the whole per-member history, which for 128
        members × 100 epochs of 2 ms would otherwise cost more than the training. ``after_epoch(epoch, state,
        history)`` (optional) runs after that, e.g. to measure the stacked parameters every epoch."""
        import jax

        from regjax.engine import History, init_state, sweep

        if jax.process_count() > 1:
            raise ValueError("sweeps run in one process (possibly on several of its devices with --devices); "
                             "splitting the members across processes is not supported")
        configs = [dict(c) for c in members.configs]
        variant = Variant(self, name, self.checkpoint_path(name, ".sweep.msgpack"), {"configs": configs},
                          what="a sweep over other members")
        state, start, history = variant.restore(lambda: init_state(model, optimizer, members.keys),
                                                History(len(members)), epochs)
        if self.devices.parallel:
            if len(members) % self.devices.count:
                raise ValueError(f"--devices {self.devices.count}: the {len(members)} members of {name!r} must "
                                 f"split evenly over the devices")
            kwargs.setdefault("member_mesh", self.devices.member_mesh)
        kwargs.setdefault("batch_size", self.args.batch_size)
        return variant.train(sweep, model, optimizer, data, members, epochs=epochs, state=state, start_epoch=start,
                             history=history, on_epoch=variant.progress(epochs, start, progress_every),
                             after_epoch=variant.saver(epochs, checkpoint_interval_s, after_epoch), **kwargs)
