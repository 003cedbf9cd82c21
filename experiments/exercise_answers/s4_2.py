"""§4.2 the image classification dataset: the book's grid of labelled training images; 1 reading time per example
against the batch size (regjax's device-resident batching, ``epoch_batches``, vs a Python iterator that slices
host arrays and copies each batch to the device, D2L's DataLoader pattern), 2 the data path against a training
epoch, with a profile of the Python iterator, 3 the datasets ``tensorflow_datasets`` knows (its catalogue ships with
the package: listed offline). Times are wall-clock medians on this machine's CPU (the device JAX runs on)."""
from __future__ import annotations

import cProfile
import pstats

import jax
import numpy as np

from regjax.data.batching import epoch_batches
from regjax.models.adapters import scratch_softmax_regression
from regjax.plots import plot_panels, save_figure

from .common import answer, figure, in_book_order, table, timed, tiny

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
    run.start()   # the figures come before the first training: declare the run first (--overwrite clears old files)
    x, y = data[0], np.asarray(data[1])
    x_host, n = np.asarray(x), len(y)
    rng = np.random.default_rng(args.seed)
    repeats = tiny(run, 7, 1)
    names = ds.class_names or tuple(str(c) for c in range(10))
    out = []

    # the book's figure: training images with their labels
    shape = ds.x_train.shape[1:3]
    grid_plot = image_grid(ds.x_train[:18].reshape(18, *shape), [names[int(c)] for c in ds.y_train[:18]],
                           run.out / "book_4_2_images.png", f"§4.2: the first 18 training images of {ds.name}", 2, 9)
    out.append(figure("4.2", "images", f"The first 18 training images of {ds.name} ({shape[0]}x{shape[1]}) with "
                      f"their labels (the book shows Fashion-MNIST)", grid_plot, dataset=ds.name))

    # 1. reading time per example against batch size
    sizes = [b for b in tiny(run, BATCH_SIZES, [16, 256]) if b <= n]
    gather = jax.jit(epoch_batches, static_argnames=("batch_size",))
    key = jax.random.key(args.seed)
    rows = []
    for b in sizes:
        t_dev = timed(lambda: jax.block_until_ready(gather(key, x, y, batch_size=b)), repeats)
        t_py = timed(lambda: python_epoch(x_host, y, b, rng), repeats)
        rows.append((b, -(-n // b), 1e6 * t_dev / n, 1e6 * t_py / n, t_py / t_dev))
    plot1 = plot_panels([{"series": {"device-resident epoch_batches (one gather)": (sizes, [r[2] for r in rows]),
                                     "Python iterator (slice + device_put per batch)": (sizes, [r[3] for r in rows])},
                          "xlabel": "batch size", "ylabel": "µs per example (one epoch)", "xscale": "log",
                          "yscale": "log", "title": f"{ds.name}, {n} images, CPU"}],
                        run.out / "ex_4_2_1_batch_read.png", "§4.2 ex. 1: reading time against batch size")
    out.append(answer(
        "§4.2.1", "Does reducing the batch size (for instance, to 1) affect the reading performance?",
        f"Yes, for an iterator that handles one batch at a time: its cost per example is a fixed cost per batch "
        f"(Python, slicing, a host-to-device copy) spread over b examples. On {ds.name} ({n} images of "
        f"{x.shape[1]} floats, CPU, median of {repeats}): the Python iterator takes {rows[0][3]:.2f} µs per example "
        f"at batch {rows[0][0]} and {rows[-1][3]:.3f} at {rows[-1][0]}; regjax's device-resident batching (one "
        f"permutation and one gather per epoch, what the engine's compiled epoch does) takes {rows[0][2]:.3f} and "
        f"{rows[-1][2]:.3f} µs ({_flat([r[2] for r in rows])}): no cost per batch, since it never loops over "
        f"batches in Python (what varies is the padding of the last batch, {-n % rows[-1][0]} rows at batch "
        f"{rows[-1][0]}, and timing noise on a CPU shared with other jobs).", plot1,
        table=table(["batch", "batches", "epoch_batches µs/example", "Python iterator µs/example",
                     "iterator / epoch_batches"], rows), rows=rows))

    # 2. data path against training
    model = scratch_softmax_regression(x.shape[1], 10)
    epochs = tiny(run, 10, 1)
    train_rows = []
    for b in (16, 256):
        _, hist = run.fit(f"4.2 softmax batch {b}", model, None, data, epochs=epochs, batch_size=b,
                          hparams={"lr": 0.1}, progress_every=epochs)
        t_train = float(np.median(hist.epoch_time_s[1:] or hist.epoch_time_s))   # the first epoch warms up
        by_b = {r[0]: r for r in rows}
        t_dev = by_b[b][2] if b in by_b else float("nan")
        t_py = by_b[b][3] if b in by_b else float("nan")
        train_rows.append((b, 1e6 * t_train / n, t_dev, t_py, t_py / (1e6 * t_train / n)))
    prof = _profile(x_host, y, 16, rng)
    out.append(answer(
        "§4.2.2", "Is the data iterator fast enough? Options to improve it; profile to find the bottlenecks.",
        f"A whole training epoch of softmax regression in the engine (batching inside the compiled loop) costs "
        f"{train_rows[0][1]:.3f} µs per example at batch 16 and {train_rows[1][1]:.3f} at 256 (median of {epochs} "
        f"epochs); the Python iterator alone costs {train_rows[0][3]:.3f} and {train_rows[1][3]:.3f} µs per "
        f"example, i.e. {train_rows[0][4]:.2f}x and {train_rows[1][4]:.2f}x the training itself: "
        f"{_verdict(train_rows)}. cProfile of one iterator epoch at batch 16 puts the time in "
        f"{prof[0][0]} ({100 * prof[0][2]:.0f}% of own time) and {prof[1][0]} ({100 * prof[1][2]:.0f}%): per-batch "
        f"Python and transfer overhead, not reading. Fixes: keep the data on the device and batch with one gather "
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


def _flat(values) -> str:
    ratio = max(values) / min(values)
    return f"within a factor {ratio:.1f} over the batch sizes" if ratio < 3 else f"varying {ratio:.1f}x over them"


def _verdict(rows) -> str:
    slow = [r[0] for r in rows if r[4] > 1]
    if not slow:
        return "the iterator would cost less than the training it feeds, at both batch sizes"
    return (f"at batch {' and '.join(map(str, slow))} the iterator would cost more than the training it feeds -- "
            f"the bottleneck for a model this small")


def _tfds_version() -> str:
    import tensorflow_datasets as tfds

    return tfds.__version__
