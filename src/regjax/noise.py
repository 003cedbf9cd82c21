"""Noise injection beyond inverted dropout, for D2L §5.6's exercises 6 and 7 ("Dropout").

* ``dropconnect`` (Wan et al. 2013, "Regularization of Neural Networks using DropConnect"): dropout applied to
  the individual *weights* of a weight matrix instead of the activations. Each weight is kept with probability
  ``1 - rate`` and scaled by ``1 / (1 - rate)``, so ``E[dropconnect(W)] = W``.
* ``gaussian_dropout`` (Srivastava et al. 2014, §10): multiplicative Gaussian noise ``x * (1 + σ ε)``,
  ``ε ~ N(0, 1)``, with ``σ² = rate / (1 - rate)`` -- the variance of inverted dropout's multiplier at the same
  ``rate``, so both have mean ``x`` and variance ``x² rate / (1 - rate)``.

Pure functions: the key and the ``train`` flag are explicit; ``rate`` may be traced (vmapped sweeps). As with
``regjax.dropout``, ``rate`` is the probability of *dropping*; evaluation (``train=False``) is the identity.
"""
from __future__ import annotations

from typing import Any, Optional

import jax
import jax.numpy as jnp
import numpy as np

from regjax._checks import noise_is_on
from regjax.base import Array, ArrayLike, PRNGKey
from regjax.dropout import dropout

__all__ = ["dropconnect", "gaussian_dropout"]


def dropconnect(w: ArrayLike, rate: Any, key: Optional[PRNGKey], *, train: bool) -> Array:
    """DropConnect on a weight array: ``M ⊙ W / (1 - rate)`` with ``M_ij ~ Bernoulli(1 - rate)`` i.i.d.

    ``E[output] = W``; each entry is either ``0`` or ``W_ij / (1 - rate)``. One call draws one mask: a dense
    layer ``x @ dropconnect(W, rate, key, train=True)`` shares it across the rows of the minibatch (Wan et al.'s
    fast per-minibatch variant; a mask per example would multiply the layer's memory by the batch size).
    Compare dropout of the layer's *input* units, which drops whole rows of ``W`` at once.

    Args:
      w: weights (any shape, floating point).
      rate: drop probability in ``[0, 1]``; may be traced. ``rate == 1`` gives zeros with finite gradients.
      key: a ``jax.random`` key (required when ``train`` and the rate is not a concrete 0); fresh per step.
      train: ``False`` returns ``w`` unchanged. A Python bool.
    """
    return dropout(w, rate, key=key, train=train)  # the same Bernoulli mask and 1/(1-rate), on the weights


def gaussian_dropout(x: ArrayLike, rate: Any, key: Optional[PRNGKey], *, train: bool) -> Array:
    """Multiplicative Gaussian noise matched to dropout: ``x ⊙ (1 + σ ε)``, ``ε ~ N(0, I)``, ``σ² = rate/(1-rate)``.

    Same mean (``x``) and variance (``x² rate / (1 - rate)``) as inverted dropout at ``rate``, but the
    multiplier is continuous: no unit is ever switched off exactly. In training ``rate`` must be < 1 (σ → ∞):
    a concrete rate -- a scalar, or an array of rates (broadcast against ``x``) with any element equal to 1 --
    raises ``ValueError``; a traced rate of 1 gives ``inf``/``NaN`` (traced rates are the caller's
    responsibility). Evaluation (``train=False``) is the identity whatever the rate, 1 included.

    Args:
      x: activations (any shape, floating point).
      rate: the dropout rate whose variance to match, in ``[0, 1)`` when ``train``; may be traced.
      key: a ``jax.random`` key (required when ``train`` and the rate is not a concrete 0); fresh per step.
      train: ``False`` returns ``x`` unchanged. A Python bool.
    """
    if not noise_is_on(x, rate, key, train, "gaussian_dropout"):
        return x
    if not isinstance(rate, jax.core.Tracer) and np.any(np.asarray(rate) == 1.0):
        raise ValueError("gaussian_dropout: rate must be < 1 in training (the matched variance rate/(1-rate) is "
                         f"infinite), got {rate!r}")
    x = jnp.asarray(x)
    rate = jnp.asarray(rate, dtype=x.dtype)
    sigma = jnp.sqrt(rate / (1.0 - rate))
    return x * (1.0 + sigma * jax.random.normal(key, x.shape, x.dtype))
