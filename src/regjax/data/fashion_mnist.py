"""Fashion-MNIST without TensorFlow, offline-safe (D2L §4.2).

Sources, in order:

a. ``data_dir`` (or ``$REGJAX_DATA_DIR``) holding the four IDX files, gzipped or raw, in Zalando's flat layout,
   torchvision/d2l's ``FashionMNIST/raw/`` layout, or Zalando's repository layout ``data/fashion/``;
b. the parsed-array cache of an earlier load (``fashion_mnist.npz`` in the cache dir);
c. a *prepared* TFDS ``fashion_mnist`` read with ``tfds.data_source`` (no TensorFlow needed to read);
d. a download of the four files, verified against the SHA-256s and sizes that tensorflow-datasets registers
   for ``fashion_mnist``.

Why not TFDS's download manager for (d): preparing ``fashion_mnist`` through TFDS needs TensorFlow (its builder
reads with ``tf.io.gfile``), and its downloader retries for minutes when offline with no connect timeout we can
set. We use TFDS's *registered checksums* with a plain ``urllib`` download that has a short timeout, so offline
the whole call fails in seconds with one error that lists every way to provide the data.
"""
from __future__ import annotations

import hashlib
import importlib.util
import io
import logging
import os
import time
import urllib.error
from pathlib import Path
from typing import Any

import numpy as np

from regjax.data.dataset import Dataset
from regjax.data.download import fetch_verified, file_digest
from regjax.data.idx import read_idx
from regjax.report import write_bytes_atomic

__all__ = ["load_fashion_mnist", "DataUnavailableError", "CLASS_NAMES", "find_idx_files", "cache_dir"]

CLASS_NAMES = ("T-shirt/top", "Trouser", "Pullover", "Dress", "Coat",
               "Sandal", "Shirt", "Sneaker", "Bag", "Ankle boot")
FILES = {
    "x_train": "train-images-idx3-ubyte",
    "y_train": "train-labels-idx1-ubyte",
    "x_test": "t10k-images-idx3-ubyte",
    "y_test": "t10k-labels-idx1-ubyte",
}
LAYOUTS = (".", "FashionMNIST/raw", "fashion-mnist", "fashion_mnist", "data/fashion", "FashionMNIST")
# Overridable (tests point it at a closed local port). None = the URLs TFDS registers.
DOWNLOAD_BASE_URL: str | None = None
CONNECT_TIMEOUT_S = 5.0


class DataUnavailableError(RuntimeError):
    """No source could provide the dataset; the message lists the ways to provide it."""


def cache_dir() -> Path:
    """``$REGJAX_CACHE_DIR`` or ``~/.cache/regjax``."""
    return Path(os.environ.get("REGJAX_CACHE_DIR") or Path.home() / ".cache" / "regjax")


def find_idx_files(root: Any) -> dict | None:
    """The four IDX files under ``root`` in any supported layout (``.gz`` or raw), or ``None``."""
    root = Path(root)
    for layout in LAYOUTS:
        d = root / layout
        found = {}
        for key, stem in FILES.items():
            for candidate in (d / f"{stem}.gz", d / stem):
                if candidate.is_file():
                    found[key] = candidate
                    break
        if len(found) == len(FILES):
            return found
    return None


def _parse(files: dict) -> dict:
    arrays = {}
    for key, path in files.items():
        arrays[key] = read_idx(path, expect="images" if key.startswith("x") else "labels")
    for split in ("train", "test"):
        x, y = arrays[f"x_{split}"], arrays[f"y_{split}"]
        if x.ndim != 3:
            raise ValueError(f"{files[f'x_{split}']}: images must be 3-D (N, H, W), got shape {x.shape}")
        if len(x) == 0:
            raise ValueError(f"{files[f'x_{split}']}: holds no images")
        if len(x) != len(y):
            raise ValueError(
                f"{files[f'x_{split}']} holds {len(x)} images but {files[f'y_{split}']} holds {len(y)} labels"
            )
        if y.size and int(y.max()) >= len(CLASS_NAMES):
            raise ValueError(f"{files[f'y_{split}']}: label {int(y.max())} out of range 0..{len(CLASS_NAMES) - 1}")
    if arrays["x_train"].shape[1:] != arrays["x_test"].shape[1:]:  # found at load, not after training started
        raise ValueError(f"{files['x_test']}: test images are {arrays['x_test'].shape[1:]}, the training images "
                         f"({files['x_train']}) {arrays['x_train'].shape[1:]}")
    return arrays


def _atomic_savez(path: Path, **arrays) -> None:
    """The parsed arrays as one .npz, atomically, with the user's umask; an interrupted write leaves no temp
    file behind."""
    buffer = io.BytesIO()
    np.savez(buffer, **arrays)
    write_bytes_atomic(path, buffer.getvalue())


def _load_npz(path: Path) -> dict | None:
    try:
        with np.load(path) as z:
            return {k: z[k] for k in FILES}
    except (OSError, ValueError, KeyError):
        return None  # unreadable cache: ignore it, it will be rewritten


def _fingerprint(digests: dict) -> str:
    """The cache key of four IDX files from their SHA-256s: a digest of their *contents* (path, size and mtime
    would give stale arrays for files rewritten at the same size with the mtime restored -- IDX files of one
    shape always have the same size)."""
    h = hashlib.sha256()
    for key in sorted(digests):
        h.update(f"{key}:{digests[key]};".encode())
    return h.hexdigest()[:16]


def _verified(files: dict, digests: dict) -> bool:
    """Whether all four files are the registered Fashion-MNIST: gzipped files whose SHA-256 (``digests``)
    equals the one tensorflow-datasets registers. Raw (un-gzipped) files cannot be checked: TFDS registers the
    .gz only."""
    checksums = _registered_checksums()
    for key, path in files.items():
        registered = checksums.get(path.name)
        if registered is None or digests[key] != registered[2]:
            return False
    return True


def _from_data_dir(root: Path, cache: Path) -> tuple[dict, str, bool]:
    files = find_idx_files(root)
    if files is None:
        expected = ", ".join(f"{s}[.gz]" for s in FILES.values())
        raise FileNotFoundError(
            f"data_dir {root} does not hold the four Fashion-MNIST IDX files ({expected}) in any of the "
            f"layouts {', '.join(repr(l) for l in LAYOUTS)}"
        )
    digests = {key: file_digest(path, "sha256") for key, path in files.items()}  # each file read once
    cached = cache / f"fashion_mnist-idx-{_fingerprint(digests)}.npz"
    arrays = _load_npz(cached) if cached.exists() else None
    if arrays is None:
        arrays = _parse(files)
        _atomic_savez(cached, **arrays)
    return arrays, f"idx:{files['x_train'].parent}", _verified(files, digests)


def _from_tfds(tfds_data_dir) -> dict:
    import tensorflow_datasets as tfds  # lazy: slow import, and only this route needs it

    arrays = {}
    absl = logging.getLogger("absl")  # TFDS logs its own failed lookups; this route's failure is reported once
    level = absl.level
    absl.setLevel(logging.ERROR)
    try:
        sources = {split: tfds.data_source("fashion_mnist", split=split, data_dir=tfds_data_dir, download=False,
                                           try_gcs=False) for split in ("train", "test")}
    finally:
        absl.setLevel(level)
    for split, source in sources.items():
        examples = [source[i] for i in range(len(source))]  # decoded once, then cached as .npz
        arrays[f"x_{split}"] = np.stack([np.asarray(e["image"]).reshape(28, 28) for e in examples]).astype(np.uint8)
        arrays[f"y_{split}"] = np.asarray([e["label"] for e in examples], dtype=np.uint8)
    return arrays


def _registered_checksums() -> dict:
    """``{filename: (url, size, sha256)}`` from tensorflow-datasets' registered checksums for fashion_mnist."""
    # found through the package's spec, not imported: importing tensorflow_datasets is slow
    spec = importlib.util.find_spec("tensorflow_datasets")
    if spec is None or not spec.submodule_search_locations:
        raise ModuleNotFoundError("tensorflow-datasets is not installed: its registered Fashion-MNIST checksums "
                                  "are needed (pip install -e .)")
    text = (Path(spec.submodule_search_locations[0]) / "url_checksums" / "fashion_mnist.txt").read_text()
    out = {}
    for line in text.splitlines():
        if line.strip():
            url, size, sha, name = line.split("\t")
            out[name] = (url, int(size), sha)
    return out


def _download(dest: Path, timeout: float) -> dict:
    files, checksums = {}, _registered_checksums()
    for key, stem in FILES.items():
        name = f"{stem}.gz"
        url, size, sha = checksums[name]
        if DOWNLOAD_BASE_URL is not None:
            url = DOWNLOAD_BASE_URL.rstrip("/") + "/" + name
        files[key] = fetch_verified(url, dest / name, algorithm="sha256", digest=sha, size=size, timeout=timeout)
    return _parse(files)


def _guide(reasons: list[str]) -> str:
    return (
        "Fashion-MNIST is not available. Tried:\n  - " + "\n  - ".join(reasons) + "\n"
        "Provide it in one of three ways:\n"
        "  1. point data_dir (CLI: --data-dir, or $REGJAX_DATA_DIR) at a folder holding the four IDX files\n"
        "     (train-images-idx3-ubyte.gz, train-labels-idx1-ubyte.gz, t10k-images-idx3-ubyte.gz,\n"
        "     t10k-labels-idx1-ubyte.gz, gzipped or raw; d2l/torchvision's FashionMNIST/raw/ works as is);\n"
        "  2. prepare it with TFDS where TensorFlow is installed (tfds.builder('fashion_mnist')\n"
        "     .download_and_prepare(file_format='array_record')) and pass tfds_data_dir / $TFDS_DATA_DIR;\n"
        "  3. run once with network access (download=True) -- files are checked against TFDS's SHA-256s and cached.\n"
        "Offline alternative: the bundled scikit-learn digits, regjax.data.load_digits() (CLI: --dataset digits)."
    )


def load_fashion_mnist(data_dir: Any = None, *, download: bool = True, cache: Any = None, tfds_data_dir: Any = None,
                       timeout: float | None = None) -> Dataset:
    """Load Fashion-MNIST as uint8 images ``(N, 28, 28)`` and uint8 labels (60,000 train / 10,000 test).

    Args:
      data_dir: folder with the IDX files (default ``$REGJAX_DATA_DIR``). When given, it is the only source
        tried -- a wrong folder is an error, not a silent download. Files that do not match the SHA-256s TFDS
        registers for Fashion-MNIST (or raw files, which cannot be checked) load as a dataset named ``'idx'``
        with ``meta['sha256_verified'] = False``.
      download: allow the network download when no local source has the data.
      cache: cache folder for parsed arrays and downloads (default ``$REGJAX_CACHE_DIR`` or
        ``~/.cache/regjax``); a second load reads one ``.npz``.
      tfds_data_dir: TFDS data dir to look for a prepared ``fashion_mnist`` (default: TFDS's own default).
      timeout: connect/read timeout per download request in seconds (default 5).

    Raises:
      FileNotFoundError: ``data_dir`` was given but does not hold the files.
      ValueError: an IDX file is corrupt (the message names it) or a download fails its checksum.
      DataUnavailableError: no source worked; the message lists the ways to provide the data.
    """
    cache = Path(cache) if cache is not None else cache_dir()
    data_dir = data_dir if data_dir is not None else os.environ.get("REGJAX_DATA_DIR") or None
    if data_dir is not None:
        arrays, source, verified = _from_data_dir(Path(data_dir).expanduser(), cache)
        return _dataset(arrays, source, verified)

    npz = cache / "fashion_mnist.npz"
    arrays = _load_npz(npz) if npz.exists() else None
    if arrays is not None:
        return _dataset(arrays, f"cache:{npz}")

    reasons = [f"no data_dir given and $REGJAX_DATA_DIR unset; no cache at {npz}"]
    try:
        arrays = _from_tfds(tfds_data_dir)
        source = "tfds"
    except Exception as err:  # any failure of the optional route is reported below, not raised
        reasons.append(f"TFDS (tfds.data_source, download=False): {type(err).__name__}: {str(err).splitlines()[0]}")
        arrays = None
    if arrays is None and download:
        start = time.monotonic()
        try:
            arrays = _download(cache / "fashion_mnist_raw", CONNECT_TIMEOUT_S if timeout is None else timeout)
            source = "download"
        except (urllib.error.URLError, OSError, TimeoutError) as err:
            reasons.append(f"download failed after {time.monotonic() - start:.1f}s: {err}")
    elif arrays is None:
        reasons.append("download=False")
    if arrays is None:
        raise DataUnavailableError(_guide(reasons))
    _atomic_savez(npz, **arrays)
    return _dataset(arrays, source)


def _dataset(arrays: dict, source: str, verified: bool = True) -> Dataset:
    """Files from ``data_dir`` that are not the registered Fashion-MNIST (other data, raw or re-compressed
    files) are named ``'idx'``, not ``'fashion_mnist'``: results must not claim a dataset they did not use."""
    return Dataset("fashion_mnist" if verified else "idx", arrays["x_train"], arrays["y_train"], arrays["x_test"],
                   arrays["y_test"], class_names=CLASS_NAMES, source=source, meta={"sha256_verified": verified})
