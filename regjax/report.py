"""Reporting: progress bars, one line per epoch, atomic ``results.json``, D2L-Animator-style PNG plots."""
from __future__ import annotations

import json
import math
import os
import platform
import sys
import tempfile
from pathlib import Path

__all__ = ["Progress", "epoch_line", "environment", "write_bytes_atomic", "write_json_atomic", "plot_histories", "plot_series"]


def epoch_line(name: str, epoch: int, epochs: int, row: dict) -> str:
    parts = [f"[{name}] epoch {epoch + 1:>{len(str(epochs))}}/{epochs}", f"train loss {row['train_loss']:.4f}"]
    if row.get("train_accuracy") is not None:
        parts.append(f"train acc {row['train_accuracy']:.3f}")
    parts.append(f"test loss {row['test_loss']:.4f}")
    if row.get("test_accuracy") is not None:
        parts.append(f"test acc {row['test_accuracy']:.3f}")
    parts.append(f"{row['examples_per_s']:,.0f} ex/s")
    return " | ".join(parts)


class Progress:
    """A tqdm bar over epochs with live metrics, plus one concise line per epoch.

    The bar shows only on a TTY (and never with ``quiet``); the per-epoch lines print unless ``quiet``.
    Use ``progress.callback(name, epochs)`` as ``fit(..., on_epoch=...)``.
    """

    def __init__(self, quiet: bool = False, stream=None):
        self.quiet = quiet
        self.stream = stream or sys.stdout
        self.use_bar = (not quiet) and hasattr(self.stream, "isatty") and self.stream.isatty()

    def callback(self, name: str, epochs: int, initial: int = 0):
        """``on_epoch`` for ``fit``; ``initial`` epochs are already done (a resumed run)."""
        if self.quiet:
            return None
        bar = None
        if self.use_bar:
            from tqdm.auto import tqdm

            bar = tqdm(total=epochs, initial=initial, desc=name, unit="epoch", leave=False, file=self.stream)

        def on_epoch(epoch: int, row: dict):
            if bar is not None:
                bar.set_postfix({k: f"{v:.3f}" for k, v in row.items() if v is not None and ("loss" in k or "acc" in k)})
                bar.update(1)
                if epoch + 1 == epochs:
                    bar.close()
            print(epoch_line(name, epoch, epochs, row), file=self.stream, flush=True)

        return on_epoch

    def say(self, message: str):
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


def _clean(obj):
    """JSON-safe: numpy/jax scalars to Python, non-finite floats to None (strict JSON has no NaN)."""
    if isinstance(obj, dict):
        return {str(k): _clean(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_clean(v) for v in obj]
    if hasattr(obj, "tolist"):
        return _clean(obj.tolist())
    if isinstance(obj, float) and not math.isfinite(obj):
        return None
    return obj


def write_bytes_atomic(path, data: bytes) -> Path:
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
        os.chmod(tmp, 0o666 & ~_umask())
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise
    return path


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def write_json_atomic(path, obj) -> Path:
    """Strict JSON (NaN/inf become null), written atomically with ``write_bytes_atomic``."""
    text = json.dumps(_clean(obj), indent=2, allow_nan=False) + "\n"
    return write_bytes_atomic(path, text.encode())


def _pyplot():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def _save(fig, path):
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.stem + ".tmp" + path.suffix)
    fig.savefig(tmp, dpi=90, bbox_inches="tight")
    os.replace(tmp, path)


def plot_histories(histories: dict, path, title: str = "") -> Path:
    """Loss (log scale) and, where present, accuracy vs epoch for each named run: solid train, dashed test."""
    plt = _pyplot()
    has_acc = any(h.test_accuracy and h.test_accuracy[0] is not None for h in histories.values())
    fig, axes = plt.subplots(1, 2 if has_acc else 1, figsize=(10 if has_acc else 5.5, 3.6), squeeze=False)
    colors = plt.rcParams["axes.prop_cycle"].by_key()["color"]
    for i, (name, h) in enumerate(histories.items()):
        c = colors[i % len(colors)]
        epochs = range(1, len(h.train_loss) + 1)
        axes[0, 0].plot(epochs, h.train_loss, color=c, label=f"{name} train")
        axes[0, 0].plot(epochs, h.test_loss, color=c, linestyle="--", label=f"{name} test")
        if has_acc:
            axes[0, 1].plot(epochs, h.train_accuracy, color=c, label=f"{name} train")
            axes[0, 1].plot(epochs, h.test_accuracy, color=c, linestyle="--", label=f"{name} test")
    axes[0, 0].set_yscale("log")
    axes[0, 0].set(xlabel="epoch", ylabel="loss")
    if has_acc:
        axes[0, 1].set(xlabel="epoch", ylabel="accuracy")
    for ax in axes[0]:
        ax.grid(alpha=0.3)
        ax.legend(fontsize=7)
    if title:
        fig.suptitle(title)
    _save(fig, path)
    plt.close(fig)
    return Path(path)


def plot_series(series: dict, path, *, xlabel: str, ylabel: str, title: str = "", logy: bool = False) -> Path:
    """Generic line plot: ``series`` maps a label to ``(x, y)``."""
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(5.5, 3.6))
    for label, (x, y) in series.items():
        ax.plot(x, y, label=label)
    if logy:
        ax.set_yscale("log")
    ax.set(xlabel=xlabel, ylabel=ylabel, title=title)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7)
    _save(fig, path)
    plt.close(fig)
    return Path(path)
