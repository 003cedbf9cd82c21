"""The benchmark suite: a ``--quick`` smoke run checks the output's structure (never speed), plus the pieces
with logic of their own (the FLOP count, the integer-threshold dropout proposal, torch-less skipping)."""
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

from benchmarks import run as bench_run  # noqa: E402
from benchmarks.common import Context, markdown_table  # noqa: E402
from benchmarks.proposals import dropout_bits  # noqa: E402
from benchmarks.roofline import flops_per_example  # noqa: E402

STATUSES = {"ok", "skipped", "not available yet"}


def test_quick_run_writes_json_and_prints_table(tmp_path):
    out = tmp_path / "bench.json"
    proc = subprocess.run([sys.executable, str(ROOT / "benchmarks" / "run.py"), "--quick", "--label", "smoke",
                           "--out", str(out)], capture_output=True, text=True, timeout=600, cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr[-3000:]
    result = json.loads(out.read_text())
    assert {"command", "label", "quick", "date", "environment", "loadavg_before", "loadavg_after", "suites",
            "table"} <= set(result)
    assert result["quick"] is True and result["label"] == "smoke"
    env = result["environment"]
    assert {"backend", "device", "device_kind", "cpu_count", "threads", "versions", "regjax"} <= set(env)
    assert {"jax", "jaxlib", "flax", "optax", "numpy", "torch", "python"} <= set(env["versions"])
    assert list(result["suites"]) == list(bench_run.SUITES)
    for name, suite in result["suites"].items():
        assert suite["status"] in STATUSES, (name, suite.get("error"))
        assert suite["method"] and suite["rows"], name
        assert {"loadavg_before", "loadavg_after", "seconds"} <= set(suite)
    assert result["suites"]["sweep"]["status"] == "not available yet"
    engine = result["suites"]["train_mlp"]["rows"][0]
    assert engine["case"].startswith("(a)") and engine["value"] > 0 and len(engine["times_s"]) >= 2
    assert 0 < result["suites"]["roofline"]["percent_of_roofline"]
    for table in (result["table"], proc.stdout):
        assert "| suite | case | median |" in table
        assert all(f"| {name} |" in table for name in bench_run.SUITES)


def test_default_path_names_backend_device_date_and_label():
    env = {"backend": "gpu", "device_kind": "NVIDIA H100 80GB HBM3", "cpu_model": "x"}
    path = bench_run.default_path(env, "baseline")
    assert path.parent == ROOT / "benchmarks" / "results"
    assert path.name.startswith("gpu-nvidia-h100-80gb-hbm3-20") and path.name.endswith("-baseline.json")


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
    step = make_step(model, None)
    results = []
    for make in (make_epoch, make_epoch_gather_in_step):
        state = init_state(model, None, jax.random.key(0))
        results.append(make(step, 16)(state, x, y, jax.random.key(1), {"lr": jnp.float32(0.5)}))
    (state, metrics), (proposed_state, proposed_metrics) = results
    chex.assert_trees_all_close(state.params, proposed_state.params, rtol=1e-6)
    for name in ("loss_sum", "correct", "count"):  # make_epoch may report more than the proposal
        np.testing.assert_allclose(metrics[name], proposed_metrics[name], rtol=1e-6)
