#!/usr/bin/env python
"""D2L §4.4/§4.5: softmax regression on Fashion-MNIST, batch 256, lr 0.1, 10 epochs. ``--impl scratch`` uses
the stable log-sum-exp cross-entropy (``--naive`` swaps in the textbook exp/normalize/log version to show the
overflow); ``--impl flax`` is the concise version."""
from __future__ import annotations

import math
import time

import jax
import optax

from regjax import cli, naive_softmax_cross_entropy, softmax_cross_entropy
from regjax.models.adapters import softmax_regression_model
from regjax.report import plot_histories
from regjax.train import fit


def main(argv=None):
    p = cli.parser(__doc__, epochs=10, lr=0.1, batch_size=256, out="runs/softmax_regression",
                   impls=["scratch", "flax"], image_dataset=True)
    p.add_argument("--naive", action="store_true", help="use the naive (overflowing) softmax cross-entropy")
    p.add_argument("--logit-scale", type=float, default=1.0,
                   help="multiply the inputs by this (e.g. 1000) to push logits where exp overflows")
    args = p.parse_args(argv)
    if args.naive and args.impl != "scratch":
        p.error("--naive applies to --impl scratch only")
    started = time.perf_counter()
    progress = cli.setup(args)
    ds = cli.load_images(args, progress)
    x_tr, y_tr, x_te, y_te = cli.prepare_images(ds, flatten=True, train_size=args.train_size)
    data = (x_tr * args.logit_scale, y_tr, x_te * args.logit_scale, y_te)
    epochs = cli.resolve_epochs(args, ds, len(x_tr))
    loss = naive_softmax_cross_entropy if args.naive else softmax_cross_entropy
    name = f"softmax ({'naive' if args.naive else 'stable'} CE, {args.impl})"
    progress.say(f"dataset: {ds.name} ({ds.source}); {epochs} epochs")
    model = softmax_regression_model(args.impl, x_tr.shape[1], 10)
    optimizer = None if args.impl == "scratch" else optax.sgd(args.lr)
    hparams = {"lr": args.lr} if args.impl == "scratch" else {}
    _, history = fit(model, optimizer, data, epochs=epochs, batch_size=args.batch_size, key=jax.random.key(args.seed),
                     hparams=hparams, loss=loss, on_epoch=progress.callback(name, epochs))
    final = history.final()
    if not math.isfinite(final["train_loss"]):
        progress.say("the loss is not finite: exp() overflowed (or log(0)) -- the reason the stable version exists")
    plot = plot_histories({name: history}, args.out / "softmax_regression.png", f"Softmax regression on {ds.name}")
    progress.say(f"[{name}] final test accuracy {final['test_accuracy']:.4f}\nplot: {plot}")
    cli.save_results(args, "softmax_regression", {"dataset": ds.summary(), "epochs": epochs, "final": final,
                                                  "history": history.to_dict(), "plots": [str(plot)]},
                     progress, started)
    return final


if __name__ == "__main__":
    main()
