"""The training engine: ONE core behind a single run (``fit``) and a vectorized sweep (``sweep``).

Layers, each a module::

    spec      TrainSpec: the validated, hashable static configuration (model, optimizer, loss/task, batch sizes,
              penalty mask) -- the key of the program cache
    hparams   the traced hyperparameters (lr, lam, weight_decay, model keys): honoured or refused
    step      make_step / make_epoch (lax.scan) / make_evaluate, init_state and the key schedule
    program   a member's train and evaluate functions, laid out for one run or N members, and the AOT cache
    core      the prologue (checks) and the epoch driver both front ends share
    fitting   fit, run_steps                      sweeping sweep, init_members, train_sequentially, fit_loop
    members   Members, grid                       memory   measured chunk sizes
    history   History, SweepHistory, Diverged     results  SweepResult, group_stats
"""
from regjax.engine.core import check_data, check_labels
from regjax.engine.fitting import fit, run_steps
from regjax.engine.history import Diverged, History, SweepHistory
from regjax.engine.hparams import INJECTED, RANGES, check_hparams
from regjax.engine.members import Members, grid
from regjax.engine.memory import available_memory, plan_chunk_size
from regjax.engine.results import SweepResult, group_stats
from regjax.engine.spec import LOSSES, TrainSpec, resolve_loss
from regjax.engine.step import epoch_key, init_state, make_epoch, make_evaluate, make_step, run_keys, start_state
from regjax.engine.sweeping import fit_loop, init_members, sweep, train_sequentially

__all__ = [
    "fit", "run_steps", "sweep", "init_members", "train_sequentially", "fit_loop",
    "TrainSpec", "LOSSES", "resolve_loss", "check_hparams", "INJECTED", "RANGES", "check_data", "check_labels",
    "make_step", "make_epoch", "make_evaluate", "init_state", "start_state", "run_keys", "epoch_key",
    "History", "SweepHistory", "Diverged", "Members", "grid", "SweepResult", "group_stats",
    "available_memory", "plan_chunk_size",
]
