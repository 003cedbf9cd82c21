"""From-scratch models as pure functions over parameter dicts (D2L §3.2, §4.2, §5.2, §5.6, §8.5).

Parameter layout is Flax's (``{'dense0': {'kernel': (in, out), 'bias': (out,)}, …}``), so the Flax modules in
``regjax.models.linen`` can be fed the very same dicts. Images are NHWC.
"""
from __future__ import annotations

from typing import Any, Callable, List, Optional, Sequence, Tuple

import jax
import jax.numpy as jnp
import numpy as np
from flax import linen as nn  # only its pure pooling function

from regjax.base import Array, ArrayLike, PRNGKey, PyTree
from regjax.batchnorm import batch_norm, batch_norm_init
from regjax.dropout import dropout
from regjax.models import get_initializer

__all__ = [
    "init_linreg", "linreg",
    "init_softmax_regression", "softmax_regression",
    "init_mlp", "mlp", "mlp_layers",
    "init_lenet_bn", "lenet_bn", "lenet_bn_flags",
]


def _dense_init(key, fan_in, fan_out, init, dtype=jnp.float32):
    return {"kernel": get_initializer(init)(key, (fan_in, fan_out), dtype), "bias": jnp.zeros((fan_out,), dtype)}


def _dense(p, x):
    y = x @ p["kernel"]
    return y + p["bias"] if "bias" in p else y


def _flatten(x, num_inputs, name="x"):
    x = jnp.asarray(x)
    x = x.reshape((x.shape[0], -1)) if x.ndim > 2 else x
    if x.ndim != 2 or x.shape[-1] != num_inputs:
        raise ValueError(f"{name} must be (N, {num_inputs}) or images that flatten to it; got shape {jnp.shape(x)}")
    return x


# --- linear and softmax regression -------------------------------------------------------------------------

def init_linreg(key: PRNGKey, num_inputs: int, weight_init: Any = "normal", use_bias: bool = True) -> PyTree:
    """``{'dense0': {'kernel': (d, 1), 'bias': (1,)}}`` with N(0, 0.01²) weights by default, zero bias.

    ``use_bias=False`` leaves out the bias (D2L's polynomial fit, whose x⁰ feature plays that role).
    """
    layer = _dense_init(key, num_inputs, 1, weight_init)
    if not use_bias:
        del layer["bias"]
    return {"dense0": layer}


def linreg(params: PyTree, x: ArrayLike) -> Array:
    """``X w + b``: (N, d) -> (N, 1), as in D2L."""
    return _dense(params["dense0"], _flatten(x, params["dense0"]["kernel"].shape[0]))


def init_softmax_regression(key: PRNGKey, num_inputs: int = 784, num_outputs: int = 10,
                            weight_init: Any = "normal") -> PyTree:
    """``{'dense0': {'kernel': (d, q), 'bias': (q,)}}``: one dense layer to ``num_outputs`` logits."""
    return {"dense0": _dense_init(key, num_inputs, num_outputs, weight_init)}


def softmax_regression(params: PyTree, x: ArrayLike) -> Array:
    """Logits ``X W + b`` of images flattened to (N, d); the softmax lives in the loss."""
    return _dense(params["dense0"], _flatten(x, params["dense0"]["kernel"].shape[0]))


# --- the dropout MLP ---------------------------------------------------------------------------------------

def init_mlp(key: PRNGKey, num_inputs: int = 784, hidden: Sequence[int] = (256, 256), num_outputs: int = 10,
             weight_init: Any = "normal") -> PyTree:
    """Dense layers ``dense0 … dense{len(hidden)}``; D2L's MLP is 784-256-256-10 with N(0, 0.01²) weights."""
    sizes = [num_inputs, *hidden, num_outputs]
    if any((not isinstance(s, int)) or s < 1 for s in sizes):
        raise ValueError(f"num_inputs, hidden and num_outputs must be positive ints, got {sizes}")
    keys = jax.random.split(key, len(sizes) - 1)
    return {f"dense{i}": _dense_init(k, a, b, weight_init) for i, (k, a, b) in enumerate(zip(keys, sizes[:-1], sizes[1:]))}


def mlp_layers(params: PyTree, x: ArrayLike, *, key: Optional[PRNGKey] = None, train: bool = False,
               rates: Any = None, activation: Callable = jax.nn.relu) -> Tuple[Array, List[Array]]:
    """The MLP's forward pass, layer by layer: ``(logits, hidden)`` where ``hidden[i]`` is hidden layer ``i``'s
    output as the next layer sees it -- after the activation and, in training, after its inverted dropout.

    ``rates[i]`` is the drop probability after hidden layer ``i`` (one per hidden layer; ``None``: no dropout;
    may be traced, e.g. a vmapped sweep). Each layer's mask uses ``fold_in(key, i)``, so two layers never share
    a mask. ``mlp``, the probes of the D2L exercises and the initialisation diagnostics all run this one pass.
    """
    num_layers = len(params)
    rates = (0.0,) * (num_layers - 1) if rates is None else rates
    rates = tuple(rates) if not hasattr(rates, "shape") else rates
    if len(rates) != num_layers - 1:
        raise ValueError(f"rates must give one drop rate per hidden layer ({num_layers - 1}), got {len(rates)}")
    h, hidden = _flatten(x, params["dense0"]["kernel"].shape[0]), []
    for i in range(num_layers - 1):
        h = activation(_dense(params[f"dense{i}"], h))
        layer_key = None if key is None else jax.random.fold_in(key, i)
        h = dropout(h, rates[i], key=layer_key, train=train)
        hidden.append(h)
    return _dense(params[f"dense{num_layers - 1}"], h), hidden


def mlp(params: PyTree, x: ArrayLike, *, key: Optional[PRNGKey] = None, train: bool = False, rates: Any = (0.2, 0.5),
        activation: Callable = jax.nn.relu) -> Array:
    """ReLU MLP with inverted dropout after each hidden layer (D2L §5.6): returns logits (``mlp_layers``)."""
    return mlp_layers(params, x, key=key, train=train, rates=rates, activation=activation)[0]


# --- LeNet with batch normalization ------------------------------------------------------------------------

_LENET_CONVS = (("conv0", 6), ("conv1", 16))
_LENET_DENSES = (("dense0", 120), ("dense1", 84))
_LENET_BN_LAYERS = 4


def lenet_bn_flags(use_bn: Any) -> Tuple[bool, bool, bool, bool]:
    """``use_bn`` as four flags (BN after conv0, conv1, dense0, dense1): a bool is all or none; a sequence of 4
    bools picks layers (D2L §8.5 exercise 3). Anything else is a ``ValueError`` naming ``use_bn``."""
    if isinstance(use_bn, (bool, np.bool_)):
        return (bool(use_bn),) * _LENET_BN_LAYERS
    if isinstance(use_bn, (str, bytes)) or not isinstance(use_bn, Sequence) or len(use_bn) != _LENET_BN_LAYERS \
            or not all(isinstance(f, (bool, np.bool_)) for f in use_bn):
        raise ValueError(f"use_bn must be a bool or a sequence of {_LENET_BN_LAYERS} bools (BN after conv0, conv1, "
                         f"dense0, dense1), got {use_bn!r}")
    return tuple(bool(f) for f in use_bn)


def init_lenet_bn(key: PRNGKey, num_classes: int = 10, image_shape: Sequence[int] = (28, 28, 1),
                  weight_init: Any = "xavier", use_bn: Any = True) -> Tuple[PyTree, PyTree]:
    """LeNet-5 with BN (D2L §8.5): returns ``(params, state)``.

    conv0 5×5×6 → BN → sigmoid → avgpool 2 → conv1 5×5×16 → BN → sigmoid → avgpool 2 → dense0 120 → BN →
    sigmoid → dense1 84 → BN → sigmoid → dense2 ``num_classes``. Kernels are HWIO (Flax's layout). ``use_bn``
    (``lenet_bn_flags``): only the BN layers switched on get params ``bn{i}`` and state; the weights do not depend
    on it (the same key gives the same conv/dense weights for every pattern).
    """
    flags = lenet_bn_flags(use_bn)
    h, w, c = image_shape
    keys = iter(jax.random.split(key, 5))
    params, state = {}, {}
    for i, (name, out) in enumerate(_LENET_CONVS):
        params[name] = {"kernel": get_initializer(weight_init)(next(keys), (5, 5, c, out)), "bias": jnp.zeros((out,))}
        if flags[i]:
            params[f"bn{i}"], state[f"bn{i}"] = batch_norm_init(out)
        h, w, c = (h - 4) // 2, (w - 4) // 2, out
    fan_in = h * w * c
    for i, (name, out) in enumerate(_LENET_DENSES):
        params[name] = _dense_init(next(keys), fan_in, out, weight_init)
        if flags[i + 2]:
            params[f"bn{i + 2}"], state[f"bn{i + 2}"] = batch_norm_init(out)
        fan_in = out
    params["dense2"] = _dense_init(next(keys), fan_in, num_classes, weight_init)
    return params, state


def _conv(p, x):
    y = jax.lax.conv_general_dilated(x, p["kernel"], (1, 1), "VALID", dimension_numbers=("NHWC", "HWIO", "NHWC"))
    return y + p["bias"]


def lenet_bn(params: PyTree, state: PyTree, x: ArrayLike, *, train: bool, momentum: float = 0.9, eps: float = 1e-5,
             axis_name: Optional[str] = None, use_bn: Any = True, bn_mode: str = "full") -> Tuple[Array, PyTree]:
    """Apply LeNet-BN to NHWC images; returns ``(logits, new_state)``.

    ``use_bn`` (a bool, or 4 bools for BN after conv0, conv1, dense0, dense1; ``lenet_bn_flags``) picks the BN
    layers; ``use_bn=False`` is plain LeNet (the contrast D2L draws). BN params/state of layers switched off are
    not read (``init_lenet_bn(..., use_bn=same)`` does not make them). ``bn_mode`` is ``batch_norm``'s ``mode``
    ("full", or the "lite" "mean" / "variance" of D2L §8.5 exercise 4). The returned state holds the BN layers
    that are on (all of ``state`` when none is).
    """
    flags = lenet_bn_flags(use_bn)
    x = jnp.asarray(x)
    if x.ndim != 4:
        raise ValueError(f"x must be NHWC images (N, H, W, C); got shape {x.shape}")
    new_state = {}

    def norm(i, h):
        if not flags[i]:
            return h
        name = f"bn{i}"
        y, new_state[name] = batch_norm(h, params[name], state[name], train=train, momentum=momentum, eps=eps,
                                        axis_name=axis_name, mode=bn_mode)
        return y

    h = x
    for i, (name, _) in enumerate(_LENET_CONVS):
        h = nn.avg_pool(jax.nn.sigmoid(norm(i, _conv(params[name], h))), (2, 2), strides=(2, 2))
    h = h.reshape((h.shape[0], -1))
    for i, (name, _) in enumerate(_LENET_DENSES):
        h = jax.nn.sigmoid(norm(i + 2, _dense(params[name], h)))
    return _dense(params["dense2"], h), ({**state, **new_state} if any(flags) else state)
