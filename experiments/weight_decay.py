#!/usr/bin/env python
"""D2L §3.7: weight decay on high-dimensional linear regression (n_train 20, n_test 100, d 200, batch 5, w = 0.01·1,
b = 0.05, noise 0.01). ``--preset zh-v2`` (default: the Chinese edition and English r0.17) lr 0.003, 100 epochs,
w0 ~ N(0, 1); ``--preset en`` (d2l-en master) lr 0.01, 10 epochs, w0 ~ N(0, 0.01²). ``--impl scratch`` adds λ/2‖w‖² to the
loss; ``--impl optax`` uses add_decayed_weights (bias not decayed). Prints ‖w‖₂ per λ."""
from __future__ import annotations

import jax
import jax.numpy as jnp

from regjax import decayed_sgd, runner, scratch_sgd
from regjax.base import Data, Model
from regjax.data import seed_keys, weight_decay_data
from regjax.models.adapters import scratch_linreg


def weight_decay_problem(seed: int, n_train: int = 20, n_test: int = 100, num_inputs: int = 200,
                         noise: float = 0.01, init_std: float = 1.0) -> "tuple[Data, Model]":
    """D2L §3.7's problem as this experiment draws it for ``--seed``: the data from the seed's data key
    (``regjax.data.weight_decay_data``) and the linear model with N(0, init_std²) weights. The training key is
    ``seed_keys(seed)[1]``. ``sweep.py``, ``model_selection.py`` and the §3.7 answers train on it too."""
    data = weight_decay_data(seed_keys(seed)[0], n_train, n_test, num_inputs, noise)
    return data, scratch_linreg(num_inputs, weight_init=jax.nn.initializers.normal(init_std))


def main(argv=None):
    p = runner.parser(__doc__, epochs=100, lr=0.003, batch_size=5, out="runs/weight_decay", impls=["scratch", "optax"])
    p.add_argument("--lambdas", type=runner.nonnegative_float, nargs="+", default=[0.0, 3.0])
    p.add_argument("--n-train", type=runner.positive_int, default=20)
    p.add_argument("--n-test", type=runner.positive_int, default=100)
    p.add_argument("--num-inputs", type=runner.positive_int, default=200)
    p.add_argument("--init-std", type=runner.positive_float, default=1.0, help="w0 ~ N(0, init_std²)")
    runner.add_presets(p, {
        "zh-v2": {"help": "the Chinese edition (zh-v2) and English r0.17", "epochs": 100, "lr": 0.003, "init_std": 1.0},
        "en": {"help": "the English edition (d2l-en master)", "epochs": 10, "lr": 0.01, "init_std": 0.01}})
    with runner.Run("weight_decay", p, argv) as run:
        args = run.args
        run.set_dataset({"name": "synthetic_linear", "n_train": args.n_train, "n_test": args.n_test,
                         "d": args.num_inputs}, n_train=args.n_train)
        data, model = weight_decay_problem(args.seed, args.n_train, args.n_test, args.num_inputs,
                                           init_std=args.init_std)
        train_key = seed_keys(args.seed)[1]
        runner.distinct_values(args.lambdas, "--lambdas", run.error)
        names = [f"lambda={lam:g}" for lam in args.lambdas]
        if len(set(names)) != len(names):  # distinct, but alike in 6 digits (1e-7, 1.0000001e-7): name them fully
            names = [f"lambda={lam!r}" for lam in args.lambdas]
        rows = {}
        # one optimizer object, λ injected: every λ shares one compiled epoch (programs are cached per optimizer)
        if args.impl == "scratch":  # λ/2‖w‖² in the loss, the scratch SGD step
            optimizer, lam_key = scratch_sgd(args.lr), "lam"
        else:  # chain(add_decayed_weights(λ), sgd(lr))
            optimizer, lam_key = decayed_sgd(args.lr, 0.0), "weight_decay"
        for name, lam in zip(names, args.lambdas):
            hparams = {lam_key: lam}
            state, history = run.fit(name, model, optimizer, data, epochs=args.epochs, key=train_key,
                                     hparams=hparams, loss="squared")
            w_norm = float(jnp.linalg.norm(state.params["dense0"]["kernel"]))
            rows[name] = {"lambda": lam, "w_norm": w_norm, **history.final()}
            run.say(f"[{name}] ||w||_2 = {w_norm:.4f}  train loss {rows[name]['train_loss']:.4g}  "
                    f"test loss {rows[name]['test_loss']:.4g}")
        plot = run.plot_histories("weight_decay.png", f"Weight decay ({args.impl})")
        run.finish({"final": rows, "plots": [str(plot)]})
    return rows


if __name__ == "__main__":
    runner.script(main)
