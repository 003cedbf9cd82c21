import chex
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from absl.testing import parameterized
from flax import linen as nn
from jax.test_util import check_grads

import regjax as rj

SHAPES = {"NC": (64, 5), "NHWC": (8, 6, 6, 3)}


def _x(shape, key=0):
    return 3.0 * jax.random.normal(jax.random.key(key), shape) + 2.0


class BatchNormEagerAndJitTest(chex.TestCase):
    @chex.variants(with_jit=True, without_jit=True)
    @parameterized.parameters(*SHAPES)
    def test_training_output_is_standardized_per_feature(self, layout):
        shape = SHAPES[layout]
        x = _x(shape)
        params, state = rj.batch_norm_init(shape[-1])
        y, new_state = self.variant(lambda x: rj.batch_norm(x, params, state, train=True))(x)
        chex.assert_shape(y, shape)
        chex.assert_shape([new_state["mean"], new_state["var"]], (shape[-1],))
        axes = tuple(range(len(shape) - 1))
        np.testing.assert_allclose(jnp.mean(y, axes), 0.0, atol=1e-5)
        np.testing.assert_allclose(jnp.var(y, axes), 1.0, atol=1e-3)  # eps=1e-5 against var≈9 shrinks it slightly


@pytest.mark.parametrize("layout", SHAPES)
def test_moving_statistics_follow_formula_and_eval_uses_them(layout):
    shape = SHAPES[layout]
    x = _x(shape)
    params, state = rj.batch_norm_init(shape[-1])
    params = {"scale": jnp.arange(1.0, shape[-1] + 1), "bias": -jnp.ones(shape[-1])}
    axes = tuple(range(len(shape) - 1))
    _, s1 = rj.batch_norm(x, params, state, train=True, momentum=0.8)
    np.testing.assert_allclose(s1["mean"], 0.2 * jnp.mean(x, axes), rtol=1e-5)
    np.testing.assert_allclose(s1["var"], 0.8 + 0.2 * jnp.var(x, axes), rtol=1e-5)  # biased variance
    y, s2 = rj.batch_norm(x, params, s1, train=False)
    assert s2 is s1
    expected = (x - s1["mean"]) / jnp.sqrt(s1["var"] + 1e-5) * params["scale"] + params["bias"]
    np.testing.assert_allclose(y, expected, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("layout", SHAPES)
@pytest.mark.parametrize("train", [True, False])
def test_equals_flax_batchnorm(layout, train):
    shape = SHAPES[layout]
    x = _x(shape)
    c = shape[-1]
    params = {"scale": 1.0 + 0.1 * jnp.arange(c), "bias": 0.5 - 0.2 * jnp.arange(c)}
    state = {"mean": 0.3 * jnp.arange(c), "var": 1.0 + jnp.arange(c)}
    flax_bn = nn.BatchNorm(use_running_average=not train, momentum=0.9, epsilon=1e-5)
    variables = {"params": params, "batch_stats": state}
    y_flax, updates = flax_bn.apply(variables, x, mutable=["batch_stats"])
    y, new_state = rj.batch_norm(x, params, state, train=train)
    np.testing.assert_allclose(y, y_flax, rtol=1e-4, atol=1e-4)
    for k in ("mean", "var"):
        np.testing.assert_allclose(new_state[k], updates["batch_stats"][k], rtol=1e-5, atol=1e-6)
    # same names, structure and shapes as Flax's batch_stats
    chex.assert_trees_all_close(new_state, dict(updates["batch_stats"]), rtol=1e-5, atol=1e-6)


def test_batch_of_one_is_finite_in_training():
    params, state = rj.batch_norm_init(4)
    y, s = rj.batch_norm(jnp.ones((1, 4)) * 7.0, params, state, train=True)
    assert np.all(np.isfinite(y)) and np.all(np.isfinite(s["var"]))
    np.testing.assert_allclose(y, 0.0)


def test_check_grads(x64):
    x = jax.random.normal(jax.random.key(0), (6, 3), jnp.float64)
    params = {"scale": jnp.array([1.0, 2.0, 0.5]), "bias": jnp.array([0.0, 1.0, -1.0])}
    state = {"mean": jnp.zeros(3), "var": jnp.ones(3)}
    for train in (True, False):
        f = lambda x, p: rj.batch_norm(x, p, state, train=train)[0]
        check_grads(f, (x, params), order=2, modes=["rev"])


def test_bad_inputs_raise_clear_errors():
    params, state = rj.batch_norm_init(3)
    with pytest.raises(ValueError, match=r"\(N, C\) or NHWC"):
        rj.batch_norm(jnp.ones((2, 4, 3)), params, state, train=True)
    with pytest.raises(ValueError, match="features"):
        rj.batch_norm(jnp.ones((2, 4)), params, state, train=True)
    with pytest.raises(ValueError, match="momentum"):
        rj.batch_norm(jnp.ones((2, 3)), params, state, train=True, momentum=1.5)
    with pytest.raises(ValueError, match="num_features"):
        rj.batch_norm_init(0)


def test_axis_name_averages_statistics_across_devices_like_one_big_batch():
    # vmap with an axis_name stands in for pmap/shard_map: per-"device" shards, pmean'd statistics.
    x = _x((4, 16, 3))  # 4 shards of 16 examples
    params, state = rj.batch_norm_init(3)
    y_sharded, s_sharded = jax.vmap(
        lambda xs: rj.batch_norm(xs, params, state, train=True, axis_name="batch"), axis_name="batch"
    )(x)
    y_full, s_full = rj.batch_norm(x.reshape(64, 3), params, state, train=True)
    chex.assert_shape(y_sharded, (4, 16, 3))
    np.testing.assert_allclose(y_sharded.reshape(64, 3), y_full, rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(s_sharded["var"][0], s_full["var"], rtol=1e-5)
    # every "device" holds the same (global) statistics, equal to the one-big-batch ones
    for shard in range(4):
        chex.assert_trees_all_close(jax.tree_util.tree_map(lambda a: a[shard], s_sharded), s_full, rtol=1e-5,
                                    atol=1e-6)
