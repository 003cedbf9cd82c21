#!/usr/bin/env python
"""D2L §5.6: the dropout MLP on Fashion-MNIST (784-256-256-10, dropout 0.2/0.5, SGD lr 0.5, batch 256, 10
epochs, N(0, 0.01²) init). ``--compare`` also trains the same net without dropout and plots both."""
from __future__ import annotations

import time

import jax
import optax

from regjax import cli
from regjax.models.adapters import mlp_model
from regjax.report import plot_histories
from regjax.train import fit


def main(argv=None):
    p = cli.parser(__doc__, epochs=10, lr=0.5, batch_size=256, out="runs/dropout_mlp", impls=["scratch", "flax"],
                   image_dataset=True)
    p.add_argument("--rates", type=float, nargs=2, default=(0.2, 0.5), metavar=("R1", "R2"),
                   help="drop probability after hidden layer 1 and 2")
    p.add_argument("--hidden", type=int, nargs="+", default=(256, 256))
    p.add_argument("--compare", action="store_true", help="also train without dropout")
    args = p.parse_args(argv)
    if len(args.hidden) != len(args.rates):
        p.error(f"--hidden gives {len(args.hidden)} layers but --rates gives {len(args.rates)} rates")
    started = time.perf_counter()
    progress = cli.setup(args)
    ds = cli.load_images(args, progress)
    data = cli.prepare_images(ds, flatten=True, train_size=args.train_size)
    epochs = cli.resolve_epochs(args, ds, len(data[0]))
    progress.say(f"dataset: {ds.name} ({ds.source}), {len(data[0])} train / {len(data[2])} test; impl {args.impl}; "
                 f"{epochs} epochs")

    variants = {"dropout": tuple(args.rates)}
    if args.compare:
        variants["no dropout"] = (0.0,) * len(args.rates)
    histories, finals = {}, {}
    for name, rates in variants.items():
        model = mlp_model(args.impl, data[0].shape[1], tuple(args.hidden), 10, rates, "normal")
        # scratch: the from-scratch SGD step with lr in hparams; flax: optax.sgd
        optimizer = None if args.impl == "scratch" else optax.sgd(args.lr)
        hparams = {"lr": args.lr} if args.impl == "scratch" else {}
        _, history = fit(model, optimizer, data, epochs=epochs, batch_size=args.batch_size,
                         key=jax.random.key(args.seed), hparams=hparams,
                         on_epoch=progress.callback(name, epochs))
        histories[name], finals[name] = history, history.final()
        progress.say(f"[{name}] final test accuracy {finals[name]['test_accuracy']:.4f}")
    plot = plot_histories(histories, args.out / "dropout_mlp.png",
                          f"Dropout MLP on {ds.name} ({args.impl})")
    progress.say(f"plot: {plot}")
    cli.save_results(args, "dropout_mlp", {
        "dataset": ds.summary(), "epochs": epochs, "final": finals,
        "history": {k: h.to_dict() for k, h in histories.items()}, "plots": [str(plot)],
    }, progress, started)
    return finals


if __name__ == "__main__":
    main()
