"""The same models as ``flax.linen`` modules, with the scratch versions' layer names.

``DropoutMLP`` uses ``nn.Dropout`` with an explicit ``train`` argument and the key passed as
``rngs={'dropout': key}``; ``LeNetBN`` uses ``nn.BatchNorm(momentum=0.9, epsilon=1e-5)`` and must be applied
with ``mutable=['batch_stats']`` in training. Nothing is toggled on the module object.
"""
from __future__ import annotations

from typing import Any, Callable, Sequence

import jax
from flax import linen as nn

from regjax.base import Array, ArrayLike
from regjax.models import get_initializer

__all__ = ["DropoutMLP", "LeNetBN", "SoftmaxRegression"]


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


class LeNetBN(nn.Module):
    """D2L §8.5's LeNet with BatchNorm after each conv/dense layer, before the sigmoid (NHWC input)."""

    num_classes: int = 10
    weight_init: Any = "xavier"
    use_bn: bool = True

    @nn.compact
    def __call__(self, x: ArrayLike, *, train: bool) -> Array:
        kernel_init = get_initializer(self.weight_init)

        def norm(i, h):
            if not self.use_bn:
                return h
            return nn.BatchNorm(use_running_average=not train, momentum=0.9, epsilon=1e-5, name=f"bn{i}")(h)

        h = x
        for i, features in enumerate((6, 16)):
            h = nn.Conv(features, (5, 5), padding="VALID", kernel_init=kernel_init, name=f"conv{i}")(h)
            h = nn.avg_pool(jax.nn.sigmoid(norm(i, h)), (2, 2), strides=(2, 2))
        h = h.reshape((h.shape[0], -1))
        for i, features in enumerate((120, 84)):
            h = jax.nn.sigmoid(norm(i + 2, nn.Dense(features, kernel_init=kernel_init, name=f"dense{i}")(h)))
        return nn.Dense(self.num_classes, kernel_init=kernel_init, name="dense2")(h)
