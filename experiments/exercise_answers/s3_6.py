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

from .common import SCRATCH_SGD, answer, in_book_order, sample_std, seeds_of, table, tiny

SECTION, TITLE = "3.6", "Generalization"
LR, BATCH, NOISE = 0.02, 10, 0.1
SIZES = [5, 10, 20, 50, 100, 200, 500, 1000]
UNSCALED_LRS = [0.02, 1e-4, 1e-8, 1e-12, 1e-16, 1e-20]
EPS = float(np.finfo(np.float64).eps)


def _draw(seed: int, n_train: int, n_test: int) -> object:
    return polynomial_data(jax.random.fold_in(jax.random.key(seed), 36), n_train, n_test, 20, noise=NOISE)


def _vandermonde_rows(seed: int) -> list:
    """Least squares (float64) on the Vandermonde matrix of degree d (d + 1 coefficients) with n distinct points:
    in exact arithmetic the residual is 0 iff n <= d + 1; also cond(V) and its numerical rank (numpy's SVD tolerance
    σ_max · max(n, d + 1) · eps)."""
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
                         float(np.mean((v @ w0 - clean) ** 2)), float(np.linalg.cond(v)),
                         int(np.linalg.matrix_rank(v))))
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
    res = run.sweep("3.6 unscaled features", scratch_linreg(20, use_bias=False), SCRATCH_SGD, data, members, epochs=epochs,
                    batch_size=BATCH, loss="squared", progress_every=epochs, checkpoint_interval_s=60.0)
    conds = [float(np.linalg.cond(np.asarray(a[0], np.float64))) for a in arrays]
    return names, members, res, float(jnp.abs(raw_tr).max()), conds


def _overfit(te: np.ndarray, best: int) -> str:
    """Is the 20-feature test loss above the best one by more than the spread over data draws?"""
    diff = te[:, -1] - te[:, best]
    if (diff > 0).all() or diff.mean() > sample_std(diff):
        return (f"overfit: the 20-feature test loss is higher in {int((diff > 0).sum())} of {len(diff)} draws "
                f"(median excess {np.median(diff):+.3g} over the best count's)")
    return f"do not overfit beyond the spread over draws (higher in {int((diff > 0).sum())} of {len(diff)} draws)"


def _flattened(te: np.ndarray, half: int, sizes: list, what: str) -> str:
    """What the last step of a learning curve (test losses, draws × sizes) says: still falling, or flat within the
    spread over draws."""
    gain = te[:, half] - te[:, -1]
    m, s, last = gain.mean(), float(sample_std(gain)), te[:, -1].mean()
    floor = NOISE ** 2 / 2
    if m > s:
        return (f"{what}: from {sizes[half]} to {sizes[-1]} examples the test loss still falls by {m:.3g} ± {s:.2g}"
                f" to {last:.3g} ({last / floor:.2f}× the noise floor), " +
                ("so more data would still help." if m / last > 0.05 else
                 f"only {m / last:.1%} of it: more data would help by a few percent at most."))
    if -m > s:
        return (f"{what}: from {sizes[half]} to {sizes[-1]} examples the test loss rises by {-m:.3g} ± {s:.2g} to "
                f"{last:.3g}: more data of this size did not help that procedure.")
    return (f"{what}: from {sizes[half]} to {sizes[-1]} examples the test loss changes by {-m:+.3g} ± {s:.2g}, "
            f"within the spread over draws: that curve has flattened at {last / floor:.2f}× the noise floor.")


def _closed_form(d, sizes: list, k: int = 20) -> list:
    """Test loss ½(ŷ − y)² of the float64 least-squares fit of the first k features on the first n training
    examples (numpy's lstsq: minimum-norm where n < k, singular values below eps·σ_max·max(n, k) cut) -- the
    minimum of the training loss that gradient descent approaches given unlimited steps."""
    x, y = np.asarray(d.x_train, np.float64)[:, :k], np.asarray(d.y_train, np.float64)
    xt, yt = np.asarray(d.x_test, np.float64)[:, :k], np.asarray(d.y_test, np.float64)
    out = []
    for n in sizes:
        w = np.linalg.lstsq(x[:n], y[:n], rcond=None)[0]
        out.append(float(np.mean(0.5 * (xt @ w - yt) ** 2)))
    return out


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
    exact_ok, exact_no = [r for r in exact if r[3] == "yes"], [r for r in exact if r[3] == "no"]
    ill = [r for r in rows if r[3] == "yes" and r[6] > 1 / EPS]
    out.append(answer(
        "§3.6.1", "When can you solve the problem of polynomial regression exactly?",
        f"When the n training x are distinct and n ≤ d + 1 (d the degree): in exact arithmetic the n × (d+1) "
        f"Vandermonde matrix then has full row rank, so Vw = y has an exact solution (unique at n = d + 1, "
        f"infinitely many below) whatever the noise; with noise and n > d + 1 there is none. Least squares for d = 3 (cond(V) ≤ "
        f"{max(r[6] for r in exact):.3g}): mean squared residual ≤ {max(r[4] for r in exact_ok):.1e} at n = "
        f"{', '.join(str(r[2]) for r in exact_ok)}, then {', '.join(f'{r[4]:.1e}' for r in exact_no)} at n = "
        f"{', '.join(str(r[2]) for r in exact_no)}; without noise (the data a cubic) it is ≤ "
        f"{max(r[5] for r in exact):.1e} for every n. "
        + (f"In float64 this holds only while V is well conditioned: for d = {ill[0][0]} with n = {ill[0][2]} (n ≤ d + 1, so exact in exact arithmetic) cond(V) = "
           f"{ill[0][6]:.1e} exceeds 1/eps = {1 / EPS:.1e}: V is numerically rank-deficient (numerical rank "
           f"{ill[0][7]} of {ill[0][1]}) and the residual is {ill[0][4]:.1e}, not ≈ 0. " if ill else "")
        + f"Zh exercise (no 1/i! scaling): xⁱ reaches "
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
                     "cond(V)", "numerical rank"], rows),
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
    res = run.sweep("3.6 features", scratch_linreg(20, use_bias=False), SCRATCH_SGD, data, members, epochs=epochs_d,
                    batch_size=BATCH, loss="squared", progress_every=epochs_d, checkpoint_interval_s=60.0)
    tr = res.final("train_loss").reshape(len(seeds), len(feats))
    te = res.final("test_loss").reshape(len(seeds), len(feats))
    best = int(np.argmin(te.mean(0)))
    plot3 = plot_panels([{"series": {"train": (feats, tr.mean(0), sample_std(tr, 0)), "test": (feats, te.mean(0), sample_std(te, 0)),
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
        f"test loss is lowest at {feats[best]} features ({te.mean(0)[best]:.3g} ± {sample_std(te, 0)[best]:.2g}) and "
        f"{te.mean(0)[-1]:.3g} ± {sample_std(te, 0)[-1]:.2g} at 20 ({te.mean(0)[-1] / te.mean(0)[best]:.1f}x; per draw "
        f"{', '.join(f'{v:.3g}' for v in te[:, -1])}): the features beyond the fourth {_overfit(te, best)}.", plot3,
        features=feats, train_mean=tr.mean(0).tolist(), test_mean=te.mean(0).tolist(), test_std=sample_std(te, 0).tolist()))

    # 7. learning curve: decrease the data
    sizes = tiny(run, SIZES, [5, 50])
    n_max, epochs_l = max(sizes), tiny(run, 1000, 2)
    arrays, datasets, closed, closed4 = [], [], [], []
    for s in seeds:
        d = _draw(s, n_max, 1000)
        closed.append(_closed_form(d, sizes))
        closed4.append(_closed_form(d, sizes, 4))
        for n in sizes:   # the first n examples, repeated to n_max: every member takes the same SGD steps
            idx = np.arange(n_max) % n
            arrays.append((d.x_train[idx], d.y_train[idx], d.x_test, d.y_test))
            datasets.append({"n_train": n, "draw": s})
    data = tuple(jnp.stack(a) for a in zip(*arrays))
    members = grid([args.seed], datasets=datasets, lr=LR)
    res = run.sweep("3.6 learning curve", scratch_linreg(20, use_bias=False), SCRATCH_SGD, data, members, epochs=epochs_l,
                    batch_size=BATCH, loss="squared", progress_every=epochs_l, checkpoint_interval_s=60.0)
    per_epoch = res.history.metric("test_loss").reshape(epochs_l, len(seeds), len(sizes))
    budgets = [e for e in tiny(run, [40, 200, 1000], [1, 2]) if e <= epochs_l]  # epochs: 100 steps each
    te = {e * n_max // BATCH: per_epoch[e - 1] for e in budgets}  # steps -> (draws, sizes)
    steps = list(te)
    ls, ls4 = np.array(closed), np.array(closed4)  # (draws, sizes)
    floor = {"noise floor σ²/2": (sizes, np.full(len(sizes), NOISE ** 2 / 2))}
    series = {f"SGD test, {k} steps": (sizes, v.mean(0), sample_std(v, 0)) for k, v in te.items()}
    series.update({"least squares, 4 true features": (sizes, ls4.mean(0), sample_std(ls4, 0)), **floor})
    plot7 = plot_panels([{"series": series, "xlabel": "training examples used", "ylabel": "test loss",
                          "xscale": "log", "yscale": "log",
                          "title": f"20 features (SGD), {len(seeds)} draws, 1000 test examples"},
                         {"series": {"least squares (converged), median over draws": (sizes, np.median(ls, 0)),
                                     **floor}, "xlabel": "training examples used", "ylabel": "test loss",
                          "xscale": "log", "yscale": "log", "title": "20 features, closed-form least squares"}],
                        run.out / "ex_3_6_7_learning_curve.png", "§3.6 ex. 7: learning curve")
    half = sizes.index(n_max // 2) if n_max // 2 in sizes else len(sizes) - 2
    fmt = lambda v, i: f"{v.mean(0)[i]:.3g} ± {sample_std(v, 0)[i]:.2g}"  # noqa: E731
    rows = [[n] + [fmt(v, i) for v in te.values()] + [f"{np.median(ls[:, i]):.3g}", fmt(ls4, i)]
            for i, n in enumerate(sizes)]
    first, last = te[steps[0]], te[steps[-1]]
    budget_gap = first.mean(0)[-1] / last.mean(0)[-1]
    ls_falls = int((ls[:, -1] < ls[:, half]).sum())
    out.append(answer(
        "§3.6.7", "Justify to your manager that you need more data (you can decrease the data, not increase it).",
        f"Train on growing subsets of what you have and plot test loss against the subset size (a learning curve); "
        f"if it is still falling at the full size, more data will help, and its slope says how much. The curve "
        f"must come from the training you will use, done to the same standard on every subset, or it measures the "
        f"optimisation rather than the data. Here (20 features, {len(seeds)} data draws, 1000 test examples, noise "
        f"floor {NOISE ** 2 / 2:g}) every subset gets the same SGD budget, read off at "
        f"{', '.join(str(k) for k in steps)} steps: at n = {sizes[-1]} the test loss is "
        f"{', '.join(fmt(v, -1) for v in te.values())}, at n = {sizes[half]} "
        f"{', '.join(fmt(v, half) for v in te.values())}"
        + (f" -- the budget moves the whole curve ({budget_gap:.2f}× between the smallest and the largest budget at "
           f"n = {sizes[-1]}), so the flat end of a short-budget curve is partly the budget. "
           if budget_gap > 1.2 else " -- about the same at every budget. ")
        + f"{_flattened(first, half, sizes, f'At {steps[0]} steps')} "
        f"{_flattened(last, half, sizes, f'At {steps[-1]} steps')} "
        f"The limit of unlimited steps, each subset's closed-form least-squares fit, gives median test loss "
        f"{np.median(ls[:, half]):.3g} at n = {sizes[half]} and {np.median(ls[:, -1]):.3g} at {sizes[-1]} (lower "
        f"in {ls_falls} of {len(seeds)} draws)"
        + (f" -- {np.median(ls[:, -1]) / last.mean(0)[-1]:.3g}× the SGD loss at {steps[-1]} steps: on this "
           f"ill-conditioned design the exact fit extrapolates wildly, and stopping early regularizes it"
           if np.median(ls[:, -1]) > 2 * last.mean(0)[-1] else "")
        + ("; that fit would still gain from more data. " if 2 * ls_falls > len(seeds) else ". ")
        + f"With only the 4 true features least "
        f"squares reaches {fmt(ls4, half)} at {sizes[half]} and {fmt(ls4, -1)} at {sizes[-1]} "
        f"({ls4.mean(0)[-1] / (NOISE ** 2 / 2):.2f}× the floor). Whether more data helps depends on the model and "
        f"its training, so the curve must use the ones you will deploy.", plot7,
        table=table(["n_train"] + [f"SGD test loss, {k} steps" for k in steps]
                    + ["least squares (median)", "least squares, 4 features"], rows),
        sizes=sizes, sgd_test_mean={k: v.mean(0).tolist() for k, v in te.items()},
        sgd_test_std={k: sample_std(v, 0).tolist() for k, v in te.items()},
        closed_form_test=ls.tolist(), closed_form_4_features_test_mean=ls4.mean(0).tolist()))
    return in_book_order(out)
