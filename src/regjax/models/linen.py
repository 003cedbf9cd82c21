"""The same models as ``flax.linen`` modules, with the scratch versions' layer names.

``DropoutMLP`` uses ``nn.Dropout`` with an explicit ``train`` argument and the key passed as
``rngs={'dropout': key}``; ``LeNetBN`` uses ``nn.BatchNorm(momentum=0.9, epsilon=1e-5, use_fast_variance=False)``
(``bn_mode="full"``: the two-pass variance of ``regjax.batch_norm`` and NNX, not E[x²] − E[x]²) or
``LiteBatchNorm`` (the "lite" modes) and must be applied with ``mutable=['batch_stats']`` in training. Nothing is
toggled on the module object.
"""
from __future__ import annotations

from typing import Any, Callable, Sequence

import jax
import jax.numpy as jnp
from flax import linen as nn

from regjax.base import Array, ArrayLike
from regjax.batchnorm import batch_norm, check_mode
from regjax.models import get_initializer
from regjax.models.scratch import lenet_bn_flags

__all__ = ["DropoutMLP", "LeNetBN", "LiteBatchNorm", "SoftmaxRegression"]


class SoftmaxRegression(nn.Module):
    """One dense layer on flattened inputs (D2L §4.5, the concise version)."""

    num_outputs: int = 10
    weight_init: Any = "normal"

    @nn.compact
    def __call__(self, x: ArrayLike, *, train: bool = False) -> Array:
        del train
        x = x.reshape((x.shape[0], -1))
        return nn.Dense(self.num_outputs, kernel_init=get_initializer(self.weight_init), name="dense0")(x)


class DropoutMLP(nn.Module):
    """D2L §5.6's MLP, concise: dense → ReLU → dropout per hidden layer, then the output layer."""

    hidden: Sequence[int] = (256, 256)
    num_outputs: int = 10
    rates: Sequence[float] = (0.2, 0.5)
    weight_init: Any = "normal"
    activation: Callable = jax.nn.relu

    @nn.compact
    def __call__(self, x: ArrayLike, *, train: bool) -> Array:
        if len(self.rates) != len(self.hidden):
            raise ValueError(f"rates must give one drop rate per hidden layer ({len(self.hidden)}), got {len(self.rates)}")
        kernel_init = get_initializer(self.weight_init)
        h = x.reshape((x.shape[0], -1))
        for i, (width, rate) in enumerate(zip(self.hidden, self.rates)):
            h = self.activation(nn.Dense(width, kernel_init=kernel_init, name=f"dense{i}")(h))
            h = nn.Dropout(rate, deterministic=not train, name=f"dropout{i}")(h)
        return nn.Dense(self.num_outputs, kernel_init=kernel_init, name=f"dense{len(self.hidden)}")(h)


class LiteBatchNorm(nn.Module):
    """The lesson function ``regjax.batch_norm`` as a linen layer with ``nn.BatchNorm``'s variables: params
    ``scale`` (ones) and ``bias`` (zeros), ``batch_stats`` ``mean`` (zeros) and ``var`` (ones), one per feature
    (the last axis; layouts (N, C) and NHWC).

    ``mode``: ``regjax.batch_norm``'s ``mode`` -- ``"full"``, or the "lite" BN of D2L §8.5 exercise 4, ``"mean"``
    (only centre) or ``"variance"`` (only rescale). ``use_running_average``: normalise with the moving statistics
    and leave them unchanged (evaluation); otherwise use the batch's and update them, ``new = momentum * old +
    (1 - momentum) * batch`` (apply with ``mutable=['batch_stats']``; ``init`` leaves them at their initial
    values, as ``nn.BatchNorm`` does).
    """

    mode: str = "full"
    use_running_average: bool = False
    momentum: float = 0.9
    epsilon: float = 1e-5

    def __post_init__(self):
        check_mode(self.mode)
        super().__post_init__()

    @nn.compact
    def __call__(self, x: ArrayLike) -> Array:
        features = (jnp.shape(x)[-1],)
        params = {"scale": self.param("scale", nn.initializers.ones, features, jnp.float32),
                  "bias": self.param("bias", nn.initializers.zeros, features, jnp.float32)}
        mean = self.variable("batch_stats", "mean", jnp.zeros, features, jnp.float32)
        var = self.variable("batch_stats", "var", jnp.ones, features, jnp.float32)
        train = not self.use_running_average
        y, new_state = batch_norm(x, params, {"mean": mean.value, "var": var.value}, train=train,
                                  momentum=self.momentum, eps=self.epsilon, mode=self.mode)
        if train and not self.is_initializing():
            mean.value, var.value = new_state["mean"], new_state["var"]
        return y


class LeNetBN(nn.Module):
    """D2L §8.5's LeNet with BatchNorm after conv/dense layers, before the sigmoid (NHWC input).

    ``use_bn``: a bool (BN after every conv/dense layer but the last, or none: plain LeNet) or 4 bools (BN after
    conv0, conv1, dense0, dense1; only those layers get ``bn{i}`` params and batch_stats;
    ``regjax.models.scratch.lenet_bn_flags``). ``bn_mode``: ``"full"`` is Flax's own ``nn.BatchNorm(momentum=0.9,
    epsilon=1e-5, use_fast_variance=False)``; ``"mean"`` / ``"variance"`` are the "lite" BN of §8.5 exercise 4
    (``LiteBatchNorm``). The variables are the scratch ``init_lenet_bn(..., use_bn=same)`` dicts for every pattern
    and mode; a bad ``use_bn`` or ``bn_mode`` is a ``ValueError`` when the module is built.
    """

    num_classes: int = 10
    weight_init: Any = "xavier"
    use_bn: Any = True
    bn_mode: str = "full"

    def __post_init__(self):
        lenet_bn_flags(self.use_bn)
        check_mode(self.bn_mode, "bn_mode")
        super().__post_init__()

    @nn.compact
    def __call__(self, x: ArrayLike, *, train: bool) -> Array:
        kernel_init = get_initializer(self.weight_init)
        flags = lenet_bn_flags(self.use_bn)

        def norm(i, h):
            if not flags[i]:
                return h
            if self.bn_mode == "full":
                return nn.BatchNorm(use_running_average=not train, momentum=0.9, epsilon=1e-5,
                                    use_fast_variance=False, name=f"bn{i}")(h)
            return LiteBatchNorm(self.bn_mode, use_running_average=not train, name=f"bn{i}")(h)

        h = x
        for i, features in enumerate((6, 16)):
            h = nn.Conv(features, (5, 5), padding="VALID", kernel_init=kernel_init, name=f"conv{i}")(h)
            h = nn.avg_pool(jax.nn.sigmoid(norm(i, h)), (2, 2), strides=(2, 2))
        h = h.reshape((h.shape[0], -1))
        for i, features in enumerate((120, 84)):
            h = jax.nn.sigmoid(norm(i + 2, nn.Dense(features, kernel_init=kernel_init, name=f"dense{i}")(h)))
        return nn.Dense(self.num_classes, kernel_init=kernel_init, name="dense2")(h)
