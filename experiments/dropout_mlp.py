#!/usr/bin/env python
"""D2L §5.6: the dropout MLP on Fashion-MNIST (784-256-256-10, dropout 0.2/0.5, SGD lr 0.5, batch 256, 10
epochs, N(0, 0.01²) init). ``--compare`` also trains the same net without dropout and plots both."""
from __future__ import annotations

from regjax import runner
from regjax.models.adapters import IMPLS, mlp_model
from regjax.plots import plot_histories


def main(argv=None):
    p = runner.parser(__doc__, epochs=10, lr=0.5, batch_size=256, out="runs/dropout_mlp", impls=IMPLS,
                   image_dataset=True)
    p.add_argument("--rates", type=runner.rate, nargs=2, default=(0.2, 0.5), metavar=("R1", "R2"),
                   help="drop probability after hidden layer 1 and 2")
    p.add_argument("--hidden", type=runner.positive_int, nargs=2, default=(256, 256), metavar=("H1", "H2"))
    p.add_argument("--compare", action="store_true", help="also train without dropout")
    with runner.Run("dropout_mlp", p, argv) as run:
        args = run.args
        ds = run.load_images()
        data = run.images(ds, flatten=True)
        epochs = run.epochs()
        run.say(f"dataset: {ds.name} ({ds.source}), {len(data[0])} train / {len(data[2])} test; impl {args.impl}; "
                f"{epochs} epochs")
        variants = {"dropout": tuple(args.rates)}
        if args.compare:
            variants["no dropout"] = (0.0, 0.0)
        finals = {}
        for name, rates in variants.items():
            model = mlp_model(args.impl, data[0].shape[1], tuple(args.hidden), 10, rates, "normal")
            optimizer, hparams = runner.sgd_route(args)
            _, history = run.fit(name, model, optimizer, data, epochs=epochs, hparams=hparams)
            finals[name] = history.final()
            run.say(f"[{name}] final test accuracy {finals[name]['test_accuracy']:.4f}")
        plot = plot_histories(run.histories, run.out / "dropout_mlp.png", f"Dropout MLP on {ds.name} ({args.impl})")
        run.say(f"plot: {plot}")
        run.finish({"epochs": epochs, "final": finals, "plots": [str(plot)]})
    return finals


if __name__ == "__main__":
    runner.script(main)
