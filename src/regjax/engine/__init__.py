"""The training engine: the lesson's step and epoch, compiled, behind a single run (``fit``) and a vectorized sweep
(``sweep``).

Read ``core`` first: the keys, the initial state, the step (loss + ``lam * l2_penalty``, the gradient, the
optimizer's update), the epoch (``lax.scan`` over the batches) and the evaluation, top to bottom. Around it, each
in its named place::

    core       the lesson: run_keys, epoch_key, init_state, make_step, epoch_fn, evaluate_fn
    train      the front ends: fit, sweep, run_steps
    program    a member and the member axis: the member's train/evaluate, laid out single or vmapped, placed,
               compiled (and make_epoch / make_evaluate: the lesson's epoch and evaluation jitted alone)
    loop       the epoch driver: prologue checks, timing, evaluation, history, divergence, callbacks, chunk calls
    memory     how many members fit: XLA's measured peak against the free memory, the chunk plan
    spec       TrainSpec: the validated, hashable static configuration (model, optimizer, loss, batch sizes, mask)
    hparams    the traced hyperparameters (lr, lam, weight_decay, l1, model keys): honoured or refused
    members    Members and grid: the N configurations of a sweep; take/concat along the member axis
    history    History (the metrics of a run's members), Diverged
    results    SweepResult, group_stats
    baselines  train_sequentially, fit_loop: the sequential paths a sweep is timed against
"""
from regjax.engine.baselines import fit_loop, train_sequentially
from regjax.engine.core import epoch_fn, epoch_key, evaluate_fn, init_state, make_step, run_keys
from regjax.engine.history import Diverged, History
from regjax.engine.hparams import INJECTED, RANGES, check_hparams
from regjax.engine.loop import check_data, check_labels
from regjax.engine.members import Members, concat, grid, take
from regjax.engine.memory import available_memory, peak_bytes, plan_chunk_size
from regjax.engine.program import make_epoch, make_evaluate
from regjax.engine.results import SweepResult, group_stats
from regjax.engine.spec import LOSSES, TrainSpec, resolve_loss
from regjax.engine.train import fit, run_steps, sweep

__all__ = [
    "fit", "sweep", "run_steps", "train_sequentially", "fit_loop",
    "run_keys", "epoch_key", "init_state", "make_step", "epoch_fn", "make_epoch", "evaluate_fn", "make_evaluate",
    "TrainSpec", "LOSSES", "resolve_loss", "check_hparams", "INJECTED", "RANGES", "check_data", "check_labels",
    "History", "Diverged", "Members", "grid", "take", "concat", "SweepResult", "group_stats",
    "available_memory", "peak_bytes", "plan_chunk_size",
]
