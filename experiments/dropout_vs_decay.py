#!/usr/bin/env python
"""D2L §5.6 exercise: the same wide MLP trained with nothing, dropout only, weight decay only, and both, on a
small training set where overfitting shows. Table of train/test accuracy and the generalization gap."""
from __future__ import annotations

import time

import jax

from regjax import cli
from regjax.models.adapters import scratch_mlp
from regjax.report import plot_histories
from regjax.train import fit, make_evaluate


def main(argv=None):
    p = cli.parser(__doc__, epochs=50, lr=0.03, batch_size=64, out="runs/dropout_vs_decay", image_dataset=True,
                   match_steps=False)
    p.set_defaults(train_size=2000)
    p.add_argument("--hidden", type=int, nargs="+", default=[1024, 1024])
    p.add_argument("--rates", type=float, nargs=2, default=(0.2, 0.5))
    p.add_argument("--lam", type=float, default=1e-3)
    args = p.parse_args(argv)
    started = time.perf_counter()
    progress = cli.setup(args)
    ds = cli.load_images(args, progress)
    data = cli.prepare_images(ds, flatten=True, train_size=args.train_size)
    progress.say(f"dataset: {ds.name} ({ds.source}), {len(data[0])} train / {len(data[2])} test")
    none = (0.0,) * len(args.hidden)
    variants = {"none": (none, 0.0), "dropout": (tuple(args.rates), 0.0), "weight decay": (none, args.lam),
                "both": (tuple(args.rates), args.lam)}
    model = scratch_mlp(data[0].shape[1], tuple(args.hidden), 10, none, weight_init="he")
    evaluate = make_evaluate(model)
    histories, rows = {}, {}
    for name, (rates, lam) in variants.items():
        # rates and lam are traced hyperparameters: all four variants share one compiled epoch.
        state, h = fit(model, None, data, epochs=args.epochs, batch_size=args.batch_size, key=jax.random.key(args.seed),
                   hparams={"lr": args.lr, "lam": lam, "rates": rates},
                   on_epoch=progress.callback(name, args.epochs) if not args.quiet else None)
        histories[name] = h
        f = h.final()
        # The gap uses train accuracy in eval mode (no dropout), not the running accuracy during training.
        train_eval = float(evaluate(state.params, state.model_state, data[0], data[1], {})["accuracy"])
        rows[name] = {"rates": list(rates), "lam": lam, **f, "train_accuracy_eval": train_eval,
                      "gap": train_eval - f["test_accuracy"], "best_test_accuracy": max(h.test_accuracy)}
    header = f"{'variant':<14} {'train acc':>9} {'test acc':>9} {'gap':>7} {'best test':>9}"
    progress.say("\n".join([header, "-" * len(header)] + [
        f"{n:<14} {r['train_accuracy_eval']:>9.4f} {r['test_accuracy']:>9.4f} {r['gap']:>7.4f} {r['best_test_accuracy']:>9.4f}"
        for n, r in rows.items()]))
    plot = plot_histories(histories, args.out / "dropout_vs_decay.png", f"Dropout vs weight decay on {ds.name}")
    progress.say(f"plot: {plot}")
    cli.save_results(args, "dropout_vs_decay", {"dataset": ds.summary(), "final": rows,
                                                "history": {k: h.to_dict() for k, h in histories.items()},
                                                "plots": [str(plot)]}, progress, started)
    return rows


if __name__ == "__main__":
    main()
