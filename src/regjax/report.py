"""Reporting: progress bars, one line per epoch, the environment, and atomic writes (``results.json``,
checkpoint bytes) -- nothing a user produced is ever half-written. The PNG writers are in ``regjax.plots``."""
from __future__ import annotations

import json
import math
import os
import platform
import sys
import tempfile
from pathlib import Path
from typing import Any, Callable, Optional

import numpy as np

__all__ = ["Progress", "epoch_line", "environment", "json_safe", "write_bytes_atomic", "write_json_atomic", "umask"]


def epoch_line(name: str, epoch: int, epochs: int, row: dict) -> str:
    """One line per epoch. A single run: ``[name] epoch e/E | train loss .. | train acc .. | test loss .. | test
    acc .. | ex/s``; several members (a sweep): the best member's test loss (and accuracy), how many diverged, the
    time."""
    head = f"[{name}] epoch {epoch + 1:>{len(str(epochs))}}/{epochs}"
    alive = np.asarray(row["alive"])
    if alive.size > 1:
        loss, acc = np.asarray(row["test_loss"]), np.asarray(row.get("test_accuracy", [math.nan]))
        best = np.nanmin(loss) if np.isfinite(loss).any() else math.nan
        acc_text = f" | best test acc {np.nanmax(acc):.4f}" if np.isfinite(acc).any() else ""
        return (f"{head} | {alive.size} members | best test loss {best:.4g}{acc_text} | diverged "
                f"{int((~alive).sum())} | {row['epoch_time_s']:.3f} s")
    parts = [head]
    for key, label, digits in (("train_loss", "train loss", 4), ("train_accuracy", "train acc", 3),
                               ("test_loss", "test loss", 4), ("test_accuracy", "test acc", 3)):
        if key in row:
            parts.append(f"{label} {float(np.asarray(row[key])[0]):.{digits}f}")
    parts.append(f"{row['examples_per_s']:,.0f} ex/s")
    return " | ".join(parts)


class Progress:
    """A tqdm bar over epochs with live metrics, plus one concise line per epoch.

    The bar shows only on a TTY (and never with ``quiet``); the per-epoch lines print unless ``quiet``.
    Use ``progress.callback(name, epochs)`` as ``fit(..., on_epoch=...)``.
    """

    def __init__(self, quiet: bool = False, stream: Any = None):
        self.quiet = quiet
        self.stream = stream or sys.stdout
        self.use_bar = (not quiet) and hasattr(self.stream, "isatty") and self.stream.isatty()

    def callback(self, name: str, epochs: int, initial: int = 0, every: int = 1
                 ) -> Optional[Callable[[int, dict], None]]:
        """``on_epoch`` for ``fit``/``sweep``: the bar (its postfix shows a single run's losses and accuracies)
        and ``epoch_line`` every ``every`` epochs and after the last (400 lines would drown the result);
        ``initial`` epochs are already done (a resumed run). ``None`` when quiet."""
        if self.quiet:
            return None
        bar = None
        if self.use_bar:
            from tqdm.auto import tqdm

            bar = tqdm(total=epochs, initial=initial, desc=name, unit="epoch", leave=False, file=self.stream)

        def on_epoch(epoch: int, row: dict):
            if bar is not None:
                bar.set_postfix({k: f"{float(np.asarray(v)[0]):.3f}" for k, v in row.items()
                                 if np.size(v) == 1 and ("loss" in k or "acc" in k)})
                bar.update(1)
                if epoch + 1 == epochs:
                    bar.close()
            if (epoch + 1) % every == 0 or epoch + 1 == epochs:
                print(epoch_line(name, epoch, epochs, row), file=self.stream, flush=True)

        return on_epoch

    def say(self, message: str) -> None:
        if not self.quiet:
            print(message, file=self.stream, flush=True)


def environment() -> dict:
    """Versions and the device, for results files."""
    import flax
    import jax
    import jaxlib
    import optax

    import regjax

    devices = jax.devices()
    return {
        "regjax": regjax.__version__, "jax": jax.__version__, "jaxlib": jaxlib.__version__,
        "flax": flax.__version__, "optax": optax.__version__, "python": platform.python_version(),
        "platform": platform.platform(), "backend": jax.default_backend(),
        "devices": [str(d) for d in devices], "device_kind": devices[0].device_kind,
    }


def json_safe(obj: Any) -> Any:
    """JSON-safe: numpy/jax scalars to Python, non-finite floats to None (strict JSON has no NaN)."""
    if isinstance(obj, dict):
        return {str(k): json_safe(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [json_safe(v) for v in obj]
    if hasattr(obj, "tolist"):
        return json_safe(obj.tolist())
    if isinstance(obj, float) and not math.isfinite(obj):
        return None
    return obj


def write_bytes_atomic(path: Any, data: bytes) -> Path:
    """Write ``data`` to a temp file in the same folder, fsync, then rename over ``path``: readers (and a run
    interrupted mid-write) never see half a file. The file gets the usual permissions (0666 less the umask,
    like the plots), not ``mkstemp``'s private 0600."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=path.name, suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.chmod(tmp, 0o666 & ~umask())
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise
    return path


def umask() -> int:
    """The process's umask (read without changing it for longer than a moment)."""
    mask = os.umask(0)
    os.umask(mask)
    return mask


def write_json_atomic(path: Any, obj: Any) -> Path:
    """Strict JSON (NaN/inf become null), written atomically with ``write_bytes_atomic``."""
    text = json.dumps(json_safe(obj), indent=2, allow_nan=False) + "\n"
    return write_bytes_atomic(path, text.encode())
