"""Models in three versions with one parameter layout.

``regjax.models.scratch`` holds pure functions (``init_*`` builds the parameter dict, the model function
applies it); ``regjax.models.linen`` holds the ``flax.linen`` modules and ``regjax.models.nnx`` the ``flax.nnx``
ones; ``regjax.models.adapters`` wraps any of them as a ``regjax.base.Model`` for the engine. Layers carry the
same names in all three (``dense0``, ``conv0``, ``bn0``, …) and Flax's own leaf names (``kernel``/``bias``,
``scale``/``bias``, ``mean``/``var``), so scratch ``params`` *are* linen's ``variables['params']`` and NNX's
``nnx.Param`` state as a pure dict, and scratch BN ``state`` *is* ``variables['batch_stats']`` and the
``nnx.BatchStat`` state: no converter needed (see ``to_flax_variables`` / ``from_flax_variables``).
"""
from __future__ import annotations

from typing import Any, Callable, Optional, Tuple

import jax

from regjax.base import PyTree

INITIALIZERS = {
    # D2L's default for the MLP chapters: N(0, 0.01²).
    "normal": lambda: jax.nn.initializers.normal(stddev=0.01),
    # Glorot/Xavier uniform: torch.nn.init.xavier_uniform_ and MXNet's init.Xavier() default.
    "xavier": jax.nn.initializers.glorot_uniform,
    # He/Kaiming normal, fan-in: torch.nn.init.kaiming_normal_ default.
    "he": jax.nn.initializers.he_normal,
    # Flax's Dense default.
    "lecun": jax.nn.initializers.lecun_normal,
}


def get_initializer(init: Any) -> Callable:
    """An initializer from a name in ``INITIALIZERS`` or a ``jax.nn.initializers`` callable, passed through."""
    if callable(init):
        return init
    if init not in INITIALIZERS:
        raise ValueError(f"init must be one of {sorted(INITIALIZERS)} or a jax.nn.initializers callable, got {init!r}")
    return INITIALIZERS[init]()


def to_flax_variables(params: PyTree, state: Optional[PyTree] = None) -> dict:
    """Scratch ``(params, state)`` -> Flax ``variables`` (the layouts are the same; this only nests them)."""
    variables = {"params": params}
    if state:
        variables["batch_stats"] = state
    return variables


def from_flax_variables(variables: dict) -> Tuple[PyTree, PyTree]:
    """Flax ``variables`` -> scratch ``(params, state)``."""
    return variables["params"], variables.get("batch_stats", {})
