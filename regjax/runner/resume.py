"""Resume planning: what a folder holds, whether ``--resume`` may continue it, and what a continued run must
match (the experiment, every argument that changes the computation, the data)."""
from __future__ import annotations

import dataclasses
import json
from pathlib import Path
from typing import Callable, NoReturn, Optional

from regjax.checkpoint import CheckpointError, read_checkpoint

__all__ = ["RESUME_FREE", "DATA_IDENTITY", "ResumePlan", "previous_status", "plan_resume", "data_differences"]

# Arguments that may differ between a run and its --resume (they change where and how it reports, not what
# it computes; --epochs may grow to continue a finished run).
RESUME_FREE = {"out", "resume", "overwrite", "quiet", "no_compile_cache", "debug_nans", "epochs", "devices",
               "coordinator", "num_processes", "process_id", "distributed"}
# What says two runs trained on the same data.
DATA_IDENTITY = ("name", "n_train", "n_test", "x_shape", "sha256_verified", "csv_sha1")


@dataclasses.dataclass(frozen=True)
class ResumePlan:
    """``resuming``: this run continues the checkpoints in ``--out``; ``saved``: that run's ``run.json``."""

    resuming: bool = False
    saved: Optional[dict] = None


def previous_status(out: Path) -> Optional[str]:
    """The status of the run ``out`` holds: its results.json's, ``'unknown'`` for checkpoints without one,
    ``'unreadable'``, or ``None`` for a folder without a run."""
    results = out / "results.json"
    if results.exists():
        try:
            return json.loads(results.read_text()).get("status", "unknown")
        except (ValueError, OSError, AttributeError):
            return "unreadable"
    return "unknown" if (out / "checkpoints" / "run.json").exists() else None


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
        say(f"--resume: no checkpoint in {out}; starting from scratch")
        return ResumePlan()
    try:
        saved = json.loads(run_file.read_text())
        saved["experiment"], saved["config"]
    except (ValueError, TypeError, KeyError) as err:
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
    for path in sorted(ckpt_dir.glob("*.msgpack")):
        try:
            read_checkpoint(path)
        except CheckpointError as err:
            refuse(f"{err}; delete it to retrain that part, or start over with --overwrite")
    return ResumePlan(True, saved)


def data_differences(saved: Optional[dict], summary: dict) -> Optional[str]:
    """How the data of a resumed run differ from the checkpointed run's (``None``: the same, or unknown)."""
    if not saved:
        return None
    diff = [k for k in DATA_IDENTITY if saved.get(k) != summary.get(k)]
    if not diff:
        return None
    return ("--resume: the checkpointed run trained on other data ("
            + "; ".join(f"{k}: {saved.get(k)!r}, now {summary.get(k)!r}" for k in diff)
            + "); provide the same data, or start over with --overwrite")
