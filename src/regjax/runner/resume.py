"""Resume planning: what a folder holds, whether ``--resume`` may continue it, and what a continued run must
match (the experiment, every argument that changes the computation, the data)."""
from __future__ import annotations

import dataclasses
import hashlib
import json
from pathlib import Path
from typing import Any, Callable, NoReturn, Optional

import numpy as np

from regjax.checkpoint import CheckpointError, read_checkpoint

__all__ = ["RESUME_FREE", "DATA_IDENTITY", "ResumePlan", "previous_status", "plan_resume", "data_differences",
           "content_digest", "config_digest"]

# Arguments that may differ between a run and its --resume (they change where and how it reports, not what
# it computes; --epochs may grow to continue a finished run).
RESUME_FREE = {"out", "resume", "overwrite", "quiet", "no_compile_cache", "debug_nans", "epochs", "devices",
               "coordinator", "num_processes", "process_id", "distributed"}
# What says two runs trained on the same data: names and shapes, and digests of the contents actually used
# (image arrays: content_sha256; the house-price CSVs: csv_sha1).
DATA_IDENTITY = ("name", "n_train", "n_test", "x_shape", "sha256_verified", "content_sha256", "csv_sha1")


@dataclasses.dataclass(frozen=True)
class ResumePlan:
    """``resuming``: this run continues the checkpoints in ``--out``; ``saved``: that run's ``run.json``."""

    resuming: bool = False
    saved: Optional[dict] = None


def previous_status(out: Path) -> Optional[str]:
    """The status of the run ``out`` holds: its results.json's, ``'unknown'`` for checkpoints (or run.json)
    without one, ``'unreadable'``, or ``None`` for a folder without a run."""
    results = out / "results.json"
    if results.exists():
        try:
            return json.loads(results.read_text()).get("status", "unknown")
        except (ValueError, OSError, AttributeError):
            return "unreadable"
    ckpt_dir = out / "checkpoints"
    return "unknown" if (ckpt_dir / "run.json").exists() or any(ckpt_dir.glob("*.msgpack")) else None


def plan_resume(out: Path, experiment: str, config: dict, *, resume: bool, overwrite: bool,
                refuse: Callable[[str], NoReturn], say: Callable[[str], None]) -> ResumePlan:
    """Decide before training whether this run resumes, starts fresh, or is refused (``refuse(message)``
    exits 2): ``--resume`` needs the same experiment and arguments (``RESUME_FREE`` aside) and readable
    checkpoints; a new run never replaces an unfinished one without ``--overwrite``."""
    ckpt_dir = out / "checkpoints"
    run_file = ckpt_dir / "run.json"
    if resume and overwrite:
        refuse("--resume and --overwrite exclude each other")
    if not resume:
        previous = previous_status(out)
        if previous not in (None, "completed") and not overwrite:
            how = ("replace it with --overwrite (resuming would diverge again)" if previous == "diverged" else
                   "continue it with --resume, replace it with --overwrite")
            refuse(f"--out {out} holds an unfinished run (status: {previous}); {how}, or choose another --out")
        return ResumePlan()
    if not run_file.exists():
        orphans = sorted(p.name for p in ckpt_dir.glob("*.msgpack"))
        if orphans:  # never start over (and delete them) because the run's description is gone
            shown = ", ".join(orphans[:3]) + (" ..." if len(orphans) > 3 else "")
            refuse(f"--resume: {ckpt_dir} holds checkpoints ({shown}) but no run.json, so what they were trained "
                   f"with cannot be checked; restore run.json, move them away, or start over with --overwrite "
                   f"(which deletes them)")
        say(f"--resume: no checkpoint in {out}; starting from scratch")
        return ResumePlan()
    try:
        saved = json.loads(run_file.read_text())
        if not isinstance(saved.get("config"), dict):
            raise TypeError("its config is not a mapping")
    except (ValueError, TypeError, KeyError, AttributeError) as err:
        refuse(f"--resume: {run_file} is corrupt ({type(err).__name__}); start over with --overwrite")
    if saved.get("experiment") != experiment:
        refuse(f"--resume: {out} holds a run of {saved.get('experiment')!r}, not {experiment!r}")
    theirs = saved.get("config", {})
    diff = [k for k in sorted(set(config) | set(theirs)) if k not in RESUME_FREE and config.get(k) != theirs.get(k)]
    if diff:
        shown = "; ".join(f"--{k.replace('_', '-')}: checkpoint {theirs.get(k)!r}, now {config.get(k)!r}"
                          for k in diff)
        refuse(f"--resume: the checkpoint in {out} was made with other arguments ({shown}); rerun with the same "
               f"arguments, or use --overwrite / another --out")
    this_config = config_digest(config)
    for path in sorted(ckpt_dir.glob("*.msgpack")):   # every checkpoint, before the first variant trains
        try:
            meta = json.loads(read_checkpoint(path).get("meta") or "{}")
        except (CheckpointError, ValueError, TypeError) as err:
            refuse(f"{err}; delete it to retrain that part, or start over with --overwrite")
        if meta.get("experiment") != experiment:
            refuse(f"--resume: checkpoint {path} belongs to the experiment {meta.get('experiment')!r}, not "
                   f"{experiment!r}; delete it to retrain that part, or start over with --overwrite")
        if meta.get("config_sha256", this_config) != this_config:
            refuse(f"--resume: checkpoint {path} was made with other arguments than this run's; delete it to "
                   f"retrain that part, or start over with --overwrite")
    return ResumePlan(True, saved)


def config_digest(config: dict) -> str:
    """A SHA-256 of the arguments that change what a run computes (``RESUME_FREE`` left out): every checkpoint
    records it, so a checkpoint made with other arguments is refused before any variant trains."""
    kept = {k: v for k, v in config.items() if k not in RESUME_FREE}
    return hashlib.sha256(json.dumps(kept, sort_keys=True, default=str).encode()).hexdigest()


def content_digest(*arrays: Any) -> str:
    """A SHA-256 over the arrays' shapes, dtypes and bytes (what a run trained on, not where it came from)."""
    h = hashlib.sha256()
    for a in arrays:
        a = np.ascontiguousarray(a)
        h.update(f"{a.shape}{a.dtype};".encode())
        h.update(a.data)
    return h.hexdigest()


def data_differences(saved: Optional[dict], summary: dict) -> Optional[str]:
    """How the data of a resumed run differ from the checkpointed run's (``None``: the same, or unknown)."""
    if not saved:
        return None
    # a key the checkpointed run did not record (written before it existed) cannot be compared
    diff = [k for k in DATA_IDENTITY if k in saved and saved.get(k) != summary.get(k)]
    if not diff:
        return None
    return ("--resume: the checkpointed run trained on other data ("
            + "; ".join(f"{k}: {saved.get(k)!r}, now {summary.get(k)!r}" for k in diff)
            + "); provide the same data, or start over with --overwrite")
