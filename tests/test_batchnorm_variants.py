"""The §8.5 exercise additions: per-layer BN flags of LeNet-BN (ex. 3) and the "lite" BN modes (ex. 4)."""
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx
from jax.test_util import check_grads

import regjax as rj
from regjax.models import linen as linen_models
from regjax.models import nnx as nnx_models
from regjax.models import scratch
from regjax.models.adapters import scratch_lenet_bn

KEY = jax.random.key(0)
SHAPE = (3, 16, 16, 1)  # 16x16 keeps LeNet's two VALID 5x5 convs and is cheap


def _images():
    return jax.random.uniform(jax.random.key(1), SHAPE)


def _identity_bn(params, state, layers):
    """BN layers that are the identity in evaluation: mean 0, var 1 - eps, scale 1, bias 0."""
    params, state = dict(params), dict(state)
    for i in layers:
        params[f"bn{i}"] = {"scale": jnp.ones_like(params[f"bn{i}"]["scale"]),
                            "bias": jnp.zeros_like(params[f"bn{i}"]["bias"])}
        state[f"bn{i}"] = {"mean": jnp.zeros_like(state[f"bn{i}"]["mean"]),
                           "var": jnp.full_like(state[f"bn{i}"]["var"], 1.0 - 1e-5)}
    return params, state


def _trained_like(params, state):
    """Non-trivial BN params and statistics (so a layer left on is not accidentally the identity)."""
    params = {k: ({"scale": 1.5 + 0 * v["scale"], "bias": 0.2 + 0 * v["bias"]} if k.startswith("bn") else v)
              for k, v in params.items()}
    state = {k: {"mean": 0.1 + 0 * v["mean"], "var": 2.0 + 0 * v["var"]} for k, v in state.items()}
    return params, state


def _only(tree, flags):
    return {k: v for k, v in tree.items() if not (k.startswith("bn") and not flags[int(k[2:])])}


@pytest.mark.parametrize("flags", [(True, False, False, False), (False, True, True, False), (True, True, False, True)])
def test_flag_pattern_equals_all_bn_where_on_and_plain_where_off(flags):
    x = _images()
    params, state = _trained_like(*scratch.init_lenet_bn(KEY, 10, SHAPE[1:]))
    p_pat, s_pat = scratch.init_lenet_bn(KEY, 10, SHAPE[1:], use_bn=flags)
    assert set(p_pat) == set(_only(params, flags)) and set(s_pat) == set(_only(state, flags))  # no unused BN
    off = [i for i, f in enumerate(flags) if not f]
    on = [i for i, f in enumerate(flags) if f]
    y_pat, s_out = scratch.lenet_bn(_only(params, flags), _only(state, flags), x, train=False, use_bn=flags)
    # = the all-BN model whose switched-off layers are identities
    y_all, _ = scratch.lenet_bn(*_identity_bn(params, state, off), x, train=False)
    np.testing.assert_allclose(y_pat, y_all, rtol=1e-5, atol=1e-6)
    # = the plain model when the pattern's own BN layers are identities
    p_id, s_id = _identity_bn(params, state, on)
    y_id, _ = scratch.lenet_bn(_only(p_id, flags), _only(s_id, flags), x, train=False, use_bn=flags)
    y_plain, _ = scratch.lenet_bn(params, state, x, train=False, use_bn=False)
    np.testing.assert_allclose(y_id, y_plain, rtol=1e-5, atol=1e-6)
    assert set(s_out) == set(_only(state, flags))
    # training: the first BN layer sees the same input in both models, so its new statistics agree
    if flags[0]:
        _, s_tr = scratch.lenet_bn(_only(params, flags), _only(state, flags), x, train=True, use_bn=flags)
        _, s_all = scratch.lenet_bn(params, state, x, train=True)
        np.testing.assert_allclose(s_tr["bn0"]["mean"], s_all["bn0"]["mean"], rtol=1e-5)
        assert set(s_tr) == set(_only(state, flags))


def test_all_true_and_all_false_patterns_are_the_bool_models():
    x = _images()
    params, state = scratch.init_lenet_bn(KEY, 10, SHAPE[1:])
    for train in (True, False):
        for flag in (True, False):
            y_b, s_b = scratch.lenet_bn(params, state, x, train=train, use_bn=flag)
            y_p, s_p = scratch.lenet_bn(params, state, x, train=train, use_bn=[flag] * 4)
            np.testing.assert_array_equal(y_b, y_p)
            jax.tree_util.tree_map(np.testing.assert_array_equal, s_b, s_p)
    p_plain, s_plain = scratch.init_lenet_bn(KEY, 10, SHAPE[1:], use_bn=False)
    assert not s_plain and not any(k.startswith("bn") for k in p_plain)


@pytest.mark.parametrize("bad", [(True, False), "TTTT", 1, None, (1, 0, 0, 0), (True, False, True, "x")])
def test_bad_use_bn_is_refused_naming_it(bad):
    with pytest.raises(ValueError, match="use_bn"):
        scratch_lenet_bn(10, SHAPE[1:], use_bn=bad)
    with pytest.raises(ValueError, match="use_bn"):
        scratch.init_lenet_bn(KEY, 10, SHAPE[1:], use_bn=bad)
    with pytest.raises(ValueError, match="bn_mode"):
        scratch_lenet_bn(10, SHAPE[1:], bn_mode="median")


def test_adapter_pattern_and_mode_reach_the_model():
    model = scratch_lenet_bn(10, SHAPE[1:], use_bn=(False, True, False, False), bn_mode="mean")
    params, state = model.init(KEY)
    assert set(state) == {"bn1"}
    y, new_state = model.apply(params, state, _images(), train=True)
    want, want_state = scratch.lenet_bn(params, state, _images(), train=True, use_bn=(False, True, False, False),
                                        bn_mode="mean")
    np.testing.assert_array_equal(y, want)
    assert set(new_state) == {"bn1"}


# --- lite batch norm ---------------------------------------------------------------------------------------

X = jnp.array([[1.0, 10.0], [3.0, 14.0], [5.0, 0.0], [7.0, 4.0]])  # mean (4, 7), biased var (5, 29)
PARAMS = {"scale": jnp.array([2.0, 0.5]), "bias": jnp.array([1.0, -1.0])}
STATE = {"mean": jnp.array([0.5, 1.0]), "var": jnp.array([2.0, 3.0])}


@pytest.mark.parametrize("mode,expected", [
    ("full", (X - jnp.array([4.0, 7.0])) / jnp.sqrt(jnp.array([5.0, 29.0]) + 1e-5)),
    ("mean", X - jnp.array([4.0, 7.0])),
    ("variance", X / jnp.sqrt(jnp.array([5.0, 29.0]) + 1e-5)),
])
def test_lite_modes_by_hand(mode, expected):
    y, new_state = rj.batch_norm(X, PARAMS, STATE, train=True, mode=mode)
    np.testing.assert_allclose(y, expected * PARAMS["scale"] + PARAMS["bias"], rtol=1e-5, atol=1e-6)
    # every mode keeps both moving statistics with the same formula
    np.testing.assert_allclose(new_state["mean"], 0.9 * STATE["mean"] + 0.1 * jnp.array([4.0, 7.0]), rtol=1e-6)
    np.testing.assert_allclose(new_state["var"], 0.9 * STATE["var"] + 0.1 * jnp.array([5.0, 29.0]), rtol=1e-6)
    # evaluation uses the moving counterparts of the same statistics
    y_eval, same = rj.batch_norm(X, PARAMS, STATE, train=False, mode=mode)
    assert same is STATE
    centred = X if mode == "variance" else X - STATE["mean"]
    scaled = centred if mode == "mean" else centred / jnp.sqrt(STATE["var"] + 1e-5)
    np.testing.assert_allclose(y_eval, scaled * PARAMS["scale"] + PARAMS["bias"], rtol=1e-5, atol=1e-6)


BY_HAND = {  # y for X, PARAMS, STATE in training (batch statistics) and evaluation (STATE's)
    "mean": (X - jnp.array([4.0, 7.0]), X - STATE["mean"]),
    "variance": (X / jnp.sqrt(jnp.array([5.0, 29.0]) + 1e-5), X / jnp.sqrt(STATE["var"] + 1e-5)),
}
NEW_STATE = {"mean": 0.9 * STATE["mean"] + 0.1 * jnp.array([4.0, 7.0]),
             "var": 0.9 * STATE["var"] + 0.1 * jnp.array([5.0, 29.0])}


@pytest.mark.parametrize("mode", sorted(BY_HAND))
def test_the_linen_lite_layer_by_hand(mode):
    layer = linen_models.LiteBatchNorm(mode)
    variables = layer.init(KEY, X)
    shapes = jax.tree_util.tree_map(jnp.shape, variables)
    assert shapes == {"params": {"scale": (2,), "bias": (2,)}, "batch_stats": {"mean": (2,), "var": (2,)}}
    variables = {"params": PARAMS, "batch_stats": STATE}
    y, updates = layer.apply(variables, X, mutable=["batch_stats"])
    np.testing.assert_allclose(y, BY_HAND[mode][0] * PARAMS["scale"] + PARAMS["bias"], rtol=1e-5, atol=1e-6)
    for name in ("mean", "var"):
        np.testing.assert_allclose(updates["batch_stats"][name], NEW_STATE[name], rtol=1e-6)
    y_eval = linen_models.LiteBatchNorm(mode, use_running_average=True).apply(variables, X)
    np.testing.assert_allclose(y_eval, BY_HAND[mode][1] * PARAMS["scale"] + PARAMS["bias"], rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("mode", sorted(BY_HAND))
def test_the_nnx_lite_layer_by_hand(mode):
    layer = nnx_models.LiteBatchNorm(2, mode, rngs=nnx.Rngs(0))
    assert nnx.to_pure_dict(nnx.state(layer, nnx.Param)).keys() == {"scale", "bias"}
    layer.scale[...], layer.bias[...] = PARAMS["scale"], PARAMS["bias"]
    layer.mean[...], layer.var[...] = STATE["mean"], STATE["var"]
    y_eval = nnx.view(layer, use_running_average=True)(X)  # evaluation first: it must leave the statistics alone
    np.testing.assert_allclose(y_eval, BY_HAND[mode][1] * PARAMS["scale"] + PARAMS["bias"], rtol=1e-5, atol=1e-6)
    np.testing.assert_array_equal(layer.mean[...], STATE["mean"])
    y = layer(X)  # built for training (use_running_average=False, as nnx.BatchNorm)
    np.testing.assert_allclose(y, BY_HAND[mode][0] * PARAMS["scale"] + PARAMS["bias"], rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(layer.mean[...], NEW_STATE["mean"], rtol=1e-6)
    np.testing.assert_allclose(layer.var[...], NEW_STATE["var"], rtol=1e-6)


def test_bad_mode_is_refused():
    with pytest.raises(ValueError, match="mode"):
        rj.batch_norm(X, PARAMS, STATE, train=True, mode="std")
    with pytest.raises(ValueError, match="^mode must be one of"):
        linen_models.LiteBatchNorm("std")
    with pytest.raises(ValueError, match="^mode must be one of"):
        nnx_models.LiteBatchNorm(2, "std", rngs=nnx.Rngs(0))


@pytest.mark.parametrize("mode", ["mean", "variance"])
def test_lite_modes_check_grads(x64, mode):
    x = jax.random.normal(jax.random.key(0), (6, 3), jnp.float64) + 1.0
    params = {"scale": jnp.array([1.0, 2.0, 0.5]), "bias": jnp.array([0.0, 1.0, -1.0])}
    state = {"mean": jnp.zeros(3), "var": jnp.ones(3)}
    for train in (True, False):
        f = lambda x, p: rj.batch_norm(x, p, state, train=train, mode=mode)[0]
        check_grads(f, (x, params), order=2, modes=["fwd", "rev"])
