"""Checkpoints of a training run: the whole ``TrainState`` (params, optimizer state, BN state, step, dropout
key), the epoch count, the ``History`` and free-form metadata, in one file.

Format: ``flax.serialization``'s msgpack (the Flax serializer; float bits are kept exactly, which is what makes
a resumed run bit-identical), written atomically with ``regjax.report.write_bytes_atomic`` (temp file, fsync,
rename), so a checkpoint is either the old one or the new one, never half of each. Why not orbax-checkpoint:
these runs are small and checkpoint every epoch -- 400 epochs of a 20-weight polynomial fit -- and a msgpack
write costs a millisecond where orbax's per-save machinery (directories, metadata, async threads) costs far
more; the state is replicated, so process 0 alone writes it also in multi-process runs.

Integrity: the file is ``{format, sha256, body}`` with ``body`` the msgpack payload and ``sha256`` its digest,
checked on every read, so flipped bits are refused instead of resumed from (``regjax-checkpoint-1`` files,
written before the digest existed, still load).

PRNG key arrays are stored as their raw ``key_data`` plus the PRNG implementation's name and wrapped again on
load. Loading checks the stored tree against the state the model and optimizer build now: any difference in
structure, shape or dtype is a ``CheckpointError`` naming the leaf, before training starts.
"""
from __future__ import annotations

import hashlib
import json
import threading
from pathlib import Path
from typing import Any, NamedTuple

import jax
import numpy as np
from flax import serialization

from regjax.base import TrainState
from regjax.report import write_bytes_atomic

__all__ = ["CheckpointError", "Checkpoint", "CheckpointWriter", "save_checkpoint", "load_checkpoint",
           "read_checkpoint"]

FORMAT = "regjax-checkpoint-2"
LEGACY_FORMAT = "regjax-checkpoint-1"   # the payload alone, no digest


class CheckpointError(ValueError):
    """A checkpoint that cannot be used: unreadable, corrupt, or made by a different model/optimizer/run."""


class Checkpoint(NamedTuple):
    state: TrainState
    epoch: int          # epochs completed
    history: dict       # History.to_dict()
    meta: dict


def _to_storable(state: TrainState):
    return state._replace(key=jax.random.key_data(state.key))


def save_checkpoint(path: Any, state: TrainState, *, epoch: int, history: dict, meta: dict | None = None) -> Path:
    """Write ``state`` after ``epoch`` completed epochs, with ``history`` and ``meta`` (JSON-able), atomically."""
    return write_bytes_atomic(path, _serialize(state, epoch=epoch, history=history, meta=meta))


def _serialize(state: TrainState, *, epoch: int, history: dict, meta: dict | None) -> bytes:
    payload = {
        "format": LEGACY_FORMAT,   # the payload is a format-1 checkpoint; format 2 wraps it with its digest
        "epoch": int(epoch),
        "key_impl": str(jax.random.key_impl(state.key)),
        "state": serialization.to_state_dict(jax.device_get(_to_storable(state))),
        "history": json.dumps(history),  # JSON text: NaN survives, lists of None stay lists
        "meta": json.dumps(meta or {}),
    }
    body = serialization.msgpack_serialize(payload)
    return serialization.msgpack_serialize({"format": FORMAT, "sha256": hashlib.sha256(body).hexdigest(),
                                            "body": body})


class CheckpointWriter:
    """Per-epoch checkpoints without stalling training on the disk.

    ``save`` serializes the state at once (a copy: the next epoch may donate the device buffers) and hands the
    bytes to one background thread that writes them atomically (temp file, fsync, rename). If epochs finish
    faster than the disk syncs, a newer checkpoint of the same file replaces one still waiting -- the file on
    disk is always a complete checkpoint of some finished epoch, at most one write behind. ``flush`` waits
    until everything handed over is on disk and re-raises a write error; call it before reporting and on exit.
    """

    def __init__(self):
        self._pending: dict = {}
        self._error: BaseException | None = None
        self._cond = threading.Condition()
        self._busy = False
        self._thread = threading.Thread(target=self._run, name="regjax-checkpoint", daemon=True)
        self._thread.start()

    def save(self, path: Any, state: TrainState, *, epoch: int, history: dict, meta: dict | None = None) -> None:
        """Serialize now (a copy of ``state``), write in the background; re-raises an earlier write's error."""
        data = _serialize(state, epoch=epoch, history=history, meta=meta)
        with self._cond:
            self._raise()
            self._pending[Path(path)] = data
            self._cond.notify_all()

    def flush(self) -> None:
        """Wait until every checkpoint handed over is on disk; re-raise a write error."""
        with self._cond:
            self._cond.wait_for(lambda: not self._pending and not self._busy)
            self._raise()

    def _raise(self):
        if self._error is not None:
            error, self._error = self._error, None
            raise CheckpointError(f"writing a checkpoint failed: {error}") from error

    def _run(self):
        while True:
            with self._cond:
                self._cond.wait_for(lambda: self._pending)
                path = next(iter(self._pending))
                data = self._pending.pop(path)
                self._busy = True
            try:
                write_bytes_atomic(path, data)
            except BaseException as err:  # reported by the next save/flush
                self._error = err
            finally:
                with self._cond:
                    self._busy = False
                    self._cond.notify_all()


def _unpack(path: Path, data: bytes) -> Any:
    try:
        return serialization.msgpack_restore(data)
    except Exception as err:  # msgpack raises several types for corrupt bytes
        raise CheckpointError(f"checkpoint {path} is corrupt or unreadable ({type(err).__name__}: {err})") from err


def read_checkpoint(path: Any) -> dict:
    """The raw contents (nested dicts of arrays), checked for the format and the digest of its bytes;
    ``CheckpointError`` if unreadable, corrupt or not a checkpoint."""
    path = Path(path)
    try:
        raw = _unpack(path, path.read_bytes())
    except OSError as err:
        raise CheckpointError(f"checkpoint {path} is unreadable ({err.strerror or err})") from err
    if isinstance(raw, dict) and raw.get("format") == FORMAT and isinstance(raw.get("body"), bytes):
        if hashlib.sha256(raw["body"]).hexdigest() != raw.get("sha256"):
            raise CheckpointError(f"checkpoint {path} is corrupt: its bytes do not match their SHA-256")
        raw = _unpack(path, raw["body"])
    elif not (isinstance(raw, dict) and raw.get("format") == LEGACY_FORMAT):
        raise CheckpointError(f"checkpoint {path} is not a {FORMAT} file")
    if not isinstance(raw, dict) or "state" not in raw:
        raise CheckpointError(f"checkpoint {path} is not a {FORMAT} file")
    return raw


def load_checkpoint(path: Any, target: TrainState) -> Checkpoint:
    """Restore into the structure of ``target`` (a freshly initialised state of the same model and optimizer)."""
    path = Path(path)
    raw = read_checkpoint(path)
    storable = _to_storable(target)
    try:
        restored = serialization.from_state_dict(storable, raw["state"])
    except Exception as err:
        raise CheckpointError(f"checkpoint {path} does not fit this model/optimizer: {err}") from err
    expected = jax.tree_util.tree_flatten_with_path(storable)[0]
    got = jax.tree_util.tree_leaves(restored)
    if len(got) != len(expected):
        raise CheckpointError(f"checkpoint {path} holds {len(got)} arrays; this model/optimizer has {len(expected)}")
    for (where, want), have in zip(expected, got):
        have = np.asarray(have)
        if have.shape != np.shape(want) or have.dtype != np.asarray(want).dtype:
            raise CheckpointError(
                f"checkpoint {path}: {jax.tree_util.keystr(where)} is {have.dtype}{list(have.shape)}, this "
                f"model/optimizer needs {np.asarray(want).dtype}{list(np.shape(want))}")
    state = restored._replace(key=jax.random.wrap_key_data(np.asarray(restored.key), impl=raw["key_impl"]))
    return Checkpoint(state, int(raw["epoch"]), json.loads(raw["history"]), json.loads(raw["meta"]))
