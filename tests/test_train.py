import json
import logging

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from regjax.data import epoch_batches, flatten_images, load_digits
from regjax.engine import fit, init_state, make_epoch, make_evaluate, make_step, run_steps
from regjax.models.adapters import lenet_bn_model, mlp_model, scratch_linreg
from regjax.report import write_json_atomic
from regjax.optim import scratch_sgd

SGD = scratch_sgd(0.1)  # the from-scratch SGD step; each test's learning rate comes in hparams


@pytest.fixture(scope="module")
def digits():
    ds = load_digits()
    return flatten_images(ds.x_train), ds.y_train, flatten_images(ds.x_test), ds.y_test


@pytest.mark.parametrize("impl", ["scratch", "flax"])
def test_mlp_reaches_90_percent_on_digits(digits, impl):
    model = mlp_model(impl, 64, (128, 128), 10, (0.2, 0.5), "xavier")
    optimizer = SGD if impl == "scratch" else optax.sgd(0.1)
    hparams = {"lr": 0.1} if impl == "scratch" else {}
    _, history = fit(model, optimizer, digits, epochs=15, batch_size=64, key=jax.random.key(0), hparams=hparams)
    assert history.test_accuracy[0][-1] >= 0.9, history.test_accuracy
    assert len(history.train_loss[0]) == 15 and history.train_loss[0][-1] < history.train_loss[0][0]


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
    step = make_step(model, SGD, "squared")
    state = init_state(model, SGD, jax.random.key(1))
    batch = (x, y, jnp.ones(40))

    def norm_after(lam):
        s = state
        for _ in range(20):
            s, _ = step(s, batch, {"lr": jnp.float32(0.05), "lam": lam})
        return jnp.linalg.norm(s.params["dense0"]["kernel"])

    norms = jax.jit(jax.vmap(norm_after))(jnp.array([0.0, 1.0, 10.0]))
    assert norms[0] > norms[1] > norms[2]
    np.testing.assert_allclose(norms[1], norm_after(jnp.float32(1.0)), rtol=1e-5)


@pytest.fixture(scope="module")
def lenet_digits(digits):
    """192 digits as 16x16 images (LeNet's two VALID 5x5 convolutions fit), the first 64 as the test set:
    the LeNet tests of this file share them, and with them their compiled programs."""
    x = jax.image.resize(jnp.asarray(digits[0][:192].reshape(-1, 8, 8, 1)), (192, 16, 16, 1), "bilinear")
    return x, digits[1][:192], x[:64], digits[1][:64]


def test_lenet_bn_trains_and_updates_batch_stats_both_impls(lenet_digits):
    for impl in ("scratch", "flax"):
        model = lenet_bn_model(impl, 10, (16, 16, 1))
        opt = SGD if impl == "scratch" else sgd(0.5)
        state, h = fit(model, opt, lenet_digits, epochs=2, batch_size=64, key=jax.random.key(0),
                       hparams={"lr": 0.5} if impl == "scratch" else {})
        assert np.isfinite(h.train_loss[0][-1])
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
    with pytest.raises(ValueError, match="optimizer must be an optax.GradientTransformation"):
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


# ---- engine part 2: continue, reuse, every hparam honoured or refused, labels, divergence ------------------

from regjax.checkpoint import CheckpointError, load_checkpoint, save_checkpoint  # noqa: E402
from regjax.engine import Diverged, History  # noqa: E402
from regjax.optim import decayed_sgd, sgd  # noqa: E402


def _leaves_equal(a, b):
    return all(np.array_equal(x, y) for x, y in zip(jax.tree_util.tree_leaves(a), jax.tree_util.tree_leaves(b)))


@pytest.mark.parametrize("route", ["scratch", "optax momentum", "flax lenet-bn"])
def test_continuing_through_a_checkpoint_is_bit_identical(digits, lenet_digits, route, tmp_path):
    if route == "flax lenet-bn":
        data = lenet_digits
        model, opt, hp = lenet_bn_model("flax", 10, (16, 16, 1)), sgd(0.5), {}
    else:
        data = digits
        model = mlp_model("scratch", 64, (32, 32), 10)
        opt, hp = (SGD, {"lr": 0.3}) if route == "scratch" else (decayed_sgd(0.2, 1e-3, momentum=0.9), {})
    common = dict(batch_size=64, key=jax.random.key(0), hparams=hp)
    full, h_full = fit(model, opt, data, epochs=4, **common)
    path = tmp_path / "ckpt.msgpack"
    fit(model, opt, data, epochs=2, **common,
        after_epoch=lambda e, s, h: save_checkpoint(path, s, epoch=e + 1, history=h.to_dict()))
    ckpt = load_checkpoint(path, init_state(model, opt, jax.random.key(99)))  # the target only gives structure
    assert ckpt.epoch == 2
    cont, h_cont = fit(model, opt, data, epochs=4, **common, state=ckpt.state, start_epoch=2,
                       history=History.from_dict(ckpt.history))
    assert _leaves_equal(full.params, cont.params) and _leaves_equal(full.opt_state, cont.opt_state)
    assert _leaves_equal(full.model_state, cont.model_state) and int(full.step) == int(cont.step)
    assert h_full.test_loss == h_cont.test_loss and h_full.train_loss == h_cont.train_loss
    assert h_cont.status == "completed" and h_cont.epochs == 4


def test_compiled_epoch_is_reused_across_fit_calls(digits, caplog):
    """Another key and learning rate, the same program: jit's cache hands the second call the first call's
    executables (JAX logs every compilation under ``jax.log_compiles``; the first call's include jit(train))."""
    model = mlp_model("scratch", 64, (16,), 10, (0.1,))
    compiled = []
    for seed, lr in ((0, 0.1), (1, 0.2)):
        caplog.clear()
        with caplog.at_level(logging.WARNING), jax.log_compiles():
            _, history = fit(model, SGD, digits, epochs=1, batch_size=64, key=jax.random.key(seed), hparams={"lr": lr})
        compiled.append({m for m in ("jit(train)", "jit(evaluate)") for r in caplog.records if
                         f"Compiling {m}" in r.getMessage()})
        compiled.append(history.compile_time_s)
    assert compiled[0] == {"jit(train)", "jit(evaluate)"} and compiled[2] == set()
    assert compiled[1] > 0 and compiled[3] < 0.05 * compiled[1]


def test_checkpoint_of_another_model_or_corrupt_file_is_refused(digits, tmp_path):
    model = mlp_model("scratch", 64, (32,), 10, (0.1,))
    state = init_state(model, SGD, jax.random.key(0))
    path = tmp_path / "c.msgpack"
    save_checkpoint(path, state, epoch=1, history={})
    other = mlp_model("scratch", 64, (16,), 10, (0.1,))
    with pytest.raises(CheckpointError, match=r"\.params\['dense0'\]\['bias'\] is float32\[32\], .* needs float32\[16\]"):
        load_checkpoint(path, init_state(other, SGD, jax.random.key(0)))
    good = path.read_bytes()
    flipped = bytearray(good)
    for i in range(len(good) // 2, len(good) // 2 + 256):        # 256 bytes of weights changed, still msgpack
        flipped[i] ^= 0x01
    path.write_bytes(bytes(flipped))
    with pytest.raises(CheckpointError, match="do not match their SHA-256"):
        load_checkpoint(path, state)
    path.write_bytes(good[:100])
    with pytest.raises(CheckpointError, match="corrupt"):
        load_checkpoint(path, state)
    # a checkpoint written before the digest existed (format 1: the payload itself) still loads
    from flax import serialization

    path.write_bytes(serialization.msgpack_restore(good)["body"])
    np.testing.assert_array_equal(load_checkpoint(path, state).state.params["dense0"]["kernel"],
                                  state.params["dense0"]["kernel"])


def test_optax_lr_in_hparams_takes_effect(digits):
    model = mlp_model("flax", 64, (32,), 10, (0.0,))
    run = lambda opt, hp: fit(model, opt, digits, epochs=2, batch_size=64, key=jax.random.key(0), hparams=hp)[0]
    injected = run(sgd(0.01), {"lr": 0.3})
    assert _leaves_equal(injected.params, run(sgd(0.3), {}).params)
    assert not _leaves_equal(injected.params, run(sgd(0.01), {}).params)


def test_optax_weight_decay_in_hparams_takes_effect():
    x = jax.random.normal(jax.random.key(0), (40, 5))
    y = x @ jnp.arange(1.0, 6.0)
    data = (x, y, x, y)
    run = lambda opt, hp: fit(scratch_linreg(5), opt, data, epochs=3, batch_size=8, key=jax.random.key(0),
                              hparams=hp, loss="squared")[0]
    assert _leaves_equal(run(decayed_sgd(0.05, 0.0), {"weight_decay": 2.0}).params,
                         run(decayed_sgd(0.05, 2.0), {}).params)


HPARAM_ERRORS = {
    "typo key": ("scratch", SGD, {"lr": 0.1, "learning_rate": 0.1}, r"unknown hparams key 'learning_rate'; allowed here: \['lam', 'lr', 'rates'\]"),
    "lr to a plain optax optimizer": ("scratch", optax.sgd(0.1), {"lr": 100.0}, "exposes no injectable 'learning_rate'"),
    "rates to a flax model": ("flax", optax.sgd(0.1), {"rates": (0.5,)}, "dropout rates are static"),
    "rates to an nnx model": ("nnx", optax.sgd(0.1), {"rates": (0.5,)}, "flax.nnx.Dropout attributes"),
    "weight_decay to scratch sgd": ("scratch", SGD, {"lr": 0.1, "weight_decay": 1.0}, "use 'lam'"),
    "l1 to scratch sgd": ("scratch", SGD, {"lr": 0.1, "l1": 1.0}, "exposes no injectable 'l1'"),
    "negative lam": ("scratch", SGD, {"lr": 0.1, "lam": -1.0}, r"hparams\['lam'\] must be in \[0.0, inf\)"),
    "negative lr": ("scratch", SGD, {"lr": -0.1}, r"hparams\['lr'\] must be in \(0.0, inf\)"),
    "nan lr": ("flax", sgd(0.1), {"lr": float("nan")}, r"hparams\['lr'\] must be in"),
    "rate above 1": ("scratch", SGD, {"lr": 0.1, "rates": (1.5,)}, r"hparams\['rates'\] must be in \[0.0, 1.0\]"),
    "one bad lam of a sweep": ("scratch", SGD, {"lr": 0.1, "lam": np.array([0.0, -2.0])}, "lam"),
}


@pytest.mark.parametrize("case", sorted(HPARAM_ERRORS))
def test_fit_refuses_hparams_it_would_ignore_or_that_are_out_of_range(digits, case):
    impl, opt, hp, message = HPARAM_ERRORS[case]
    model = mlp_model(impl, 64, (16,), 10, (0.1,))
    with pytest.raises(ValueError, match=message):
        fit(model, opt, digits, epochs=1, batch_size=64, key=jax.random.key(0), hparams=hp)


@pytest.mark.parametrize("labels, message", [(10, "label 10; labels must be in \\[0, 10\\)"),
                                             (-1, "label -1; labels must be in \\[0, 10\\)")])
def test_fit_refuses_out_of_range_labels(digits, labels, message):
    y = np.array(digits[1])
    y[3] = labels
    model = mlp_model("scratch", 64, (16,), 10, (0.1,))
    with pytest.raises(ValueError, match="y_train holds " + message):
        fit(model, SGD, (digits[0], y, digits[2], digits[3]), epochs=1, batch_size=64, key=jax.random.key(0),
            hparams={"lr": 0.1})


def test_fit_refuses_bad_data_and_counts(digits):
    model = mlp_model("scratch", 64, (16,), 10, (0.1,))
    ok = dict(epochs=1, batch_size=64, key=jax.random.key(0), hparams={"lr": 0.1})
    with pytest.raises(ValueError, match="the test set is empty"):
        fit(model, SGD, (digits[0], digits[1], digits[2][:0], digits[3][:0]), **ok)
    with pytest.raises(ValueError, match="integer class labels"):
        fit(model, SGD, (digits[0], digits[1].astype(np.float32), digits[2], digits[3]), **ok)
    with pytest.raises(ValueError, match="the training set has 1347 inputs"):
        fit(model, SGD, (digits[0], digits[1][:10], digits[2], digits[3]), **ok)
    with pytest.raises(ValueError, match="epochs must be an integer >= 1"):
        fit(model, SGD, digits, **{**ok, "epochs": 1.5})
    with pytest.raises(ValueError, match="task must be given with a custom loss"):
        fit(model, SGD, digits, **ok, loss=lambda o, y: o)
    _, h = fit(model, SGD, digits, **{**ok, "epochs": np.int64(1), "batch_size": np.int32(64)})
    assert h.epochs == 1  # numpy integers are valid counts


def test_regression_metrics_follow_the_task_not_the_loss_object():
    x = jax.random.normal(jax.random.key(0), (40, 3))
    y = x @ jnp.arange(1.0, 4.0)
    _, h = fit(scratch_linreg(3), SGD, (x, y, x, y), epochs=2, batch_size=8, key=jax.random.key(0),
               hparams={"lr": 0.05}, loss="l1")
    assert h.train_accuracy is None and h.test_loss[0][-1] < h.test_loss[0][0]


def test_divergence_stops_the_run_and_names_epoch_and_step(digits):
    model = mlp_model("scratch", 64, (16,), 10, (0.0,))
    seen = []
    with pytest.raises(Diverged, match="epoch 1 \\(first at global step") as err:
        fit(model, SGD, digits, epochs=5, batch_size=64, key=jax.random.key(0), hparams={"lr": 1e30},
            after_epoch=lambda *a: seen.append(a))
    assert err.value.epoch == 0 and 0 <= err.value.step < 22
    assert err.value.history.status == "diverged" and err.value.history.epochs == 1
    assert seen == []  # a non-finite state is never checkpointed
    # the epoch's test metrics are NaN, not those of the last finite state; the error carries that state
    assert np.isnan(err.value.history.test_loss[0][-1]) and np.isnan(err.value.history.test_accuracy[0][-1])
    assert all(np.isfinite(leaf).all() for leaf in jax.tree_util.tree_leaves(err.value.state.params))


def test_sgd_step_checks_a_concrete_lr():
    params = {"w": jnp.ones(3)}
    with pytest.raises(ValueError, match="lr must be in"):
        rj_sgd_step(params, params, -0.1)
    with pytest.raises(ValueError, match="lr must be in"):
        rj_sgd_step(params, params, float("inf"))


def rj_sgd_step(*args):
    from regjax import sgd_step

    return sgd_step(*args)


def test_models_layer_does_not_import_the_engine():
    import subprocess
    import sys

    code = ("import sys, regjax.models, regjax.models.adapters, regjax.models.linen; "
            "print('regjax.engine' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0 and out.stdout.strip() == "False", out.stderr


def test_a_scheduled_learning_rate_is_not_overridable(digits):
    opt = optax.inject_hyperparams(optax.sgd)(learning_rate=optax.constant_schedule(0.1))
    with pytest.raises(ValueError, match="exposes no injectable 'learning_rate'"):
        fit(mlp_model("flax", 64, (16,), 10, (0.0,)), opt, digits, epochs=1, batch_size=64, key=jax.random.key(0),
            hparams={"lr": 0.5})


def test_a_model_with_a_list_of_hparam_names_trains_and_a_member_mesh_is_no_data_mesh(digits):
    from regjax.base import Model
    from regjax.parallel import member_mesh

    base = mlp_model("scratch", 64, (16,), 10, (0.1,))
    listed = Model(base.init, base.apply, list(base.hparams))  # a list: unhashable, normalised by the spec
    _, h = fit(listed, SGD, digits, epochs=1, batch_size=64, key=jax.random.key(0), hparams={"lr": 0.1, "rates": [0.2]})
    assert h.status == "completed"
    with pytest.raises(ValueError, match="data_mesh must have the one axis 'data'"):
        fit(base, SGD, digits, epochs=1, batch_size=64, key=jax.random.key(0), hparams={"lr": 0.1},
            data_mesh=member_mesh(1))


def test_a_raw_uint32_key_is_one_run_key_and_a_stack_of_them_is_members():
    """jax.random.PRNGKey(0) -- raw key data of shape (2,), D2L's JAX edition's spelling -- seeds one run exactly
    like the typed key it holds; a stack of raw keys (N, 2) is N members, as a typed (N,) array is."""
    x = jax.random.normal(jax.random.key(0), (20, 3))
    data, model = (x, x.sum(1), x, x.sum(1)), scratch_linreg(3)
    common = dict(epochs=2, batch_size=5, loss="squared", hparams={"lr": 0.1})
    _, raw = fit(model, SGD, data, key=jax.random.PRNGKey(0), **common)
    _, typed = fit(model, SGD, data, key=jax.random.wrap_key_data(jax.random.PRNGKey(0)), **common)
    assert raw.test_loss == typed.test_loss
    keys = jax.random.split(jax.random.PRNGKey(0), 4)
    stacked = init_state(model, SGD, keys)
    assert stacked.params["dense0"]["kernel"].shape == (4, 3, 1)
    np.testing.assert_allclose(stacked.params["dense0"]["kernel"][2],  # compiled normal draws: 1 ulp apart at most
                               init_state(model, SGD, keys[2]).params["dense0"]["kernel"], rtol=1e-6)
