#!/usr/bin/env python
"""D2L §4.4/§4.5: softmax regression on Fashion-MNIST, batch 256, lr 0.1, 10 epochs. ``--impl scratch`` uses
the stable log-sum-exp cross-entropy (``--naive`` swaps in the textbook exp/normalize/log version to show the
overflow: with a large ``--logit-scale`` the run diverges and says so, exit 3); ``--impl linen`` (alias ``flax``) and
``--impl nnx`` are the concise versions."""
from __future__ import annotations

from regjax import naive_softmax_cross_entropy, runner, softmax_cross_entropy
from regjax.models.adapters import IMPLS, softmax_regression_model
from regjax.optim import sgd_for


def main(argv=None):
    p = runner.parser(__doc__, epochs=10, lr=0.1, batch_size=256, out="runs/softmax_regression",
                   impls=IMPLS, image_dataset=True)
    p.add_argument("--naive", action="store_true", help="use the naive (overflowing) softmax cross-entropy")
    p.add_argument("--logit-scale", type=runner.positive_float, default=1.0,
                   help="multiply the inputs by this (e.g. 1000) to push logits where exp overflows")
    with runner.Run("softmax_regression", p, argv) as run:
        args = run.args
        if args.naive and args.impl != "scratch":
            run.error("--naive applies to --impl scratch only")
        ds = run.load_images()
        x_tr, y_tr, x_te, y_te = run.images(ds, flatten=True)
        data = (x_tr * args.logit_scale, y_tr, x_te * args.logit_scale, y_te)
        epochs = run.epochs()
        loss = naive_softmax_cross_entropy if args.naive else softmax_cross_entropy
        name = f"softmax ({'naive' if args.naive else 'stable'} CE, {args.impl})"
        run.say(f"dataset: {ds.name} ({ds.source}); {epochs} epochs")
        model = softmax_regression_model(args.impl, x_tr.shape[1], 10)
        _, history = run.fit(name, model, sgd_for(args.impl, args.lr), data, epochs=epochs, loss=loss,
                             task="classification")
        final = history.final()
        plot = run.plot_histories("softmax_regression.png", f"Softmax regression on {ds.name}")
        run.say(f"[{name}] final test accuracy {final['test_accuracy']:.4f}")
        run.finish({"epochs": epochs, "final": final, "plots": [str(plot)]})
    return final


if __name__ == "__main__":
    runner.script(main)
