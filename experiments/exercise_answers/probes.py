"""Probes for the exercise answers: what the models compute but do not return -- hidden activations of the
dropout MLP (with the training-time dropout applied or not), predictions with dropout left on at test time,
LeNet-BN with the biases in front of its BatchNorm layers removed.
"""
from __future__ import annotations

from typing import Any, Callable, List, Optional, Sequence

import jax
import jax.numpy as jnp

from regjax.base import Array, ArrayLike, Model, PRNGKey, PyTree
from regjax.models.scratch import mlp_layers

__all__ = ["mlp_hidden", "hidden_statistics", "predict_with_dropout", "without_biases"]


def mlp_hidden(params: PyTree, x: ArrayLike, *, rates: Any = None, key: Optional[PRNGKey] = None,
               train: bool = False, activation: Callable = jax.nn.relu) -> List[Array]:
    """The hidden activations of the scratch MLP, layer by layer, from its own forward pass
    (``regjax.models.scratch.mlp_layers``): after the activation and -- with ``train`` -- after the dropout the
    next layer sees (per-layer keys ``fold_in(key, i)``). ``rates`` may be traced (vmapped sweeps)."""
    return mlp_layers(params, x, rates=rates, key=key, train=train, activation=activation)[1]


def hidden_statistics(params: PyTree, x: ArrayLike, rates: Any, key: PRNGKey) -> dict:
    """Per hidden layer, over units and examples: the variance (``'eval'``) and mean (``'mean'``) of its
    activations in eval mode (no dropout), and their variance with the dropout masks on, drawn from ``key``
    (``'train'``); each of shape ``(L,)``. Vmappable (§5.6 ex. 3)."""
    ev, tr = mlp_hidden(params, x), mlp_hidden(params, x, rates=rates, key=key, train=True)
    return {"eval": jnp.stack([jnp.var(h) for h in ev]), "mean": jnp.stack([jnp.mean(h) for h in ev]),
            "train": jnp.stack([jnp.var(h) for h in tr])}


def predict_with_dropout(model: Model, params: PyTree, model_state: PyTree, x: ArrayLike, hparams: dict, key: PRNGKey,
                         samples: int) -> Array:
    """Class probabilities with dropout left ON at test time, ``(samples, n, classes)``: pass ``i`` draws its
    masks from ``split(key, samples)[i]`` (Monte-Carlo dropout). The deterministic eval-mode prediction is what
    the mean over masks approximates -- which is why dropout is switched off at test time (§5.6 ex. 4)."""

    def one(k):
        logits, _ = model.apply(params, model_state, x, key=k, train=True, hparams=hparams)
        return jax.nn.softmax(logits)

    return jax.lax.map(one, jax.random.split(key, samples))


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
