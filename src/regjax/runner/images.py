"""The image experiments' epoch policy -- ``--epochs`` that match D2L's SGD steps on a smaller set -- and
``fail``, the refusal with an exit code of the command line."""
from __future__ import annotations

import argparse
from typing import NoReturn

from regjax.data import Dataset
from regjax.runner.args import UsageError, on_command_line

__all__ = ["resolve_epochs", "fail"]


def fail(code: int, message: str) -> NoReturn:
    """On the command line: ``message`` on stderr and exit ``code``; from Python: ``UsageError(message)``."""
    if on_command_line():
        import sys

        print(message, file=sys.stderr, flush=True)
        raise SystemExit(code)
    raise UsageError(message)


def resolve_epochs(args: argparse.Namespace, ds: Dataset, n_train: int) -> int:
    """``--epochs`` if given; else the D2L default on Fashion-MNIST, or the epoch count that gives the same
    number of SGD steps on a smaller dataset (digits: 6 steps an epoch at batch 256 instead of 235)."""
    if args.epochs is not None or not hasattr(args, "reference_epochs"):
        return args.epochs
    if ds.name == "fashion_mnist":
        return args.reference_epochs
    steps = args.reference_epochs * -(-60000 // args.batch_size)
    return -(-steps // -(-n_train // args.batch_size))
