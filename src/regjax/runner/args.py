"""The command line every experiment shares: the parser with the common flags, and argument types that refuse
bad values before anything is computed -- on the command line in one line and exit 2, from Python (an experiment's
``main([...])`` in a notebook) as a ``UsageError`` naming the experiment and the problem.

Which of the two an experiment is in is the one piece of state here: ``command_line()``, the context
``runner.script`` runs a CLI's ``main`` in. Outside it nothing ends the process."""
from __future__ import annotations

import argparse
import contextlib
import contextvars
import math
import sys
from pathlib import Path
from typing import Any, Callable, Iterator, NoReturn, Optional, Sequence

import numpy as np

from regjax.data.images import IMAGE_DATASETS
from regjax.models.adapters import ALIASES

__all__ = ["parser", "add_presets", "peek_choice", "positive_int", "nonnegative_int", "seed", "positive_float", "nonnegative_float",
           "rate", "device_count", "out_folder", "distinct_values", "IMAGE_DATASETS", "INT_MAX", "UsageError",
           "HelpShown", "command_line", "on_command_line", "refuse"]

INT_MAX = 2 ** 31 - 1   # counts and sizes above this are typos, and would overflow int32 shapes and indices


class UsageError(ValueError):
    """A bad argument (or data asked for by name that cannot be had), refused before anything trains: what a
    command line reports in one line with exit 2, raised when an experiment's ``main`` is called from Python."""


class HelpShown(Exception):
    """``main(["--help"])`` from Python: the help is printed and nothing runs."""


_COMMAND_LINE = contextvars.ContextVar("regjax.runner.command_line", default=False)


@contextlib.contextmanager
def command_line() -> Iterator[None]:
    """Run what is inside as the command line does: a refusal prints one line and exits 2, and the end of a run
    leaves with its exit code (``regjax.runner.lifecycle``). ``runner.script`` runs a CLI's ``main`` in it."""
    token = _COMMAND_LINE.set(True)
    try:
        yield
    finally:
        _COMMAND_LINE.reset(token)


def on_command_line() -> bool:
    return _COMMAND_LINE.get()


def refuse(prog: str, message: str) -> NoReturn:
    """A refusal: ``prog: error: message`` on stderr and exit 2 on the command line, else ``UsageError``."""
    if on_command_line():
        print(f"{prog}: error: {message}", file=sys.stderr, flush=True)
        raise SystemExit(2)
    raise UsageError(f"{prog}: {message}")


class _Parser(argparse.ArgumentParser):
    presets: Optional[dict] = None

    def error(self, message):
        """One line, exit 2 -- no usage block to scroll past (``--help`` has it); from Python, ``UsageError``."""
        refuse(self.prog, message)

    def exit(self, status=0, message=None):
        """``--help`` from Python raises ``HelpShown`` (the help is printed) instead of leaving the process."""
        if on_command_line() or status:
            super().exit(status, message)
        if message:
            print(message, file=sys.stderr, end="")
        raise HelpShown(f"{self.prog}: the help is printed above; nothing ran")

    def parse_known_args(self, args=None, namespace=None):
        """With presets: ``--preset``'s settings become the defaults first, so flags given explicitly win."""
        if self.presets:
            name = peek_choice(args, "--preset", list(self.presets), next(iter(self.presets)))
            self.set_defaults(**self.presets[name])
        return super().parse_known_args(args, namespace)


def add_presets(p: argparse.ArgumentParser, presets: dict) -> None:
    """``--preset NAME``: one edition's settings as the defaults (the first preset is the default one); an
    explicit flag overrides its preset. ``presets``: ``{name: {"help": ..., dest: value, ...}}``."""
    if not isinstance(p, _Parser):
        raise TypeError("presets need a parser made by regjax.runner.parser")
    p.presets = {name: {k: v for k, v in values.items() if k != "help"} for name, values in presets.items()}
    lines = [f"'{name}': {values.get('help', '')} ("
             + ", ".join(f"--{k.replace('_', '-')} {_shown(v)}" for k, v in p.presets[name].items()) + ")"
             for name, values in presets.items()]
    p.add_argument("--preset", choices=list(presets), default=next(iter(presets)),
                   help="the book edition whose settings are the defaults: " + "; ".join(lines)
                        + "; flags given explicitly override the preset")


def _shown(value: Any) -> str:
    return " ".join(str(v) for v in value) if isinstance(value, (list, tuple)) else str(value)


def parser(description: str, *, epochs: int, lr: float, batch_size: int, out: str,
           impls: Optional[Sequence[str]] = None, image_dataset: bool = False,
           match_steps: bool = True) -> argparse.ArgumentParser:
    """The common flags; defaults are the D2L settings of each experiment.

    ``impls`` adds ``--impl`` (the first is the default); ``image_dataset`` adds ``--dataset``, ``--data-dir``
    and ``--train-size``; with ``match_steps`` an image experiment's default ``--epochs`` on a smaller dataset
    makes as many SGD steps as ``epochs`` Fashion-MNIST epochs (``regjax.runner.images.resolve_epochs``).
    """
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
    p.add_argument("--out", type=out_folder, default=Path(out), help="folder for results.json, plots and checkpoints")
    if impls:
        aliases = {alias: impl for alias, impl in ALIASES.items() if impl in impls}
        p.add_argument("--impl", choices=impls, default=impls[0], type=lambda v: aliases.get(v, v),
                       help="; ".join(f"'{a}' is accepted as an alias of '{b}'" for a, b in aliases.items()) or None)
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
    p.add_argument("--no-compile-cache", action="store_true",
                   help="disable JAX's persistent compilation cache (default: kept in $JAX_COMPILATION_CACHE_DIR if "
                        "set, else in $REGJAX_CACHE_DIR/jax_compilation_cache)")
    scale = p.add_argument_group("scaling out (see README 'Scaling out')")
    scale.add_argument("--devices", type=device_count, default=None,
                       help="data-parallel over the first N devices, or 'all' (default: 1 device; all devices of "
                            "all processes in a multi-process run); the batch size must be a multiple of N; a "
                            "sweep splits its members over them instead")
    scale.add_argument("--distributed", action="store_true",
                       help="multi-process run on a cluster JAX detects (SLURM, TPU pod, Open MPI, ...)")
    scale.add_argument("--coordinator", metavar="HOST:PORT", default=None,
                       help="multi-process run: address of process 0 (with --num-processes and --process-id)")
    scale.add_argument("--num-processes", type=positive_int, default=None)
    scale.add_argument("--process-id", type=nonnegative_int, default=None)
    return p


def _number(text: str, kind: Callable, ok: Callable[[Any], bool], what: str) -> Any:
    try:
        value = kind(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"must be {what}, got {text!r}") from None
    if not ok(value):
        raise argparse.ArgumentTypeError(f"must be {what}, got {text}")
    return value


def device_count(text: str) -> Any:
    """``'all'`` or a positive integer."""
    return "all" if text == "all" else _number(text, int, lambda v: v >= 1, "a positive integer or 'all'")


def nonnegative_int(text: str) -> int:
    return _number(text, int, lambda v: 0 <= v <= INT_MAX, f"an integer in [0, {INT_MAX}]")


def positive_int(text: str) -> int:
    return _number(text, int, lambda v: 1 <= v <= INT_MAX, f"a positive integer (at most {INT_MAX})")


def out_folder(text: str) -> Path:
    """``--out``: a folder, not the empty string (which would mean the current folder) nor the root."""
    if not text.strip():
        raise argparse.ArgumentTypeError("must name a folder (an empty --out would write into the current folder)")
    path = Path(text).expanduser()
    if path.resolve() == Path(path.anchor or "/"):
        raise argparse.ArgumentTypeError(f"must not be the root folder, got {text!r}")
    return path


def distinct_values(values: Sequence[float], flag: str, refuse: Callable[[str], Any]) -> None:
    """Refuse a list whose values collide in float32 (the precision training uses: ``0`` and ``-0``, or
    ``1e-7`` and ``1.0000001e-7``, would train the same configuration twice)."""
    as_f32 = [float(v) for v in np.float32(list(values))]
    if len(set(as_f32)) != len(as_f32):
        refuse(f"{flag} must hold distinct values in float32, the precision training uses (got {list(values)}, "
               f"which are {as_f32} in float32)")


def seed(text: str) -> int:
    """An integer in [0, 2**32): ``jax.random.key`` takes 32 bits, so larger or negative seeds would silently
    alias smaller ones."""
    return _number(text, int, lambda v: 0 <= v < 2 ** 32, "an integer in [0, 2**32)")


def _f32(value: float) -> np.float32:
    with np.errstate(over="ignore", under="ignore"):
        return np.float32(value)


def positive_float(text: str) -> float:
    """A positive finite number, also in float32 (the precision training uses: 1e308 would become inf, 1e-50
    zero)."""
    return _number(text, float, lambda v: v > 0 and math.isfinite(v) and 0 < _f32(v) < np.inf,
                   "a positive finite number (in float32)")


def nonnegative_float(text: str) -> float:
    return _number(text, float, lambda v: v >= 0 and math.isfinite(v) and _f32(v) < np.inf,
                   "a finite number >= 0 (in float32)")


def rate(text: str) -> float:
    return _number(text, float, lambda v: 0 <= v <= 1, "a probability in [0, 1]")


def peek_choice(argv: Optional[Sequence[str]], flag: str, choices: Sequence[str], default: str) -> str:
    """The value of ``flag`` in ``argv`` (``sys.argv[1:]`` if None) before the full parser exists -- for CLIs
    whose other defaults depend on it (e.g. ``sweep.py --what``); a bad value is left for the full parser."""
    p = argparse.ArgumentParser(add_help=False)
    p.add_argument(flag, choices=choices, default=default)
    try:
        return vars(p.parse_known_args(sys.argv[1:] if argv is None else argv)[0])[flag.lstrip("-").replace("-", "_")]
    except SystemExit:
        return default
