"""The D2L-exercise pieces: ``l1_penalty`` / ``add_l1_decay`` / ``l1_decayed_sgd`` (hand-computed, check_grads,
the decay route equals the penalty's gradient), the answers' probes (hidden activations equal the model's own
forward pass, masks included; dropout at test time; biases in front of BN removed), and the experiments that
answer the exercises (exercises.py, model_selection.py, sweep.py --what dropout/lr, polynomial_fit.py --sweep)
end to end with tiny settings."""
import json
import runpy
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from jax.test_util import check_grads

from exercise_answers.probes import hidden_statistics, mlp_hidden, predict_with_dropout, without_biases
from regjax.models import scratch
from regjax.models.adapters import scratch_lenet_bn, scratch_mlp
from regjax.optim import add_l1_decay, l1_decayed_sgd
from regjax.penalty import l1_penalty

ROOT = Path(__file__).resolve().parents[1]


def _params():
    return {"dense0": {"kernel": jnp.array([[1.0, -2.0], [0.5, 0.0]]), "bias": jnp.array([3.0, -4.0])},
            "bn0": {"scale": jnp.array([-1.5]), "bias": jnp.array([2.0])},
            "conv0": {"kernel": -jnp.ones((1, 1, 1, 3)), "bias": jnp.array([7.0])}}


def test_l1_penalty_hand_computed_weights_only():
    # |1| + |-2| + |0.5| + |0| + 3·|-1| = 6.5; biases and BN scale/bias are not penalized
    assert float(l1_penalty(_params())) == pytest.approx(6.5)
    assert float(jax.jit(l1_penalty)(_params())) == pytest.approx(6.5)
    everything = jax.tree_util.tree_map(lambda _: True, _params())
    assert float(l1_penalty(_params(), everything)) == pytest.approx(6.5 + 7 + 3.5 + 7)


def test_l1_penalty_gradient_is_sign_and_passes_check_grads():
    p = {"dense0": {"kernel": jnp.array([[1.0, -2.0], [0.5, -0.25]]), "bias": jnp.array([3.0, -4.0])}}
    g = jax.grad(l1_penalty)(p)
    np.testing.assert_array_equal(g["dense0"]["kernel"], [[1.0, -1.0], [1.0, -1.0]])
    np.testing.assert_array_equal(g["dense0"]["bias"], [0.0, 0.0])
    check_grads(l1_penalty, (p,), order=2, modes=("fwd", "rev"), eps=1e-3)  # away from 0: |w| is smooth there


def test_add_l1_decay_is_the_penalty_gradient_and_l1_sgd_injects_lambda():
    p = _params()
    grads = jax.tree_util.tree_map(jnp.ones_like, p)
    lam = 0.3
    updates, _ = add_l1_decay(lam).update(grads, optax.EmptyState(), p)
    expected = jax.tree_util.tree_map(lambda g, d: g + lam * d, grads, jax.grad(l1_penalty)(p))
    expected["dense0"]["kernel"] = expected["dense0"]["kernel"].at[1, 1].set(1.0)  # w = 0: sign(0) = 0, left at 0
    for a, b in zip(jax.tree_util.tree_leaves(updates), jax.tree_util.tree_leaves(expected)):
        np.testing.assert_allclose(a, b, rtol=1e-6)
    opt = l1_decayed_sgd(0.1, lam)
    state = opt.init(p)
    assert set(state.hyperparams) >= {"learning_rate", "l1"}
    step, _ = opt.update(grads, state, p)
    for a, b in zip(jax.tree_util.tree_leaves(step), jax.tree_util.tree_leaves(updates)):
        np.testing.assert_allclose(a, -0.1 * b, rtol=1e-6)
    with pytest.raises(ValueError):
        l1_decayed_sgd(0.1, -1.0)


def test_mlp_hidden_is_the_models_own_forward_pass_masks_included():
    params = scratch.init_mlp(jax.random.key(0), 6, (8, 8), 3, "he")
    x = jax.random.normal(jax.random.key(1), (5, 6))
    key, rates = jax.random.key(2), jnp.array([0.3, 0.6])

    @jax.jit
    def both(params, x, rates, key):  # one compiled program: eager op-by-op compiles cost more than the test
        out = {}
        for train in (False, True):
            hidden = mlp_hidden(params, x, rates=rates, key=key, train=train)
            out[train] = (hidden[-1] @ params["dense2"]["kernel"] + params["dense2"]["bias"],
                          scratch.mlp(params, x, key=key, train=train, rates=rates))
        hidden = mlp_hidden(params, x)[0]
        return out, hidden_statistics(params, x, rates, key), (jnp.var(hidden), jnp.mean(hidden))

    out, v, (var0, mean0) = both(params, x, rates, key)
    for logits, expected in out.values():
        np.testing.assert_allclose(logits, expected, rtol=1e-6)
    assert v["eval"].shape == v["train"].shape == v["mean"].shape == (2,)
    np.testing.assert_allclose([v["eval"][0], v["mean"][0]], [var0, mean0], rtol=1e-6)
    assert not np.allclose(v["train"], v["eval"])  # the masks change the variance


def test_predict_with_dropout_without_dropout_is_the_eval_prediction():
    model = scratch_mlp(6, (8,), 3, (0.0,), "he")
    params, ms = model.init(jax.random.key(0))
    x = jax.random.normal(jax.random.key(1), (4, 6))
    eval_probs = jax.nn.softmax(model.apply(params, ms, x, train=False)[0])
    predict = jax.jit(lambda rate: predict_with_dropout(model, params, ms, x, {"rates": rate}, jax.random.key(2), 3))
    probs = predict(jnp.array([0.0]))
    assert probs.shape == (3, 4, 3)
    for one in probs:
        np.testing.assert_allclose(one, eval_probs, rtol=1e-6)
    probs = predict(jnp.array([0.5]))
    assert not np.allclose(probs[0], eval_probs) and not np.allclose(probs[0], probs[1])  # fresh masks each pass


def test_without_biases_removes_them_and_their_gradient():
    model = scratch_lenet_bn(3, (16, 16, 1))
    stripped = without_biases(model, ("conv0", "dense0"))
    params, ms = model.init(jax.random.key(0))
    params = jax.tree_util.tree_map(lambda a: a + 0.5, params)  # nonzero biases everywhere
    x = jax.random.uniform(jax.random.key(1), (6, 16, 16, 1))

    @jax.jit
    def run(p):
        loss = lambda q: jnp.sum(stripped.apply(q, ms, x, train=True)[0] ** 2)
        return jax.grad(loss)(p), stripped.apply(p, ms, x, train=True)[0], model.apply(p, ms, x, train=True)[0]

    g, out_stripped, out_full = run(params)
    assert float(jnp.abs(g["conv0"]["bias"]).max()) == 0.0 and float(jnp.abs(g["dense0"]["bias"]).max()) == 0.0
    assert float(jnp.abs(g["conv1"]["bias"]).max()) > 0.0
    # in front of BN (train mode: batch statistics) the bias changes nothing but round-off
    np.testing.assert_allclose(out_stripped, out_full, rtol=1e-4, atol=1e-5)


# ---- the experiments, end to end with tiny settings -----------------------------------------------------------

@pytest.fixture
def load(tmp_path, monkeypatch):
    """An experiment's globals (``load('sweep')['main'](argv)``), offline, with its own cache folder."""
    monkeypatch.setenv("REGJAX_CACHE_DIR", str(tmp_path / "cache"))
    monkeypatch.delenv("REGJAX_DATA_DIR", raising=False)
    return lambda name: runpy.run_path(str(ROOT / "experiments" / f"{name}.py"))


def _check_answers(payload, out, ids):
    assert [a["id"] for a in payload["answers"]] == ids
    for a in payload["answers"]:
        assert a["answer"] and Path(a["plot"]).stat().st_size > 1000
    assert (out / "exercises.md").read_text().count("![§") == len(ids)
    assert json.loads((out / "results.json").read_text())["status"] == "completed"


@pytest.mark.slow
def test_exercises_section_56(tmp_path, load):
    out = tmp_path / "ex"
    payload = load("exercises")["main"]([
        "--section", "5.6", "--dataset", "digits", "--seeds", "2", "--mlp-epochs", "2", "--mlp-long-epochs", "3",
        "--mlp-train-size", "120", "--hidden", "16", "16", "--out", str(out), "--quiet"])
    _check_answers(payload, out, ["§5.6.1", "§5.6.2", "§5.6.3", "§5.6.4", "§5.6.5", "§5.6.6", "§5.6.7"])


@pytest.mark.slow
def test_exercises_section_85(tmp_path, load):
    payload = load("exercises")["main"]([
        "--section", "8.5", "--dataset", "digits", "--train-size", "128", "--seeds", "1", "--lenet-epochs", "1",
        "--lenet-lrs", "0.1", "1.0", "--out", str(tmp_path / "ex"), "--quiet"])
    assert [a["id"] for a in payload["answers"]] == ["§8.5.1", "§8.5.2", "§8.5.3", "§8.5.4", "§8.5.5", "§8.5.6"]
    assert payload["answers"][0]["data"]["max_abs_bias"] < 1e-4


def test_model_selection_runs_and_answers(tmp_path, load):
    out = load("model_selection")["main"](["--data", "diabetes", "--epochs", "2", "--k", "3", "--seeds", "2",
                                         "--lambdas", "0", "0.1", "1", "--out", str(tmp_path / "ms"), "--quiet"])
    assert out["selection"]["best_lambda"] in (0.0, 0.1, 1.0) and "validation picks" in out["answer"]
    assert len(out["per_lambda"]) == 3 and Path(out["plots"][0]).stat().st_size > 1000


@pytest.mark.parametrize("what,extra", [
    ("dropout", ["--rates", "0", "0.5", "--hidden", "16", "16", "--baselines", "none"]),
    pytest.param("lr", ["--lrs", "0.1", "1", "--hidden", "16", "16", "--impl", "optax", "--baselines", "both"],
                 marks=pytest.mark.slow),
])
def test_sweep_experiment_dropout_and_lr(what, extra, tmp_path, load):
    out = load("sweep")["main"](["--what", what, "--dataset", "digits", "--epochs", "2", "--train-size", "256",
                               "--out", str(tmp_path / what), "--quiet", *extra])
    assert out["best"] and Path(out["plots"][0]).stat().st_size > 1000
    timing = out["timing"]  # the baselines: here for lr; the weight-decay CLI test in test_sweep.py times both too
    assert timing["vmapped"]["train_s"] > 0
    assert ("sequential_compiled" in timing) == ("fit_loop" in timing) == (what == "lr")
    table = json.loads((tmp_path / what / f"{what}_table.json").read_text())
    assert table["num_members"] == len(table["members"]) and table["members"][0]["per_epoch"]["test_loss"]


@pytest.mark.slow  # the default path (and its overfit check) runs in test_experiments' smoke test
def test_polynomial_fit_overfit_check_and_sweep(tmp_path, load):
    g = load("polynomial_fit")
    g["overfit_sweep"].__globals__.update(SWEEP_N_TRAIN=(20,), SWEEP_DRAWS=2)  # tiny: one sweep, two draws
    rows = g["main"](["--epochs", "2", "--sweep", "--out", str(tmp_path / "poly"), "--quiet"])
    result = json.loads((tmp_path / "poly" / "results.json").read_text())
    assert result["final"]["20 features"]["epochs"] == 8  # 2 x 1500/400, rounded up
    assert [c["epochs_4"] for c in result["overfit_check"]["checks"]] == [2, 8]
    assert {r["noise"] for r in result["sweep"]["table"]} == {0.1, 0.3, 1.0}
    assert rows


def test_exercise_numbers_match_the_books_questions():
    """d2l-en numbers §5.6 ex. 4 'dropout at test time', ex. 5 'dropout vs weight decay'; §8.5 ex. 1 'the bias
    before BN', ex. 2 'learning rates' (an earlier version had both pairs swapped). Read from the answers'
    (id, question) pairs in experiments/exercise_answers/ without training anything."""
    import ast

    questions = {}
    for path in sorted((ROOT / "experiments" / "exercise_answers").glob("s*_*.py")):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Call) and getattr(node.func, "id", None) == "answer" and len(node.args) >= 2:
                ident, question = (ast.literal_eval(a) if isinstance(a, ast.Constant) else
                                   ast.literal_eval(ast.unparse(a)) for a in node.args[:2])
                questions[ident] = question.lower()
    key_words = {"§5.6.4": "test time", "§5.6.5": "weight decay", "§8.5.1": "bias", "§8.5.2": "learning rates"}
    for ident, words in key_words.items():
        assert words in questions[ident], (ident, questions[ident])
    assert "test time" not in questions["§5.6.5"] and "learning rate" not in questions["§8.5.1"]
