"""The image data of the lessons, for a notebook as for the command line: Fashion-MNIST -- or, where it cannot be
had and was not asked for by name, scikit-learn's bundled 8x8 digits with one warning -- and float arrays shaped
for an MLP or a CNN."""
from __future__ import annotations

import sys
import textwrap
from typing import Any, Optional, Sequence

import numpy as np

from regjax.base import Data
from regjax.data.dataset import Dataset
from regjax.data.fashion_mnist import DataUnavailableError, load_fashion_mnist
from regjax.data.preprocess import flatten_images, images_to_float_on_device, to_nhwc
from regjax.data.sklearn_sets import load_digits

__all__ = ["IMAGE_DATASETS", "load_images", "prepare_images", "FALLBACK_WARNING"]

IMAGE_DATASETS = ("fashion_mnist", "digits")
FALLBACK_WARNING = (
    "WARNING: Fashion-MNIST is not available here; FALLING BACK to scikit-learn's bundled 8x8 digits (1,347 training "
    "images). Results are not comparable with D2L's Fashion-MNIST figures (results.json records the dataset). To "
    "train on Fashion-MNIST, name a folder with its four IDX files (--data-dir / data_dir= / $REGJAX_DATA_DIR) or "
    "run once with network access; dataset 'digits' chooses the digits without this warning, and dataset "
    "'fashion_mnist' makes its absence an error that lists every way to provide it.")


def load_images(dataset: Optional[str] = None, data_dir: Any = None) -> Dataset:
    """``dataset='fashion_mnist'`` (or a ``data_dir``): Fashion-MNIST from ``data_dir`` / ``$REGJAX_DATA_DIR``, the
    cache, TFDS or a checksummed download (``load_fashion_mnist``), its absence an error. ``'digits'``: the
    bundled digits. ``None``: Fashion-MNIST where it can be had, else the digits with ``FALLBACK_WARNING`` on
    stderr -- the lessons run anywhere, and say so when they do not run on the book's data.

    Raises ``DataUnavailableError`` / ``FileNotFoundError`` / ``ValueError`` (a corrupt file) when Fashion-MNIST was
    asked for and cannot be loaded, and ``ValueError`` for an unknown ``dataset`` or ``data_dir`` with ``'digits'``.
    """
    if dataset is not None and dataset not in IMAGE_DATASETS:
        raise ValueError(f"dataset must be one of {IMAGE_DATASETS} or None (Fashion-MNIST, else the digits), "
                         f"got {dataset!r}")
    if dataset == "digits":
        if data_dir is not None:
            raise ValueError("data_dir applies to Fashion-MNIST; it cannot be combined with dataset 'digits'")
        return load_digits()
    try:
        return load_fashion_mnist(data_dir)
    except (DataUnavailableError, FileNotFoundError):
        if dataset == "fashion_mnist" or data_dir is not None:  # asked for by name: no fallback
            raise
        banner = "!" * 78
        print(f"{banner}\n{textwrap.fill(FALLBACK_WARNING, 110)}\n{banner}", file=sys.stderr, flush=True)
        return load_digits()


def prepare_images(ds: Dataset, *, flatten: bool, train_size: Optional[int] = None,
                   image_size: Optional[Sequence[int]] = None) -> Data:
    """``(x_train, y_train, x_test, y_test)`` for training: float32 JAX arrays on the default device, pixels in
    [0, 1], flattened (MLPs) or NHWC (CNNs, optionally resized to ``image_size``, e.g. the 8x8 digits to LeNet's
    28x28); labels int32 NumPy arrays; the first ``train_size`` training examples if given."""
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
