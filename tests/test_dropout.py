import math

import chex
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from absl.testing import parameterized
from jax.test_util import check_grads

import regjax as rj

KEY = jax.random.key(42)


class DropoutEagerAndJitTest(chex.TestCase):
    """Each test runs twice: its function eagerly and under ``jax.jit`` (``self.variant``)."""

    @chex.variants(with_jit=True, without_jit=True)
    @parameterized.parameters(0.1, 0.5, 0.8)
    def test_fraction_dropped_and_mean_preserved(self, rate):
        n = 200_000
        x = jnp.ones((n,))
        y = self.variant(lambda x: rj.dropout(x, rate, key=KEY, train=True))(x)
        chex.assert_shape(y, (n,))
        dropped = float(jnp.mean(y == 0))
        sd = math.sqrt(rate * (1 - rate) / n)  # binomial standard error of the dropped fraction
        assert abs(dropped - rate) < 6 * sd
        # mean of y = (kept fraction) / (1 - rate); its standard error is sd / (1 - rate)
        assert abs(float(jnp.mean(y)) - 1.0) < 6 * sd / (1 - rate)

    @chex.variants(with_jit=True, without_jit=True)
    def test_rate_one_gives_zeros_and_finite_gradients(self):
        x = jnp.arange(1.0, 7.0)
        f = self.variant(lambda x, r: jnp.sum(rj.dropout(x, r, key=KEY)))
        assert float(f(x, 1.0)) == 0.0
        gx, gr = jax.grad(f, argnums=(0, 1))(x, 1.0)
        assert np.all(np.isfinite(gx)) and np.isfinite(gr)
        np.testing.assert_array_equal(gx, 0)


def test_every_output_is_zero_or_scaled_input():
    x = jax.random.normal(jax.random.key(1), (64, 33)) + 3.0
    rate = 0.3
    y = rj.dropout(x, rate, key=KEY)
    kept = y != 0
    np.testing.assert_allclose(y[kept], (x / (1 - rate))[kept], rtol=1e-6)
    assert 0 < int(kept.sum()) < x.size


def test_eval_and_rate_zero_return_x_exactly():
    x = jax.random.normal(jax.random.key(1), (10, 5))
    assert rj.dropout(x, 0.5, key=KEY, train=False) is x
    assert rj.dropout(x, 0.0, key=KEY) is x
    # A traced rate of 0 keeps everything too (no special-casing needed under jit).
    np.testing.assert_array_equal(jax.jit(lambda r: rj.dropout(x, r, key=KEY))(0.0), x)


def test_different_keys_different_masks_and_same_key_same_mask():
    x = jnp.ones((1000,))
    a = rj.dropout(x, 0.5, key=jax.random.key(0))
    b = rj.dropout(x, 0.5, key=jax.random.key(1))
    c = rj.dropout(x, 0.5, key=jax.random.key(0))
    assert not np.array_equal(a, b)
    np.testing.assert_array_equal(a, c)


def test_traced_rate_under_jit_and_vmap_over_rates_and_keys():
    x = jnp.ones((50_000,))
    rates = jnp.array([0.1, 0.5, 0.9])
    frac = jax.jit(jax.vmap(lambda r: jnp.mean(rj.dropout(x, r, key=KEY) == 0)))(rates)
    np.testing.assert_allclose(frac, rates, atol=0.01)
    keys = jax.random.split(KEY, 4)
    masks = jax.vmap(lambda k: rj.dropout(x, 0.5, key=k) != 0)(keys)
    assert len({bytes(np.asarray(m)) for m in masks}) == 4


def test_gradient_zero_exactly_where_dropped():
    x = jax.random.normal(jax.random.key(3), (400,))
    rate = 0.4
    g = jax.grad(lambda x: jnp.sum(rj.dropout(x, rate, key=KEY)))(x)
    y = rj.dropout(x, rate, key=KEY)
    np.testing.assert_array_equal(g[y == 0], 0.0)
    np.testing.assert_allclose(g[y != 0], 1 / (1 - rate), rtol=1e-6)
    check_grads(lambda x: rj.dropout(x, rate, key=KEY), (x,), order=2)


@pytest.mark.parametrize("bad", [-0.1, 1.5, float("nan")])
def test_bad_rates_raise_naming_rate(bad):
    with pytest.raises(ValueError, match="rate"):
        rj.dropout(jnp.ones(3), bad, key=KEY)


def test_missing_key_and_non_bool_train_raise():
    with pytest.raises(ValueError, match="key"):
        rj.dropout(jnp.ones(3), 0.5)
    with pytest.raises(TypeError, match="train"):
        rj.dropout(jnp.ones(3), 0.5, key=KEY, train=jnp.array(True))
    with pytest.raises(TypeError, match="floating"):
        rj.dropout(jnp.ones(3, jnp.int32), 0.5, key=KEY)
