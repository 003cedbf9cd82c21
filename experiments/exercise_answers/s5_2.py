"""§5.2 implementation of multilayer perceptrons: D2L's one-hidden-layer MLP (ReLU, N(0, 0.01²) weights, plain SGD
lr 0.1) on run.load_images() (offline: the digits, 64 inputs), trained at batch 64 for 40 epochs (880 SGD steps;
see BATCH/EPOCHS): 1 width, 2 depth, 3 the one-neuron bottleneck, 4 learning rate x epochs, 5 a joint search
(grid, random search and successive halving replayed on the per-epoch curves), 6 scratch vs Flax linen speed,
7 aligned vs misaligned matmuls, 8 activations, 9 initializations; and the book's MLP diagram."""
from __future__ import annotations

import math
import os

import jax
import jax.numpy as jnp
import numpy as np

from regjax.engine import grid
from regjax.models.adapters import mlp_model, scratch_mlp
from regjax.plots import plot_panels, save_figure

from .common import (SCRATCH_SGD, answer, figure, in_book_order, paired, seed_stats, seeds_of, signed, table,
                     timed, tiny)
from .search import grid_best, random_search, successive_halving

SECTION, TITLE = "5.2", "Implementation of multilayer perceptrons"
# D2L trains 10 epochs at batch 256 on 60,000 images: 2,350 SGD steps. The digits have 1,347 training images
# (6 batches of 256 an epoch), so batch 64 (22 steps an epoch, the last one partial) for 40 epochs gives 880 steps -- enough for the
# test accuracy to level off (it moves by < 0.01 over the last 10 epochs) at a cost the 3-minute budget allows.
BATCH, EPOCHS, LR, WIDTH = 64, 40, 0.1, 256
TRAIN_CAP = 2000   # training images at most (Fashion-MNIST's 60,000 would not fit the time budget)
WIDTHS = [1, 4, 8, 16, 32, 64, 128, 256, 512, 1024]
LRS = [0.01, 0.03, 0.1, 0.3, 1.0, 3.0]
ACTIVATIONS = {"relu": jax.nn.relu, "sigmoid": jax.nn.sigmoid, "tanh": jnp.tanh, "gelu": jax.nn.gelu,
               "elu": jax.nn.elu, "swish": jax.nn.swish}
D2L_INIT = "normal σ=0.01 (D2L)"
INITS = {D2L_INIT: "normal", "he": "he", "xavier": "xavier",
         "normal σ=1": jax.nn.initializers.normal(1.0), "zeros": jax.nn.initializers.zeros}
SPEED_WIDTHS, SPEED_EPOCHS = [64, 512, 2048], [12, 6, 3]
MATMUL_SIZES = [1000, 1024, 1025, 1026, 1028, 1032, 1040]


def _mlp(n_in, hidden, activation="relu", init=D2L_INIT):
    return scratch_mlp(n_in, tuple(hidden), 10, rates=(0.0,) * len(hidden), weight_init=INITS[init],
                       activation=ACTIVATIONS[activation])


def section(run):
    args = run.args
    ds = run.ds or run.load_images()
    data = run.images(ds, flatten=True, train_size=min(len(ds.x_train), tiny(run, TRAIN_CAP, 300)))
    seeds = tiny(run, seeds_of(args), seeds_of(args)[:1])
    epochs = tiny(run, EPOCHS, 2)
    n_in = int(data[0].shape[1])
    # One sweep over the seeds per configuration, kept by (hidden widths, activation, init): D2L's net (1 hidden
    # layer of `width`, ReLU, σ = 0.01) serves ex. 1, 2, 5, 8 and 9 and the He-init one ex. 2 and 9; the dict
    # trains each configuration once instead of once per exercise.
    trained = {}

    def mlp_sweep(hidden, activation="relu", init=D2L_INIT):
        key = (tuple(hidden), activation, init)
        if key not in trained:
            trained[key] = run.sweep(f"5.2 {'x'.join(map(str, hidden))} {activation} {init}",
                                     _mlp(n_in, hidden, activation, init), SCRATCH_SGD, data, grid(seeds, lr=LR),
                                     epochs=epochs, batch_size=BATCH, progress_every=epochs)
        return trained[key]

    width = tiny(run, WIDTH, 16)
    where = f"{ds.name}, {len(data[0])} training / {len(data[2])} test images, batch {BATCH}, {epochs} epochs"
    ctx = {"run": run, "data": data, "seeds": seeds, "epochs": epochs, "n_in": n_in, "mlp_sweep": mlp_sweep,
           "where": where}
    out = [_book_figure(run, n_in)]
    out += _width_and_bottleneck(ctx, tiny(run, WIDTHS, [1, 16]))
    out.append(_depth(ctx, width, tiny(run, [1, 2, 3], [1])))
    lr_answer, lr_curves = _learning_rate(ctx, width, tiny(run, LRS, [0.1, 1.0]), tiny(run, [5, 10, epochs], [1, 2]))
    out.append(lr_answer)
    out.append(_joint_search(ctx, lr_curves))
    out.append(_speed(ctx, tiny(run, SPEED_WIDTHS, [16]), tiny(run, SPEED_EPOCHS, [2]), tiny(run, 3, 1)))
    out.append(_matmul(run, tiny(run, MATMUL_SIZES, [64, 65]), tiny(run, 7, 2)))
    out.append(_activations(ctx, width, tiny(run, list(ACTIVATIONS), ["relu", "tanh"])))
    out.append(_inits(ctx, width, tiny(run, list(INITS), list(INITS)[:2])))
    return in_book_order(out)


# --- the book's figure -----------------------------------------------------------------------------------------

def _book_figure(run, n_in):
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=(6.4, 4.0))
    FigureCanvasAgg(fig)
    ax = fig.subplots()
    layers = [("784 inputs", 5, "x"), ("256 hidden (ReLU)", 5, "h"), ("10 outputs", 4, "o")]
    ys = {}
    for col, (label, k, sym) in enumerate(layers):
        y = np.linspace(0.8, -0.8, k + 1)
        ys[col] = np.delete(y, k - 1)          # the second-to-last slot holds the ellipsis
        ax.text(col, y[k - 1], "⋮", ha="center", va="center", fontsize=16)
        for i, yy in enumerate(ys[col]):
            last = i == len(ys[col]) - 1
            index = {"x": 784, "h": 256, "o": 10}[sym] if last else i + 1
            ax.add_patch(_circle(col, yy))
            ax.text(col, yy, f"${sym}_{{{index}}}$", ha="center", va="center", fontsize=7, zorder=3)
        ax.text(col, -1.05, label, ha="center", va="top", fontsize=9)
    for col in (0, 1):
        for y0 in ys[col]:
            for y1 in ys[col + 1]:
                ax.plot([col + 0.12, col + 1 - 0.12], [y0, y1], color="0.6", linewidth=0.5, zorder=1)
    ax.text(0.5, 1.0, "W⁽¹⁾ 784×256, b⁽¹⁾", ha="center", fontsize=8)
    ax.text(1.5, 1.0, "W⁽²⁾ 256×10, b⁽²⁾", ha="center", fontsize=8)
    ax.set(xlim=(-0.4, 2.4), ylim=(-1.3, 1.15), aspect="equal")
    ax.axis("off")
    ax.set_title("An MLP with one hidden layer of 256 units (D2L §5.2)", fontsize=10)
    path = save_figure(fig, run.out / "book_5_2_mlp.png")
    return figure(SECTION, "mlp", f"the one-hidden-layer MLP of §5.2 (784-256-10, ReLU); run here with {n_in} "
                  f"inputs", path)


def _circle(x, y):
    from matplotlib.patches import Circle

    return Circle((x, y), 0.12, facecolor="#dbe9f6", edgecolor="#1f77b4", zorder=2)


# --- 1 and 3: width ---------------------------------------------------------------------------------------------

def _width_and_bottleneck(ctx, widths):
    run, data, seeds, epochs, where = (ctx[k] for k in ("run", "data", "seeds", "epochs", "where"))
    mlp_sweep = ctx["mlp_sweep"]
    results = {w: mlp_sweep((w,)) for w in widths}
    test = {w: seed_stats(r.final("test_accuracy")) for w, r in results.items()}
    train = {w: seed_stats(r.final("train_accuracy")) for w, r in results.items()}
    w_arr = np.asarray(widths, float)
    best = max(widths, key=lambda w: test[w].mean)
    near = min(w for w in widths if test[w].mean >= test[best].mean - test[best].std)
    plot = plot_panels([{"series": {"test": (w_arr, [test[w].mean for w in widths], [test[w].std for w in widths]),
                                    "train (last epoch, training mode)": (w_arr, [train[w].mean for w in widths],
                                                                          [train[w].std for w in widths])},
                         "xlabel": "hidden units", "ylabel": "accuracy", "xscale": "log",
                         "marks": {f"best {best}": best},
                         "title": f"{len(seeds)} seeds"}],
                       run.out / "ex_5_2_1_width.png", f"§5.2 ex. 1: accuracy vs width ({where})")
    big = widths[-1]
    steps = epochs * -(-len(data[0]) // BATCH)
    fits = train[big].mean > train[near].mean
    out = [answer(
        "§5.2.1", "Change the number of hidden units and plot how it affects accuracy. What is the best value?",
        f"Test accuracy after {epochs} epochs ({steps} SGD steps of batch {BATCH} at lr {LR}, "
        f"{len(seeds)} seeds) goes from {test[widths[0]]} at width {widths[0]} to {test[best]} "
        f"at the best width, {best}" + (f" (the widest, {big}: {test[big]})" if big != best else "")
        + f"; every width from {near} on is within one seed-std of the best on {run.ds.name}. The last-epoch "
        f"training accuracy {'still rises' if fits else 'does not rise'} past that "
        f"({train[near]} at {near}, {train[big]} at {big})"
        + (": within the same step budget wider nets fit the training set better, but the test accuracy gains "
           "no more than the seed-to-seed spread." if fits else ".") + _book_width(test, best),
        plot, widths=widths, test_mean=[test[w].mean for w in widths], test_std=[test[w].std for w in widths],
        train_mean=[train[w].mean for w in widths], best_width=best, sgd_steps=steps)]
    out.append(_bottleneck(ctx, results, test, widths))
    return out


def _book_width(test, best) -> str:
    if WIDTH not in test:
        return ""
    inside = test[WIDTH].mean >= test[best].mean - test[best].std
    return f" The book's {WIDTH} ({test[WIDTH]}) is {'inside' if inside else 'outside'} that band."


def _bottleneck(ctx, results, test, widths):
    """Width-1 models: accuracy and how many classes they can predict at all (their logits lie on one ray)."""
    n_in, data = ctx["n_in"], ctx["data"]
    res = results[widths[0]]
    model = _mlp(n_in, (widths[0],))
    x = jnp.asarray(data[2])
    predict = jax.jit(jax.vmap(lambda p: model.apply(p, {}, x, key=None, train=False)[0].argmax(-1)))
    preds = np.asarray(predict(res.state.params))
    classes = [len(np.unique(p)) for p in preds]
    rows = [[w, str(test[w])] for w in widths if w <= 4]
    tab = table(["hidden units", "test accuracy (mean ± std)"], rows)
    tab += "\n\n" + table(["seed", "distinct classes predicted (of 10)", "test accuracy"],
                          [[c["seed"], k, float(a)] for c, k, a in zip(res.members.configs, classes,
                                                                      res.final("test_accuracy"))])
    return answer(
        "§5.2.3", "Why is it a bad idea to insert a hidden layer with a single neuron? What could go wrong?",
        f"A one-neuron layer squeezes every example into one number h = ReLU(w·x + b): the map to the 10 logits "
        f"o = h·v + c has rank 1, so all examples lie on one ray in logit space and each class can win on at most one "
        f"interval of h -- the classes must be ordered along a single line, and whatever the layers before it compute "
        f"is lost in the bottleneck. If the unit's pre-activation is negative for every input (dead ReLU) the network "
        f"outputs a constant and its gradient is zero. Measured with width {widths[0]}: test accuracy "
        f"{test[widths[0]]} vs {test[widths[-1]]} at width {widths[-1]}; the width-{widths[0]} models "
        f"predict {min(classes)}-{max(classes)} distinct classes on the test set.", table=tab,
        distinct_classes=classes)


# --- 2: depth ----------------------------------------------------------------------------------------------------

def _depth(ctx, width, depths):
    """Depth with D2L's N(0, 0.01²) init and with He init (Var = 2/fan_in), to separate depth from the init."""
    run, seeds, epochs, mlp_sweep, where = (ctx[k] for k in ("run", "seeds", "epochs", "mlp_sweep", "where"))
    inits = [D2L_INIT, "he"]
    results = {(i, d): mlp_sweep((width,) * d, init=i) for i in inits for d in depths}
    per = {k: r.final("test_accuracy") for k, r in results.items()}
    test = {k: seed_stats(v) for k, v in per.items()}
    e = np.arange(1, epochs + 1)
    curves = {k: r.history.metric("test_accuracy") for k, r in results.items()}
    first = {k: _first_epoch(np.nanmean(c, axis=1), 0.5) for k, c in curves.items()}
    short = {D2L_INIT: "σ=0.01", "he": "He"}
    plot = plot_panels([{"series": {f"{d} layer{'s' * (d > 1)}": (e, np.nanmean(curves[i, d], axis=1),
                                                                   np.nanstd(curves[i, d], axis=1)) for d in depths},
                         "xlabel": "epoch", "ylabel": "test accuracy",
                         "title": f"{short[i]} init, width {width}, {len(seeds)} seeds"} for i in inits],
                       run.out / "ex_5_2_2_depth.png", f"§5.2 ex. 2: adding hidden layers ({where})")

    def line(i):
        return f"{short[i]} init: " + "; ".join(
            f"{d} layer{'s' * (d > 1)} {test[i, d]} ("
            + (f"first ≥ 0.5 at epoch {first[i, d]}" if first[i, d] else f"never reaches 0.5 in {epochs} "
               "epochs") + ")" for d in depths)

    deep = [d for d in depths if d > depths[0]]
    gaps = {(i, d): _paired(per[i, d], per[i, depths[0]]) for i in inits for d in deep}
    worse = {i: [d for d in deep if gaps[i, d]["beyond"] and gaps[i, d]["mean"] < 0] for i in inits}
    verdict = ""
    if deep:
        verdict = (" Paired per-seed differences from one layer of the same init: " + "; ".join(
            f"{short[i]} {d} layers {_pd(gaps[i, d])}" for i in inits for d in deep) + ". So "
            + ("the loss with depth at σ=0.01 comes from the init, not from depth itself: with He init the deeper "
               "nets are not worse beyond the noise." if worse[inits[0]] and not worse["he"] else
               "depth costs accuracy even with He init." if worse["he"] else
               "no depth is worse than one layer beyond the noise with either init."))
    return answer(
        "§5.2.2", "Try adding a hidden layer to see how it affects the results.",
        f"Width {width}, lr {LR}, {len(seeds)} seeds. {line(inits[0])}. {line('he')}. With N(0, 0.01²) "
        f"weights each extra ReLU layer of {width} units scales the signal by about 0.01·√({width}/2) = "
        f"{0.01 * math.sqrt(width / 2):.2f}, forward and backward; He init keeps it at unit scale." + verdict,
        plot, test={f"{short[i]} depth {d}": test[i, d] for i in inits for d in depths},
        first_epoch_above_half={f"{short[i]} depth {d}": first[i, d] for i in inits for d in depths},
        paired_vs_one_layer={f"{short[i]} depth {d}": gaps[i, d] for i in inits for d in deep})


def _paired(a, b) -> dict:
    """``common.paired`` per-seed differences a - b, as this section counts them: with one seed any nonzero
    difference is beyond the noise (std 0), and a diverged member makes its setting differ beyond it."""
    return paired(a, b, single_std=0.0, diverged_beyond=True)


def _pd(p) -> str:
    """A paired difference as text, ± the std of the per-seed differences: ``+0.0120 ± 0.0180 (within noise)``."""
    if not np.isfinite(p["mean"]):
        return "n/a (diverged)"
    return f"{signed(p, 'std')} ({'beyond' if p['beyond'] else 'within'} noise)"


def _first_epoch(curve, level):
    hit = np.flatnonzero(np.asarray(curve) >= level)
    return int(hit[0] + 1) if hit.size else None


# --- 4: learning rate ----------------------------------------------------------------------------------------------

def _learning_rate(ctx, width, lrs, budgets):
    """Learning rates compared per epoch budget with paired per-seed differences (every lr runs the same seeds),
    and the 'lr × epochs' budget tested on the per-epoch histories. Returns the answer and the per-lr curves
    (epochs, seeds) for ex. 5."""
    run, data, seeds, epochs, n_in, where = (ctx[k] for k in ("run", "data", "seeds", "epochs", "n_in", "where"))
    members = grid(seeds, lr=lrs)
    res = run.sweep("5.2 lr", _mlp(n_in, (width,)), SCRATCH_SGD, data, members, epochs=epochs,
                    batch_size=BATCH, progress_every=epochs)
    acc = res.history.metric("test_accuracy")
    cfg = members.configs
    cols = {lr: sorted((i for i, c in enumerate(cfg) if c["lr"] == lr), key=lambda i: cfg[i]["seed"]) for lr in lrs}
    per = {lr: acc[:, cols[lr]] for lr in lrs}                  # (epochs, seeds), seeds in the same order
    stats = {b: [seed_stats(per[lr][b - 1]) for lr in lrs] for b in budgets}
    best = {b: lrs[int(np.nanargmax([m.mean for m in stats[b]]))] for b in budgets}
    delta = {b: {lr: _paired(per[lr][b - 1], per[best[b]][b - 1]) for lr in lrs if lr != best[b]} for b in budgets}
    ties = {b: [lr for lr, p in delta[b].items() if not p["beyond"]] for b in budgets}
    diverged = {lr: int(sum(res.history.diverged_epoch[i] is not None for i in cols[lr])) for lr in lrs}
    mean_curve = {lr: np.nanmean(per[lr], axis=1) for lr in lrs}
    e = np.arange(1, epochs + 1)
    plot = plot_panels([{"series": {f"after {b} epochs": (lrs, [m.mean for m in stats[b]], [m.std for m in stats[b]])
                                    for b in budgets}, "xlabel": "learning rate", "ylabel": "test accuracy",
                         "xscale": "log", "title": f"width {width}, {len(seeds)} seeds"},
                        {"series": {f"lr {lr}": (lr * e, mean_curve[lr]) for lr in lrs}, "xlabel": "lr × epochs",
                         "ylabel": "test accuracy (seed mean)", "xscale": "log",
                         "title": "same lr × epochs, same accuracy?"}],
                       run.out / "ex_5_2_4_learning_rate.png", f"§5.2 ex. 4: learning rate and epochs ({where})")
    levels = [0.5, 0.8]
    reach = {(lr, v): _first_epoch(mean_curve[lr], v) for lr in lrs for v in levels}
    rows = [[lr, *[str(stats[b][i]) for b in budgets],
             *[f"{reach[lr, v]} ({lr * reach[lr, v]:.3g})" if reach[lr, v] else "never" for v in levels], diverged[lr]]
            for i, lr in enumerate(lrs)]
    tab = table(["lr", *[f"test acc. after {b} epochs" for b in budgets],
                 *[f"first epoch mean ≥ {v} (lr × epochs)" for v in levels], "diverged"], rows)
    tab += "\n\n" + table(["lr", *[f"paired Δ vs best after {b} epochs" for b in budgets]],
                           [[lr, *["best" if lr == best[b] else _pd(delta[b][lr]) for b in budgets]] for lr in lrs])
    equal = _equal_budget(per, lrs, epochs)
    if equal:
        tab += "\n\n" + table(["lr × epochs", "lr (epochs): test accuracy", "all within noise of the best?"],
                               [[f"{q:.3g}", "; ".join(f"{lr} ({ep}): {m}" for lr, ep, m in v["points"]),
                                 "yes" if v["same"] else "no"] for q, v in equal.items()])
    lo, hi = budgets[0], budgets[-1]
    text = (f"Width {width}, {len(seeds)} seeds ({where}); lrs compared by paired per-seed differences "
            f"(all lrs run the same seeds; a difference counts when its mean exceeds 2 standard errors). "
            + " ".join(f"After {b} epochs the best is lr {best[b]} ({stats[b][lrs.index(best[b])]})"
                       + (f", tied within noise with lr {', '.join(map(str, ties[b]))}." if ties[b] else
                          ", ahead of every other lr beyond noise.") for b in budgets))
    if not ties[lo]:
        text += f" So for a short ({lo}-epoch) run lr {best[lo]} is the best of these."
    scaling = _scaling_text(reach, lrs, levels, equal).strip()
    text += (" " + scaling) if scaling else ""
    chance = [lr for lr in lrs if stats[hi][lrs.index(lr)].mean < 0.2 or diverged[lr]]
    if chance:
        text += f" At chance or diverged after {hi} epochs: lr {', '.join(map(str, chance))}."
    return answer(
        "§5.2.4", "How does the learning rate alter results? Which is best, and how does it relate to the epochs?",
        text, plot, table=tab, lrs=lrs, **{f"test_mean_epoch_{b}": [m.mean for m in stats[b]] for b in budgets},
        best_lr=best, ties=ties, paired_vs_best={b: {str(k): v for k, v in d.items()} for b, d in delta.items()},
        diverged=diverged, first_epoch={f"{lr} ≥ {v}": reach[lr, v] for lr in lrs for v in levels},
        equal_budget={str(q): v for q, v in equal.items()}), per


def _equal_budget(per, lrs, epochs, products=(0.3, 1.2, 3.0)) -> dict:
    """Accuracy at equal lr × epochs: for each product, the lrs for which product / lr is a whole epoch count in
    1..epochs, their test accuracy there, and whether every lr is within paired noise of the best of them."""
    out = {}
    for q in products:
        pts = [(lr, int(round(q / lr))) for lr in lrs if abs(q / lr - round(q / lr)) < 1e-6 and
               1 <= round(q / lr) <= epochs]
        if len(pts) < 2:
            continue
        vals = {lr: per[lr][ep - 1] for lr, ep in pts}
        top = max(vals, key=lambda lr: np.nanmean(vals[lr]) if np.isfinite(vals[lr]).all() else -1)
        same = all(not _paired(vals[lr], vals[top])["beyond"] for lr, _ in pts if lr != top)
        out[q] = {"points": [(lr, ep, seed_stats(vals[lr])) for lr, ep in pts], "best": top, "same": same}
    return out


def _scaling_text(reach, lrs, levels, equal) -> str:
    """Does accuracy depend on lr × epochs alone? From the first epoch each lr reaches a level and from equal
    lr × epochs."""
    parts = []
    for v in levels:
        got = [lr for lr in lrs if reach[lr, v]]
        if len(got) >= 2:
            prod = [lr * reach[lr, v] for lr in got]
            parts.append(f"lr × epochs to first reach {v} (seed mean): "
                         + ", ".join(f"{p:.3g} (lr {lr})" for lr, p in zip(got, prod))
                         + f", a {max(prod) / min(prod):.1f}-fold range")
    text = ("Test of the 'lr × epochs' budget: " + "; ".join(parts) + "." if parts else "")
    if equal:
        held = [q for q, v in equal.items() if v["same"]]
        failed = {q: v for q, v in equal.items() if not v["same"]}
        text += (f" At equal lr × epochs ({', '.join(f'{q:.3g}' for q in equal)}) the accuracies are "
                 + ("alike within the paired noise for every product, so lr × epochs is one budget here."
                    if not failed else
                    f"not alike for {', '.join(f'{q:.3g}' for q in failed)} (best there: "
                    + ", ".join(f"lr {v['best']}" for v in failed.values()) + ")"
                    + (f", alike for {', '.join(f'{q:.3g}' for q in held)}" if held else "")
                    + ", so lr and epochs are not interchangeable over the whole range (table)."))
    return text


# --- 5: joint search -------------------------------------------------------------------------------------------------

def _joint_search(ctx, lr_curves):
    """Grid over depth x width x lr with every epoch count read off the per-epoch history, selected on a validation
    split of the training set; random search and successive halving replayed on the same curves (``search``); the
    winner retrained with all seeds on the full training set and scored on the test set."""
    run, data, seeds, epochs, n_in, where = (ctx[k] for k in ("run", "data", "seeds", "epochs", "n_in", "where"))
    x, y = data[0], data[1]
    n_val = len(y) // 5
    split = (x[:-n_val], y[:-n_val], x[-n_val:], y[-n_val:])
    depths, widths = tiny(run, [1, 2, 3], [1]), tiny(run, [64, 256], [16])
    lrs = tiny(run, [0.1, 0.3, 1.0], [0.1, 1.0])
    curves, configs, cost = [], [], []
    for d in depths:
        for w in widths:
            members = grid(seeds, lr=lrs)
            model = _mlp(n_in, (w,) * d)
            res = run.sweep(f"5.2 search {d}x{w}", model, SCRATCH_SGD, split, members, epochs=epochs,
                            batch_size=BATCH, progress_every=epochs)
            n_params = sum(a.size for a in jax.tree_util.tree_leaves(model.init(jax.random.key(0))[0]))
            acc = np.nan_to_num(res.history.metric("test_accuracy"), nan=0.0)   # a diverged member scores 0
            lr_of = np.asarray([c["lr"] for c in members.configs])
            for lr in lrs:
                curves.append(acc[:, lr_of == lr].mean(axis=1))
                configs.append({"depth": d, "width": w, "lr": lr})
                cost.append(n_params * len(seeds))
    curves = np.asarray(curves)          # (configs, epochs) validation accuracy, mean over the search seeds
    cost = np.asarray(cost, float)
    k, best_epochs = grid_best(curves)
    best = {**configs[k], "epochs": best_epochs}
    validation = float(curves[k, best_epochs - 1])
    halving = successive_halving(curves, cost)
    rand = random_search(curves, rng=np.random.default_rng(run.args.seed), trials=tiny(run, 8, 2))
    final = run.sweep("5.2 search best", _mlp(n_in, (best["width"],) * best["depth"]), SCRATCH_SGD, data,
                      grid(seeds, lr=best["lr"]), epochs=best["epochs"], batch_size=BATCH,
                      progress_every=best["epochs"])
    per_seed = final.final("test_accuracy")             # grid(seeds, lr=one value): members in seed order
    test = seed_stats(per_seed)
    base_per_seed = ctx["mlp_sweep"]((tiny(run, WIDTH, 16),)).final("test_accuracy")
    baseline = seed_stats(base_per_seed)
    gain = _paired(per_seed, base_per_seed)
    n_grid = curves.size
    plot = _search_plot(run, curves, configs, halving, where)
    sh = configs[halving["winner"]]
    peak = curves.max(axis=1)
    shapes = sorted({(c["depth"], c["width"]) for c in configs})
    lr_by_shape = {f"{d}×{w}": max((i for i, c in enumerate(configs) if (c["depth"], c["width"]) == (d, w)),
                                   key=lambda i: peak[i]) for d, w in shapes}
    lr_by_shape = {k: configs[i]["lr"] for k, i in lr_by_shape.items()}
    interact = (f"the best lr differs by architecture ({', '.join(f'{k}: {v}' for k, v in lr_by_shape.items())}) "
                f"and by epoch budget (ex. 4), so the hyperparameters cannot be tuned one at a time"
                if len(set(lr_by_shape.values())) > 1 else
                f"(here one lr, {next(iter(lr_by_shape.values()))}, is best for every "
                f"architecture, but the best lr depends on the epoch budget: ex. 4)")
    return answer(
        "§5.2.5", "Optimize lr, epochs, number of layers and width jointly: best result? why harder? a strategy?",
        f"Grid: depth {depths} × width {widths} × lr {lrs} × epochs 1-{epochs} = {n_grid} configurations "
        f"(epochs come free from the per-epoch history), selected on a validation split ({n_val} of the training "
        f"images, mean of {len(seeds)} seeds). (a) Best: {best['depth']} hidden layer(s) of {best['width']}, lr "
        f"{best['lr']}, {best['epochs']} epochs (validation accuracy {validation:.4f}); retrained on all training "
        f"images with {len(seeds)} seeds its test accuracy is {test} (per seed "
        f"{', '.join(f'{v:.3f}' for v in per_seed)}); paired gain over D2L's setting (1×{tiny(run, WIDTH, 16)}, lr "
        f"{LR}, {epochs} epochs: {baseline}) {_pd(gain)}: "
        + ("better beyond the seed noise" if gain["beyond"] and gain["mean"] > 0 else
           "worse beyond the seed noise" if gain["beyond"] else "not better beyond the seed noise")
        + _stability(best, lr_curves, epochs, tiny(run, WIDTH, 16))
        + f". (b) The grid grows multiplicatively -- {len(depths)}·{len(widths)}·{len(lrs)}·{epochs} here, "
        f"and every extra hyperparameter multiplies it again; {interact}; and the more configurations are compared "
        f"on one noisy validation set, the more the winner's score overstates it. (c) Random search "
        f"samples configurations instead of enumerating them: {rand['trials']} random (configuration, epoch count "
        f"1-{epochs}) picks from the same grid get within 0.01 of its best validation accuracy in "
        f"{rand['within']:.0%} of {rand['draws']} replays. Successive halving "
        f"(η = 3: train all for {halving['rungs'][0]} epochs, keep the best third, continue to "
        f"{halving['rungs'][1]}, keep a third, finish at {halving['rungs'][2]}), replayed exactly on the recorded "
        f"curves (a member's first epochs do not depend on how long it will run), picks {sh['depth']}×{sh['width']} "
        f"lr {sh['lr']} (validation {curves[halving['winner'], -1]:.4f} at epoch {epochs}) for "
        f"{halving['epoch_fraction']:.0%} of the grid's member-epochs ({halving['cost_fraction']:.0%} of its "
        f"parameter-weighted compute).", plot,
        best=best, validation_accuracy=validation, test=test, test_per_seed=[float(v) for v in per_seed],
        baseline=baseline, paired_gain=gain, successive_halving=halving,
        random_search=rand, configs=configs)


def _stability(best, lr_curves, epochs, width) -> str:
    """A caveat from ex. 4 when the winner is ex. 4's network (1 hidden layer of ``width``) at one of its lrs:
    that lr's test accuracy over seeds at the winner's epoch count and at the end of ex. 4's run."""
    if best["depth"] != 1 or best["width"] != width or best["lr"] not in lr_curves or LR not in lr_curves:
        return ""
    c, end = lr_curves[best["lr"]], seed_stats(lr_curves[best["lr"]][epochs - 1])
    ref = seed_stats(lr_curves[LR][epochs - 1])
    return (f"; caveat from ex. 4 (same network and seeds): lr {best['lr']} gives {seed_stats(c[best['epochs'] - 1])} "
            f"after {best['epochs']} epochs but {end} after {epochs}, a seed std "
            f"{end.std / max(ref.std, 1e-12):.0f}× that of lr {LR} ({ref.std:.4f})")


def _search_plot(run, curves, configs, halving, where):
    e = np.arange(1, curves.shape[1] + 1)
    order = np.argsort(-curves.max(axis=1))[:6]
    series = {f"{configs[i]['depth']}×{configs[i]['width']} lr {configs[i]['lr']}": (e, curves[i]) for i in order}
    by_lr = {}
    for c, v in zip(configs, curves.max(axis=1)):
        by_lr.setdefault(f"{c['depth']}×{c['width']}", {})[c["lr"]] = v
    lr_series = {k: (sorted(v), [v[lr] for lr in sorted(v)]) for k, v in by_lr.items()}
    return plot_panels([{"series": series, "xlabel": "epoch", "ylabel": "validation accuracy",
                         "marks": {f"rung {r}": r for r in halving["rungs"]}, "title": "the six best configurations"},
                        {"series": lr_series, "xlabel": "learning rate", "ylabel": "best validation accuracy",
                         "xscale": "log", "title": "depth×width vs lr"}],
                       run.out / "ex_5_2_5_joint_search.png", f"§5.2 ex. 5: joint search ({where})")


# --- 6: speed --------------------------------------------------------------------------------------------------------

def _speed(ctx, widths, epochs, repeats):
    """``epochs`` (one per width: more for the cheap ones, whose epochs last milliseconds) per training run; every
    (implementation, width) pair is trained ``repeats`` times in interleaved rounds (the order alternating), and a
    run's time is the median of its epochs 2 on. A direction is stated only where the two implementations' ranges
    over the repeats do not overlap."""
    run, data, n_in = ctx["run"], ctx["data"], ctx["n_in"]
    impls = ["scratch", "linen"]
    times = {(impl, w): [] for impl in impls for w in widths}
    for r in range(repeats):
        for j, (w, n) in enumerate(zip(widths, epochs)):
            for impl in (impls if (r + j) % 2 == 0 else impls[::-1]):
                model = mlp_model(impl, n_in, (w, w), 10, rates=(0.0, 0.0))
                _, hist = run.fit(f"5.2 speed {impl} {w} run {r + 1}", model, SCRATCH_SGD, data, epochs=n,
                                  batch_size=BATCH, hparams={"lr": LR}, progress_every=n)
                times[impl, w].append(float(np.median(hist.epoch_time_s[1:] or hist.epoch_time_s)))
    med = {k: float(np.median(v)) for k, v in times.items()}
    ratio = {w: np.asarray(times["linen", w]) / np.asarray(times["scratch", w]) for w in widths}
    verdict = {}
    for w in widths:
        s_, l_ = times["scratch", w], times["linen", w]
        verdict[w] = ("linen slower" if min(l_) > max(s_) else "linen faster" if max(l_) < min(s_) else
                      "ranges overlap")
    flops = {w: 6 * len(data[0]) * (n_in * w + w * w + 10 * w) for w in widths}
    plot = plot_panels([{"series": {impl: (widths, [1e3 * med[impl, w] for w in widths],
                                           [1e3 * np.std(times[impl, w]) for w in widths]) for impl in impls},
                         "xlabel": "hidden units per layer (2 layers)", "ylabel": "ms per training epoch",
                         "xscale": "log", "yscale": "log", "title": f"median of {repeats} runs"},
                        {"series": {"linen / scratch": (widths, [float(np.median(ratio[w])) for w in widths])},
                         "xlabel": "hidden units per layer", "ylabel": "time ratio", "xscale": "log",
                         "title": "framework vs scratch"}],
                       run.out / "ex_5_2_6_speed.png", f"§5.2 ex. 6: epoch time on {_device()}")
    rng = lambda v: f"{1e3 * min(v):.3g}-{1e3 * max(v):.3g}"
    rows = [[w, rng(times["scratch", w]), rng(times["linen", w]),
             f"{np.median(ratio[w]):.2f} ({min(ratio[w]):.2f}-{max(ratio[w]):.2f})", verdict[w],
             flops[w] / med["scratch", w] / 1e9] for w in widths]
    tab = table(["width (2 layers)", f"scratch ms/epoch ({repeats} runs)", f"linen ms/epoch ({repeats} runs)",
                 "linen/scratch median (range)", "direction", "scratch GFLOP/s"], rows)
    clear = [w for w in widths if verdict[w] != "ranges overlap"]
    return answer(
        "§5.2.6", "Compare the speed of the framework and the from-scratch implementation as the network grows.",
        f"Per-epoch training time through the engine (batch {BATCH}, {len(data[0])} images, 2 hidden layers of "
        f"equal width, {_device()}), each (implementation, width) trained {repeats} times in interleaved rounds: "
        f"linen/scratch median ratio " + ", ".join(f"{np.median(ratio[w]):.2f} (range {min(ratio[w]):.2f}-"
                                                   f"{max(ratio[w]):.2f})" for w in widths)
        + f" at widths {', '.join(map(str, widths))}. "
        + ("The two implementations' time ranges overlap at every width: no difference beyond the run-to-run "
           "spread. " if not clear else
           "Beyond the run-to-run spread (ranges not overlapping): " + ", ".join(f"width {w}: {verdict[w]}"
                                                                               for w in clear)
           + (f"; within it at width {', '.join(str(w) for w in widths if w not in clear)}" if len(clear) < len(
               widths) else "") + ". ")
        + f"The epoch time itself grows {med['scratch', widths[-1]] / med['scratch', widths[0]]:.0f}-fold "
        f"(scratch {flops[widths[-1]] / med['scratch', widths[-1]] / 1e9:.0f} GFLOP/s at width {widths[-1]} vs "
        f"{flops[widths[0]] / med['scratch', widths[0]] / 1e9:.1f} at {widths[0]}). Both are traced into one jitted "
        f"XLA program of the same operations (matmul + bias + ReLU, the SGD update).", plot, table=tab,
        widths=widths, seconds={f"{impl} {w}": v for (impl, w), v in times.items()}, verdict=verdict)


def _device() -> str:
    d = jax.devices()[0]
    return f"{d.platform.upper()} ({d.device_kind}, {os.cpu_count()} cores)"


# --- 7: matmul alignment -------------------------------------------------------------------------------------------

def _matmul(run, sizes, reps):
    f = jax.jit(jnp.matmul)
    key = jax.random.key(run.args.seed)
    arrays = {n: (jax.random.normal(key, (n, n)), jax.random.normal(jax.random.fold_in(key, 1), (n, n)))
              for n in sizes}
    calls = {n: (lambda a=arrays[n]: f(*a).block_until_ready()) for n in sizes}
    seconds = {n: [] for n in sizes}
    for _ in range(reps):              # interleaved rounds: a load change hits every size alike
        for n in sizes:                # one call timed, after a warm-up call of the same size (compiles the first)
            seconds[n].append(timed(calls[n], 1))
    med = {n: float(np.median(seconds[n])) for n in sizes}
    gflops = {n: 2 * n ** 3 / med[n] / 1e9 for n in sizes}
    ref = 1024 if 1024 in sizes else sizes[0]
    spread = max(_rel_mad(seconds[n]) for n in sizes)
    rows = [[n, _pow2(n), 1e3 * med[n], gflops[n], gflops[n] / gflops[ref]] for n in sizes]
    tab = table(["n", "largest power of 2 dividing n", "median ms", "GFLOP/s", f"vs n={ref}"], rows)
    plot = plot_panels([{"series": {"float32 n×n @ n×n": (sizes, [gflops[n] for n in sizes])}, "xlabel": "n",
                         "ylabel": "GFLOP/s", "title": f"median of {reps}, {_device()}"}],
                       run.out / "ex_5_2_7_matmul.png", "§5.2 ex. 7: aligned vs misaligned matmul")
    odd = [n for n in sizes if _pow2(n) < 8]
    even = [n for n in sizes if _pow2(n) >= 8 and n != ref]
    others = [n for n in sizes if n != ref]
    margin = {n: gflops[ref] / gflops[n] - 1 for n in others}
    stands_out = bool(others) and min(margin.values()) > spread
    groups = ""
    if odd and even:
        g_odd, g_even = np.mean([gflops[n] for n in odd]), np.mean([gflops[n] for n in even])
        gap = g_odd / g_even - 1
        groups = (f" The sizes not divisible by 8 average {g_odd:.0f} GFLOP/s, the other multiples of 8 "
                  f"{g_even:.0f} ({gap:+.0%}, {'within' if abs(gap) <= spread else 'beyond'} the noise).")
    return answer(
        "§5.2.7", "Time matmuls for aligned and misaligned sizes (1024, 1025, 1026, 1028, 1032). CPU vs GPU? "
        "Bus width?",
        f"On {_device()}, jitted float32 n×n matmul, median of {reps} interleaved runs after a warm-up; run-to-run "
        f"noise (median absolute deviation) up to {spread:.0%} of a median. n={ref}: {gflops[ref]:.0f} GFLOP/s; "
        + ", ".join(f"{n}: {gflops[n]:.0f}" for n in others) + ". "
        + (f"n={ref} stands out: it beats every other size by more than the noise (by at least "
           f"{min(margin.values()):.0%})." if stands_out else
           f"No clear alignment pattern on this {jax.devices()[0].platform.upper()}: n={ref} does not beat every other size by more than the noise "
           f"(closest: n={min(margin, key=margin.get)}, {margin[min(margin, key=margin.get)]:+.0%})." if others
           else "")
        + groups
        + " (a) GPU: not measured (no GPU here); to run where one is available: the same command, JAX then times "
        "the GPU, and the table shows whether sizes off multiples of 8/16 are slower there. (b) Memory bus width: "
        "not measured here. On Linux `sudo dmidecode -t memory` lists it as each memory module's 'Data Width' (it "
        "needs root); on a GPU it is CUDA deviceQuery's memoryBusWidth or NVML's nvmlDeviceGetMemoryBusWidth.",
        plot, table=tab, median_s=med, gflops=gflops, device=_device(), stands_out=stands_out, noise=spread)


def _rel_mad(t) -> float:
    """Median absolute deviation of timings relative to their median (robust to the odd preempted run)."""
    t = np.asarray(t, float)
    return float(np.median(np.abs(t - np.median(t))) / np.median(t))


def _pow2(n: int) -> int:
    return n & -n


# --- 8 and 9: activations and initializations -------------------------------------------------------------------

def _activations(ctx, width, names):
    """Activations compared pairwise with the best by per-seed differences (all run the same seeds), with each
    function's mean squared slope E[f'(z)²] for z ~ N(0, 0.01²) (how much gradient a layer passes near 0)."""
    run, mlp_sweep, where = (ctx[k] for k in ("run", "mlp_sweep", "where"))
    per = {a: mlp_sweep((width,), activation=a).final("test_accuracy") for a in names}
    test = {a: seed_stats(per[a]) for a in names}
    best = max(names, key=lambda a: test[a].mean)
    delta = {a: _paired(per[a], per[best]) for a in names if a != best}
    tied = [a for a in names if a != best and not delta[a]["beyond"]]
    worse = [a for a in names if a != best and delta[a]["beyond"]]
    z = 0.01 * jax.random.normal(jax.random.key(run.args.seed), (10_000,))
    slope2 = {a: float(jnp.mean(jax.vmap(jax.grad(ACTIVATIONS[a]))(z) ** 2)) for a in names}
    order = sorted(names, key=lambda a: -test[a].mean)
    rows = [[a, str(test[a]), "best" if a == best else _pd(delta[a]), f"{slope2[a]:.3g}"] for a in order]
    flat = min(names, key=slope2.get)
    return answer(
        "§5.2.8", "Try out different activation functions. Which one works best?",
        f"Width {width}, D2L's init and lr {LR} ({where}); paired per-seed differences from the best (a difference "
        f"counts when its mean exceeds 2 standard errors). Best: {best} {test[best]}. "
        + (f"Tied with it within the noise: {', '.join(f'{a} ({_pd(delta[a])})' for a in tied)}. " if tied else "")
        + (f"Worse beyond the noise: {', '.join(f'{a} ({_pd(delta[a])})' for a in worse)}. " if worse else "")
        + "With σ=0.01 weights the pre-activations are near 0; there the mean squared slope E[f'(z)²] "
        "(z ~ N(0, 0.01²)) is " + ", ".join(f"{a} {slope2[a]:.3g}" for a in names)
        + f"; the smallest, {flat}'s, ranks {order.index(flat) + 1} of {len(names)} in accuracy.",
        table=table(["activation", "test accuracy (mean ± std)", "paired Δ vs best", "E[f'(z)²] near 0"], rows),
        test={a: test[a] for a in names}, paired_vs_best=delta, mean_squared_slope=slope2)


def _inits(ctx, width, names):
    mlp_sweep, where = ctx["mlp_sweep"], ctx["where"]
    test = {n: seed_stats(mlp_sweep((width,), init=n).final("test_accuracy")) for n in names}
    curves = {n: np.nanmean(mlp_sweep((width,), init=n).history.metric("test_accuracy"), axis=1) for n in names}
    first = {n: _first_epoch(curves[n], 0.5) for n in names}
    loss1 = {n: float(np.nanmean(mlp_sweep((width,), init=n).history.metric("train_loss")[0])) for n in names}
    rows = [[n, str(test[n]), first[n] or "never", loss1[n]] for n in names]
    best = max(names, key=lambda n: test[n].mean if np.isfinite(test[n].mean) else -1)
    d2l = names[0]
    fast = [n for n in names[1:] if first[n] is not None and (first[d2l] is None or first[n] < first[d2l])]
    stuck = [n for n in names if test[n].mean < 0.2 or not np.isfinite(test[n].mean)]
    return answer(
        "§5.2.9", "Is there a difference between weight initializations of the network? Does it matter?",
        f"({where}) " + "; ".join(f"{n} {test[n]}" for n in names)
        + f". Best: {best}. First epoch at ≥ 0.5 test accuracy: "
        + ", ".join(f"{n} {first[n] or 'never'}" for n in names) + ". "
        + (f"{', '.join(fast)} get there sooner than D2L's σ=0.01, whose signal starts near zero: scaled inits "
           f"(He: Var = 2/fan_in, Xavier: 2/(fan_in+fan_out)) keep activations and gradients at unit scale. "
           if fast else "")
        + (f"Stuck at or near chance: {', '.join(stuck)}. " if stuck else "")
        + "All-zero weights cannot learn: every hidden unit computes the same 0 and gets a zero gradient (the output "
        "weights are 0 too), so only the output bias moves, towards the class prior. "
        + (f"σ=1 starts with huge logits (epoch-1 training loss {loss1['normal σ=1']:.3g}, vs ln 10 = 2.30 for "
           f"uniform guesses) and ends at {test['normal σ=1']}. " if "normal σ=1" in names else "")
        + "So the initialization matters: for the speed of training, and at the extremes for whether it learns.",
        table=table(["initialization", "test accuracy (mean ± std)", "first epoch ≥ 0.5", "epoch-1 train loss"], rows),
        test={n: test[n] for n in names}, first_epoch_above_half=first)
