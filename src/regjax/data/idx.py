"""The IDX file format of (Fashion-)MNIST, read and written with numpy.

Header: two zero bytes, a type code (0x08 = uint8, …), the number of dimensions, then one big-endian uint32 per
dimension, then the payload. Labels files have magic ``0x00000801`` (uint8, 1-D), image files ``0x00000803``
(uint8, 3-D). Every malformed case -- bad gzip stream, wrong magic, truncated header or payload, trailing
bytes -- is a ``ValueError`` that names the file and says what is wrong.
"""
from __future__ import annotations

import gzip
import math
import zlib
from pathlib import Path
from typing import Any

import numpy as np

from regjax.report import write_bytes_atomic

__all__ = ["read_idx", "write_idx", "LABELS_MAGIC", "IMAGES_MAGIC"]

LABELS_MAGIC = 0x00000801
IMAGES_MAGIC = 0x00000803
_DTYPES = {0x08: np.uint8, 0x09: np.int8, 0x0B: np.dtype(">i2"), 0x0C: np.dtype(">i4"),
           0x0D: np.dtype(">f4"), 0x0E: np.dtype(">f8")}
_CODES = {np.dtype(v).newbyteorder("="): k for k, v in _DTYPES.items()}  # native dtype -> type code
_EXPECTED = {"labels": LABELS_MAGIC, "images": IMAGES_MAGIC}


def _read_bytes(path: Path) -> bytes:
    raw = path.read_bytes()
    if raw[:2] != b"\x1f\x8b":  # not gzip: a raw IDX file
        return raw
    try:
        return gzip.decompress(raw)
    except (OSError, EOFError, zlib.error) as err:
        raise ValueError(f"{path}: corrupt or truncated gzip stream ({err})") from err


def read_idx(path: Any, expect: str | None = None) -> np.ndarray:
    """Read an IDX file (raw or gzipped) into a numpy array.

    Args:
      path: the file.
      expect: ``'images'`` or ``'labels'`` to insist on that magic number (0x803 / 0x801), or ``None``.
    """
    path = Path(path)
    if expect is not None and expect not in _EXPECTED:
        raise ValueError(f"expect must be one of {sorted(_EXPECTED)} or None, got {expect!r}")
    data = _read_bytes(path)
    if len(data) < 4:
        raise ValueError(f"{path}: truncated IDX header ({len(data)} bytes, need at least 4)")
    magic = int.from_bytes(data[:4], "big")
    zero, code, ndim = data[:2], data[2], data[3]
    if zero != b"\x00\x00" or code not in _DTYPES:
        raise ValueError(f"{path}: not an IDX file (magic number 0x{magic:08x})")
    if expect is not None and magic != _EXPECTED[expect]:
        raise ValueError(
            f"{path}: wrong magic number 0x{magic:08x} for {expect} (expected 0x{_EXPECTED[expect]:08x})"
        )
    header_len = 4 + 4 * ndim
    if len(data) < header_len:
        raise ValueError(f"{path}: truncated IDX header (need {header_len} bytes for {ndim} dimensions)")
    dims = tuple(int.from_bytes(data[4 + 4 * i: 8 + 4 * i], "big") for i in range(ndim))
    dtype = np.dtype(_DTYPES[code])
    expected = math.prod(dims) * dtype.itemsize      # exact: an int64 product of huge dimensions would wrap
    found = len(data) - header_len
    if found != expected:
        what = "truncated payload" if found < expected else "trailing bytes after the payload"
        raise ValueError(f"{path}: {what}: dimensions {dims} need {expected} bytes, found {found}")
    array = np.frombuffer(data, dtype=dtype, offset=header_len).reshape(dims)
    return array.astype(dtype.newbyteorder("="), copy=True)


def write_idx(path: Any, array: Any) -> Path:
    """Write ``array`` as an IDX file (gzipped if ``path`` ends in ``.gz``), atomically."""
    path = Path(path)
    array = np.asarray(array)
    dtype = array.dtype.newbyteorder("=")
    if dtype not in _CODES:
        raise ValueError(f"array dtype must be one of {sorted(str(d) for d in _CODES)}, got {array.dtype}")
    code = _CODES[dtype]
    header = bytes([0, 0, code, array.ndim]) + b"".join(int(d).to_bytes(4, "big") for d in array.shape)
    payload = header + array.astype(np.dtype(_DTYPES[code])).tobytes()
    if path.suffix == ".gz":
        payload = gzip.compress(payload, mtime=0)
    return write_bytes_atomic(path, payload)
