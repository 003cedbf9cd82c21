"""§5.6 dropout: the dropout MLP (ReLU, 256-256, He init) on --mlp-train-size images: 1 switched rates (grid of
both rates), 2 more epochs with and without dropout, 3 hidden activation variance per layer over training, 4 dropout
at test time, 5 dropout vs weight decay vs both."""
from __future__ import annotations

import math

import jax
import jax.numpy as jnp
import numpy as np

from regjax import runner
from regjax.engine import grid, group_stats
from regjax.models.adapters import scratch_mlp
from regjax.plots import plot_heatmap, plot_panels
from regjax.probes import hidden_variances, predict_with_dropout

from .common import answer, compare, in_book_order, pair, seeds_of

SECTION, TITLE = "5.6", "Dropout"
RATES = [0.0, 0.2, 0.5, 0.8]
DECAYS = [0.0, 1e-3, 3e-3, 1e-2, 3e-2]
D2L_RATES = (0.2, 0.5)


def add_arguments(p):
    p.add_argument("--mlp-epochs", type=runner.positive_int, default=100)
    p.add_argument("--mlp-long-epochs", type=runner.positive_int, default=400, help="§5.6 exercise 2's longer run")
    p.add_argument("--mlp-lr", type=runner.positive_float, default=0.1)
    p.add_argument("--mlp-batch-size", type=runner.positive_int, default=64)
    p.add_argument("--mlp-train-size", type=runner.positive_int, default=500)
    p.add_argument("--hidden", type=runner.positive_int, nargs=2, default=(256, 256), metavar=("H1", "H2"))


def section(run):
    args = run.args
    ds = run.ds or run.load_images()
    data = run.images(ds, flatten=True, train_size=args.mlp_train_size)
    n_in, seeds = data[0].shape[1], seeds_of(args)
    model = scratch_mlp(n_in, tuple(args.hidden), 10, (0.0, 0.0), weight_init="he")
    common = dict(epochs=args.mlp_epochs, batch_size=args.mlp_batch_size, progress_every=args.mlp_epochs)
    where = f"{ds.name}, {len(data[0])} training images"
    out = []

    # 1. the rate grid (switched rates)
    pairs = [(a, b) for a in RATES for b in RATES]
    members = grid(seeds, rates=pairs, lr=args.mlp_lr)
    res = run.sweep("5.6 rates", model, None, data, members, **common)
    stats = group_stats(members.configs, res.final("test_accuracy"), ["rates"])
    acc = {tuple(s["rates"]): (s["mean"], s["std"]) for s in stats}
    best = max(acc, key=lambda k: acc[k][0])
    plot = plot_heatmap(np.array([[acc[(a, b)][0] for b in RATES] for a in RATES]), RATES, RATES,
                        run.out / "ex_5_6_1_rates.png", xlabel="drop rate after hidden layer 2",
                        ylabel="drop rate after hidden layer 1", title=f"§5.6 ex. 1: test accuracy ({where})")
    d2l, switched = acc[D2L_RATES], acc[D2L_RATES[::-1]]
    out.append(answer(
        "§5.6.1", "What happens if you change the dropout probabilities of the two layers, in particular if you "
        "switch them?",
        f"(0.2, 0.5) gives test accuracy {d2l[0]:.4f} ± {d2l[1]:.4f}, switched (0.5, 0.2) {switched[0]:.4f} ± "
        f"{switched[1]:.4f} ({len(seeds)} seeds): {compare(d2l, switched)}. Over the 4x4 grid the best is {best} "
        f"({acc[best][0]:.4f}). Averaged over the other layer's rate, rate 0.8 in layer 1 gives "
        f"{np.mean([acc[(0.8, b)][0] for b in RATES]):.4f} and in layer 2 {np.mean([acc[(a, 0.8)][0] for a in RATES]):.4f}"
        f" (rate 0 in either: {np.mean([acc[(0.0, b)][0] for b in RATES]):.4f} / "
        f"{np.mean([acc[(a, 0.0)][0] for a in RATES]):.4f}).", plot,
        per_rates=stats))

    # 2 + 3. more epochs with and without dropout; hidden activation variance over training
    long_members = grid(seeds, rates=[(0.0, 0.0), D2L_RATES], lr=args.mlp_lr)
    probe_x = jnp.asarray(data[0][:512])
    variances = []
    probe = jax.jit(jax.vmap(hidden_variances, in_axes=(0, None, 0, None)))

    def measure(epoch, state, history):
        variances.append(jax.device_get(probe(state.params, probe_x, long_members.hparams["rates"],
                                              jax.random.key(epoch))))

    long = run.sweep("5.6 long", model, None, data, long_members, epochs=args.mlp_long_epochs,
                     batch_size=args.mlp_batch_size, progress_every=args.mlp_long_epochs, after_epoch=measure)
    test_acc, test_loss = long.history.metric("test_accuracy"), long.history.metric("test_loss")
    train_loss = long.history.metric("train_loss")
    e = np.arange(1, long.history.epochs + 1)
    drop = [i for i, c in enumerate(long_members.configs) if c["rates"] == list(D2L_RATES)]
    none = [i for i, c in enumerate(long_members.configs) if c["rates"] == [0.0, 0.0]]
    mean = lambda a, cols: np.nanmean(a[:, cols], axis=1)
    plot = plot_panels([{"series": {"no dropout": (e, mean(test_acc, none)), "dropout (0.2, 0.5)":
                                    (e, mean(test_acc, drop))}, "xlabel": "epoch", "ylabel": "test accuracy",
                         "xscale": "log", "title": "test accuracy"},
                        {"series": {"no dropout, test": (e, mean(test_loss, none)), "dropout, test":
                                    (e, mean(test_loss, drop)), "no dropout, train": (e, mean(train_loss, none)),
                                    "dropout, train": (e, mean(train_loss, drop))},
                         "xlabel": "epoch", "ylabel": "loss", "xscale": "log", "yscale": "log", "title": "loss"}],
                       run.out / "ex_5_6_2_epochs.png", f"§5.6 ex. 2: {args.mlp_long_epochs} epochs ({where})")
    fin = lambda a, cols: float(mean(a, cols)[-1])
    peak = lambda cols: (float(np.nanmax(mean(test_acc, cols))), int(np.nanargmax(mean(test_acc, cols)) + 1))
    low = lambda cols: (float(np.nanmin(mean(test_loss, cols))), int(np.nanargmin(mean(test_loss, cols)) + 1))
    out.append(answer(
        "§5.6.2", "Increase the number of epochs and compare the results with and without dropout.",
        f"After {args.mlp_long_epochs} epochs: test accuracy {fin(test_acc, drop):.4f} with dropout vs "
        f"{fin(test_acc, none):.4f} without (peaks {peak(drop)[0]:.4f} at epoch {peak(drop)[1]} vs {peak(none)[0]:.4f} "
        f"at {peak(none)[1]}). Without dropout the test loss bottoms out at epoch {low(none)[1]} ({low(none)[0]:.3f}) "
        f"and ends at {fin(test_loss, none):.3f} while the training loss goes to {fin(train_loss, none):.1e}; with "
        f"dropout it ends at {fin(test_loss, drop):.3f} (minimum {low(drop)[0]:.3f} at epoch {low(drop)[1]}).",
        plot, final={"dropout": fin(test_acc, drop), "none": fin(test_acc, none)}))

    if variances:
        ev = np.stack([v["eval"] for v in variances])   # (epochs seen, members, layers)
        tv = np.stack([v["train"] for v in variances])
        ve = np.arange(long.history.epochs - len(variances) + 1, long.history.epochs + 1)
        series = {}
        for layer in range(ev.shape[2]):
            series[f"layer {layer + 1}, no dropout"] = (ve, ev[:, none, layer].mean(axis=1))
            series[f"layer {layer + 1}, dropout model, eval"] = (ve, ev[:, drop, layer].mean(axis=1))
            series[f"layer {layer + 1}, dropout model, masks on"] = (ve, tv[:, drop, layer].mean(axis=1))
        plot = plot_panels([{"series": series, "xlabel": "epoch", "ylabel": "activation variance", "xscale": "log",
                             "yscale": "log", "title": "hidden activations (512 training images)"}],
                           run.out / "ex_5_6_3_activation_variance.png", "§5.6 ex. 3: activation variance per layer")
        last = lambda a, cols, layer: float(a[-1, cols, layer].mean())
        ratios = [last(tv, drop, layer) / last(ev, drop, layer) for layer in (0, 1)]  # masks on / off
        out.append(answer(
            "§5.6.3", "What is the variance of the activations in each hidden layer with and without dropout? How "
            "does it evolve over training?",
            "At the end, layer 1 / layer 2 variance: no dropout " + pair(last(ev, none, 0), last(ev, none, 1))
            + ", dropout model in eval mode " + pair(last(ev, drop, 0), last(ev, drop, 1)) + ", with its masks on "
            + pair(last(tv, drop, 0), last(tv, drop, 1)) + f" (after epoch 1, no dropout: "
            f"{pair(ev[0, none, 0].mean(), ev[0, none, 1].mean())}). Masks on vs off multiply the variance the next "
            f"layer sees by {ratios[0]:.2f} (layer 1, p = 0.2) and {ratios[1]:.2f} (layer 2, p = 0.5), against "
            f"1/(1-p) = 1.25 and 2: {_vs_inverse_keep(*ratios)}",
            plot))

    # 5. dropout vs weight decay vs both (the book asks it fifth; computed here, listed in book order)
    members = grid(seeds, rates=[(0.0, 0.0), D2L_RATES], lam=DECAYS, lr=args.mlp_lr)
    res = run.sweep("5.6 dropout x decay", model, None, data, members, **common)
    stats = group_stats(members.configs, res.final("test_accuracy"), ["rates", "lam"])
    acc = {(tuple(s["rates"]), s["lam"]): s["mean"] for s in stats}
    spread = max(s["std"] for s in stats) / math.sqrt(len(seeds))  # standard error of a configuration's mean
    base = acc[((0.0, 0.0), 0.0)]
    gain_d = acc[(D2L_RATES, 0.0)] - base
    best_lam = max(DECAYS[1:], key=lambda lam: acc[((0.0, 0.0), lam)])
    gain_w = acc[((0.0, 0.0), best_lam)] - base
    gain_b = acc[(D2L_RATES, best_lam)] - base
    plot = plot_heatmap(np.array([[acc[(r, lam)] for lam in DECAYS] for r in ((0.0, 0.0), D2L_RATES)]),
                        ["none", "(0.2, 0.5)"], DECAYS, run.out / "ex_5_6_5_dropout_vs_decay.png",
                        xlabel="weight decay λ", ylabel="dropout", title=f"§5.6 ex. 5: test accuracy ({where})",
                        fmt="{:.4f}")
    out.append(answer(
        "§5.6.5", "Compare dropout and weight decay. What happens when both are used? Are the effects additive?",
        f"Test accuracy {base:.4f} with neither; dropout alone {gain_d:+.4f}, weight decay alone (best λ {best_lam:g}) "
        f"{gain_w:+.4f}, both {gain_b:+.4f} -- vs {gain_d + gain_w:+.4f} if they added up. "
        + (f"Every difference is within ~2 standard errors of a mean ({2 * spread:.4f}, {len(seeds)} seeds): on this "
           f"set neither regularizer changes test accuracy measurably, so there is no effect to add up."
           if max(abs(gain_d), abs(gain_w), abs(gain_b)) <= 2 * spread else
           f"{'Diminishing returns' if gain_b < gain_d + gain_w else 'At least additive'} (standard error of a "
           f"mean ≈ {spread:.4f}, {len(seeds)} seeds)."), plot,
        accuracy={f"{r}, lam={lam}": v for (r, lam), v in acc.items()}))

    # 4. dropout at test time
    i = drop[0]
    mc = _dropout_at_test_time(model, run, data, long.state, long_members, i, args)
    out.append(answer(
        "§5.6.4", "Why is dropout not typically used at test time?",
        f"With the dropout model of ex. 2 (seed {long_members.configs[i]['seed']}): eval mode (no masks) test accuracy "
        f"{mc['eval']:.4f}; one pass with masks on {mc['one_pass']:.4f}; the average of {mc['samples']} masked passes "
        f"{mc['mc_mean']:.4f}. One masked pass costs {mc['eval'] - mc['one_pass']:.4f} accuracy (a random thinned "
        f"network); averaging {mc['samples']} passes, at {mc['samples']}x the cost, ends "
        f"{mc['mc_mean'] - mc['eval']:+.4f} from the single deterministic eval-mode pass, whose 1/(1-p) scaling "
        f"already makes it the expectation over masks (exactly for a linear layer).", mc.pop("plot"), **mc))
    return in_book_order(out)


def _dropout_at_test_time(model, run, data, state, members, i, args):
    """Eval-mode vs masked predictions of member ``i`` of the stacked ``state``, for 1 ... 64 averaged masked
    passes."""
    params = jax.tree_util.tree_map(lambda a: a[i], state.params)
    hp = {"rates": jnp.asarray(members.hparams["rates"][i])}
    x, y = jnp.asarray(data[2]), np.asarray(data[3])
    logits, _ = model.apply(params, {}, x, key=None, train=False, hparams=hp)
    eval_acc = float((np.asarray(logits).argmax(-1) == y).mean())
    counts = [1, 2, 4, 8, 16, 32, 64]
    accs = []
    for n in counts:
        one, avg = predict_with_dropout(model, params, {}, x, hp, jax.random.key(args.seed + 7), n)
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
