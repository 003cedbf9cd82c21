"""§3.3 synthetic regression data: 1 a last partial batch (drop_remainder), 3/4 generators of new vs the same data
(JAX keys). Also the helpers §3.1, §3.4 and §3.5 share: D2L's data (w = [2, −3.4], b = 4.2, noise 0.01) and
one linear model object (so their sweeps share compiled programs)."""
from __future__ import annotations

import jax
import numpy as np

from regjax.data.batching import epoch_batches, num_batches
from regjax.data.synthetic import synthetic_linear
from regjax.engine import epoch_key, run_keys
from regjax.models.adapters import scratch_linreg

from .common import SCRATCH_SGD, answer, in_book_order, sample_std, table, tiny

SECTION, TITLE = "3.3", "Synthetic regression data"
TRUE_W, TRUE_B, NOISE = np.array([2.0, -3.4], np.float32), 4.2, 0.01
LINREG = scratch_linreg(2)  # one object: every sweep of one loss/batch size shares its compiled program


def linear_data(seed: int, n: int, n_test: int = 200, noise: float = NOISE, w=TRUE_W, b: float = TRUE_B) -> tuple:
    """D2L's synthetic data: (x_train, y_train, x_test, y_test) as numpy arrays, train and test independent."""
    key = jax.random.key(seed)
    x, y = synthetic_linear(jax.random.fold_in(key, 0), w, b, n, noise)
    xt, yt = synthetic_linear(jax.random.fold_in(key, 1), w, b, n_test, noise)
    return tuple(np.asarray(a) for a in (x, y, xt, yt))


def record(run, what: str, n: int, **extra) -> None:
    run.set_dataset({"name": f"synthetic_linear ({what})", "n_train": n, **extra}, n_train=n)


def pm(values) -> str:
    """``mean ± std`` over seeds in 3 significant digits, the std with ddof 1 (as ``common.mean_std``)."""
    v = np.asarray(values, float)
    return f"{v.mean():.3g} ± {sample_std(v):.2g}"


def book_batch_sizes(n: int, batch_size: int) -> list:
    """The sizes of the minibatches D2L's from-scratch ``get_dataloader`` (§3.3) yields: ``indices[i: i + batch]``
    for i = 0, batch, 2·batch, ... -- a plain Python generator, re-implemented here to count them."""
    indices = list(range(n))
    return [len(indices[i: i + batch_size]) for i in range(0, n, batch_size)]


def _dropped(seed: int, n: int, batch: int, epochs: int) -> list:
    """The examples drop_remainder=True leaves out in each of the first ``epochs`` epochs of ``run.fit`` with seed
    ``seed``: the engine's own shuffle keys (epoch_key(run_keys(key).data, e)) and batching."""
    data_key = run_keys(jax.random.key(seed)).data
    out = []
    for e in range(epochs):
        used = np.asarray(epoch_batches(epoch_key(data_key, e), np.arange(n), np.zeros(n), batch,
                                        drop_remainder=True).x).ravel()
        out.append(sorted(set(range(n)) - set(used.tolist())))
    return out


def wb(res) -> tuple:
    """(w (N, d), b (N,)) of a linear sweep's members."""
    p = res.state.params["dense0"]
    return np.asarray(p["kernel"])[..., 0], np.asarray(p["bias"])[..., 0]


def section(run):
    args, out = run.args, []
    n, batch = 1000, 32
    data = linear_data(args.seed, n)
    record(run, "D2L §3.3: w=[2,-3.4], b=4.2, noise 0.01", n)

    # 1. n not divisible by the batch size
    rows = []
    for drop in (False, True):
        state, hist = run.fit(f"3.3 drop_remainder={drop}", LINREG, SCRATCH_SGD, data, epochs=1, batch_size=batch,
                              hparams={"lr": 0.03}, loss="squared", drop_remainder=drop, progress_every=1)
        b = epoch_batches(jax.random.key(0), data[0], data[1], batch, drop_remainder=drop)
        counts = np.asarray(b.weight).sum(axis=1)
        rows.append([str(drop), num_batches(n, batch, drop), int(state.step), int(counts.sum()), int(counts[-1]),
                     batch * len(counts) - int(counts.sum()), float(hist.final()["train_loss"])])
    book = book_batch_sizes(n, batch)
    dropped = _dropped(args.seed, n, batch, 3)
    same = [len(set(dropped[0]) & set(d)) for d in dropped[1:]]
    out.append(answer(
        "§3.3.1", "What happens if the number of examples cannot be divided by the batch size? How to change it?",
        f"{n} examples in batches of {batch}: D2L's from-scratch get_dataloader (indices[i: i + {batch}]) yields "
        f"{len(book)} minibatches, the last one shorter ({book[-1]} examples). The engine, by default "
        f"(drop_remainder=False, like PyTorch's drop_last=False), also takes {rows[0][2]} steps per epoch: its last "
        f"batch holds {rows[0][4]} real examples, padded to {batch} with {rows[0][5]} weight-0 rows, so it is "
        f"averaged over its true size; drop_remainder=True takes {rows[1][2]} steps and leaves out "
        f"{n - rows[1][3]} examples each epoch -- in the engine's first 3 epochs (seed {args.seed}) examples "
        f"{dropped[0]}, {dropped[1]} and {dropped[2]}, of which {same[0]} and {same[1]} are epoch 0's: "
        f"{'a different set each epoch, as the permutation changes' if max(same) < n - rows[1][3] else 'the same ones'}"
        f". The argument is drop_remainder in fit/sweep (drop_last in PyTorch's DataLoader).",
        table=table(["drop_remainder", "batches (formula)", "engine steps in 1 epoch", "examples used",
                     "last batch size", "padding rows", "train loss after 1 epoch"], rows), rows=rows,
        book_batch_sizes=book, dropped=dropped))

    # 3/4. generators: a fresh key per call gives new data, the same key the same data
    key = jax.random.key(args.seed)
    calls = tiny(run, 4, 3)
    fresh = [synthetic_linear(jax.random.fold_in(key, i), TRUE_W, TRUE_B, 5) for i in range(calls)]
    same = [synthetic_linear(key, TRUE_W, TRUE_B, 5) for _ in range(calls)]
    gen_rows = []
    for i in range(calls):
        gen_rows.append([i, "fold_in(key, i)", f"{float(fresh[i][0][0, 0]):+.4f}", f"{float(fresh[i][1][0]):+.4f}",
                         "(call 0)" if i == 0 else str(bool(np.array_equal(fresh[i][0], fresh[0][0])))])
    for i in range(calls):
        gen_rows.append([i, "key", f"{float(same[i][0][0, 0]):+.4f}", f"{float(same[i][1][0]):+.4f}",
                         str(bool(np.array_equal(same[i][0], same[0][0]) and np.array_equal(same[i][1], same[0][1])))])
    n_fresh_equal = sum(r[4] == "True" for r in gen_rows[:calls])
    n_same_equal = sum(r[4] == "True" for r in gen_rows[calls:])
    header = ["call i", "key used", "x[0, 0]", "y[0]", "identical to call 0"]
    text3 = (f"In JAX randomness is an explicit key, so a generator that makes new data on every call passes a new "
             f"key each time: `synthetic_linear(fold_in(key, i), w, b, n)` for call i. Over {calls} calls, "
             f"{n_fresh_equal} of the {calls - 1} later calls repeat call 0's data (x[0,0] differs every call).")
    text4 = (f"The same key gives the same data: {n_same_equal} of {calls} calls with one fixed key reproduce "
             f"call 0 bit for bit -- no global seed to reset. A stream that is the same each time it is replayed is "
             f"`fold_in(key, i)` for i = 0, 1, ... again from the same key (the engine's per-epoch shuffle, "
             f"fold_in(data_key, epoch), is built that way).")
    out.append(answer("§3.3.3", "Implement a data generator that produces new data on the fly, every call.", text3,
                      table=table(header, gen_rows[:calls]), fresh_equal=n_fresh_equal))
    out.append(answer("§3.3.4", "Design a random data generator that gives the same data each call.", text4,
                      table=table(header, gen_rows[calls:]), same_equal=n_same_equal))
    return in_book_order(out)
