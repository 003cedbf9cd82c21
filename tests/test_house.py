"""The Kaggle house-price study (D2L §5.7) on generated CSVs with the real column layout: loading (names, SHA-1,
corrupt and truncated files, offline), the fitted leak-free transform, log RMSE by hand, the fold ensemble, a sweep
member equal to the same configuration trained alone, and the CLI end to end."""
import json
import subprocess
import sys
import time

import jax
import numpy as np
import pandas as pd
import pytest

from regjax.data import kaggle_house as kh
from regjax.data.fashion_mnist import DataUnavailableError
from regjax.data.tabular import fit_tabular
from regjax.engine import fit
from kaggle_house.study import (
    fold_ensemble,
    half_mse_log,
    house_folds,
    log_rmse,
    missing_not_at_random,
    output_log_rmse,
    write_submission,
)
from regjax import runner
from regjax.models.adapters import scratch_linreg
from regjax.optim import adam_l2
from regjax.selection import cross_validate
from tests.helpers import HOUSE_TEXT, ROOT, child_env, house_frames, load_experiment, write_house_csvs


@pytest.fixture(scope="module")
def frames():
    return house_frames()


# ---- the fitted transform ------------------------------------------------------------------------------------
def test_transform_fits_training_rows_only(frames):
    train, test = frames
    t = fit_tabular(train)
    assert set(t.numeric) == set(train.columns) - HOUSE_TEXT - {"Id", "SalePrice"}
    assert {c for c, _ in t.categories} == HOUSE_TEXT          # pandas 3 'str' columns are found as text
    x = t.apply(train)
    numeric = x[:, : len(t.numeric)]
    observed = ~train[list(t.numeric)].isna().to_numpy()
    for j in range(numeric.shape[1]):                            # standardized with the training rows' stats
        col = numeric[observed[:, j], j]
        assert abs(col.mean()) < 0.2 and col.std(ddof=1) == pytest.approx(1.0, rel=0.1)
    assert (numeric[~observed] == 0).all()                       # NaN -> the mean -> 0


def test_unseen_category_is_all_zero_and_missing_is_its_own_category(frames):
    train, test = frames
    t = fit_tabular(train)
    names = t.feature_names
    block = [i for i, n in enumerate(names) if n.startswith("Neighborhood_")]
    row = list(test["Neighborhood"]).index("Mars")
    assert (t.apply(test)[row, block] == 0).all()               # 'Mars' never seen in training: no error, zeros
    nan_row = int(np.flatnonzero(train["MSZoning"].isna())[0])
    onehot = t.apply(train)[nan_row, [i for i, n in enumerate(names) if n.startswith("MSZoning_")]]
    assert onehot.tolist() == [0, 0, 0, 1]                       # A, B, C, nan
    with pytest.raises(ValueError, match="missing must be one of"):
        fit_tabular(train, missing="median")
    indicator = fit_tabular(train, missing="indicator")
    assert {f"{c}_missing" for c in indicator.indicators} <= set(indicator.feature_names)
    raw = fit_tabular(train, standardize=False).apply(train)[:, t.numeric.index("GrLivArea")]
    np.testing.assert_allclose(raw, train["GrLivArea"].to_numpy(), rtol=1e-6)


def test_folds_are_leak_free_and_leaky_differs(frames):
    train, test = frames
    key = jax.random.key(0)
    clean = house_folds(train, test, 3, key)
    x_tr, y_tr, x_val, y_val = clean.data
    assert x_tr.shape[:2] == (3, 40) and x_val.shape[:2] == (3, 20) and clean.x_test.shape[:2] == (3, len(test))
    np.testing.assert_allclose(np.exp(y_val), clean.price_val, rtol=1e-5)
    # a validation row's values do not move its fold's training features; the test rows move nothing either
    shifted = train.copy()
    shifted.loc[shifted.index[clean.folds[0][0]], "GrLivArea"] = 1e7
    other_test = test.assign(GrLivArea=test["GrLivArea"] * 10)
    again = house_folds(shifted, other_test, 3, key)
    np.testing.assert_array_equal(again.data[0][0], x_tr[0])
    leaky = house_folds(train, test, 3, key, leaky=True)
    leaky_moved = house_folds(train, other_test, 3, key, leaky=True)
    numeric = slice(0, 36)                                        # the numeric columns lead both layouts
    assert clean.feature_names[numeric] == leaky.feature_names[numeric]
    # d2l's way: the test rows shape the training features (and their categories add columns: 'Mars')
    assert not np.allclose(leaky.data[0][..., numeric], x_tr[..., numeric])
    assert not np.allclose(leaky_moved.data[0][..., numeric], leaky.data[0][..., numeric])
    assert "Neighborhood_Mars" in leaky.feature_names and "Neighborhood_Mars" not in clean.feature_names


def test_log_rmse_and_half_mse_by_hand():
    pred, price = np.array([100.0, 0.5, np.e ** 3]), np.array([100.0, np.e, 1.0])
    # errors in log space: 0, log 1 - 1 = -1 (0.5 clipped to 1), 3 - 0 = 3 -> sqrt((0 + 1 + 9) / 3)
    assert float(log_rmse(pred, price)) == pytest.approx(np.sqrt(10 / 3), rel=1e-6)
    assert float(half_mse_log(pred, price)) == pytest.approx(10 / 6, rel=1e-6)
    assert float(log_rmse(np.array([-5.0]), np.array([np.e]))) == pytest.approx(1.0)   # negative -> clipped


def test_missing_not_at_random_removes_the_largest(frames):
    train, _ = frames
    out = missing_not_at_random(train, "GrLivArea", 0.25, jax.random.key(0))
    gone = out["GrLivArea"].isna() & train["GrLivArea"].notna()
    assert gone.sum() == 15 and train["GrLivArea"][gone].min() >= train["GrLivArea"][~gone].max()
    mcar = missing_not_at_random(train, "GrLivArea", 0.25, jax.random.key(0), at_random=True)
    assert mcar["GrLivArea"].isna().sum() == 15 and not mcar["GrLivArea"].isna().equals(gone)


def test_submission_refuses_bad_prices(tmp_path):
    path = write_submission(tmp_path / "s.csv", [1461, 1462], [1.5e5, 2e5])
    assert path.read_text() == "Id,SalePrice\n1461,150000.000000\n1462,200000.000000\n"
    for bad in ([1.0, np.nan], [1.0, -2.0], [1.0]):
        with pytest.raises(ValueError, match="positive finite price"):
            write_submission(tmp_path / "t.csv", [1461, 1462], bad)


# ---- one sweep == the configuration trained alone ------------------------------------------------------------
def test_sweep_member_equals_the_configuration_trained_alone(frames):
    train, test = frames
    folds = house_folds(train, test, 2, jax.random.key(1))
    d = folds.data[0].shape[-1]
    model, opt = scratch_linreg(d), adam_l2(0.01, 0.0)
    cv = cross_validate(model, opt, folds.data, {"weight_decay": [0.0, 0.1], "lr": [0.01, 0.1]}, epochs=2,
                        batch_size=16, loss="squared")
    member = int(cv.members_of(3)[1, 0])                          # fold 1, weight decay 0.1, lr 0.1
    assert cv.result.members.configs[member] == {"fold": 1, "weight_decay": 0.1, "lr": 0.1, "seed": 0}
    data = tuple(a[1] for a in folds.data)
    state, history = fit(model, opt, data, epochs=2, batch_size=16, key=jax.random.key(0), loss="squared",
                         hparams={"weight_decay": 0.1, "lr": 0.1})
    np.testing.assert_allclose(cv.result.state.params["dense0"]["kernel"][member], state.params["dense0"]["kernel"],
                               rtol=1e-5, atol=1e-6)
    assert cv.per_fold[1, 3] == pytest.approx(history.final()["test_loss"], rel=1e-5)
    # the ensemble: fold i's own model on the test rows through fold i's features, averaged
    ensemble = fold_ensemble(model, cv, folds, 3, "log")
    assert ensemble["models"] == 2 and ensemble["distinct_parameter_sets"] == 2 and ensemble["folds"] == [0, 1]
    fold1 = np.exp(folds.x_test[1] @ np.asarray(state.params["dense0"]["kernel"]) + state.params["dense0"]["bias"])
    np.testing.assert_allclose(ensemble["prices"][1], fold1.ravel(), rtol=1e-5)
    np.testing.assert_allclose(ensemble["mean_prices"], ensemble["prices"].mean(axis=0))
    assert not np.allclose(ensemble["prices"][0], ensemble["prices"][1])


# ---- loading ---------------------------------------------------------------------------------------------------
def test_loads_both_names_and_flags_unverified_files(tmp_path):
    write_house_csvs(tmp_path / "d2l")
    write_house_csvs(tmp_path / "kaggle", kaggle_names=True)
    for folder in ("d2l", "kaggle"):
        data = kh.load_kaggle_house(tmp_path / folder, cache=tmp_path / "cache")
        assert data.train.shape == (60, 81) and data.test.shape == (40, 80) and not data.verified
        assert data.summary()["name"] == "house_csv" and len(data.summary()["files"]["train"]["sha1"]) == 40
    with pytest.raises(FileNotFoundError, match="holds neither"):
        kh.load_kaggle_house(tmp_path / "nowhere", cache=tmp_path / "cache")


@pytest.mark.parametrize("damage, message", [
    (lambda text: text[: len(text) * 2 // 3].rsplit(",", 3)[0], "fields, the header"),   # cut mid-row
    (lambda text: text.replace("SalePrice", "Price"), "needs the columns"),
    (lambda text: "\x00\xff garbage", "needs the columns|not a readable CSV|fields"),
])
def test_corrupt_or_truncated_csv_is_named(tmp_path, damage, message):
    train, _ = write_house_csvs(tmp_path)
    train.write_text(damage(train.read_text()))
    with pytest.raises(ValueError, match=message) as err:
        kh.load_kaggle_house(tmp_path, cache=tmp_path / "cache")
    assert str(train) in str(err.value)


def test_download_is_checked_and_cached_and_offline_fails_fast(tmp_path, monkeypatch):
    served = tmp_path / "served"
    paths = write_house_csvs(served)
    sha1s = {s: kh.file_digest(p, "sha1") for s, p in zip(("train", "test"), paths)}
    monkeypatch.delenv(kh.ENV_VAR, raising=False)
    monkeypatch.setattr(kh, "HOUSE_FILES", {s: (*v[:2], sha1s[s]) for s, v in kh.HOUSE_FILES.items()})
    monkeypatch.setattr(kh, "DOWNLOAD_BASE_URL", served.as_uri())
    data = kh.load_kaggle_house(cache=tmp_path / "cache")
    assert data.source == "download" and data.verified
    monkeypatch.setattr(kh, "DOWNLOAD_BASE_URL", "http://127.0.0.1:9/")          # offline from now on
    assert kh.load_kaggle_house(cache=tmp_path / "cache").source.startswith("cache:")
    start = time.monotonic()
    with pytest.raises(DataUnavailableError, match="--data-dir") as err:
        kh.load_kaggle_house(cache=tmp_path / "empty")
    assert time.monotonic() - start < 15 and "REGJAX_KAGGLE_DIR" in str(err.value)


# ---- the CLI ---------------------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def cli_run(tmp_path_factory):
    folder = tmp_path_factory.mktemp("house")
    write_house_csvs(folder / "data")
    args = ["--data-dir", str(folder / "data"), "--out", str(folder / "out"), "--k", "3", "--epochs", "3",
            "--batch-size", "16", "--lrs", "0.01", "0.1", "--weight-decays", "0", "0.01", "--quiet",
            "--exercises", "5", "zh2", "--exercise-lrs", "0.01", "--exercise-weight-decays", "0", "0.1",
            "--raw-lrs", "30"]
    load_experiment("kaggle_house/main").main(args)
    return folder, json.loads((folder / "out" / "results.json").read_text())


def test_cli_writes_submission_from_each_folds_own_model(cli_run):
    folder, result = cli_run
    assert result["status"] == "completed" and result["dataset"]["sha1_verified"] is False
    submission = pd.read_csv(folder / "out" / "submission.csv")
    assert list(submission.columns) == ["Id", "SalePrice"] and submission["Id"].tolist() == list(range(1461, 1501))
    assert np.isfinite(submission["SalePrice"]).all() and (submission["SalePrice"] > 0).all()
    ensemble = result["ensemble"]
    assert ensemble["models"] == 3 and ensemble["distinct_parameter_sets"] == 3 and ensemble["folds"] == [0, 1, 2]
    all_rows = pd.read_csv(folder / "out" / "submission_all_rows.csv")
    assert not np.allclose(all_rows["SalePrice"], submission["SalePrice"])
    chosen = result["chosen"]
    assert chosen["validation_log_rmse_mean"] == pytest.approx(np.mean(chosen["per_fold"]))
    assert chosen["validation_half_mse_log"] == pytest.approx(np.mean(np.square(chosen["per_fold"])) / 2)
    assert result["selection"]["metric"] == "log_rmse" and result["clipped_below_1"] == {"ensemble": 0, "all-rows": 0}
    assert len(result["selection"]["configs"]) == 4 and len(result["plots"]) == 2 + 2      # main + one per exercise
    ridge = np.array(result["ridge_closed_form_cv"]["clean"], dtype=float)       # λ = 0: no unique solution
    assert np.isnan(ridge[:, 0]).all() and np.isfinite(ridge[:, 1:]).all()


def test_cli_refuses_bad_input_in_one_line(tmp_path, cli_run, capsys):
    folder, _ = cli_run
    main = load_experiment("kaggle_house/main").main
    data = str(folder / "data")
    cases = [(["--lrs", "0.1", "0.1"], "must hold distinct values"), (["--k", "1"], "--k must be at least 2"),
             (["--dropouts", "0.5"], "apply to --model mlp"), (["--target", "price"], "invalid choice"),
             (["--lr", "0.1"], "use --lrs 0.1")]
    for argv, words in cases:
        with runner.command_line(), pytest.raises(SystemExit) as err:
            main(["--data-dir", data, "--out", str(tmp_path / "o"), *argv])
        err_text = capsys.readouterr().err
        assert err.value.code == 2 and words in err_text and len(err_text.strip().splitlines()) == 1, argv
    bad = tmp_path / "bad"
    train, _ = write_house_csvs(bad)
    train.write_text(train.read_text()[:-200])                    # truncated mid-row
    with runner.command_line(), pytest.raises(SystemExit) as err:
        main(["--data-dir", str(bad), "--out", str(tmp_path / "o2")])
    assert err.value.code == 2 and str(train) in capsys.readouterr().err
    assert not (tmp_path / "o2" / "results.json").exists()


def test_cli_without_data_exits_2_fast_with_the_ways_to_provide_it(tmp_path):
    code = ("import regjax.data.kaggle_house as k, runpy, sys; k.DOWNLOAD_BASE_URL='http://127.0.0.1:9/'; "
            f"sys.argv=['main.py','--out',{str(tmp_path / 'o')!r}]; "
            f"runpy.run_path({str(ROOT / 'experiments' / 'kaggle_house' / 'main.py')!r}, run_name='__main__')")
    start = time.monotonic()
    run = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=child_env(tmp_path),
                         timeout=60)
    assert time.monotonic() - start < 15
    assert run.returncode == 2 and "house-price data is not available" in run.stderr and "--data-dir" in run.stderr
    assert not (tmp_path / "o" / "results.json").exists()


def test_log_target_scores_in_log_space_without_overflow():
    outputs, price = np.array([np.log(100.0), 200.0, -3.0]), np.array([100.0, 1.0, np.e])
    # log max(exp(o), 1) = max(o, 0): errors 0, 200, -1 -> finite although exp(200) overflows float32
    assert float(output_log_rmse(outputs, price, "log")) == pytest.approx(np.sqrt((200 ** 2 + 1) / 3), rel=1e-5)
    assert float(output_log_rmse(np.array([100.0, 0.5]), np.array([100.0, np.e]), "raw")) == pytest.approx(
        float(log_rmse(np.array([100.0, 0.5]), np.array([100.0, np.e]))))


def _check_answers(out, answers, ids, k):
    assert list(answers) == ids
    for a in answers.values():
        assert "paired over folds" in a["answer"] and (out / a["plot"].split("/")[-1]).exists()
        for variant in a["data"].values():
            assert len(variant["per_fold"]) == k and variant["mean"] == pytest.approx(np.mean(variant["per_fold"]))
            assert variant["best"]["weight_decay"] in (0.0, 0.1)
    assert all(i in (out / "exercises.md").read_text() for i in ids)


def test_cli_answers_exercises_5_and_zh2(cli_run):
    folder, result = cli_run
    answers = {a["id"]: a for a in result["exercises"]}
    _check_answers(folder / "out", answers, ["5.7.5", "5.7.zh2"], 3)
    assert answers["5.7.zh2"]["data"]["raw_prices"]["best"]["lr"] == 30.0
    assert set(answers["5.7.5"]["data"]) == {"standardized", "raw_features"}


def test_exercise_2_and_4_variants(frames):
    import argparse

    from kaggle_house.answers import exercise_variants

    train, test = frames
    data = kh.HouseData(train, test, "generated", {})
    args = argparse.Namespace(seed=0, model="linear", hidden=[64], dropouts=[0.0], lrs=[0.1], weight_decays=[0.0],
                              exercise_lrs=[0.01], exercise_weight_decays=[0.0, 0.1], raw_lrs=[30.0])
    two = exercise_variants("2", data, args)
    assert set(two) == {f"{w}_{m}" for w in ("complete", "mnar", "mcar") for m in ("mean", "indicator")}
    mnar_train, mnar_test = two["mnar_mean"]["frames"]
    hidden = mnar_train["OverallQual"].isna() & train["OverallQual"].notna()
    assert hidden.sum() == 18 and train["OverallQual"][hidden].min() >= train["OverallQual"][~hidden].max()
    assert mnar_test["OverallQual"].isna().sum() > test["OverallQual"].isna().sum()
    assert two["mcar_indicator"]["missing"] == "indicator" and two["complete_mean"]["frames"][0] is train
    four = exercise_variants("4", data, args)
    assert four["mlp_64_dropout"]["model_args"].model == "mlp" and four["linear"]["model_args"].model == "linear"
    assert four["mlp_64_dropout"]["axes"]["rates"] == [[0.0], [0.2], [0.5]] and "rates" not in four["linear"]["axes"]


@pytest.mark.slow
def test_cli_answers_all_exercises_end_to_end(tmp_path):
    write_house_csvs(tmp_path / "data")
    result = load_experiment("kaggle_house/main").main(
        ["--data-dir", str(tmp_path / "data"), "--out", str(tmp_path / "out"), "--k", "2", "--epochs", "2",
         "--batch-size", "16", "--lrs", "0.01", "--weight-decays", "0", "--exercises", "2", "4", "5", "zh2",
         "--exercise-lrs", "0.01", "--exercise-weight-decays", "0", "0.1", "--raw-lrs", "30", "--quiet"])
    answers = {a["id"]: a for a in result["exercises"]}
    _check_answers(tmp_path / "out", answers, ["5.7.2", "5.7.4", "5.7.5", "5.7.zh2"], 2)
    assert answers["5.7.4"]["data"]["mlp_64_dropout"]["best"]["rates"] in ([0.0], [0.2], [0.5])
