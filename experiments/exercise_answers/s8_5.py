"""§8.5 batch normalization: LeNet (28x28) with and without BN: 1 the bias in front of BN removed, 2 the usable
learning-rate range, 3 BN in only some layers, 4 "lite" BN (mean only / variance only), 5 γ and β fixed, 6 BN
instead of dropout in an MLP (7, other normalizations, is an essay: docs only)."""
from __future__ import annotations

import math

import jax
import jax.numpy as jnp
import numpy as np

from regjax import runner
from regjax.base import Model
from regjax.batchnorm import batch_norm, batch_norm_init
from regjax.engine import grid, make_evaluate
from regjax.models.adapters import scratch_lenet_bn, scratch_mlp
from regjax.models.scratch import init_mlp
from regjax.plots import plot_panels

from .common import SCRATCH_SGD, answer, in_book_order, seeds_of, table, tiny
from .probes import without_biases

SECTION, TITLE = "8.5", "Batch normalization"
LENET_LRS = [0.03, 0.1, 0.3, 1.0, 3.0, 10.0, 30.0]
T, F = True, False
PATTERNS = {"none": (F, F, F, F), "conv layers only": (T, T, F, F), "dense layers only": (F, F, T, T),
            "first layer only": (T, F, F, F), "all": (T, T, T, T)}
MODES = {"none": None, "mean only": "mean", "variance only": "variance", "full": "full"}
VARIANT_SEEDS = 2  # seeds of ex. 3-5 (at most --seeds)
MLP = dict(hidden=(256, 256), epochs=50, lr=0.1, batch_size=64, init="he")  # §5.6's dropout MLP, He init


def add_arguments(p):
    p.add_argument("--lenet-epochs", type=runner.positive_int, default=25)
    p.add_argument("--lenet-batch-size", type=runner.positive_int, default=16)
    p.add_argument("--lenet-lrs", type=runner.positive_float, nargs="+", default=LENET_LRS)
    p.add_argument("--vmap-size", type=runner.positive_int, default=None,
                   help="LeNet members vectorized together (default: 1 on CPU, whose vmapped convolutions are "
                        "slower than one by one; all elsewhere)")


def section(run):
    args = run.args
    ds = run.ds or run.load_images()
    data = run.images(ds, flatten=False, image_size=(28, 28), train_size=tiny(run, None, 96))
    epochs = tiny(run, args.lenet_epochs, 1)
    batch = min(args.lenet_batch_size, len(data[0]))
    vmap_size = args.vmap_size or (1 if jax.default_backend() == "cpu" else None)
    lrs = [float(v) for v in args.lenet_lrs]
    if args.tiny:
        lrs = lrs[:2]
    steps = epochs * math.ceil(len(data[0]) / batch)
    ctx = dict(run=run, ds=ds, data=data, epochs=epochs, e=np.arange(1, epochs + 1), seed=args.seed,
               common=dict(epochs=epochs, batch_size=batch, progress_every=epochs, vmap_size=vmap_size),
               where=f"{ds.name} as 28x28, {len(data[0])} training images, {epochs} epochs × batch {batch} = "
                     f"{steps} SGD steps")
    out = []
    usable, results, j = _ex2_learning_rates(ctx, lrs, out)
    lr = lrs[j]
    ctx["lr"] = lr
    ctx["seeds"] = seeds_of(args)[:tiny(run, min(VARIANT_SEEDS, args.seeds), 1)]
    out.append(_ex1_bias(ctx, results["LeNet-BN"], j))
    runs = _ex3_patterns(ctx, out)
    _ex4_modes(ctx, runs, out)
    _ex5_fixed(ctx, runs, out)
    _ex6_dropout(ctx, out)
    return in_book_order(out)


def _final(acc, last=3):
    """Mean test accuracy of the last ``last`` epochs (diverged epochs count as 0)."""
    return np.nan_to_num(acc[-last:], nan=0.0).mean(0)


def _ex2_learning_rates(ctx, lrs, out):
    run, data, e = ctx["run"], ctx["data"], ctx["e"]
    members = grid([ctx["seed"]], lr=lrs)
    results = {name: run.sweep(f"8.5 {name}", scratch_lenet_bn(10, (28, 28, 1), use_bn=use_bn), SCRATCH_SGD, data,
                               members, **ctx["common"])
               for name, use_bn in (("LeNet-BN", True), ("LeNet", False))}
    panels, usable = [], {}
    for name, res in results.items():
        acc = res.history.metric("test_accuracy")
        panels.append({"series": {f"lr {lr:g}": (e, acc[:, j]) for j, lr in enumerate(lrs)}, "xlabel": "epoch",
                       "ylabel": "test accuracy", "title": name})
        final = np.nan_to_num(acc[-1], nan=0.0)
        usable[name] = {"final": final.tolist(), "last3": _final(acc).tolist(),
                        "diverged": [d is not None for d in res.history.diverged_epoch],
                        "ok": [lr for lr, a in zip(lrs, final) if a >= 0.5],
                        "train_loss_first_last": [res.history.metric("train_loss")[0].tolist(),
                                                  res.history.metric("train_loss")[-1].tolist()]}
    panels.append({"series": {n: (lrs, u["final"]) for n, u in usable.items()}, "xlabel": "learning rate",
                   "ylabel": "final test accuracy", "xscale": "log", "title": "after the last epoch"})
    loss = results["LeNet"].history.metric("train_loss")
    panels.append({"series": {f"lr {lr:g}": (e, loss[:, j]) for j, lr in enumerate(lrs)}, "xlabel": "epoch",
                   "ylabel": "training loss", "yscale": "log", "title": "LeNet (no BN): training loss"})
    plot = plot_panels(panels, run.out / "ex_8_5_2_learning_rates.png", f"§8.5 ex. 2: learning rates ({ctx['where']})")
    rng = lambda ok: f"{min(ok):g} to {max(ok):g}" if ok else "none of the grid"
    fails = {n: [lr for lr, d, a in zip(lrs, u["diverged"], u["final"]) if d or a < 0.5] for n, u in usable.items()}
    bn, plain = usable["LeNet-BN"], usable["LeNet"]
    jp = int(np.argmax(plain["final"]))
    lp = plain["train_loss_first_last"]
    out.append(answer(
        "§8.5.2", "Compare the learning rates for LeNet with and without BN. How large can the learning rate get "
        "before the optimization fails?",
        f"On {ctx['where']}, reaching ≥ 0.5 test accuracy: LeNet-BN for lr {rng(bn['ok'])} (best "
        f"{max(bn['final']):.3f}), plain LeNet for lr {rng(plain['ok'])} (best {max(plain['final']):.3f} at lr "
        f"{lrs[jp]:g}; its training loss went from {lp[0][jp]:.3f} to {lp[1][jp]:.3f}, against ln 10 = 2.303 for "
        f"guessing); diverged: LeNet-BN at {_lrs(lrs, bn['diverged'])}, LeNet at {_lrs(lrs, plain['diverged'])}. "
        f"LeNet-BN is ahead at {sum(a > b for a, b in zip(bn['final'], plain['final']))} of {len(lrs)} learning "
        f"rates. The sigmoid LeNet without BN sits on its plateau (outputs nearly independent of the input: the "
        f"gradient reaching conv0 is ~1000× smaller than its weights at initialization) for many steps; the "
        f"curves show where each learning rate stands after {ctx['epochs']} epochs.",
        plot, usable=usable, failed=fails))
    j = int(np.argmax(bn["last3"]))  # LeNet-BN's best rate (mean of its last 3 epochs), for ex. 1 and 3-5
    return usable, results, j


def _ex1_bias(ctx, full, j):
    run, data, e, lr = ctx["run"], ctx["data"], ctx["e"], ctx["lr"]
    stripped_model = without_biases(scratch_lenet_bn(10, (28, 28, 1)), ("conv0", "conv1", "dense0", "dense1"))
    stripped = run.sweep("8.5 LeNet-BN without biases before BN", stripped_model, SCRATCH_SGD, data,
                         grid([ctx["seed"]], lr=[lr]), **ctx["common"])
    full_params = jax.tree_util.tree_map(lambda a: a[j], full.state.params)
    bias = max(float(jnp.abs(full_params[n]["bias"]).max()) for n in ("conv0", "conv1", "dense0", "dense1"))
    acc_full, acc_strip = full.history.metric("test_accuracy")[:, j], stripped.history.metric("test_accuracy")[:, 0]
    plot = plot_panels([{"series": {"with biases": (e, acc_full), "biases before BN removed": (e, acc_strip)},
                         "xlabel": "epoch", "ylabel": "test accuracy", "title": f"LeNet-BN, lr {lr:g}"}],
                       run.out / "ex_8_5_1_bias.png", "§8.5 ex. 1: the bias in front of BN")
    diff = float(np.nanmax(np.abs(acc_full - acc_strip)))
    return answer(
        "§8.5.1", "Should we remove the bias of the layer in front of batch normalization? Why?",
        f"Yes: BN subtracts the batch mean, and a constant bias with it, so the bias gets no gradient (BN's own "
        f"shift β takes its role). Trained with biases at lr {lr:g}, those biases are at most {bias:.1e} after "
        f"{ctx['epochs']} epochs (they start at 0: only round-off moves them); test accuracy {acc_full[-1]:.4f} "
        f"with them vs {acc_strip[-1]:.4f} without (largest per-epoch difference {diff:.4f})"
        + (": the same network, with fewer parameters." if diff < 0.01 else
           ": the runs differ only through round-off, which training at this learning rate amplifies."),
        plot, max_abs_bias=bias, accuracy_with=acc_full.tolist(), accuracy_without=acc_strip.tolist())


def _variant(ctx, name, model):
    """One LeNet variant at LeNet-BN's best lr over the variant seeds: (test accuracy per epoch × seed)."""
    res = ctx["run"].sweep(f"8.5 {name}", model, SCRATCH_SGD, ctx["data"], grid(ctx["seeds"], lr=[ctx["lr"]]),
                           **ctx["common"])
    return res


def _summary(acc):
    """Mean ± std over seeds of the last-3-epoch mean test accuracy."""
    f = _final(acc)
    return float(f.mean()), float(f.std())


def _curves(ctx, runs, title):
    e = ctx["e"]
    series = {}
    for label, res in runs.items():
        acc = np.nan_to_num(res.history.metric("test_accuracy"), nan=0.0)
        series[label] = (e, acc.mean(1), acc.std(1)) if acc.shape[1] > 1 else (e, acc[:, 0])
    return {"series": series, "xlabel": "epoch", "ylabel": f"test accuracy (mean of {len(ctx['seeds'])} seeds)",
            "title": title}


def _rows(runs):
    rows = []
    for label, res in runs.items():
        m, s = _summary(res.history.metric("test_accuracy"))
        rows.append([label, f"{m:.4f} ± {s:.4f}", float(np.nanmean(res.history.metric("train_loss")[-1]))])
    return rows


def _ex3_patterns(ctx, out):
    runs = {label: _variant(ctx, f"LeNet BN {label}", scratch_lenet_bn(10, (28, 28, 1), use_bn=flags))
            for label, flags in PATTERNS.items()}
    plot = plot_panels([_curves(ctx, runs, f"lr {ctx['lr']:g}")], ctx["run"].out / "ex_8_5_3_bn_layers.png",
                       f"§8.5 ex. 3: BN in some layers ({ctx['where']})")
    stats = {label: _summary(res.history.metric("test_accuracy")) for label, res in runs.items()}
    best = max(stats, key=lambda k: stats[k][0])
    close = [k for k in stats if k != best and stats[best][0] - stats[k][0] <= math.hypot(stats[best][1], stats[k][1])]
    one = stats["first layer only"]
    out.append(answer(
        "§8.5.3", "Do we need batch normalization in every layer? Experiment with it.",
        f"At lr {ctx['lr']:g} (LeNet-BN's best of ex. 2), {len(ctx['seeds'])} seeds, test accuracy (mean of the last "
        f"3 epochs): " + ", ".join(f"{k} {m:.3f} ± {s:.3f}" for k, (m, s) in stats.items())
        + f". Best: {best}" + (f"; within the seed spread of it: {', '.join(close)}" if close else "") + ". "
        + f"BN in the first layer alone gets {one[0]:.3f} against {stats['none'][0]:.3f} without any: "
        + ("one BN layer already lifts the sigmoid LeNet off its plateau at this rate, so BN is not needed in every "
           "layer here." if one[0] - stats["none"][0] > 0.2 else
           "one BN layer does not suffice here."),
        plot, table=table(["BN in", "test accuracy", "final training loss"], _rows(runs)),
        stats={k: list(v) for k, v in stats.items()}, lr=ctx["lr"], seeds=ctx["seeds"]))
    return runs


def _ex4_modes(ctx, runs, out):
    modes = {"none": runs["none"], "full": runs["all"]}
    for label in ("mean only", "variance only"):
        modes[label] = _variant(ctx, f"LeNet BN {label}", scratch_lenet_bn(10, (28, 28, 1), bn_mode=MODES[label]))
    modes = {k: modes[k] for k in MODES}
    plot = plot_panels([_curves(ctx, modes, f"lr {ctx['lr']:g}")], ctx["run"].out / "ex_8_5_4_lite_bn.png",
                       f"§8.5 ex. 4: lite BN ({ctx['where']})")
    stats = {label: _summary(res.history.metric("test_accuracy")) for label, res in modes.items()}
    ranked = sorted(stats, key=lambda k: -stats[k][0])
    out.append(answer(
        "§8.5.4", "Implement a 'lite' BN that only removes the mean, or only the variance. How does it behave?",
        f"regjax.batch_norm(mode='mean') computes γ(x − μ_B) + β, mode='variance' γx/√(σ²_B + ε) + β (both keep "
        f"the moving statistics as full BN does). LeNet with each in all four BN places, lr {ctx['lr']:g}, "
        f"{len(ctx['seeds'])} seeds, test accuracy: " + ", ".join(f"{k} {m:.3f} ± {s:.3f}" for k, (m, s) in
                                                                stats.items())
        + f" (ranked: {' > '.join(ranked)}). "
        + _mode_reading(stats), plot,
        table=table(["normalization", "test accuracy", "final training loss"], _rows(modes)),
        stats={k: list(v) for k, v in stats.items()}))


def _mode_reading(stats):
    mean, var, full, none = (stats[k][0] for k in ("mean only", "variance only", "full", "none"))
    how = lambda x: ("recovers all of" if x >= full else "recovers most of" if x - none > 0.5 * (full - none)
                     else "recovers little of")
    return (f"Centring alone {how(mean)} BN's gain over no BN ({mean - none:+.3f} of {full - none:+.3f}); rescaling "
            f"alone {how(var)} it ({var - none:+.3f}). Without centring the sigmoid inputs keep their "
            f"(layer-dependent) offset; without rescaling their spread is whatever the weights make it.")


def _frozen_bn(model: Model) -> Model:
    """``model`` with its BN scale γ and shift β held at their initial 1 and 0 (``stop_gradient``)."""
    def apply(params, ms, x, *, key=None, train=False, hparams=None):
        params = {k: (jax.tree_util.tree_map(jax.lax.stop_gradient, v) if k.startswith("bn") else v)
                  for k, v in params.items()}
        return model.apply(params, ms, x, key=key, train=train, hparams=hparams)

    return Model(model.init, apply, model.hparams)


def _ex5_fixed(ctx, runs, out):
    frozen = _variant(ctx, "LeNet-BN gamma beta fixed", _frozen_bn(scratch_lenet_bn(10, (28, 28, 1))))
    both = {"γ, β trained": runs["all"], "γ = 1, β = 0 fixed": frozen, "no BN": runs["none"]}
    params = frozen.state.params
    moved = max(float(jnp.abs(params[f"bn{i}"]["scale"] - 1).max()) + float(jnp.abs(params[f"bn{i}"]["bias"]).max())
                for i in range(4))
    trained = runs["all"].state.params
    spread = {f"bn{i}": [float(jnp.min(trained[f"bn{i}"]["scale"])), float(jnp.max(trained[f"bn{i}"]["scale"])),
                         float(jnp.max(jnp.abs(trained[f"bn{i}"]["bias"])))] for i in range(4)}
    plot = plot_panels([_curves(ctx, both, f"lr {ctx['lr']:g}")], ctx["run"].out / "ex_8_5_5_fixed_gamma_beta.png",
                       f"§8.5 ex. 5: γ and β fixed ({ctx['where']})")
    st = {k: _summary(r.history.metric("test_accuracy")) for k, r in both.items()}
    a, b = st["γ, β trained"], st["γ = 1, β = 0 fixed"]
    diff = a[0] - b[0]
    verdict = ("within the seed-to-seed spread" if abs(diff) <= math.hypot(a[1], b[1]) else
               f"{'trained' if diff > 0 else 'fixed'} γ, β ahead by {abs(diff):.3f}")
    out.append(answer(
        "§8.5.5", "Fix the parameters β and γ. Observe and analyze the results.",
        f"γ = 1, β = 0 held fixed (stop_gradient; after training they moved by at most {moved:.1e}) vs trained, "
        f"lr {ctx['lr']:g}, {len(ctx['seeds'])} seeds: test accuracy {a[0]:.3f} ± {a[1]:.3f} trained vs "
        f"{b[0]:.3f} ± {b[1]:.3f} fixed ({verdict}); no BN {st['no BN'][0]:.3f}. Trained γ ranges over "
        + ", ".join(f"{k} [{v[0]:.2f}, {v[1]:.2f}]" for k, v in spread.items())
        + ". With γ, β fixed every sigmoid sees standardized inputs, i.e. works near its linear range and cannot "
          "learn to saturate or shift; "
        + (f"the standardization alone gives {(b[0] - st['no BN'][0]) / (a[0] - st['no BN'][0]):.0%} of BN's gain "
           f"over no BN." if a[0] - st["no BN"][0] > 0.05 else "BN gains little over no BN at this rate."),
        plot, table=table(["BN γ, β", "test accuracy", "final training loss"], _rows(both)),
        stats={k: list(v) for k, v in st.items()}, max_param_change=moved, trained_gamma_range=spread))


def _mlp_bn(num_inputs: int, hidden, num_outputs: int = 10, weight_init: str = MLP["init"]) -> Model:
    """The §5.6 MLP with BN between each hidden affine layer and its ReLU, no dropout; dense weights as
    ``init_mlp`` (the same key gives the dropout MLP's weights)."""
    def init(key):
        params, state = init_mlp(key, num_inputs, hidden, num_outputs, weight_init), {}
        for i, h in enumerate(hidden):
            params[f"bn{i}"], state[f"bn{i}"] = batch_norm_init(h)
        return params, state

    def apply(params, ms, x, *, key=None, train=False, hparams=None):
        h, new = jnp.reshape(x, (x.shape[0], -1)), {}
        for i in range(len(hidden)):
            d = params[f"dense{i}"]
            h, new[f"bn{i}"] = batch_norm(h @ d["kernel"] + d["bias"], params[f"bn{i}"], ms[f"bn{i}"], train=train)
            h = jax.nn.relu(h)
        d = params[f"dense{len(hidden)}"]
        return h @ d["kernel"] + d["bias"], new

    return Model(init, apply)


def _ex6_dropout(ctx, out):
    run = ctx["run"]
    data = run.images(ctx["ds"], flatten=True, train_size=tiny(run, None, 96))
    n_in, hidden = data[0].shape[1], tiny(run, MLP["hidden"], (16, 16))
    epochs, seeds = tiny(run, MLP["epochs"], 1), seeds_of(run.args)[:tiny(run, run.args.seeds, 1)]
    common = dict(epochs=epochs, batch_size=min(MLP["batch_size"], len(data[0])), progress_every=epochs)
    drop = run.sweep("8.5 MLP he dropout or not", scratch_mlp(n_in, hidden, 10, weight_init=MLP["init"]), SCRATCH_SGD, data,
                     grid(seeds, rates=[(0.2, 0.5), (0.0, 0.0)], lr=MLP["lr"]), **common)
    bn = run.sweep("8.5 MLP he BN", _mlp_bn(n_in, hidden), SCRATCH_SGD, data, grid(seeds, lr=MLP["lr"]), **common)
    k = len(seeds)
    cols = {"dropout (0.2, 0.5)": (drop, slice(0, k)), "BN, no dropout": (bn, slice(0, k)),
            "neither": (drop, slice(k, 2 * k))}
    rows, st, panels = [], {}, {"test": {}, "train": {}}
    e = np.arange(1, epochs + 1)
    for label, (res, sl) in cols.items():
        train_acc = _eval_train(res, sl, data, hidden, label)
        test_acc = np.asarray(res.history.metric("test_accuracy")[-1][sl])
        gap = train_acc - test_acc
        st[label] = {"train": train_acc.tolist(), "test": test_acc.tolist(), "gap": gap.tolist()}
        acc = res.history.metric("test_accuracy")[:, sl]
        last5 = _final(acc, 5)
        st[label]["test_last5"] = last5.tolist()
        rows.append([label, f"{train_acc.mean():.4f} ± {train_acc.std():.4f}",
                     f"{test_acc.mean():.4f} ± {test_acc.std():.4f}", f"{gap.mean():.4f} ± {gap.std():.4f}",
                     f"{last5.mean():.4f} ± {last5.std():.4f}"])
        panels["test"][label] = (e, acc.mean(1), acc.std(1))
        tr = res.history.metric("train_loss")[:, sl]
        panels["train"][label] = (e, tr.mean(1), tr.std(1))
    plot = plot_panels([{"series": panels["test"], "xlabel": "epoch", "ylabel": "test accuracy", "title": "test"},
                        {"series": panels["train"], "xlabel": "epoch", "ylabel": "training loss (train mode)",
                         "yscale": "log", "title": "training loss"}],
                       run.out / "ex_8_5_6_bn_vs_dropout.png",
                       f"§8.5 ex. 6: BN instead of dropout (MLP {n_in}-{hidden[0]}-{hidden[1]}-10 on "
                       f"{ctx['ds'].name}, {len(data[0])} images, {epochs} epochs, lr {MLP['lr']:g}, {k} seeds)")
    g = {label: np.mean(v["gap"]) for label, v in st.items()}
    t = {label: (np.mean(v["test"]), np.std(v["test"])) for label, v in st.items()}
    d, b = t["dropout (0.2, 0.5)"], t["BN, no dropout"]
    out.append(answer(
        "§8.5.6", "Can you replace dropout by batch normalization? How does the behavior change?",
        f"MLP {n_in}-{hidden[0]}-{hidden[1]}-10 on {len(data[0])} {ctx['ds'].name} images, {epochs} epochs, lr "
        f"{MLP['lr']:g}, batch {MLP['batch_size']}, He init, {k} seeds; train accuracy evaluated in eval mode after "
        f"training. Test accuracy: dropout "
        f"{d[0]:.4f} ± {d[1]:.4f}, BN without dropout {b[0]:.4f} ± {b[1]:.4f}, neither {t['neither'][0]:.4f} ± "
        f"{t['neither'][1]:.4f}; generalization gap (train − test): dropout {g['dropout (0.2, 0.5)']:.4f}, BN "
        f"{g['BN, no dropout']:.4f}, neither {g['neither']:.4f}. "
        + ("BN matches dropout's test accuracy within the seed spread" if abs(d[0] - b[0]) <= math.hypot(d[1], b[1])
           else f"{'BN' if b[0] > d[0] else 'dropout'} is ahead by {abs(b[0] - d[0]):.4f}")
        + "; " + _gap_reading(st) + ". Mean test accuracy of the last 5 epochs (the last one alone fluctuates): "
        + ", ".join(f"{k} {np.mean(v['test_last5']):.4f}" for k, v in st.items()) + ".",
        plot, table=table(["MLP", "train accuracy", "test accuracy", "gap", "test accuracy, last 5 epochs"], rows), stats=st))


def _gap_reading(st):
    gaps = {k: np.asarray(v["gap"]) for k, v in st.items()}
    d, b, n = gaps["dropout (0.2, 0.5)"], gaps["BN, no dropout"], gaps["neither"]

    def vs(x, y):
        if abs(x.mean() - y.mean()) <= math.hypot(x.std(), y.std()):
            return "within the seed spread of"
        return "smaller than" if x.mean() < y.mean() else "larger than"

    return (f"BN's gap is {vs(b, d)} dropout's, and {vs(b, n)} the plain MLP's: BN's only regularizing effect is "
            f"the noise of its batch statistics, so what it changes is mainly the fit (training-loss panel)")


def _eval_train(res, sl, data, hidden, label):
    """Eval-mode training accuracy of the members ``sl`` (no dropout, BN moving statistics)."""
    model = _mlp_bn(data[0].shape[1], hidden) if label.startswith("BN") else scratch_mlp(data[0].shape[1], hidden)
    evaluate = make_evaluate(model)
    idx = range(sl.start, sl.stop)
    take = lambda tree, i: jax.tree_util.tree_map(lambda a: a[i], tree)
    return np.array([float(evaluate(take(res.state.params, i), take(res.state.model_state, i), data[0], data[1],
                                    {"rates": jnp.zeros(2)})["accuracy"]) for i in idx])


def _lrs(lrs, flags):
    picked = [f"{lr:g}" for lr, f in zip(lrs, flags) if f]
    return ", ".join(picked) if picked else "none"


def check(run, sections):
    """Refuse a --train-size larger than the training images there are."""
    n = len(run.load_images().x_train)
    if run.args.train_size is not None and run.args.train_size > n:
        run.error(f"--train-size {run.args.train_size} exceeds the {n} training images of {run.ds.name}")
