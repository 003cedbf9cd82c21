"""Data parallelism over virtual CPU devices and across two local processes, each in a subprocess with
XLA_FLAGS set before jax is imported."""
import json
import os
import signal
import socket
import subprocess
import sys
from pathlib import Path

import pytest

from tests.test_cli import _interrupt_after, _leaves
from regjax.checkpoint import read_checkpoint

import numpy as np

ROOT = Path(__file__).resolve().parents[1]


def _env(tmp_path, devices):
    return {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "JAX_PLATFORMS": "cpu", "PYTHONUNBUFFERED": "1",
            "XLA_FLAGS": f"--xla_force_host_platform_device_count={devices}", "PYTHONPATH": str(ROOT),
            "REGJAX_CACHE_DIR": str(tmp_path / "cache")}


@pytest.fixture(scope="module")
def eight_vs_one(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("p")
    run = subprocess.run([sys.executable, str(ROOT / "tests" / "multidevice" / "eight_vs_one.py")],
                         capture_output=True, text=True, env=_env(tmp, 8), timeout=600)
    assert run.returncode == 0, run.stderr[-3000:]
    return json.loads(run.stdout.strip().splitlines()[-1])


@pytest.mark.parametrize("case", ["mlp scratch", "mlp flax", "lenet-bn scratch", "lenet-bn flax"])
def test_eight_devices_equal_one(eight_vs_one, case):
    r = eight_vs_one[case]
    # same batches, same dropout masks; only the order of the cross-device sums differs
    assert r["params"] < 1e-5 and r["model_state"] < 1e-5, r
    np.testing.assert_allclose(r["test_loss"][0], r["test_loss"][1], rtol=1e-5)
    assert r["sharding"] in ("P()", "PartitionSpec()")  # parameters replicated


def test_dropout_masks_do_not_depend_on_the_device_count(eight_vs_one):
    assert eight_vs_one["threefry_partitionable"] is True
    assert eight_vs_one["dropout_mask_equal"] is True and eight_vs_one["dropout_mask_sharded_on"] == 8


@pytest.mark.parametrize("layout", ["NC", "NHWC"])
def test_scratch_bn_axis_name_under_shard_map_is_global_bn(eight_vs_one, layout):
    assert eight_vs_one[f"bn_axis_name_{layout}"] < 1e-5


def test_sweep_member_axis_sharded_over_devices_equals_unsharded(eight_vs_one):
    r = eight_vs_one["sweep_member_sharded"]
    assert r["devices"] == 8 and r["params"] < 1e-5 and r["test_loss"] < 1e-5, r


def test_a_batch_the_devices_do_not_divide_is_refused(eight_vs_one):
    assert "batch_size 60 is not a multiple of the 8 devices" in eight_vs_one["indivisible"]


def test_cli_devices_8_matches_devices_1_and_refuses_bad_counts(tmp_path):
    env = _env(tmp_path, 8)
    script = str(ROOT / "experiments" / "batch_norm.py")
    losses = {}
    for n in ("8", "1"):
        run = subprocess.run([sys.executable, script, "--dataset", "digits", "--epochs", "2", "--train-size", "512",
                              "--devices", n, "--quiet", "--out", str(tmp_path / n)], capture_output=True, text=True,
                             env=env, timeout=300)
        assert run.returncode == 0, run.stderr[-2000:]
        result = json.loads((tmp_path / n / "results.json").read_text())
        assert result["devices"] == int(n)
        losses[n] = result["final"]["test_loss"]
    assert losses["8"] == pytest.approx(losses["1"], rel=1e-3)
    for argv, message in ((["--devices", "16"], "--devices 16: only 8 cpu device(s) available"),
                          (["--devices", "8", "--batch-size", "100"], "batch_size 100 is not a multiple of the 8 devices")):
        run = subprocess.run([sys.executable, script, "--dataset", "digits", *argv, "--out", str(tmp_path / "x")],
                             capture_output=True, text=True, env=env, timeout=120)
        assert run.returncode == 2 and message in run.stderr and run.stderr.count("\n") == 1, run.stderr


def _free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_two_processes_of_four_devices_equal_one_process_of_eight(tmp_path):
    script = str(ROOT / "experiments" / "dropout_mlp.py")
    common = ["--dataset", "digits", "--epochs", "2", "--hidden", "64", "64", "--quiet"]
    port = _free_port()
    procs = [subprocess.Popen([sys.executable, script, *common, "--out", str(tmp_path / "two"), "--coordinator",
                               f"127.0.0.1:{port}", "--num-processes", "2", "--process-id", str(i)],
                              stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=_env(tmp_path, 4))
             for i in (0, 1)]
    outputs = [p.communicate(timeout=300)[0] for p in procs]
    assert [p.returncode for p in procs] == [0, 0], outputs
    one = subprocess.run([sys.executable, script, *common, "--devices", "8", "--out", str(tmp_path / "one")],
                         capture_output=True, text=True, env=_env(tmp_path, 8), timeout=300)
    assert one.returncode == 0, one.stderr
    two_r, one_r = (json.loads((tmp_path / d / "results.json").read_text()) for d in ("two", "one"))
    assert two_r["processes"] == 2 and two_r["devices"] == 8 and one_r["devices"] == 8
    for k in ("train_loss", "test_loss", "test_accuracy"):
        np.testing.assert_allclose(two_r["history"]["dropout"][k], one_r["history"]["dropout"][k], rtol=1e-5)
    # only process 0 wrote: one results file, one checkpoint set, in the shared --out
    assert sorted(p.name for p in (tmp_path / "two").iterdir()) == ["checkpoints", "dropout_mlp.png", "results.json"]
    two_ck, one_ck = (read_checkpoint(tmp_path / d / "checkpoints" / "dropout.msgpack") for d in ("two", "one"))
    for a, b in zip(_leaves(two_ck["state"]), _leaves(one_ck["state"])):
        np.testing.assert_allclose(a.astype(np.float64), b.astype(np.float64), rtol=1e-5, atol=1e-6)


def test_eight_device_run_interrupted_and_resumed_equals_uninterrupted(tmp_path):
    env = _env(tmp_path, 8)
    base = [sys.executable, str(ROOT / "experiments" / "dropout_mlp.py"), "--dataset", "digits", "--hidden", "64",
            "64", "--epochs", "60", "--devices", "8"]
    rc, output = _interrupt_after(base + ["--out", str(tmp_path / "a")], env, signal.SIGINT, "epoch  3/60")
    assert rc == 130, output
    assert json.loads((tmp_path / "a" / "results.json").read_text())["status"] == "interrupted"
    for argv in (["--out", str(tmp_path / "a"), "--resume"], ["--out", str(tmp_path / "b")]):
        run = subprocess.run(base + argv, capture_output=True, text=True, env=env, timeout=300)
        assert run.returncode == 0, run.stderr
    ra, rb = (json.loads((tmp_path / d / "results.json").read_text()) for d in ("a", "b"))
    assert ra["history"]["dropout"]["test_loss"] == rb["history"]["dropout"]["test_loss"]
    sa, sb = (read_checkpoint(tmp_path / d / "checkpoints" / "dropout.msgpack") for d in ("a", "b"))
    assert all(np.array_equal(x, y) for x, y in zip(_leaves(sa["state"]), _leaves(sb["state"])))
