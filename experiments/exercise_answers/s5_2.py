"""§5.2 implementation of multilayer perceptrons: D2L's one-hidden-layer MLP (ReLU, N(0, 0.01²) weights, plain SGD
lr 0.1) on run.load_images() (offline: the digits, 64 inputs), trained at batch 64 for 40 epochs (840 SGD steps;
see BATCH/EPOCHS): 1 width, 2 depth, 3 the one-neuron bottleneck, 4 learning rate x epochs, 5 a joint search
(grid, random search and successive halving replayed on the per-epoch curves), 6 scratch vs Flax linen speed,
7 aligned vs misaligned matmuls, 8 activations, 9 initializations; and the book's MLP diagram."""
from __future__ import annotations

import math
import os
import time

import jax
import jax.numpy as jnp
import numpy as np

from regjax.engine import grid
from regjax.models.adapters import mlp_model, scratch_mlp
from regjax.plots import plot_panels, save_figure

from .common import answer, figure, in_book_order, seeds_of, table, tiny

SECTION, TITLE = "5.2", "Implementation of multilayer perceptrons"
# D2L trains 10 epochs at batch 256 on 60,000 images: 2,350 SGD steps. The digits have 1,347 training images
# (6 batches of 256 an epoch), so batch 64 (21 steps an epoch) for 40 epochs gives 840 steps -- enough for the
# test accuracy to level off (it moves by < 0.01 over the last 10 epochs) at a cost the 3-minute budget allows.
BATCH, EPOCHS, LR, WIDTH = 64, 40, 0.1, 256
TRAIN_CAP = 2000   # training images at most (Fashion-MNIST's 60,000 would not fit the time budget)
WIDTHS = [1, 4, 8, 16, 32, 64, 128, 256, 512, 1024]
LRS = [0.01, 0.03, 0.1, 0.3, 1.0, 3.0]
ACTIVATIONS = {"relu": jax.nn.relu, "sigmoid": jax.nn.sigmoid, "tanh": jnp.tanh, "gelu": jax.nn.gelu,
               "elu": jax.nn.elu, "swish": jax.nn.swish}
INITS = {"normal σ=0.01 (D2L)": "normal", "he": "he", "xavier": "xavier",
         "normal σ=1": jax.nn.initializers.normal(1.0), "zeros": jax.nn.initializers.zeros}
SPEED_WIDTHS, SPEED_EPOCHS = [64, 512, 2048], [12, 6, 3]
MATMUL_SIZES = [1000, 1024, 1025, 1026, 1028, 1032, 1040]


class _Trainer:
    """Sweeps of the scratch MLP over seeds (and lr), cached by architecture so the baseline is trained once."""

    def __init__(self, run, data, seeds, epochs):
        self.run, self.data, self.seeds, self.epochs = run, data, seeds, epochs
        self.n_in = int(data[0].shape[1])
        self.cache = {}

    def model(self, hidden, activation="relu", init="normal σ=0.01 (D2L)"):
        return scratch_mlp(self.n_in, tuple(hidden), 10, rates=(0.0,) * len(hidden), weight_init=INITS[init],
                           activation=ACTIVATIONS[activation])

    def __call__(self, hidden, activation="relu", init="normal σ=0.01 (D2L)"):
        key = (tuple(hidden), activation, init)
        if key not in self.cache:
            name = f"5.2 {'x'.join(map(str, hidden))} {activation} {init}"
            members = grid(self.seeds, lr=LR)
            self.cache[key] = self.run.sweep(name, self.model(hidden, activation, init), None, self.data, members,
                                             epochs=self.epochs, batch_size=BATCH, progress_every=self.epochs)
        return self.cache[key]


def _ms(values) -> tuple:
    """(mean, std over seeds, number of diverged members) of per-member values; NaN (diverged) left out."""
    v = np.asarray(values, float)
    ok = v[np.isfinite(v)]
    if not ok.size:
        return math.nan, math.nan, int(v.size)
    return float(ok.mean()), float(ok.std(ddof=1)) if ok.size > 1 else 0.0, int(v.size - ok.size)


def _fmt(m) -> str:
    return f"{m[0]:.4f} ± {m[1]:.4f}" + (f" ({m[2]} diverged)" if len(m) > 2 and m[2] else "")


def section(run):
    args = run.args
    ds = run.ds or run.load_images()
    data = run.images(ds, flatten=True, train_size=min(len(ds.x_train), tiny(run, TRAIN_CAP, 300)))
    seeds = tiny(run, seeds_of(args), seeds_of(args)[:1])
    epochs = tiny(run, EPOCHS, 2)
    trainer = _Trainer(run, data, seeds, epochs)
    width = tiny(run, WIDTH, 16)
    where = f"{ds.name}, {len(data[0])} training / {len(data[2])} test images, batch {BATCH}, {epochs} epochs"
    out = [_book_figure(run, trainer.n_in)]
    out += _width_and_bottleneck(run, trainer, tiny(run, WIDTHS, [1, 16]), where)
    out.append(_depth(run, trainer, width, tiny(run, [1, 2, 3], [1]), where))
    out.append(_learning_rate(run, trainer, width, tiny(run, LRS, [0.1, 1.0]), tiny(run, [5, 10, epochs], [1, 2]),
                              where))
    out.append(_joint_search(run, trainer, where))
    out.append(_speed(run, trainer, tiny(run, SPEED_WIDTHS, [16]), tiny(run, SPEED_EPOCHS, [2])))
    out.append(_matmul(run, tiny(run, MATMUL_SIZES, [64, 65]), tiny(run, 7, 2)))
    out.append(_activations(run, trainer, width, tiny(run, list(ACTIVATIONS), ["relu", "tanh"]), where))
    out.append(_inits(run, trainer, width, tiny(run, list(INITS), list(INITS)[:2]), where))
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

def _width_and_bottleneck(run, trainer, widths, where):
    results = {w: trainer((w,)) for w in widths}
    test = {w: _ms(r.final("test_accuracy")) for w, r in results.items()}
    train = {w: _ms(r.final("train_accuracy")) for w, r in results.items()}
    w_arr = np.asarray(widths, float)
    best = max(widths, key=lambda w: test[w][0])
    near = min(w for w in widths if test[w][0] >= test[best][0] - test[best][1])
    plot = plot_panels([{"series": {"test": (w_arr, [test[w][0] for w in widths], [test[w][1] for w in widths]),
                                    "train (last epoch, training mode)": (w_arr, [train[w][0] for w in widths],
                                                                          [train[w][1] for w in widths])},
                         "xlabel": "hidden units", "ylabel": "accuracy", "xscale": "log",
                         "marks": {f"best {best}": best},
                         "title": f"{len(trainer.seeds)} seeds"}],
                       run.out / "ex_5_2_1_width.png", f"§5.2 ex. 1: accuracy vs width ({where})")
    big = widths[-1]
    out = [answer(
        "§5.2.1", "Change the number of hidden units and plot how it affects accuracy. What is the best value?",
        f"Test accuracy after {trainer.epochs} epochs ({len(trainer.seeds)} seeds) goes from "
        f"{_fmt(test[widths[0]])} at width {widths[0]} to {_fmt(test[best])} at the best width, {best}"
        + (f" (the widest, {big}: {_fmt(test[big])})" if big != best else "")
        + f"; every width from {near} on is within one seed-std of the best, so past ~{near} units the width hardly "
        f"matters on {run.ds.name}: capacity stops being the limit, and the seed-to-seed spread of the last SGD "
        f"epoch (lr {LR}) is as large as the differences." + _book_width(test, best),
        plot, widths=widths, test_mean=[test[w][0] for w in widths], test_std=[test[w][1] for w in widths],
        train_mean=[train[w][0] for w in widths], best_width=best)]
    out.append(_bottleneck(run, trainer, results, test, widths))
    return out


def _book_width(test, best) -> str:
    if WIDTH not in test:
        return ""
    inside = test[WIDTH][0] >= test[best][0] - test[best][1]
    return f" The book's {WIDTH} ({_fmt(test[WIDTH])}) is {'inside' if inside else 'outside'} that band."


def _bottleneck(run, trainer, results, test, widths):
    """Width-1 models: accuracy and how many classes they can predict at all (their logits lie on one ray)."""
    res = results[widths[0]]
    model = trainer.model((widths[0],))
    x = jnp.asarray(trainer.data[2])
    predict = jax.jit(jax.vmap(lambda p: model.apply(p, {}, x, key=None, train=False)[0].argmax(-1)))
    preds = np.asarray(predict(res.state.params))
    classes = [len(np.unique(p)) for p in preds]
    rows = [[w, _fmt(test[w])] for w in widths if w <= 4]
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
        f"{_fmt(test[widths[0]])} vs {_fmt(test[widths[-1]])} at width {widths[-1]}; the width-{widths[0]} models "
        f"predict {min(classes)}-{max(classes)} distinct classes on the test set.", table=tab,
        distinct_classes=classes)


# --- 2: depth ----------------------------------------------------------------------------------------------------

def _depth(run, trainer, width, depths, where):
    results = {d: trainer((width,) * d) for d in depths}
    test = {d: _ms(r.final("test_accuracy")) for d, r in results.items()}
    e = np.arange(1, trainer.epochs + 1)
    curves = {d: r.history.metric("test_accuracy") for d, r in results.items()}
    first = {d: _first_epoch(np.nanmean(c, axis=1), 0.5) for d, c in curves.items()}
    plot = plot_panels([{"series": {f"{d} hidden layer{'s' * (d > 1)}": (e, np.nanmean(c, axis=1), np.nanstd(c, axis=1))
                                    for d, c in curves.items()}, "xlabel": "epoch", "ylabel": "test accuracy",
                         "title": f"width {width}, {len(trainer.seeds)} seeds"}],
                       run.out / "ex_5_2_2_depth.png", f"§5.2 ex. 2: adding hidden layers ({where})")
    d_last = depths[-1]
    return answer(
        "§5.2.2", "Try adding a hidden layer to see how it affects the results.",
        "Final test accuracy: " + "; ".join(f"{d} hidden layer{'s' * (d > 1)} {_fmt(test[d])} (first ≥ 0.5 at epoch "
                                           f"{first[d] or 'never'})" for d in depths)
        + f". With D2L's N(0, 0.01²) weights each extra ReLU layer of {width} units scales the signal by about "
        f"0.01·√({width}/2) = {0.01 * math.sqrt(width / 2):.2f}, forward and backward, so a deeper net starts "
        f"nearer zero output and zero gradient: " + _delay(first, depths, trainer.epochs)
        + _versus(test[d_last], test[depths[0]], "one hidden layer") + f" after {trainer.epochs} epochs.",
        plot, **{f"depth_{d}": test[d] for d in depths}, first_epoch_above_half=first)


def _delay(first, depths, epochs) -> str:
    deep, shallow = first[depths[-1]], first[depths[0]]
    if (deep or 10 ** 9) <= (shallow or 10 ** 9):
        return "here it does not delay learning, and "
    return (f"the {depths[-1]}-layer net needs {deep or f'more than {epochs}'} epochs to reach 0.5 test accuracy "
            f"against {shallow or 'never'} for one layer, and ")


def _versus(a, b, name) -> str:
    """How (mean, std) ``a`` ends against ``b``: within the seed spread, or above/below by how much."""
    diff = a[0] - b[0]
    if abs(diff) <= math.hypot(a[1], b[1]):
        return f"it ends within the seed spread of {name} ({diff:+.4f})"
    return f"it ends {abs(diff):.4f} {'above' if diff > 0 else 'below'} {name}"


def _first_epoch(curve, level):
    hit = np.flatnonzero(np.asarray(curve) >= level)
    return int(hit[0] + 1) if hit.size else None


# --- 4: learning rate ----------------------------------------------------------------------------------------------

def _learning_rate(run, trainer, width, lrs, budgets, where):
    members = grid(trainer.seeds, lr=lrs)
    res = run.sweep("5.2 lr", trainer.model((width,)), None, trainer.data, members, epochs=trainer.epochs,
                    batch_size=BATCH, progress_every=trainer.epochs)
    acc = res.history.metric("test_accuracy")
    lr_of = np.asarray([c["lr"] for c in members.configs])
    stats = {b: [_ms(acc[b - 1, lr_of == lr]) for lr in lrs] for b in budgets}
    best = {b: lrs[int(np.nanargmax([m[0] for m in stats[b]]))] for b in budgets}
    diverged = {lr: int(sum(res.history.diverged_epoch[i] is not None for i in np.flatnonzero(lr_of == lr)))
                for lr in lrs}
    plot = plot_panels([{"series": {f"after {b} epochs": (lrs, [m[0] for m in stats[b]], [m[1] for m in stats[b]])
                                    for b in budgets}, "xlabel": "learning rate", "ylabel": "test accuracy",
                         "xscale": "log", "title": f"width {width}, {len(trainer.seeds)} seeds"}],
                       run.out / "ex_5_2_4_learning_rate.png", f"§5.2 ex. 4: learning rate and epochs ({where})")
    mean_curve = {lr: np.nanmean(acc[:, lr_of == lr], axis=1) for lr in lrs}
    reach = {lr: _first_epoch(mean_curve[lr], 0.9) for lr in lrs}
    lo, hi = budgets[0], budgets[-1]
    chance = [lr for lr in lrs if stats[hi][lrs.index(lr)][0] < 0.2 or diverged[lr]]
    rows = [[lr, *[_fmt(stats[b][i]) for b in budgets], reach[lr] or "never", diverged[lr]] for i, lr in enumerate(lrs)]
    tab = table(["lr", *[f"test acc. after {b} epochs" for b in budgets], "first epoch mean ≥ 0.9", "diverged"], rows)
    slow = [lr for lr in lrs if reach[lr] is not None]
    return answer(
        "§5.2.4", "How does the learning rate alter results? Which is best, and how does it relate to the epochs?",
        f"Width {width}, {len(trainer.seeds)} seeds ({where}). Best lr by epoch budget: "
        + ", ".join(f"{b} epochs → {best[b]} ({_fmt(stats[b][lrs.index(best[b])])})" for b in budgets) + ". "
        + ("Epochs until the seed-mean test accuracy first reaches 0.9: "
           + ", ".join(f"lr {lr}: {reach[lr]}" for lr in slow) + "; " if slow else "")
        + (f"never within {hi} epochs for lr {', '.join(str(lr) for lr in lrs if reach[lr] is None)}. "
           if len(slow) < len(lrs) else "")
        + (f"At chance or diverged after {hi} epochs (too large a step): lr {', '.join(map(str, chance))}. "
           if chance else "")
        + "So the learning rate and the number of epochs are one budget: a smaller lr needs proportionally more "
        "epochs for the same progress (roughly lr × steps), and the best lr for a short run is the largest one that "
        "is still stable" + (f"; the best lr moves from {best[lo]} at {lo} epochs to {best[hi]} at {hi}."
                             if best[lo] != best[hi] else f"; here {best[hi]} is best for every budget."),
        plot, table=tab, lrs=lrs, **{f"test_mean_epoch_{b}": [m[0] for m in stats[b]] for b in budgets},
        best_lr=best, diverged=diverged, first_epoch_above_09=reach)


# --- 5: joint search -------------------------------------------------------------------------------------------------

def _joint_search(run, trainer, where):
    """Grid over depth x width x lr with every epoch count read off the per-epoch history, selected on a validation
    split of the training set; random search and successive halving replayed on the same curves; the winner
    retrained with all seeds on the full training set and scored on the test set."""
    x, y = trainer.data[0], trainer.data[1]
    n_val = len(y) // 5
    split = (x[:-n_val], y[:-n_val], x[-n_val:], y[-n_val:])
    depths, widths = tiny(run, [1, 2, 3], [1]), tiny(run, [64, 256], [16])
    lrs = tiny(run, [0.1, 0.3, 1.0], [0.1, 1.0])
    search_seeds = trainer.seeds
    curves, configs, cost = [], [], []
    for d in depths:
        for w in widths:
            members = grid(search_seeds, lr=lrs)
            model = trainer.model((w,) * d)
            res = run.sweep(f"5.2 search {d}x{w}", model, None, split, members, epochs=trainer.epochs,
                            batch_size=BATCH, progress_every=trainer.epochs)
            n_params = sum(a.size for a in jax.tree_util.tree_leaves(model.init(jax.random.key(0))[0]))
            acc = np.nan_to_num(res.history.metric("test_accuracy"), nan=0.0)   # a diverged member scores 0
            lr_of = np.asarray([c["lr"] for c in members.configs])
            for lr in lrs:
                curves.append(acc[:, lr_of == lr].mean(axis=1))
                configs.append({"depth": d, "width": w, "lr": lr})
                cost.append(n_params * len(search_seeds))
    curves = np.asarray(curves)          # (configs, epochs) validation accuracy, mean over the search seeds
    cost = np.asarray(cost, float)
    k, e = np.unravel_index(int(np.argmax(curves)), curves.shape)
    best = {**configs[k], "epochs": int(e + 1)}
    halving = _successive_halving(curves, cost)
    rand = _random_search(curves, rng=np.random.default_rng(run.args.seed), trials=tiny(run, 8, 2))
    final = trainer.run.sweep("5.2 search best", trainer.model((best["width"],) * best["depth"]), None, trainer.data,
                              grid(trainer.seeds, lr=best["lr"]), epochs=best["epochs"], batch_size=BATCH,
                              progress_every=best["epochs"])
    test = _ms(final.final("test_accuracy"))
    baseline = _ms(trainer((tiny(run, WIDTH, 16),)).final("test_accuracy"))
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
        f"Grid: depth {depths} × width {widths} × lr {lrs} × epochs 1-{trainer.epochs} = {n_grid} configurations "
        f"(epochs come free from the per-epoch history), selected on a validation split ({n_val} of the training "
        f"images, mean of {len(search_seeds)} seeds). (a) Best: {best['depth']} hidden layer(s) of {best['width']}, lr "
        f"{best['lr']}, {best['epochs']} epochs (validation accuracy {curves[k, e]:.4f}); retrained on all training "
        f"images with {len(trainer.seeds)} seeds its test accuracy is {_fmt(test)} -- "
        + _versus(test, baseline, f"D2L's setting (1×{tiny(run, WIDTH, 16)}, lr {LR}, {trainer.epochs} epochs: "
                  f"{_fmt(baseline)})")
        + f". (b) The grid grows multiplicatively -- {len(depths)}·{len(widths)}·{len(lrs)}·{trainer.epochs} here, "
        f"and every extra hyperparameter multiplies it again; {interact}; and the more configurations are compared "
        f"on one noisy validation set, the more the winner's score overstates it. (c) Random search "
        f"samples configurations instead of enumerating them: {rand['trials']} random trials get within 0.01 of the "
        f"grid's best validation accuracy in {rand['within']:.0%} of {rand['draws']} replays. Successive halving "
        f"(η = 3: train all for {halving['rungs'][0]} epochs, keep the best third, continue to "
        f"{halving['rungs'][1]}, keep a third, finish at {halving['rungs'][2]}), replayed exactly on the recorded "
        f"curves (a member's first epochs do not depend on how long it will run), picks {sh['depth']}×{sh['width']} "
        f"lr {sh['lr']} (validation {curves[halving['winner'], -1]:.4f} at epoch {trainer.epochs}) for "
        f"{halving['epoch_fraction']:.0%} of the grid's member-epochs ({halving['cost_fraction']:.0%} of its "
        f"parameter-weighted compute).", plot,
        best=best, validation_accuracy=float(curves[k, e]), test=test, baseline=baseline, successive_halving=halving,
        random_search=rand, configs=configs)


def _successive_halving(curves, cost, eta=3):
    """Successive halving replayed on full curves: rungs at E/η², E/η, E epochs, keeping the best 1/η each time."""
    epochs = curves.shape[1]
    rungs = sorted({max(1, round(epochs / eta ** 2)), max(1, round(epochs / eta)), epochs})
    while len(rungs) < 3:
        rungs.insert(0, rungs[0])
    alive, done, epoch_cost, compute = np.arange(len(curves)), 0, 0, 0.0
    for r in rungs:
        epoch_cost += len(alive) * (r - done)
        compute += cost[alive].sum() * (r - done)
        done = r
        order = alive[np.argsort(-curves[alive, r - 1], kind="stable")]
        alive = order[:max(1, math.ceil(len(alive) / eta))] if r < epochs else order[:1]
    return {"rungs": rungs, "winner": int(alive[0]), "epoch_fraction": epoch_cost / curves.size,
            "cost_fraction": compute / (cost.sum() * epochs)}


def _random_search(curves, rng, trials, draws=2000):
    """How often ``trials`` random (configuration, epoch count ∈ {E/4, E/2, 3E/4, E}) picks come within 0.01 of
    the grid's best validation accuracy."""
    epochs = curves.shape[1]
    budgets = sorted({max(1, round(epochs * f)) for f in (0.25, 0.5, 0.75, 1.0)})
    points = curves[:, [b - 1 for b in budgets]].ravel()
    found = points[rng.integers(0, points.size, (draws, trials))].max(axis=1)
    return {"trials": trials, "draws": draws, "within": float(np.mean(found >= curves.max() - 0.01)),
            "median_found": float(np.median(found)), "epoch_budgets": budgets}


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

def _speed(run, trainer, widths, epochs):
    """``epochs`` (one per width: more for the cheap ones, whose epochs last milliseconds) per implementation."""
    impls = ["scratch", "linen"]
    times, spread = {impl: [] for impl in impls}, []
    for j, (w, n) in enumerate(zip(widths, epochs)):
        for impl in (impls if j % 2 == 0 else impls[::-1]):   # alternate the order: load drift hits both alike
            model = mlp_model(impl, trainer.n_in, (w, w), 10, rates=(0.0, 0.0))
            _, hist = run.fit(f"5.2 speed {impl} {w}", model, None, trainer.data, epochs=n, batch_size=BATCH,
                              hparams={"lr": LR}, progress_every=n)
            t = np.asarray(hist.epoch_time_s[1:] or hist.epoch_time_s)     # the first epoch warms up
            times[impl].append(float(np.median(t)))
            spread.append(_rel_mad(t))
    ratio = np.asarray(times["linen"]) / np.asarray(times["scratch"])
    flops = [6 * len(trainer.data[0]) * (trainer.n_in * w + w * w + 10 * w) for w in widths]
    plot = plot_panels([{"series": {impl: (widths, 1e3 * np.asarray(t)) for impl, t in times.items()},
                         "xlabel": "hidden units per layer (2 layers)", "ylabel": "ms per training epoch",
                         "xscale": "log", "yscale": "log", "title": "median of epochs 2 on"},
                        {"series": {"linen / scratch": (widths, ratio)}, "xlabel": "hidden units per layer",
                         "ylabel": "time ratio", "xscale": "log", "title": "framework vs scratch"}],
                       run.out / "ex_5_2_6_speed.png", f"§5.2 ex. 6: epoch time on {_device()}")
    rows = [[w, 1e3 * s, 1e3 * f, float(r), fl / s / 1e9] for w, s, f, r, fl in
            zip(widths, times["scratch"], times["linen"], ratio, flops)]
    tab = table(["width (2 layers)", "scratch ms/epoch", "linen ms/epoch", "linen/scratch", "scratch GFLOP/s"], rows)
    noise = max(spread)
    same = bool(np.all(np.abs(np.log(ratio)) < np.log(1.25)))
    verdict = ("no difference beyond the noise of a shared CPU (every ratio within ±25%)" if same else
               f"linen {'slower' if np.median(ratio) > 1 else 'faster'} by a median factor {np.median(ratio):.2f}, "
               f"though the two runs of a width are timed seconds apart on a shared CPU, so load drift enters")
    return answer(
        "§5.2.6", "Compare the speed of the framework and the from-scratch implementation as the network grows.",
        f"Per-epoch training time through the engine (batch {BATCH}, {len(trainer.data[0])} images, 2 hidden layers of "
        f"equal width, median over epochs 2-{epochs[0]} (widest: 2-{epochs[-1]}), {_device()}): linen/scratch = "
        f"{', '.join(f'{r:.2f}' for r in ratio)} at widths {', '.join(map(str, widths))} -- {verdict} -- while the "
        f"epoch time itself grows {times['scratch'][-1] / times['scratch'][0]:.0f}-fold. Both are traced into a "
        f"jitted XLA program of the same operations (dense = matmul + bias + ReLU, the SGD update), so no per-step "
        f"cost of the framework's Python layer is expected; what grows with the network is the matmul work "
        f"(scratch reaches {rows[-1][4]:.0f} GFLOP/s at width {widths[-1]}, vs {rows[0][4]:.1f} at width "
        f"{widths[0]}, where per-step overhead dominates). Epoch-to-epoch noise of one run (median absolute "
        f"deviation): up to {noise:.0%} of its median (a shared CPU).", plot, table=tab,
        widths=widths, seconds=times)


def _device() -> str:
    d = jax.devices()[0]
    return f"{d.platform.upper()} ({d.device_kind}, {os.cpu_count()} cores)"


# --- 7: matmul alignment -------------------------------------------------------------------------------------------

def _matmul(run, sizes, reps):
    f = jax.jit(jnp.matmul)
    key = jax.random.key(run.args.seed)
    arrays = {n: (jax.random.normal(key, (n, n)), jax.random.normal(jax.random.fold_in(key, 1), (n, n)))
              for n in sizes}
    for n in sizes:                    # compile and warm up every size first
        f(*arrays[n]).block_until_ready()
    seconds = {n: [] for n in sizes}
    for _ in range(reps):              # interleaved rounds: a load change hits every size alike
        for n in sizes:
            t0 = time.perf_counter()
            f(*arrays[n]).block_until_ready()
            seconds[n].append(time.perf_counter() - t0)
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
    worst = min((n for n in sizes if n != ref), key=lambda n: gflops[n], default=ref)
    loss = 1 - gflops[worst] / gflops[ref]
    verdict = (f"no size is measurably slower (the slowest other size, n={worst}, runs at {1 - loss:.0%} of "
               f"n={ref}'s rate, within the noise)" if loss <= spread else
               f"the slowest is n={worst}, {loss:.0%} below n={ref}, more than the noise")
    return answer(
        "§5.2.7", "Time matmuls for aligned and misaligned sizes (1024, 1025, 1026, 1028, 1032). CPU vs GPU? "
        "Bus width?",
        f"On {_device()}, jitted float32 matmul, median of {reps} interleaved runs after a warm-up: n={ref} runs at "
        f"{gflops[ref]:.0f} GFLOP/s, the sizes not divisible by 8 ({', '.join(map(str, odd))}) at "
        f"{', '.join(f'{gflops[n]:.0f}' for n in odd)} GFLOP/s"
        + (f", the other multiples of 8 ({', '.join(map(str, even))}) at {', '.join(f'{gflops[n]:.0f}' for n in even)}"
           if even else "")
        + f"; {verdict}. The run-to-run noise (median absolute "
        f"deviation) is up to {spread:.0%} of a median (a shared CPU). " + _alignment(gflops, odd, even, ref, spread)
        + " (a) GPU: none here -- run `python experiments/exercises.py --section 5.2` on a GPU machine (JAX picks "
        "the GPU) to get the same table; there, sizes off multiples of 8/16 (float32/"
        "bf16 tensor-core tiles, 128-byte memory transactions) typically cost more than on a CPU. (b) The memory "
        "bus width is a hardware property JAX cannot report or measure; read it from the spec sheet "
        "(`lshw -C memory`/`dmidecode -t memory` for the CPU's channels × 64 bit, `nvidia-smi -q` for the GPU's "
        "memory bus width).", plot, table=tab, median_s=med, gflops=gflops, device=_device())


def _alignment(gflops, odd, even, ref, spread) -> str:
    """Are the sizes off a multiple of 8 slower than the other multiples of 8, or is only n=ref special?"""
    if not odd or not even:
        return ""
    g_odd, g_even = np.mean([gflops[n] for n in odd]), np.mean([gflops[n] for n in even])
    gap = 1 - g_odd / g_even
    if abs(gap) <= spread + 0.05:
        return (f"The misaligned sizes average {g_odd:.0f} GFLOP/s and the other multiples of 8 {g_even:.0f}: alike "
                f"within the noise, so what stands out is n={ref} itself (a power of two that splits evenly into the "
                f"kernel's cache blocks), not an edge of a few elements.")
    return (f"The misaligned sizes average {g_odd:.0f} GFLOP/s against {g_even:.0f} for the other multiples of 8: "
            f"{gap:+.0%} from a ragged edge the kernel must handle with partial tiles.")


def _rel_mad(t) -> float:
    """Median absolute deviation of timings relative to their median (robust to the odd preempted run)."""
    t = np.asarray(t, float)
    return float(np.median(np.abs(t - np.median(t))) / np.median(t))


def _pow2(n: int) -> int:
    return n & -n


# --- 8 and 9: activations and initializations -------------------------------------------------------------------

def _activations(run, trainer, width, names, where):
    test = {a: _ms(trainer((width,), activation=a).final("test_accuracy")) for a in names}
    best = max(names, key=lambda a: test[a][0])
    worst = min(names, key=lambda a: test[a][0])
    tied = [a for a in names if a != best and test[a][0] >= test[best][0] - math.hypot(test[a][1], test[best][1])]
    order = sorted(names, key=lambda a: -test[a][0])
    rows = [[a, _fmt(test[a])] for a in order]
    sig = (f"sigmoid ranks {order.index('sigmoid') + 1} of {len(names)}" if "sigmoid" in names else "")
    return answer(
        "§5.2.8", "Try out different activation functions. Which one works best?",
        f"Width {width}, D2L's init and lr {LR} ({where}): best {best} {_fmt(test[best])}, "
        f"worst {worst} {_fmt(test[worst])}. "
        + (f"Within the seed-to-seed spread of the best: {', '.join(tied)}. " if tied else "No other is within the "
           "seed spread of the best. ")
        + "With weights of σ=0.01 the pre-activations are tiny, so what counts is each function near 0: relu and "
        "elu pass gradients with slope 1, gelu and swish with slope 1/2, tanh with slope 1, sigmoid "
        "with slope 1/4 and an offset of 1/2 that the next layer must undo" + (f" ({sig})." if sig else "."),
        table=table(["activation", "test accuracy (mean ± std)"], rows), test={a: test[a] for a in names})


def _inits(run, trainer, width, names, where):
    test = {n: _ms(trainer((width,), init=n).final("test_accuracy")) for n in names}
    curves = {n: np.nanmean(trainer((width,), init=n).history.metric("test_accuracy"), axis=1) for n in names}
    first = {n: _first_epoch(curves[n], 0.5) for n in names}
    loss1 = {n: float(np.nanmean(trainer((width,), init=n).history.metric("train_loss")[0])) for n in names}
    rows = [[n, _fmt(test[n]), first[n] or "never", loss1[n]] for n in names]
    best = max(names, key=lambda n: test[n][0] if np.isfinite(test[n][0]) else -1)
    d2l = names[0]
    fast = [n for n in names[1:] if first[n] is not None and (first[d2l] is None or first[n] < first[d2l])]
    stuck = [n for n in names if test[n][0] < 0.2 or not np.isfinite(test[n][0])]
    return answer(
        "§5.2.9", "Is there a difference between weight initializations of the network? Does it matter?",
        f"({where}) " + "; ".join(f"{n} {_fmt(test[n])}" for n in names)
        + f". Best: {best}. First epoch at ≥ 0.5 test accuracy: "
        + ", ".join(f"{n} {first[n] or 'never'}" for n in names) + ". "
        + (f"{', '.join(fast)} get there sooner than D2L's σ=0.01, whose signal starts near zero: scaled inits "
           f"(He: Var = 2/fan_in, Xavier: 2/(fan_in+fan_out)) keep activations and gradients at unit scale. "
           if fast else "")
        + (f"Stuck at or near chance: {', '.join(stuck)}. " if stuck else "")
        + "All-zero weights cannot learn: every hidden unit computes the same 0 and gets a zero gradient (the output "
        "weights are 0 too), so only the output bias moves, towards the class prior. "
        + (f"σ=1 starts with huge logits (epoch-1 training loss {loss1['normal σ=1']:.3g}, vs ln 10 = 2.30 for "
           f"uniform guesses) and ends at {_fmt(test['normal σ=1'])}. " if "normal σ=1" in names else "")
        + "So the initialization matters: for the speed of training, and at the extremes for whether it learns.",
        table=table(["initialization", "test accuracy (mean ± std)", "first epoch ≥ 0.5", "epoch-1 train loss"], rows),
        test={n: test[n] for n in names}, first_epoch_above_half=first)
