"""The engine's ``shuffle`` flag (D2L §3.4 ex. 9): ``shuffle=False`` visits the examples in their given order,
the default keeps the per-epoch permutation ``fold_in(data_key, epoch)`` -- both checked against SGD by hand."""
import jax
import numpy as np
import pytest

from regjax.engine import epoch_key, fit, grid, init_state, run_keys, sweep
from regjax.engine.spec import TrainSpec
from regjax.models.adapters import scratch_linreg
from regjax.optim import scratch_sgd

SGD = scratch_sgd(0.1)  # the from-scratch SGD step; each test's learning rate comes in hparams

N, D, LR, EPOCHS = 7, 2, 0.1, 2
MODEL = scratch_linreg(D)  # one model object: every fit below shares its compiled program


def _data():
    rng = np.random.default_rng(0)
    x = rng.normal(size=(N, D)).astype(np.float32)
    y = (x @ np.array([2.0, -3.4]) + 4.2).astype(np.float32)
    return x, y, x[:3], y[:3]


def _by_hand(params, x, y, orders):
    """Batch-size-1 SGD on ½(xw + b − y)², one order of indices per epoch."""
    w = np.asarray(params["dense0"]["kernel"], np.float64)[:, 0]
    b = float(np.asarray(params["dense0"]["bias"])[0])
    for order in orders:
        for i in order:
            r = x[i] @ w + b - y[i]
            w, b = w - LR * r * x[i], b - LR * r
    return w, b


def _fit(key, **kwargs):
    model = MODEL
    state, _ = fit(model, SGD, _data(), epochs=EPOCHS, batch_size=1, key=key, hparams={"lr": LR},
                   loss="squared", **kwargs)
    return model, state


def _check(state, w, b):
    np.testing.assert_allclose(np.asarray(state.params["dense0"]["kernel"])[:, 0], w, rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(np.asarray(state.params["dense0"]["bias"])[0], b, rtol=1e-5, atol=1e-5)


def test_no_shuffle_visits_the_given_order():
    key = jax.random.key(3)
    model, state = _fit(key, shuffle=False)
    x, y, *_ = _data()
    _check(state, *_by_hand(init_state(model, SGD, key).params, x, y, [range(N)] * EPOCHS))


def test_default_keeps_the_per_epoch_permutation():
    key = jax.random.key(3)
    model, state = _fit(key)
    orders = [np.asarray(jax.random.permutation(epoch_key(run_keys(key).data, e), N)) for e in range(EPOCHS)]
    assert any((o != np.arange(N)).any() for o in orders)  # the check below would not tell the flag apart
    x, y, *_ = _data()
    _check(state, *_by_hand(init_state(model, SGD, key).params, x, y, orders))
    _, explicit = _fit(key, shuffle=True)
    for a, b in zip(jax.tree_util.tree_leaves(state.params), jax.tree_util.tree_leaves(explicit.params)):
        np.testing.assert_array_equal(np.asarray(a), np.asarray(b))  # bit-identical


def test_sweep_members_follow_the_flag():
    members = grid([3, 4], lr=LR)
    res = sweep(MODEL, SGD, _data(), members, epochs=EPOCHS, batch_size=1, loss="squared",
                shuffle=False)
    for i, seed in enumerate((3, 4)):
        _, state = _fit(jax.random.key(seed), shuffle=False)
        np.testing.assert_allclose(np.asarray(res.state.params["dense0"]["kernel"][i]),
                                   np.asarray(state.params["dense0"]["kernel"]), rtol=1e-5, atol=1e-6)


def test_shuffle_must_be_a_bool():
    with pytest.raises(ValueError, match="shuffle must be a bool"):
        TrainSpec.build(scratch_linreg(D), SGD, batch_size=1, loss="squared", shuffle=0)
    assert TrainSpec.build(scratch_linreg(D), SGD, batch_size=1, loss="squared").shuffle is True
