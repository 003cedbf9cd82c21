"""Property tests (hypothesis) over random shapes and values: dropout, the L2 penalty, batch norm.

The examples are derandomized (profile ``regjax`` in conftest.py): the same ones on every run. Shapes are kept
few and small because every new shape compiles. Statistical checks use a tolerance of 6 standard deviations
derived from the variance of the statistic.
"""
import math

import chex
import jax
import jax.numpy as jnp
import numpy as np
from hypothesis import given
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

import regjax as rj

EPS = 1e-5  # batch_norm's default eps
seeds = st.integers(0, 2**32 - 1)


def f32_arrays(shape, lo=-100.0, hi=100.0):
    lo, hi = float(np.float32(lo)), float(np.float32(hi))  # bounds exactly representable in float32
    return hnp.arrays(np.float32, shape, elements=st.floats(lo, hi, width=32, allow_subnormal=False))


# Every new shape compiles (jax.random.bernoulli is jitted per shape, ~0.5 s each), so shapes come from a small
# pool covering ranks 1-3 and sizes 1 to 12; the values, rates and keys are what varies freely.
small_shapes = st.sampled_from([(1,), (7,), (2, 3), (4, 1), (2, 2, 3)])


# --- dropout -----------------------------------------------------------------------------------------------

drop_rates = st.one_of(st.just(0.0), st.just(1.0), st.floats(0.01, 0.95))


@given(x=small_shapes.flatmap(f32_arrays), rate=drop_rates, seed=seeds)
def test_dropout_values_are_zero_or_scaled_input(x, rate, seed):
    key = jax.random.key(seed)
    y = rj.dropout(jnp.asarray(x), rate, key=key)
    chex.assert_shape(y, x.shape)
    chex.assert_type(y, np.float32)
    y = np.asarray(y)
    scaled = x / np.float32(1 - rate) if rate < 1 else np.zeros_like(x)
    # each value is 0 or x / (1 - rate) ...
    assert np.all((y == 0) | np.isclose(y, scaled, rtol=1e-6, atol=0))
    # ... and which one depends on the key and the shape only, not on the values of x
    kept = np.asarray(rj.dropout(jnp.ones(x.shape), rate, key=key)) != 0
    np.testing.assert_allclose(y, np.where(kept, scaled, 0.0), rtol=1e-6, atol=0)
    if rate == 0:
        assert kept.all()
    if rate == 1:
        assert not kept.any()


@given(
    x=st.sampled_from([(1,), (3,), (2, 2)]).flatmap(lambda s: f32_arrays(s, -10, 10)),
    rate=st.floats(0.0, 0.9),
    seed=seeds,
)
def test_dropout_keeps_the_mean(x, rate, seed):
    """E[dropout(x)] = x, element by element: K independent draws per element, 6-sigma tolerance."""
    k = 4096
    xs = jnp.broadcast_to(jnp.asarray(x), (k, *x.shape))  # K independent copies of each element
    y = np.asarray(rj.dropout(xs, rate, key=jax.random.key(seed)), np.float64)
    x64 = x.astype(np.float64)
    dev = (y - x64).sum(axis=0)  # Σ_k (y_k − x): mean 0, variance K · x² · rate / (1 − rate)
    sd = np.abs(x64) * math.sqrt(k * rate / (1 - rate))
    rounding = 1e-6 * np.abs(y).sum(axis=0)  # float32 rounding of the scaled values
    assert np.all(np.abs(dev) <= 6 * sd + rounding), (dev, sd)


_dropout_eval_jit = jax.jit(lambda x, rate: rj.dropout(x, rate, train=False))


@given(x=small_shapes.flatmap(f32_arrays), rate=st.floats(0.0, 1.0), seed=st.none() | seeds)
def test_dropout_eval_is_the_identity(x, rate, seed):
    key = None if seed is None else jax.random.key(seed)
    xj = jnp.asarray(x)
    assert rj.dropout(xj, rate, key=key, train=False) is xj
    np.testing.assert_array_equal(_dropout_eval_jit(xj, rate), x)  # a traced rate too


# --- L2 penalty --------------------------------------------------------------------------------------------

@st.composite
def param_trees(draw):
    """A Flax-layout params dict of 1-3 layers: dense / conv (kernel + bias) or BN (scale + bias).

    Sizes come from {1, 3} (and 2 for conv inputs): enough to mix scalars-like and real leaves, few shapes.
    """
    size = st.sampled_from([1, 3])
    tree = {}
    for i in range(draw(st.integers(1, 3))):
        kind = draw(st.sampled_from(["dense", "conv", "bn"]))
        if kind == "dense":
            fan_in, fan_out = draw(size), draw(size)
            shapes = {"kernel": (fan_in, fan_out), "bias": (fan_out,)}
        elif kind == "conv":
            k, c_in, c_out = draw(size), draw(st.sampled_from([1, 2])), draw(size)
            shapes = {"kernel": (k, k, c_in, c_out), "bias": (c_out,)}
        else:
            c = draw(size)
            shapes = {"scale": (c,), "bias": (c,)}
        tree[f"{kind}{i}"] = {name: draw(f32_arrays(shape, -10, 10)) for name, shape in shapes.items()}
    return tree


def _bool_tree_like(draw, tree):
    leaves, treedef = jax.tree_util.tree_flatten(tree)
    return jax.tree_util.tree_unflatten(treedef, draw(st.lists(st.booleans(), min_size=len(leaves),
                                                               max_size=len(leaves))))


@st.composite
def trees_and_masks(draw, n_masks=1):
    tree = draw(param_trees())
    return (jax.tree_util.tree_map(jnp.asarray, tree), *(_bool_tree_like(draw, tree) for _ in range(n_masks)))


def _reference_penalty(params, mask):
    """½ Σ w² over the masked leaves, in float64 numpy."""
    return sum(0.5 * float(np.sum(np.asarray(w, np.float64) ** 2))
               for w, m in zip(jax.tree_util.tree_leaves(params), jax.tree_util.tree_leaves(mask)) if m)


def _tree_map_bools(fn, *masks):
    return jax.tree_util.tree_map(lambda *ms: bool(fn(*ms)), *masks)


@given(pm=trees_and_masks(), c=st.floats(-10, 10, allow_subnormal=False))
def test_penalty_is_quadratic_in_the_weights(pm, c):
    params, mask = pm
    base = float(rj.l2_penalty(params, mask))
    scaled = float(rj.l2_penalty(jax.tree_util.tree_map(lambda w: jnp.float32(c) * w, params), mask))
    np.testing.assert_allclose(scaled, np.float32(c) ** 2 * base, rtol=1e-5, atol=1e-30)
    np.testing.assert_allclose(base, _reference_penalty(params, mask), rtol=1e-5, atol=1e-30)


@given(pm=trees_and_masks(), k=st.integers(-4, 4))
def test_penalty_scales_exactly_by_4_to_the_k_for_w_times_2_to_the_k(pm, k):
    params, mask = pm  # scaling by a power of two is exact in floating point, so the identity is exact too
    scaled = rj.l2_penalty(jax.tree_util.tree_map(lambda w: w * 2.0**k, params), mask)
    assert float(scaled) == float(rj.l2_penalty(params, mask)) * 4.0**k


@given(pm=trees_and_masks(n_masks=2))
def test_penalty_mask_algebra(pm):
    params, m1, m2 = pm
    pen = lambda m: float(rj.l2_penalty(params, m))
    every, none = _tree_map_bools(lambda m: True, m1), _tree_map_bools(lambda m: False, m1)
    tol = dict(rtol=1e-5, atol=1e-6)
    assert pen(none) == 0.0
    np.testing.assert_allclose(pen(every), _reference_penalty(params, every), **tol)
    # complement: P(m) + P(¬m) = P(all)
    np.testing.assert_allclose(pen(m1) + pen(_tree_map_bools(lambda m: not m, m1)), pen(every), **tol)
    # inclusion-exclusion: P(m1 ∨ m2) + P(m1 ∧ m2) = P(m1) + P(m2)
    union, inter = _tree_map_bools(lambda a, b: a or b, m1, m2), _tree_map_bools(lambda a, b: a and b, m1, m2)
    np.testing.assert_allclose(pen(union) + pen(inter), pen(m1) + pen(m2), **tol)
    # monotone (exactly: adding non-negative terms never lowers a rounded sum)
    assert pen(inter) <= pen(m1) <= pen(union)
    # a mask function gives what its result gives
    assert float(rj.l2_penalty(params, lambda p: m1)) == pen(m1)


@given(pm=trees_and_masks())
def test_penalty_ignores_unmasked_leaves_and_its_gradient_is_the_masked_weights(pm):
    params, mask = pm
    changed = jax.tree_util.tree_map(lambda w, m: w if m else w * 3.0 + 1.0, params, mask)
    assert float(rj.l2_penalty(changed, mask)) == float(rj.l2_penalty(params, mask))
    grads = jax.grad(rj.l2_penalty)(params, mask)
    expected = jax.tree_util.tree_map(lambda w, m: w if m else jnp.zeros_like(w), params, mask)
    chex.assert_trees_all_close(grads, expected, rtol=1e-6, atol=0)


@given(params=param_trees())
def test_default_mask_is_kernels_only_and_a_prefix_mask_broadcasts(params):
    params = jax.tree_util.tree_map(jnp.asarray, params)
    kernels = jax.tree_util.tree_map(lambda w: w.ndim >= 2, params)
    assert rj.weights_mask(params) == kernels
    default = float(rj.l2_penalty(params))
    assert default == float(rj.l2_penalty(params, rj.weights_mask)) == float(rj.l2_penalty(params, kernels))
    assert all(not m or name.startswith(("dense", "conv"))  # BN scale/bias and biases never decayed
               for name, layer in kernels.items() for m in layer.values())
    # a per-layer prefix mask means the same as that bool on every leaf of the layer
    prefix = {name: name.startswith("dense") for name in params}
    full = {name: {leaf: on for leaf in layer} for (name, layer), on in zip(params.items(), prefix.values())}
    assert float(rj.l2_penalty(params, prefix)) == float(rj.l2_penalty(params, full))


# --- batch norm --------------------------------------------------------------------------------------------

@st.composite
def bn_batches(draw):
    """x of layout (N, C) or NHWC with per-channel location/spread, and affine params; float32."""
    c = draw(st.sampled_from([1, 3]))  # shapes from a small pool: each new one compiles
    if draw(st.booleans()):
        shape = (draw(st.sampled_from([2, 16])), c)
    else:
        shape = (*draw(st.sampled_from([(1, 2, 2), (3, 1, 2)])), c)
    loc = draw(f32_arrays((c,), -10, 10))
    spread = draw(f32_arrays((c,), 0.1, 10))
    z = np.random.default_rng(draw(seeds)).standard_normal(shape)
    x = (loc + spread * z).astype(np.float32)
    params = {"scale": draw(f32_arrays((c,), -3, 3)), "bias": draw(f32_arrays((c,), -3, 3))}
    state = {"mean": draw(f32_arrays((c,), -5, 5)), "var": draw(f32_arrays((c,), 0.01, 10))}
    return x, jax.tree_util.tree_map(jnp.asarray, params), jax.tree_util.tree_map(jnp.asarray, state)


def _batch_stats64(x):
    axes = tuple(range(x.ndim - 1))
    x64 = np.asarray(x, np.float64)
    return x64.mean(axes), x64.var(axes)  # biased variance


@given(batch=bn_batches())
def test_bn_training_standardizes_each_channel(batch):
    x, params, state = batch
    axes = tuple(range(x.ndim - 1))
    mu, var = _batch_stats64(x)
    shrink = var / (var + EPS)  # var(y) = var / (var + eps) exactly; ≈ 1 for var ≫ eps
    # float32 error of (x − μ) / σ: a few ulps of |x| / σ
    tol = 1e-5 * (1 + np.abs(x).max(axes) / np.sqrt(var))
    init_params, _ = rj.batch_norm_init(x.shape[-1])
    y, _ = rj.batch_norm(jnp.asarray(x), init_params, state, train=True)
    chex.assert_shape(y, x.shape)
    y64 = np.asarray(y, np.float64)
    np.testing.assert_array_less(np.abs(y64.mean(axes)), tol)
    np.testing.assert_array_less(np.abs(y64.var(axes) - shrink), 2 * tol)
    # with scale γ and bias β: per-channel mean β and variance γ² · var / (var + eps)
    y, _ = rj.batch_norm(jnp.asarray(x), params, state, train=True)
    g, b = np.asarray(params["scale"], np.float64), np.asarray(params["bias"], np.float64)
    y64 = np.asarray(y, np.float64)
    np.testing.assert_array_less(np.abs(y64.mean(axes) - b), np.abs(g) * tol + 1e-6 * (1 + np.abs(b)))
    np.testing.assert_array_less(np.abs(y64.var(axes) - g**2 * shrink), g**2 * 2 * tol + 1e-6)


@given(batch=bn_batches(), other_mean=f32_arrays((3,), -5, 5), other_var=f32_arrays((3,), 0.01, 10))
def test_bn_training_output_uses_the_batch_not_the_state(batch, other_mean, other_var):
    x, params, state = batch
    c = x.shape[-1]
    other = {"mean": jnp.asarray(other_mean[:c]), "var": jnp.asarray(other_var[:c])}
    y1, _ = rj.batch_norm(jnp.asarray(x), params, state, train=True)
    y2, _ = rj.batch_norm(jnp.asarray(x), params, other, train=True)
    np.testing.assert_array_equal(y1, y2)
    # NHWC is the same as flattening every axis but the channels into one batch axis
    y_flat, s_flat = rj.batch_norm(jnp.asarray(x.reshape(-1, c)), params, state, train=True)
    np.testing.assert_allclose(np.asarray(y1).reshape(-1, c), y_flat, rtol=1e-5, atol=1e-4)


@given(batch=bn_batches())
def test_bn_eval_uses_the_state(batch):
    x, params, state = batch
    y, new_state = rj.batch_norm(jnp.asarray(x), params, state, train=False)
    assert new_state is state
    m, v = (np.asarray(state[k], np.float64) for k in ("mean", "var"))
    g, b = np.asarray(params["scale"], np.float64), np.asarray(params["bias"], np.float64)
    expected = g * (x - m) / np.sqrt(v + EPS) + b
    scale = np.abs(g) * (np.abs(x) + np.abs(m)) / np.sqrt(v + EPS) + np.abs(b)  # size of the terms summed
    np.testing.assert_array_less(np.abs(np.asarray(y, np.float64) - expected), 1e-6 * scale + 1e-6)
    # each example is normalised on its own: the output for a sub-batch is the same rows
    y_first, _ = rj.batch_norm(jnp.asarray(x[:1]), params, state, train=False)
    np.testing.assert_allclose(y_first, np.asarray(y)[:1], rtol=1e-6, atol=1e-6)


@given(batch=bn_batches(), momentum=st.floats(0.0, 1.0))
def test_bn_state_update_formula(batch, momentum):
    x, params, state = batch
    mu, var = _batch_stats64(x)
    _, new = rj.batch_norm(jnp.asarray(x), params, state, train=True, momentum=momentum)
    chex.assert_trees_all_equal_shapes_and_dtypes(new, state)
    old_m, old_v = (np.asarray(state[k], np.float64) for k in ("mean", "var"))
    exp_m = momentum * old_m + (1 - momentum) * mu
    exp_v = momentum * old_v + (1 - momentum) * var
    # float32 error of the batch mean (relative to the spread of x) and of the biased variance
    axes = tuple(range(x.ndim - 1))
    big = np.abs(x).max(axes)
    np.testing.assert_array_less(np.abs(np.asarray(new["mean"]) - exp_m), 1e-6 * (big + np.abs(old_m)) + 1e-7)
    np.testing.assert_array_less(np.abs(np.asarray(new["var"]) - exp_v), 1e-5 * (big**2 + old_v) + 1e-7)
    # the two ends: momentum 1 keeps the state, momentum 0 replaces it by the batch statistics -- and then
    # evaluation with the new state reproduces the training output
    _, kept = rj.batch_norm(jnp.asarray(x), params, state, train=True, momentum=1.0)
    chex.assert_trees_all_equal(kept, state)
    y_train, batch_state = rj.batch_norm(jnp.asarray(x), params, state, train=True, momentum=0.0)
    y_eval, _ = rj.batch_norm(jnp.asarray(x), params, batch_state, train=False)
    np.testing.assert_allclose(y_eval, y_train, rtol=1e-5, atol=1e-5 * (1 + float(np.abs(y_train).max())))
