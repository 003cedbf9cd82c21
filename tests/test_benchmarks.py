"""The benchmark suite: the one-call GPU script's dry run (every suite at ``--quick`` size on the CPU) checks the
output's structure (never speed), plus the pieces with logic of their own (the FLOP count, the profile's
attribution, the time budget, the integer-threshold dropout proposal, torch-less skipping)."""
import json
import subprocess
import sys
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
import pytest

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))  # `benchmarks` is a folder of the checkout, not an installed package

from benchmarks import epoch_profile as profile  # noqa: E402
from benchmarks import gpu  # noqa: E402
from benchmarks import run as bench_run  # noqa: E402
from benchmarks.common import Context, markdown_table  # noqa: E402
from benchmarks.proposals import dropout_bits  # noqa: E402
from benchmarks.roofline import flops_per_example  # noqa: E402
from regjax.optim import scratch_sgd

SGD = scratch_sgd(0.1)  # the from-scratch SGD step; each test's learning rate comes in hparams

STATUSES = {"ok", "skipped", "not available yet"}


def test_gpu_call_dry_run_runs_every_suite_and_writes_json_and_table(tmp_path):
    """The one-call GPU script, at tiny sizes on the CPU: every suite of run.py runs (each through
    `run.py --quick --suite NAME`), the merged JSON has the run's environment and every suite's method, rows,
    repeats and load averages; sweep and scaling give numbers; the profile keeps its trace."""
    out = tmp_path / "out"
    proc = subprocess.run([sys.executable, str(ROOT / "benchmarks" / "gpu.py"), "--dry-run", "--out", str(out)],
                          capture_output=True, text=True, timeout=900, cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr[-3000:]
    (path,) = out.glob("dry-run-*.json")
    assert not list(out.glob(".*.json")), "per-suite files are merged and removed"
    result = json.loads(path.read_text())
    assert {"command", "label", "quick", "date", "environment", "loadavg_before", "suites", "table",
            "gpu_call"} <= set(result)
    assert result["quick"] is True and result["label"] == "gpu-dry-run" and result["gpu_call"]["dry_run"]
    env = result["environment"]
    assert {"backend", "device", "device_kind", "cpu_count", "threads", "versions", "regjax"} <= set(env)
    assert env["backend"] == "cpu"
    assert {"jax", "jaxlib", "flax", "optax", "numpy", "torch", "python", "jax-cuda12-plugin"} <= set(env["versions"])
    # torch's version read from its metadata (None where it is not installed, as in CI); its device set by the
    # first suite that used it
    assert (env["torch_device"] == "cpu") == (env["versions"]["torch"] is not None)
    assert list(result["suites"]) == list(gpu.SUITES) and set(gpu.SUITES) == set(bench_run.SUITES)
    for name, suite in result["suites"].items():
        assert suite["status"] in STATUSES, (name, suite.get("error"))
        assert suite["method"] and suite["rows"], name
        assert {"loadavg_before", "loadavg_after", "seconds"} <= set(suite)
    for name in ("sweep", "scaling"):  # `run.py --quick --suite sweep scaling` gives numeric rows
        values = [r["value"] for r in result["suites"][name]["rows"]]
        assert result["suites"][name]["status"] == "ok" and values and all(v > 0 for v in values), name
    sweep_cases = [r["case"] for r in result["suites"]["sweep"]["rows"]]
    assert any("(v) vmapped sweep" in c for c in sweep_cases) and any("(b) loop of fit" in c for c in sweep_cases)
    assert any("scaling: 4 member(s)" in c for c in sweep_cases)
    scaling = result["suites"]["scaling"]
    assert scaling["counts"] == [1, 8] and all(m["max_param_diff"] < 1e-5
                                                      for m in scaling["measurements"].values())
    profile = result["suites"]["profile"]
    assert profile["lane"] == "CPU thunks" and profile["ops_per_step"] > 8
    shares = {r["case"]: r["value"] for r in profile["rows"] if r["case"].startswith("epoch share")}
    assert abs(sum(shares.values()) - 100) < 1e-6
    assert max(shares, key=shares.get) == "epoch share: matrix products (forward, dW, dX)"
    assert list((out / "trace").rglob("perfetto_trace.json.gz"))
    engine = result["suites"]["train_mlp"]["rows"][0]
    assert engine["case"].startswith("(a)") and engine["value"] > 0 and len(engine["times_s"]) >= 2
    assert 0 < result["suites"]["roofline"]["percent_of_roofline"]
    for table in (result["table"], proc.stdout):
        assert "| suite | case | median |" in table
        assert all(f"| {name} |" in table for name in bench_run.SUITES)


def test_run_budget_skips_the_suites_it_cannot_start_and_says_so(tmp_path):
    out = tmp_path / "b.json"
    for bad in ("-1", "nan", "inf"):
        with pytest.raises(SystemExit):
            bench_run.parse_args(["--budget-s", bad])
        with pytest.raises(SystemExit):
            gpu.parse_args(["--budget-s", bad])
    with pytest.raises(SystemExit):
        gpu.parse_args(["--budget-s", "0"])  # the GPU call needs some time; run.py's 0 skips every suite
    assert bench_run.main(["--suite", "roofline", "sweep", "--budget-s", "0", "--out", str(out)]) == 0
    result = json.loads(out.read_text())
    assert result["complete"] is True
    for name in ("roofline", "sweep"):
        suite = result["suites"][name]
        assert suite["status"] == "skipped" and "time budget" in suite["rows"][0]["note"]


def test_gpu_call_records_a_suite_that_runs_out_of_time(tmp_path, monkeypatch):
    out = tmp_path / "out"
    monkeypatch.setattr(gpu, "MIN_START_S", 0.0)
    code = gpu.main(["--dry-run", "--out", str(out), "--suite", "roofline", "--budget-s", "0.5"])
    assert code == 1
    (path,) = out.glob("dry-run-*.json")
    suite = json.loads(path.read_text())["suites"]["roofline"]
    assert suite["status"] == "timed out" and "timed out after" in suite["rows"][0]["note"]


HLO = """HloModule jit_epoch

%fused_dot (p0: f32[4,3], p1: f32[3,2]) -> f32[4,2] {
  %p0 = f32[4,3]{1,0} parameter(0)
  %p1 = f32[3,2]{1,0} parameter(1)
  ROOT %dot.1 = f32[4,2]{1,0} dot(%p0, %p1), lhs_contracting_dims={1}, rhs_contracting_dims={0}
}

ENTRY %main (x: f32[4,3], w: f32[3,2]) -> (u32[8], s32[8]) {
  %x = f32[4,3]{1,0} parameter(0)
  %ynn_fusion.6 = f32[4,2]{1,0} fusion(%x, %w), kind=kCustom, calls=%fused_dot, metadata={op_name="jit(epoch)/while/body/closed_call/jvp()/dot_general"}
  %sort.0 = (u32[8]{0}, s32[8]{0}) sort(%a, %b), dimensions={0}, to_apply=%cmp, metadata={op_name="jit(epoch)/jit(_shuffle)/sort" stack_frame_id=64}
  %bits = u32[8]{0} fusion(%k), kind=kLoop, calls=%f2, metadata={op_name="jit(epoch)/while/body/closed_call/jvp(jit(_bernoulli))/jit(_uniform)/xor"}
  %relu_grad = f32[4,2]{1,0} fusion(%g), kind=kLoop, calls=%f3, metadata={op_name="jit(epoch)/while/body/closed_call/transpose(jvp())/select_n"}
  %upd = f32[3,2]{1,0} fusion(%w, %g), kind=kLoop, calls=%f4, metadata={op_name="jit(epoch)/while/body/closed_call/sub"}
  ROOT %copy.108 = u32[256,256]{1,0} copy(%bits)
}
"""


def test_profile_attributes_operations_from_the_optimized_hlo():
    index = profile.hlo_index(HLO)
    assert index["ynn_fusion.6"][0] == "dot" and index["sort.0"][0] == "sort"
    expected = {"ynn_fusion.6": "matrix products (forward, dW, dX)", "sort.0": "shuffle (the epoch's permutation)",
                "bits": "dropout masks: random bits and step keys",
                "relu_grad": "backward elementwise (ReLU, dropout, bias gradients)", "upd": "SGD update",
                "copy.108": "copies (loop-carried buffers)", "not_there": "other (not in the HLO: runtime, copies)",
                "sm90_xmma_gemm_f32f32": "matrix products (forward, dW, dX)"}
    for name, category in expected.items():
        assert profile.categorize(name, index) == category, name


def test_profile_self_times_subtract_nested_events_per_lane():
    events = [{"name": "while.1", "ts": 0, "dur": 100, "pid": 1, "tid": 1},
              {"name": "add.1", "ts": 10, "dur": 30, "pid": 1, "tid": 1},
              {"name": "add.2", "ts": 50, "dur": 20, "pid": 1, "tid": 1},
              {"name": "dot.1", "ts": 20, "dur": 40, "pid": 1, "tid": 2}]  # another thread: not nested
    times = dict(profile.self_times(events))
    assert times == {"while.1": 50e-6, "add.1": 30e-6, "add.2": 20e-6, "dot.1": 40e-6}
    trace = {"traceEvents": [{"ph": "M", "name": "process_name", "pid": 7, "args": {"name": "/device:GPU:0"}},
                             {"ph": "M", "name": "process_name", "pid": 1, "args": {"name": "/host:CPU"}},
                             {"name": "gemm", "ts": 0, "dur": 5, "pid": 7}, *events]}
    assert profile.device_events(trace) == ([{"name": "gemm", "ts": 0, "dur": 5, "pid": 7}], "GPU kernels")


def test_default_path_names_backend_device_date_and_label_and_never_an_existing_file(monkeypatch, tmp_path):
    env = {"backend": "gpu", "device_kind": "NVIDIA H100 80GB HBM3", "cpu_model": "x"}
    path = bench_run.default_path(env, "baseline")
    assert path.parent == ROOT / "benchmarks" / "results"
    assert path.name.startswith("gpu-nvidia-h100-80gb-hbm3-20") and path.name.endswith("-baseline.json")
    monkeypatch.setattr(bench_run, "ROOT", tmp_path)
    first = bench_run.default_path(env, "baseline")
    first.parent.mkdir(parents=True)
    first.write_text("{}")
    second = bench_run.default_path(env, "baseline")
    assert second.name == first.name.replace(".json", "-2.json") and not second.exists()


def test_flops_per_example_counts_forward_dw_and_dx_but_the_first():
    f = flops_per_example((784, 256, 256, 10))
    assert f["forward"] == 2 * (784 * 256 + 256 * 256 + 256 * 10) == f["dW"]
    assert f["dX"] == 2 * (256 * 256 + 256 * 10)
    assert f["total"] == 1_211_392  # ~1.21 MFLOP, not 3 x forward (1.61)


def test_train_mlp_without_torch_skips_the_peers_and_says_so(monkeypatch, tmp_path):
    from benchmarks import train_mlp

    monkeypatch.setitem(sys.modules, "torch", None)  # `import torch` now raises ImportError
    monkeypatch.setattr(train_mlp, "_engine_breakdown", lambda *a: [])
    result = train_mlp.run(Context(quick=True, threads=1, tmp=tmp_path, results={}))
    notes = {r["case"]: r["note"] for r in result["rows"]}
    assert notes["(c) torch eager"] == notes["(d) torch.compile"] == "skipped: torch not installed"
    assert "skipped: torch not installed" in markdown_table({"train_mlp": result})
    assert set(result["examples_per_s"]) == {"(a) regjax scan engine", "(b) jit step per host batch",
                                             "(e) regjax scan engine, flax.nnx model",
                                             "(f) idiomatic flax.nnx loop (nnx.Optimizer, nnx.jit step per batch)"}


@pytest.mark.parametrize("bits", [32, 16, 8])
def test_dropout_bits_keeps_units_at_the_rate_and_stays_unbiased(bits):
    x = jnp.full((512, 512), 2.0)
    rate = 0.2
    y = jax.jit(lambda k: dropout_bits(x, rate, key=k, bits=bits))(jax.random.key(0))
    kept = np.asarray(y != 0)
    threshold = np.round((1 - rate) * 2.0 ** bits)
    keep_prob = threshold / 2.0 ** bits
    assert abs(keep_prob - (1 - rate)) <= 2.0 ** -(bits + 1)
    np.testing.assert_allclose(np.asarray(y)[kept], 2.0 / keep_prob, rtol=1e-6)
    sigma = np.sqrt(keep_prob * (1 - keep_prob) / x.size)
    assert abs(kept.mean() - keep_prob) < 5 * sigma
    assert abs(float(jnp.mean(y)) - 2.0) < 5 * 2.0 / keep_prob * sigma  # E[dropout(x)] = x


@pytest.mark.parametrize("bits", [32, 8])
def test_dropout_bits_edges(bits):
    x = jnp.arange(1.0, 7.0).reshape(2, 3)
    key = jax.random.key(1)
    assert dropout_bits(x, 0.7, key=key, train=False, bits=bits) is x
    assert dropout_bits(x, 0.0, key=key, bits=bits) is x
    np.testing.assert_array_equal(dropout_bits(x, 1.0, key=key, bits=bits), 0.0)
    grad = jax.grad(lambda x: jnp.sum(dropout_bits(x, 1.0, key=key, bits=bits)))(x)
    assert np.all(np.isfinite(grad)) and np.all(grad == 0)
    traced = jax.jit(lambda r: dropout_bits(x, r, key=key, bits=bits))
    # a traced rate 0 keeps everything (at 32 bits: drop probability 6e-8, scale 1 + 6e-8)
    np.testing.assert_allclose(traced(0.0), x, rtol=1e-6)
    with pytest.raises(ValueError):
        dropout_bits(x, 0.5, key=key, bits=4)
    with pytest.raises(ValueError):
        dropout_bits(x, 1.5, key=key, bits=bits)


def test_gather_in_step_epoch_trains_exactly_like_make_epoch():
    import chex

    from benchmarks.proposals import make_epoch_gather_in_step
    from regjax.engine import init_state, make_epoch, make_step
    from regjax.models.adapters import mlp_model

    model = mlp_model("scratch", 6, (5, 4), 3, (0.2, 0.5), "normal")
    rng = np.random.default_rng(0)
    x, y = rng.random((50, 6), dtype=np.float32), rng.integers(0, 3, 50).astype(np.int32)
    step = make_step(model, SGD)
    results = []
    for make in (make_epoch, make_epoch_gather_in_step):
        state = init_state(model, SGD, jax.random.key(0))
        results.append(make(step, 16)(state, x, y, jax.random.key(1), {"lr": jnp.float32(0.5)}))
    (state, metrics), (proposed_state, proposed_metrics) = results
    chex.assert_trees_all_close(state.params, proposed_state.params, rtol=1e-6)
    for name in ("loss_sum", "correct", "count"):  # make_epoch may report more than the proposal
        np.testing.assert_allclose(metrics[name], proposed_metrics[name], rtol=1e-6)


def test_unrolled_threefry_on_cpu_trains_bit_for_bit_like_the_rolled_loop():
    from benchmarks.proposals import unrolled_threefry_on_cpu
    from benchmarks.train_mlp import engine_epochs, fashion_like

    x, y = fashion_like(600)
    rolled = engine_epochs(x, y)
    unrolled = engine_epochs(x, y)
    with unrolled_threefry_on_cpu():
        first = unrolled()  # compiles the unrolled program
        unrolled_hlo = unrolled.lower().compile().as_text()
    loops = lambda hlo: hlo.count(" while(")  # noqa: E731
    assert loops(unrolled_hlo) < loops(rolled.lower().compile().as_text())
    for a, b in ((rolled(), first), (rolled(), unrolled())):  # two epochs: the same metrics to the bit
        assert {k: float(v) for k, v in a.items()} == {k: float(v) for k, v in b.items()}


@pytest.mark.slow
@pytest.mark.parametrize("mode", [[], ["--startup"]])
def test_ab_compares_two_checkouts_side_by_side(mode, tmp_path):
    """ab.py against HEAD (a worktree of the last commit) at smoke size: both workers start on their own
    checkout, every case has a time for each and a ratio, and the worktree is removed afterwards."""
    out = tmp_path / "ab.json"
    proc = subprocess.run([sys.executable, str(ROOT / "benchmarks" / "ab.py"), "--baseline", "HEAD", "--quick",
                           "--rounds", "2", "--out", str(out), *mode], capture_output=True, text=True, timeout=900)
    assert proc.returncode == 0, proc.stderr[-3000:]
    record = json.loads(out.read_text())
    assert record["mode"] == ("startup" if mode else "engine") and record["rounds"] == 2
    for r in record["rows"]:
        assert r["baseline_s"] is not None and r["this_s"] is not None and r["ratio"] > 0, r
    if mode:
        overhead = {r["case"]: r for r in record["rows"]}["regjax overhead"]
        assert overhead["this_s"] > 0  # wall > bare import jax + the epoch
    worktrees = subprocess.run(["git", "-C", str(ROOT), "worktree", "list"], capture_output=True, text=True).stdout
    assert "regjax-ab-" not in worktrees


@pytest.mark.slow
def test_gpu_call_stopped_by_sigterm_kills_the_running_suite_and_keeps_the_json(tmp_path):
    import os
    import signal
    import time

    out = tmp_path / "out"
    proc = subprocess.Popen([sys.executable, str(ROOT / "benchmarks" / "gpu.py"), "--dry-run", "--out", str(out),
                             "--suite", "roofline", "scaling"], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True)
    deadline = time.monotonic() + 300
    while time.monotonic() < deadline:  # roofline done and merged: scaling (and its worker) is running
        files = list(out.glob("gpu-*.json")) + list(out.glob("dry-run-*.json"))
        if files and "roofline" in json.loads(files[0].read_text()).get("suites", {}):
            break
        time.sleep(0.2)
    time.sleep(2)
    proc.send_signal(signal.SIGTERM)
    proc.communicate(timeout=60)
    assert proc.returncode == 128 + signal.SIGTERM
    (path,) = out.glob("dry-run-*.json")
    assert json.loads(path.read_text())["suites"]["roofline"]["status"] == "ok"
    time.sleep(1)
    found = subprocess.run(["pgrep", "-f", "--", f"{out}/"], capture_output=True, text=True)
    assert found.returncode in (0, 1), found.stderr  # 1: nothing matched
    leftover = [pid for pid in found.stdout.split() if int(pid) != os.getpid()]
    assert not leftover, "the running suite's process group is killed with the call"
