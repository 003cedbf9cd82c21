#!/usr/bin/env python
"""D2L §5.6 exercise: the same wide MLP trained with nothing, dropout only, weight decay only, and both, on a
small training set where overfitting shows. Table of train/test accuracy and the generalization gap."""
from __future__ import annotations

from regjax import runner, scratch_sgd
from regjax.engine import make_evaluate
from regjax.models.adapters import scratch_mlp


def main(argv=None):
    p = runner.parser(__doc__, epochs=50, lr=0.03, batch_size=64, out="runs/dropout_vs_decay", image_dataset=True,
                   match_steps=False)
    p.add_argument("--hidden", type=runner.positive_int, nargs=2, default=[1024, 1024], metavar=("H1", "H2"))
    p.add_argument("--rates", type=runner.rate, nargs=2, default=(0.2, 0.5), metavar=("R1", "R2"))
    p.add_argument("--lam", type=runner.nonnegative_float, default=1e-3)
    with runner.Run("dropout_vs_decay", p, argv) as run:
        args = run.args
        ds = run.load_images()
        # without --train-size: 2,000 examples, or all of a smaller set (the digits hold 1,347); recorded
        data = run.images(ds, flatten=True, train_size=args.train_size or min(2000, len(ds.x_train)))
        run.say(f"dataset: {ds.name} ({ds.source}), {len(data[0])} train / {len(data[2])} test")
        none = (0.0,) * len(args.hidden)
        variants = {"none": (none, 0.0), "dropout": (tuple(args.rates), 0.0), "weight decay": (none, args.lam),
                    "both": (tuple(args.rates), args.lam)}
        model = scratch_mlp(data[0].shape[1], tuple(args.hidden), 10, none, weight_init="he")
        evaluate = make_evaluate(model)
        rows = {}
        for name, (rates, lam) in variants.items():
            # rates and lam are traced hyperparameters: all four variants share one compiled epoch.
            state, h = run.fit(name, model, scratch_sgd(args.lr), data, epochs=args.epochs,
                               hparams={"lam": lam, "rates": rates})
            f = h.final()
            # The gap uses train accuracy in eval mode (no dropout), not the running accuracy during training.
            train_eval = float(evaluate(state.params, state.model_state, data[0], data[1], {})["accuracy"])
            rows[name] = {"rates": list(rates), "lam": lam, **f, "train_accuracy_eval": train_eval,
                          "gap": train_eval - f["test_accuracy"], "best_test_accuracy": max(h.test_accuracy[0])}
        header = f"{'variant':<14} {'train acc':>9} {'test acc':>9} {'gap':>7} {'best test':>9}"
        run.say("\n".join([header, "-" * len(header)] + [
            f"{n:<14} {r['train_accuracy_eval']:>9.4f} {r['test_accuracy']:>9.4f} {r['gap']:>7.4f} "
            f"{r['best_test_accuracy']:>9.4f}" for n, r in rows.items()]))
        plot = run.plot_histories("dropout_vs_decay.png", f"Dropout vs weight decay on {ds.name}")
        run.finish({"final": rows, "plots": [str(plot)]})
    return rows


if __name__ == "__main__":
    runner.script(main)
