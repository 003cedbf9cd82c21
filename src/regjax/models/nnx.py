"""The same models as ``flax.nnx`` modules -- the API Flax now leads with -- with the scratch versions' names.

Each layer is an attribute named as in ``regjax.models.scratch`` and ``regjax.models.linen`` (``dense0``,
``conv0``, ``bn0``, ...), and NNX's own variable names are Flax's (``kernel``/``bias``, ``scale``/``bias``,
``mean``/``var``), so ``nnx.to_pure_dict(nnx.state(module, nnx.Param))`` *is* the scratch ``params`` dict and
the ``nnx.BatchStat`` state *is* the scratch BN ``state``: no converter, in either direction
(``regjax.models.adapters.nnx_model``).

What differs from linen is where state lives. An NNX module is a Python object that owns its variables: a
training call of ``BatchNorm`` *updates* its ``mean``/``var`` in place, and the mode is an attribute
(``Dropout.deterministic``, ``BatchNorm.use_running_average``), chosen here with ``nnx.view(module,
deterministic=..., use_running_average=...)`` -- a new view, never a flag mutated inside a jitted function. The
modules keep no random state of their own: dropout keys come in with each call as ``rngs`` (an ``nnx.Rngs``
with a ``dropout`` stream; each ``Dropout`` layer draws the stream's next key, so two layers never share a
mask). ``BatchNorm(momentum=0.9, epsilon=1e-5)``: D2L's convention (NNX's default momentum is 0.99), and its
variance taken around the mean (``use_fast_variance=False``: the two-pass formula of ``regjax.batch_norm``, not
E[x²] − E[x]²). The "lite" BN modes of D2L §8.5 exercise 4 are ``LiteBatchNorm``: ``regjax.batch_norm`` with
``nnx.BatchNorm``'s variables and mode switch.
"""
from __future__ import annotations

from typing import Any, Callable, Optional, Sequence

import jax
import jax.numpy as jnp
from flax import nnx

from regjax.base import Array, ArrayLike
from regjax.batchnorm import batch_norm, check_mode
from regjax.models import get_initializer
from regjax.models.scratch import lenet_bn_flags

__all__ = ["SoftmaxRegression", "DropoutMLP", "LeNetBN", "LiteBatchNorm", "BN_MOMENTUM", "BN_EPSILON"]

BN_MOMENTUM, BN_EPSILON = 0.9, 1e-5  # D2L's: new = 0.9 * old + 0.1 * batch


def _flatten(x: ArrayLike) -> Array:
    return x.reshape((x.shape[0], -1))


class SoftmaxRegression(nnx.Module):
    """One dense layer on flattened inputs (D2L §4.5, the concise version)."""

    def __init__(self, num_inputs: int, num_outputs: int = 10, weight_init: Any = "normal", *, rngs: nnx.Rngs):
        self.dense0 = nnx.Linear(num_inputs, num_outputs, kernel_init=get_initializer(weight_init), rngs=rngs)

    def __call__(self, x: ArrayLike, *, rngs: Optional[nnx.Rngs] = None) -> Array:
        del rngs  # nothing random
        return self.dense0(_flatten(x))


class DropoutMLP(nnx.Module):
    """D2L §5.6's MLP: dense → activation → dropout per hidden layer, then the output layer.

    ``dropout_rngs`` (an ``nnx.Rngs`` with a ``dropout`` stream) makes the dropout layers keep that stream and
    draw from it when called without ``rngs`` -- the idiomatic stateful NNX style (``nnx.Optimizer``,
    ``nnx.jit``). Without it the module holds no random state and takes ``rngs`` with each call, which is what
    the functional bridge to the regjax engine needs."""

    def __init__(self, num_inputs: int, hidden: Sequence[int] = (256, 256), num_outputs: int = 10,
                 rates: Sequence[float] = (0.2, 0.5), weight_init: Any = "normal", activation: Callable = jax.nn.relu,
                 *, rngs: nnx.Rngs, dropout_rngs: Optional[nnx.Rngs] = None):
        if len(rates) != len(hidden):
            raise ValueError(f"rates must give one drop rate per hidden layer ({len(hidden)}), got {len(rates)}")
        kernel_init = get_initializer(weight_init)
        sizes = [num_inputs, *hidden]
        for i, rate in enumerate(rates):
            setattr(self, f"dense{i}", nnx.Linear(sizes[i], sizes[i + 1], kernel_init=kernel_init, rngs=rngs))
            setattr(self, f"dropout{i}", nnx.Dropout(float(rate), rngs=dropout_rngs))
        setattr(self, f"dense{len(hidden)}", nnx.Linear(sizes[-1], num_outputs, kernel_init=kernel_init, rngs=rngs))
        self.num_hidden = len(hidden)
        self.activation = activation

    def __call__(self, x: ArrayLike, *, rngs: Optional[nnx.Rngs] = None) -> Array:
        h = _flatten(x)
        for i in range(self.num_hidden):
            h = getattr(self, f"dropout{i}")(self.activation(getattr(self, f"dense{i}")(h)), rngs=rngs)
        return getattr(self, f"dense{self.num_hidden}")(h)


class LiteBatchNorm(nnx.Module):
    """The lesson function ``regjax.batch_norm`` as an NNX layer with ``nnx.BatchNorm``'s variables: ``nnx.Param``
    ``scale`` (ones) and ``bias`` (zeros), ``nnx.BatchStat`` ``mean`` (zeros) and ``var`` (ones), one per feature
    (the last axis; layouts (N, C) and NHWC).

    ``mode``: ``regjax.batch_norm``'s ``mode`` -- ``"full"``, or the "lite" BN of D2L §8.5 exercise 4, ``"mean"``
    (only centre) or ``"variance"`` (only rescale). ``use_running_average`` (set with ``nnx.view(module,
    use_running_average=...)``, like ``nnx.BatchNorm``'s): normalise with the moving statistics and leave them
    unchanged (evaluation); otherwise use the batch's and update them in place, ``new = momentum * old +
    (1 - momentum) * batch``. It draws two ``params`` keys, as ``nnx.BatchNorm`` does, so the layers built after
    it get the same weights whichever BN class comes before them.
    """

    def __init__(self, num_features: int, mode: str = "full", *, use_running_average: bool = False,
                 momentum: float = BN_MOMENTUM, epsilon: float = BN_EPSILON, rngs: nnx.Rngs):
        self.mode = check_mode(mode)
        rngs.params(), rngs.params()  # the keys nnx.BatchNorm draws for its scale and bias
        self.scale = nnx.Param(jnp.ones((num_features,), jnp.float32))
        self.bias = nnx.Param(jnp.zeros((num_features,), jnp.float32))
        self.mean = nnx.BatchStat(jnp.zeros((num_features,), jnp.float32))
        self.var = nnx.BatchStat(jnp.ones((num_features,), jnp.float32))
        self.use_running_average = use_running_average
        self.momentum, self.epsilon = momentum, epsilon

    def set_view(self, use_running_average: Optional[bool] = None) -> None:
        """``nnx.view``'s hook: ``use_running_average`` picks evaluation (True) or training (False)."""
        if use_running_average is not None:
            self.use_running_average = use_running_average

    def __call__(self, x: ArrayLike) -> Array:
        train = not self.use_running_average
        y, new_state = batch_norm(x, {"scale": self.scale[...], "bias": self.bias[...]},
                                  {"mean": self.mean[...], "var": self.var[...]}, train=train,
                                  momentum=self.momentum, eps=self.epsilon, mode=self.mode)
        if train:
            self.mean[...], self.var[...] = new_state["mean"], new_state["var"]
        return y


class LeNetBN(nnx.Module):
    """D2L §8.5's LeNet with BatchNorm after conv/dense layers, before the sigmoid (NHWC input).

    ``use_bn``: a bool (BN after every conv/dense layer but the last, or none: plain LeNet) or 4 bools (BN after
    conv0, conv1, dense0, dense1; only those layers exist as ``bn{i}``; ``regjax.models.scratch.lenet_bn_flags``).
    ``bn_mode``: ``"full"`` is NNX's own ``nnx.BatchNorm(momentum=0.9, epsilon=1e-5, use_fast_variance=False)``;
    ``"mean"`` / ``"variance"`` are the "lite" BN of §8.5 exercise 4 (``LiteBatchNorm``). The ``nnx.Param`` and
    ``nnx.BatchStat`` states are the scratch ``init_lenet_bn(..., use_bn=same)`` dicts for every pattern and mode;
    a bad ``use_bn`` or ``bn_mode`` is a ``ValueError``. Layers draw their ``params`` keys in order (conv0, bn0,
    conv1, ...), so the weights ``rngs`` gives depend on the pattern, not on the mode.
    """

    def __init__(self, num_classes: int = 10, image_shape: Sequence[int] = (28, 28, 1), weight_init: Any = "xavier",
                 use_bn: Any = True, bn_mode: str = "full", *, rngs: nnx.Rngs):
        flags = lenet_bn_flags(use_bn)
        check_mode(bn_mode, "bn_mode")
        kernel_init = get_initializer(weight_init)

        def add_norm(i, features):
            if not flags[i]:
                return
            if bn_mode == "full":
                layer = nnx.BatchNorm(features, momentum=BN_MOMENTUM, epsilon=BN_EPSILON, use_fast_variance=False,
                                      rngs=rngs)
            else:
                layer = LiteBatchNorm(features, bn_mode, rngs=rngs)
            setattr(self, f"bn{i}", layer)

        h, w, c = image_shape
        for i, out in enumerate((6, 16)):
            setattr(self, f"conv{i}", nnx.Conv(c, out, (5, 5), padding="VALID", kernel_init=kernel_init, rngs=rngs))
            add_norm(i, out)
            h, w, c = (h - 4) // 2, (w - 4) // 2, out
        fan_in = h * w * c
        for i, out in enumerate((120, 84)):
            setattr(self, f"dense{i}", nnx.Linear(fan_in, out, kernel_init=kernel_init, rngs=rngs))
            add_norm(i + 2, out)
            fan_in = out
        self.dense2 = nnx.Linear(fan_in, num_classes, kernel_init=kernel_init, rngs=rngs)
        self.use_bn, self.bn_mode = flags, bn_mode

    def _norm(self, i: int, h: Array) -> Array:
        return getattr(self, f"bn{i}")(h) if self.use_bn[i] else h

    def __call__(self, x: ArrayLike, *, rngs: Optional[nnx.Rngs] = None) -> Array:
        del rngs  # nothing random
        h = x
        for i in range(2):
            h = nnx.avg_pool(jax.nn.sigmoid(self._norm(i, getattr(self, f"conv{i}")(h))), (2, 2), strides=(2, 2))
        h = _flatten(h)
        for i in range(2):
            h = jax.nn.sigmoid(self._norm(i + 2, getattr(self, f"dense{i}")(h)))
        return self.dense2(h)
