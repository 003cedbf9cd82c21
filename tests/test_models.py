import chex
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from absl.testing import parameterized

from regjax.models import from_flax_variables, get_initializer, scratch, to_flax_variables
from regjax.models import linen as fm

KEY = jax.random.key(0)


def test_mlp_training_uses_dropout_with_distinct_layer_masks():
    params = scratch.init_mlp(KEY, 8, (64, 64), 3)
    x = jnp.ones((4, 8))
    a = scratch.mlp(params, x, key=jax.random.key(1), train=True)
    b = scratch.mlp(params, x, key=jax.random.key(2), train=True)
    assert not np.allclose(a, b)
    # flax version also needs its rng and differs between keys
    module = fm.DropoutMLP(hidden=(64, 64), num_outputs=3)
    v = module.init(KEY, x, train=False)
    fa = module.apply(v, x, train=True, rngs={"dropout": jax.random.key(1)})
    fb = module.apply(v, x, train=True, rngs={"dropout": jax.random.key(2)})
    assert not np.allclose(fa, fb)
    with pytest.raises(ValueError, match="rates"):
        scratch.mlp(params, x, rates=(0.1,))


class ModelsEagerAndJitTest(chex.TestCase):
    @chex.variants(with_jit=True, without_jit=True)
    def test_mlp_scratch_equals_flax_in_eval_given_same_weights(self):
        x = jax.random.uniform(jax.random.key(1), (16, 28, 28))
        module = fm.DropoutMLP(hidden=(32, 16), rates=(0.2, 0.5), weight_init="xavier")
        variables = module.init(KEY, x, train=False)
        params, _ = from_flax_variables(variables)
        ours = self.variant(lambda p, x: scratch.mlp(p, x, train=False, rates=(0.2, 0.5)))(params, x)
        theirs = module.apply(variables, x, train=False)
        chex.assert_shape(ours, (16, 10))
        np.testing.assert_allclose(ours, theirs, rtol=1e-5, atol=1e-6)
        # and the scratch init builds the same layout
        mine = scratch.init_mlp(KEY, 784, (32, 16), 10)
        assert jax.tree_util.tree_structure(mine) == jax.tree_util.tree_structure(params)
        assert jax.tree_util.tree_map(jnp.shape, mine) == jax.tree_util.tree_map(jnp.shape, params)
        chex.assert_trees_all_equal_shapes_and_dtypes(mine, params)

    @chex.variants(with_jit=True, without_jit=True)
    @parameterized.parameters(True, False)
    def test_lenet_bn_scratch_equals_flax(self, train):
        x = jax.random.uniform(jax.random.key(1), (8, 28, 28, 1))
        module = fm.LeNetBN()
        variables = module.init(KEY, x, train=False)
        params, state = from_flax_variables(variables)
        # move the moving statistics away from their init so eval really uses them
        state = jax.tree_util.tree_map(lambda s: s + 0.1, state)
        variables = to_flax_variables(params, state)
        ours, new_state = self.variant(lambda p, s, x: scratch.lenet_bn(p, s, x, train=train))(params, state, x)
        if train:
            theirs, updates = module.apply(variables, x, train=True, mutable=["batch_stats"])
            theirs_state = updates["batch_stats"]
        else:
            theirs, theirs_state = module.apply(variables, x, train=False), state
        chex.assert_shape(ours, (8, 10))
        np.testing.assert_allclose(ours, theirs, rtol=1e-4, atol=1e-5)
        for a, b in zip(jax.tree_util.tree_leaves(new_state), jax.tree_util.tree_leaves(theirs_state)):
            np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-6)
        # ...and the same tree (names and structure), not only the same leaves in order
        chex.assert_trees_all_close(new_state, theirs_state, rtol=1e-4, atol=1e-6)
        mine_p, mine_s = scratch.init_lenet_bn(KEY)
        assert jax.tree_util.tree_map(jnp.shape, (mine_p, mine_s)) == jax.tree_util.tree_map(jnp.shape, (params, state))


def test_softmax_regression_and_linreg_shapes_and_flax_equivalence():
    x = jax.random.uniform(jax.random.key(1), (5, 28, 28))
    module = fm.SoftmaxRegression()
    v = module.init(KEY, x)
    np.testing.assert_allclose(scratch.softmax_regression(v["params"], x), module.apply(v, x), rtol=1e-5, atol=1e-6)
    p = scratch.init_linreg(KEY, 3)
    chex.assert_shape(scratch.linreg(p, jnp.ones((7, 3))), (7, 1))
    with pytest.raises(ValueError, match=r"\(N, 3\)"):
        scratch.linreg(p, jnp.ones((7, 4)))


def test_initializers_have_the_documented_scale():
    w = scratch.init_mlp(KEY, 1000, (1000,), 10)["dense0"]["kernel"]
    assert abs(float(jnp.std(w)) - 0.01) < 0.0005  # N(0, 0.01²), D2L's default
    he = scratch.init_mlp(KEY, 1000, (1000,), 10, weight_init="he")["dense0"]["kernel"]
    assert abs(float(jnp.std(he)) - np.sqrt(2 / 1000)) < 0.002
    with pytest.raises(ValueError, match="init must be one of"):
        get_initializer("kaiming-typo")
