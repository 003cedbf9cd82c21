"""Hyperparameters a run may vary without recompiling: each key either takes effect or is refused.

==================  ============================================================================================
``lr``              the learning rate of an optimizer built with ``optax.inject_hyperparams`` (every optimizer
                    of ``regjax.optim`` is: ``scratch_sgd``, ``sgd``, ``decayed_sgd``, ``adam_l2``, ``adamw``,
                    ``l1_decayed_sgd``), where it sets ``learning_rate``
``lam``             λ of the explicit penalty ``lam * l2_penalty(params, penalty_mask)`` added to the loss
``weight_decay``    λ of the decay inside an optimizer (``decayed_sgd``, ``adam_l2``, ``adamw``)
``l1``              the L1 strength inside ``l1_decayed_sgd``
model keys          what the model declares in ``Model.hparams`` (the scratch MLP: ``rates``)
==================  ============================================================================================

They travel as arrays *into* the compiled functions, so the same program can be vmapped over them (a sweep).
Concrete values are checked where they enter the engine (lr > 0, λ ≥ 0, rates in [0, 1], all finite, also after
conversion to float32); inside the compiled step they are traced and unchecked.
"""
from __future__ import annotations

import math
from typing import Any, Mapping, Optional

import jax.numpy as jnp
import numpy as np
import optax

from regjax._checks import check_in_range
from regjax.base import Model

__all__ = ["INJECTED", "RANGES", "injectable", "check_hparams", "with_injected"]

# hparams key -> the hyperparameter's name inside an optax.inject_hyperparams state
INJECTED = {"lr": "learning_rate", "weight_decay": "weight_decay", "l1": "l1"}
# (low, high, low_open): the allowed interval of each known hyperparameter (all must be finite)
RANGES = {"lr": (0.0, math.inf, True), "lam": (0.0, math.inf, False), "weight_decay": (0.0, math.inf, False),
          "l1": (0.0, math.inf, False), "rates": (0.0, 1.0, False)}


def injectable(opt_state: Any) -> dict:
    """The hyperparameters an ``optax.inject_hyperparams`` state lets us set (``{}`` for any other state);
    scheduled ones are left out: optax recomputes them from their schedule and would overwrite ours."""
    if isinstance(opt_state, (optax.InjectHyperparamsState, optax.InjectStatefulHyperparamsState)):
        scheduled = getattr(opt_state, "hyperparams_states", {}) or {}
        return {k: v for k, v in opt_state.hyperparams.items() if k not in scheduled}
    return {}


def _refusal_hint(key: str) -> str:
    if key == "weight_decay":
        return (" -- this optimizer has no weight decay inside it: use 'lam' (the penalty in the loss), or build the "
                "optimizer with regjax.optim.decayed_sgd / adam_l2 / adamw")
    if key in INJECTED:
        return (f" -- this optimizer exposes no injectable {INJECTED[key]!r}: build it with regjax.optim's "
                f"optimizers or optax.inject_hyperparams, or leave {key!r} out")
    if key == "rates":
        return (" -- this model's dropout rates are static (flax.linen.Dropout / flax.nnx.Dropout attributes): set "
                "them when building the model; traced, sweepable rates need the scratch model (impl='scratch')")
    return ""


def check_hparams(model: Model, opt_state: Any, hparams: Optional[Mapping[str, Any]]) -> dict:
    """Validate ``hparams`` for this model and the optimizer whose state is ``opt_state``; return them as float32
    arrays.

    Every key must take effect on this route; concrete values must lie in their range (element-wise for the
    arrays of a sweep). Raises ``ValueError`` naming the key and what is allowed.
    """
    hparams = dict(hparams or {})
    available = injectable(opt_state)
    allowed = {"lam", *model.hparams, *(k for k, name in INJECTED.items() if name in available)}
    for key in hparams:
        if key not in allowed:
            raise ValueError(f"unknown hparams key {key!r}; allowed here: {sorted(allowed)}{_refusal_hint(key)}")
    out = {}
    for key, value in hparams.items():
        with np.errstate(over="ignore", under="ignore"):
            out[key] = jnp.asarray(value, jnp.float32)
        if key in RANGES:  # the value given, and the float32 it becomes (1e-50 -> 0, 1e39 -> inf)
            low, high, low_open = RANGES[key]
            for v in (value, out[key]):
                check_in_range(v, f"hparams[{key!r}]", low, high, low_open=low_open, high_open=math.isinf(high))
    return out


def with_injected(opt_state: Any, hparams: Mapping[str, Any]) -> Any:
    """Write ``hparams['lr']`` / ``['weight_decay']`` / ``['l1']`` into an injectable optimizer state before its
    update."""
    given = {INJECTED[k]: v for k, v in hparams.items() if k in INJECTED}
    if not given:
        return opt_state
    hp = opt_state.hyperparams
    return opt_state._replace(hyperparams={**hp, **{k: jnp.asarray(v, hp[k].dtype) for k, v in given.items()}})
