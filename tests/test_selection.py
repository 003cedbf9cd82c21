"""regjax.selection: closed-form ridge equals the trained penalized linear regression (diabetes, §3.7), each fold
trains and is validated with its own model (as d2l's k_fold does; the last-fold mix-up is in d2l's JAX ensemble
prediction, see test_house.py), and the validation curve / best / one-standard-error λ by hand.

Tolerances: full-batch gradient descent on a strongly convex quadratic converges geometrically; with the rates
and epochs below the remaining optimization error is < 1e-12 (contraction factor^epochs), so what is left is
float32 round-off of the iterates, ~1e-7 relative: compared at 1e-5 (diabetes, weights ~0.1-0.4) and at 1e-4 of
‖w‖ on the §3.7 problem (200 weights, a sum over 200 terms per prediction).
"""
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from regjax import decayed_sgd
from regjax.data import load_diabetes, synthetic_linear
from regjax.engine import fit, grid, sweep
from regjax.models.adapters import scratch_linreg
from regjax.selection import (
    curve,
    equal_folds,
    fold_data,
    kfold_members,
    one_se_index,
    ridge_closed_form,
    select_lambda,
)
from regjax.optim import scratch_sgd

SGD = scratch_sgd(0.1)  # the from-scratch SGD step; each test's learning rate comes in hparams


def _ridge_check(result, x, y, lams, w_tol):
    for i, lam in enumerate(lams):
        w, b = ridge_closed_form(x, y, lam)
        w_trained = np.asarray(result.state.params["dense0"]["kernel"][i, :, 0], np.float64)
        b_trained = float(result.state.params["dense0"]["bias"][i, 0])
        assert np.linalg.norm(w_trained - w) <= w_tol * max(1.0, np.linalg.norm(w)), lam
        assert b_trained == pytest.approx(b, abs=1e-5)


def test_trained_penalized_regression_is_closed_form_ridge_on_diabetes():
    # objective mean ½(xw+b−y)² + λ·½‖w‖²; eigenvalues of XcᵀXc/n lie in [0.0094, 4.14]: lr 0.2 < 2/(4.14+3),
    # slowest contraction 1 − 0.2·(0.0094+0.3) = 0.938 per step, 600 full-batch steps -> 2e-17
    ds = load_diabetes()
    x, y = ds.x_train, ds.y_train
    lams = [0.3, 1.0, 3.0]
    result = sweep(scratch_linreg(10), SGD, (x, y, ds.x_test, ds.y_test), grid(lam=lams, lr=0.2), epochs=600,
                   batch_size=len(x), loss="squared")
    _ridge_check(result, x, y, lams, 1e-5)


def test_decayed_sgd_regression_is_closed_form_ridge_on_the_d2l_problem():
    # D2L §3.7: n 20 < d 200, so XᵀX is singular and λ alone makes the minimizer unique. The slowest mode
    # couples the bias with w along x̄ (‖x̄‖² ≈ d/n = 10): Hessian block [[10 + λ, √10], [√10, 1]], smallest
    # eigenvalue ≈ 0.22 at λ = 3 -> contraction 1 − 0.07·0.22 per step, 1000 steps -> 2e-7 of the initial
    # error (measured: 3e-8); the largest eigenvalue ≈ 16 + λ + 1 keeps lr 0.07 stable up to λ = 10
    d, n = 200, 20
    x, y = synthetic_linear(jax.random.key(0), 0.01 * jnp.ones(d), 0.05, n, 0.01)
    x, y = np.asarray(x), np.asarray(y)
    lams = [3.0, 10.0]
    model = scratch_linreg(d, weight_init=jax.nn.initializers.normal(1.0))
    result = sweep(model, decayed_sgd(0.07, 0.0), (x, y, x, y), grid(weight_decay=lams), epochs=1000,
                   batch_size=n, loss="squared")
    _ridge_check(result, x, y, lams, 1e-4)


def test_ridge_closed_form_solves_the_normal_equations():
    rng = np.random.default_rng(0)
    x, y, lam = rng.normal(size=(30, 4)), rng.normal(size=30), 0.7
    w, b = ridge_closed_form(x, y, lam)
    residual = x @ w + b - y
    np.testing.assert_allclose(x.T @ residual / len(x) + lam * w, 0, atol=1e-12)  # ∂/∂w
    assert abs(residual.mean()) < 1e-12                                           # ∂/∂b: bias unpenalized


def test_equal_folds_partition_and_fold_data():
    folds = equal_folds(23, 5, jax.random.key(3))
    assert folds.shape == (5, 4)
    flat = folds.ravel()
    assert len(set(flat)) == 20 and flat.max() < 23  # disjoint; 23 mod 5 = 3 examples left out
    np.testing.assert_array_equal(folds, equal_folds(23, 5, jax.random.key(3)))
    x, y = np.arange(23.0)[:, None], np.arange(23.0)
    xt, yt, xv, yv = fold_data(x, y, folds)
    assert xt.shape == (5, 16, 1) and xv.shape == (5, 4, 1)
    for i in range(5):
        assert set(yv[i]) == set(folds[i]) and not set(yt[i]) & set(yv[i])
        assert set(yt[i]) | set(yv[i]) == set(flat)
    with pytest.raises(ValueError):
        equal_folds(3, 5, jax.random.key(0))


def test_each_fold_trains_and_validates_its_own_model():
    ds = load_diabetes()
    x, y = ds.x_train[:60], ds.y_train[:60]
    lams, key = [0.0, 1.0], jax.random.key(1)
    model = scratch_linreg(10)
    sel = select_lambda(model, SGD, x, y, lams, key=key, k=3, seeds=[0], epochs=3, batch_size=10,
                        hparams={"lr": 0.05})
    folds = equal_folds(60, 3, key)
    np.testing.assert_array_equal(sel.folds, folds)
    xt, yt, xv, yv = fold_data(x, y, folds)
    kernels = np.asarray(sel.result.state.params["dense0"]["kernel"])
    for i, config in enumerate(sel.result.members.configs):
        fold, lam = config["fold"], config["lam"]
        state, history = fit(model, SGD, (xt[fold], yt[fold], xv[fold], yv[fold]), epochs=3, batch_size=10,
                             key=jax.random.key(0), hparams={"lr": 0.05, "lam": lam}, loss="squared")
        np.testing.assert_allclose(kernels[i], state.params["dense0"]["kernel"], rtol=1e-5, atol=1e-6)
        # the validation loss is that fold's model on that fold's held-out part
        assert sel.per_fold[fold, lams.index(lam)] == pytest.approx(history.final()["test_loss"], rel=1e-5)
    # three folds, three different models
    per_fold = kernels.reshape(3, len(lams), -1)[:, 0]
    assert not np.allclose(per_fold[0], per_fold[1]) and not np.allclose(per_fold[1], per_fold[2])
    mean, std, se = curve(sel.per_fold)
    np.testing.assert_allclose(sel.mean, mean)
    np.testing.assert_allclose(sel.std, sel.per_fold.std(axis=0, ddof=1))
    np.testing.assert_allclose(sel.se, sel.std / np.sqrt(3))
    assert sel.best_lambda in lams and sel.one_se_lambda >= sel.best_lambda


def test_curve_and_one_standard_error_rule_by_hand():
    per_fold = np.array([[1.0, 0.8, 0.9, 2.0],
                         [1.2, 0.9, 1.0, 2.2],
                         [1.1, 1.0, 1.2, 1.8]])
    mean, std, se = curve(per_fold)
    np.testing.assert_allclose(mean, [1.1, 0.9, 1.0333333, 2.0])
    np.testing.assert_allclose(std, [0.1, 0.1, 0.1527525, 0.2], rtol=1e-6)
    lambdas = [0.0, 0.1, 1.0, 10.0]
    # best: λ 0.1 (0.9); one SE = 0.1/√3 = 0.0577 -> threshold 0.9577: λ 1.0 (1.033) is out, so 0.1 again
    assert one_se_index(lambdas, mean, se) == (1, 1)
    assert one_se_index(lambdas, mean, se * 3) == (1, 2)   # a wider band admits λ 1.0, the larger one
    assert one_se_index(lambdas, -mean, se, maximize=True) == (1, 1)
    assert one_se_index(lambdas, np.array([np.nan, 0.9, 1.0, 2.0]), se * 3) == (1, 2)  # diverged λ ignored
    # several configurations share a λ (λ x lr grids): the largest λ within the band, and of those the best mean
    assert one_se_index([0.0, 1.0, 1.0, 1.0], [1.0, 1.08, 1.02, 1.5], [0.1] * 4) == (0, 2)
    with pytest.raises(ValueError, match="diverged"):
        one_se_index(lambdas, np.full(4, np.nan), se)


def test_kfold_members_layout_and_checks():
    m = kfold_members([0.0, 1.0, 2.0], 2, seeds=[5, 6], hparams={"lr": 0.1})
    assert len(m) == 12 and m.data_index.tolist() == [0] * 6 + [1] * 6
    assert [c["lam"] for c in m.configs[:6]] == [0.0, 0.0, 1.0, 1.0, 2.0, 2.0]
    with pytest.raises(ValueError, match="swept"):
        kfold_members([1.0], 2, hparams={"lam": 1.0})
    with pytest.raises(ValueError):
        kfold_members([-1.0], 2)


def test_accuracy_on_a_regression_is_refused_as_such():
    x, y = np.zeros((20, 2), np.float32), np.zeros(20, np.float32)
    with pytest.raises(ValueError, match="metric 'accuracy' needs a classification task; loss 'squared'"):
        select_lambda(scratch_linreg(2), SGD, x, y, [0.0, 1.0], key=jax.random.key(0), epochs=1, batch_size=4,
                      hparams={"lr": 0.1}, metric="accuracy")
