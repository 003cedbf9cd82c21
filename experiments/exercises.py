#!/usr/bin/env python
"""D2L's exercises of §3.7 (weight decay), §5.6 (dropout) and §8.5 (batch normalization), answered with data:
each answer comes from vectorized sweeps (``regjax.engine.sweep``: many configurations, one compiled program), with a
plot. ``--section`` picks sections (default all three); ``exercises.md`` in --out collects question, answer and
plot for each.

§3.7  the §3.7 problem (n_train 20, d 200, batch 5, lr 0.003, 100 epochs; --epochs/--lr/--batch-size):
      1 λ curve, 2 validation-chosen vs test-optimal λ, 3 L1 vs L2.
§5.6  the dropout MLP (ReLU, 256-256, He init) on --mlp-train-size images (overfitting shows on a small set):
      1 switched rates (grid of both rates), 2 more epochs with and without dropout, 3 hidden activation
      variance per layer over training, 4 dropout vs weight decay vs both, 5 dropout at test time.
§8.5  LeNet (28x28) with and without BN: 1 usable learning-rate range, 2 the bias in front of BN removed.
"""
from __future__ import annotations

import functools
import math
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np

from regjax import decayed_sgd, runner
from regjax.engine import grid, group_stats
from regjax.models.adapters import scratch_lenet_bn, scratch_mlp
from regjax.penalty import l1_decayed_sgd
from regjax.plots import plot_heatmap, plot_panels
from regjax.probes import hidden_variances, predict_with_dropout, weight_decay_problem, without_biases
from regjax.selection import select_lambda

SECTIONS = ("3.7", "5.6", "8.5")
LAMBDAS = [0.0] + [3.0 * 10 ** (j / 4) for j in range(-5, 10)]          # §3.7's λ grid (0, 0.17 ... 533)
RATES = [0.0, 0.2, 0.5, 0.8]
DECAYS = [0.0, 1e-3, 3e-3, 1e-2, 3e-2]
LENET_LRS = [0.01, 0.1, 0.3, 1.0, 3.0, 10.0, 30.0, 100.0]
D2L_RATES = (0.2, 0.5)


def build_parser():
    p = runner.parser(__doc__, epochs=100, lr=0.003, batch_size=5, out="runs/exercises", image_dataset=True,
                   match_steps=False)
    p.add_argument("--section", choices=SECTIONS, nargs="+", default=list(SECTIONS))
    p.add_argument("--seeds", type=runner.positive_int, default=4, help="seeds per configuration (§3.7, §5.6)")
    p.add_argument("--mlp-epochs", type=runner.positive_int, default=100)
    p.add_argument("--mlp-long-epochs", type=runner.positive_int, default=400, help="§5.6 exercise 2's longer run")
    p.add_argument("--mlp-lr", type=runner.positive_float, default=0.1)
    p.add_argument("--mlp-batch-size", type=runner.positive_int, default=64)
    p.add_argument("--mlp-train-size", type=runner.positive_int, default=500)
    p.add_argument("--hidden", type=runner.positive_int, nargs=2, default=(256, 256), metavar=("H1", "H2"))
    p.add_argument("--lenet-epochs", type=runner.positive_int, default=20)
    p.add_argument("--lenet-batch-size", type=runner.positive_int, default=128)
    p.add_argument("--lenet-lrs", type=runner.positive_float, nargs="+", default=LENET_LRS)
    p.add_argument("--vmap-size", type=runner.positive_int, default=None,
                   help="LeNet members vectorized together (default: 1 on CPU, whose vmapped convolutions are "
                        "slower than one by one; all elsewhere)")
    return p


def main(argv=None):
    with runner.Run("exercises", build_parser(), argv) as run:
        _check_sizes(run)
        answers = []
        for section in run.args.section:
            answers += {"3.7": section_37, "5.6": section_56, "8.5": section_85}[section](run)
        text = "\n\n".join(f"**{a['id']}** {a['question']}\n{a['answer']}\n![{a['id']}]({Path(a['plot']).name})"
                           for a in answers)
        md = run.out / "exercises.md"
        md.write_text(text + "\n")
        run.say("\n".join(f"[{a['id']}] {a['answer']}" for a in answers) + f"\nanswers: {md}")
        payload = {"answers": answers, "plots": [a["plot"] for a in answers], "outputs": [str(md)]}
        run.finish(payload)
    return payload


def _check_sizes(run):
    """Refuse, before any section trains, sizes a section would not honour: §5.6 trains on --mlp-train-size
    images (--train-size is §8.5's), and neither may exceed the images there are."""
    args, sections = run.args, run.args.section
    if "5.6" in sections and args.train_size is not None and "8.5" not in sections:
        run.error("--train-size applies to §8.5's LeNet; §5.6 trains on --mlp-train-size images")
    if "5.6" not in sections and "8.5" not in sections:
        return
    n = len(run.load_images().x_train)
    for flag, size, section in (("--mlp-train-size", args.mlp_train_size, "5.6"),
                                ("--train-size", args.train_size, "8.5")):
        if section in sections and size is not None and size > n:
            run.error(f"{flag} {size} exceeds the {n} training images of {run.ds.name}")


def _answer(id_, question, answer, plot, **data):
    return {"id": id_, "question": question, "answer": answer, "plot": str(plot), "data": data}


def _trend(values):
    d = np.diff(np.asarray(values, float))
    if (d >= 0).all():
        return "rises monotonically"
    return "falls monotonically" if (d <= 0).all() else "changes non-monotonically"


def _seeds(args):
    return list(range(args.seed, args.seed + args.seeds))


def _stats(members, values, by):
    s = group_stats(members.configs, values, by)
    return np.array([r["mean"] for r in s]), np.array([r["std"] for r in s])


# ---- §3.7 weight decay -------------------------------------------------------------------------------------------

def section_37(run):
    args = run.args
    run.set_dataset({"name": "synthetic_linear (D2L §3.7)", "n_train": 20, "n_test": 100, "d": 200}, n_train=20)
    data, model = weight_decay_problem(args.seed)
    seeds, lam = _seeds(args), np.asarray(LAMBDAS)
    out = []

    # 1. λ curve
    members = grid(seeds, lam=LAMBDAS, lr=args.lr)
    res = run.sweep("3.7 lambda", model, None, data, members, epochs=args.epochs, loss="squared",
                    progress_every=args.epochs)
    train_m, train_s = _stats(members, res.final("train_loss"), ["lam"])
    test_m, test_s = _stats(members, res.final("test_loss"), ["lam"])
    best = int(np.nanargmin(test_m))
    plot = plot_panels([{"series": {"train": (lam, train_m, train_s), "test": (lam, test_m, test_s)}, "xlabel": "λ",
                         "ylabel": "final loss", "xscale": "symlog", "yscale": "log",
                         "title": f"{len(seeds)} seeds, {args.epochs} epochs"}],
                       run.out / "ex_3_7_1_lambda_curve.png", "§3.7 ex. 1: loss against λ")
    out.append(_answer(
        "§3.7.1", "Experiment with the value of λ: plot training and test loss as a function of λ. What do you "
        "observe?",
        f"Train loss {_trend(train_m)} with λ ({train_m[0]:.2g} at λ=0, {train_m[-1]:.2g} at λ={lam[-1]:.3g}) while "
        f"test loss falls from {test_m[0]:.3g} to its minimum {test_m[best]:.3g} at λ={lam[best]:.3g} "
        f"({'the largest λ of the grid' if best == len(lam) - 1 else f'then rises to {test_m[-1]:.3g}'}); the "
        f"test-train gap shrinks from {test_m[0] - train_m[0]:.3g} to {test_m[best] - train_m[best]:.3g}. The true "
        f"weights are 0.01 each (‖w‖ = 0.14), so strong shrinkage is what this problem wants.", plot,
        lambdas=LAMBDAS, train_mean=train_m.tolist(), test_mean=test_m.tolist(), test_std=test_s.tolist()))

    # 2. validation-chosen vs test-optimal λ
    sel = select_lambda(model, None, np.asarray(data[0]), np.asarray(data[1]), LAMBDAS, key=jax.random.key(args.seed),
                        k=5, seeds=seeds, epochs=args.epochs, batch_size=args.batch_size, hparams={"lr": args.lr},
                        train=functools.partial(run.sweep, "3.7 cross-validation", progress_every=args.epochs))
    at = {v: i for i, v in enumerate(LAMBDAS)}
    chosen, one_se = test_m[at[sel.best_lambda]], test_m[at[sel.one_se_lambda]]
    marks = {f"validation λ {sel.best_lambda:.3g}": sel.best_lambda, f"one-SE λ {sel.one_se_lambda:.3g}":
             sel.one_se_lambda, f"test-best λ {lam[best]:.3g}": lam[best]}
    plot = plot_panels([{"series": {"5-fold validation": (lam, sel.mean, sel.std)}, "marks": marks, "xlabel": "λ",
                         "ylabel": "loss", "xscale": "symlog", "yscale": "log", "title": "validation (folds)"},
                        {"series": {"test": (lam, test_m, test_s)}, "marks": marks, "xlabel": "λ", "ylabel": "loss",
                         "xscale": "symlog", "yscale": "log", "title": "test (seeds)"}],
                       run.out / "ex_3_7_2_validation.png", "§3.7 ex. 2: is the validation-chosen λ optimal?")
    out.append(_answer(
        "§3.7.2", "Use a validation set to find the optimal λ. Is it really the optimal value? Does this matter?",
        f"5-fold CV on the 20 training examples picks λ={sel.best_lambda:.3g} (one-SE rule {sel.one_se_lambda:.3g}); "
        f"the test-optimal λ is {lam[best]:.3g}. Test loss at the chosen λ {chosen:.3g}, "
        f"{100 * (chosen / test_m[best] - 1):+.0f}% from the optimum {test_m[best]:.3g} (one-SE λ: "
        f"{100 * (one_se / test_m[best] - 1):+.0f}%), while the test curve spans a factor "
        f"{np.nanmax(test_m) / test_m[best]:.0f} over the grid. With 16 examples per fold the validation estimate "
        f"is noisy (its std over folds is {sel.std[at[sel.best_lambda]] / sel.mean[at[sel.best_lambda]]:.0%} of "
        f"its mean at the chosen λ), so the choice lands near, not exactly at, the optimum; it matters little "
        f"here because the curve is flat near its minimum.", plot,
        selection=sel.to_dict(), best_test_lambda=float(lam[best])))

    # 3. L1 vs L2 (both as decay in the optimizer, λ injected)
    rows = {}
    for name, opt in (("L2", decayed_sgd(args.lr, 0.0)), ("L1", l1_decayed_sgd(args.lr, 0.0))):
        m = grid(seeds, weight_decay=LAMBDAS)
        r = run.sweep(f"3.7 {name}", model, opt, data, m, epochs=args.epochs, loss="squared",
                      progress_every=args.epochs)
        w = np.abs(np.asarray(r.state.params["dense0"]["kernel"]).reshape(len(m), -1))
        step = args.lr * m.hparams["weight_decay"][:, None]  # one L1 step: subgradient descent hovers within it
        rows[name] = {"test": _stats(m, r.final("test_loss"), ["weight_decay"]),
                      "small": _stats(m, (w <= step).mean(axis=1), ["weight_decay"])}
    b1, b2 = (int(np.nanargmin(rows[n]["test"][0])) for n in ("L1", "L2"))
    plot = plot_panels([{"series": {n: (lam, *rows[n]["test"]) for n in rows}, "xlabel": "λ", "ylabel": "final test loss",
                         "xscale": "symlog", "yscale": "log", "title": "test loss"},
                        {"series": {n: (lam, *rows[n]["small"]) for n in rows}, "xlabel": "λ",
                         "ylabel": "fraction of weights with |w| ≤ ηλ", "xscale": "symlog", "title": "weights at 0"}],
                       run.out / "ex_3_7_3_l1_vs_l2.png", "§3.7 ex. 3: L1 vs L2 penalty")
    frac = lambda n, b: 100 * rows[n]["small"][0][b]
    out.append(_answer(
        "§3.7.3", "What would the update equations look like if instead of ‖w‖² we used Σ|wᵢ| (L1)?",
        f"w ← w − η(∇loss + λ·sign(w)): a constant pull of ηλ toward 0, where L2's pull ηλw fades as w shrinks -- "
        f"so L1 drives weights to 0 (subgradient descent then hovers within one step ηλ of it) and L2 only shrinks "
        f"them. At L1's best λ = {lam[b1]:.3g} (test loss {rows['L1']['test'][0][b1]:.3g}), {frac('L1', b1):.0f}% of "
        f"the 200 weights end within ηλ = {args.lr * lam[b1]:.2g} of 0 under L1 and {frac('L2', b1):.0f}% under L2 "
        f"(test loss {rows['L2']['test'][0][b1]:.3g}); L2's best is λ = {lam[b2]:.3g} (test loss "
        f"{rows['L2']['test'][0][b2]:.3g}).", plot,
        lambdas=LAMBDAS, **{f"{n}_{k}_mean": v[0].tolist() for n in rows for k, v in rows[n].items()}))
    return out


# ---- §5.6 dropout ------------------------------------------------------------------------------------------------

def section_56(run):
    args = run.args
    ds = run.ds or run.load_images()
    data = run.images(ds, flatten=True, train_size=args.mlp_train_size)
    n_in, seeds = data[0].shape[1], _seeds(args)
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
    out.append(_answer(
        "§5.6.1", "What happens if you change the dropout probabilities of the two layers, in particular if you "
        "switch them?",
        f"(0.2, 0.5) gives test accuracy {d2l[0]:.4f} ± {d2l[1]:.4f}, switched (0.5, 0.2) {switched[0]:.4f} ± "
        f"{switched[1]:.4f} ({len(seeds)} seeds): {_compare(d2l, switched)}. Over the 4x4 grid the best is {best} "
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
    out.append(_answer(
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
        out.append(_answer(
            "§5.6.3", "What is the variance of the activations in each hidden layer with and without dropout? How "
            "does it evolve over training?",
            "At the end, layer 1 / layer 2 variance: no dropout " + _pair(last(ev, none, 0), last(ev, none, 1))
            + ", dropout model in eval mode " + _pair(last(ev, drop, 0), last(ev, drop, 1)) + ", with its masks on "
            + _pair(last(tv, drop, 0), last(tv, drop, 1)) + f" (after epoch 1, no dropout: "
            f"{_pair(ev[0, none, 0].mean(), ev[0, none, 1].mean())}). Masks on vs off multiply the variance the next "
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
    out.append(_answer(
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
    out.append(_answer(
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


def in_book_order(answers: list) -> list:
    """Answers sorted by their exercise number (some are computed out of order: one needs another's result)."""
    return sorted(answers, key=lambda a: tuple(int(p) for p in a["id"].lstrip("§").split(".")))


def _pair(a, b):
    return f"{a:.3g} / {b:.3g}"


def _compare(a, b):
    diff = a[0] - b[0]
    noise = math.hypot(a[1], b[1])
    if abs(diff) <= noise:
        return f"a difference of {diff:+.4f}, within the seed-to-seed spread"
    return f"D2L's order is {'better' if diff > 0 else 'worse'} by {abs(diff):.4f}"


# ---- §8.5 batch normalization ------------------------------------------------------------------------------------

def section_85(run):
    args = run.args
    ds = run.ds or run.load_images()
    data = run.images(ds, flatten=False, image_size=(28, 28))
    vmap_size = args.vmap_size or (1 if jax.default_backend() == "cpu" else None)
    common = dict(epochs=args.lenet_epochs, batch_size=args.lenet_batch_size, progress_every=args.lenet_epochs,
                  vmap_size=vmap_size)
    lrs, seed = [float(v) for v in args.lenet_lrs], args.seed
    members = grid([seed], lr=lrs)
    where = f"{ds.name} as 28x28, {len(data[0])} training images, {args.lenet_epochs} epochs, batch {args.lenet_batch_size}"
    out, results = [], {}

    # 2. the usable learning-rate range with and without BN (computed first: ex. 1 trains at its best rate)
    for name, use_bn in (("LeNet-BN", True), ("LeNet", False)):
        results[name] = run.sweep(f"8.5 {name}", scratch_lenet_bn(10, (28, 28, 1), use_bn=use_bn), None, data,
                                  members, **common)
    e = np.arange(1, args.lenet_epochs + 1)
    panels, usable = [], {}
    for name, res in results.items():
        acc = res.history.metric("test_accuracy")
        panels.append({"series": {f"lr {lr:g}": (e, acc[:, j]) for j, lr in enumerate(lrs)}, "xlabel": "epoch",
                       "ylabel": "test accuracy", "title": name})
        final = np.nan_to_num(acc[-1], nan=0.0)
        usable[name] = {"final": final.tolist(), "diverged": [d is not None for d in res.history.diverged_epoch],
                        "ok": [lr for lr, a in zip(lrs, final) if a >= 0.5]}
    panels.append({"series": {n: (lrs, u["final"]) for n, u in usable.items()}, "xlabel": "learning rate",
                   "ylabel": "final test accuracy", "xscale": "log", "title": "after the last epoch"})
    plot = plot_panels(panels, run.out / "ex_8_5_2_learning_rates.png", f"§8.5 ex. 2: learning rates ({where})")
    rng = lambda ok: f"{min(ok):g} to {max(ok):g}" if ok else "none of the grid"
    fails = {n: [lr for lr, d, a in zip(lrs, u["diverged"], u["final"]) if d or a < 0.5] for n, u in usable.items()}
    out.append(_answer(
        "§8.5.2", "Compare the learning rates for LeNet with and without BN. How large can the learning rate get "
        "before the optimization fails?",
        f"Reaching ≥ 0.5 test accuracy in {args.lenet_epochs} epochs: LeNet-BN for lr {rng(usable['LeNet-BN']['ok'])} "
        f"(best {max(usable['LeNet-BN']['final']):.3f}), plain LeNet for lr {rng(usable['LeNet']['ok'])} (best "
        f"{max(usable['LeNet']['final']):.3f}); diverged: LeNet-BN at {_lrs(lrs, usable['LeNet-BN']['diverged'])}, "
        f"LeNet at {_lrs(lrs, usable['LeNet']['diverged'])}. LeNet-BN is ahead at "
        f"{sum(a > b for a, b in zip(usable['LeNet-BN']['final'], usable['LeNet']['final']))} of {len(lrs)} "
        f"learning rates.", plot, usable=usable, failed=fails))

    # 1. the bias in front of BN removed (same seed, at LeNet-BN's best learning rate of the grid)
    j = int(np.argmax(usable["LeNet-BN"]["final"]))
    lr = lrs[j]
    stripped_model = without_biases(scratch_lenet_bn(10, (28, 28, 1)), ("conv0", "conv1", "dense0", "dense1"))
    stripped = run.sweep("8.5 LeNet-BN without biases before BN", stripped_model, None, data,
                         grid([seed], lr=[lr]), **common)
    full = results["LeNet-BN"]
    full_params = jax.tree_util.tree_map(lambda a: a[j], full.state.params)
    bias = max(float(jnp.abs(full_params[n]["bias"]).max()) for n in ("conv0", "conv1", "dense0", "dense1"))
    acc_full, acc_strip = full.history.metric("test_accuracy")[:, j], stripped.history.metric("test_accuracy")[:, 0]
    plot = plot_panels([{"series": {"with biases": (e, acc_full), "biases before BN removed": (e, acc_strip)},
                         "xlabel": "epoch", "ylabel": "test accuracy", "title": f"LeNet-BN, lr {lr:g}"}],
                       run.out / "ex_8_5_1_bias.png", "§8.5 ex. 1: the bias in front of BN")
    out.append(_answer(
        "§8.5.1", "Should we remove the bias of the layer in front of batch normalization? Why?",
        f"Yes: BN subtracts the batch mean, and a constant bias with it, so the bias gets no gradient (BN's own "
        f"shift β takes its role). Trained with biases at lr {lr:g}, those biases are at most {bias:.1e} after "
        f"{args.lenet_epochs} epochs (they start at 0: only round-off moves them); test accuracy {acc_full[-1]:.4f} "
        f"with them vs {acc_strip[-1]:.4f} without (largest per-epoch difference "
        f"{np.nanmax(np.abs(acc_full - acc_strip)):.4f})"
        + (": the same network, with fewer parameters." if np.nanmax(np.abs(acc_full - acc_strip)) < 0.01 else
           ": the runs differ only through round-off, which training at this learning rate amplifies."),
        plot, max_abs_bias=bias, accuracy_with=acc_full.tolist(),
        accuracy_without=acc_strip.tolist()))
    return in_book_order(out)


def _lrs(lrs, flags):
    picked = [f"{lr:g}" for lr, f in zip(lrs, flags) if f]
    return ", ".join(picked) if picked else "none"


if __name__ == "__main__":
    runner.script(main)
