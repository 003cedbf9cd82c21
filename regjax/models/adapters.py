"""Bundle each model as ``regjax.base.Model(init, apply, hparams)`` so scratch and linen versions share one engine.

``apply(params, model_state, x, *, key, train, hparams)`` -- scratch models read traced hyperparameters such as
``hparams['rates']`` (dropout) so sweeps can vmap over them, and declare them in ``Model.hparams``; Flax modules
get the key as ``rngs={'dropout': key}`` and BatchNorm statistics through ``mutable=['batch_stats']``. Their
dropout rates are static module attributes, so a Flax ``Model`` declares no hparams and the engine refuses a
``rates`` key for it instead of ignoring it.
"""
from __future__ import annotations

from typing import Any, Sequence

import jax

from regjax.base import ArrayLike, Model
from regjax.models import from_flax_variables, linen, scratch, to_flax_variables

__all__ = ["scratch_linreg", "scratch_softmax_regression", "scratch_mlp", "scratch_lenet_bn", "linen_model",
           "mlp_model", "lenet_bn_model", "softmax_regression_model"]


def _stateless(init_params, forward) -> Model:
    return Model(init=lambda key: (init_params(key), {}),
                 apply=lambda params, ms, x, *, key=None, train=False, hparams=None: (forward(params, x), ms))


def scratch_linreg(num_inputs: int, weight_init: Any = "normal", use_bias: bool = True) -> Model:
    """D2L §3.2's linear regression ``Xw + b`` (``use_bias=False``: ``Xw``, the polynomial fit)."""
    return _stateless(lambda k: scratch.init_linreg(k, num_inputs, weight_init, use_bias), scratch.linreg)


def scratch_softmax_regression(num_inputs: int = 784, num_outputs: int = 10, weight_init: Any = "normal") -> Model:
    """D2L §4.4's softmax regression: one dense layer to logits (the softmax lives in the loss)."""
    return _stateless(lambda k: scratch.init_softmax_regression(k, num_inputs, num_outputs, weight_init),
                      scratch.softmax_regression)


def scratch_mlp(num_inputs: int = 784, hidden: Sequence[int] = (256, 256), num_outputs: int = 10,
                rates: Any = (0.2, 0.5), weight_init: Any = "normal", activation: Any = jax.nn.relu) -> Model:
    """The dropout MLP; ``hparams['rates']`` (if present) overrides ``rates`` and may be traced."""

    def apply(params, ms, x, *, key=None, train=False, hparams=None):
        r = (hparams or {}).get("rates", rates)
        return scratch.mlp(params, x, key=key, train=train, rates=r, activation=activation), ms

    return Model(lambda key: (scratch.init_mlp(key, num_inputs, hidden, num_outputs, weight_init), {}), apply,
                 hparams=("rates",))


def scratch_lenet_bn(num_classes: int = 10, image_shape: Sequence[int] = (28, 28, 1), weight_init: Any = "xavier",
                     use_bn: bool = True) -> Model:
    """D2L §8.5's LeNet with BatchNorm (``use_bn=False``: without); its BN statistics are the ``model_state``."""
    def apply(params, ms, x, *, key=None, train=False, hparams=None):
        return scratch.lenet_bn(params, ms, x, train=train, use_bn=use_bn)

    return Model(lambda key: scratch.init_lenet_bn(key, num_classes, image_shape, weight_init), apply)


def linen_model(module: Any, example_x: ArrayLike) -> Model:
    """Wrap a ``flax.linen`` module whose ``__call__(x, *, train)``; BatchNorm stats become ``model_state``."""

    def init(key):
        return from_flax_variables(module.init(key, example_x, train=False))

    def apply(params, ms, x, *, key=None, train=False, hparams=None):
        variables = to_flax_variables(params, ms)
        rngs = {"dropout": key} if (train and key is not None) else {}
        if train and ms:
            out, updates = module.apply(variables, x, train=True, rngs=rngs, mutable=["batch_stats"])
            return out, updates["batch_stats"]
        return module.apply(variables, x, train=train, rngs=rngs), ms

    return Model(init, apply)


def _check_impl(impl):
    if impl not in ("scratch", "flax"):
        raise ValueError(f"impl must be 'scratch' or 'flax', got {impl!r}")


def mlp_model(impl: str, num_inputs: int, hidden: Sequence[int] = (256, 256), num_outputs: int = 10,
              rates: Any = (0.2, 0.5), weight_init: Any = "normal") -> Model:
    """The dropout MLP, ``impl`` ``'scratch'`` (rates sweepable) or ``'flax'`` (``flax.linen``)."""
    _check_impl(impl)
    if impl == "scratch":
        return scratch_mlp(num_inputs, hidden, num_outputs, rates, weight_init)
    module = linen.DropoutMLP(tuple(hidden), num_outputs, tuple(rates), weight_init)
    return linen_model(module, jax.numpy.zeros((1, num_inputs)))


def lenet_bn_model(impl: str, num_classes: int = 10, image_shape: Sequence[int] = (28, 28, 1), use_bn: bool = True,
                   weight_init: Any = "xavier") -> Model:
    """LeNet(-BN), ``impl`` ``'scratch'`` or ``'flax'`` (``flax.linen``)."""
    _check_impl(impl)
    if impl == "scratch":
        return scratch_lenet_bn(num_classes, image_shape, weight_init, use_bn)
    module = linen.LeNetBN(num_classes, weight_init, use_bn)
    return linen_model(module, jax.numpy.zeros((1, *image_shape)))


def softmax_regression_model(impl: str, num_inputs: int, num_outputs: int = 10, weight_init: Any = "normal") -> Model:
    """Softmax regression, ``impl`` ``'scratch'`` or ``'flax'`` (``flax.linen``)."""
    _check_impl(impl)
    if impl == "scratch":
        return scratch_softmax_regression(num_inputs, num_outputs, weight_init)
    return linen_model(linen.SoftmaxRegression(num_outputs, weight_init), jax.numpy.zeros((1, num_inputs)))
