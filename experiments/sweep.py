#!/usr/bin/env python
"""Vectorized sweeps: many configurations trained as ONE compiled program (``regjax.engine.sweep``: jax.vmap over a
member axis of hyperparameters and seeds), with the wall time against training the same configurations one
after another -- (a) the same compiled single-run program in a Python loop (the fair best case), and (b) a loop
of ``regjax.engine.fit`` calls (the natural path). Measured, not estimated.

--what weight_decay   D2L §3.7's problem (n 20, d 200, batch 5, lr 0.003, 100 epochs): 16 λ (0 and 3·10^(j/4),
                      j = −8..6: 0.03 ... 95) × 8 seeds -> final train/test loss and ‖w‖ against λ, mean ± std
                      over seeds.
                      Member seed s uses weight_decay.py's training key for --seed s, on the data of --seed.
--what dropout        the dropout MLP (D2L §5.6) over a grid of both dropout rates -> heatmap of test accuracy.
--what lr             the dropout MLP over learning rates (optax SGD, lr injected) -> test accuracy per epoch
                      and the best (lr, epoch).
"""
from __future__ import annotations

import argparse
import os
import time

import jax
import numpy as np

from regjax import decayed_sgd, runner, scratch_sgd
from regjax.data import seed_keys
from regjax.engine import fit_loop, grid, group_stats, train_sequentially
from regjax.models.adapters import scratch_mlp
from regjax.optim import sgd_for
from regjax.plots import plot_heatmap, plot_panels
from weight_decay import weight_decay_problem

WHATS = ("weight_decay", "dropout", "lr")
DEFAULTS = {"weight_decay": dict(epochs=100, lr=0.003, batch_size=5),
            "dropout": dict(epochs=10, lr=0.5, batch_size=256),
            "lr": dict(epochs=10, lr=0.5, batch_size=256)}
DEFAULT_LAMBDAS = [0.0] + [3.0 * 10 ** (j / 4) for j in range(-8, 7)]
DEFAULT_RATES = [0.0, 0.2, 0.5, 0.7, 0.9]
DEFAULT_LRS = [0.01, 0.03, 0.1, 0.3, 1.0, 3.0, 10.0]


def build_parser(what: str) -> argparse.ArgumentParser:
    image = what != "weight_decay"
    p = runner.parser(__doc__, out=f"runs/sweep_{what}", image_dataset=image, impls=["scratch", "optax"],
                   **DEFAULTS[what])
    p.add_argument("--what", choices=WHATS, default="weight_decay")
    p.add_argument("--seeds", type=runner.positive_int, default=8 if what == "weight_decay" else 1,
                   help="seeds per configuration: member seeds are --seed, --seed+1, ...")
    p.add_argument("--chunk-size", type=runner.positive_int, default=None,
                   help="members per compiled call (default: measured against the free memory)")
    p.add_argument("--checkpoint-interval", type=runner.nonnegative_float, default=1.0,
                   help="seconds between sweep checkpoints (0: after every epoch); the last epoch is always saved")
    p.add_argument("--baselines", choices=["both", "compiled", "none"], default="both",
                   help="time the sequential baselines: (a) the compiled single-run program in a loop and (b) a "
                        "loop of fit calls ('compiled': (a) only)")
    if what == "weight_decay":
        p.add_argument("--lambdas", type=runner.nonnegative_float, nargs="+", default=DEFAULT_LAMBDAS)
        p.add_argument("--n-train", type=runner.positive_int, default=20)
        p.add_argument("--n-test", type=runner.positive_int, default=100)
        p.add_argument("--num-inputs", type=runner.positive_int, default=200)
    elif what == "dropout":
        p.add_argument("--rates", type=runner.rate, nargs="+", default=DEFAULT_RATES,
                       help="values of each layer's drop rate: the grid is their square")
        p.add_argument("--hidden", type=runner.positive_int, nargs=2, default=(256, 256), metavar=("H1", "H2"))
    else:
        p.add_argument("--lrs", type=runner.positive_float, nargs="+", default=DEFAULT_LRS)
        p.add_argument("--hidden", type=runner.positive_int, nargs=2, default=(256, 256), metavar=("H1", "H2"))
    return p


def main(argv=None):
    what = runner.peek_choice(argv, "--what", WHATS, "weight_decay")
    with runner.Run(f"sweep_{what}", build_parser(what), argv) as run:
        out = {"weight_decay": weight_decay, "dropout": dropout, "lr": learning_rate}[what](run)
        out["outputs"] = [str(run.out / f"{what}_table.json")]   # removed, with the plots, by a later run here
        run.finish(out)
    return out


# ---- the three sweeps -------------------------------------------------------------------------------------------

def weight_decay(run):
    args = run.args
    run.set_dataset({"name": "synthetic_linear", "n_train": args.n_train, "n_test": args.n_test,
                     "d": args.num_inputs}, n_train=args.n_train)
    data, model = weight_decay_problem(args.seed, args.n_train, args.n_test, args.num_inputs)
    seeds = range(args.seed, args.seed + args.seeds)
    train_key = lambda s: seed_keys(s)[1]  # noqa: E731 -- weight_decay.py's training key for --seed s
    lams = [float(v) for v in args.lambdas]
    if args.impl == "scratch":  # λ/2‖w‖² in the loss, scratch SGD
        optimizer, members = scratch_sgd(args.lr), grid(seeds, key_fn=train_key, lam=lams, lr=args.lr)
    else:  # chain(add_decayed_weights(λ), sgd(lr)) with λ injected
        optimizer, members = decayed_sgd(args.lr, 0.0), grid(seeds, key_fn=train_key, weight_decay=lams)
    lam_key = "lam" if args.impl == "scratch" else "weight_decay"
    result, seconds = _timed_sweep(run, "weight_decay", model, optimizer, data, members, loss="squared",
                                   progress_every=max(1, args.epochs // 5))
    n = len(members)
    w_norm = np.linalg.norm(np.asarray(result.state.params["dense0"]["kernel"]).reshape(n, -1), axis=1)
    values = {"train_loss": result.final("train_loss"), "test_loss": result.final("test_loss"), "w_norm": w_norm}
    stats = {m: group_stats(members.configs, v, [lam_key]) for m, v in values.items()}
    rows = [{"lambda": s[lam_key], **{f"{m}_mean": stats[m][i]["mean"] for m in values},
             **{f"{m}_std": stats[m][i]["std"] for m in values}, "n_diverged": s["n_diverged"]}
            for i, s in enumerate(stats["test_loss"])]
    best = min(rows, key=lambda r: r["test_loss_mean"])
    header = f"{'lambda':>9} {'train loss':>20} {'test loss':>20} {'||w||':>20}"
    run.say("\n".join([header] + [f"{r['lambda']:>9.4g}" + "".join(
        f" {r[f'{m}_mean']:>10.4g} ± {r[f'{m}_std']:<7.2g}" for m in ("train_loss", "test_loss", "w_norm"))
        for r in rows]))
    run.say(f"best configuration: lambda = {best['lambda']:.4g} (mean test loss {best['test_loss_mean']:.4g} ± "
            f"{best['test_loss_std']:.2g} over {args.seeds} seeds)")
    lam = np.array([r["lambda"] for r in rows])
    panels = [{"series": {m: (lam, [r[f"{m}_mean"] for r in rows], [r[f"{m}_std"] for r in rows])},
               "xlabel": "λ", "ylabel": label, "xscale": "symlog", "yscale": "log", "title": label,
               "marks": {f"best λ = {best['lambda']:.3g}": best["lambda"]}}
              for m, label in (("train_loss", "final train loss"), ("test_loss", "final test loss"),
                               ("w_norm", "‖w‖₂"))]
    plot = plot_panels(panels, run.out / "sweep_weight_decay.png",
                       f"§3.7: {len(lams)} λ × {args.seeds} seeds, one compiled program (mean ± std over seeds)")
    timing = _baselines(run, model, optimizer, data, members, result, seconds, loss="squared")
    return {"best": best, "per_lambda": rows, "sweep": result.to_dict(), "timing": timing, "plots": [str(plot)]}


def dropout(run):
    args = run.args
    ds, data, epochs = _images(run)
    rates = [float(r) for r in args.rates]
    pairs = [(r1, r2) for r1 in rates for r2 in rates]
    model = scratch_mlp(data[0].shape[1], tuple(args.hidden), 10, (0.0, 0.0), "normal")
    optimizer = sgd_for(args.impl, args.lr)
    members = grid(range(args.seed, args.seed + args.seeds), rates=pairs, lr=args.lr)
    result, seconds = _timed_sweep(run, "dropout", model, optimizer, data, members, epochs=epochs,
                                   progress_every=max(1, epochs // 10))
    stats = group_stats(members.configs, result.final("test_accuracy"), ["rates"])
    acc = np.array([s["mean"] for s in stats]).reshape(len(rates), len(rates))
    best = max(stats, key=lambda s: s["mean"])
    run.say("test accuracy (rows: rate after hidden layer 1, columns: after layer 2)\n"
            + "\n".join(f"{r:>5}: " + " ".join(f"{v:.4f}" for v in row) for r, row in zip(rates, acc)))
    run.say(f"best configuration: rates = {best['rates']} (test accuracy {best['mean']:.4f}, {args.seeds} seed(s)); "
            f"D2L's (0.2, 0.5): {_lookup(stats, [0.2, 0.5])}, switched (0.5, 0.2): {_lookup(stats, [0.5, 0.2])}")
    plot = plot_heatmap(acc, rates, rates, run.out / "sweep_dropout.png", xlabel="drop rate after hidden layer 2",
                        ylabel="drop rate after hidden layer 1",
                        title=f"Dropout MLP on {ds.name}: test accuracy, {epochs} epochs", fmt="{:.3f}")
    timing = _baselines(run, model, optimizer, data, members, result, seconds, epochs=epochs)
    return {"epochs": epochs, "best": best, "per_rates": stats, "sweep": result.to_dict(), "timing": timing,
            "plots": [str(plot)]}


def learning_rate(run):
    args = run.args
    ds, data, epochs = _images(run)
    lrs = [float(v) for v in args.lrs]
    model = scratch_mlp(data[0].shape[1], tuple(args.hidden), 10, (0.2, 0.5), "normal")
    optimizer = sgd_for(args.impl, args.lr)  # scratch SGD, or optax SGD; the learning rate injected (traced)
    members = grid(range(args.seed, args.seed + args.seeds), lr=lrs, rates=[(0.2, 0.5)])
    result, seconds = _timed_sweep(run, "lr", model, optimizer, data, members, epochs=epochs,
                                   progress_every=max(1, epochs // 10))
    curves = result.history.metric("test_accuracy")  # (epochs, members)
    per_lr = []
    for i, lr in enumerate(lrs):
        cols = [j for j, c in enumerate(members.configs) if c["lr"] == lr]
        mean = np.nanmean(curves[:, cols], axis=1) if np.isfinite(curves[:, cols]).any() else curves[:, cols[0]]
        finite = np.isfinite(mean)
        per_lr.append({"lr": lr, "final_test_accuracy": float(mean[-1]),
                       "best_test_accuracy": float(np.max(mean[finite])) if finite.any() else None,
                       "best_epoch": int(np.argmax(np.where(finite, mean, -1)) + 1) if finite.any() else None,
                       "diverged": sum(result.history.diverged_epoch[j] is not None for j in cols),
                       "curve": mean.tolist()})
    ok = [r for r in per_lr if r["best_test_accuracy"] is not None]
    best = max(ok, key=lambda r: r["best_test_accuracy"])
    run.say("\n".join(f"lr {r['lr']:>6g}: final test acc {r['final_test_accuracy']:.4f}, best "
                      f"{r['best_test_accuracy'] if r['best_test_accuracy'] is None else round(r['best_test_accuracy'], 4)}"
                      f" at epoch {r['best_epoch']}, diverged {r['diverged']}/{args.seeds}" for r in per_lr))
    run.say(f"best configuration: lr = {best['lr']:g} at epoch {best['best_epoch']} (test accuracy "
            f"{best['best_test_accuracy']:.4f})")
    x = np.arange(1, epochs + 1)
    panels = [{"series": {f"lr {r['lr']:g}": (x, r["curve"]) for r in per_lr}, "xlabel": "epoch",
               "ylabel": "test accuracy", "xscale": "log", "title": "test accuracy per epoch"},
              {"series": {"final": ([r["lr"] for r in ok], [r["final_test_accuracy"] for r in ok]),
                          "best epoch": ([r["lr"] for r in ok], [r["best_test_accuracy"] for r in ok])},
               "xlabel": "learning rate", "ylabel": "test accuracy", "xscale": "log", "title": "against lr"}]
    plot = plot_panels(panels, run.out / "sweep_lr.png", f"Dropout MLP on {ds.name}: learning rates ({args.impl})")
    timing = _baselines(run, model, optimizer, data, members, result, seconds, epochs=epochs)
    return {"epochs": epochs, "best": {k: v for k, v in best.items() if k != "curve"}, "per_lr": per_lr,
            "sweep": result.to_dict(), "timing": timing, "plots": [str(plot)]}


# ---- shared pieces ---------------------------------------------------------------------------------------------

def _images(run):
    ds = run.load_images()
    data = run.images(ds, flatten=True)
    epochs = run.epochs()
    run.say(f"dataset: {ds.name} ({ds.source}), {len(data[0])} train / {len(data[2])} test; {epochs} epochs")
    return ds, data, epochs


def _lookup(stats, rates):
    for s in stats:
        if s["rates"] == rates:
            return round(s["mean"], 4)
    return None


def _timed_sweep(run, name, model, optimizer, data, members, *, epochs=None, **kwargs):
    epochs = run.args.epochs if epochs is None else epochs
    run.say(f"[{name}] {len(members)} members in one compiled program, {epochs} epochs")
    t0 = time.perf_counter()
    result = run.sweep(name, model, optimizer, data, members, epochs=epochs, chunk_size=run.args.chunk_size,
                       checkpoint_interval_s=run.args.checkpoint_interval, **kwargs)
    seconds = time.perf_counter() - t0
    run.say(f"[{name}] member table (config, status, per-epoch and final metrics): "
            f"{result.save(run.out / f'{name}_table.json')}")
    return result, seconds


def _baselines(run, model, optimizer, data, members, result, sweep_wall, *, epochs=None, **fit_kwargs) -> dict:
    """Wall times of the vectorized sweep and of the same members one after another: (a) the compiled
    single-member program in a Python loop, (b) a loop of ``fit`` calls; all on this machine, in this run."""
    args = run.args
    epochs = args.epochs if epochs is None else epochs
    h = result.history
    timing = {"members": len(members), "epochs": epochs, "device": jax.devices()[0].device_kind,
              "cpu_count": os.cpu_count(), "load_average_1m": os.getloadavg()[0],
              # training and the evaluation after each epoch, as the sequential loops below time them
              "vmapped": {"compile_s": h.compile_time_s, "train_s": h.run_time_s,
                          "wall_s": sweep_wall, "chunk_size": result.chunk_size}}
    if run.resuming:
        run.say("timing: this run was resumed, so its sweep time is partial; baselines skipped")
        return {**timing, "note": "resumed run: no timing comparison"}
    if args.baselines == "none":
        return timing
    _, seq = train_sequentially(model, optimizer, data, members, epochs=epochs, batch_size=args.batch_size,
                                **fit_kwargs)
    timing["sequential_compiled"] = {**seq, "wall_s": seq["compile_s"] + seq["train_s"]}
    if args.baselines == "both":
        timing["fit_loop"] = fit_loop(model, optimizer, data, members, epochs=epochs, batch_size=args.batch_size,
                                      **fit_kwargs)
    vm = timing["vmapped"]
    lines = [f"timing ({len(members)} members x {epochs} epochs, {timing['device']}, {timing['cpu_count']} cores, "
             f"load {timing['load_average_1m']:.1f}):",
             f"  vmapped sweep            {vm['wall_s']:8.2f} s wall (compile {vm['compile_s']:.2f} s, "
             f"train {vm['train_s']:.2f} s)"]
    for name, label in (("sequential_compiled", "(a) compiled single-run loop"), ("fit_loop", "(b) loop of fit calls")):
        if name in timing:
            t = timing[name]
            t["speedup_wall"] = t["wall_s"] / vm["wall_s"]
            t["speedup_train"] = t["train_s"] / vm["train_s"]
            lines.append(f"  {label:<28} {t['wall_s']:6.2f} s wall (compile {t['compile_s']:.2f} s, train "
                         f"{t['train_s']:.2f} s): the sweep is {t['speedup_wall']:.1f}x faster "
                         f"({t['speedup_train']:.1f}x excluding compilation)")
    run.say("\n".join(lines))
    return timing


if __name__ == "__main__":
    runner.script(main)
