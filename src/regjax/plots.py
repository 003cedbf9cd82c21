"""Every figure the project draws: loss/accuracy curves of runs (``curves_figure``; ``LiveCurves``, D2L's
Animator, redraws them in a notebook while a run trains), generic series, panels of mean ± std bands over seeds or
folds, and heatmaps of a grid. The PNG writer, ``save_figure``: a temp file then a rename, so a plot is never
half-written."""
from __future__ import annotations

import io
import os
from pathlib import Path
from typing import Any, Sequence

import numpy as np

__all__ = ["save_figure", "curves_figure", "plot_histories", "plot_series", "plot_panels", "plot_heatmap",
           "LiveCurves"]


def _figure(**kwargs) -> Any:
    """A new ``matplotlib.figure.Figure`` drawn by the Agg canvas -- no pyplot: no global figure registry to
    leak into, no GUI backend to pick, and a third of matplotlib's import time saved for every run."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(**kwargs)
    FigureCanvasAgg(fig)
    return fig


def _colors() -> list:
    import matplotlib

    return matplotlib.rcParams["axes.prop_cycle"].by_key()["color"]


def save_figure(fig: Any, path: Any, dpi: int = 90) -> Path:
    """``fig.savefig`` to a temp file beside ``path``, then rename over it."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.stem + ".tmp" + path.suffix)
    try:
        fig.savefig(tmp, dpi=dpi, bbox_inches="tight")
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)
    return path


def curves_figure(histories: dict, title: str = "") -> Any:
    """A ``matplotlib.figure.Figure`` of the loss (log scale) and, where present, the accuracy against the epoch
    of each named run (a ``History`` of one member): solid train, dashed test. In a notebook it shows itself;
    ``save_figure`` writes it."""
    has_acc = any(h.test_accuracy is not None for h in histories.values())
    fig = _figure(figsize=(10 if has_acc else 5.5, 3.6))
    axes = fig.subplots(1, 2 if has_acc else 1, squeeze=False)
    colors = _colors()
    for i, (name, h) in enumerate(histories.items()):
        c = colors[i % len(colors)]
        epochs = range(1, h.epochs + 1)
        axes[0, 0].plot(epochs, h.train_loss[0], color=c, label=f"{name} train")
        axes[0, 0].plot(epochs, h.test_loss[0], color=c, linestyle="--", label=f"{name} test")
        if has_acc and h.test_accuracy is not None:
            axes[0, 1].plot(epochs, h.train_accuracy[0], color=c, label=f"{name} train")
            axes[0, 1].plot(epochs, h.test_accuracy[0], color=c, linestyle="--", label=f"{name} test")
    axes[0, 0].set_yscale("log")
    axes[0, 0].set(xlabel="epoch", ylabel="loss")
    if has_acc:
        axes[0, 1].set(xlabel="epoch", ylabel="accuracy")
    for ax in axes[0]:
        ax.grid(alpha=0.3)
        ax.legend(fontsize=7)
    if title:
        fig.suptitle(title)
    return fig


def plot_histories(histories: dict, path: Any, title: str = "") -> Path:
    """``curves_figure`` written to ``path`` (a PNG)."""
    return save_figure(curves_figure(histories, title), path)


def plot_series(series: dict, path: Any, *, xlabel: str, ylabel: str, title: str = "", logy: bool = False) -> Path:
    """Generic line plot: ``series`` maps a label to ``(x, y)``."""
    fig = _figure(figsize=(5.5, 3.6))
    ax = fig.subplots()
    for label, (x, y) in series.items():
        ax.plot(x, y, label=label)
    if logy:
        ax.set_yscale("log")
    ax.set(xlabel=xlabel, ylabel=ylabel, title=title)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7)
    return save_figure(fig, path)


def plot_panels(panels: Sequence[dict], path: Any, title: str = "", dpi: int = 80) -> Path:
    """One row of panels. Each panel is a dict: ``series`` (label -> ``(x, mean)`` or ``(x, mean, std)``; a
    std draws a shaded ±1 std band), ``xlabel``, ``ylabel``, optional ``xscale``/``yscale`` (``'log'``,
    ``'symlog'`` -- for grids that include 0 --, ``'linear'``), ``marks`` (label -> x: dotted vertical
    lines, e.g. the chosen λ) and ``title``."""
    fig = _figure(figsize=(4.3 * len(panels), 3.3))
    axes = fig.subplots(1, len(panels), squeeze=False)
    colors = _colors()
    for ax, panel in zip(axes[0], panels):
        for i, (label, values) in enumerate(panel["series"].items()):
            x, mean = np.asarray(values[0], float), np.asarray(values[1], float)
            c = colors[i % len(colors)]
            ax.plot(x, mean, marker="o" if len(x) <= 30 else None, markersize=3, color=c, label=label)
            if len(values) > 2 and values[2] is not None:
                std = np.asarray(values[2], float)
                ax.fill_between(x, mean - std, mean + std, color=c, alpha=0.2, linewidth=0)
        for j, (label, x) in enumerate((panel.get("marks") or {}).items()):
            ax.axvline(x, color=colors[(j + 3) % len(colors)], linestyle=":", label=label)
        xscale = panel.get("xscale", "linear")
        if xscale == "symlog":  # a log axis that also shows 0 (λ grids start at 0)
            linthresh = panel.get("linthresh") or min(
                (abs(float(x)) for v in panel["series"].values() for x in v[0] if x), default=1.0)
            ax.set_xscale("symlog", linthresh=linthresh)
            ax.set_xlim(left=0)
        else:
            ax.set_xscale(xscale)
        ax.set_yscale(panel.get("yscale", "linear"))
        ax.set(xlabel=panel.get("xlabel", ""), ylabel=panel.get("ylabel", ""), title=panel.get("title", ""))
        ax.grid(alpha=0.3)
        ax.legend(fontsize=7)
    if title:
        fig.suptitle(title)
    fig.tight_layout()
    return save_figure(fig, path, dpi)


def plot_heatmap(values: Any, row_labels: Sequence, col_labels: Sequence, path: Any, *, xlabel: str, ylabel: str,
                 title: str = "", fmt: str = "{:.3f}", dpi: int = 80, cmap: str = "viridis") -> Path:
    """A grid of values (rows x columns) as a colored table with the numbers written in (NaN: blank)."""
    values = np.asarray(values, float)
    fig = _figure(figsize=(1.0 + 0.75 * values.shape[1], 0.8 + 0.55 * values.shape[0]))
    ax = fig.subplots()
    im = ax.imshow(np.ma.masked_invalid(values), cmap=cmap, origin="lower", aspect="auto")
    ax.set_xticks(range(values.shape[1]), [str(c) for c in col_labels])
    ax.set_yticks(range(values.shape[0]), [str(r) for r in row_labels])
    finite = values[np.isfinite(values)]
    middle = (finite.min() + finite.max()) / 2 if finite.size else 0.0
    for (r, c), v in np.ndenumerate(values):
        if np.isfinite(v):
            ax.text(c, r, fmt.format(v), ha="center", va="center", fontsize=7,
                    color="black" if v > middle else "white")
    ax.set(xlabel=xlabel, ylabel=ylabel, title=title)
    fig.colorbar(im, ax=ax, fraction=0.046, pad=0.04)
    return save_figure(fig, path, dpi)


class LiveCurves:
    """D2L's ``Animator`` for a notebook: ``fit(..., on_epoch=LiveCurves(epochs))`` redraws the loss and accuracy
    curves in the cell's output after every epoch, with a ``tqdm.auto`` progress bar over the epochs. The epoch
    itself stays one compiled ``lax.scan``: this only draws what ``fit`` hands its ``on_epoch`` callback (for a
    sweep, the mean over the members still alive). Outside IPython it draws nothing and the bar is a text bar;
    ``figure()`` returns the last drawing.

    Args:
      epochs: the epochs the run trains (the bar's length).
      name: the run's label in the legend.
      every: redraw every ``every`` epochs (and after the last): drawing costs ~0.1 s.
    """

    def __init__(self, epochs: int, name: str = "run", every: int = 1):
        from tqdm.auto import tqdm

        self.epochs, self.name, self.every = epochs, name, max(1, int(every))
        self.curves: dict = {}
        self.bar = tqdm(total=epochs, desc=name, unit="epoch", leave=False)
        self.handle = None

    def __call__(self, epoch: int, row: dict) -> None:
        for key in ("train_loss", "test_loss", "train_accuracy", "test_accuracy"):
            if key in row:
                values = np.asarray(row[key], float)[np.asarray(row["alive"], bool)]
                self.curves.setdefault(key, []).append(float(np.mean(values)) if values.size else np.nan)
        self.bar.set_postfix({k: f"{v[-1]:.3f}" for k, v in self.curves.items() if "test" in k})
        self.bar.update(1)
        last = epoch + 1 == self.epochs
        if last:
            self.bar.close()
        if (epoch + 1) % self.every == 0 or last:
            self._show()

    def figure(self) -> Any:
        """The curves so far as a ``matplotlib.figure.Figure``."""
        has_acc = "test_accuracy" in self.curves
        fig = _figure(figsize=(9 if has_acc else 4.8, 3.2))
        axes = fig.subplots(1, 2 if has_acc else 1, squeeze=False)[0]
        for ax, kind in zip(axes, ("loss", "accuracy")):
            for split, style in (("train", "-"), ("test", "--")):
                values = self.curves.get(f"{split}_{kind}")
                if values:
                    ax.plot(range(1, len(values) + 1), values, style, label=f"{self.name} {split}")
            ax.set(xlabel="epoch", ylabel=kind, xlim=(1, max(2, self.epochs)))
            ax.grid(alpha=0.3)
            ax.legend(fontsize=7)
        axes[0].set_yscale("log")
        fig.tight_layout()
        return fig

    def _show(self) -> None:
        try:
            from IPython import get_ipython
            from IPython.display import Image, display
        except ImportError:
            return
        if get_ipython() is None:
            return
        buffer = io.BytesIO()
        self.figure().savefig(buffer, format="png", dpi=80)
        image = Image(data=buffer.getvalue())
        if self.handle is None:
            self.handle = display(image, display_id=True)
        else:
            self.handle.update(image)
