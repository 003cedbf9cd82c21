"""The three versions of each model take the same options, built from one table (``adapters.MODELS``): LeNet-BN's
per-layer ``use_bn`` and ``bn_mode`` in scratch, linen and NNX -- one parameter/state layout, the same logits and
new BN statistics given the same params and state (training and evaluation), the same one-line refusals, and
training through ``regjax.engine.fit`` from the same start to the same place."""
import chex
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from absl.testing import parameterized
from flax import nnx

from regjax import runner
from regjax.batchnorm import BN_MODES
from regjax.engine import fit, init_state
from regjax.models import linen as linen_models
from regjax.models import nnx as nnx_models
from regjax.models import scratch
from regjax.models.adapters import IMPLS, MODELS, build_model, lenet_bn_model
from regjax.optim import sgd

KEY = jax.random.key(0)
SHAPE = (6, 16, 16, 1)  # 16x16 keeps LeNet's two VALID 5x5 convs and is cheap
PATTERNS = {"all": True, "none": False, "convs_and_dense1": (True, True, False, True),
            "dense0_only": (False, False, True, False)}


def _images(n=SHAPE[0], seed=1):
    return jax.random.uniform(jax.random.key(seed), (n, *SHAPE[1:]))


def _moved(params, state):
    """BN params and moving statistics away from their initial values (each feature its own), so evaluation
    really reads the moving statistics and a mode that skips a step shows."""
    keys = iter(jax.random.split(jax.random.key(7), 4 * len(state)))
    params = dict(params)
    for name in state:
        shape = params[name]["scale"].shape
        params[name] = {"scale": 1.0 + jax.random.uniform(next(keys), shape),
                        "bias": 0.5 * jax.random.normal(next(keys), shape)}
    state = {name: {"mean": 0.5 * jax.random.uniform(next(keys), s["mean"].shape),
                    "var": 0.5 + jax.random.uniform(next(keys), s["var"].shape)} for name, s in state.items()}
    return params, state


def _lenets(use_bn, bn_mode):
    return {impl: lenet_bn_model(impl, 3, SHAPE[1:], use_bn=use_bn, bn_mode=bn_mode) for impl in IMPLS}


def _weights(params):
    return {k: v for k, v in params.items() if not k.startswith("bn")}


class LeNetBNOptionsTest(chex.TestCase):
    @chex.variants(with_jit=True, without_jit=True)
    @parameterized.product(pattern=list(PATTERNS), bn_mode=list(BN_MODES))
    def test_scratch_linen_and_nnx_agree_given_the_same_params_and_state(self, pattern, bn_mode):
        use_bn = PATTERNS[pattern]
        models = _lenets(use_bn, bn_mode)
        params, state = models["scratch"].init(KEY)
        expected_bn = {f"bn{i}" for i, on in enumerate(scratch.lenet_bn_flags(use_bn)) if on}
        assert set(state) == expected_bn and {k for k in params if k.startswith("bn")} == expected_bn
        for impl in ("linen", "nnx"):  # one layout: the same names, structure, shapes and dtypes
            chex.assert_trees_all_equal_shapes_and_dtypes(models[impl].init(KEY), (params, state))
        params, state = _moved(params, state)
        x = _images()
        for train in (True, False):
            out = {impl: self.variant(lambda p, s, v, m=m: m.apply(p, s, v, key=None, train=train))(params, state, x)
                   for impl, m in models.items()}
            chex.assert_shape(out["scratch"][0], (SHAPE[0], 3))
            for impl in ("linen", "nnx"):
                np.testing.assert_allclose(out[impl][0], out["scratch"][0], rtol=1e-5, atol=1e-5,
                                           err_msg=f"{impl} logits, train={train}")
                chex.assert_trees_all_close(out[impl][1], out["scratch"][1], rtol=1e-5, atol=1e-6)
            if not train:  # evaluation leaves the statistics as they were
                chex.assert_trees_all_equal(out["nnx"][1], state)
            elif expected_bn:  # training moved them
                assert not np.allclose(out["linen"][1][min(expected_bn)]["mean"], state[min(expected_bn)]["mean"])


@pytest.mark.parametrize("impl", IMPLS)
def test_bn_mode_reaches_every_version(impl):
    """Not the same function under three names: each mode gives other logits (training and evaluation)."""
    use_bn = PATTERNS["convs_and_dense1"]
    x = _images()
    for train in (True, False):
        logits = {}
        for mode in BN_MODES:
            model = lenet_bn_model(impl, 3, SHAPE[1:], use_bn=use_bn, bn_mode=mode)
            params, state = _moved(*lenet_bn_model("scratch", 3, SHAPE[1:], use_bn=use_bn).init(KEY))
            logits[mode] = model.apply(params, state, x, key=None, train=train)[0]
        for a, b in (("full", "mean"), ("full", "variance"), ("mean", "variance")):
            assert np.abs(logits[a] - logits[b]).max() > 1e-3, (train, a, b)


def test_the_weights_do_not_depend_on_the_mode_and_in_scratch_and_linen_not_on_the_pattern():
    for impl in IMPLS:
        by_option = {(p, m): _weights(lenet_bn_model(impl, 3, SHAPE[1:], use_bn=PATTERNS[p], bn_mode=m).init(KEY)[0])
                     for p in PATTERNS for m in BN_MODES}
        for (pattern, mode), weights in by_option.items():
            chex.assert_trees_all_equal(weights, by_option[(pattern, "full")])
            if impl != "nnx":  # NNX layers draw their keys from one counter in order, BN layers included
                chex.assert_trees_all_equal(weights, by_option[("all", "full")])


BAD_USE_BN = [(True, False), "TTTT", 1, None, (1, 0, 0, 0), [True, False, True, "x"]]
BAD_MODES = ["median", "Full", None, 0]


def _refusal(build):
    with pytest.raises(ValueError) as info:
        build()
    return str(info.value)


REFUSALS = ([("use_bn", bad, "use_bn must be a bool or a sequence of 4 bools (BN after conv0, conv1, dense0, dense1), "
             f"got {bad!r}") for bad in BAD_USE_BN]
            + [("bn_mode", bad, f"bn_mode must be one of ('full', 'mean', 'variance'), got {bad!r}") for bad in BAD_MODES])


@pytest.mark.parametrize("option, bad, want", REFUSALS)
def test_a_bad_option_is_refused_alike_in_the_three(option, bad, want):
    messages = {impl: _refusal(lambda i=impl: lenet_bn_model(i, 3, SHAPE[1:], **{option: bad})) for impl in IMPLS}
    messages["linen module"] = _refusal(lambda: linen_models.LeNetBN(3, **{option: bad}))
    messages["nnx module"] = _refusal(lambda: nnx_models.LeNetBN(3, SHAPE[1:], **{option: bad}, rngs=nnx.Rngs(0)))
    assert messages == dict.fromkeys(messages, want)


def test_nnx_view_switches_the_lite_layers_between_training_and_evaluation():
    module = nnx_models.LeNetBN(3, SHAPE[1:], use_bn=(True, False, False, True), bn_mode="variance",
                                rngs=nnx.Rngs(0))
    assert isinstance(module.bn0, nnx_models.LiteBatchNorm) and not hasattr(module, "bn1")
    x = _images()
    evaluate = nnx.view(module, use_running_average=True)
    first = evaluate(x)
    np.testing.assert_array_equal(module.bn3.mean[...], jnp.zeros(84))  # evaluation: statistics untouched
    nnx.view(module, use_running_average=False)(x)  # a training call updates the shared statistics in place
    assert not np.allclose(module.bn3.mean[...], 0.0)
    assert not np.allclose(evaluate(x), first)  # ... which the evaluation view then reads
    assert module.bn0.use_running_average is False and evaluate.bn0.use_running_average is True


@pytest.mark.parametrize("use_bn,bn_mode", [((True, False, False, True), "mean"),
                                            ((False, True, True, False), "variance"),
                                            ((True, False, False, True), "full")])
def test_linen_and_nnx_train_through_fit_like_scratch(use_bn, bn_mode):
    """One epoch of ``fit`` from the same parameters: the three end at the same parameters and statistics."""
    x, y = _images(48, seed=2), jnp.arange(48) % 3
    data = (x[:32], y[:32], x[32:], y[32:])
    models = _lenets(use_bn, bn_mode)
    params, model_state = models["scratch"].init(KEY)
    optimizer = sgd(0.5)
    results = {}
    for impl, model in models.items():
        start = init_state(model, optimizer, jax.random.key(3))._replace(
            params=params, opt_state=optimizer.init(params), model_state=model_state)
        results[impl] = fit(model, optimizer, data, epochs=1, batch_size=16, key=jax.random.key(3), state=start)
    trained, history = results["scratch"]
    assert int(trained.step) == 2 and np.isfinite(history.train_loss[0][-1])
    assert not np.allclose(trained.params["dense2"]["kernel"], params["dense2"]["kernel"])  # it did train
    for impl in ("linen", "nnx"):
        state, hist = results[impl]
        chex.assert_trees_all_close(state.params, trained.params, rtol=1e-4, atol=1e-5)
        chex.assert_trees_all_close(state.model_state, trained.model_state, rtol=1e-4, atol=1e-6)
        np.testing.assert_allclose(hist.train_loss[0], history.train_loss[0], rtol=1e-5)
        np.testing.assert_allclose(hist.test_loss[0], history.test_loss[0], rtol=1e-5)


# --- the one table ---------------------------------------------------------------------------------------------

OPTIONS = {
    "mlp": {"num_inputs": 12, "hidden": (8, 8), "num_outputs": 3, "rates": (0.2, 0.5), "weight_init": "he",
            "activation": jax.nn.tanh},
    "lenet_bn": {"num_classes": 3, "image_shape": SHAPE[1:], "weight_init": "xavier",
                 "use_bn": (True, False, True, False), "bn_mode": "mean"},
    "softmax_regression": {"num_inputs": 12, "num_outputs": 3, "weight_init": "normal"},
}


@pytest.mark.parametrize("name", sorted(MODELS))
def test_every_model_of_the_table_builds_in_every_version_from_the_same_options(name):
    assert set(MODELS[name]) == set(IMPLS) and set(OPTIONS) == set(MODELS)
    models = {impl: build_model(name, impl, **OPTIONS[name]) for impl in IMPLS}
    layouts = {impl: m.init(KEY) for impl, m in models.items()}
    x = jax.random.uniform(KEY, (2, *OPTIONS[name]["image_shape"]) if name == "lenet_bn"
                           else (2, OPTIONS[name]["num_inputs"]))
    params, state = layouts["scratch"]
    expected = models["scratch"].apply(params, state, x, key=None, train=False)[0]
    for impl in ("linen", "nnx"):
        chex.assert_trees_all_equal_shapes_and_dtypes(layouts[impl], layouts["scratch"])
        # every option reaches every version: the same parameters compute the same function
        chex.assert_trees_all_close(models[impl].apply(params, state, x, key=None, train=False)[0], expected,
                                    rtol=1e-5, atol=1e-6)
    assert jax.tree_util.tree_structure(build_model(name, "flax", **OPTIONS[name]).init(KEY)) == \
        jax.tree_util.tree_structure(layouts["linen"])


def test_the_table_refuses_an_unknown_model_or_impl():
    with pytest.raises(ValueError, match="name must be one of"):
        build_model("resnet", "scratch")
    with pytest.raises(ValueError, match="impl must be one of"):
        build_model("mlp", "haiku", **OPTIONS["mlp"])


def test_the_cli_takes_the_adapters_alias_of_linen(tmp_path):
    p = runner.parser("d", epochs=1, lr=0.1, batch_size=8, out=str(tmp_path), impls=IMPLS)
    assert p.parse_args(["--impl", "flax"]).impl == "linen"
    assert p.parse_args([]).impl == "scratch"
    only_scratch = runner.parser("d", epochs=1, lr=0.1, batch_size=8, out=str(tmp_path), impls=("scratch",))
    with pytest.raises(runner.UsageError, match="--impl: invalid choice: 'flax'"):
        only_scratch.parse_args(["--impl", "flax"])
