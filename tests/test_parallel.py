"""Data parallelism over virtual CPU devices and across two local processes, each in a subprocess with
XLA_FLAGS set before jax is imported."""
import json
import signal
import socket
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from regjax.checkpoint import read_checkpoint
from tests.helpers import child_env as _env
from tests.test_cli import _interrupt_after, _leaves

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def eight_vs_one(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("p")
    run = subprocess.run([sys.executable, str(ROOT / "tests" / "multidevice" / "eight_vs_one.py"), str(tmp)],
                         capture_output=True, text=True, env=_env(tmp, 8), timeout=600)
    assert run.returncode == 0, run.stderr[-3000:]
    return json.loads(run.stdout.strip().splitlines()[-1])


@pytest.mark.parametrize("case", ["mlp scratch", "mlp flax", "mlp nnx", "lenet-bn scratch", "lenet-bn flax"])
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


def test_cli_devices_8_matches_devices_1_and_refuses_bad_counts(eight_vs_one):
    runs = eight_vs_one["cli_runs"]  # experiments/batch_norm.py main, in the 8-device process
    assert runs["8"]["devices"] == 8 and runs["1"]["devices"] == 1
    assert runs["8"]["test_loss"] == pytest.approx(runs["1"]["test_loss"], rel=1e-3)
    # the CLI trains what fit trains given the same data, model, key and learning rate (the 'lenet-bn scratch'
    # case), on 1 device and on 8
    one, eight = eight_vs_one["lenet-bn scratch"]["test_loss"]
    assert runs["1"]["test_loss"] == one[-1] and runs["8"]["test_loss"] == eight[-1]
    for case, message in (("16 devices", "--devices 16: only 8 cpu device(s) available"),
                          ("batch 100", "batch_size 100 is not a multiple of the 8 devices")):
        refusal = eight_vs_one["cli_refusals"][case]
        assert refusal["exit_code"] == 2 and message in refusal["stderr"], refusal
        assert refusal["stderr"].count("\n") == 1, refusal


def _free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_two_processes_of_four_devices_equal_one_process_of_eight(tmp_path, eight_vs_one):
    script = str(ROOT / "experiments" / "dropout_mlp.py")
    common = ["--dataset", "digits", "--epochs", "2", "--hidden", "64", "64", "--quiet"]
    port = _free_port()
    procs = [subprocess.Popen([sys.executable, script, *common, "--out", str(tmp_path / "two"), "--coordinator",
                               f"127.0.0.1:{port}", "--num-processes", "2", "--process-id", str(i)],
                              stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=_env(tmp_path, 4))
             for i in (0, 1)]
    outputs = [p.communicate(timeout=300)[0] for p in procs]
    assert [p.returncode for p in procs] == [0, 0], outputs
    one = Path(eight_vs_one["references"]) / "one"  # the same command with --devices 8, in the 8-device process
    two_r, one_r = (json.loads((d / "results.json").read_text()) for d in (tmp_path / "two", one))
    assert two_r["processes"] == 2 and two_r["devices"] == 8 and one_r["devices"] == 8
    for k in ("train_loss", "test_loss", "test_accuracy"):
        np.testing.assert_allclose(two_r["history"]["dropout"][k], one_r["history"]["dropout"][k], rtol=1e-5)
    # only process 0 wrote: one results file, one checkpoint set, in the shared --out
    assert sorted(p.name for p in (tmp_path / "two").iterdir()) == [".regjax.lock", "checkpoints", "dropout_mlp.png",
                                                                     "results.json"]   # process 0's files only
    two_ck, one_ck = (read_checkpoint(d / "checkpoints" / "dropout.msgpack") for d in (tmp_path / "two", one))
    for a, b in zip(_leaves(two_ck["state"]), _leaves(one_ck["state"])):
        np.testing.assert_allclose(a.astype(np.float64), b.astype(np.float64), rtol=1e-5, atol=1e-6)


def test_eight_device_run_interrupted_and_resumed_equals_uninterrupted(tmp_path, eight_vs_one):
    env = _env(tmp_path, 8)
    base = [sys.executable, str(ROOT / "experiments" / "dropout_mlp.py"), "--dataset", "digits", "--hidden", "64",
            "64", "--epochs", "60", "--devices", "8"]
    # 60 epochs print a line every 2 (at most ~50 lines)
    rc, output = _interrupt_after(base + ["--out", str(tmp_path / "a")], env, signal.SIGINT, "epoch  4/60")
    assert rc == 130, output
    assert json.loads((tmp_path / "a" / "results.json").read_text())["status"] == "interrupted"
    run = subprocess.run(base + ["--out", str(tmp_path / "a"), "--resume"], capture_output=True, text=True, env=env,
                         timeout=300)
    assert run.returncode == 0, run.stderr
    straight = Path(eight_vs_one["references"]) / "straight"  # the same command, uninterrupted, in the 8-device process
    ra, rb = (json.loads((d / "results.json").read_text()) for d in (tmp_path / "a", straight))
    assert ra["history"]["dropout"]["test_loss"] == rb["history"]["dropout"]["test_loss"]
    sa, sb = (read_checkpoint(d / "checkpoints" / "dropout.msgpack") for d in (tmp_path / "a", straight))
    assert all(np.array_equal(x, y) for x, y in zip(_leaves(sa["state"]), _leaves(sb["state"])))
