"""regjax: D2L's regularization chapters as small pure JAX functions.

Explicit PRNG keys, explicit ``train`` flags, explicit state in and out; everything works under ``jax.jit``,
``jax.grad`` and ``jax.vmap``.
"""
from regjax.batchnorm import batch_norm, batch_norm_init
from regjax.dropout import dropout
from regjax.losses import (
    cosine_embedding_loss,
    l1_loss,
    naive_softmax_cross_entropy,
    poisson_nll_loss,
    softmax_cross_entropy,
    squared_loss,
)
from regjax.optim import add_l1_decay, adam_l2, adamw, decayed_sgd, l1_decayed_sgd, scratch_sgd, sgd, sgd_step
from regjax.penalty import l1_penalty, l2_penalty, penalized, weights_mask

__version__ = "0.1.0"

__all__ = [
    "l2_penalty", "weights_mask", "penalized", "l1_penalty", "add_l1_decay", "l1_decayed_sgd",
    "dropout",
    "batch_norm_init", "batch_norm",
    "squared_loss", "softmax_cross_entropy", "naive_softmax_cross_entropy",
    "l1_loss", "poisson_nll_loss", "cosine_embedding_loss",
    "sgd_step", "scratch_sgd", "sgd", "decayed_sgd", "adam_l2", "adamw",
]
