"""What a sweep returns: ``SweepResult`` (members, stacked final state, history, how it ran) with its tidy
member tables, and ``group_stats`` (mean ± std over seeds or folds)."""
from __future__ import annotations

import dataclasses
import json
import math
from pathlib import Path
from typing import Any, Sequence

import jax
import numpy as np

from regjax.base import TrainState
from regjax.engine.history import METRICS, History
from regjax.engine.members import Members
from regjax.report import json_safe, write_bytes_atomic

__all__ = ["SweepResult", "group_stats"]


@dataclasses.dataclass
class SweepResult:
    """What a sweep returns: the members, their stacked final ``state`` (member axis first; a diverged member's
    state is its last finite one), the per-epoch ``history``, and how it ran (``chunk_size``, ``memory``)."""

    members: Members
    state: TrainState
    history: History
    chunk_size: int
    memory: dict

    def final(self, metric: str = "test_loss") -> np.ndarray:
        """(N,) the last epoch's ``metric`` per member (NaN for a diverged member)."""
        return self.history.metric(metric)[-1]

    def table(self, *, params: bool = False) -> list:
        """The tidy member table: one row per member with its config, status, final metrics and per-epoch
        metrics (lists over epochs); ``params=True`` adds the final parameters (nested lists)."""
        status = self.history.member_status()
        per_epoch = {m: self.history.metric(m) for m in METRICS if getattr(self.history, m) is not None}
        rows = []
        for i, config in enumerate(self.members.configs):
            row = {"member": i, **config, "status": status[i], "diverged_epoch": self.history.diverged_epoch[i],
                   **{f"final_{m}": float(v[-1, i]) for m, v in per_epoch.items()},
                   "per_epoch": {m: v[:, i].tolist() for m, v in per_epoch.items()}}
            if params:
                row["params"] = jax.tree_util.tree_map(lambda a: np.asarray(a[i]).tolist(), self.state.params)
            rows.append(row)
        return rows

    def long_rows(self) -> list:
        """One row per (member, epoch): the long ("tidy data") layout for data-frame tools."""
        return [{"member": r["member"], "epoch": e + 1,
                 **{k: v for k, v in r.items() if k not in ("member", "per_epoch") and not k.startswith("final_")},
                 **{m: vals[e] for m, vals in r["per_epoch"].items()}}
                for r in self.table() for e in range(self.history.epochs)]

    def best(self, metric: str = "test_loss", mode: str = "min") -> dict:
        """The table row of the member with the best final ``metric`` (diverged members excluded)."""
        values = self.final(metric)
        if np.all(np.isnan(values)):
            raise ValueError(f"no member has a finite final {metric}")
        i = int(np.nanargmin(values) if mode == "min" else np.nanargmax(values))
        row = self.table()[i]
        row.pop("per_epoch")
        return row

    def to_dict(self, *, per_epoch: bool = False, params: bool = False) -> dict:
        """Summary and member table, JSON-able. Without ``per_epoch`` the rows hold final metrics only (the
        per-epoch metrics are in the ``History``, which the runner writes into results.json anyway)."""
        rows = self.table(params=params)
        if not per_epoch:
            for row in rows:
                row.pop("per_epoch")
        return {"num_members": len(self.members), "epochs": self.history.epochs, "status": self.history.status,
                "chunk_size": self.chunk_size, "memory": self.memory,
                "compile_time_s": self.history.compile_time_s, "train_time_s": float(sum(self.history.epoch_time_s)),
                "eval_time_s": float(sum(self.history.eval_time_s)),
                "members": rows}

    def save(self, path: Any, *, params: bool = False) -> Path:
        """The full tidy table (per-epoch metrics included; ``params`` adds the final parameters) as compact
        JSON, written atomically; NaN becomes ``null``."""
        text = json.dumps(json_safe(self.to_dict(per_epoch=True, params=params)), allow_nan=False, separators=(",", ":"))
        return write_bytes_atomic(path, text.encode())


def group_stats(configs: Sequence[dict], values: Any, by: Sequence[str]) -> list:
    """Mean, standard deviation (ddof=1 when n > 1) and count of ``values`` (one per member) grouped by the
    config keys ``by`` -- e.g. over seeds: ``group_stats(result.members.configs, result.final(), ['lam'])``.
    Non-finite values (diverged members) are left out and counted in ``n_diverged``."""
    groups: dict = {}
    for config, v in zip(configs, np.asarray(values, np.float64)):
        key = tuple(_hashable(config[b]) for b in by)
        groups.setdefault(key, []).append(v)
    out = []
    for key, vals in groups.items():
        vals = np.asarray(vals)
        ok = vals[np.isfinite(vals)]
        out.append({**dict(zip(by, (list(k) if isinstance(k, tuple) else k for k in key))),
                    "mean": float(ok.mean()) if ok.size else math.nan,
                    "std": float(ok.std(ddof=1)) if ok.size > 1 else (0.0 if ok.size else math.nan),
                    "n": int(ok.size), "n_diverged": int(vals.size - ok.size)})
    return out


def _hashable(v: Any) -> Any:
    return tuple(v) if isinstance(v, list) else v
