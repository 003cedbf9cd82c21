"""Hyperparameter search strategies replayed on recorded per-epoch curves (§5.2 ex. 5).

``curves`` is a ``(configurations, epochs)`` array of validation accuracy, one row per configuration of a grid,
recorded after every epoch of one full-length run. A member's first epochs do not depend on how long it will run,
so a strategy that trains a configuration for ``e`` epochs sees exactly ``curves[i, e - 1]``: every strategy below
is replayed on the same curves without training anything again, and compared with the grid at equal footing.

- ``grid_best``: the exhaustive grid over configurations x epoch counts (the epochs come free from the curves).
- ``random_search``: a few random (configuration, epoch count) picks from the same points, replayed many times.
- ``successive_halving``: train everything briefly, keep the best 1/eta, continue, and so on.
"""
from __future__ import annotations

import math

import numpy as np


def grid_best(curves) -> tuple:
    """The grid's best point: ``(configuration index, epoch count)`` of the highest value in ``curves``."""
    k, e = np.unravel_index(int(np.argmax(curves)), np.shape(curves))
    return int(k), int(e + 1)


def random_search(curves, rng, trials: int, draws: int = 2000) -> dict:
    """How often ``trials`` random (configuration, epoch count) picks -- drawn from the same (configuration, epoch
    1..E) points the grid's maximum is taken over -- come within 0.01 of the grid's best validation accuracy, over
    ``draws`` replays with the numpy Generator ``rng``."""
    points = curves.ravel()
    found = points[rng.integers(0, points.size, (draws, trials))].max(axis=1)
    return {"trials": trials, "draws": draws, "within": float(np.mean(found >= curves.max() - 0.01)),
            "median_found": float(np.median(found)), "epochs": [1, int(curves.shape[1])]}


def successive_halving(curves, cost, eta: int = 3) -> dict:
    """Successive halving: rungs at E/eta², E/eta and E epochs (at least 1), the best 1/eta of the configurations
    kept at each rung (rounded up; at the last, the one winner). ``cost`` is each configuration's compute per epoch
    (e.g. its parameter count times its seeds). Returns the rungs, the winner's index, and the epochs and the
    compute it spent as fractions of the full grid's."""
    epochs = curves.shape[1]
    rungs = sorted({max(1, round(epochs / eta ** 2)), max(1, round(epochs / eta)), epochs})
    while len(rungs) < 3:
        rungs.insert(0, rungs[0])
    alive, done, epoch_cost, compute = np.arange(len(curves)), 0, 0, 0.0
    for r in rungs:
        epoch_cost += len(alive) * (r - done)
        compute += cost[alive].sum() * (r - done)
        done = r
        order = alive[np.argsort(-curves[alive, r - 1], kind="stable")]
        alive = order[:max(1, math.ceil(len(alive) / eta))] if r < epochs else order[:1]
    return {"rungs": rungs, "winner": int(alive[0]), "epoch_fraction": epoch_cost / curves.size,
            "cost_fraction": compute / (cost.sum() * epochs)}
