"""§3.6 generalization, on D2L's polynomial problem (y = Σ wᵢ xⁱ/i! + 0.1 ε, w = (5, 1.2, −3.4, 5.6), batch 10, lr
0.02 = D2L's 0.01 on MSELoss): 1 exact polynomial regression (least squares on the Vandermonde matrix) and -- the
Chinese edition's exercise -- training on unscaled features xⁱ, 3 zero training error and the Chinese edition's
loss against the number of features 1..20, 7 a learning curve (test loss against training-set size, by training on
subsets). The other exercises (2, 4, 5, 6) are essays."""
from __future__ import annotations

import math

import jax
import jax.numpy as jnp
import numpy as np

from regjax.data import polynomial_data
from regjax.engine import grid
from regjax.models.adapters import scratch_linreg
from regjax.plots import plot_panels

from .common import answer, in_book_order, seeds_of, table, tiny

SECTION, TITLE = "3.6", "Generalization"
LR, BATCH, NOISE = 0.02, 10, 0.1
SIZES = [5, 10, 20, 50, 100, 200, 500, 1000]
UNSCALED_LRS = [0.02, 1e-4, 1e-8, 1e-12, 1e-16, 1e-20]


def _draw(seed: int, n_train: int, n_test: int) -> object:
    return polynomial_data(jax.random.fold_in(jax.random.key(seed), 36), n_train, n_test, 20, noise=NOISE)


def _vandermonde_rows(seed: int) -> list:
    """Least squares on the Vandermonde matrix of degree d (d + 1 coefficients) with n distinct points: the residual
    is 0 (up to round-off) iff n <= d + 1."""
    rng = np.random.default_rng(seed)
    true_w = np.array([5.0, 1.2, -3.4, 5.6])
    rows = []
    for d, ns in ((3, (2, 3, 4, 5, 10, 100)), (19, (20, 21))):
        for n in ns:
            x = rng.normal(size=n)
            v = x[:, None] ** np.arange(d + 1) / np.array([math.factorial(i) for i in range(d + 1)])
            clean = v[:, :4] @ true_w
            y = clean + NOISE * rng.normal(size=n)
            w, *_ = np.linalg.lstsq(v, y, rcond=None)
            w0, *_ = np.linalg.lstsq(v, clean, rcond=None)
            rows.append((d, d + 1, n, "yes" if n <= d + 1 else "no", float(np.mean((v @ w - y) ** 2)),
                         float(np.mean((v @ w0 - clean) ** 2)), float(np.linalg.cond(v))))
    return rows


def _unscaled(run, seed: int, epochs: int):
    """20 features xⁱ/i! (D2L), xⁱ unscaled, and xⁱ standardized (z-scored with the training mean/std) × lr."""
    d = _draw(seed, 100, 100)
    fact = jnp.asarray([math.factorial(i) for i in range(20)], jnp.float32)
    raw_tr, raw_te = d.x_train * fact, d.x_test * fact
    mu, sd = raw_tr[:, 1:].mean(0), raw_tr[:, 1:].std(0)
    z = lambda a: jnp.concatenate([a[:, :1], (a[:, 1:] - mu) / sd], axis=1)
    arrays = [(d.x_train, d.y_train, d.x_test, d.y_test), (raw_tr, d.y_train, raw_te, d.y_test),
              (z(raw_tr), d.y_train, z(raw_te), d.y_test)]
    names = ["xⁱ/i! (D2L)", "xⁱ unscaled", "xⁱ standardized"]
    data = tuple(jnp.stack(a) for a in zip(*arrays))
    members = grid([seed], datasets=[{"features": n} for n in names], lr=UNSCALED_LRS)
    res = run.sweep("3.6 unscaled features", scratch_linreg(20, use_bias=False), None, data, members, epochs=epochs,
                    batch_size=BATCH, loss="squared", progress_every=epochs, checkpoint_interval_s=60.0)
    conds = [float(np.linalg.cond(np.asarray(a[0], np.float64))) for a in arrays]
    return names, members, res, float(jnp.abs(raw_tr).max()), conds


def _overfit(te: np.ndarray, best: int) -> str:
    """Is the 20-feature test loss above the best one by more than the spread over data draws?"""
    diff = te[:, -1] - te[:, best]
    if (diff > 0).all() or diff.mean() > diff.std():
        return (f"overfit: the 20-feature test loss is higher in {int((diff > 0).sum())} of {len(diff)} draws, by "
                f"{np.median(diff):.3g} in the median draw")
    return f"do not overfit beyond the spread over draws (higher in {int((diff > 0).sum())} of {len(diff)} draws)"


def _flattened(te: np.ndarray, half: int, sizes: list) -> str:
    """What the last step of the learning curve says: still falling, or flat within the spread over draws."""
    gain = te[:, half] - te[:, -1]
    if gain.mean() > gain.std():
        return (f"Doubling from {sizes[half]} to {sizes[-1]} still lowers test loss by {gain.mean():.3g} ± "
                f"{gain.std():.2g}: more data would still help.")
    return (f"From {sizes[half]} to {sizes[-1]} examples the test loss changes by {-gain.mean():+.3g} ± "
            f"{gain.std():.2g}, within the spread over draws: the curve has flattened, so more data of this kind "
            f"would not help this model much (a different model might).")


def section(run):
    args = run.args
    seeds = seeds_of(args)[:tiny(run, args.seeds, 1)]
    run.set_dataset({"name": "polynomial (D2L §3.6)", "n_train": 100, "n_test": 100, "features": 20, "noise": NOISE},
                    n_train=100)
    out = []

    # 1. exact polynomial regression; unscaled features (zh)
    rows = _vandermonde_rows(args.seed)
    epochs_u = tiny(run, 400, 2)
    names, members, res, x_max, conds = _unscaled(run, args.seed, epochs_u)
    train = res.history.metric("train_loss")
    final = {(c["features"], c["lr"]): v for c, v in zip(members.configs, res.final("train_loss"))}
    diverged = {(c["features"], c["lr"]): e for c, e in zip(members.configs, res.history.diverged_epoch)}
    ep = np.arange(1, epochs_u + 1)
    panels = [{"series": {f"lr {lr:g}": (ep, train[:, i]) for i, c in enumerate(members.configs)
                          for lr in [c["lr"]] if c["features"] == name}, "xlabel": "epoch", "ylabel": "train loss",
               "xscale": "log", "yscale": "log", "title": name} for name in names]
    plot1 = plot_panels(panels, run.out / "ex_3_6_1_unscaled.png",
                        "§3.6 ex. 1 (zh): 20 polynomial features, scaled by 1/i! or not (diverged runs end)")
    ok_unscaled = [lr for lr in UNSCALED_LRS if diverged[(names[1], lr)] is None]
    top = max(ok_unscaled, default=None)
    col = {(c["features"], c["lr"]): i for i, c in enumerate(members.configs)}
    start_top = train[0, col[(names[1], top)]] if top is not None else float("nan")
    at_top = final[(names[1], top)] if top is not None else float("nan")
    z_div = [lr for lr in UNSCALED_LRS if diverged[(names[2], lr)] is not None]
    best_z = min(((final[(names[2], lr)], lr) for lr in UNSCALED_LRS if diverged[(names[2], lr)] is None),
                 default=(float("nan"), float("nan")))
    exact = [r for r in rows if r[0] == 3]
    out.append(answer(
        "§3.6.1", "When can you solve the problem of polynomial regression exactly?",
        f"When the n training x are distinct and n ≤ d + 1 (d the degree): the n × (d+1) Vandermonde matrix then "
        f"has full row rank, so Vw = y has an exact solution (unique at n = d + 1, infinitely many below) whatever "
        f"the noise; with noise and n > d + 1 there is none. Least squares for d = 3: mean squared residual "
        f"{', '.join(f'{r[4]:.1e}' for r in exact)} at n = {', '.join(str(r[2]) for r in exact)}; without noise "
        f"(the data a cubic) it is ≈ 0 for every n. For d = 19 with n = 20 it is {rows[-2][4]:.1e}, though the "
        f"matrix's condition number is {rows[-2][6]:.1e}. Zh exercise (no 1/i! scaling): xⁱ reaches "
        f"{x_max:.1e} here, so gradient descent on unscaled features diverges for lr ≥ "
        f"{min((lr for lr in UNSCALED_LRS if diverged[(names[1], lr)] is not None), default=float('nan')):g} and at "
        f"the largest stable lr ({top:g}) crawls: train loss {start_top:.3g} after the first epoch, {at_top:.3g} after "
        f"{epochs_u} (the initial weights times xⁱ already give huge outputs), against {final[(names[0], LR)]:.3g} "
        f"with 1/i! at lr {LR:g}. Standardizing each feature (z-scores) instead reaches only {best_z[0]:.3g} (best "
        f"stable lr {best_z[1]:g}; diverged at lr {', '.join(f'{lr:g}' for lr in z_div) or 'none'}): with all 20 "
        f"powers O(1) and nearly collinear, the largest curvature forces a small lr at which the rest converges "
        f"slowly. 1/i! works differently: it makes the high-order features tiny, so SGD in effect fits the first "
        f"few (its design is even worse conditioned, {conds[0]:.1e} against {conds[2]:.1e} standardized, but the "
        f"tiny directions hardly matter).", plot1,
        table=table(["degree d", "coefficients", "n", "n ≤ d+1", "residual (noise 0.1)", "residual (no noise)",
                     "cond(V)"], rows),
        lstsq=rows, design_condition_numbers=dict(zip(names, conds)),
        unscaled_final={f"{k[0]} lr={k[1]:g}": v for k, v in final.items()},
        unscaled_diverged_epoch={f"{k[0]} lr={k[1]:g}": v for k, v in diverged.items()}))

    # 3. zero training error; loss against the number of features (zh)
    epochs_d = tiny(run, 1500, 2)
    feats = list(range(1, 21))
    arrays, datasets = [], []
    for s in seeds:
        d = _draw(s, 100, 100)
        for k in feats:
            mask = (jnp.arange(20) < k).astype(jnp.float32)
            arrays.append((d.x_train * mask, d.y_train, d.x_test * mask, d.y_test))
            datasets.append({"features": k, "draw": s})
    data = tuple(jnp.stack(a) for a in zip(*arrays))
    members = grid([args.seed], datasets=datasets, lr=LR)
    res = run.sweep("3.6 features", scratch_linreg(20, use_bias=False), None, data, members, epochs=epochs_d,
                    batch_size=BATCH, loss="squared", progress_every=epochs_d, checkpoint_interval_s=60.0)
    tr = res.final("train_loss").reshape(len(seeds), len(feats))
    te = res.final("test_loss").reshape(len(seeds), len(feats))
    best = int(np.argmin(te.mean(0)))
    plot3 = plot_panels([{"series": {"train": (feats, tr.mean(0), tr.std(0)), "test": (feats, te.mean(0), te.std(0)),
                                     "noise floor σ²/2": (feats, np.full(len(feats), NOISE ** 2 / 2))},
                          "xlabel": "number of features (degree + 1)", "ylabel": "final loss ½(ŷ−y)²", "yscale": "log",
                          "title": f"n_train 100, {epochs_d} epochs, {len(seeds)} data draws"}],
                        run.out / "ex_3_6_3_features.png", "§3.6 ex. 3 (zh): loss against the number of features")
    out.append(answer(
        "§3.6.3", "Can you ever expect zero training error? When would you see zero generalization error?",
        f"Zero training error needs a model that interpolates the training set -- at least as many free parameters "
        f"as distinct examples (ex. 1) or noise-free labels; zero generalization error needs noise-free labels, "
        f"i.e. y a deterministic function of x that lies in the model class, and enough data to pin it down. "
        f"With noise 0.1 the best possible loss is σ²/2 = {NOISE ** 2 / 2:g}, so neither is 0 here. Zh exercise "
        f"(loss against the number of features, n_train 100, {epochs_d} epochs, {len(seeds)} draws): train loss "
        f"{tr.mean(0)[0]:.3g} with 1 feature, {tr.mean(0)[2]:.3g} with 3, {tr.mean(0)[3]:.3g} with 4 (the true "
        f"degree), {tr.mean(0)[-1]:.3g} with 20 (lowest {tr.mean(0).min():.3g} at {feats[int(tr.mean(0).argmin())]}); "
        f"test loss is lowest at {feats[best]} features ({te.mean(0)[best]:.3g} ± {te.std(0)[best]:.2g}) and "
        f"{te.mean(0)[-1]:.3g} ± {te.std(0)[-1]:.2g} at 20 ({te.mean(0)[-1] / te.mean(0)[best]:.1f}x; per draw "
        f"{', '.join(f'{v:.3g}' for v in te[:, -1])}): the features beyond the fourth {_overfit(te, best)}.", plot3,
        features=feats, train_mean=tr.mean(0).tolist(), test_mean=te.mean(0).tolist(), test_std=te.std(0).tolist()))

    # 7. learning curve: decrease the data
    sizes = tiny(run, SIZES, [5, 50])
    n_max, epochs_l = max(sizes), tiny(run, 40, 1)
    arrays, datasets = [], []
    for s in seeds:
        d = _draw(s, n_max, 1000)
        for n in sizes:   # the first n examples, repeated to n_max: every member takes the same SGD steps
            idx = np.arange(n_max) % n
            arrays.append((d.x_train[idx], d.y_train[idx], d.x_test, d.y_test))
            datasets.append({"n_train": n, "draw": s})
    data = tuple(jnp.stack(a) for a in zip(*arrays))
    members = grid([args.seed], datasets=datasets, lr=LR)
    res = run.sweep("3.6 learning curve", scratch_linreg(20, use_bias=False), None, data, members, epochs=epochs_l,
                    batch_size=BATCH, loss="squared", progress_every=epochs_l, checkpoint_interval_s=60.0)
    tr = res.final("train_loss").reshape(len(seeds), len(sizes))
    te = res.final("test_loss").reshape(len(seeds), len(sizes))
    plot7 = plot_panels([{"series": {"train": (sizes, tr.mean(0), tr.std(0)), "test": (sizes, te.mean(0), te.std(0)),
                                     "noise floor σ²/2": (sizes, np.full(len(sizes), NOISE ** 2 / 2))},
                          "xlabel": "training examples used", "ylabel": "final loss", "xscale": "log",
                          "yscale": "log", "title": f"20 features, {len(seeds)} draws, 1000 test examples"}],
                        run.out / "ex_3_6_7_learning_curve.png", "§3.6 ex. 7: learning curve")
    half = sizes.index(n_max // 2) if n_max // 2 in sizes else len(sizes) - 2
    out.append(answer(
        "§3.6.7", "Justify to your manager that you need more data (you can decrease the data, not increase it).",
        f"Train on growing subsets of what you have and plot test loss against the subset size (a learning curve); "
        f"if it is still falling at the full size, more data will help, and its slope says how much. Here (20 "
        f"features, {len(seeds)} data draws, each subset trained for the same {epochs_l * n_max // BATCH} SGD steps): "
        f"test loss {te.mean(0)[0]:.3g} ± {te.std(0)[0]:.2g} with {sizes[0]} examples, "
        f"{te.mean(0)[half]:.3g} ± {te.std(0)[half]:.2g} with {sizes[half]}, {te.mean(0)[-1]:.3g} ± "
        f"{te.std(0)[-1]:.2g} with {sizes[-1]}, against the noise floor {NOISE ** 2 / 2:g}; the train-test gap "
        f"shrinks from {te.mean(0)[0] - tr.mean(0)[0]:.3g} to {te.mean(0)[-1] - tr.mean(0)[-1]:.3g}. "
        f"{_flattened(te, half, sizes)}", plot7,
        sizes=sizes, train_mean=tr.mean(0).tolist(), test_mean=te.mean(0).tolist(), test_std=te.std(0).tolist()))
    return in_book_order(out)
