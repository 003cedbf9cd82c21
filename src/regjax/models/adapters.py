"""Bundle each model as ``regjax.base.Model(init, apply, hparams)`` so the scratch, linen and NNX versions share
one engine.

``apply(params, model_state, x, *, key, train, hparams)`` -- scratch models read traced hyperparameters such as
``hparams['rates']`` (dropout) so sweeps can vmap over them, and declare them in ``Model.hparams``; Flax modules
get the key as ``rngs={'dropout': key}`` and BatchNorm statistics through ``mutable=['batch_stats']``. Their
dropout rates are static module attributes, so a Flax ``Model`` declares no hparams and the engine refuses a
``rates`` key for it instead of ignoring it.
"""
from __future__ import annotations

import inspect
from typing import Any, Callable, Dict, Sequence

import jax
import jax.numpy as jnp

from regjax.base import ArrayLike, Model
from regjax.batchnorm import check_mode
from regjax.models import from_flax_variables, linen, scratch, to_flax_variables

__all__ = ["scratch_linreg", "scratch_softmax_regression", "scratch_mlp", "scratch_lenet_bn", "linen_model",
           "nnx_model", "IMPLS", "ALIASES", "canonical_impl", "MODELS", "build_model", "mlp_model", "lenet_bn_model",
           "softmax_regression_model"]


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
                     use_bn: Any = True, bn_mode: str = "full") -> Model:
    """D2L §8.5's LeNet with BatchNorm; its BN statistics are the ``model_state``. ``use_bn``: a bool (all or no
    BN layers; ``False`` is plain LeNet) or 4 bools (BN after conv0, conv1, dense0, dense1; only those layers
    get BN params/state); ``bn_mode``: ``"full"``, or the "lite" ``"mean"`` / ``"variance"`` BN of §8.5 ex. 4."""
    flags = scratch.lenet_bn_flags(use_bn)  # refuses a bad pattern now, not at the first call
    check_mode(bn_mode, "bn_mode")

    def apply(params, ms, x, *, key=None, train=False, hparams=None):
        return scratch.lenet_bn(params, ms, x, train=train, use_bn=flags, bn_mode=bn_mode)

    return Model(lambda key: scratch.init_lenet_bn(key, num_classes, image_shape, weight_init, use_bn=flags), apply)


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


def nnx_model(build: Callable[[Any], Any]) -> Model:
    """Wrap a ``flax.nnx`` module as a ``Model`` -- the functional bridge: ``build(rngs)`` makes the module.

    NNX modules own their variables; the engine wants pure functions of pytrees. ``nnx.split`` gives the
    module's static graph definition once (from an abstract module: nothing is computed), and ``init(key)``
    returns its ``nnx.Param`` and ``nnx.BatchStat`` states as plain dicts (the scratch layout: ``params`` and
    ``model_state``). ``apply`` rebuilds the module from them with ``nnx.merge``, chooses train or eval mode with
    ``nnx.view(module, deterministic=not train, use_running_average=not train)`` (only the options some layer's
    ``set_view`` takes: ``nnx.Dropout``, ``nnx.BatchNorm``, ``regjax.models.nnx.LiteBatchNorm``, ...), draws
    dropout masks from ``nnx.Rngs(dropout=key)`` -- the engine's per-step key -- and returns the BatchNorm
    statistics the call updated as the new ``model_state``. Everything stays a pytree, so ``fit``,
    ``sweep`` (vmap), checkpoints, ``--resume`` and ``--devices`` treat NNX models like any other. Dropout rates
    are static ``nnx.Dropout`` attributes: the model declares no hparams.
    """
    from flax import nnx

    abstract = nnx.eval_shape(lambda: build(nnx.Rngs(0)))
    graphdef, abstract_params, abstract_stats, rest = nnx.split(abstract, nnx.Param, nnx.BatchStat, ...)
    if len(nnx.to_pure_dict(rest)):
        raise ValueError("an NNX model for the engine keeps no state but nnx.Param and nnx.BatchStat (no Rngs "
                         "inside the module: dropout keys come with each call as rngs=)")
    modes = _view_modes(abstract)

    def filled(abstract_state, values):
        state = jax.tree_util.tree_map(lambda leaf: leaf, abstract_state)  # a fresh State to fill
        nnx.replace_by_pure_dict(state, values)
        return state

    def init(key):
        _, params, stats = nnx.split(build(nnx.Rngs(params=key)), nnx.Param, nnx.BatchStat)
        return nnx.to_pure_dict(params), nnx.to_pure_dict(stats)

    def apply(params, ms, x, *, key=None, train=False, hparams=None):
        module = nnx.merge(graphdef, filled(abstract_params, params), filled(abstract_stats, ms))
        view = nnx.view(module, **{mode: not train for mode in modes}) if modes else module
        out = view(x, rngs=nnx.Rngs(dropout=key) if (train and key is not None) else None)
        return out, (nnx.to_pure_dict(nnx.state(view, nnx.BatchStat)) if train and ms else ms)

    return Model(init, apply)


def _view_modes(module: Any) -> list:
    """The train/eval options ``nnx.view`` can set on ``module``: those some layer's ``set_view`` takes."""
    from flax import nnx

    taken = set()
    for _, node in nnx.iter_graph(module):
        if hasattr(node, "set_view"):
            taken.update(inspect.signature(node.set_view).parameters)
    return [mode for mode in ("deterministic", "use_running_average") if mode in taken]


IMPLS = ("scratch", "linen", "nnx")
ALIASES = {"flax": "linen"}  # --impl flax: Flax's linen API


def canonical_impl(impl: str) -> str:
    """``impl`` with its alias resolved (``'flax'`` is ``'linen'``); anything else is a ``ValueError``."""
    impl = ALIASES.get(impl, impl)
    if impl not in IMPLS:
        aliases = ", ".join(f"{a!r}, an alias of {b!r}" for a, b in ALIASES.items())
        raise ValueError(f"impl must be one of {list(IMPLS)} (or {aliases}), got {impl!r}")
    return impl


def _nnx_modules():
    from regjax.models import nnx as nnx_models  # imported when asked for: flax.nnx costs start-up time

    return nnx_models


# One table: model name -> impl -> builder. The three builders of a model take the same keyword options (the
# public functions below name them and give their defaults) and build the same parameter layout.
MODELS: Dict[str, Dict[str, Callable[..., Model]]] = {
    "mlp": {
        "scratch": scratch_mlp,
        "linen": lambda *, num_inputs, hidden, num_outputs, rates, weight_init, activation: linen_model(
            linen.DropoutMLP(tuple(hidden), num_outputs, tuple(rates), weight_init, activation),
            jnp.zeros((1, num_inputs))),
        "nnx": lambda *, num_inputs, hidden, num_outputs, rates, weight_init, activation: nnx_model(
            lambda rngs: _nnx_modules().DropoutMLP(num_inputs, tuple(hidden), num_outputs, tuple(rates), weight_init,
                                                   activation, rngs=rngs)),
    },
    "lenet_bn": {
        "scratch": scratch_lenet_bn,
        "linen": lambda *, num_classes, image_shape, weight_init, use_bn, bn_mode: linen_model(
            linen.LeNetBN(num_classes, weight_init, use_bn, bn_mode), jnp.zeros((1, *image_shape))),
        "nnx": lambda *, num_classes, image_shape, weight_init, use_bn, bn_mode: nnx_model(
            lambda rngs: _nnx_modules().LeNetBN(num_classes, tuple(image_shape), weight_init, use_bn, bn_mode,
                                                rngs=rngs)),
    },
    "softmax_regression": {
        "scratch": scratch_softmax_regression,
        "linen": lambda *, num_inputs, num_outputs, weight_init: linen_model(
            linen.SoftmaxRegression(num_outputs, weight_init), jnp.zeros((1, num_inputs))),
        "nnx": lambda *, num_inputs, num_outputs, weight_init: nnx_model(
            lambda rngs: _nnx_modules().SoftmaxRegression(num_inputs, num_outputs, weight_init, rngs=rngs)),
    },
}


def build_model(name: str, impl: str, **options: Any) -> Model:
    """``MODELS[name][impl](**options)``: the model ``name`` in version ``impl`` (``'scratch'``, ``'linen'`` or
    ``'nnx'``; ``'flax'`` is ``'linen'``), every version built from the same options."""
    if name not in MODELS:
        raise ValueError(f"name must be one of {sorted(MODELS)}, got {name!r}")
    return MODELS[name][canonical_impl(impl)](**options)


def mlp_model(impl: str, num_inputs: int, hidden: Sequence[int] = (256, 256), num_outputs: int = 10,
              rates: Any = (0.2, 0.5), weight_init: Any = "normal", activation: Callable = jax.nn.relu) -> Model:
    """D2L §5.6's dropout MLP ``num_inputs``-``hidden``-``num_outputs``, ``impl`` ``'scratch'`` (rates sweepable),
    ``'linen'`` or ``'nnx'``. ``rates[i]``: the drop probability after hidden layer ``i``; ``weight_init``: a name
    in ``regjax.models.INITIALIZERS`` or an initializer; ``activation``: of every hidden layer (ReLU)."""
    return build_model("mlp", impl, num_inputs=num_inputs, hidden=hidden, num_outputs=num_outputs, rates=rates,
                       weight_init=weight_init, activation=activation)


def lenet_bn_model(impl: str, num_classes: int = 10, image_shape: Sequence[int] = (28, 28, 1), use_bn: Any = True,
                   weight_init: Any = "xavier", bn_mode: str = "full") -> Model:
    """D2L §8.5's LeNet(-BN) on NHWC ``image_shape`` images, ``impl`` ``'scratch'``, ``'linen'`` or ``'nnx'``.

    ``use_bn``: a bool (BN after every conv/dense layer but the last, or none: plain LeNet) or 4 bools (BN after
    conv0, conv1, dense0, dense1); ``bn_mode``: ``"full"`` (Flax's own BatchNorm in linen and NNX), or the "lite"
    ``"mean"`` / ``"variance"`` BN of §8.5 exercise 4. A bad ``use_bn`` or ``bn_mode`` is a ``ValueError`` here.
    """
    return build_model("lenet_bn", impl, num_classes=num_classes, image_shape=image_shape, weight_init=weight_init,
                       use_bn=use_bn, bn_mode=bn_mode)


def softmax_regression_model(impl: str, num_inputs: int, num_outputs: int = 10, weight_init: Any = "normal") -> Model:
    """D2L §4.4's softmax regression (one dense layer to logits), ``impl`` ``'scratch'``, ``'linen'`` or ``'nnx'``."""
    return build_model("softmax_regression", impl, num_inputs=num_inputs, num_outputs=num_outputs,
                       weight_init=weight_init)
