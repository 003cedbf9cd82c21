"""Probes for the exercise answers: what the models compute but do not return -- hidden activations of the
dropout MLP (with the training-time dropout applied or not), predictions with dropout left on at test time,
LeNet-BN with the biases in front of its BatchNorm layers removed.
"""
from __future__ import annotations

from typing import Any, Callable, List, Optional, Sequence, Tuple

import jax
import jax.numpy as jnp

from regjax.base import Array, ArrayLike, Model, PRNGKey, PyTree
from regjax.models.scratch import mlp_layers

__all__ = ["mlp_hidden", "hidden_variances", "predict_with_dropout", "without_biases"]


def mlp_hidden(params: PyTree, x: ArrayLike, *, rates: Any = None, key: Optional[PRNGKey] = None,
               train: bool = False, activation: Callable = jax.nn.relu) -> List[Array]:
    """The hidden activations of the scratch MLP, layer by layer, from its own forward pass
    (``regjax.models.scratch.mlp_layers``): after the activation and -- with ``train`` -- after the dropout the
    next layer sees (per-layer keys ``fold_in(key, i)``). ``rates`` may be traced (vmapped sweeps)."""
    return mlp_layers(params, x, rates=rates, key=key, train=train, activation=activation)[1]


def hidden_variances(params: PyTree, x: ArrayLike, rates: Any, key: PRNGKey) -> dict:
    """Per hidden layer, the variance over units and examples of its activations in eval mode (no dropout) and
    in train mode (dropout masks drawn from ``key``): ``{'eval': (L,), 'train': (L,)}``. Vmappable."""
    return {"eval": jnp.stack([jnp.var(h) for h in mlp_hidden(params, x)]),
            "train": jnp.stack([jnp.var(h) for h in mlp_hidden(params, x, rates=rates, key=key, train=True)])}


def predict_with_dropout(model: Model, params: PyTree, model_state: PyTree, x: ArrayLike, hparams: dict, key: PRNGKey,
                         samples: int) -> Tuple[Array, Array]:
    """Class probabilities with dropout left ON at test time: ``(one pass, mean of `samples` passes)``, each
    pass a fresh set of masks from ``key`` (Monte-Carlo dropout). The deterministic eval-mode prediction is
    what the expectation over masks approximates -- which is why dropout is switched off at test time."""

    def one(k):
        logits, _ = model.apply(params, model_state, x, key=k, train=True, hparams=hparams)
        return jax.nn.softmax(logits)

    probs = jax.lax.map(one, jax.random.split(key, samples))
    return probs[0], probs.mean(axis=0)


def without_biases(model: Model, layers: Sequence[str]) -> Model:
    """``model`` with the biases of ``layers`` removed: ``apply`` reads them as zeros, so they receive no
    gradient and stay at their initial 0 (the parameter tree keeps its shape, so checkpoints and sweeps
    treat both models alike). For the layers in front of a BatchNorm this changes nothing but the float
    round-off: BN subtracts the batch mean, and with it any constant bias (D2L §8.5 exercise)."""
    layers = tuple(layers)

    def strip(params):
        return {name: ({**p, "bias": jnp.zeros_like(p["bias"])} if name in layers else p)
                for name, p in params.items()}

    def apply(params, model_state, x, *, key=None, train=False, hparams=None):
        return model.apply(strip(params), model_state, x, key=key, train=train, hparams=hparams)

    return Model(model.init, apply, model.hparams)
