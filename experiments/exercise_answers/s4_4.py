"""§4.4 softmax regression from scratch, on the flattened images: 1 naive vs max-shifted softmax at logits 100 and
below −100 (``regjax.losses``, optax), 2 cross-entropy as Σ yᵢ log ŷᵢ with one-hot labels (trained, timed, and
its log 0), 5 validation loss against the learning rate and against the minibatch size (sweeps over seeds); the
book's figure of misclassified test images. 3 and 4 are essays."""
from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import optax

from regjax.engine import grid
from regjax.losses import naive_softmax_cross_entropy, softmax_cross_entropy
from regjax.models.adapters import scratch_softmax_regression
from regjax.plots import plot_panels

from .common import SCRATCH_SGD, answer, figure, in_book_order, loss_against, seed_stats, seeds_of, table, timed, tiny
from .s4_2 import image_grid

SECTION, TITLE = "4.4", "Softmax regression from scratch"
LRS = [0.003, 0.01, 0.03, 0.1, 0.3, 1.0, 3.0, 10.0]
BATCHES = [1, 8, 64, 256, 1024]
D2L_LR, D2L_BATCH, D2L_STEPS = 0.1, 256, 10 * 235        # D2L: 10 epochs of 60000/256 batches


def onehot_cross_entropy(logits, labels):
    """−Σᵢ yᵢ log ŷᵢ with y one-hot and ŷ the (max-shifted) softmax: the definition, all q terms."""
    y = jax.nn.one_hot(labels, logits.shape[-1])
    return -jnp.sum(y * jnp.log(jax.nn.softmax(logits)), axis=-1)


def _softmax_table() -> list:
    naive_p = lambda o: jnp.exp(o) / jnp.exp(o).sum()
    show = lambda p: "[" + ", ".join(f"{v:.4g}" for v in np.asarray(p)) + "]"
    rows = []
    for name, o, label in (("[1, 2, 3]", [1.0, 2.0, 3.0], 0), ("[100, 2, 3]", [100.0, 2.0, 3.0], 0),
                           ("[-101, -102, -103]", [-101.0, -102.0, -103.0], 0),
                           ("[-110, -111, -112]", [-110.0, -111.0, -112.0], 0),
                           ("[-1000, 0, 1]", [-1000.0, 0.0, 1.0], 0), ("[-1000, 0, 1]", [-1000.0, 0.0, 1.0], 2)):
        o = jnp.asarray(o, jnp.float32)
        lab = jnp.asarray([label])
        y = jax.nn.one_hot(lab[0], 3)
        rows.append((name, label, show(naive_p(o)), show(jax.nn.softmax(o)),
                     float(naive_softmax_cross_entropy(o[None], lab)[0]), float(softmax_cross_entropy(o[None], lab)[0]),
                     float(optax.softmax_cross_entropy_with_integer_labels(o[None], lab)[0]),
                     float(-jnp.sum(y * jnp.log(naive_p(o)))), float(-jnp.sum(y * jax.nn.log_softmax(o)))))
    return rows


def _time_losses(seed: int, repeats: int) -> list:
    rows = []
    for q in (10, 1000, 10000):
        n = 4096 if q < 10000 else 1024
        logits = jax.random.normal(jax.random.key(seed), (n, q))
        labels = jax.random.randint(jax.random.key(seed + 1), (n,), 0, q)
        times = {}
        for name, fn in (("index", softmax_cross_entropy), ("onehot", onehot_cross_entropy)):
            f = jax.jit(lambda o, y, fn=fn: jnp.mean(fn(o, y)))
            times[name] = timed(lambda: f(logits, labels).block_until_ready(), repeats, best=True)
        rows.append((q, n, 1e6 * times["index"] / n, 1e6 * times["onehot"] / n, times["onehot"] / times["index"]))
    return rows


def section(run):
    args = run.args
    ds = run.ds or run.load_images()
    data = run.images(ds, flatten=True)
    n, n_in = len(data[0]), data[0].shape[1]
    seeds = seeds_of(args)[:tiny(run, args.seeds, 1)]
    model = scratch_softmax_regression(n_in, 10)
    where = f"{ds.name}, {n} training / {len(data[2])} test images"
    out = []

    # 1. numerical stability of softmax
    rows1 = _softmax_table()
    out.append(answer(
        "§4.4.1", "Does the naive softmax work at an input of 100, or when all inputs are below −100? Fix it.",
        f"No (float32): exp(100) = inf, so [100, 2, 3] gives inf/inf = {rows1[1][2]} and a loss of {rows1[1][4]}; "
        f"at [−110, −111, −112] every exp underflows to 0 and 0/0 gives {rows1[3][2]} (loss {rows1[3][4]}); "
        f"[−101, −102, −103] (exp(−101) ≈ 1.4e−44, a float32 denormal) gives {rows1[2][2]} on this CPU. "
        f"Subtracting the largest entry first (softmax(o) = softmax(o − max o), exact because softmax is shift "
        f"invariant) gives {rows1[1][3]} and {rows1[3][3]}, and the log-sum-exp loss "
        f"(regjax.losses.softmax_cross_entropy) {rows1[1][5]:.4f} and {rows1[3][5]:.4f}, equal to optax's "
        f"({rows1[1][6]:.4f}, {rows1[3][6]:.4f}).",
        table=table(["logits", "label", "naive softmax", "max-shifted softmax", "naive CE", "regjax CE", "optax CE"],
                    [r[:7] for r in rows1]), rows=rows1))

    # 5a. learning rate (its lr-0.1 members are also ex. 2's reference)
    timing = _time_losses(args.seed, tiny(run, 30, 2))
    epochs5 = tiny(run, -(-D2L_STEPS // -(-n // D2L_BATCH)), 2)
    lrs = tiny(run, LRS, [0.1, 1.0])
    members = grid(seeds, lr=lrs)
    res = run.sweep("4.4 learning rate", model, SCRATCH_SGD, data, members, epochs=epochs5, batch_size=D2L_BATCH,
                    progress_every=epochs5, checkpoint_interval_s=60.0)
    tr_m, tr_s, te_m, te_s, best, plot_a = loss_against(
        members, res, "lr", lrs, run.out / "ex_4_4_5_learning_rate.png", xlabel="lr", xscale="log",
        title=f"{where}; {epochs5} epochs, batch {D2L_BATCH}", suptitle="§4.4 ex. 5a: loss against the learning rate",
        test_label="validation")
    n_div = int(np.sum(~res.history.alive))

    # 2. cross-entropy as Σ y log ŷ, trained like the lr-0.1 members above
    at = [j for j, c in enumerate(members.configs) if abs(c["lr"] - D2L_LR) < 1e-9]
    res_o = run.sweep("4.4 one-hot CE", model, SCRATCH_SGD, data, grid(seeds, lr=D2L_LR), epochs=epochs5,
                      batch_size=D2L_BATCH, loss=onehot_cross_entropy, task="classification", progress_every=epochs5,
                      checkpoint_interval_s=60.0)
    li, lo = res.final("test_loss")[at], res_o.final("test_loss")
    out.append(answer(
        "§4.4.2", "Cross-entropy as Σ yᵢ log ŷᵢ: try it; why slower; should you use it; what to watch for?",
        f"Trained on {where} ({epochs5} epochs, batch {D2L_BATCH}, lr {D2L_LR}, {len(seeds)} seeds) it gives the "
        f"same model: final test loss {li.mean():.5f} (label indexing) vs {lo.mean():.5f} (one-hot sum), largest "
        f"difference {np.max(np.abs(li - lo)):.1e}. {_slower(timing)} Use it only for soft "
        f"labels (label smoothing, distillation), where y is not one-hot. Careful with the log's domain: log 0 = "
        f"−inf, and 0·(−inf) = nan even where yᵢ = 0: with the naive softmax, logits [−1000, 0, 1] give "
        f"{rows1[5][7]} for label 2 (ŷ₀ = 0 and 0·log 0) and {rows1[4][7]} for label 0, while log_softmax gives "
        f"{rows1[5][8]:.4f} and {rows1[4][8]:.1f} (take log ŷ as o − logsumexp(o), never the log of a softmax).",
        table=table(["classes q", "examples", "indexing µs/example", "one-hot µs/example", "one-hot / indexing"],
                    timing), timing=timing, test_loss_index=li.tolist(), test_loss_onehot=lo.tolist()))

    # 5b. minibatch size: (i) the same epochs and lr (the number of steps then falls with b), (ii) the same number
    # of SGD steps (epochs = steps / batches per epoch, rounded), to separate the batch size from the step count
    bsizes = [b for b in tiny(run, BATCHES, [256]) if b <= n]
    epochs_b = tiny(run, 50, 1)
    steps_fixed = tiny(run, -(-n // min(bsizes)), 4)       # one epoch at the smallest batch
    rows_b, rows_s = [], []
    for b in bsizes:
        k = -(-n // b)
        for label, ep, dest in (("", epochs_b, rows_b), (" same steps", max(1, round(steps_fixed / k)), rows_s)):
            r = run.sweep(f"4.4 batch {b}{label}", model, SCRATCH_SGD, data, grid(seeds, lr=D2L_LR), epochs=ep,
                          batch_size=b, progress_every=ep, checkpoint_interval_s=60.0)
            train, test = seed_stats(r.final("train_loss")), seed_stats(r.final("test_loss"))
            dest.append((b, ep * k, train.mean, train.std, test.mean, test.std,
                         float(np.nanmean(r.final("test_accuracy")))))
    rb, rs = np.array([r[1:] for r in rows_b], float), np.array([r[1:] for r in rows_s], float)
    train_label = "train (mean over the last epoch's steps)"
    plot_b = plot_panels([{"series": {"validation": (bsizes, rb[:, 3], rb[:, 4]), train_label: (bsizes, rb[:, 1], rb[:, 2])},
                           "xlabel": "minibatch size", "ylabel": "final loss", "xscale": "log", "yscale": "log",
                           "title": f"same epochs ({epochs_b}), lr {D2L_LR}, {len(seeds)} seeds"},
                          {"series": {"validation": (bsizes, rs[:, 3], rs[:, 4]), train_label: (bsizes, rs[:, 1], rs[:, 2])},
                           "xlabel": "minibatch size", "ylabel": "final loss", "xscale": "log", "yscale": "log",
                           "title": f"same SGD steps (≈{steps_fixed}), lr {D2L_LR}"}],
                         run.out / "ex_4_4_5_batch_size.png", "§4.4 ex. 5b: loss against the minibatch size")
    head = ["batch", "SGD steps", "train loss (mean over the last epoch's steps)", "± std", "validation loss",
            "± std", "val. accuracy"]
    out.append(answer(
        "§4.4.5", "Plot validation loss against the learning rate; does loss change with the minibatch size?",
        f"(a) {where}, {epochs5} epochs at batch {D2L_BATCH} (D2L's {D2L_STEPS} SGD steps), {len(seeds)} seeds: "
        f"validation loss {te_m[0]:.3f} ± {te_s[0]:.3f} at lr {lrs[0]:g}, lowest {te_m[best]:.3f} ± "
        f"{te_s[best]:.3f} at lr {lrs[best]:g}, {te_m[-1]:.3f} ± {te_s[-1]:.3f} at lr {lrs[-1]:g} ({n_div} "
        f"members diverged; ex_4_4_5_learning_rate.png): {_lr_effect(lrs, te_m, te_s, tr_m, best, n_div)}. "
        f"(b) At lr {D2L_LR}, (i) for the same {epochs_b} epochs (first table): validation loss "
        f"{rows_b[0][4]:.3f} ± {rows_b[0][5]:.3f} at batch {bsizes[0]} ({rows_b[0][1]} steps), {rows_b[-1][4]:.3f} "
        f"± {rows_b[-1][5]:.3f} at {bsizes[-1]} ({rows_b[-1][1]} steps): {_batch_effect(rows_b)}. But with epochs "
        f"fixed the batch size also sets the number of steps, so (ii) for about the same number of steps "
        f"({min(r[1] for r in rows_s)}-{max(r[1] for r in rows_s)}; second table): {rows_s[0][4]:.3f} ± "
        f"{rows_s[0][5]:.3f} at batch {bsizes[0]}, {rows_s[-1][4]:.3f} ± {rows_s[-1][5]:.3f} at {bsizes[-1]}: "
        f"{_batch_effect(rows_s)}. {_batch_verdict(rows_b, rows_s)} (ex_4_4_5_batch_size.png)", plot_a,
        table=f"Same epochs ({epochs_b}):\n\n" + table(head, rows_b) +
        f"\n\nSame number of SGD steps (≈{steps_fixed}):\n\n" + table(head, rows_s),
        lrs=lrs, test_mean=te_m.tolist(), test_std=te_s.tolist(), train_mean=tr_m.tolist(), batch_rows=rows_b,
        same_step_rows=rows_s, batch_plot=str(plot_b)))

    # the book's figure: misclassified test images (the lr 0.1 member of the first seed)
    i = next(j for j, c in enumerate(members.configs) if abs(c["lr"] - D2L_LR) < 1e-9)
    params = jax.tree_util.tree_map(lambda a: a[i], res.state.params)
    logits, _ = model.apply(params, {}, data[2], key=None, train=False, hparams={"lr": D2L_LR})
    pred = np.asarray(jnp.argmax(logits, -1))
    wrong = np.flatnonzero(pred != data[3])[:18]
    names = ds.class_names or tuple(str(c) for c in range(10))
    shape = ds.x_test.shape[1:3]
    if len(wrong):
        plot_f = image_grid(ds.x_test[wrong].reshape(len(wrong), *shape),
                            [f"{names[data[3][j]]}\n→ {names[pred[j]]}" for j in wrong], run.out / "book_4_4_wrong.png",
                            f"§4.4: misclassified {ds.name} test images (true → predicted)", 2, 9)
        out.append(figure("4.4", "wrong", f"Misclassified {ds.name} test images, true label above the prediction, "
                          f"softmax regression lr {D2L_LR} after {epochs5} epochs ({int((pred != data[3]).sum())} of "
                          f"{len(pred)} wrong)", plot_f, wrong=int((pred != data[3]).sum())))
    return in_book_order(out)


def _batch_effect(rows) -> str:
    """Where the validation loss differs from the best batch size's by more than the seed spread."""
    best = min(rows, key=lambda r: r[4])
    worse = [r[0] for r in rows if r[4] - best[4] > np.hypot(r[5], best[5])]
    if not worse:
        return "every batch size is within the seed spread of the best"
    return (f"the best validation loss is at batch {best[0]}; batch {', '.join(map(str, worse))} "
            f"{'is' if len(worse) == 1 else 'are'} worse by more than the seed spread")


def _batch_verdict(same_epochs, same_steps) -> str:
    """What the two comparisons together say about the batch size itself."""
    be, bs = min(same_epochs, key=lambda r: r[4]), min(same_steps, key=lambda r: r[4])
    worse_s = [r for r in same_steps if r[4] - bs[4] > np.hypot(r[5], bs[5])]
    if not worse_s:
        return ("With the steps equalised the batch sizes are within the seed spread of each other: the "
                "fixed-epoch differences come from the number of steps")
    if be[0] == bs[0]:
        return (f"Batch {bs[0]} is best in both comparisons and at equal steps some sizes stay worse beyond the "
                f"seed spread: the batch size matters beyond the step count it implies (at this lr)")
    ok = [r[0] for r in same_steps if r not in worse_s and r[0] != bs[0]]
    return (f"The best batch size moves from {be[0]} (same epochs) to {bs[0]} (same steps), so the fixed-epoch "
            f"ranking is mostly the number of steps; at equal steps batch {', '.join(str(r[0]) for r in worse_s)} "
            f"{'is' if len(worse_s) == 1 else 'are'} worse than batch {bs[0]} by more than the seed spread"
            f"{', batch ' + ', '.join(map(str, ok)) + ' within it' if ok else ''} (at this lr)")


def _lr_effect(lrs, mean, std, train, best, n_div) -> str:
    """What the learning-rate curve shows on either side of its minimum."""
    parts = []
    if best > 0:
        parts.append(f"smaller rates leave the model undertrained in the fixed steps (lr {lrs[0]:g}: "
                     f"{mean[0] / mean[best]:.1f}x the best)")
    if best < len(lrs) - 1:
        beyond = mean[-1] - mean[best] > np.hypot(std[-1], std[best])
        parts.append(f"above lr {lrs[best]:g} the loss rises again, to {mean[-1]:.3f} at lr {lrs[-1]:g} "
                     f"({'beyond' if beyond else 'within'} the seed spread)")
        if train[-1] < train[best] and n_div == 0:
            parts.append(f"there the train loss is lower ({train[-1]:.3g} vs {train[best]:.3g} at lr "
                         f"{lrs[best]:g}) and no member diverged: a widening train-validation gap, not instability")
        elif n_div:
            parts.append("some members diverged")
    else:
        parts.append("the largest rate tried is the best: the stable range extends further")
    return "; ".join(parts)


def _slower(timing) -> str:
    """Whether the one-hot loss measured slower (more than 1.2x the indexed one, fastest of the repeats) at each q."""
    ratios = ", ".join(f"{r[4]:.1f}x at q = {r[0]}" for r in timing)
    slow = [r[0] for r in timing if r[4] > 1.2]
    why = ("it builds the n × q one-hot matrix and takes the log of, multiplies and sums all q terms where "
           "indexing reads one")
    where = "CPU, 2 shared cores, jitted, fastest of the repeats"
    if len(slow) == len(timing):
        return f"It is slower ({ratios}; {where}) because {why}."
    if slow:
        return (f"It is slower where q is large ({ratios}; {where}) because {why}; at q = "
                f"{', '.join(str(r[0]) for r in timing if r[0] not in slow)} the two are within 1.2x of each other, "
                f"which timing noise on this shared CPU can decide.")
    return f"Here no q tried shows it more than 1.2x slower ({ratios}; {where}), though {why}."

