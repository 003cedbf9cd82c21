"""Batch normalization from scratch (D2L §8.5 "Batch Normalization").

Layouts: ``(N, C)`` for dense layers and NHWC ``(N, H, W, C)`` for convolutions; statistics are taken over
every axis except the last (the feature/channel axis). (d2l's JAX scratch BN reduces over NCHW axes
``(0, 2, 3)`` while feeding NHWC data -- normalising over the wrong axes. Not here.)

Moving averages follow D2L: ``new = momentum * old + (1 - momentum) * batch`` with ``momentum = 0.9``, the
same as ``flax.linen.BatchNorm(momentum=0.9)``; PyTorch's ``momentum=0.1`` is this ``momentum=0.9``.
Variance is the biased (population) one, as in D2L and Flax, for both normalisation and the moving average.

"Lite" variants (D2L §8.5 exercise 4), ``mode=``: ``"full"`` (BN), ``"mean"`` (only centre: ``γ(x − μ) + β``) and
``"variance"`` (only scale: ``γ x / sqrt(σ² + eps) + β``, σ² still the variance around the batch mean). Every mode
keeps both moving statistics with the same formula, so the state has one layout and evaluation uses the moving
counterparts of exactly the statistics that training used.
"""
from __future__ import annotations

from typing import Any, Optional, Tuple

import jax
import jax.numpy as jnp

from regjax._checks import check_in_range
from regjax.base import Array, ArrayLike

__all__ = ["batch_norm_init", "batch_norm", "BN_MODES", "check_mode"]

BN_MODES = ("full", "mean", "variance")


def check_mode(mode: Any, name: str = "mode") -> str:
    """``mode`` if it is one of ``BN_MODES``, else a ``ValueError`` naming ``name`` and the allowed values."""
    if not isinstance(mode, str) or mode not in BN_MODES:
        raise ValueError(f"{name} must be one of {BN_MODES}, got {mode!r}")
    return mode


def batch_norm_init(num_features: int, dtype: Any = jnp.float32) -> Tuple[dict, dict]:
    """Return ``(params, state)`` for ``num_features`` channels.

    params ``{'scale': ones, 'bias': zeros}`` (learned γ, β); state ``{'mean': zeros, 'var': ones}``
    (moving statistics) -- the same names and layout as Flax's ``params`` / ``batch_stats``.
    """
    if not isinstance(num_features, int) or num_features < 1:
        raise ValueError(f"num_features must be a positive int, got {num_features!r}")
    params = {"scale": jnp.ones((num_features,), dtype), "bias": jnp.zeros((num_features,), dtype)}
    state = {"mean": jnp.zeros((num_features,), dtype), "var": jnp.ones((num_features,), dtype)}
    return params, state


def _check_inputs(x: Array, params: dict, state: dict, train: Any, mode: Any) -> None:
    if not isinstance(train, bool):
        raise TypeError(f"train must be a Python bool (static under jit), got {type(train).__name__}")
    check_mode(mode)
    if x.ndim not in (2, 4):
        raise ValueError(
            f"x must be (N, C) or NHWC (N, H, W, C); got an array of rank {x.ndim} with shape {x.shape}"
        )
    num_features = x.shape[-1]
    for tree_name, tree, names in (("params", params, ("scale", "bias")), ("state", state, ("mean", "var"))):
        for name in names:
            if name not in tree:
                raise ValueError(f"{tree_name} must have keys {names}; missing {name!r}")
            if jnp.shape(tree[name]) != (num_features,):
                raise ValueError(
                    f"{tree_name}[{name!r}] has shape {jnp.shape(tree[name])} but x has {num_features} "
                    f"features on its last axis (layout (N, C) or NHWC)"
                )


def batch_norm(x: ArrayLike, params: dict, state: dict, *, train: bool, momentum: Any = 0.9, eps: Any = 1e-5,
               axis_name: Optional[str] = None, mode: str = "full") -> Tuple[Array, dict]:
    """Normalise ``x`` per feature; return ``(y, new_state)``.

    ``y = scale * (x - μ) / sqrt(σ² + eps) + bias`` where, in training, μ and σ² are the batch mean and biased
    variance over all axes but the last (averaged across the mapped axis ``axis_name`` with ``lax.pmean`` for
    cross-device BN), and ``new_state = momentum * state + (1 - momentum) * (μ, σ²)``. In evaluation μ, σ² are
    the moving statistics and the state is returned unchanged.

    ``mode`` (D2L §8.5 exercise 4, "lite" BN): ``"full"`` as above; ``"mean"`` only centres,
    ``y = scale * (x - μ) + bias``; ``"variance"`` only rescales, ``y = scale * x / sqrt(σ² + eps) + bias``. The
    state is updated by the same formula in every mode (both moving statistics), so modes share one layout.
    """
    x = jnp.asarray(x)
    _check_inputs(x, params, state, train, mode)
    check_in_range(momentum, "momentum", 0.0, 1.0)
    check_in_range(eps, "eps", 0.0, float("inf"), low_open=True, high_open=True)

    if train:
        axes = tuple(range(x.ndim - 1))
        mean = jnp.mean(x, axis=axes)
        if axis_name is not None:
            mean = jax.lax.pmean(mean, axis_name)
        # Two-pass variance around the (global) mean: no catastrophic cancellation of E[x²] - E[x]².
        var = jnp.mean(jnp.square(x - mean), axis=axes)
        if axis_name is not None:
            var = jax.lax.pmean(var, axis_name)
        new_state = {
            "mean": momentum * state["mean"] + (1.0 - momentum) * mean,
            "var": momentum * state["var"] + (1.0 - momentum) * var,
        }
    else:
        mean, var, new_state = state["mean"], state["var"], state
    centred = x if mode == "variance" else x - mean
    y = centred if mode == "mean" else centred * jax.lax.rsqrt(var + eps)
    return y * params["scale"] + params["bias"], new_state
