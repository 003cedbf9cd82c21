"""Every experiment end to end with tiny settings, in-process; the main job also as a real subprocess."""
import json
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from tests.helpers import ROOT, child_env
from tests.helpers import load_experiment as _load

SMOKE = {
    "dropout_mlp": ["--dataset", "digits", "--epochs", "1", "--compare", "--hidden", "32", "32"],
    "weight_decay": ["--epochs", "2", "--lambdas", "0", "3"],
    "batch_norm": ["--dataset", "digits", "--epochs", "1", "--train-size", "256", "--impl", "flax"],
    "polynomial_fit": ["--epochs", "2", "--lam", "0.1"],
    "dropout_vs_decay": ["--dataset", "digits", "--epochs", "1", "--train-size", "300", "--hidden", "32", "32"],
    "init_stability": ["--dataset", "digits", "--epochs", "1", "--depth", "3", "--width", "16"],
    "linear_regression": ["--epochs", "1", "--impl", "optax"],
    "softmax_regression": ["--dataset", "digits", "--epochs", "1"],
}


def _ran_end_to_end(name, out, printed):
    result = json.loads((out / "results.json").read_text())
    assert result["experiment"] == name
    assert result["environment"]["jax"] and result["wall_time_s"] > 0
    for plot in result["plots"]:
        assert Path(plot).stat().st_size > 1000
    assert str(out / "results.json") in printed


@pytest.mark.parametrize("name", sorted(SMOKE))
def test_experiment_runs_end_to_end(name, tmp_path, capsys):
    out = tmp_path / name
    _load(name).main(SMOKE[name] + ["--out", str(out)])
    _ran_end_to_end(name, out, capsys.readouterr().out)


def test_decay_vs_penalty_table_shows_the_lesson(tmp_path, capsys):  # also its end-to-end run
    rows = _load("decay_vs_penalty").main(["--epochs", "10", "--out", str(tmp_path)])
    _ran_end_to_end("decay_vs_penalty", tmp_path, capsys.readouterr().out)
    assert rows["SGD"]["max_abs_dw"] < 1e-4
    assert rows["SGD+momentum 0.9"]["max_abs_dw"] < 1e-4
    assert rows["Adam (penalty = Adam+L2) vs AdamW"]["max_abs_dw"] > 0.1


def test_weight_decay_scratch_and_optax_agree(tmp_path):
    mod = _load("weight_decay")
    a = mod.main(["--epochs", "5", "--out", str(tmp_path / "a"), "--quiet"])
    b = mod.main(["--epochs", "5", "--impl", "optax", "--out", str(tmp_path / "b"), "--quiet"])
    for k in a:
        assert a[k]["w_norm"] == pytest.approx(b[k]["w_norm"], rel=1e-4)
    assert a["lambda=3"]["w_norm"] < a["lambda=0"]["w_norm"]


def test_main_job_subprocess_help_and_run_results_match_printed(tmp_path):
    env = child_env(tmp_path)
    script = str(ROOT / "experiments" / "dropout_mlp.py")
    help_out = subprocess.run([sys.executable, script, "--help"], capture_output=True, text=True, env=env,
                              timeout=120)
    assert help_out.returncode == 0 and "--impl" in help_out.stdout and "--dataset" in help_out.stdout
    run = subprocess.run([sys.executable, script, "--dataset", "digits", "--epochs", "3", "--out",
                          str(tmp_path / "run")], capture_output=True, text=True, env=env, timeout=300)
    assert run.returncode == 0, run.stderr
    result = json.loads((tmp_path / "run" / "results.json").read_text())
    printed = float(re.search(r"final test accuracy ([0-9.]+)", run.stdout).group(1))
    assert printed == pytest.approx(result["final"]["dropout"]["test_accuracy"], abs=5e-5)
    last_line = [l for l in run.stdout.splitlines() if "epoch 3/3" in l][0]
    assert f"test acc {result['history']['dropout']['test_accuracy'][0][-1]:.3f}" in last_line
    assert result["dataset"]["name"] == "digits"


def test_explicit_fashion_mnist_offline_fails_fast_with_guide(tmp_path):
    env = child_env(tmp_path, TFDS_DATA_DIR=str(tmp_path / "tfds"))
    code = ("import regjax.data.fashion_mnist as f, runpy, sys; f.DOWNLOAD_BASE_URL='http://127.0.0.1:9/'; "
            f"sys.argv=['dropout_mlp.py','--dataset','fashion_mnist','--out',{str(tmp_path / 'o')!r}]; "
            f"runpy.run_path({str(ROOT / 'experiments' / 'dropout_mlp.py')!r}, run_name='__main__')")
    run = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=60)
    assert run.returncode != 0
    assert "Fashion-MNIST is not available" in run.stderr and "--dataset digits" in run.stderr
    assert not (tmp_path / "o" / "results.json").exists()


def test_fallback_is_loud_and_recorded(tmp_path, capsys, monkeypatch):
    import regjax.data.fashion_mnist as fm

    monkeypatch.setattr(fm, "DOWNLOAD_BASE_URL", "http://127.0.0.1:9/")
    monkeypatch.setenv("TFDS_DATA_DIR", str(tmp_path / "tfds"))
    _load("softmax_regression").main(["--epochs", "1", "--out", str(tmp_path), "--quiet"])
    assert "FALLING BACK" in capsys.readouterr().err
    assert json.loads((tmp_path / "results.json").read_text())["dataset"]["name"] == "digits"


def test_matrix_product_log_norms_match_direct_product_and_stay_finite():
    import jax

    from regjax.diagnostics import matrix_product_norms

    key = jax.random.key(0)
    logs = np.asarray(matrix_product_norms(key, 100, 4))
    mats = np.asarray(jax.random.normal(key, (100, 4, 4)), np.float64)
    prod = np.eye(4)
    for k in range(20):
        prod = prod @ mats[k]
        assert logs[k] == pytest.approx(np.log10(np.linalg.norm(prod)), abs=1e-3)
    assert np.all(np.isfinite(logs)) and logs[-1] > 15
