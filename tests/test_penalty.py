import chex
import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from jax.test_util import check_grads

import regjax as rj
from regjax.models import scratch


def _params():
    return {
        "dense0": {"kernel": jnp.array([[1.0, 2.0], [3.0, -4.0]]), "bias": jnp.array([10.0, 20.0])},
        "bn0": {"scale": jnp.array([5.0, 5.0]), "bias": jnp.array([1.0, 1.0])},
        "conv0": {"kernel": jnp.ones((2, 2, 1, 3)), "bias": jnp.array([7.0, 7.0, 7.0])},
    }


class PenaltyEagerAndJitTest(chex.TestCase):
    @chex.variants(with_jit=True, without_jit=True)
    def test_l2_penalty_hand_computed_default_mask_weights_only(self):
        # ½ (1 + 4 + 9 + 16) + ½ · 12 = 15 + 6; biases and BN scale/bias excluded.
        out = self.variant(rj.l2_penalty)(_params())
        chex.assert_shape(out, ())
        assert float(out) == pytest.approx(21.0)


def test_weights_mask_selects_kernels():
    mask = rj.weights_mask(_params())
    assert mask["dense0"] == {"kernel": True, "bias": False}
    assert mask["bn0"] == {"scale": False, "bias": False}
    assert mask["conv0"]["kernel"] is True


def test_l2_penalty_prefix_mask_and_callable_mask():
    p = _params()
    # Prefix mask: everything under dense0 (kernel and bias), nothing else.
    assert float(rj.l2_penalty(p, {"dense0": True, "bn0": False, "conv0": False})) == pytest.approx(15.0 + 250.0)
    all_leaves = lambda params: jax.tree_util.tree_map(lambda _: True, params)
    expected = 0.5 * sum(float(jnp.sum(x**2)) for x in jax.tree_util.tree_leaves(p))
    assert float(rj.l2_penalty(p, all_leaves)) == pytest.approx(expected)


def test_mismatched_mask_is_a_clear_error():
    with pytest.raises(ValueError, match="mask"):
        rj.l2_penalty(_params(), {"dense0": True})
    with pytest.raises(ValueError, match="mask"):
        rj.l2_penalty(_params(), [True, False])


def test_gradient_of_penalty_is_lam_w_on_weights_zero_elsewhere():
    p = _params()
    lam = 0.3
    g = jax.grad(lambda q: lam * rj.l2_penalty(q))(p)
    np.testing.assert_allclose(g["dense0"]["kernel"], lam * p["dense0"]["kernel"], rtol=1e-6)
    np.testing.assert_allclose(g["conv0"]["kernel"], lam * p["conv0"]["kernel"], rtol=1e-6)
    for leaf in (g["dense0"]["bias"], g["bn0"]["scale"], g["bn0"]["bias"], g["conv0"]["bias"]):
        assert np.all(np.asarray(leaf) == 0)
    # the whole gradient tree, structure and shapes included
    expected = jax.tree_util.tree_map(lambda w, m: lam * w if m else jnp.zeros_like(w), p, rj.weights_mask(p))
    chex.assert_trees_all_close(g, expected, rtol=1e-6)


def test_check_grads_float64(x64):
    p = jax.tree_util.tree_map(lambda a: jnp.asarray(a, jnp.float64), _params())
    check_grads(rj.l2_penalty, (p,), order=2, modes=["rev", "fwd"])


def test_penalized_adds_lam_times_penalty_and_rejects_negative_lam():
    p = _params()
    data_loss = lambda params, scale: scale * jnp.sum(params["dense0"]["bias"])
    f = rj.penalized(data_loss, 0.5)
    assert float(f(p, 2.0)) == pytest.approx(60.0 + 0.5 * 21.0)
    for bad in (-0.1, float("nan"), float("inf")):
        with pytest.raises(ValueError, match="lam"):
            rj.penalized(data_loss, bad)


def test_penalized_accepts_traced_lam_under_vmap():
    p = _params()
    lams = jnp.array([0.0, 1.0, 2.0])
    out = jax.vmap(lambda lam: rj.penalized(lambda q: 0.0, lam)(p))(lams)
    np.testing.assert_allclose(out, 21.0 * lams)


def test_weights_mask_works_as_optax_mask():
    p = scratch.init_mlp(jax.random.key(0), 4, (3,), 2)
    tx = optax.add_decayed_weights(0.1, mask=rj.weights_mask)
    updates, _ = tx.update(jax.tree_util.tree_map(jnp.zeros_like, p), tx.init(p), p)
    np.testing.assert_allclose(updates["dense0"]["kernel"], 0.1 * p["dense0"]["kernel"])
    assert np.all(np.asarray(updates["dense0"]["bias"]) == 0)


def test_integer_kernels_are_penalized_in_floating_point():
    import jax.numpy as jnp

    from regjax.penalty import l1_penalty, l2_penalty

    big = {"dense0": {"kernel": jnp.full((2, 2), 50000, jnp.int32)}}
    small = {"dense0": {"kernel": jnp.full((2, 2), 100, jnp.int8)}}
    assert float(l2_penalty(big)) == pytest.approx(0.5 * 4 * 50000.0 ** 2, rel=1e-6)   # int32 gave 7.05e8
    assert float(l2_penalty(small)) == pytest.approx(0.5 * 4 * 100.0 ** 2)            # int8 gave 128
    assert float(l1_penalty(small)) == pytest.approx(400.0)
