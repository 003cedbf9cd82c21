#!/usr/bin/env python
"""D2L §8.5: LeNet with batch normalization (after each conv/dense layer, before the sigmoid) on
Fashion-MNIST, batch 256, lr 1.0, 10 epochs. Reports accuracy and the learned scale/bias of the first BN
layer; ``--no-bn`` trains the same LeNet without BN for the contrast."""
from __future__ import annotations

import time

import jax
import optax

from regjax import cli
from regjax.models.adapters import lenet_bn_model
from regjax.report import plot_histories
from regjax.train import fit


def main(argv=None):
    p = cli.parser(__doc__, epochs=10, lr=1.0, batch_size=256, out="runs/batch_norm", impls=["scratch", "flax"],
                   image_dataset=True)
    p.add_argument("--no-bn", action="store_true", help="train LeNet without BatchNorm")
    args = p.parse_args(argv)
    started = time.perf_counter()
    progress = cli.setup(args)
    ds = cli.load_images(args, progress)
    # LeNet's two VALID 5×5 convs need 28×28 inputs: the digits fallback is resized (recorded below).
    data = cli.prepare_images(ds, flatten=False, train_size=args.train_size, image_size=(28, 28))
    epochs = cli.resolve_epochs(args, ds, len(data[0]))
    name = "LeNet" if args.no_bn else "LeNet-BN"
    progress.say(f"dataset: {ds.name} ({ds.source}) as 28x28x1, {len(data[0])} train; {name}, impl {args.impl}; "
                 f"{epochs} epochs")
    model = lenet_bn_model(args.impl, 10, (28, 28, 1), use_bn=not args.no_bn)
    optimizer = None if args.impl == "scratch" else optax.sgd(args.lr)
    hparams = {"lr": args.lr} if args.impl == "scratch" else {}
    state, history = fit(model, optimizer, data, epochs=epochs, batch_size=args.batch_size,
                         key=jax.random.key(args.seed), hparams=hparams, on_epoch=progress.callback(name, epochs))
    final = history.final()
    payload = {"dataset": {**ds.summary(), "resized_to": [28, 28]}, "epochs": epochs, "final": final,
               "history": history.to_dict()}
    progress.say(f"[{name}] final test accuracy {final['test_accuracy']:.4f}")
    if not args.no_bn:
        bn0 = state.params["bn0"]
        payload["bn0"] = {"scale": bn0["scale"].tolist(), "bias": bn0["bias"].tolist()}
        progress.say(f"first BN layer: scale {[round(v, 3) for v in payload['bn0']['scale']]}\n"
                     f"                 bias  {[round(v, 3) for v in payload['bn0']['bias']]}")
    plot = plot_histories({name: history}, args.out / "batch_norm.png", f"{name} on {ds.name} ({args.impl})")
    payload["plots"] = [str(plot)]
    progress.say(f"plot: {plot}")
    cli.save_results(args, "batch_norm", payload, progress, started)
    return final


if __name__ == "__main__":
    main()
