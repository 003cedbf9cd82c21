"""Checksummed downloads with a short timeout (offline, a load fails in seconds instead of hanging), shared by
the Fashion-MNIST and Kaggle house-price loaders."""
from __future__ import annotations

import hashlib
import urllib.request
from pathlib import Path
from typing import Optional

from regjax.report import write_bytes_atomic

__all__ = ["file_digest", "fetch_verified"]


def file_digest(path: Path, algorithm: str) -> str:
    """The hex digest of the file's bytes (``algorithm``: any ``hashlib`` name, e.g. 'sha1', 'sha256')."""
    h = hashlib.new(algorithm)
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def fetch_verified(url: str, target: Path, *, algorithm: str, digest: str, timeout: float,
                   size: Optional[int] = None) -> Path:
    """``target``, downloaded from ``url`` unless it already holds the expected bytes. The body must match
    ``digest`` (and ``size`` if given) before it is written -- atomically, so an interrupted download leaves no
    half file under the final name. Raises ``ValueError`` on a mismatch and ``urllib.error.URLError`` /
    ``OSError`` / ``TimeoutError`` when the network fails."""
    if target.is_file() and file_digest(target, algorithm) == digest:
        return target
    target.parent.mkdir(parents=True, exist_ok=True)
    with urllib.request.urlopen(url, timeout=timeout) as resp:  # noqa: S310 (fixed, checksummed URL)
        body = resp.read()
    got = hashlib.new(algorithm, body).hexdigest()
    if got != digest or (size is not None and len(body) != size):
        expected = f"{size} bytes, " if size is not None else ""
        raise ValueError(f"{url}: checksum mismatch (got {len(body)} bytes, {algorithm} {got}; expected "
                         f"{expected}{algorithm} {digest})")
    return write_bytes_atomic(target, body)
