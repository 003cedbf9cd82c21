"""§5.6 dropout: the dropout MLP (ReLU, 256-256, He init, SGD lr 0.1, batch 64, --mlp-epochs 50) on every
training image up to 10,000 (--mlp-train-size; the digits fallback has 1347): 1 switched rates (grid of both
rates), 2 --mlp-long-epochs 200 with and without dropout, 3 hidden activation variance per layer over training,
4 dropout at test time, 5 dropout vs weight decay vs both, 6 DropConnect (masks on single weights, one per
minibatch) vs dropout at the same rates, 7 Gaussian dropout (multiplicative N(1, p/(1-p)) noise, dropout's
variance) vs dropout. A run's test accuracy is its median over its last 10 epochs (at lr 0.1 single epochs
spike). Where noise could decide (1, 5, 6, 7) each configuration runs 2 x --seeds seeds and the answers give mean ±
standard error over seeds; ex. 1's grid also serves as the dropout arm of 5 (λ = 0), 6 and 7 (rates (p, p))."""
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
from regjax.probes import hidden_variances, predict_with_dropout

from .common import answer, in_book_order, pair, table, tiny

SECTION, TITLE = "5.6", "Dropout"
RATES = [0.0, 0.2, 0.5, 0.8]
DECAYS = [0.0, 1e-3, 3e-3, 1e-2]
D2L_RATES = (0.2, 0.5)
NONE = (0.0, 0.0)
PLATEAU = 10  # accuracies are medians over the last 10 epochs (single epochs spike at lr 0.1)
TRAIN_CAP = 10_000  # default --mlp-train-size: all training images up to this many


class Cell(NamedTuple):
    """One configuration's test accuracy over seeds: mean, sample std, number of seeds."""
    mean: float
    std: float
    n: int
    diverged: int = 0

    @property
    def se(self) -> float:
        return self.std / math.sqrt(self.n) if self.n > 1 else math.nan

    def __str__(self) -> str:
        return f"{self.mean:.4f} ± {self.se:.4f}"


def _cells(configs, values, by) -> dict:
    """``group_stats`` as {config value(s) as tuples: Cell}."""
    key = lambda s: tuple(tuple(s[b]) if isinstance(s[b], list) else s[b] for b in by)
    return {(k if len(by) > 1 else k[0]): Cell(s["mean"], s["std"], s["n"], s["n_diverged"])
            for s in group_stats(configs, values, by) for k in [key(s)]}


def _plateau(history, end: int = None, last: int = PLATEAU) -> np.ndarray:
    """Per member, the median test accuracy over the ``last`` epochs up to ``end`` (default: the last epoch):
    at lr 0.1 single epochs spike (a loss spike can cost half the accuracy for one epoch), the median of the
    plateau does not. A member that diverged in that window gets NaN (counted as diverged, left out)."""
    a = history.metric("test_accuracy")[:end]
    return np.median(a[-last:], axis=0)


def _diverged(cells: dict) -> str:
    """`` (k runs at p = ... diverged ...)`` for the cells of a noise arm that lost members, else ``''``."""
    lost = {p: c.diverged for p, c in cells.items() if c.diverged}
    return "" if not lost else " (" + ", ".join(f"{k} run{'s' * (k > 1)} at p = {p:g}" for p, k in lost.items()) + \
        " diverged -- the loss went non-finite -- left out)"


def _versus(a: Cell, b: Cell) -> str:
    """The difference a - b with its standard error, and whether it is within 2 standard errors (noise)."""
    diff, se = a.mean - b.mean, math.hypot(a.se, b.se)
    if not abs(diff) > 2 * se:
        return f"{diff:+.4f} ± {se:.4f}, within 2 standard errors: not distinguishable from noise"
    return f"{diff:+.4f} ± {se:.4f}, {abs(diff) / se:.1f} standard errors: a real difference"


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
    long, long_members, drop, answers = _ex2_3_long(ctx, model, long_epochs, epochs)
    out += answers
    out.append(_ex5_decay(ctx, model, grid_acc, decays))
    out += _ex6_7_noises(ctx, grid_acc)
    out.append(_ex4_test_time(ctx, model, long, long_members, drop[0]))
    return in_book_order(out)


def _ex1_rates(ctx, model):
    run, rates, many = ctx["run"], ctx["rates"], ctx["many"]
    members = grid(many, rates=[(a, b) for a in rates for b in rates], lr=run.args.mlp_lr)
    res = run.sweep("5.6 rates", model, None, ctx["data"], members, **ctx["common"])
    acc = _cells(members.configs, _plateau(res.history), ["rates"])
    best = max(acc, key=lambda k: acc[k].mean)
    tied = [k for k in acc if not acc[best].mean - acc[k].mean > 2 * math.hypot(acc[best].se, acc[k].se)]
    plot = plot_heatmap(np.array([[acc[(a, b)].mean for b in rates] for a in rates]), rates, rates,
                        run.out / "ex_5_6_1_rates.png", xlabel="drop rate after hidden layer 2",
                        ylabel="drop rate after hidden layer 1", fmt="{:.4f}",
                        title=f"§5.6 ex. 1: test accuracy, mean of {len(many)} seeds ({ctx['where']})")
    d2l, switched = acc[D2L_RATES], acc[D2L_RATES[::-1]]
    hi = rates[-1]
    marg = lambda layer, r: float(np.mean([acc[(r, b) if layer == 0 else (b, r)].mean for b in rates]))
    marg_se = lambda layer, r: math.sqrt(sum(acc[(r, b) if layer == 0 else (b, r)].se ** 2 for b in rates)) / len(rates)
    gap, gap_se = marg(1, hi) - marg(0, hi), math.hypot(marg_se(0, hi), marg_se(1, hi))
    layers = (f"heavy dropout hurts more after hidden layer {1 if gap > 0 else 2} ({abs(gap):.4f} ± {gap_se:.4f})"
              if abs(gap) > 2 * gap_se else f"the two layers' marginals differ by {gap:+.4f} ± {gap_se:.4f}, "
              "within noise")
    switch = "switching D2L's rates changes nothing measurable" if not abs(d2l.mean - switched.mean) > 2 * \
        math.hypot(d2l.se, switched.se) else "the order of the rates matters"
    text = (f"On {ctx['where']}, {len(many)} seeds per cell (test accuracy: per seed the median of "
            f"the last {min(PLATEAU, ctx['common']['epochs'])} of {ctx['common']['epochs']} epochs, as single epochs spike at "
            f"lr {run.args.mlp_lr:g}; mean ± standard error over seeds): D2L's (0.2, 0.5) "
            f"{d2l}, switched (0.5, 0.2) {switched}; D2L minus switched {_versus(d2l, switched)}. Over the "
            f"{len(rates)}x{len(rates)} grid the best cell is {best} ({acc[best]}) and {len(tied)} of {len(acc)} cells "
            f"are within 2 standard errors of it. Averaged over the other layer's rate, rate {hi} in layer 1 gives "
            f"{marg(0, hi):.4f} and in layer 2 {marg(1, hi):.4f} (rate 0: {marg(0, 0.0):.4f} / {marg(1, 0.0):.4f}): "
            f"{layers}. Takeaway: {switch} on this data.")
    per_rates = [{"rates": list(k), "mean": c.mean, "std": c.std, "n": c.n} for k, c in acc.items()]
    return [answer("§5.6.1", "What happens if you change the dropout probabilities of the two layers, in particular "
                   "if you switch them?", text, plot, per_rates=per_rates)], acc


def _ex2_3_long(ctx, model, long_epochs, epochs):
    run, data = ctx["run"], ctx["data"]
    long_members = grid(ctx["seeds"], rates=[NONE, D2L_RATES], lr=run.args.mlp_lr)
    probe_x = jnp.asarray(data[0][:512])
    variances = []
    probe = jax.jit(jax.vmap(hidden_variances, in_axes=(0, None, 0, None)))

    def measure(epoch, state, history):
        variances.append(jax.device_get(probe(state.params, probe_x, long_members.hparams["rates"],
                                              jax.random.key(epoch))))

    long = run.sweep("5.6 long", model, None, data, long_members, epochs=long_epochs,
                     batch_size=run.args.mlp_batch_size, progress_every=long_epochs, after_epoch=measure)
    test_acc, test_loss = long.history.metric("test_accuracy"), long.history.metric("test_loss")
    train_loss = long.history.metric("train_loss")
    e = np.arange(1, long.history.epochs + 1)
    drop = [i for i, c in enumerate(long_members.configs) if c["rates"] == list(D2L_RATES)]
    none = [i for i, c in enumerate(long_members.configs) if c["rates"] == list(NONE)]
    mean = lambda a, cols: np.nanmean(a[:, cols], axis=1)
    plot = plot_panels([{"series": {"no dropout": (e, mean(test_acc, none)), "dropout (0.2, 0.5)":
                                    (e, mean(test_acc, drop))}, "xlabel": "epoch", "ylabel": "test accuracy",
                         "xscale": "log", "title": "test accuracy", "marks": {f"epoch {epochs}": epochs}},
                        {"series": {"no dropout, test": (e, mean(test_loss, none)), "dropout, test":
                                    (e, mean(test_loss, drop)), "no dropout, train": (e, mean(train_loss, none)),
                                    "dropout, train": (e, mean(train_loss, drop))},
                         "xlabel": "epoch", "ylabel": "loss", "xscale": "log", "yscale": "log", "title": "loss"}],
                       run.out / "ex_5_6_2_epochs.png",
                       f"§5.6 ex. 2: {long_epochs} epochs, mean of {len(ctx['seeds'])} seeds ({ctx['where']})")
    robust = lambda a, cols, end=None: float(np.mean(np.median(a[:end][-PLATEAU:], axis=0)[cols]))
    fin = lambda a, cols: robust(a, cols)
    at = lambda a, cols: robust(a, cols, min(epochs, long_epochs))
    peak = lambda cols: (float(np.nanmax(mean(test_acc, cols))), int(np.nanargmax(mean(test_acc, cols)) + 1))
    low = lambda cols: (float(np.nanmin(mean(test_loss, cols))), int(np.nanargmin(mean(test_loss, cols)) + 1))
    spread = float(np.std(_plateau(long.history)[drop], ddof=1) / math.sqrt(len(drop))) if len(drop) > 1 else math.nan
    out = [answer(
        "§5.6.2", "Increase the number of epochs and compare the results with and without dropout.",
        f"On {ctx['where']}, {len(ctx['seeds'])} seeds, after {long_epochs} epochs: test accuracy (median "
        f"of the last {PLATEAU} epochs, mean over seeds) {fin(test_acc, drop):.4f} with dropout vs {fin(test_acc, none):.4f} without (standard error ≈ {spread:.4f}; "
        f"peaks {peak(drop)[0]:.4f} at epoch {peak(drop)[1]} vs {peak(none)[0]:.4f} at {peak(none)[1]}). At epoch "
        f"{min(epochs, long_epochs)} (the other exercises' budget; median of the {PLATEAU} epochs up to it) they were {at(test_acc, drop):.4f} / "
        f"{at(test_acc, none):.4f}: the extra epochs change accuracy by {fin(test_acc, drop) - at(test_acc, drop):+.4f}"
        f" / {fin(test_acc, none) - at(test_acc, none):+.4f}. Without dropout the test loss bottoms out at epoch "
        f"{low(none)[1]} ({low(none)[0]:.3f}) and ends at {fin(test_loss, none):.3f} while the training loss goes to "
        f"{fin(train_loss, none):.1e}; with dropout it ends at {fin(test_loss, drop):.3f} (minimum "
        f"{low(drop)[0]:.3f} at epoch {low(drop)[1]}). " + _long_verdict(fin(test_loss, drop), fin(test_loss, none),
                                                      fin(test_acc, drop) - fin(test_acc, none), spread), plot,
        final={"dropout": fin(test_acc, drop), "none": fin(test_acc, none)})]
    if variances:
        out.append(_ex3_variance(ctx, variances, long.history.epochs, drop, none))
    return long, long_members, drop, out


def _ex3_variance(ctx, variances, n_epochs, drop, none):
    ev = np.stack([v["eval"] for v in variances])   # (epochs seen, members, layers)
    tv = np.stack([v["train"] for v in variances])
    ve = np.arange(n_epochs - len(variances) + 1, n_epochs + 1)
    series = {}
    for layer in range(ev.shape[2]):
        series[f"layer {layer + 1}, no dropout"] = (ve, ev[:, none, layer].mean(axis=1))
        series[f"layer {layer + 1}, dropout model, eval"] = (ve, ev[:, drop, layer].mean(axis=1))
        series[f"layer {layer + 1}, dropout model, masks on"] = (ve, tv[:, drop, layer].mean(axis=1))
    plot = plot_panels([{"series": series, "xlabel": "epoch", "ylabel": "activation variance", "xscale": "log",
                         "yscale": "log", "title": "hidden activations (512 training images)"}],
                       ctx["run"].out / "ex_5_6_3_activation_variance.png", "§5.6 ex. 3: activation variance per layer")
    last = lambda a, cols, layer: float(a[-1, cols, layer].mean())
    ratios = [last(tv, drop, layer) / last(ev, drop, layer) for layer in (0, 1)]  # masks on / off
    return answer(
        "§5.6.3", "What is the variance of the activations in each hidden layer with and without dropout? How "
        "does it evolve over training?",
        "At the end, layer 1 / layer 2 variance: no dropout " + pair(last(ev, none, 0), last(ev, none, 1))
        + ", dropout model in eval mode " + pair(last(ev, drop, 0), last(ev, drop, 1)) + ", with its masks on "
        + pair(last(tv, drop, 0), last(tv, drop, 1)) + f" (after epoch 1, no dropout: "
        f"{pair(ev[0, none, 0].mean(), ev[0, none, 1].mean())}). Masks on vs off multiply the variance the next "
        f"layer sees by {ratios[0]:.2f} (layer 1, p = 0.2) and {ratios[1]:.2f} (layer 2, p = 0.5), against "
        f"1/(1-p) = 1.25 and 2: {_vs_inverse_keep(*ratios)}",
        plot)


def _long_verdict(loss_drop: float, loss_none: float, acc_gain: float, se: float) -> str:
    """Ex. 2's conclusion from the final test losses and the accuracy gain of dropout (with its standard error)."""
    loss = ("Dropout ends with the lower test loss: it slows the memorisation that makes the unregularised test "
            "loss rise" if loss_drop < loss_none else "Dropout does not end with the lower test loss")
    noise = not abs(acc_gain) > 2 * math.sqrt(2) * se
    return loss + (f"; the accuracy difference ({acc_gain:+.4f}) is within noise." if noise else
                   f"; dropout's accuracy is {'higher' if acc_gain > 0 else 'lower'} by {abs(acc_gain):.4f}.")


def _ex5_decay(ctx, model, grid_acc, decays):
    run, many = ctx["run"], ctx["many"]
    lams = [lam for lam in decays if lam > 0]
    members = grid(many, rates=[NONE, D2L_RATES], lam=lams, lr=run.args.mlp_lr)
    res = run.sweep("5.6 dropout x decay", model, None, ctx["data"], members, **ctx["common"])
    acc = _cells(members.configs, _plateau(res.history), ["rates", "lam"])
    acc.update({(r, 0.0): grid_acc[r] for r in (NONE, D2L_RATES)})  # λ = 0: ex. 1's members (same seeds)
    base, drop = acc[(NONE, 0.0)], acc[(D2L_RATES, 0.0)]
    best_lam = max(lams, key=lambda lam: acc[(NONE, lam)].mean)
    decay, both = acc[(NONE, best_lam)], acc[(D2L_RATES, best_lam)]
    interaction = (both.mean - decay.mean) - (drop.mean - base.mean)
    se = math.sqrt(sum(c.se ** 2 for c in (base, drop, decay, both)))
    rows = ["none", "(0.2, 0.5)"]
    plot = plot_heatmap(np.array([[acc[(r, lam)].mean for lam in decays] for r in (NONE, D2L_RATES)]), rows, decays,
                        run.out / "ex_5_6_5_dropout_vs_decay.png", xlabel="weight decay λ", ylabel="dropout",
                        title=f"§5.6 ex. 5: test accuracy, mean of {len(many)} seeds ({ctx['where']})", fmt="{:.4f}")
    tab = table(["dropout", *[f"λ = {lam:g}" for lam in decays]],
                [[name, *[str(acc[(r, lam)]) for lam in decays]] for name, r in zip(rows, (NONE, D2L_RATES))])
    verdict = ("no measurable interaction: the combination is as additive as the noise lets us see"
               if not abs(interaction) > 2 * se else
               "diminishing returns: together they gain less than the sum" if interaction < 0 else
               "more than additive: together they gain more than the sum")
    text = (f"On {ctx['where']}, {len(many)} seeds (test accuracy as in ex. 1, mean ± standard error): neither {base}; dropout "
            f"(0.2, 0.5) alone {drop} ({_versus(drop, base)}); weight decay alone at its best λ = {best_lam:g} "
            f"{decay} ({_versus(decay, base)}; λ picked on these test numbers, so slightly optimistic); both "
            f"{both} ({_versus(both, base)}). Interaction (gain of both minus the sum of the two gains) "
            f"{interaction:+.4f} ± {se:.4f}: {verdict}.")
    return answer("§5.6.5", "Compare dropout and weight decay. What happens when both are used? Are the effects "
                  "additive?", text, plot, table=tab,
                  accuracy={f"{list(r)}, lam={lam}": c.mean for (r, lam), c in acc.items()},
                  interaction=interaction, interaction_se=se)


def _ex6_7_noises(ctx, grid_acc):
    run, rates, many = ctx["run"], ctx["rates"], ctx["many"]
    ps = [p for p in rates if p > 0]
    arms = {"dropout": {p: grid_acc[(p, p)] for p in rates}}
    for kind, label in (("dropconnect", "DropConnect"), ("gaussian", "Gaussian dropout")):
        members = grid(many, rates=[(p, p) for p in ps], lr=run.args.mlp_lr)
        res = run.sweep(f"5.6 {kind}", noisy_mlp(ctx["n_in"], ctx["hidden"], kind), None, ctx["data"], members,
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
    text6 = (f"DropConnect here: each weight of the two layers after the hidden layers (dense1, dense2) is kept with "
             f"probability 1-p and scaled by 1/(1-p), one mask per minibatch shared by its examples (Wan et al. "
             f"2013's fast variant; per-example masks would cost a batch x 256 x 256 mask per layer), biases kept; "
             f"dropout at p drops whole rows of those matrices per example instead. Pre-activations get the same "
             f"variance per unit, but DropConnect's noise is independent across output units. On {ctx['where']}, "
             f"{len(many)} seeds, test accuracy (mean ± standard error, as in ex. 1): {per_p('DropConnect')}; no noise "
             f"{none}{_diverged(arms['DropConnect'])}. "
             f"Best DropConnect (p = {best['DropConnect']:g}) {dc} vs best dropout (p = {best['dropout']:g}) {dr}: "
             f"{_versus(dc, dr)}; DropConnect vs no noise {_versus(dc, none)}.")
    plot7 = plot_panels([{**panel, "series": series}], run.out / "ex_5_6_7_gaussian_noise.png",
                        f"§5.6 ex. 7: Gaussian dropout vs dropout, same variance ({ctx['where']})")
    gd = top["Gaussian dropout"]
    rows = [[f"{p:g}", f"{p / (1 - p):.3g}", str(arms["dropout"][p]), str(arms["Gaussian dropout"][p]),
             str(arms["DropConnect"][p]), _versus(arms["Gaussian dropout"][p], arms["dropout"][p]).split(",")[0]]
            for p in ps]
    tab = table(["p", "σ² = p/(1-p)", "dropout", "Gaussian dropout", "DropConnect", "Gaussian − dropout (± SE)"], rows)
    wins = gd.mean > dr.mean and gd.mean - dr.mean > 2 * math.hypot(gd.se, dr.se)
    text7 = (f"Gaussian dropout: each hidden activation is multiplied by 1 + σε, ε ~ N(0, 1), σ² = p/(1-p) -- the "
             f"same mean and variance as inverted dropout's multiplier at rate p, but continuous (no unit is ever "
             f"switched off); eval mode is the identity (regjax.noise.gaussian_dropout). On {ctx['where']}, "
             f"{len(many)} seeds: {per_p('Gaussian dropout')}"
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
    return answer(
        "§5.6.4", "Why is dropout not typically used at test time?",
        f"With the dropout model of ex. 2 (seed {long_members.configs[i]['seed']}): eval mode (no masks) test accuracy "
        f"{mc['eval']:.4f}; one pass with masks on {mc['one_pass']:.4f}; the average of {mc['samples']} masked passes "
        f"{mc['mc_mean']:.4f}. One masked pass costs {mc['eval'] - mc['one_pass']:.4f} accuracy (a random thinned "
        f"network); averaging {mc['samples']} passes, at {mc['samples']}x the cost, ends "
        f"{mc['mc_mean'] - mc['eval']:+.4f} from the single deterministic eval-mode pass, whose 1/(1-p) scaling "
        f"already makes it the expectation over masks (exactly for a linear layer).", mc.pop("plot"), **mc)


def _dropout_at_test_time(model, run, data, state, members, i):
    """Eval-mode vs masked predictions of member ``i`` of the stacked ``state``, for 1 ... 64 averaged masked
    passes."""
    params = jax.tree_util.tree_map(lambda a: a[i], state.params)
    hp = {"rates": jnp.asarray(members.hparams["rates"][i])}
    x, y = jnp.asarray(data[2]), np.asarray(data[3])
    logits, _ = model.apply(params, {}, x, key=None, train=False, hparams=hp)
    eval_acc = float((np.asarray(logits).argmax(-1) == y).mean())
    counts = tiny(run, [1, 2, 4, 8, 16, 32, 64], [1, 2])
    accs = []
    for n in counts:
        one, avg = predict_with_dropout(model, params, {}, x, hp, jax.random.key(run.args.seed + 7), n)
        accs.append(float((np.asarray(avg).argmax(-1) == y).mean()))
    one_pass = float((np.asarray(one).argmax(-1) == y).mean())
    plot = plot_panels([{"series": {"masks on, averaged": (counts, accs), "eval mode": (counts, [eval_acc] * len(counts))},
                         "xlabel": "masked passes averaged", "ylabel": "test accuracy", "xscale": "log",
                         "title": "dropout (0.2, 0.5) model"}],
                       run.out / "ex_5_6_4_test_time.png", "§5.6 ex. 4: dropout at test time")
    return {"eval": eval_acc, "one_pass": one_pass, "mc_mean": accs[-1], "samples": counts[-1],
            "passes": counts, "accuracy": accs, "plot": str(plot)}


def _vs_inverse_keep(ratio_1: float, ratio_2: float) -> str:
    """How the measured variance ratios (masks on / off) compare with 1/(1-p) for D2L's rates (0.2, 0.5)."""
    above = ratio_1 > 1.25 and ratio_2 > 2.0
    return ("above it, because the ReLU outputs' mean is not zero: with a mask m, Var(m x / (1-p)) = "
            "E[x²]/(1-p) - E[x]², which exceeds Var(x)/(1-p) by E[x]² p/(1-p) (and layer 2 also receives layer 1's "
            "masked outputs)." if above else
            "not above it in both layers (for x of mean 0 the ratio would be exactly 1/(1-p); a nonzero mean "
            "raises it): the sampled activations' statistics decide.")


def check(run, sections):
    """§5.6 trains on --mlp-train-size images (--train-size is §8.5's); refuse more than there are."""
    args = run.args
    if args.train_size is not None and "8.5" not in sections:
        run.error("--train-size applies to §8.5's LeNet; §5.6 trains on --mlp-train-size images")
    n = len(run.load_images().x_train)
    if args.mlp_train_size is not None and args.mlp_train_size > n:
        run.error(f"--mlp-train-size {args.mlp_train_size} exceeds the {n} training images of {run.ds.name}")
