"""regjax.noise: DropConnect and Gaussian dropout (D2L §5.6 exercises 6 and 7) against their definitions."""
import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from regjax.dropout import dropout
from regjax.noise import dropconnect, gaussian_dropout

KEY = jax.random.key(7)
W = jax.random.normal(jax.random.key(1), (8, 5))


@pytest.mark.parametrize("rate", [0.2, 0.5, 0.8])
def test_dropconnect_entries_are_zero_or_scaled_and_unbiased(rate):
    out = dropconnect(W, rate, KEY, train=True)
    kept = np.asarray(out != 0)
    np.testing.assert_allclose(np.asarray(out)[kept], np.asarray(W / (1 - rate))[kept], rtol=1e-6)
    n = 4_000  # E[output] = W: the mean of n masks, within 6 standard errors per entry
    mean = jax.vmap(lambda k: dropconnect(W, rate, k, train=True))(jax.random.split(KEY, n)).mean(0)
    se = np.abs(np.asarray(W)) * math.sqrt(rate / (1 - rate) / n)
    assert np.all(np.abs(np.asarray(mean - W)) <= 6 * se + 1e-6)


def test_dropconnect_identities_and_rate_one():
    assert dropconnect(W, 0.0, None, train=True) is W          # rate 0: the identity, no key needed
    assert dropconnect(W, 0.5, None, train=False) is W         # eval mode: the identity
    f = lambda w, r: jnp.sum(dropconnect(w, r, KEY, train=True))
    assert float(f(W, 1.0)) == 0.0
    g = jax.grad(f)(W, 1.0)
    assert np.all(np.isfinite(g)) and np.all(np.asarray(g) == 0)
    with pytest.raises(ValueError):
        dropconnect(W, 1.5, KEY, train=True)
    with pytest.raises(ValueError):
        dropconnect(W, 0.5, None, train=True)


def test_dropconnect_traced_rate_under_vmap_and_jit():
    rates = jnp.array([0.0, 0.5])
    out = jax.jit(jax.vmap(lambda r, k: dropconnect(W, r, k, train=True)))(rates, jax.random.split(KEY, 2))
    np.testing.assert_allclose(out[0], W)                    # a traced 0 keeps every weight, scale 1
    assert 0 < float(jnp.mean(out[1] == 0)) < 1


def test_dropconnect_layer_differs_from_dropout_of_its_inputs():
    """Dropout of the input units zeroes whole rows of W; DropConnect zeroes single weights."""
    out = np.asarray(dropconnect(jnp.ones((200, 50)), 0.5, KEY, train=True))
    rows_all_zero = np.mean((out == 0).all(axis=1))
    assert rows_all_zero == 0 and 0.4 < np.mean(out == 0) < 0.6


@pytest.mark.parametrize("rate", [0.2, 0.5])
def test_gaussian_dropout_matches_dropout_mean_and_variance(rate):
    x = jnp.full((50_000,), 2.0)
    g = gaussian_dropout(x, rate, KEY, train=True)
    d = dropout(x, rate, key=KEY, train=True)
    var = 4.0 * rate / (1 - rate)
    n = x.size
    for y in (g, d):
        assert abs(float(y.mean()) - 2.0) < 6 * math.sqrt(var / n)
        assert abs(float(y.var()) / var - 1) < 0.05
    assert float(jnp.mean(g == 0)) == 0.0                   # continuous: no unit is switched off


def test_gaussian_dropout_identities_and_refusals():
    x = jnp.arange(6.0)
    assert gaussian_dropout(x, 0.0, None, train=True) is x
    assert gaussian_dropout(x, 0.5, None, train=False) is x
    traced = jax.jit(lambda r: gaussian_dropout(x, r, KEY, train=True))(0.0)
    np.testing.assert_allclose(traced, x)
    with pytest.raises(ValueError):
        gaussian_dropout(x, 1.0, KEY, train=True)
    with pytest.raises(TypeError):
        gaussian_dropout(x, 0.5, KEY, train=1)
    with pytest.raises(TypeError):
        gaussian_dropout(jnp.arange(3), 0.5, KEY, train=True)


def test_gaussian_dropout_eval_is_the_identity_whatever_the_rate():
    x = jnp.arange(6.0)
    assert gaussian_dropout(x, 1.0, None, train=False) is x            # the rate-1 refusal is for training only
    assert gaussian_dropout(x, jnp.array([0.5, 1.0]), None, train=False) is x
    ev = jax.jit(lambda r: gaussian_dropout(x, r, KEY, train=False))(1.0)
    np.testing.assert_array_equal(ev, x)


def test_gaussian_dropout_refuses_an_array_of_rates_containing_one():
    x = jnp.ones((4, 3))
    with pytest.raises(ValueError):
        gaussian_dropout(x, jnp.array([0.2, 1.0, 0.5]), KEY, train=True)
    with pytest.raises(ValueError):
        gaussian_dropout(x, np.array([[0.5], [1.0], [0.0], [0.2]]), KEY, train=True)
    out = gaussian_dropout(x, jnp.array([0.0, 0.2, 0.5]), KEY, train=True)   # per-unit rates < 1: accepted
    np.testing.assert_array_equal(out[:, 0], x[:, 0])                        # rate 0: σ = 0, unchanged
    assert np.all(np.isfinite(np.asarray(out)))
