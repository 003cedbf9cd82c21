"""A model type the engine has never seen trains through ``fit``, ``sweep`` and the runner, with no edit to the
engine: the ``Model(init, apply, hparams)`` contract is the whole interface.

The tiny model here has what the built-in ones have, in a shape of its own: a parameter tree of its own names, a
model-level hyperparameter it declares (``temperature``, traced: sweepable), and a ``model_state`` that is not
BatchNorm's (a running count of training examples seen, carried like BN statistics).
"""
import json

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from regjax import runner
from regjax.base import Model
from regjax.engine import fit, grid, sweep
from regjax.optim import scratch_sgd

SGD = scratch_sgd(0.1)  # the from-scratch SGD step; each test's learning rate comes in hparams


def tiny_model(d: int = 5, classes: int = 3) -> Model:
    def init(key):
        params = {"proj": {"w": 0.1 * jax.random.normal(key, (d, classes))}, "offset": jnp.zeros((classes,))}
        return params, {"seen": jnp.zeros((), jnp.float32)}

    def apply(params, state, x, *, key=None, train=False, hparams=None):
        temperature = (hparams or {}).get("temperature", 1.0)
        logits = (jnp.tanh(x) @ params["proj"]["w"] + params["offset"]) / temperature
        new_state = {"seen": state["seen"] + x.shape[0]} if train else state
        return logits, new_state

    return Model(init, apply, hparams=("temperature",))


def _data(n_train=48, n_test=16, d=5, classes=3):
    x = jax.random.normal(jax.random.key(1), (n_train + n_test, d))
    y = (jnp.argmax(x[:, :classes], axis=1)).astype(jnp.int32)
    return x[:n_train], y[:n_train], x[n_train:], y[n_train:]


MODEL = tiny_model()


def test_fit_trains_it_with_its_own_hparam_and_state():
    state, history = fit(MODEL, SGD, _data(), epochs=4, batch_size=16, key=jax.random.key(0),
                         hparams={"lr": 0.5, "temperature": 2.0})
    assert history.status == "completed" and history.test_loss[0][-1] < history.test_loss[0][0]
    assert float(state.model_state["seen"]) == 4 * 48  # its state was carried through every step
    with pytest.raises(ValueError, match=r"unknown hparams key 'rates'; allowed here: \['lam', 'lr', 'temperature'\]"):
        fit(MODEL, SGD, _data(), epochs=1, batch_size=16, key=jax.random.key(0), hparams={"lr": 0.5, "rates": 0.1})


def test_a_sweep_member_equals_the_same_fit():
    members = grid(seeds=[0, 1], temperature=[1.0, 3.0], lr=0.5)
    result = sweep(MODEL, SGD, _data(), members, epochs=3, batch_size=16)
    for i, config in enumerate(members.configs):
        state, history = fit(MODEL, SGD, _data(), epochs=3, batch_size=16, key=jax.random.key(config["seed"]),
                             hparams={"lr": 0.5, "temperature": config["temperature"]})
        for a, b in zip(jax.tree_util.tree_leaves(jax.tree_util.tree_map(lambda v: v[i], result.state)),
                        jax.tree_util.tree_leaves(state)):
            if jax.dtypes.issubdtype(a.dtype, jax.dtypes.prng_key):
                a, b = jax.random.key_data(a), jax.random.key_data(b)
            np.testing.assert_allclose(np.asarray(a), np.asarray(b), rtol=1e-5, atol=1e-6)
        np.testing.assert_allclose(result.history.metric("test_loss")[:, i], history.test_loss[0], rtol=1e-5)


def _run(out, argv=()):
    p = runner.parser("a tiny model of its own", epochs=3, lr=0.5, batch_size=16, out=str(out))
    with runner.Run("tiny", p, ["--quiet", *argv]) as run:
        run.set_dataset({"name": "tiny", "n_train": 48, "n_test": 16}, n_train=48)
        state, history = run.fit("alone", MODEL, SGD, _data(), epochs=run.args.epochs,
                                 hparams={"lr": run.args.lr, "temperature": 2.0})
        result = run.sweep("swept", MODEL, SGD, _data(), grid(seeds=[0, 1], temperature=[1.0, 3.0], lr=run.args.lr),
                           epochs=run.args.epochs, checkpoint_interval_s=0.0)
        run.finish({"final": history.final(), "swept": result.final().tolist()})
    return state, history, result


def test_the_runner_trains_checkpoints_and_resumes_it(tmp_path, monkeypatch):
    monkeypatch.setenv("REGJAX_CACHE_DIR", str(tmp_path / "cache"))
    out = tmp_path / "out"
    _run(out, ["--out", str(out)])
    done = json.loads((out / "results.json").read_text())
    assert done["status"] == "completed" and done["epochs_completed"] == {"alone": 3, "swept": 3}
    assert (out / "checkpoints" / "alone.msgpack").exists() and (out / "checkpoints" / "swept.sweep.msgpack").exists()
    # --resume --epochs 5 continues both from their checkpoints: the same as 5 epochs in one go
    state, history, result = _run(out, ["--out", str(out), "--resume", "--epochs", "5"])
    s2, h2, r2 = _run(tmp_path / "straight", ["--out", str(tmp_path / "straight"), "--epochs", "5"])
    assert history.test_loss == h2.test_loss and float(state.model_state["seen"]) == 5 * 48
    np.testing.assert_array_equal(result.history.metric("test_loss"), r2.history.metric("test_loss"))
    assert json.loads((out / "results.json").read_text())["resumed"] is True
