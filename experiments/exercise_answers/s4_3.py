"""§4.3 the base classification model: 1 the exact validation loss from the quick-and-dirty average of
minibatch losses, 2 that average is unbiased over random orders but wrong for any one order (per-example losses of
a softmax regression trained on the images' training set, evaluated on their test set), 3 the Bayes decision rule."""
from __future__ import annotations

import numpy as np

from regjax.losses import softmax_cross_entropy
from regjax.models.adapters import scratch_softmax_regression

from .common import SCRATCH_SGD, answer, in_book_order, sample_std, table, tiny

SECTION, TITLE = "4.3", "The base classification model"
BATCHES = [32, 50, 64, 100, 128, 256, 400]


def quick_and_dirty(losses: np.ndarray, b: int) -> tuple:
    """The section's estimate: the plain mean of the minibatch means (the last batch holds n − (K−1)b)."""
    means = [losses[i:i + b].mean() for i in range(0, len(losses), b)]
    return float(np.mean(means)), float(means[-1])


def exact_from_quick(l_q: float, l_last: float, n: int, b: int) -> float:
    """L_v = (b·(K·L_q − l_b) + b_last·l_b) / n with K = ⌈n/b⌉ batches and b_last = n − (K−1)b."""
    k = -(-n // b)
    b_last = n - (k - 1) * b
    return (b * (k * l_q - l_last) + b_last * l_last) / n


def section(run):
    args = run.args
    ds = run.ds or run.load_images()
    data = run.images(ds, flatten=True)
    model = scratch_softmax_regression(data[0].shape[1], 10)
    epochs = tiny(run, 50, 2)
    state, history = run.fit("4.3 softmax regression", model, SCRATCH_SGD, data, epochs=epochs, batch_size=64,
                             hparams={"lr": 0.1}, progress_every=epochs)
    logits, _ = model.apply(state.params, state.model_state, data[2], key=None, train=False, hparams={"lr": 0.1})
    losses = np.asarray(softmax_cross_entropy(logits, data[3]), np.float64)
    n, l_v = len(losses), float(losses.mean())
    rng = np.random.default_rng(args.seed)
    perms = tiny(run, 2000, 50)
    shuffled = [rng.permutation(losses) for _ in range(perms)]
    rows = []
    for b in BATCHES:
        k = -(-n // b)
        l_q, l_last = quick_and_dirty(losses, b)
        recovered = exact_from_quick(l_q, l_last, n, b)
        over = np.array([quick_and_dirty(s, b)[0] for s in shuffled])
        rows.append((b, k, n - (k - 1) * b, l_v, l_q, recovered, abs(recovered - l_v), float(over.mean()),
                     sample_std(over), float(over.mean() - l_v), float(sample_std(over) / np.sqrt(perms))))
    where = f"{n} {ds.name} test images, softmax regression after {epochs} epochs"
    tab1 = table(["b", "K batches", "b_last", "L_v", "L_v^q (this order)", "L_v from formula", "formula error"],
                 [r[:7] for r in rows])
    tab2 = table(["b", "b_last", "L_v", f"mean L_v^q over {perms} orders", "std over orders", "mean − L_v",
                  "s.e. of the mean"], [(r[0], r[2], r[3], *r[7:]) for r in rows])
    worst = max(rows, key=lambda r: abs(r[4] - r[3]))
    out = [answer(
        "§4.3.1", "Express L_v via the quick-and-dirty L_v^q, the last minibatch's loss l_v^b and the sizes.",
        f"With n examples in K = ⌈n/b⌉ batches of b and a last one of b_last = n − (K−1)b: K·L_v^q is the sum of the "
        f"K batch means, of which the first K−1 hold b examples each, so n·L_v = b(K·L_v^q − l_v^b) + b_last·l_v^b, "
        f"i.e. L_v = (b(K L_v^q − l_v^b) + b_last l_v^b)/n. Checked on {where}: the formula recovers L_v = "
        f"{l_v:.4f} to {max(r[6] for r in rows):.1e} for every b, while L_v^q itself is off by up to "
        f"{abs(worst[4] - worst[3]):.4f} (b = {worst[0]}, last batch of {worst[2]}); {_dividing(rows, n)}.",
        table=tab1, rows=[dict(zip(["b", "K", "b_last", "L_v", "L_q", "recovered", "err", "mean_q", "std_q", "bias",
                                   "se"], r)) for r in rows], train_history=history.final())]
    max_bias = max(abs(r[9]) / r[10] for r in rows if r[8] > 1e-9)   # b dividing n: no spread
    out.append(answer(
        "§4.3.2", "Show E[L_v^q] = E[L_v]. Why still use L_v?",
        f"Over a random order of the examples each batch is a uniform random subset, so E[batch mean] = L_v for "
        f"every batch, and L_v^q (their average) has E = L_v: unbiased. Measured over {perms} random orders: the "
        f"mean of L_v^q differs from L_v by at most {max_bias:.1f} standard errors (table; for b dividing n every "
        f"order gives L_v). But any single "
        f"order gives a wrong value: the last batch's examples weigh b/b_last times more, so L_v^q has a spread of "
        f"up to {max(r[8] for r in rows):.4f} over orders (b = {max(rows, key=lambda r: r[8])[0]}), where L_v is "
        f"exact, the same every time and costs nothing extra -- use L_v (a weighted mean, as regjax's evaluation "
        f"does).", table=tab2))

    # 3. Bayes decision rule
    p = np.array([0.6, 0.3, 0.1])
    loss = np.array([[0.0, 1.0, 1.0], [1.0, 0.0, 1.0], [10.0, 10.0, 0.0]])   # l(y, y'): missing class 2 costs 10
    risk = p @ loss
    zero_one = p @ (1 - np.eye(3))
    rows3 = [(j, float(p[j]), float(zero_one[j]), float(risk[j])) for j in range(3)]
    out.append(answer(
        "§4.3.3", "Given l(y, y') and p(y|x), the rule for an optimal selection of y'.",
        f"Choose y'(x) = argmin_{{y'}} E_{{y~p(·|x)}}[l(y, y')] = argmin_{{y'}} Σ_y l(y, y') p(y|x) (minimizing the "
        f"expected loss at every x minimizes the risk). For the 0-1 loss the expected loss is 1 − p(y'|x): pick the "
        f"most probable class. With p = (0.6, 0.3, 0.1) and a loss that charges 10 for missing class 2, the "
        f"expected losses are {', '.join(f'{r:.2f}' for r in risk)}: the rule picks class {int(risk.argmin())} "
        f"although class {int(p.argmax())} is the most probable.",
        table=table(["y'", "p(y'|x)", "expected 0-1 loss", "expected loss (miss 2 costs 10)"], rows3)))
    return in_book_order(out)


def _dividing(rows, n: int) -> str:
    """The batch sizes tried that divide n, and how far L_v^q is from L_v there (equal batches: the same mean)."""
    div = [r for r in rows if n % r[0] == 0]
    if not div:
        return f"none of the batch sizes tried divides n = {n}"
    gap = max(abs(r[4] - r[3]) for r in div)
    return (f"for b dividing n = {n} (b = {', '.join(str(r[0]) for r in div)}) L_v^q and L_v differ by only "
            f"{gap:.1e}")

