#!/usr/bin/env python
"""D2L §5.6: the dropout MLP on Fashion-MNIST (784-256-256-10, batch 256, 10 epochs). ``--preset zh-v2`` (the
default: the Chinese edition and English r0.17): dropout 0.2/0.5, SGD lr 0.5, N(0, 0.01²) init; ``--preset en``
(d2l-en master): dropout 0.5/0.5, lr 0.1, LeCun-normal init (its JAX tab's nn.Dense default). ``--compare`` also
trains the same net without dropout and plots both."""
from __future__ import annotations

from regjax import runner
from regjax.models import INITIALIZERS
from regjax.models.adapters import IMPLS, mlp_model
from regjax.optim import sgd_for


def main(argv=None):
    p = runner.parser(__doc__, epochs=10, lr=0.5, batch_size=256, out="runs/dropout_mlp", impls=IMPLS,
                   image_dataset=True)
    p.add_argument("--rates", type=runner.rate, nargs=2, default=(0.2, 0.5), metavar=("R1", "R2"),
                   help="drop probability after hidden layer 1 and 2")
    p.add_argument("--init", choices=sorted(INITIALIZERS), default="normal", help="weight initializer")
    runner.add_presets(p, {
        "zh-v2": {"help": "the Chinese edition (zh-v2) and English r0.17", "rates": (0.2, 0.5), "lr": 0.5,
                  "init": "normal"},
        "en": {"help": "the English edition (d2l-en master)", "rates": (0.5, 0.5), "lr": 0.1, "init": "lecun"}})
    p.add_argument("--hidden", type=runner.positive_int, nargs=2, default=(256, 256), metavar=("H1", "H2"))
    p.add_argument("--compare", action="store_true", help="also train without dropout")
    with runner.Run("dropout_mlp", p, argv) as run:
        args = run.args
        ds = run.load_images()
        data = run.images(ds, flatten=True)
        epochs = run.epochs()
        run.say(f"dataset: {ds.name} ({ds.source}), {len(data[0])} train / {len(data[2])} test; impl {args.impl}; "
                f"{epochs} epochs; preset {args.preset}: rates {tuple(args.rates)}, lr {args.lr:g}, init {args.init}")
        variants = {"dropout": tuple(args.rates)}
        if args.compare:
            variants["no dropout"] = (0.0, 0.0)
        finals = {}
        for name, rates in variants.items():
            model = mlp_model(args.impl, data[0].shape[1], tuple(args.hidden), 10, rates, args.init)
            _, history = run.fit(name, model, sgd_for(args.impl, args.lr), data, epochs=epochs)
            finals[name] = history.final()
            run.say(f"[{name}] final test accuracy {finals[name]['test_accuracy']:.4f}")
        plot = run.plot_histories("dropout_mlp.png", f"Dropout MLP on {ds.name} ({args.impl})")
        run.finish({"epochs": epochs, "final": finals, "plots": [str(plot)]})
    return finals


if __name__ == "__main__":
    runner.script(main)
