"""§5.5 generalization in deep learning: the exercises are essays; one experiment backs ex. 2-5 -- early stopping
of an MLP trained long enough to fit its training labels, with clean labels and with 20% / 40% of the training
labels replaced by a random other class (a fixed key). A quarter of the training images is held out as the
validation set (the engine's "test" data, labels as noisy as the training ones); the real test set is scored
after every epoch (``after_epoch``), and patience-based early stopping is applied post hoc to the per-epoch
validation accuracy."""
from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np

from regjax.engine import grid
from regjax.models.adapters import scratch_mlp
from regjax.plots import plot_panels

from .common import SCRATCH_SGD, answer, in_book_order, sample_std, seeds_of, table, tiny

SECTION, TITLE = "5.5", "Generalization in deep learning"
NOISES = [0.0, 0.2, 0.4]
PATIENCES = [5, 10, 20]


def _corrupt(key, y, fraction, classes=10):
    """A copy of ``y`` with exactly round(fraction·n) labels, chosen at random, replaced by a random other class."""
    y = np.asarray(y).copy()
    k1, k2 = jax.random.split(key)
    idx = np.asarray(jax.random.permutation(k1, len(y)))[: int(round(fraction * len(y)))]
    shift = np.asarray(jax.random.randint(k2, (len(idx),), 1, classes))
    y[idx] = (y[idx] + shift) % classes
    return y


def early_stop(val_acc, patience):
    """Post-hoc early stopping on one member's per-epoch validation accuracy: training stops once ``patience``
    epochs pass without a new best, and the best epoch's weights are kept. Returns (stop epoch, kept epoch),
    1-based; (E, argmax) when the patience never runs out."""
    best, best_e = -np.inf, 0
    for e, v in enumerate(val_acc):
        if v > best:
            best, best_e = v, e
        elif e - best_e >= patience:
            return e + 1, best_e + 1
    return len(val_acc), best_e + 1


def section(run):
    args = run.args
    ds = run.ds or run.load_images()
    x, y, x_test, y_test = run.images(ds, flatten=True, train_size=tiny(run, None, 200))
    seeds = seeds_of(args)[:tiny(run, args.seeds, 1)]
    epochs = tiny(run, 150, 2)
    key = jax.random.key(args.seed + 55)
    perm = np.asarray(jax.random.permutation(jax.random.fold_in(key, 0), len(y)))
    n_val = len(y) // 4
    val, tr = perm[:n_val], perm[n_val:]
    xs = jnp.asarray(x)
    labels = [_corrupt(jax.random.fold_in(key, i + 1), y, f) for i, f in enumerate(NOISES)]
    data = (jnp.stack([xs[tr]] * len(NOISES)), np.stack([lab[tr] for lab in labels]),
            jnp.stack([xs[val]] * len(NOISES)), np.stack([lab[val] for lab in labels]))
    model = scratch_mlp(x.shape[1], (256, 256), 10, (0.0, 0.0), weight_init="he")
    members = grid(seeds, datasets=[{"noise": f} for f in NOISES], lr=0.1)

    xt, yt = jnp.asarray(x_test), jnp.asarray(y_test)
    accuracy = jax.jit(jax.vmap(lambda p: jnp.mean(jnp.argmax(model.apply(p, {}, xt)[0], -1) == yt)))
    x_fit = xs[tr]
    predict = jax.jit(jax.vmap(lambda p: jnp.argmax(model.apply(p, {}, x_fit)[0], -1)))
    test_acc, fit_split = [], []
    noise_idx = np.array([NOISES.index(c["noise"]) for c in members.configs])
    wrong = np.stack([lab[tr] != np.asarray(y)[tr] for lab in labels])[noise_idx]      # (members, n_tr)
    given = np.stack([lab[tr] for lab in labels])[noise_idx]                          # the labels trained on

    def measure(epoch, state, history):
        test_acc.append(np.asarray(accuracy(state.params)))
        hit = np.asarray(predict(state.params)) == given                               # fits its own label
        fit_split.append(np.array([[h[~w].mean(), h[w].mean() if w.any() else np.nan]
                                   for h, w in zip(hit, wrong)]))                     # (members, clean/corrupted)

    res = run.sweep("5.5 early stopping", model, SCRATCH_SGD, data, members, epochs=epochs, batch_size=32,
                    progress_every=epochs, after_epoch=measure)
    val_acc = res.history.metric("test_accuracy")                 # (epochs, members): the validation split
    train_acc = res.history.metric("train_accuracy")
    test = np.full_like(val_acc, np.nan)
    if test_acc:
        test[-len(test_acc):] = np.stack(test_acc)                 # a resumed run measured only its own epochs
    split = np.full(val_acc.shape + (2,), np.nan)                   # (epochs, members, clean/corrupted)
    if fit_split:
        split[-len(fit_split):] = np.stack(fit_split)
    E = val_acc.shape[0]
    noise_of = np.array([c["noise"] for c in members.configs])

    rows, summary = [], {}
    for f in NOISES:
        cols = np.flatnonzero(noise_of == f)
        for p in PATIENCES:
            stops = [early_stop(val_acc[:, i], p) for i in cols]
            kept = np.array([test[k - 1, i] for (_, k), i in zip(stops, cols)])
            end = test[-1, cols]
            saved = np.array([E - s for s, _ in stops])
            summary[(f, p)] = {"stop": float(np.mean([s for s, _ in stops])), "kept_test": float(np.mean(kept)),
                               "end_test": float(np.mean(end)), "gain": float(np.mean(kept - end)),
                               "gain_std": sample_std(kept - end),
                               "saved": float(np.mean(saved))}
            s = summary[(f, p)]
            rows.append([f"{f:.0%}", p, f"{s['stop']:.1f}", f"{s['kept_test']:.4f}", f"{s['end_test']:.4f}",
                         f"{s['gain']:+.4f} ± {s['gain_std']:.4f}", f"{s['saved']:.0f} of {E}"])
    peak = {f: float(np.nanmax(np.nanmean(test[:, noise_of == f], axis=1))) for f in NOISES}
    fit = {f: float(np.nanmean(train_acc[-1, noise_of == f])) for f in NOISES}

    e = np.arange(1, E + 1)
    mean = lambda a, f: np.nanmean(a[:, noise_of == f], axis=1)
    plot = plot_panels([{"series": {f"{f:.0%} noise": (e, mean(test, f)) for f in NOISES}, "xlabel": "epoch",
                         "ylabel": "test accuracy (clean labels)", "xscale": "log", "title": "test set"},
                        {"series": {f"{f:.0%} noise": (e, mean(val_acc, f)) for f in NOISES}, "xlabel": "epoch",
                         "ylabel": "validation accuracy (noisy labels)", "xscale": "log",
                         "title": "validation split (stopping signal)"},
                        {"series": {f"{f:.0%} noise": (e, mean(train_acc, f)) for f in NOISES}, "xlabel": "epoch",
                         "ylabel": "training accuracy (noisy labels)", "xscale": "log", "title": "fit to the labels"}],
                       run.out / "ex_5_5_2_early_stopping.png",
                       f"§5.5: early stopping, clean vs noisy labels ({ds.name}, {len(tr)} training images)")
    p0 = 10 if 10 in PATIENCES else PATIENCES[0]
    g = lambda f: summary[(f, p0)]
    out = [answer(
        "§5.5.4", "What factor differentiates cases when early stopping leads to big improvements in "
        "generalization?",
        f"Label noise (more generally: whether the training labels can be fit only by memorizing). {ds.name}, MLP "
        f"256-256 trained {E} epochs on {len(tr)} images ({n_val} held out for validation, {len(y_test)} test "
        f"images), {len(seeds)} seeds; early stopping with patience {p0} on a "
        f"held-out quarter (its labels equally noisy), keeping the best validation epoch's weights. Test accuracy "
        f"gained over training to the end: {g(0.0)['gain']:+.4f} ± {g(0.0)['gain_std']:.4f} with clean labels, "
        f"{g(0.2)['gain']:+.4f} ± {g(0.2)['gain_std']:.4f} with 20% noise, {g(0.4)['gain']:+.4f} ± "
        f"{g(0.4)['gain_std']:.4f} with 40% (final training accuracy on the noisy labels {fit[0.0]:.3f} / "
        f"{fit[0.2]:.3f} / {fit[0.4]:.3f}). {_memorization(split, noise_of, 0.4, summary[(0.4, p0)]['stop'])} "
        f"Training stopped at epoch {g(0.0)['stop']:.0f} / {g(0.2)['stop']:.0f} / {g(0.4)['stop']:.0f} of {E}.", plot,
        table=table(["label noise", "patience", "stop epoch (mean)", "test acc, kept epoch", "test acc, last epoch",
                     "gain (mean ± std over seeds)", "epochs saved"], rows),
        summary={f"noise {f}, patience {p}": v for (f, p), v in summary.items()}, peak_test=peak,
        final_train_accuracy=fit, fit_clean_subset={f: np.nanmean(split[:, noise_of == f, 0], 1).tolist()
                                                    for f in NOISES},
        fit_corrupted_subset={f: np.nanmean(split[:, noise_of == f, 1], 1).tolist() for f in NOISES if f > 0})]
    gap = {f: fit[f] - g(f)["end_test"] for f in NOISES}
    out.append(answer(
        "§5.5.2", "Why might early stopping be considered a regularization technique?",
        f"It limits how far the parameters travel from their initialization -- the number of SGD steps acts like a "
        f"norm constraint (for linear least squares, like an L2 penalty with λ ~ 1/(η t)) -- so the network stops "
        f"before it fits the parts of the data that only memorization explains. Here, trained to the end, the "
        f"network fits its (noisy) training labels to {fit[0.0]:.3f} / {fit[0.2]:.3f} / {fit[0.4]:.3f} (0 / 20 / 40% "
        f"noise), a train-test gap of {gap[0.0]:.3f} / {gap[0.2]:.3f} / {gap[0.4]:.3f}; stopping at the best "
        f"validation epoch keeps test accuracy {g(0.0)['kept_test']:.4f} / {g(0.2)['kept_test']:.4f} / "
        f"{g(0.4)['kept_test']:.4f} instead of {g(0.0)['end_test']:.4f} / {g(0.2)['end_test']:.4f} / "
        f"{g(0.4)['end_test']:.4f}.", plot, train_test_gap=gap))
    spread_p = max(abs(summary[(f, a)]["gain"] - summary[(f, b)]["gain"]) for f in NOISES for a in PATIENCES
                   for b in PATIENCES)
    noisy_note = (" -- and validation labels as noisy as the training ones still pick a better epoch than the last"
                  if summary[(0.4, p0)]["gain"] > 0 else "")
    pats = lambda f: " / ".join(f"{summary[(f, p)]['gain']:+.4f}" for p in PATIENCES)
    out.append(answer(
        "§5.5.3", "How do researchers typically determine the stopping criterion?",
        f"By monitoring a held-out validation metric each epoch and stopping once it has not improved for a "
        f"'patience' of p epochs (optionally by more than a tolerance), then restoring the best epoch's weights; p "
        f"trades compute against the risk of stopping on a noisy plateau. Here the test-accuracy gain over the last "
        f"epoch for patience {' / '.join(map(str, PATIENCES))} is {pats(0.0)} (clean), {pats(0.4)} (40% noise): "
        f"{'within 0.01 of each other: little sensitivity to p' if spread_p < 0.01 else 'the choice of p matters'}"
        f"{noisy_note}.",
        plot))
    out.append(answer(
        "§5.5.5", "Beyond generalization, describe another benefit of early stopping.",
        f"Compute: training ends when the validation curve stops improving. With patience {p0} the runs stop after "
        f"{g(0.0)['stop']:.0f} / {g(0.2)['stop']:.0f} / {g(0.4)['stop']:.0f} of {E} epochs (0 / 20 / 40% noise), "
        f"saving {g(0.0)['saved'] / E:.0%} / {g(0.2)['saved'] / E:.0%} / {g(0.4)['saved'] / E:.0%} of the training "
        f"time; it also removes the number of epochs as a hyperparameter to tune separately.", plot))
    return in_book_order(out)


def _memorization(split, noise_of, f: float, stop: float) -> str:
    """When the training examples whose labels were kept are fit, against when the corrupted ones' (wrong) labels
    are: per-epoch training accuracy on each subset, mean over seeds, at noise ``f``."""
    clean = np.nanmean(split[:, noise_of == f, 0], axis=1)
    bad = np.nanmean(split[:, noise_of == f, 1], axis=1)
    if not np.isfinite(clean).any() or not np.isfinite(bad).any():
        return "(The per-subset fit was not measured in this run.)"
    first = lambda a, t: next((e + 1 for e, v in enumerate(a) if v >= t), None)
    e_c, e_b = first(clean, 0.9), first(bad, 0.5)
    at = min(max(int(round(stop)), 1), len(clean)) - 1
    when = lambda e: f"epoch {e}" if e else f"no epoch of {len(clean)}"
    if e_b is None:
        order = "the wrong labels are never half memorized"
    elif e_c is not None and e_b > e_c:
        order = f"the wrong labels are memorized {e_b - e_c} epochs after the clean pattern is learned"
    else:
        order = "the wrong labels are not memorized later than the clean pattern is learned"
    avoided = bad[at] < bad[-1] - 0.1
    return (f"Training accuracy measured every epoch on the two parts of the {f:.0%}-noise training set (mean over "
            f"seeds): the examples with their true labels reach 0.9 at {when(e_c)}, the corrupted examples' wrong "
            f"labels 0.5 at {when(e_b)}: {order}. At the mean early-stopping epoch ({at + 1}) the fits are "
            f"{clean[at]:.3f} (clean) and {bad[at]:.3f} (corrupted), at the end {clean[-1]:.3f} and {bad[-1]:.3f}"
            f"{': stopping avoids most of that memorization' if avoided else ''}.")
