"""regjax.engine.sweep: every member equals the same configuration trained alone with ``fit`` (dropout MLP, §3.7 linear
regression with λ on both routes, LeNet-BN with its BN state), chunked == unchunked, the chunk size from measured
bytes, per-member divergence, the member table, and interruption + resume through the real CLI.

Tolerances: a member runs the very same step/epoch/evaluate as ``fit``, vmapped. For the dense models the
results come out bit-identical on this backend, but XLA may batch a matrix product with another summation order,
so the comparisons allow float32 round-off (rtol 1e-5 after a few SGD epochs). LeNet's convolutions with one
kernel per member become ONE grouped convolution under vmap -- another algorithm, other rounding -- and
BatchNorm divides by batch standard deviations, so round-off of ~1e-7 per step grows through 8 steps at lr 0.9
to ~2e-6 on parameters of size ~1e-2: LeNet is compared at atol 2e-5 (10x that).
"""
import json
import os
import runpy
import signal
import subprocess
import sys
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from regjax import decayed_sgd
from regjax.checkpoint import read_checkpoint
from regjax.data import synthetic_linear
from regjax.engine import (
    Diverged,
    History,
    Members,
    available_memory,
    fit,
    grid,
    group_stats,
    plan_chunk_size,
    sweep,
)
from regjax.models.adapters import scratch_lenet_bn, scratch_linreg, scratch_mlp
from regjax.optim import sgd
from regjax.report import json_safe
from regjax.optim import scratch_sgd

SGD = scratch_sgd(0.1)  # the from-scratch SGD step; each test's learning rate comes in hparams

ROOT = Path(__file__).resolve().parents[1]
RTOL, ATOL = 1e-5, 1e-6


def _classification_data(d=12, classes=3, n_train=100, n_test=40):
    x = jax.random.normal(jax.random.key(10), (n_train, d))
    y = jax.random.randint(jax.random.key(11), (n_train,), 0, classes)
    xt = jax.random.normal(jax.random.key(12), (n_test, d))
    yt = jax.random.randint(jax.random.key(13), (n_test,), 0, classes)
    return x, y, xt, yt


MLP = scratch_mlp(12, (16, 16), 3, (0.0, 0.0), weight_init="he")
MLP_MEMBERS = grid(seeds=[0, 1], rates=[(0.0, 0.0), (0.2, 0.5), (0.5, 0.2)], lr=0.1)


@pytest.fixture(scope="module")
def mlp_sweep():
    return sweep(MLP, SGD, _classification_data(), MLP_MEMBERS, epochs=3, batch_size=32)


def _member(tree, i):
    return jax.tree_util.tree_map(lambda a: a[i], tree)


def _assert_member_equals_fit(result, i, state, history, rtol=RTOL, atol=ATOL):
    chex_close(_member(result.state.params, i), state.params, rtol, atol)
    chex_close(_member(result.state.model_state, i), state.model_state, rtol, atol)
    assert int(result.state.step[i]) == int(state.step)
    for metric in ("train_loss", "test_loss", "test_accuracy"):
        solo = getattr(history, metric)
        if solo is not None:
            np.testing.assert_allclose(result.history.metric(metric)[:, i], solo[0], rtol=rtol, atol=atol)


def chex_close(a, b, rtol=RTOL, atol=ATOL):
    for x, y in zip(jax.tree_util.tree_leaves(a), jax.tree_util.tree_leaves(b), strict=True):
        np.testing.assert_allclose(np.asarray(x), np.asarray(y), rtol=rtol, atol=atol)


def test_dropout_mlp_members_equal_fit_alone(mlp_sweep):
    data = _classification_data()
    assert mlp_sweep.history.status == "completed" and mlp_sweep.chunk_size == len(MLP_MEMBERS)
    for i, config in enumerate(MLP_MEMBERS.configs):
        state, history = fit(MLP, SGD, data, epochs=3, batch_size=32, key=jax.random.key(config["seed"]),
                             hparams={"lr": 0.1, "rates": config["rates"]})
        _assert_member_equals_fit(mlp_sweep, i, state, history)
    # members really differ: other rates or seeds give other parameters
    kernels = np.asarray(mlp_sweep.state.params["dense0"]["kernel"]).reshape(len(MLP_MEMBERS), -1)
    assert len({k.tobytes() for k in kernels}) == len(MLP_MEMBERS)


def test_chunked_equals_unchunked(mlp_sweep):
    data = _classification_data()
    chunked = sweep(MLP, SGD, data, MLP_MEMBERS, epochs=3, batch_size=32, chunk_size=4)  # 4 + 2 (padded to 4)
    assert chunked.chunk_size == 4
    chex_close(chunked.state.params, mlp_sweep.state.params)
    np.testing.assert_allclose(chunked.history.metric("test_loss"), mlp_sweep.history.metric("test_loss"),
                               rtol=RTOL, atol=ATOL)


def test_a_continued_sweep_keeps_the_chunks_its_history_recorded():
    """Continued from its state and history (through JSON, as a checkpoint holds it), a chunked sweep runs in the
    chunks it was made with -- the engine reads them from the history -- and ends bit-identical to one call."""
    data = _classification_data()
    whole = sweep(MLP, SGD, data, MLP_MEMBERS, epochs=3, batch_size=32, chunk_size=4)
    first = sweep(MLP, SGD, data, MLP_MEMBERS, epochs=2, batch_size=32, chunk_size=4)
    assert first.memory["chunk_size_from"] == "chunk_size"
    history = History.from_dict(json.loads(json.dumps(first.history.to_dict())))
    rest = sweep(MLP, SGD, data, MLP_MEMBERS, epochs=3, batch_size=32, state=first.state, start_epoch=2,
                 history=history)
    assert rest.chunk_size == 4 and rest.memory["chunk_size_from"] == "history"
    for a, b in zip(jax.tree_util.tree_leaves(rest.state.params), jax.tree_util.tree_leaves(whole.state.params)):
        np.testing.assert_array_equal(a, b)
    np.testing.assert_array_equal(rest.history.metric("test_loss"), whole.history.metric("test_loss"))


def test_chunk_size_is_measured_against_the_budget(mlp_sweep):
    memory = mlp_sweep.memory
    assert memory["peak_bytes_all_members"] > memory["shared_data_bytes"] > 0
    assert memory["budget_source"] in ("os.sysconf SC_AVPHYS_PAGES", f"{jax.devices()[0].platform} memory_stats")
    # a budget below the measured peak forces chunks of the planned size; results unchanged (the budget is
    # chosen to give chunks of 4, whose program the chunked test compiled already)
    budget = int(memory["shared_data_bytes"] + memory["state_bytes"] + 4.5 * memory["bytes_per_member"])
    expected = plan_chunk_size(memory["peak_bytes_all_members"], len(MLP_MEMBERS), memory["shared_data_bytes"],
                               memory["state_bytes"], budget)
    assert expected == 4
    small = sweep(MLP, SGD, _classification_data(), MLP_MEMBERS, epochs=3, batch_size=32, memory_budget=budget)
    assert small.chunk_size == expected
    chex_close(small.state.params, mlp_sweep.state.params)


def test_plan_chunk_size_arithmetic():
    # fits: all members; else (budget - shared - state) // ((peak - shared) / N), at least 1
    assert plan_chunk_size(1000, 10, 100, 50, 1000) == 10
    assert plan_chunk_size(1100, 10, 100, 50, 600) == (600 - 100 - 50) // 100
    assert plan_chunk_size(10_000, 10, 0, 0, 10) == 1
    free, source = available_memory()
    assert free > 0 and source


def _linreg_data():
    d, n_train, n_test = 200, 20, 30
    x, y = synthetic_linear(jax.random.key(0), 0.01 * jnp.ones(d), 0.05, n_train + n_test, 0.01)
    return scratch_linreg(d, weight_init=jax.nn.initializers.normal(1.0)), (x[:n_train], y[:n_train], x[n_train:],
                                                                            y[n_train:])


@pytest.mark.parametrize("route", ["penalty", "optax_decay"])
def test_linear_regression_with_lambda_members_equal_fit_alone(route):
    model, data = _linreg_data()
    lams = [0.0, 3.0]
    if route == "penalty":  # λ/2‖w‖² in the loss, scratch SGD
        optimizer, members = SGD, grid(seeds=[0, 1], lam=lams, lr=0.003)
        solo_hparams = lambda c: {"lam": c["lam"], "lr": 0.003}
    else:  # add_decayed_weights(λ) before optax SGD; λ and lr injected
        optimizer, members = decayed_sgd(0.003, 0.0), grid(seeds=[0, 1], weight_decay=lams, lr=0.003)
        solo_hparams = lambda c: {"weight_decay": c["weight_decay"], "lr": 0.003}
    result = sweep(model, optimizer, data, members, epochs=4, batch_size=5, loss="squared")
    for i, config in enumerate(members.configs):
        state, history = fit(model, optimizer, data, epochs=4, batch_size=5, key=jax.random.key(config["seed"]),
                             hparams=solo_hparams(config), loss="squared")
        _assert_member_equals_fit(result, i, state, history)
        if route == "optax_decay":  # the injected hyperparameters are the member's own
            hp = result.state.opt_state.hyperparams
            assert float(hp["weight_decay"][i]) == config["weight_decay"]
    assert result.history.train_accuracy is None  # regression: no accuracy


def test_lenet_bn_members_equal_fit_alone_with_bn_state():
    model = scratch_lenet_bn(3, (16, 16, 1))  # 16x16 keeps LeNet's two VALID 5x5 convs and is cheap
    x = jax.random.uniform(jax.random.key(1), (48, 16, 16, 1))
    y = jax.random.randint(jax.random.key(2), (48,), 0, 3)
    data = (x[:32], y[:32], x[32:], y[32:])
    members = grid(seeds=[0], lr=[0.1, 0.9])
    optimizer = sgd(0.1)  # optax route, lr injected
    result = sweep(model, optimizer, data, members, epochs=2, batch_size=8)
    for i, config in enumerate(members.configs):
        state, history = fit(model, optimizer, data, epochs=2, batch_size=8, key=jax.random.key(config["seed"]),
                             hparams={"lr": config["lr"]})
        _assert_member_equals_fit(result, i, state, history, rtol=1e-4, atol=2e-5)
    # the BN moving statistics moved, per member
    means = np.asarray(result.state.model_state["bn0"]["mean"])
    assert np.abs(means).max() > 0 and not np.allclose(means[0], means[1])


@pytest.mark.parametrize("vmap_size", [None, 1])  # all members vmapped; one at a time inside the program
def test_a_diverging_member_is_marked_and_the_others_train_on(vmap_size):
    model, data = _linreg_data()
    members = grid(seeds=[0], lr=[0.003, 50.0])  # lr 50 on d=200 inputs: |w| grows ~1e4-fold a step
    result = sweep(model, SGD, data, members, epochs=6, batch_size=5, loss="squared", vmap_size=vmap_size)
    h = result.history
    assert h.status == "completed" and h.member_status() == ["completed", "diverged"]
    assert h.diverged_epoch[0] is None and 1 < h.diverged_epoch[1] < 6 and h.diverged_step[1] >= 4
    dead = h.metric("train_loss")[:, 1]
    assert not np.isfinite(dead[h.diverged_epoch[1] - 1])  # the epoch it diverged in...
    assert np.isnan(h.metric("test_loss")[h.diverged_epoch[1] - 1:, 1]).all()  # its test loss too, then NaN: it
    #                                                                             trains no more
    frozen = np.asarray(result.state.params["dense0"]["kernel"][1])
    assert np.isfinite(frozen).all()  # its state is that of its last finite epoch
    state, history = fit(model, SGD, data, epochs=6, batch_size=5, key=jax.random.key(0), hparams={"lr": 0.003},
                         loss="squared")
    _assert_member_equals_fit(result, 0, state, history)
    table = result.table()
    assert [r["status"] for r in table] == ["completed", "diverged"]
    assert result.best("test_loss")["member"] == 0
    json.dumps(result.to_dict())  # JSON-able (NaN handled by the writer)


def test_every_member_diverging_raises_diverged():
    model, data = _linreg_data()
    with pytest.raises(Diverged) as err:
        sweep(model, SGD, data, grid(seeds=[0, 1], lr=50.0), epochs=3, batch_size=5, loss="squared")
    assert err.value.history.status == "diverged"


def test_grid_order_configs_and_validation():
    m = grid(seeds=[3, 4], lam=[0.0, 1.0], lr=0.1)
    assert [c["seed"] for c in m.configs] == [3, 4, 3, 4]
    assert [c["lam"] for c in m.configs] == [0.0, 0.0, 1.0, 1.0]
    np.testing.assert_allclose(m.hparams["lr"], [0.1] * 4)
    assert jax.random.key_data(m.keys[1]).tolist() == jax.random.key_data(jax.random.key(4)).tolist()
    folds = grid(seeds=[0], folds=2, lam=[1.0, 2.0])
    assert folds.data_index.tolist() == [0, 0, 1, 1] and folds.configs[2] == {"fold": 1, "lam": 1.0, "seed": 0}
    sub = m.take([3, 0])
    assert [c["seed"] for c in sub.configs] == [4, 3] and sub.hparams["lam"].tolist() == [1.0, 0.0]
    with pytest.raises(ValueError, match="member axis first"):
        Members(m.keys, {"lam": np.zeros(3)}, m.configs)
    model, data = _linreg_data()
    with pytest.raises(ValueError, match="unknown hparams key 'rates'"):
        sweep(model, SGD, data, grid(rates=[(0.1,)], lr=0.1), epochs=1, batch_size=5, loss="squared")
    with pytest.raises(ValueError, match=r"hparams\['lam'\] must be in"):
        sweep(model, SGD, data, grid(lam=[-1.0], lr=0.1), epochs=1, batch_size=5, loss="squared")


def test_group_stats_and_history_round_trip(mlp_sweep):
    stats = group_stats(MLP_MEMBERS.configs, mlp_sweep.final("test_loss"), ["rates"])
    assert [s["rates"] for s in stats] == [[0.0, 0.0], [0.2, 0.5], [0.5, 0.2]]
    first = mlp_sweep.final("test_loss")[:2]
    assert stats[0]["mean"] == pytest.approx(first.mean()) and stats[0]["std"] == pytest.approx(first.std(ddof=1))
    restored = History.from_dict(json.loads(json.dumps(mlp_sweep.history.to_dict())))
    np.testing.assert_array_equal(restored.metric("test_loss"), mlp_sweep.history.metric("test_loss"))
    rows = mlp_sweep.long_rows()
    assert len(rows) == len(MLP_MEMBERS) * 3 and rows[0]["epoch"] == 1 and "rates" in rows[0]


def test_history_round_trips_its_layout_and_refuses_any_other():
    """One curve per member, through JSON: a regression history (no accuracy) and an empty one come back as they
    were; an earlier regjax's dicts (one list per epoch, for a single run or a sweep) and curves that do not fit
    the members and epochs are refused, not read transposed."""
    h = History(2)
    h.record(0, {"loss": np.array([1.0, 2.0])}, {"loss": np.array([3.0, np.nan])}, np.array([True, False]),
             np.array([0, 5]), seconds=0.5, eval_seconds=0.1, n=10)
    back = History.from_dict(json.loads(json.dumps(json_safe(h.to_dict()))))
    assert back.train_accuracy is None and back.diverged_step == [None, 5] and back.examples_per_s == [40.0]
    np.testing.assert_array_equal(back.metric("test_loss"), [[3.0, np.nan]])
    assert History.from_dict(History(3).to_dict()).metric("train_loss").shape == (0, 3)
    old_fit = {"train_loss": [1.0, 0.5], "test_loss": [1.1, 0.6], "epoch_time_s": [0.1, 0.1], "status": "completed"}
    old_sweep = {"num_members": 2, "train_loss": [[1.0, 2.0], [0.5, 1.5]], "train_accuracy": [None, None],
                 "test_loss": [[1.0, 2.0], [0.5, 1.5]], "epoch_time_s": [0.1, 0.1]}
    for old in (old_fit, old_sweep):
        with pytest.raises(ValueError, match="earlier regjax, in another layout"):
            History.from_dict(old)
    bad = {**h.to_dict(), "test_loss": [[3.0]]}
    with pytest.raises(ValueError, match="test_loss does not hold 2 curve"):
        History.from_dict(bad)


def test_cli_sigint_then_resume_equals_an_uninterrupted_sweep(tmp_path, monkeypatch):
    """The real CLI: SIGINT after a few epochs (read from its output), status 'interrupted' and exit 130, then
    --resume finishes with the same member table, bit for bit, as a run that was never interrupted."""
    monkeypatch.setenv("REGJAX_CACHE_DIR", str(tmp_path / "cache"))
    main = runpy.run_path(str(ROOT / "experiments" / "sweep.py"))["main"]
    args = ["--what", "weight_decay", "--epochs", "300", "--seeds", "2", "--lambdas", "0", "3", "--n-test", "20",
            "--baselines", "none", "--checkpoint-interval", "0"]
    env = {**os.environ, "REGJAX_CACHE_DIR": str(tmp_path / "cache"), "JAX_PLATFORMS": "cpu"}
    proc = subprocess.Popen([sys.executable, "-u", str(ROOT / "experiments" / "sweep.py"), *args, "--out",
                             str(tmp_path / "cut")], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            env=env, cwd=ROOT)
    for line in proc.stdout:
        if "epoch  60/300" in line:
            proc.send_signal(signal.SIGINT)
            break
    _, err = proc.communicate(timeout=120)
    assert proc.returncode == 130, err
    cut = json.loads((tmp_path / "cut" / "results.json").read_text())
    assert cut["status"] == "interrupted" and 60 <= cut["epochs_completed"]["weight_decay"] < 300
    # results.json reports what the checkpoint holds: as many epochs of history, not the live lists' later ones
    saved = read_checkpoint(tmp_path / "cut" / "checkpoints" / "weight_decay.sweep.msgpack")
    assert cut["epochs_completed"]["weight_decay"] == saved["epoch"]
    assert all(len(curve) == saved["epoch"] for curve in cut["history"]["weight_decay"]["test_loss"])
    assert len(cut["history"]["weight_decay"]["epoch_time_s"]) == saved["epoch"]
    resumed = main(args + ["--out", str(tmp_path / "cut"), "--resume", "--quiet"])
    whole = main(args + ["--out", str(tmp_path / "whole"), "--quiet"])
    a = json.loads((tmp_path / "cut" / "weight_decay_table.json").read_text())["members"]
    b = json.loads((tmp_path / "whole" / "weight_decay_table.json").read_text())["members"]
    assert a == b
    assert resumed["per_lambda"] == whole["per_lambda"]
    assert json.loads((tmp_path / "cut" / "results.json").read_text())["resumed"] is True


def test_the_sweep_cli_times_both_sequential_baselines(tmp_path):
    main = runpy.run_path(str(ROOT / "experiments" / "sweep.py"))["main"]
    out = main(["--what", "weight_decay", "--epochs", "3", "--seeds", "2", "--lambdas", "0", "3", "--n-test", "20",
                "--baselines", "both", "--out", str(tmp_path), "--quiet"])
    timing = out["timing"]  # (a) the compiled single-member program in a loop, (b) a loop of fit calls
    assert timing["sequential_compiled"]["train_s"] > 0 and timing["fit_loop"]["train_s"] > 0
    assert timing["vmapped"]["train_s"] > 0 and timing["fit_loop"]["speedup_wall"] > 0
