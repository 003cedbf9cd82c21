import chex
import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from jax.test_util import check_grads

import regjax as rj


class LossesEagerAndJitTest(chex.TestCase):
    @chex.variants(with_jit=True, without_jit=True)
    def test_squared_loss_hand_computed_and_shape_rule(self):
        y_hat = jnp.array([[1.0], [2.0], [4.0]])
        y = jnp.array([0.0, 2.0, 1.0])
        out = self.variant(rj.squared_loss)(y_hat, y)
        chex.assert_shape(out, (3,))  # n losses, never an (n, n) broadcast
        np.testing.assert_allclose(out, [0.5, 0.0, 4.5])
        np.testing.assert_allclose(rj.squared_loss(y_hat[:, 0], y), [0.5, 0.0, 4.5])
        with pytest.raises(ValueError, match="shape"):
            rj.squared_loss(y_hat, jnp.zeros(4))
        with pytest.raises(ValueError, match="shape"):
            rj.squared_loss(jnp.zeros((3, 2)), jnp.zeros((2, 3)))

    @chex.variants(with_jit=True, without_jit=True)
    def test_softmax_ce_equals_optax(self):
        logits = jax.random.normal(jax.random.key(0), (32, 10)) * 5
        labels = jax.random.randint(jax.random.key(1), (32,), 0, 10)
        ours = self.variant(rj.softmax_cross_entropy)(logits, labels)
        ref = optax.softmax_cross_entropy_with_integer_labels(logits, labels)
        chex.assert_shape(ours, (32,))
        chex.assert_trees_all_close(ours, ref, rtol=1e-5, atol=1e-6)
        np.testing.assert_allclose(rj.naive_softmax_cross_entropy(logits, labels), ref, rtol=1e-4, atol=1e-5)


def test_stable_ce_finite_for_huge_logits_naive_overflows():
    logits = jnp.array([[1e4, 0.0, -1e4], [100.0, 90.0, 0.0], [-1e4, 1e4, 0.0]])
    labels = jnp.array([0, 1, 0])
    stable = rj.softmax_cross_entropy(logits, labels)
    assert np.all(np.isfinite(stable))
    np.testing.assert_allclose(stable, [0.0, 10.0, 2e4], rtol=1e-5, atol=1e-4)
    naive = rj.naive_softmax_cross_entropy(logits, labels)
    assert not np.all(np.isfinite(naive))  # exp(1e4) = inf -> inf/inf = nan; exp(-1e4) -> log 0 = inf
    assert np.isinf(float(jnp.exp(jnp.float32(89.0))))  # the float32 overflow D2L warns about


def test_softmax_ce_gradients_and_label_checks(x64):
    logits = jax.random.normal(jax.random.key(0), (4, 3), jnp.float64)
    labels = jnp.array([0, 2, 1, 1])
    check_grads(lambda z: rj.softmax_cross_entropy(z, labels), (logits,), order=2)
    check_grads(lambda a, b: rj.squared_loss(a, b), (logits, logits[::-1] * 2), order=2)
    with pytest.raises(TypeError, match="integer"):
        rj.softmax_cross_entropy(logits, labels.astype(jnp.float64))
    with pytest.raises(ValueError, match="labels"):
        rj.softmax_cross_entropy(logits, labels[:3])


def test_l1_loss():
    np.testing.assert_allclose(rj.l1_loss(jnp.array([[1.0], [-2.0]]), jnp.array([0.5, 1.0])), [0.5, 3.0])


def test_poisson_nll_matches_scipy_logpmf():
    from scipy.stats import poisson

    rates = np.array([0.5, 2.0, 7.0, 30.0], np.float32)
    counts = np.array([0.0, 3.0, 5.0, 28.0], np.float32)
    exact = -poisson.logpmf(counts, rates)
    full = rj.poisson_nll_loss(jnp.log(rates), counts, compute_full=True)
    # Stirling's approximation of log(k!) is within 1/(12k) of exact for k > 1, and exact (0) for k <= 1.
    np.testing.assert_allclose(full, exact, atol=1 / 12 / 3 + 1e-4)
    # Without the constant term it differs from the NLL by exactly log(k!), and both parametrisations agree.
    from scipy.special import gammaln

    np.testing.assert_allclose(rj.poisson_nll_loss(jnp.log(rates), counts), exact - gammaln(counts + 1), rtol=1e-5)
    np.testing.assert_allclose(
        rj.poisson_nll_loss(rates, counts, from_logits=False), rj.poisson_nll_loss(jnp.log(rates), counts), rtol=1e-5
    )


def test_cosine_embedding_loss():
    x1 = jnp.array([[1.0, 0.0], [1.0, 0.0], [1.0, 1.0]])
    x2 = jnp.array([[1.0, 0.0], [0.0, 1.0], [1.0, 0.0]])
    out = rj.cosine_embedding_loss(x1, x2, jnp.array([1, -1, -1]), margin=0.5)
    np.testing.assert_allclose(out, [0.0, 0.0, np.sqrt(0.5) - 0.5], rtol=1e-6)
    # label 1 equals optax's cosine distance
    np.testing.assert_allclose(
        rj.cosine_embedding_loss(x1, x2, jnp.ones(3)), optax.losses.cosine_distance(x1, x2), rtol=1e-6
    )
