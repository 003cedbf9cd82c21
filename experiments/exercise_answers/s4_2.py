"""§4.2 the image classification dataset: the book's grid of labelled training images; 1 reading time per example
against the batch size (regjax's device-resident batching, ``epoch_batches``, vs a Python iterator that slices
host arrays and copies each batch to the device, D2L's DataLoader pattern), 2 the data path against a training
epoch, with a profile of the Python iterator, 3 the datasets ``tensorflow_datasets`` knows (its catalogue ships with
the package: listed offline). Times are the fastest of repeated wall-clock runs on this machine's CPU (the device
JAX runs on)."""
from __future__ import annotations

import cProfile
import pstats

import jax
import numpy as np

from regjax.data.batching import epoch_batches
from regjax.models.adapters import scratch_softmax_regression
from regjax.plots import plot_panels, save_figure

from .common import SCRATCH_SGD, answer, figure, in_book_order, table, timed, tiny

SECTION, TITLE = "4.2", "The image classification dataset"
BATCH_SIZES = [1, 16, 64, 256, 1024]


def image_grid(images, titles, path, title: str, rows: int, cols: int):
    """A grid of grey images with a title each (D2L's ``show_images``)."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=(1.3 * cols, 1.5 * rows))
    FigureCanvasAgg(fig)
    axes = fig.subplots(rows, cols, squeeze=False)
    for ax, img, t in zip(axes.flat, images, titles):
        ax.imshow(np.asarray(img).squeeze(), cmap="gray_r")
        ax.set_title(t, fontsize=8)
    for ax in axes.flat:
        ax.axis("off")
    fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    return save_figure(fig, path)


def python_epoch(x: np.ndarray, y: np.ndarray, batch_size: int, rng: np.random.Generator) -> None:
    """D2L's DataLoader pattern: shuffle indices on the host, slice each batch, copy it to the device."""
    order = rng.permutation(len(x))
    last = None
    for i in range(0, len(x), batch_size):
        idx = order[i:i + batch_size]
        last = jax.device_put(x[idx]), jax.device_put(y[idx])
    jax.block_until_ready(last)


def _profile(x, y, batch_size: int, rng) -> list:
    prof = cProfile.Profile()
    prof.enable()
    python_epoch(x, y, batch_size, rng)
    prof.disable()
    st = pstats.Stats(prof)
    total = st.total_tt
    rows = sorted(((v[2], f"{k[2]} ({k[0].rsplit('/', 1)[-1]}:{k[1]})") for k, v in st.stats.items()), reverse=True)
    return [(name, t, t / total) for t, name in rows[:5]]


def _tfds_catalogue() -> dict:
    try:
        import tensorflow_datasets as tfds

        names = tfds.list_builders(with_community_datasets=False)
    except Exception as err:  # not installed, or a version that needs the network
        return {"error": f"{type(err).__name__}: {err}"}
    keys = ("mnist", "cifar", "imagenet", "svhn", "caltech", "food", "omniglot", "stl10", "coco", "voc")
    return {"count": len(names), "image_like": [n for n in names if any(k in n for k in keys)], "all": names}


def section(run):
    args = run.args
    ds = run.ds or run.load_images()
    data = run.images(ds, flatten=True)
    x, y = data[0], np.asarray(data[1])
    x_host, n = np.asarray(x), len(y)
    rng = np.random.default_rng(args.seed)
    repeats = tiny(run, 25, 2)
    names = ds.class_names or tuple(str(c) for c in range(10))
    out = []

    # the book's figure: training images with their labels
    shape = ds.x_train.shape[1:3]
    grid_plot = image_grid(ds.x_train[:18].reshape(18, *shape), [names[int(c)] for c in ds.y_train[:18]],
                           run.out / "book_4_2_images.png", f"§4.2: the first 18 training images of {ds.name}", 2, 9)
    out.append(figure("4.2", "images", f"The first 18 training images of {ds.name} ({shape[0]}x{shape[1]}) with "
                      f"their labels (the book shows Fashion-MNIST)", grid_plot, dataset=ds.name))

    # 1. reading time per example against batch size: best of many epochs per path, then a fit of the epoch time
    # against the number of batches K (t = fixed + K * per-batch) gives each path's cost per batch
    sizes = [b for b in tiny(run, BATCH_SIZES, [16, 256]) if b <= n]
    gather = jax.jit(epoch_batches, static_argnames=("batch_size",))
    key = jax.random.key(args.seed)
    rows, reps_of = [], {}
    for b in sizes:
        reps = reps_of[b] = min(repeats, max(5, int(repeats * b / 16)))     # batch 1's Python epoch takes ~1 s: fewer repeats
        t_dev = timed(lambda: jax.block_until_ready(gather(key, x, y, batch_size=b)), repeats, best=True)
        t_py = timed(lambda: python_epoch(x_host, y, b, rng), reps, best=True)
        rows.append((b, -(-n // b), 1e6 * t_dev / n, 1e6 * t_py / n, t_py / t_dev, 1e6 * t_py / -(-n // b)))
    ks = np.array([r[1] for r in rows], float)
    fit_dev = _per_batch(ks, np.array([r[2] for r in rows]) * n)     # µs per epoch against K
    fit_py = _per_batch(ks, np.array([r[3] for r in rows]) * n)
    plot1 = plot_panels([{"series": {"device-resident epoch_batches (one gather)": (sizes, [r[2] for r in rows]),
                                     "Python iterator (slice + device_put per batch)": (sizes, [r[3] for r in rows])},
                          "xlabel": "batch size", "ylabel": "µs per example (one epoch, best of repeats)",
                          "xscale": "log", "yscale": "log", "title": f"{ds.name}, {n} images, CPU"}],
                        run.out / "ex_4_2_1_batch_read.png", "§4.2 ex. 1: reading time against batch size")
    out.append(answer(
        "§4.2.1", "Does reducing the batch size (for instance, to 1) affect the reading performance?",
        f"On {ds.name} ({n} images of {x.shape[1]} floats, CPU with 2 cores shared with other jobs; fastest of "
        f"{repeats} epochs per point, {reps_of[sizes[0]]} for the slow Python epochs at batch {sizes[0]}), a least-squares fit (relative errors) of the "
        f"epoch time against the number of batches K (t = fixed + K·per-batch) gives: the Python iterator (D2L's "
        f"DataLoader pattern: slice, copy to the device) {_describe(fit_py)}; regjax's device-resident batching "
        f"(one permutation and one gather per epoch, what the engine's compiled epoch does) {_describe(fit_dev)}. "
        f"Per example the iterator takes {rows[0][3]:.3g} µs at batch {rows[0][0]} and {rows[-1][3]:.3g} at "
        f"{rows[-1][0]}, epoch_batches {rows[0][2]:.3g} and {rows[-1][2]:.3g} µs. "
        f"{_conclude(fit_py, fit_dev, rows[0][0], rows[0][1], rows[-1][0], rows[0][3] / rows[-1][3], -n % rows[-1][0])} The last "
        f"table column, the iterator's time per batch (t/K), shows the same overhead directly: "
        f"{min(r[5] for r in rows):.3g}-{max(r[5] for r in rows):.3g} µs per batch over the sizes.", plot1,
        table=table(["batch", "batches K", "epoch_batches µs/example", "Python iterator µs/example",
                     "iterator / epoch_batches", "iterator µs per batch"], rows) + "\n\n" +
        table(["path", "fixed µs per epoch", "µs per batch", "± s.e.", "largest relative residual"],
              [("epoch_batches", *fit_dev), ("Python iterator", *fit_py)]),
        rows=rows, fit_epoch_batches=fit_dev, fit_python=fit_py))

    # 2. data path against training
    model = scratch_softmax_regression(x.shape[1], 10)
    epochs = tiny(run, 20, 2)
    train_rows = []
    by_b = {r[0]: r for r in rows}
    for b in (16, 256):
        _, hist = run.fit(f"4.2 softmax batch {b}", model, SCRATCH_SGD, data, epochs=epochs, batch_size=b,
                          hparams={"lr": 0.1}, progress_every=epochs)
        t_train = float(np.min(hist.epoch_time_s[1:] or hist.epoch_time_s))   # the first epoch warms up
        if b in by_b:
            t_dev, t_py = by_b[b][2], by_b[b][3]
        else:   # --tiny may skip a size: time it here
            t_dev = 1e6 * timed(lambda: jax.block_until_ready(gather(key, x, y, batch_size=b)), repeats, best=True) / n
            t_py = 1e6 * timed(lambda: python_epoch(x_host, y, b, rng), repeats, best=True) / n
        train_rows.append((b, 1e6 * t_train / n, t_dev, t_py, t_py / (1e6 * t_train / n)))
    prof = _profile(x_host, y, 16, rng)
    out.append(answer(
        "§4.2.2", "Is the data iterator fast enough? Options to improve it; profile to find the bottlenecks.",
        f"A whole training epoch of softmax regression in the engine (batching inside the compiled loop) costs "
        f"{train_rows[0][1]:.3g} µs per example at batch 16 and {train_rows[1][1]:.3g} at 256 (fastest of "
        f"{max(epochs - 1, 1)} epochs after the first); the Python iterator alone costs {train_rows[0][3]:.3g} and "
        f"{train_rows[1][3]:.3g} µs per example (fastest of its repeats, §4.2.1), i.e. {train_rows[0][4]:.2f}x and "
        f"{train_rows[1][4]:.2f}x the training itself: {_verdict(train_rows)}. cProfile of one iterator epoch at "
        f"batch 16 puts the most own time in {prof[0][0]} ({100 * prof[0][2]:.0f}%) and {prof[1][0]} "
        f"({100 * prof[1][2]:.0f}%) (table); the iterator's per-batch cost from §4.2.1's fit is "
        f"{fit_py[1]:.3g} µs. Fixes: keep the data on the device and batch with one gather "
        f"per epoch (regjax's choice), larger batches, or prefetching in background threads/processes.",
        table=table(["batch", "engine epoch µs/example", "epoch_batches µs/example", "Python iterator µs/example",
                     "iterator / engine epoch"], train_rows) + "\n\n" +
        table(["function (cProfile, iterator epoch, batch 16)", "own seconds", "share"], prof),
        train_rows=train_rows, profile=prof))

    # 3. the tfds catalogue (offline)
    cat = _tfds_catalogue()
    if "error" in cat:
        text = (f"Not answerable here: tensorflow_datasets is unavailable ({cat['error']}); run "
                f"`python -c 'import tensorflow_datasets as tfds; print(tfds.list_builders())'` where it is installed.")
        tab = table(["status"], [(cat["error"],)])
    else:
        text = (f"tensorflow_datasets {_tfds_version()} ships its catalogue with the package: "
                f"tfds.list_builders() lists {cat['count']} datasets offline (downloading any needs the internet), "
                f"among them the image sets {', '.join(cat['image_like'][:14])}"
                f"{', ...' if len(cat['image_like']) > 14 else ''}"
                f" ({len(cat['image_like'])} with mnist, cifar, imagenet, svhn, caltech, coco, ... in their names; "
                f"Flax and JAX have no dataset catalogue of their own).")
        tab = table(["image-like datasets in tfds.list_builders()"], [(", ".join(cat["image_like"]),)])
    out.append(answer("§4.2.3", "Which other datasets does the framework's API documentation list?", text,
                      table=tab, **cat))
    return in_book_order(out)


def _per_batch(ks: np.ndarray, t_us: np.ndarray) -> tuple:
    """Least-squares fit t = fixed + K * per_batch of epoch times (µs) against the number of batches K, each point
    weighted by 1/t (timing noise is roughly relative): (fixed, per_batch, standard error of per_batch, largest
    relative residual); the error is nan with only two points."""
    w = 1.0 / t_us
    a = np.stack([np.ones_like(ks), ks], 1) * w[:, None]
    b = t_us * w
    coef, *_ = np.linalg.lstsq(a, b, rcond=None)
    resid = b - a @ coef
    se = float("nan")
    if len(ks) > 2:
        cov = (resid @ resid / (len(ks) - 2)) * np.linalg.pinv(a.T @ a)
        se = float(np.sqrt(max(cov[1, 1], 0.0)))
    return float(coef[0]), float(coef[1]), se, float(np.abs(resid).max())


def _resolved(f: tuple) -> bool:
    """A per-batch cost more than 2 standard errors above 0 (with no error estimate: positive)."""
    return f[1] > 2 * f[2] if np.isfinite(f[2]) else f[1] > 0


def _describe(f: tuple) -> str:
    fixed, c, se, worst = f
    if not np.isfinite(se):
        return f"costs {c:.3g} µs per batch on top of {fixed:.3g} µs per epoch (two points: no error estimate)"
    sig = "more than 2 s.e. above 0" if c > 2 * se else "more than 2 s.e. below 0" if c < -2 * se else \
        "within 2 s.e. of 0"
    return (f"costs {c:.3g} ± {se:.2g} µs per batch ({sig}) "
            f"on top of {fixed:.3g} µs per epoch (the line misses a point by up to {worst:.0%})")


def _conclude(py: tuple, dev: tuple, b0: int, k0: int, b_last: int, t_ratio: float, pad: int) -> str:
    """Whether the batch size matters for each path, as far as the fits' per-batch costs and their errors go
    (b0, k0: the smallest batch size and its number of batches; t_ratio: the iterator's epoch time at b0 over that
    at the largest batch size b_last; pad: the rows epoch_batches pads there)."""
    parts = []
    if _resolved(py):
        parts.append(f"So yes for the Python iterator: its epoch at batch {b0} ({k0} batches) takes {t_ratio:.0f}x "
                     f"its epoch at batch {b_last}")
    else:
        parts.append("The Python iterator's per-batch cost is not resolved by this measurement")
    if _resolved(dev):
        parts.append(f"the device-resident gather also shows a per-batch cost ({dev[1]:.3g} µs per batch, "
                     f"{dev[1] / py[1]:.2g}x the iterator's)" if py[1] > 0 else
                     f"the device-resident gather shows a per-batch cost of {dev[1]:.3g} µs")
    elif np.isfinite(dev[2]) and dev[1] < -2 * dev[2]:
        parts.append(f"the device-resident gather shows no per-batch cost: its epoch time even falls with K (fit "
                     f"{dev[1]:.3g} µs per batch), consistent with the padding it gathers growing with b "
                     f"({pad} padded rows at batch {b_last}); it never loops over batches in Python")
    else:
        parts.append(f"the device-resident gather shows no per-batch cost distinguishable from timing noise (it "
                     f"never loops over batches in Python; what changes with b is the padding of the last batch, "
                     f"{pad} rows at batch {b_last})")
    return "; ".join(parts) + "."


def _verdict(rows) -> str:
    slow = [r[0] for r in rows if r[4] > 1.5]
    fast = [r[0] for r in rows if r[4] < 1 / 1.5]
    tie = [r[0] for r in rows if r[0] not in slow and r[0] not in fast]
    parts = []
    if slow:
        parts.append(f"at batch {' and '.join(map(str, slow))} the iterator would cost more than the training it "
                     f"feeds (> 1.5x) -- the bottleneck for a model this small")
    if fast:
        parts.append(f"at batch {' and '.join(map(str, fast))} it would cost less (< 1/1.5 of the training)")
    if tie:
        parts.append(f"at batch {' and '.join(map(str, tie))} the two are within 1.5x of each other, which timing "
                     f"noise on this shared CPU can decide")
    return "; ".join(parts)


def _tfds_version() -> str:
    import tensorflow_datasets as tfds

    return tfds.__version__
