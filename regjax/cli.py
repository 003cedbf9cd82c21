"""Shared plumbing for the ``experiments/`` command-line programs: arguments, compilation cache, dataset
selection with the loud offline fallback, and writing results. No math lives here."""
from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np

from regjax.data import DataUnavailableError, flatten_images, images_to_float, load_digits, load_fashion_mnist
from regjax.data.fashion_mnist import cache_dir
from regjax.report import Progress, environment, write_json_atomic

__all__ = ["parser", "setup", "load_images", "prepare_images", "save_results", "IMAGE_DATASETS"]

IMAGE_DATASETS = ("fashion_mnist", "digits")


def parser(description: str, *, epochs: int, lr: float, batch_size: int, out: str, impls=None,
           image_dataset: bool = False, match_steps: bool = True) -> argparse.ArgumentParser:
    """The common flags; defaults are the D2L settings of each experiment."""
    p = argparse.ArgumentParser(description=description, formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    if image_dataset and match_steps:
        p.add_argument("--epochs", type=_positive_int, default=None,
                       help=f"default: {epochs} on Fashion-MNIST; on another dataset, as many epochs as make the "
                            f"same number of SGD steps as {epochs} Fashion-MNIST epochs")
        p.set_defaults(reference_epochs=epochs)
    else:
        p.add_argument("--epochs", type=_positive_int, default=epochs)
    p.add_argument("--lr", type=_positive_float, default=lr, help="learning rate")
    p.add_argument("--batch-size", type=_positive_int, default=batch_size)
    p.add_argument("--seed", type=int, default=0, help="the one seed every PRNG key derives from")
    p.add_argument("--out", type=Path, default=Path(out), help="folder for results.json and plots")
    if impls:
        p.add_argument("--impl", choices=impls, default=impls[0])
    if image_dataset:
        p.add_argument("--dataset", choices=IMAGE_DATASETS, default=None,
                       help="default: fashion_mnist, falling back loudly to the bundled digits when it cannot be "
                            "obtained; naming it explicitly makes that a hard error")
        p.add_argument("--data-dir", type=Path, default=None,
                       help="folder with the Fashion-MNIST IDX files (default: $REGJAX_DATA_DIR)")
        p.add_argument("--train-size", type=_positive_int, default=None,
                       help="use only the first N training examples (quick runs)")
    p.add_argument("--quiet", action="store_true", help="no progress bar, no per-epoch lines")
    p.add_argument("--no-compile-cache", action="store_true", help="disable JAX's persistent compilation cache")
    return p


def _positive_int(text):
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be a positive integer, got {text}")
    return value


def _positive_float(text):
    value = float(text)
    if not (value > 0 and np.isfinite(value)):
        raise argparse.ArgumentTypeError(f"must be a positive finite number, got {text}")
    return value


def setup(args) -> Progress:
    """Enable the persistent compilation cache (unless disabled) and return the progress reporter."""
    if not args.no_compile_cache:
        import jax

        path = cache_dir() / "jax_compilation_cache"
        path.mkdir(parents=True, exist_ok=True)
        jax.config.update("jax_compilation_cache_dir", str(path))
        jax.config.update("jax_persistent_cache_min_compile_time_secs", 0.5)
    return Progress(quiet=args.quiet)


def load_images(args, progress: Progress):
    """Fashion-MNIST, or -- only when the user did not pass ``--dataset`` -- the digits with a loud warning."""
    if args.dataset == "digits":
        return load_digits()
    try:
        return load_fashion_mnist(args.data_dir)
    except (DataUnavailableError, FileNotFoundError) as err:
        if args.dataset == "fashion_mnist":
            sys.exit(f"error: {err}")
        banner = "!" * 78
        print(f"{banner}\nWARNING: Fashion-MNIST could not be obtained; FALLING BACK to the bundled scikit-learn "
              f"digits (8x8).\nResults are NOT comparable with D2L's Fashion-MNIST figures; results.json records "
              f"the dataset.\n{err}\n{banner}", file=sys.stderr, flush=True)
        return load_digits()


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


def save_results(args, experiment: str, payload: dict, progress: Progress, started: float) -> Path:
    """Write ``<out>/results.json`` atomically with config, versions, device and wall time."""
    config = {k: (str(v) if isinstance(v, Path) else v) for k, v in vars(args).items()}
    result = {"experiment": experiment, "config": config, "environment": environment(), **payload,
              "wall_time_s": time.perf_counter() - started}
    path = write_json_atomic(Path(args.out) / "results.json", result)
    progress.say(f"results: {path}")
    return path

