import json

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from regjax.data import epoch_batches, flatten_images, load_digits
from regjax.models.adapters import lenet_bn_model, mlp_model, scratch_linreg
from regjax.report import write_json_atomic
from regjax.train import fit, init_state, make_epoch, make_evaluate, make_step, run_steps


@pytest.fixture(scope="module")
def digits():
    ds = load_digits()
    return flatten_images(ds.x_train), ds.y_train, flatten_images(ds.x_test), ds.y_test


@pytest.mark.parametrize("impl", ["scratch", "flax"])
def test_mlp_reaches_90_percent_on_digits(digits, impl):
    model = mlp_model(impl, 64, (128, 128), 10, (0.2, 0.5), "xavier")
    optimizer = None if impl == "scratch" else optax.sgd(0.1)
    hparams = {"lr": 0.1} if impl == "scratch" else {}
    _, history = fit(model, optimizer, digits, epochs=15, batch_size=64, key=jax.random.key(0), hparams=hparams)
    assert history.test_accuracy[-1] >= 0.9, history.test_accuracy
    assert len(history.train_loss) == 15 and history.train_loss[-1] < history.train_loss[0]


def test_scan_epoch_equals_per_step_python_loop(digits):
    x, y = jnp.asarray(digits[0][:300]), jnp.asarray(digits[1][:300])
    model = mlp_model("scratch", 64, (32,), 10, (0.3,), "xavier")
    step = make_step(model, optax.sgd(0.05, momentum=0.9))
    hparams = {}
    key = jax.random.key(1)
    state0 = init_state(model, optax.sgd(0.05, momentum=0.9), key)
    data_key = jax.random.key(2)
    # the scan epoch (donates its input state, so give it a copy)
    scanned, _ = make_epoch(step, 64)(jax.tree_util.tree_map(jnp.copy, state0), x, y, data_key, hparams)
    # the same step in a per-step Python loop over the same batches
    looped, jstep = state0, jax.jit(step)
    for b in zip(*epoch_batches(data_key, x, y, 64)):
        looped, _ = jstep(looped, b, hparams)
    for a, b in zip(jax.tree_util.tree_leaves(scanned.params), jax.tree_util.tree_leaves(looped.params)):
        np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6)
    assert int(scanned.step) == int(looped.step) == 5


def test_eval_is_deterministic_and_ignores_dropout(digits):
    model = mlp_model("scratch", 64, (64, 64), 10, (0.5, 0.5), "xavier")
    params, ms = model.init(jax.random.key(0))
    evaluate = make_evaluate(model, batch_size=100)
    a = evaluate(params, ms, digits[2], digits[3], {})
    b = evaluate(params, ms, digits[2], digits[3], {})
    assert float(a["accuracy"]) == float(b["accuracy"]) and float(a["loss"]) == float(b["loss"])
    # batching does not change the result (padding rows carry weight 0)
    c = make_evaluate(model, batch_size=450)(params, ms, digits[2], digits[3], {})
    np.testing.assert_allclose(float(a["loss"]), float(c["loss"]), rtol=1e-5)


def test_traced_hyperparameters_vmap_over_lambdas():
    x = jax.random.normal(jax.random.key(0), (40, 5))
    y = x @ jnp.arange(1.0, 6.0)
    model = scratch_linreg(5, weight_init="xavier")
    step = make_step(model, None, "squared")
    state = init_state(model, None, jax.random.key(1))
    batch = (x, y, jnp.ones(40))

    def norm_after(lam):
        s = state
        for _ in range(20):
            s, _ = step(s, batch, {"lr": jnp.float32(0.05), "lam": lam})
        return jnp.linalg.norm(s.params["dense0"]["kernel"])

    norms = jax.jit(jax.vmap(norm_after))(jnp.array([0.0, 1.0, 10.0]))
    assert norms[0] > norms[1] > norms[2]
    np.testing.assert_allclose(norms[1], norm_after(jnp.float32(1.0)), rtol=1e-5)


def test_lenet_bn_trains_and_updates_batch_stats_both_impls():
    ds = load_digits()
    x = jax.image.resize(jnp.asarray(ds.x_train[:256, :, :, None]), (256, 28, 28, 1), "bilinear")
    data = (x, ds.y_train[:256], x[:64], ds.y_train[:64])
    for impl in ("scratch", "flax"):
        model = lenet_bn_model(impl)
        opt = None if impl == "scratch" else optax.sgd(0.5)
        state, h = fit(model, opt, data, epochs=2, batch_size=64, key=jax.random.key(0),
                       hparams={"lr": 0.5} if impl == "scratch" else {})
        assert np.isfinite(h.train_loss[-1])
        assert not np.allclose(state.model_state["bn0"]["mean"], 0.0)  # moving stats moved


def test_run_steps_matches_fit(digits):
    model = scratch_linreg(64)
    x, y = digits[0][:100], digits[1][:100].astype(np.float32)
    state_fit, _ = fit(model, optax.sgd(0.01), (x, y, x, y), epochs=3, batch_size=20, key=jax.random.key(3),
                       loss="squared")
    state_run, kernels = run_steps(model, optax.sgd(0.01), x, y, epochs=3, batch_size=20, key=jax.random.key(3),
                                   loss="squared", record=lambda p: p["dense0"]["kernel"])
    assert kernels.shape == (15, 64, 1)
    np.testing.assert_allclose(kernels[-1], state_fit.params["dense0"]["kernel"], rtol=1e-5, atol=1e-6)


def test_fit_argument_errors(digits):
    model = scratch_linreg(64)
    with pytest.raises(ValueError, match="lr"):
        fit(model, None, digits, epochs=1, batch_size=10, key=jax.random.key(0), loss="squared")
    with pytest.raises(ValueError, match="batch_size"):
        fit(model, optax.sgd(0.1), digits, epochs=1, batch_size=10**6, key=jax.random.key(0), loss="squared")
    with pytest.raises(ValueError, match="loss must be one of"):
        fit(model, optax.sgd(0.1), digits, epochs=1, batch_size=10, key=jax.random.key(0), loss="hinge")


def test_write_json_atomic_never_leaves_half_a_file(tmp_path):
    path = tmp_path / "r.json"
    write_json_atomic(path, {"a": 1, "b": float("nan"), "c": np.float32(2.5)})
    assert json.loads(path.read_text()) == {"a": 1, "b": None, "c": 2.5}
    with pytest.raises(TypeError):
        write_json_atomic(path, {"bad": object()})
    assert json.loads(path.read_text())["a"] == 1  # the old file survives a failed write
    assert [p.name for p in tmp_path.iterdir()] == ["r.json"]  # and no temp file is left behind
