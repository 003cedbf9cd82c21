#!/usr/bin/env python
"""D2L §5.4: numerical stability and initialization.

1. Constant initialization: every hidden unit gets the same weights and stays identical under SGD (symmetry is
   never broken), so the MLP behaves like a one-unit network.
2. Vanishing gradients: per-layer gradient norms at init through sigmoid vs ReLU in a deep MLP.
3. Exploding products: the norm of a product of random N(0, 1) 4x4 matrices.
4. Activation and gradient variance per layer at init for N(0, 0.01²), Xavier and He initialization.
"""
from __future__ import annotations

import jax
import jax.numpy as jnp

from regjax import runner, scratch_sgd
from regjax.diagnostics import hidden_unit_spread, layer_statistics, matrix_product_norms
from regjax.models import scratch
from regjax.models.adapters import scratch_mlp
from regjax.plots import plot_series


def main(argv=None):
    p = runner.parser(__doc__, epochs=10, lr=0.5, batch_size=256, out="runs/init_stability", image_dataset=True)
    p.add_argument("--depth", type=runner.positive_int, default=10, help="hidden layers of the deep MLP (parts 2, 4)")
    p.add_argument("--width", type=runner.positive_int, default=256)
    with runner.Run("init_stability", p, argv) as run:
        args = run.args
        ds = run.load_images()
        data = run.images(ds, flatten=True)
        epochs = run.epochs()
        num_inputs = data[0].shape[1]
        key = jax.random.key(args.seed)
        out = {"epochs": epochs}

        # 1. constant init vs N(0, 0.01²)
        const = jax.nn.initializers.constant(0.01)
        out["symmetry"] = {}
        for name, init in (("constant 0.01", const), ("normal(0.01)", "normal")):
            model = scratch_mlp(num_inputs, (args.width,), 10, (0.0,), weight_init=init)
            state, h = run.fit(name, model, scratch_sgd(args.lr), data, epochs=epochs, key=key,
                               progress_every=max(1, epochs // 10))
            spread = hidden_unit_spread(state.params)
            out["symmetry"][name] = {"test_accuracy": h.final()["test_accuracy"], "hidden_unit_spread": spread}
            run.say(f"[{name} init] test acc {h.final()['test_accuracy']:.4f}; max difference between hidden units' "
                    f"weights after training: {spread:.3g}")

        # 2 + 4. per-layer statistics at init on one batch
        xb, yb = jnp.asarray(data[0][:256]), jnp.asarray(data[1][:256])
        hidden = (args.width,) * args.depth
        stats, series_grad, series_var = {}, {}, {}
        for act_name, act in (("sigmoid", jax.nn.sigmoid), ("relu", jax.nn.relu)):
            for init in ("normal", "xavier", "he"):
                params = scratch.init_mlp(jax.random.fold_in(key, 7), num_inputs, hidden, 10, weight_init=init)
                s = layer_statistics(params, xb, yb, act)
                stats[f"{act_name}/{init}"] = s
                series_grad[f"{act_name}, {init}"] = (range(1, len(s["grad_norm"]) + 1), s["grad_norm"])
                series_var[f"{act_name}, {init}"] = (range(1, len(s["activation_var"]) + 1), s["activation_var"])
        out["layer_statistics"] = stats
        for k in ("sigmoid/xavier", "relu/he", "relu/normal"):
            g = stats[k]["grad_norm"]
            run.say(f"[{k}] grad norm layer 1 {g[0]:.3g}, last layer {g[-1]:.3g} (ratio {g[0] / g[-1]:.3g})")

        # 3. products of random matrices
        log10_norms = matrix_product_norms(jax.random.fold_in(key, 3), 100, 4)
        out["matrix_product_log10_norm_after_100"] = float(log10_norms[-1])
        run.say(f"norm of a product of 100 random 4x4 N(0,1) matrices: 10^{float(log10_norms[-1]):.1f}")

        plots = [
            plot_series(series_grad, run.out / "init_grad_norms.png", xlabel="layer (1 = input side)",
                        ylabel="||dL/dW||", logy=True, title=f"gradient norm per layer at init, depth {args.depth}"),
            plot_series(series_var, run.out / "init_activation_var.png", xlabel="hidden layer",
                        ylabel="activation variance", logy=True, title="activation variance per layer at init"),
            plot_series({"log10 ||M1...Mk||": (range(1, 101), log10_norms)}, run.out / "init_matrix_products.png",
                        xlabel="k", ylabel="log10 Frobenius norm", title="products of random 4x4 matrices"),
        ]
        out["plots"] = [str(p_) for p_ in plots]
        run.say("plots: " + ", ".join(out["plots"]))
        run.finish(out)
    return out


if __name__ == "__main__":
    runner.script(main)
