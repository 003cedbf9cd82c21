"""§8.5 batch normalization: LeNet (28x28) with and without BN: 1 the bias in front of BN removed, 2 the usable
learning-rate range."""
from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np

from regjax import runner
from regjax.engine import grid
from regjax.models.adapters import scratch_lenet_bn
from regjax.plots import plot_panels
from regjax.probes import without_biases

from .common import answer, in_book_order

SECTION, TITLE = "8.5", "Batch normalization"
LENET_LRS = [0.01, 0.1, 0.3, 1.0, 3.0, 10.0, 30.0, 100.0]


def add_arguments(p):
    p.add_argument("--lenet-epochs", type=runner.positive_int, default=20)
    p.add_argument("--lenet-batch-size", type=runner.positive_int, default=128)
    p.add_argument("--lenet-lrs", type=runner.positive_float, nargs="+", default=LENET_LRS)
    p.add_argument("--vmap-size", type=runner.positive_int, default=None,
                   help="LeNet members vectorized together (default: 1 on CPU, whose vmapped convolutions are "
                        "slower than one by one; all elsewhere)")


def section(run):
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
    out.append(answer(
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
    out.append(answer(
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




def check(run, sections):
    """Refuse a --train-size larger than the training images there are."""
    n = len(run.load_images().x_train)
    if run.args.train_size is not None and run.args.train_size > n:
        run.error(f"--train-size {run.args.train_size} exceeds the {n} training images of {run.ds.name}")
