"""Run with 8 virtual CPU devices (XLA_FLAGS set by the caller before jax is imported); prints one JSON line.

Everything that needs 8 devices runs here, in one process (one JAX start-up, compiled programs shared): the
library's data and member parallelism against one device, the CLI's ``--devices`` (its runs and refusals
through ``main``, in-process), and the 8-device reference runs other tests compare with, written under the
folder given as the first argument: ``one/`` (2 epochs: what 2 processes of 4 devices must equal) and
``straight/`` (60 epochs: what an interrupted and resumed 8-device run must equal, bit for bit)."""
import contextlib
import io
import json
import runpy
import sys
import tempfile
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
from jax.sharding import NamedSharding
from jax.sharding import PartitionSpec as P

import regjax as rj
from regjax.data import load_digits
from regjax.engine import fit
from regjax.models.adapters import lenet_bn_model, mlp_model
from regjax.optim import sgd
from regjax.parallel import data_mesh, member_mesh
from regjax.data import prepare_images
from regjax.optim import scratch_sgd  # noqa: E402

SGD = scratch_sgd(0.1)  # the from-scratch SGD step; each test's learning rate comes in hparams

assert jax.device_count() == 8
out = {"threefry_partitionable": bool(jax.config.jax_threefry_partitionable)}


def max_diff(a, b):
    return max(float(np.max(np.abs(np.asarray(x, np.float64) - np.asarray(y, np.float64))))
               for x, y in zip(jax.tree_util.tree_leaves(a), jax.tree_util.tree_leaves(b)))


# The cases train on what the CLI runs below train on (batch_norm.py --train-size 512, dropout_mlp.py --hidden 64
# 64; batch 256, key 0, their learning rates): the CLI runs then reuse the compiled programs (the session's
# compilation cache) and must give the very same numbers.
ds = load_digits()
images = prepare_images(ds, flatten=False, train_size=512, image_size=(28, 28))
flat = prepare_images(ds, flatten=True)
cases = {
    "mlp scratch": (mlp_model("scratch", 64, (64, 64), 10, (0.2, 0.5), "normal"), SGD, {"lr": 0.5}, flat),
    "mlp flax": (mlp_model("flax", 64, (64, 64), 10, (0.2, 0.5), "normal"), sgd(0.5), {}, flat),
    "mlp nnx": (mlp_model("nnx", 64, (64, 64), 10, (0.2, 0.5), "normal"), sgd(0.5), {}, flat),
    "lenet-bn scratch": (lenet_bn_model("scratch", 10, (28, 28, 1)), SGD, {"lr": 1.0}, images),
    "lenet-bn flax": (lenet_bn_model("flax", 10, (28, 28, 1)), sgd(1.0), {}, images),
}
for name, (model, opt, hp, data) in cases.items():
    runs = [fit(model, opt, data, epochs=2, batch_size=256, key=jax.random.key(0), hparams=hp, data_mesh=mesh)
            for mesh in (None, data_mesh(8))]
    (s1, h1), (s8, h8) = runs
    out[name] = {"params": max_diff(s1.params, s8.params), "model_state": max_diff(s1.model_state, s8.model_state)
                 if s1.model_state else 0.0, "test_loss": [h1.test_loss[0], h8.test_loss[0]],
                 "test_accuracy": [h1.test_accuracy[0], h8.test_accuracy[0]],
                 "sharding": str(s8.params["dense0" if "mlp" in name else "conv0"]["kernel"].sharding.spec)}

# dropout masks do not depend on how the activations are sharded
mesh = data_mesh(8)
h = jnp.ones((64, 256))
key = jax.random.key(3)
masks = lambda v: rj.dropout(v, 0.5, key=key, train=True)  # noqa: E731
plain = jax.jit(masks)(h)
sharded = jax.jit(masks, out_shardings=NamedSharding(mesh, P("data")))(jax.device_put(h, NamedSharding(mesh, P("data"))))
out["dropout_mask_equal"] = bool(np.array_equal(np.asarray(plain), np.asarray(sharded)))
out["dropout_mask_sharded_on"] = len(sharded.sharding.device_set)

# the scratch BN's axis_name path (the shard_map lesson) equals the global-batch statistics, both layouts
for layout, shape in (("NC", (64, 6)), ("NHWC", (64, 5, 5, 6))):
    xb = jax.random.normal(jax.random.key(1), shape) * 3 + 1
    params, state = rj.batch_norm_init(6)
    y_ref, st_ref = jax.jit(lambda v: rj.batch_norm(v, params, state, train=True))(xb)
    spec = P("data")
    f = jax.shard_map(lambda v: rj.batch_norm(v, params, state, train=True, axis_name="data"), mesh=mesh,
                      in_specs=spec, out_specs=(spec, P()))
    y_sm, st_sm = jax.jit(f)(xb)
    out[f"bn_axis_name_{layout}"] = max(max_diff(y_ref, y_sm), max_diff(st_ref, st_sm))

# a sweep's member axis split over the 8 devices equals the unsharded sweep
from regjax.engine import grid, sweep  # noqa: E402
from regjax.models.adapters import scratch_linreg  # noqa: E402

xs = jax.random.normal(jax.random.key(5), (120, 20))
ys = xs @ jnp.linspace(-1.0, 1.0, 20) + 0.1
lin = (xs[:100], ys[:100], xs[100:], ys[100:])
members = grid(seeds=[0, 1], lam=[0.0, 0.01, 0.1, 1.0], lr=0.01)
plain = sweep(scratch_linreg(20), SGD, lin, members, epochs=3, batch_size=10, loss="squared")
split = sweep(scratch_linreg(20), SGD, lin, members, epochs=3, batch_size=10, loss="squared",
              member_mesh=member_mesh(8))
out["sweep_member_sharded"] = {"params": max_diff(plain.state.params, split.state.params),
                               "devices": len(split.state.params["dense0"]["kernel"].sharding.device_set),
                               "test_loss": max_diff(plain.history.metric("test_loss"),
                                                     split.history.metric("test_loss"))}

# a batch the device count does not divide is refused, not silently dropped
try:
    fit(cases["mlp scratch"][0], SGD, flat, epochs=1, batch_size=60, key=jax.random.key(0), hparams={"lr": 0.1},
        data_mesh=mesh)
    out["indivisible"] = "accepted"
except ValueError as err:
    out["indivisible"] = str(err)
# the CLI: --devices 8 equals --devices 1, and device counts it cannot use are refused (one line, exit 2)
from regjax.runner import command_line  # noqa: E402

main = runpy.run_path(str(Path(__file__).resolve().parents[2] / "experiments" / "batch_norm.py"))["main"]
folder = Path(tempfile.mkdtemp())
out["cli_runs"] = {}
for n in ("8", "1"):
    main(["--dataset", "digits", "--epochs", "2", "--train-size", "512", "--devices", n, "--quiet", "--out",
          str(folder / n)])
    result = json.loads((folder / n / "results.json").read_text())
    out["cli_runs"][n] = {"devices": result["devices"], "test_loss": result["final"]["test_loss"]}
out["cli_refusals"] = {}
for name, argv in (("16 devices", ["--devices", "16"]), ("batch 100", ["--devices", "8", "--batch-size", "100"])):
    err = io.StringIO()
    with contextlib.redirect_stderr(err), command_line():  # as runner.script runs a CLI's main
        try:
            main(["--dataset", "digits", *argv, "--out", str(folder / "x")])
            code = 0
        except SystemExit as exit_:
            code = exit_.code
    out["cli_refusals"][name] = {"exit_code": code, "stderr": err.getvalue()}
# the 8-device reference runs of the CLI tests in tests/test_parallel.py
references = Path(sys.argv[1])
dropout_mlp = runpy.run_path(str(Path(__file__).resolve().parents[2] / "experiments" / "dropout_mlp.py"))["main"]
small = ["--dataset", "digits", "--hidden", "64", "64", "--devices", "8", "--quiet"]
dropout_mlp(small + ["--epochs", "2", "--out", str(references / "one")])
dropout_mlp(small + ["--epochs", "60", "--out", str(references / "straight")])
out["references"] = str(references)
print(json.dumps(out))
