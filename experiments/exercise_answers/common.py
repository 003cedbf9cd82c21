"""What the sections' answers share: the answer record, seeds and their statistics, tiny sizes for tests."""
from __future__ import annotations

import math
import time
from pathlib import Path
from typing import Any, NamedTuple, Optional

import numpy as np

from regjax import scratch_sgd
from regjax.engine import group_stats
from regjax.plots import plot_panels

# The from-scratch SGD step of the lessons. Every answer gives its learning rate as a hyperparameter ('lr': in
# hparams, or an axis of the sweep's members), which is injected into this one optimizer object: answers at any
# learning rate share compiled programs.
SCRATCH_SGD = scratch_sgd(0.1)


def answer(id_: str, question: str, text: str, plot: Any = None, *, table: Optional[str] = None, **data: Any) -> dict:
    """One answered exercise: its book number (``'§5.2.1'``), the question in a few words, the answer, the plot
    (a path) and/or a markdown ``table``, and the numbers behind them (``data``, into results.json)."""
    if plot is None and table is None:
        raise ValueError(f"{id_}: an answer with data needs a plot or a table")
    return {"id": id_, "question": question, "answer": text, "plot": None if plot is None else str(plot),
            "table": table, "data": data}


def figure(section: str, name: str, caption: str, plot: Any, **data: Any) -> dict:
    """One of the book's figures redrawn (not an exercise): ``figure('5.1', 'activations', 'ReLU, sigmoid, tanh
    and their derivatives', path)``; listed with the section's answers, before them."""
    return {"id": f"§{section} figure {name}", "question": caption, "answer": "", "plot": str(plot), "table": None,
            "data": data, "figure": True}


def markdown(answers: list) -> str:
    """The answers as one markdown page (question, answer, table, plot)."""
    parts = []
    for a in answers:
        part = f"**{a['id']}** {a['question']}\n{a['answer']}"
        if a.get("table"):
            part += "\n\n" + a["table"]
        if a.get("plot"):
            part += f"\n![{a['id']}]({Path(a['plot']).name})"
        parts.append(part)
    return "\n\n".join(parts) + "\n"


def table(header: list, rows: list) -> str:
    """A markdown table; floats with 4 significant digits."""
    cell = lambda v: f"{v:.4g}" if isinstance(v, float) else str(v)
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(cell(v) for v in row) + " |" for row in rows]
    return "\n".join(lines)


def tiny(run, full: Any, small: Any) -> Any:
    """``small`` under ``--tiny`` (a seconds-long run that checks the command works; its numbers mean nothing),
    else ``full``."""
    return small if run.args.tiny else full


def timed(fn: Any, repeats: int, *, best: bool = False) -> float:
    """Seconds per call of ``fn()`` (a function that blocks until its result is ready, e.g. ends in
    ``jax.block_until_ready``): one warm-up call (compilation, caches), then the median of ``repeats`` timed calls
    -- or their minimum with ``best`` (the least disturbed by other processes)."""
    fn()
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return float(np.min(times) if best else np.median(times))


def seeds_of(args) -> list:
    """``--seeds`` seeds from ``--seed`` on (at most 2 under ``--tiny``)."""
    return list(range(args.seed, args.seed + (min(args.seeds, 2) if args.tiny else args.seeds)))


def stats(members, values, by) -> tuple:
    """Mean and std over seeds of ``values`` (one per member), grouped by the config keys ``by``."""
    s = group_stats(members.configs, values, by)
    return np.array([r["mean"] for r in s]), np.array([r["std"] for r in s])


def loss_against(members, res, key: str, x, path, *, xlabel: str, xscale: str, title: str, suptitle: str,
                 test_label: str = "test") -> tuple:
    """Final train and test loss (mean, std over seeds) against the hyperparameter ``key`` of a sweep, plotted;
    returns ``(train_mean, train_std, test_mean, test_std, index of the lowest test loss, plot path)``."""
    train_m, train_s = stats(members, res.final("train_loss"), [key])
    test_m, test_s = stats(members, res.final("test_loss"), [key])
    plot = plot_panels([{"series": {"train": (x, train_m, train_s), test_label: (x, test_m, test_s)}, "xlabel": xlabel,
                         "ylabel": "final loss", "xscale": xscale, "yscale": "log", "title": title}], path, suptitle)
    return train_m, train_s, test_m, test_s, int(np.nanargmin(test_m)), plot


def sample_std(values, axis: Optional[int] = None, *, single: Optional[float] = 0.0) -> Any:
    """The sample std (ddof 1, as ``group_stats``: the convention of every ± here) over seeds or draws -- over
    all values, or along ``axis`` -- and ``single`` where there is only one: 0 by default (no spread seen),
    ``math.nan`` where a spread is undefined, or None for nothing at all (no band in a plot)."""
    v = np.asarray(values, float)
    n = v.size if axis is None else v.shape[axis]
    if n > 1:
        sd = v.std(axis=axis, ddof=1)
    elif single is None:
        return None
    else:
        sd = np.full_like(v.mean(axis=axis), single)
    return float(sd) if np.ndim(sd) == 0 else sd


class SeedStats(NamedTuple):
    """Per-member values summarised over seeds: the mean and sample std of the finite ones, and how many members
    diverged (a non-finite value: left out). Prints as ``0.9120 ± 0.0040`` (`` (1 diverged)`` added if any)."""
    mean: float
    std: float
    diverged: int = 0

    def __str__(self) -> str:
        return f"{self.mean:.4f} ± {self.std:.4f}" + (f" ({self.diverged} diverged)" if self.diverged else "")


def seed_stats(values) -> SeedStats:
    """Mean ± sample std (``sample_std``: 0 for one seed) over seeds of per-member values, the diverged (NaN or
    infinite) members left out and counted; mean and std are NaN when every member diverged."""
    v = np.asarray(values, float)
    ok = v[np.isfinite(v)]
    if not ok.size:
        return SeedStats(math.nan, math.nan, int(v.size))
    return SeedStats(float(ok.mean()), sample_std(ok), int(v.size - ok.size))


def mean_std(values) -> str:
    """``mean ± std`` (``sample_std``) in 4 decimals over every value (a NaN shows; ``seed_stats`` leaves the
    diverged members out)."""
    v = np.asarray(values, float)
    return str(SeedStats(float(v.mean()), sample_std(v)))


def paired(a, b=None, *, single_std: float = math.nan, diverged_beyond: bool = False) -> dict:
    """The difference ``a - b`` paired by seed (or by fold): ``a`` and ``b`` hold one value per seed, the same
    seeds in the same order (``b`` omitted: ``a`` already holds the per-seed differences, or any per-seed
    contrast). Configurations that share their seeds (initialization, data order) share that noise, and the
    per-seed difference cancels it. Returns the differences' ``mean``, sample ``std``, the standard error of the
    mean ``se`` = std/√n, ``n``, and the verdict ``beyond``: |mean| > 2 standard errors.

    Each caller's convention is explicit: ``single_std`` is the std of a single difference (NaN by default: one
    seed cannot tell the difference from noise, so it is never beyond; §5.2 uses 0, so any nonzero difference
    counts); a non-finite difference (a diverged member) makes mean, std and se non-finite, and
    ``diverged_beyond`` is then the verdict (False by default; §5.2 counts a diverged setting as beyond)."""
    d = np.asarray(a, float) - (0.0 if b is None else np.asarray(b, float))
    n = int(d.size)
    if not n or not np.isfinite(d).all():
        return {"mean": float(d.mean()) if n else math.nan, "std": math.nan, "se": math.nan, "n": n,
                "beyond": diverged_beyond}
    sd = sample_std(d, single=single_std)
    se = sd / math.sqrt(n)
    return {"mean": float(d.mean()), "std": sd, "se": se, "n": n, "beyond": bool(abs(d.mean()) > 2 * se)}


def signed(p: dict, spread: str = "se") -> str:
    """A paired difference (``paired``) as ``+0.0120 ± 0.0060``: its mean and its standard error (``spread='std'``:
    the std of the per-seed differences instead), 4 decimals."""
    return f"{p['mean']:+.4f} ± {p[spread]:.4f}"


def trend(values) -> str:
    d = np.diff(np.asarray(values, float))
    if (d >= 0).all():
        return "rises monotonically"
    return "falls monotonically" if (d <= 0).all() else "changes non-monotonically"


def pair(a, b) -> str:
    return f"{a:.3g} / {b:.3g}"


def in_book_order(answers: list) -> list:
    """Answers sorted by their exercise number (some are computed out of order: one needs another's result)."""
    def key(a):
        number, _, figure_name = a["id"].lstrip("§").partition(" figure ")
        parts = tuple(int(p) for p in number.split("."))
        return (parts[:2], 0, figure_name) if figure_name else (parts[:2], 1, parts[2:])
    return sorted(answers, key=key)
