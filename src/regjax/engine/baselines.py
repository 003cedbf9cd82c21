"""The sequential baselines a sweep is timed against (``experiments/sweep.py``, ``benchmarks/sweep.py``):
the same members trained one after another."""
from __future__ import annotations

import time
from typing import Any, Optional, Tuple

import jax
import optax

from regjax.base import Data, Model, TrainState
from regjax.engine.core import init_state
from regjax.engine.history import Diverged, History
from regjax.engine.hparams import check_hparams
from regjax.engine.loop import Loop, check_data, compile_loop, run_epochs
from regjax.engine.members import Members, concat, take
from regjax.engine.program import MemberInputs, program
from regjax.engine.spec import TrainSpec
from regjax.engine.train import fit

__all__ = ["train_sequentially", "fit_loop"]


def train_sequentially(model: Model, optimizer: optax.GradientTransformation, data: Data, members: Members, *,
                       epochs: int, batch_size: int, loss: Any = "cross_entropy", task: Optional[str] = None,
                       penalty_mask: Any = None, drop_remainder: bool = False, eval_batch_size: int = 1024
                       ) -> Tuple[TrainState, dict]:
    """The fair sequential baseline: the member functions a sweep vmaps, compiled ONCE for a single member (the
    program ``fit`` runs), and the members trained one after another in a Python loop through the same epoch
    driver (each epoch's metrics fetched, as the sweep does). Shared data only. Returns ``(stacked final
    states, {'compile_s', 'train_s'})``."""
    spec = TrainSpec.build(model, optimizer, batch_size=batch_size, loss=loss, task=task, penalty_mask=penalty_mask,
                           drop_remainder=drop_remainder, eval_batch_size=eval_batch_size)
    if members.data_index is not None:
        raise ValueError("train_sequentially takes shared data only (members without data_index)")
    data = tuple(jax.device_put(check_data(data, spec.task)))
    states = init_state(model, optimizer, members.keys)
    hparams = check_hparams(model, states.opt_state, members.hparams)

    def loop_of(i: int) -> Loop:
        inputs = MemberInputs(members.keys[i], take(hparams, i), jax.numpy.array(True), None)
        return Loop(program(spec, members=False), inputs, data, int(data[0].shape[0]), jax.device_put,
                    members=False)

    t0 = time.perf_counter()
    compiled, _ = compile_loop(loop_of(0), take(states, 0), History(), 0)
    compile_s = time.perf_counter() - t0
    t0 = time.perf_counter()
    finals = []
    for i in range(len(members)):
        try:
            state = run_epochs(loop_of(i), compiled, take(states, i), History(), start_epoch=0, epochs=epochs)
        except Diverged as err:  # a sweep freezes a diverged member; the baseline keeps its last finite state
            state = err.state
        finals.append(jax.tree_util.tree_map(lambda a: a[None], state))
    train_s = time.perf_counter() - t0
    return concat(finals), {"compile_s": compile_s, "train_s": train_s}


def fit_loop(model: Model, optimizer: optax.GradientTransformation, data: Data, members: Members, *,
             epochs: int, **fit_kwargs: Any) -> dict:
    """The natural sequential path: one ``fit`` call per member (its key and hyperparameters), timed. Returns
    ``{'compile_s', 'train_s', 'wall_s'}``: the compile seconds the ``fit`` calls report (the first compiles,
    the rest find the program cached), the rest of the wall time, and the whole."""
    t0 = time.perf_counter()
    compile_s = 0.0
    for i in range(len(members)):
        _, history = fit(model, optimizer, data, epochs=epochs, key=members.keys[i],
                         hparams=take(members.hparams, i), **fit_kwargs)
        compile_s += history.compile_time_s
    wall = time.perf_counter() - t0
    return {"compile_s": compile_s, "train_s": wall - compile_s, "wall_s": wall}
