"""Image data for the experiments and their epoch policy: Fashion-MNIST with the loud fallback to the bundled
digits, float arrays shaped for MLPs or CNNs, and ``--epochs`` that match D2L's SGD steps on a smaller set."""
from __future__ import annotations

import argparse
import sys
from typing import NoReturn, Optional, Sequence

import numpy as np

from regjax.base import Data
from regjax.data import (
    Dataset,
    DataUnavailableError,
    flatten_images,
    images_to_float_on_device,
    load_digits,
    load_fashion_mnist,
    to_nhwc,
)

__all__ = ["load_images", "prepare_images", "resolve_epochs", "fail"]


def fail(code: int, message: str) -> NoReturn:
    """Print ``message`` to stderr and leave with ``code``."""
    print(message, file=sys.stderr, flush=True)
    raise SystemExit(code)


def load_images(args: argparse.Namespace) -> Dataset:
    """Fashion-MNIST, or -- only when the user did not pass ``--dataset`` -- the digits with a loud warning."""
    if args.dataset == "digits":
        if args.data_dir is not None:
            fail(2, "--data-dir applies to Fashion-MNIST; it cannot be combined with --dataset digits")
        return load_digits()
    try:
        return load_fashion_mnist(args.data_dir)
    except (DataUnavailableError, FileNotFoundError) as err:
        if args.dataset == "fashion_mnist" or args.data_dir is not None:  # asked for explicitly: no fallback
            fail(2, f"error: {err}")
        banner = "!" * 78
        print(f"{banner}\nWARNING: Fashion-MNIST could not be obtained; FALLING BACK to the bundled scikit-learn "
              f"digits (8x8).\nResults are NOT comparable with D2L's Fashion-MNIST figures; results.json records "
              f"the dataset.\n{err}\n{banner}", file=sys.stderr, flush=True)
        return load_digits()


def resolve_epochs(args: argparse.Namespace, ds: Dataset, n_train: int) -> int:
    """``--epochs`` if given; else the D2L default on Fashion-MNIST, or the epoch count that gives the same
    number of SGD steps on a smaller dataset (digits: 6 steps an epoch at batch 256 instead of 235)."""
    if args.epochs is not None or not hasattr(args, "reference_epochs"):
        return args.epochs
    if ds.name == "fashion_mnist":
        return args.reference_epochs
    steps = args.reference_epochs * -(-60000 // args.batch_size)
    return -(-steps // -(-n_train // args.batch_size))


def prepare_images(ds: Dataset, *, flatten: bool, train_size: Optional[int] = None,
                   image_size: Optional[Sequence[int]] = None) -> Data:
    """Float32 JAX arrays on the default device for training, pixels in [0, 1]: flattened (MLPs) or NHWC (CNNs,
    optionally resized to ``image_size``); labels int32 NumPy arrays."""
    import jax

    x_train, y_train = ds.x_train, ds.y_train
    if train_size is not None:
        x_train, y_train = x_train[:train_size], y_train[:train_size]
    out = []
    for x in (x_train, ds.x_test):
        if flatten:  # shaped on the host (a view), converted on the device (no float32 host copy)
            x = images_to_float_on_device(flatten_images(x))
        else:
            x = images_to_float_on_device(to_nhwc(x))
            if image_size is not None and x.shape[1:3] != tuple(image_size):
                x = jax.image.resize(x, (x.shape[0], *image_size, x.shape[-1]), "bilinear")
        out.append(x)
    return out[0], np.asarray(y_train, np.int32), out[1], np.asarray(ds.y_test, np.int32)
