"""§5.6 dropout: the dropout MLP (ReLU, 256-256, He init, SGD lr 0.1, batch 64, --mlp-epochs 50) on every
training image up to 10,000 (--mlp-train-size; the digits fallback has 1347): 1 switched rates (grid of both
rates), 2 --mlp-long-epochs 200 with and without dropout, 3 hidden activation variance per layer over training,
4 dropout at test time, 5 dropout vs weight decay vs both, 6 DropConnect (masks on single weights, one per
minibatch) vs dropout at the same rates, 7 Gaussian dropout (multiplicative N(1, p/(1-p)) noise, dropout's
variance) vs dropout. A run's test accuracy is its median over its last 10 epochs (at lr 0.1 single epochs
spike). Where noise could decide (1, 5, 6, 7) each configuration runs 2 x --seeds seeds and the answers give
mean ± standard error over seeds; every configuration runs the same seeds (initialization and data order), so
differences between configurations are paired by seed (mean ± standard error of the per-seed difference).
Ex. 1's grid also serves as the dropout arm of 5 (λ = 0), 6 and 7 (rates (p, p)); ex. 2's runs serve as the
λ = 0 row of ex. 5's 2x2 repeated at --mlp-long-epochs (one more sweep adds the best λ)."""
from __future__ import annotations

import math
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from regjax import runner
from regjax.base import Model
from regjax.engine import grid, group_stats
from regjax.models.adapters import scratch_mlp
from regjax.models.scratch import init_mlp
from regjax.noise import dropconnect, gaussian_dropout
from regjax.plots import plot_heatmap, plot_panels

from .common import SCRATCH_SGD, answer, in_book_order, pair, paired, sample_std, signed, table, tiny
from .probes import hidden_statistics, predict_with_dropout

SECTION, TITLE = "5.6", "Dropout"
RATES = [0.0, 0.2, 0.5, 0.8]
DECAYS = [0.0, 1e-3, 3e-3, 1e-2]
D2L_RATES = (0.2, 0.5)
NONE = (0.0, 0.0)
PLATEAU = 10  # accuracies are medians over the last 10 epochs (single epochs spike at lr 0.1)
TRAIN_CAP = 10_000  # default --mlp-train-size: all training images up to this many


class Cell(NamedTuple):
    """One configuration's test accuracy over seeds: mean, sample std, number of seeds, diverged members, and
    the finite value of each seed (``((seed, value), ...)``) for differences paired by seed."""
    mean: float
    std: float
    n: int
    diverged: int = 0
    per_seed: tuple = ()

    @property
    def se(self) -> float:
        return self.std / math.sqrt(self.n) if self.n > 1 else math.nan

    def __str__(self) -> str:
        return f"{self.mean:.4f} ± {self.se:.4f}"


def _cells(configs, values, by) -> dict:
    """``group_stats`` as {config value(s) as tuples: Cell}, each with its per-seed values."""
    key = lambda c: (lambda k: k if len(by) > 1 else k[0])(
        tuple(tuple(c[b]) if isinstance(c[b], list) else c[b] for b in by))
    seeds: dict = {}
    for c, v in zip(configs, np.asarray(values, np.float64)):
        if np.isfinite(v):
            seeds.setdefault(key(c), []).append((c["seed"], float(v)))
    return {k: Cell(s["mean"], s["std"], s["n"], s["n_diverged"], tuple(seeds.get(k, ())))
            for s in group_stats(configs, values, by) for k in [key(s)]}


def _combo(terms) -> dict:
    """A linear combination ``sum w * cell`` computed per seed over the seeds every cell has (all cells share
    their seeds: the same initialization and data order), as ``common.paired`` of the per-seed values (mean,
    standard error, seeds, beyond 2 standard errors?): the paired comparison, whose shared seed noise cancels."""
    maps = [(w, dict(c.per_seed)) for w, c in terms]
    common = sorted(set.intersection(*(set(m) for _, m in maps)))
    return paired([sum(w * m[s] for w, m in maps) for s in common])


def _difference(a: Cell, b: Cell) -> dict:
    """``a - b`` paired by seed (``_combo``)."""
    return _combo([(1.0, a), (-1.0, b)])


def _ahead(p: dict) -> bool:
    """A paired difference more than 2 standard errors above 0."""
    return p["beyond"] and p["mean"] > 0


def _judge(p: dict) -> str:
    """A paired difference as ``mean ± se`` and whether it is beyond 2 standard errors."""
    if not p["beyond"]:
        return f"{signed(p)}, within 2 standard errors: not distinguishable from noise"
    size = f"{abs(p['mean']) / p['se']:.1f} standard errors" if p["se"] > 0 else "every seed the same"
    return f"{signed(p)}, {size}: a real difference"


def _versus(a: Cell, b: Cell) -> str:
    """The difference a - b, paired by seed, with its standard error, and whether it is within 2 of them."""
    return _judge(_difference(a, b))


def _r(rates) -> str:
    """A rate pair as ``(0.2, 0.5)``."""
    return "(" + ", ".join(f"{p:g}" for p in rates) + ")"


def _diverged(cells: dict) -> str:
    """`` (k runs at p = ... diverged ...)`` for the cells of a noise arm that lost members, else ``''``."""
    lost = {p: c.diverged for p, c in cells.items() if c.diverged}
    return "" if not lost else " (" + ", ".join(f"{k} run{'s' * (k > 1)} at p = {p:g}" for p, k in lost.items()) + \
        " diverged -- the loss went non-finite -- left out)"


def _plateau(history, end: int = None, last: int = PLATEAU) -> np.ndarray:
    """Per member, the median test accuracy over the ``last`` epochs up to ``end`` (default: the last epoch):
    at lr 0.1 single epochs spike (a loss spike can cost half the accuracy for one epoch), the median of the
    plateau does not. A member that diverged in that window gets NaN (counted as diverged, left out)."""
    a = history.metric("test_accuracy")[:end]
    return np.median(a[-last:], axis=0)


def add_arguments(p):
    p.add_argument("--mlp-epochs", type=runner.positive_int, default=50)
    p.add_argument("--mlp-long-epochs", type=runner.positive_int, default=200, help="§5.6 exercise 2's longer run")
    p.add_argument("--mlp-lr", type=runner.positive_float, default=0.1)
    p.add_argument("--mlp-batch-size", type=runner.positive_int, default=64)
    p.add_argument("--mlp-train-size", type=runner.positive_int, default=None,
                   help=f"§5.6's training images (default: all, up to {TRAIN_CAP})")
    p.add_argument("--hidden", type=runner.positive_int, nargs=2, default=(256, 256), metavar=("H1", "H2"))


def noisy_mlp(num_inputs: int, hidden, kind: str, num_outputs: int = 10, weight_init: str = "he") -> Model:
    """The scratch MLP's parameters (``init_mlp``: ``dense0 … dense{L}``) with another noise than dropout, at
    the traced per-hidden-layer ``hparams['rates']``: ``'dropconnect'`` masks the weights of ``dense{i+1}`` --
    the layer dropout's mask after hidden layer i feeds -- at ``rates[i]`` (one mask per minibatch, biases
    kept); ``'gaussian'`` multiplies hidden layer i's outputs by N(1, rates[i]/(1-rates[i])) noise."""
    if kind not in ("dropconnect", "gaussian"):
        raise ValueError(f"kind must be 'dropconnect' or 'gaussian', got {kind!r}")

    def apply(params, ms, x, *, key=None, train=False, hparams=None):
        rates, n = (hparams or {}).get("rates", (0.0,) * (len(params) - 1)), len(params)
        h = jnp.reshape(x, (x.shape[0], -1))
        for i in range(n):
            layer, k = params[f"dense{i}"], (None if key is None else jax.random.fold_in(key, i))
            w = dropconnect(layer["kernel"], rates[i - 1], k, train=train) if kind == "dropconnect" and i else \
                layer["kernel"]
            h = h @ w + layer["bias"]
            if i < n - 1:
                h = jax.nn.relu(h)
                h = gaussian_dropout(h, rates[i], k, train=train) if kind == "gaussian" else h
        return h, ms

    return Model(lambda key: (init_mlp(key, num_inputs, tuple(hidden), num_outputs, weight_init), {}), apply,
                 hparams=("rates",))


def section(run):
    args = run.args
    ds = run.ds or run.load_images()
    size = args.mlp_train_size or min(len(ds.x_train), TRAIN_CAP)
    data = run.images(ds, flatten=True, train_size=tiny(run, size, min(size, 128)))
    hidden = tiny(run, tuple(args.hidden), (16, 16))
    rates, decays = tiny(run, RATES, [0.0, 0.2, 0.5]), tiny(run, DECAYS, [0.0, 1e-2])
    seeds = list(range(args.seed, args.seed + tiny(run, args.seeds, 1)))
    many = list(range(args.seed, args.seed + tiny(run, 2 * args.seeds, 1)))   # where noise could decide
    epochs, long_epochs = tiny(run, args.mlp_epochs, 1), tiny(run, args.mlp_long_epochs, 2)
    ctx = dict(run=run, data=data, n_in=data[0].shape[1], hidden=hidden, seeds=seeds, many=many, rates=rates,
               where=f"{ds.name}, {len(data[0])} training images", common=dict(
                   epochs=epochs, batch_size=args.mlp_batch_size, progress_every=epochs))
    model = scratch_mlp(ctx["n_in"], hidden, 10, NONE, weight_init="he")
    out, grid_acc = _ex1_rates(ctx, model)
    long, long_members, drop, long_acc, answers = _ex2_3_long(ctx, model, long_epochs, epochs)
    out += answers
    out.append(_ex5_decay(ctx, model, grid_acc, decays, long_acc, long_epochs))
    out += _ex6_7_noises(ctx, grid_acc)
    out.append(_ex4_test_time(ctx, model, long, long_members, drop[0]))
    return in_book_order(out)


def _ex1_rates(ctx, model):
    run, rates, many = ctx["run"], ctx["rates"], ctx["many"]
    members = grid(many, rates=[(a, b) for a in rates for b in rates], lr=run.args.mlp_lr)
    res = run.sweep("5.6 rates", model, SCRATCH_SGD, ctx["data"], members, **ctx["common"])
    acc = _cells(members.configs, _plateau(res.history), ["rates"])
    best = max(acc, key=lambda k: acc[k].mean)
    tied = [k for k in acc if k == best or not _ahead(_difference(acc[best], acc[k]))]
    plot = plot_heatmap(np.array([[acc[(a, b)].mean for b in rates] for a in rates]), rates, rates,
                        run.out / "ex_5_6_1_rates.png", xlabel="drop rate after hidden layer 2",
                        ylabel="drop rate after hidden layer 1", fmt="{:.4f}",
                        title=f"§5.6 ex. 1: test accuracy, mean of {len(many)} seeds ({ctx['where']})")
    d2l, switched = acc[D2L_RATES], acc[D2L_RATES[::-1]]
    hi, n = rates[-1], len(rates)
    marg = lambda layer, r: float(np.mean([acc[(r, b) if layer == 0 else (b, r)].mean for b in rates]))
    gap = _combo([(1 / n, acc[(b, hi)]) for b in rates] + [(-1 / n, acc[(hi, b)]) for b in rates])
    layers = (f"heavy dropout hurts more after hidden layer {1 if gap['mean'] > 0 else 2} ({abs(gap['mean']):.4f} ± "
              f"{gap['se']:.4f}, paired)" if gap["beyond"] else
              f"the two layers' marginals differ by {signed(gap)} (paired), within noise")
    ds = _difference(d2l, switched)
    switch = ("switching D2L's rates changes nothing measurable" if not ds["beyond"] else
              f"the order of the rates matters: {_r(D2L_RATES[::-1])} is "
              f"{'better' if ds['mean'] < 0 else 'worse'} than {_r(D2L_RATES)} by {abs(ds['mean']):.4f}")
    text = (f"On {ctx['where']}, {len(many)} seeds per cell, the same {len(many)} (initialization and data order) "
            f"in every cell (test accuracy: per seed the median of the last "
            f"{min(PLATEAU, ctx['common']['epochs'])} of {ctx['common']['epochs']} epochs, as single epochs spike at "
            f"lr {run.args.mlp_lr:g}; cells: mean ± standard error over seeds; differences: mean ± standard error "
            f"of the per-seed difference): D2L's {_r(D2L_RATES)} {d2l}, switched {_r(D2L_RATES[::-1])} {switched}; "
            f"D2L minus switched {_judge(ds)}. Over the {n}x{n} grid the best cell is {_r(best)} "
            f"({acc[best]}) and {len(tied)} of {len(acc)} cells are within 2 paired standard errors of it. Averaged "
            f"over the other layer's rate, rate {hi:g} in layer 1 gives {marg(0, hi):.4f} and in layer 2 "
            f"{marg(1, hi):.4f} (rate 0: {marg(0, 0.0):.4f} / {marg(1, 0.0):.4f}): {layers}. Takeaway: {switch} "
            "on this data.")
    per_rates = [{"rates": list(k), "mean": c.mean, "std": c.std, "n": c.n} for k, c in acc.items()]
    return [answer("§5.6.1", "What happens if you change the dropout probabilities of the two layers, in particular "
                   "if you switch them?", text, plot, per_rates=per_rates,
                   d2l_minus_switched=[ds["mean"], ds["se"]])], acc


def _ex2_3_long(ctx, model, long_epochs, epochs):
    run, data = ctx["run"], ctx["data"]
    long_members = grid(ctx["seeds"], rates=[NONE, D2L_RATES], lr=run.args.mlp_lr)
    probe_x = jnp.asarray(data[0][:512])
    ctx["probe_n"] = len(probe_x)
    variances = []
    probe = jax.jit(jax.vmap(hidden_statistics, in_axes=(0, None, 0, None)))

    def measure(epoch, state, history):
        variances.append(jax.device_get(probe(state.params, probe_x, long_members.hparams["rates"],
                                              jax.random.key(epoch))))

    long = run.sweep("5.6 long", model, SCRATCH_SGD, data, long_members, epochs=long_epochs,
                     batch_size=run.args.mlp_batch_size, progress_every=long_epochs, after_epoch=measure)
    test_acc, test_loss = long.history.metric("test_accuracy"), long.history.metric("test_loss")
    train_loss = long.history.metric("train_loss")
    e = np.arange(1, long.history.epochs + 1)
    drop = [i for i, c in enumerate(long_members.configs) if c["rates"] == list(D2L_RATES)]
    none = [i for i, c in enumerate(long_members.configs) if c["rates"] == list(NONE)]
    mean = lambda a, cols: np.nanmean(a[:, cols], axis=1)
    plot = plot_panels([{"series": {"no dropout": (e, mean(test_acc, none)), f"dropout {_r(D2L_RATES)}":
                                    (e, mean(test_acc, drop))}, "xlabel": "epoch", "ylabel": "test accuracy",
                         "xscale": "log", "title": "test accuracy", "marks": {f"epoch {epochs}": epochs}},
                        {"series": {"no dropout, test": (e, mean(test_loss, none)), "dropout, test":
                                    (e, mean(test_loss, drop)), "no dropout, train": (e, mean(train_loss, none)),
                                    "dropout, train": (e, mean(train_loss, drop))},
                         "xlabel": "epoch", "ylabel": "loss", "xscale": "log", "yscale": "log", "title": "loss"}],
                       run.out / "ex_5_6_2_epochs.png",
                       f"§5.6 ex. 2: {long_epochs} epochs, mean of {len(ctx['seeds'])} seeds ({ctx['where']})")
    fin = _cells(long_members.configs, _plateau(long.history), ["rates"])
    at = _cells(long_members.configs, _plateau(long.history, min(epochs, long_epochs)), ["rates"])
    robust = lambda a, cols: float(np.mean(np.median(a[-PLATEAU:], axis=0)[cols]))
    peak = lambda cols: (float(np.nanmax(mean(test_acc, cols))), int(np.nanargmax(mean(test_acc, cols)) + 1))
    low = lambda cols: (float(np.nanmin(mean(test_loss, cols))), int(np.nanargmin(mean(test_loss, cols)) + 1))
    d, n = D2L_RATES, NONE
    final = _difference(fin[d], fin[n])
    extra = _combo([(1.0, fin[d]), (-1.0, at[d]), (-1.0, fin[n]), (1.0, at[n])])
    loss_d, loss_n = robust(test_loss, drop), robust(test_loss, none)
    out = [answer(
        "§5.6.2", "Increase the number of epochs and compare the results with and without dropout.",
        f"On {ctx['where']}, {len(ctx['seeds'])} seeds (the same in both arms), after {long_epochs} epochs: test "
        f"accuracy (per seed the median of the last {min(PLATEAU, long_epochs)} epochs; mean over seeds) {fin[d].mean:.4f} with "
        f"dropout {_r(d)} vs {fin[n].mean:.4f} without; dropout minus none, paired by seed: "
        f"{_judge(final)} (peaks of the seed means {peak(drop)[0]:.4f} at epoch {peak(drop)[1]} vs "
        f"{peak(none)[0]:.4f} at {peak(none)[1]}). At epoch {min(epochs, long_epochs)} (the other exercises' "
        f"budget; median of the {PLATEAU} epochs up to it) they were {at[d].mean:.4f} / {at[n].mean:.4f}: the extra "
        f"epochs change accuracy by {fin[d].mean - at[d].mean:+.4f} / {fin[n].mean - at[n].mean:+.4f}; dropout's "
        f"gain minus no-dropout's, paired: {_judge(extra)}. Without dropout the test loss (seed mean) "
        f"bottoms out at epoch {low(none)[1]} ({low(none)[0]:.3f}) and ends at {loss_n:.3f} while the training loss "
        f"goes to {robust(train_loss, none):.1e}; with dropout it ends at {loss_d:.3f} (minimum "
        f"{low(drop)[0]:.3f} at epoch {low(drop)[1]}). " + _long_verdict(loss_d, loss_n, final), plot,
        final={"dropout": fin[d].mean, "none": fin[n].mean, "paired_difference": [final["mean"], final["se"]],
               "extra_epochs_gain_difference": [extra["mean"], extra["se"]]})]
    if variances:
        out.append(_ex3_variance(ctx, variances, long.history.epochs, drop, none))
    return long, long_members, drop, fin, out


def _trend(y: np.ndarray, epochs: np.ndarray) -> str:
    """``a (epoch 1) → max b (epoch k) → c (epoch n)``: the first and last value and any interior extreme."""
    idx = sorted({0, int(np.argmax(y)), int(np.argmin(y)), len(y) - 1})
    tag = lambda i: ", max" if i == int(np.argmax(y)) and 0 < i < len(y) - 1 else \
        ", min" if i == int(np.argmin(y)) and 0 < i < len(y) - 1 else ""
    return " → ".join(f"{y[i]:.3g} (epoch {epochs[i]}{tag(i)})" for i in idx)


def _ex3_variance(ctx, variances, n_epochs, drop, none):
    ev = np.stack([v["eval"] for v in variances])   # (epochs seen, members, layers)
    tv = np.stack([v["train"] for v in variances])
    mu = np.stack([v["mean"] for v in variances])
    ve = np.arange(n_epochs - len(variances) + 1, n_epochs + 1)
    p = np.asarray(D2L_RATES)
    predicted = 1 / (1 - p) + mu ** 2 * p / ((1 - p) * ev)   # masks on / off if x's statistics were unchanged
    measured = tv / ev
    series = {}
    for layer in range(ev.shape[2]):
        series[f"layer {layer + 1}, no dropout"] = (ve, ev[:, none, layer].mean(axis=1))
        series[f"layer {layer + 1}, dropout model, eval"] = (ve, ev[:, drop, layer].mean(axis=1))
        series[f"layer {layer + 1}, dropout model, masks on"] = (ve, tv[:, drop, layer].mean(axis=1))
    plot = plot_panels([{"series": series, "xlabel": "epoch", "ylabel": "activation variance", "xscale": "log",
                         "yscale": "log", "title": f"hidden activations ({ctx['probe_n']} training images)"}],
                       ctx["run"].out / "ex_5_6_3_activation_variance.png", "§5.6 ex. 3: activation variance per layer")
    m = lambda a, cols, layer: a[:, cols, layer].mean(axis=1)   # per epoch, mean over seeds
    shown = [i for i, ep in enumerate(ve) if ep in (1, 2, 5, 10, 20, 50, 100, 200, 500) or i == len(ve) - 1]
    tab = table(["epoch", "no dropout (L1 / L2)", "dropout, eval (L1 / L2)", "dropout, masks on (L1 / L2)",
                 "on/off L1: measured (predicted)", "on/off L2: measured (predicted)"],
                [[int(ve[i]), pair(m(ev, none, 0)[i], m(ev, none, 1)[i]), pair(m(ev, drop, 0)[i], m(ev, drop, 1)[i]),
                  pair(m(tv, drop, 0)[i], m(tv, drop, 1)[i]),
                  *[f"{m(measured, drop, k)[i]:.3f} ({m(predicted, drop, k)[i]:.3f})" for k in (0, 1)]]
                 for i in shown])
    mr, pr = [m(measured, drop, k)[-1] for k in (0, 1)], [m(predicted, drop, k)[-1] for k in (0, 1)]
    mean_end = [float(m(mu, drop, k)[-1]) for k in (0, 1)]
    trends = "; ".join(f"{name}: " + ", ".join(f"layer {k + 1} {_trend(m(ev, cols, k), ve)}" for k in (0, 1))
                       for name, cols in (("no dropout", none), ("dropout model (eval mode)", drop)))
    text = (f"Variance over units and {ctx['probe_n']} training images, mean over {len(drop)} seeds, recorded after "
            f"every epoch "
            f"(table: selected epochs). Over training: {trends}. At the end the dropout model's eval-mode variance is "
            f"{pair(m(ev, drop, 0)[-1], m(ev, drop, 1)[-1])} vs {pair(m(ev, none, 0)[-1], m(ev, none, 1)[-1])} "
            f"without dropout (layer 1 / 2). Masks on vs off multiply the variance by {mr[0]:.3f} (layer 1, p = "
            f"{p[0]:g}) and {mr[1]:.3f} (layer 2, p = {p[1]:g}), against 1/(1-p) = {1 / (1 - p[0]):.3g} and "
            f"{1 / (1 - p[1]):.3g}. A mask m on x gives Var(m x/(1-p)) = Var(x)/(1-p) + E[x]² p/(1-p); with the "
            f"measured eval-mode E[x] ({mean_end[0]:.3g} / {mean_end[1]:.3g}) and Var(x) this predicts "
            f"{pr[0]:.3f} / {pr[1]:.3f}: " + _vs_prediction(mr, pr))
    return answer("§5.6.3", "What is the variance of the activations in each hidden layer with and without dropout? "
                  "How does it evolve over training?", text, plot, table=tab,
                  ratio_measured=[float(r) for r in mr], ratio_predicted=[float(r) for r in pr])


def _vs_prediction(measured, predicted) -> str:
    """How the measured masks-on/off variance ratios compare with the prediction from eval-mode statistics."""
    rel = [abs(a / b - 1) for a, b in zip(measured, predicted)]
    first = (f"layer 1 matches it ({100 * rel[0]:.1f}% off: its input statistics are exactly the eval-mode ones)"
             if rel[0] < 0.02 else f"layer 1 is {100 * rel[0]:.1f}% off")
    second = ("; layer 2 " + ("matches it too" if rel[1] < 0.02 else
                              f"is {'above' if measured[1] > predicted[1] else 'below'} it by {100 * rel[1]:.0f}%")
              + ", as layer 2 also receives layer 1's masked outputs (its own statistics are not the eval-mode ones).")
    return first + second


def _long_verdict(loss_drop: float, loss_none: float, gain: dict) -> str:
    """Ex. 2's conclusion from the final test losses and dropout's paired accuracy gain (``common.paired``)."""
    loss = ("Dropout ends with the lower test loss: it slows the memorisation that makes the unregularised test "
            "loss rise" if loss_drop < loss_none else "Dropout does not end with the lower test loss")
    acc_gain = gain["mean"]
    return loss + (f"; the accuracy difference ({acc_gain:+.4f}) is within noise." if not gain["beyond"] else
                   f"; dropout's accuracy is {'higher' if acc_gain > 0 else 'lower'} by {abs(acc_gain):.4f}.")


def _two_by_two(base: Cell, drop: Cell, decay: Cell, both: Cell) -> dict:
    """Gains over ``base`` and the interaction (gain of both minus the sum of the two gains), paired by seed."""
    return {"drop": _difference(drop, base), "decay": _difference(decay, base), "both": _difference(both, base),
            "interaction": _combo([(1.0, both), (-1.0, decay), (-1.0, drop), (1.0, base)])}


def _additivity(g: dict, epochs: int) -> str:
    """What a 2x2's gains let us say about additivity."""
    helps = [name for name in ("drop", "decay") if _ahead(g[name])]
    i = g["interaction"]
    verdict = ("no measurable interaction" if not i["beyond"] else
               "diminishing returns: together they gain less than the sum" if i["mean"] < 0 else
               "more than additive: together they gain more than the sum")
    if not helps:
        return (f"interaction {signed(i)} ({verdict}); but at {epochs} epochs neither regularizer helps on "
                "its own, so additivity can hardly be tested here")
    return (f"interaction {signed(i)}: {verdict}; "
            + " and ".join({"drop": "dropout", "decay": "weight decay"}[h] for h in helps) + " helps on its own")


def _ex5_decay(ctx, model, grid_acc, decays, long_acc, long_epochs):
    run, many = ctx["run"], ctx["many"]
    lams = [lam for lam in decays if lam > 0]
    members = grid(many, rates=[NONE, D2L_RATES], lam=lams, lr=run.args.mlp_lr)
    res = run.sweep("5.6 dropout x decay", model, SCRATCH_SGD, ctx["data"], members, **ctx["common"])
    acc = _cells(members.configs, _plateau(res.history), ["rates", "lam"])
    acc.update({(r, 0.0): grid_acc[r] for r in (NONE, D2L_RATES)})  # λ = 0: ex. 1's members (same seeds)
    base, drop = acc[(NONE, 0.0)], acc[(D2L_RATES, 0.0)]
    best_lam = max(lams, key=lambda lam: acc[(NONE, lam)].mean)
    decay, both = acc[(NONE, best_lam)], acc[(D2L_RATES, best_lam)]
    g = _two_by_two(base, drop, decay, both)
    # the same 2x2 at ex. 2's longer budget: its members are λ = 0; one more sweep adds λ = best_lam
    long_members = grid(ctx["seeds"], rates=[NONE, D2L_RATES], lam=[best_lam], lr=run.args.mlp_lr)
    lres = run.sweep("5.6 long decay", model, SCRATCH_SGD, ctx["data"], long_members,
                     **{**ctx["common"], "epochs": long_epochs, "progress_every": long_epochs})
    lacc = {**{(r, 0.0): long_acc[r] for r in (NONE, D2L_RATES)},
            **_cells(long_members.configs, _plateau(lres.history), ["rates", "lam"])}
    lg = _two_by_two(*(lacc[k] for k in ((NONE, 0.0), (D2L_RATES, 0.0), (NONE, best_lam), (D2L_RATES, best_lam))))
    rows = ["none", _r(D2L_RATES)]
    plot = plot_heatmap(np.array([[acc[(r, lam)].mean for lam in decays] for r in (NONE, D2L_RATES)]), rows, decays,
                        run.out / "ex_5_6_5_dropout_vs_decay.png", xlabel="weight decay λ", ylabel="dropout",
                        title=f"§5.6 ex. 5: test accuracy, mean of {len(many)} seeds ({ctx['where']})", fmt="{:.4f}")
    ep = ctx["common"]["epochs"]
    tab = table(["dropout, epochs", *[f"λ = {lam:g}" for lam in decays]],
                [[f"{name}, {ep}", *[str(acc[(r, lam)]) for lam in decays]] for name, r in zip(rows, (NONE, D2L_RATES))]
                + [[f"{name}, {long_epochs}", *[str(lacc[(r, lam)]) if (r, lam) in lacc else "–" for lam in decays]]
                   for name, r in zip(rows, (NONE, D2L_RATES))])
    text = (f"On {ctx['where']}, {len(many)} seeds, the same in every cell (test accuracy as in ex. 1; gains over "
            f"neither regularizer are paired by seed, mean ± standard error of the per-seed difference): at {ep} "
            f"epochs neither {base}; dropout {_r(D2L_RATES)} alone {drop} ({_versus(drop, base)}); weight decay "
            f"alone at its best λ = {best_lam:g} {decay} ({_versus(decay, base)}; λ picked on these test numbers, so "
            f"slightly optimistic); both {both} ({_versus(both, base)}); {_additivity(g, ep)}. At ex. 2's "
            f"{long_epochs} epochs ({len(ctx['seeds'])} seeds, same λ): neither {lacc[(NONE, 0.0)].mean:.4f}, gains "
            f"dropout {signed(lg['drop'])}, weight decay {signed(lg['decay'])}, both {signed(lg['both'])}; "
            f"{_additivity(lg, long_epochs)}.")
    return answer("§5.6.5", "Compare dropout and weight decay. What happens when both are used? Are the effects "
                  "additive?", text, plot, table=tab,
                  accuracy={f"{list(r)}, lam={lam}": c.mean for (r, lam), c in acc.items()},
                  gains={k: [v["mean"], v["se"]] for k, v in g.items()},
                  long_gains={k: [v["mean"], v["se"]] for k, v in lg.items()})


def _ex6_7_noises(ctx, grid_acc):
    run, rates, many = ctx["run"], ctx["rates"], ctx["many"]
    ps = [p for p in rates if p > 0]
    arms = {"dropout": {p: grid_acc[(p, p)] for p in rates}}
    for kind, label in (("dropconnect", "DropConnect"), ("gaussian", "Gaussian dropout")):
        members = grid(many, rates=[(p, p) for p in ps], lr=run.args.mlp_lr)
        res = run.sweep(f"5.6 {kind}", noisy_mlp(ctx["n_in"], ctx["hidden"], kind), SCRATCH_SGD, ctx["data"], members,
                        **ctx["common"])
        cells = _cells(members.configs, _plateau(res.history), ["rates"])
        arms[label] = {0.0: grid_acc[NONE], **{p: cells[(p, p)] for p in ps}}  # p = 0: the same plain MLP
    series = {label: (rates, [a[p].mean for p in rates], [a[p].se for p in rates]) for label, a in arms.items()}
    panel = dict(xlabel="rate p after both hidden layers (0: no noise)", ylabel="test accuracy",
                 title=f"{len(many)} seeds, bands ±1 standard error")
    best = {label: max(ps, key=lambda p: a[p].mean) for label, a in arms.items()}
    top = {label: arms[label][best[label]] for label in arms}
    none = grid_acc[NONE]
    per_p = lambda label: "; ".join(f"p = {p:g}: dropout {arms['dropout'][p]}, {label} {arms[label][p]}" for p in ps)
    plot6 = plot_panels([{**panel, "series": {k: series[k] for k in ("dropout", "DropConnect")}}],
                        run.out / "ex_5_6_6_dropconnect.png", f"§5.6 ex. 6: DropConnect vs dropout ({ctx['where']})")
    dc, dr = top["DropConnect"], top["dropout"]
    h = (*ctx["hidden"], 10)
    after = [f"dense{i}" for i in range(1, len(h))]
    sizes = " and ".join(f"batch x {h[i - 1]} x {h[i]} ({name})" for i, name in enumerate(after, 1))
    text6 = (f"DropConnect here: each weight of the {len(after)} layers after the hidden layers ({', '.join(after)}) "
             f"is kept with probability 1-p and scaled by 1/(1-p), one mask per minibatch shared by its examples (Wan "
             f"et al. 2013's fast variant; per-example masks would need {sizes} mask entries), biases kept; "
             f"dropout at p drops whole rows of those matrices per example instead. Pre-activations get the same "
             f"variance per unit, but DropConnect's noise is independent across output units. On {ctx['where']}, "
             f"{len(many)} seeds, the same in every arm (test accuracy as in ex. 1, mean ± standard error; differences "
             f"paired by seed): {per_p('DropConnect')}; no noise "
             f"{none}{_diverged(arms['DropConnect'])}. "
             f"Best DropConnect (p = {best['DropConnect']:g}) {dc} vs best dropout (p = {best['dropout']:g}) {dr}: "
             f"{_versus(dc, dr)}; DropConnect vs no noise {_versus(dc, none)}.")
    plot7 = plot_panels([{**panel, "series": series}], run.out / "ex_5_6_7_gaussian_noise.png",
                        f"§5.6 ex. 7: Gaussian dropout vs dropout, same variance ({ctx['where']})")
    gd = top["Gaussian dropout"]
    rows = [[f"{p:g}", f"{p / (1 - p):.3g}", str(arms["dropout"][p]), str(arms["Gaussian dropout"][p]),
             str(arms["DropConnect"][p]), signed(_difference(arms["Gaussian dropout"][p], arms["dropout"][p]))]
            for p in ps]
    tab = table(["p", "σ² = p/(1-p)", "dropout", "Gaussian dropout", "DropConnect",
                 "Gaussian − dropout (paired ± SE)"], rows)
    wins = _ahead(_difference(gd, dr))
    text7 = (f"Gaussian dropout: each hidden activation is multiplied by 1 + σε, ε ~ N(0, 1), σ² = p/(1-p) -- the "
             f"same mean and variance as inverted dropout's multiplier at rate p, but continuous (no unit is ever "
             f"switched off); eval mode is the identity (regjax.noise.gaussian_dropout). On {ctx['where']}, "
             f"{len(many)} seeds (differences paired by seed): {per_p('Gaussian dropout')}"
             f"{_diverged(arms['Gaussian dropout'])}. Best Gaussian (p = {best['Gaussian dropout']:g}) {gd} "
             f"vs best dropout (p = {best['dropout']:g}) {dr}: {_versus(gd, dr)} -- "
             + ("it outperforms dropout." if wins else "it does not measurably outperform dropout.")
             + " (This is Srivastava et al. 2014's Gaussian dropout."
             + ("" if "fashion" in ctx["where"].lower() else " The book asks about Fashion-MNIST; this ran on the "
                "data named above.") + ")")
    return [answer("§5.6.6", "What happens if we apply dropout to the individual weights of the weight matrix "
                   "rather than the activations?", text6, plot6,
                   accuracy={f"{label}, p={p}": a[p].mean for label, a in arms.items() for p in rates}),
            answer("§5.6.7", "Invent another technique for injecting random noise at each layer. Can it outperform "
                   "dropout?", text7, plot7, table=tab, best={k: [best[k], top[k].mean, top[k].se] for k in top})]


def _ex4_test_time(ctx, model, long, long_members, i):
    mc = _dropout_at_test_time(model, ctx["run"], ctx["data"], long.state, long_members, i)
    n = mc["samples"]
    return answer(
        "§5.6.4", "Why is dropout not typically used at test time?",
        f"With the dropout model {_r(D2L_RATES)} of ex. 2 (seed {long_members.configs[i]['seed']}): eval mode (no "
        f"masks) test accuracy {mc['eval']:.4f}; a single pass with masks on {mc['single_mean']:.4f} ± "
        f"{mc['single_sd']:.4f} (mean ± sd over {n} single passes, range {mc['single_min']:.4f} to "
        f"{mc['single_max']:.4f}); the average of the {n} passes' probabilities {mc['mc_mean']:.4f}. A masked pass "
        f"costs {mc['eval'] - mc['single_mean']:.4f} accuracy on average (a random thinned network); averaging {n} "
        f"passes, at {n}x the cost, ends {mc['mc_mean'] - mc['eval']:+.4f} from the single deterministic eval-mode "
        f"pass, whose 1/(1-p) scaling already makes it the expectation over masks (exactly for a linear layer).",
        mc.pop("plot"), **mc)


def _dropout_at_test_time(model, run, data, state, members, i):
    """Eval-mode vs masked predictions of member ``i`` of the stacked ``state``: the accuracy of each of 64
    single masked passes, and of the average of the first 1 ... 64 passes' class probabilities."""
    params = jax.tree_util.tree_map(lambda a: a[i], state.params)
    hp = {"rates": jnp.asarray(members.hparams["rates"][i])}
    x, y = jnp.asarray(data[2]), np.asarray(data[3])
    logits, _ = model.apply(params, {}, x, key=None, train=False, hparams=hp)
    eval_acc = float((np.asarray(logits).argmax(-1) == y).mean())
    counts = tiny(run, [1, 2, 4, 8, 16, 32, 64], [1, 2])
    probs = np.asarray(predict_with_dropout(model, params, {}, x, hp, jax.random.key(run.args.seed + 7), counts[-1]))
    single = (probs.argmax(-1) == y).mean(axis=1)
    accs = [float((probs[:n].mean(axis=0).argmax(-1) == y).mean()) for n in counts]
    plot = plot_panels([{"series": {"masks on, averaged": (counts, accs), "eval mode": (counts, [eval_acc] * len(counts)),
                                    "single masked pass (mean)": (counts, [float(single.mean())] * len(counts))},
                         "xlabel": "masked passes averaged", "ylabel": "test accuracy", "xscale": "log",
                         "title": f"dropout {_r(D2L_RATES)} model"}],
                       run.out / "ex_5_6_4_test_time.png", "§5.6 ex. 4: dropout at test time")
    return {"eval": eval_acc, "single_mean": float(single.mean()),
            "single_sd": sample_std(single, single=math.nan),
            "single_min": float(single.min()), "single_max": float(single.max()), "mc_mean": accs[-1],
            "samples": counts[-1], "passes": counts, "accuracy": accs, "plot": str(plot)}


def check(run, sections):
    """§5.6 trains on --mlp-train-size images (--train-size is §8.5's); refuse more than there are."""
    args = run.args
    if args.train_size is not None and "8.5" not in sections:
        run.error("--train-size applies to §8.5's LeNet; §5.6 trains on --mlp-train-size images")
    n = len(run.load_images().x_train)
    if args.mlp_train_size is not None and args.mlp_train_size > n:
        run.error(f"--mlp-train-size {args.mlp_train_size} exceeds the {n} training images of {run.ds.name}")
