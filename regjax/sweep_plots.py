"""Plots of sweeps: curves with mean ± std bands over seeds or folds, side by side, and heatmaps of a grid.

(Small PNGs, same writer as ``regjax.report``: temp file then rename.)
"""
from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from regjax.report import _pyplot

__all__ = ["plot_panels", "plot_heatmap"]


def plot_panels(panels, path, title: str = "", dpi: int = 80) -> Path:
    """One row of panels. Each panel is a dict: ``series`` (label -> ``(x, mean)`` or ``(x, mean, std)``; a
    std draws a shaded ±1 std band), ``xlabel``, ``ylabel``, optional ``xscale``/``yscale`` (``'log'``,
    ``'symlog'`` -- for grids that include 0 --, ``'linear'``), ``marks`` (label -> x: dotted vertical
    lines, e.g. the chosen λ) and ``title``."""
    plt = _pyplot()
    fig, axes = plt.subplots(1, len(panels), figsize=(4.3 * len(panels), 3.3), squeeze=False)
    colors = plt.rcParams["axes.prop_cycle"].by_key()["color"]
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
    _save_at(fig, path, dpi)
    plt.close(fig)
    return Path(path)


def plot_heatmap(values, row_labels, col_labels, path, *, xlabel: str, ylabel: str, title: str = "",
                 fmt: str = "{:.3f}", dpi: int = 80, cmap: str = "viridis") -> Path:
    """A grid of values (rows x columns) as a colored table with the numbers written in (NaN: blank)."""
    plt = _pyplot()
    values = np.asarray(values, float)
    fig, ax = plt.subplots(figsize=(1.0 + 0.75 * values.shape[1], 0.8 + 0.55 * values.shape[0]))
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
    _save_at(fig, path, dpi)
    plt.close(fig)
    return Path(path)


def _save_at(fig, path, dpi):
    """Like ``regjax.report._save`` (temp file, then rename) at ``dpi`` (the README embeds these: keep them small)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.stem + ".tmp" + path.suffix)
    fig.savefig(tmp, dpi=dpi, bbox_inches="tight")
    os.replace(tmp, path)
