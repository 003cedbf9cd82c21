"""§3.5 concise linear regression, on D2L's synthetic data (w = [2, −3.4], b = 4.2, noise 0.01): 1 sum vs mean
loss (lr / batch size), 2 the book's Huber loss, 3 the gradient of the weights, 4 learning rate × epochs, 5 the
estimation error against the amount of data."""
from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import optax

from regjax import losses as regjax_losses
from regjax.engine import grid, init_state
from regjax.losses import squared_loss
from regjax.plots import plot_panels

from .common import SCRATCH_SGD, answer, in_book_order, sample_std, seeds_of, table, tiny
from .s3_3 import LINREG, NOISE, TRUE_B, TRUE_W, linear_data, pm, record, wb

SECTION, TITLE = "3.5", "Concise implementation of linear regression"
BIG_BATCH, SIGMA = 100, 0.5


def sum_loss(y_hat, y):
    """The minibatch *sum* of ½(ŷ − y)²: the engine averages per-example losses, so each is scaled by the batch
    size (the last batch is full: n is a multiple of it)."""
    return BIG_BATCH * squared_loss(y_hat, y)


def book_huber(y_hat, y):
    """§3.5 ex. 2's Huber loss with σ = SIGMA: |r| − σ/2 if |r| > σ, else r² / (2σ)."""
    r = jnp.abs(y_hat[:, 0] - y.reshape(-1))
    return jnp.where(r > SIGMA, r - SIGMA / 2, r ** 2 / (2 * SIGMA))


def _theta(state) -> np.ndarray:
    p = state.params["dense0"]
    return np.c_[np.asarray(p["kernel"])[..., 0], np.asarray(p["bias"])]


def ex1_sum_vs_mean(run, seeds, data, epochs):
    lr = 0.1
    traj = {}

    def keep(name):
        return lambda epoch, state, history: traj.setdefault(name, []).append(_theta(state))

    mean = run.sweep("3.5 mean loss", LINREG, SCRATCH_SGD, data, grid(seeds, lr=lr), epochs=epochs, batch_size=BIG_BATCH,
                     loss="squared", progress_every=epochs, after_epoch=keep("mean"))
    summed = grid(seeds, lr=[lr / BIG_BATCH, lr])
    res = run.sweep("3.5 sum loss", LINREG, SCRATCH_SGD, data, summed, epochs=epochs, batch_size=BIG_BATCH, loss=sum_loss,
                    task="regression", progress_every=epochs, after_epoch=keep("sum"))
    scaled = np.array([np.isclose(c["lr"], lr / BIG_BATCH) for c in summed.configs])
    m, s = np.stack(traj["mean"]), np.stack(traj["sum"])[:, scaled]
    diff = float(np.abs(m - s).max())
    status = res.history.member_status()
    same_lr = [status[i] for i in np.flatnonzero(~scaled)]
    rows = [["mean", lr, pm(mean.final("train_loss")), "completed"],
            ["sum", f"{lr}/{BIG_BATCH}", pm(res.final("train_loss")[scaled]), "completed"],
            ["sum", lr, pm(res.final("train_loss")[~scaled]), ", ".join(same_lr)]]
    return answer(
        "§3.5.1", "Replace the minibatch's aggregate (sum) loss by its average: how must the learning rate change?",
        f"Multiply it by the batch size B: the average's gradient is the sum's divided by B = {BIG_BATCH}, so lr η "
        f"on the sum takes the same steps as lr B·η on the average. Measured both ways round: lr {lr} on the "
        f"average and lr {lr}/{BIG_BATCH} on the sum give parameters that match after every epoch to {diff:.1e} "
        f"({'float round-off' if diff < 1e-4 else 'NOT equal'}) over {epochs} epochs and {len(seeds)} seeds; "
        f"lr {lr} on the sum instead is lr {lr * BIG_BATCH:g} on the average: {same_lr.count('diverged')} of "
        f"{len(same_lr)} such runs diverged.",
        table=table(["loss", "lr", "final train loss", "status"], rows), max_param_diff=diff, rows=rows)


def ex2_huber(run, seeds, data, epochs):
    r = jnp.linspace(-3, 3, 601)
    gap = float(jnp.abs(book_huber(r[:, None], jnp.zeros(601)) - optax.huber_loss(r, 0.0, delta=SIGMA) / SIGMA).max())
    x, y, xt, yt = data
    y_bad = y.copy()
    y_bad[5] = 10000.0
    stacked = tuple(np.stack(a) for a in zip((x, y, xt, yt), (x, y_bad, xt, yt)))
    sets = [{"data": "regular"}, {"data": "y₅ = 10000"}]
    rows = []
    for name, loss, task in (("squared", "squared", None), (f"Huber σ={SIGMA}", book_huber, "regression")):
        members = grid(seeds, datasets=sets, lr=0.03)
        res = run.sweep(f"3.5 {name}", LINREG, SCRATCH_SGD, stacked, members, epochs=epochs, batch_size=10, loss=loss,
                        task=task, progress_every=epochs)
        w, b = wb(res)
        for s in sets:
            pick = np.array([c["data"] == s["data"] for c in members.configs])
            rows.append([name, s["data"], f"[{w[pick, 0].mean():.3f}, {w[pick, 1].mean():.3f}]",
                         pm(np.abs(b[pick] - TRUE_B)), pm(np.linalg.norm(w[pick] - TRUE_W, axis=-1))])
    provided = [n for n in dir(optax.losses) if not n.startswith("_")]
    regression = [n for n in ("squared_error", "l2_loss", "huber_loss", "log_cosh") if n in provided]
    ours = [n for n in regjax_losses.__all__ if n.endswith("loss") or n.endswith("entropy")]
    return answer(
        "§3.5.2", "Which loss functions does the framework provide? Replace the squared loss with Huber's (σ form).",
        f"optax {optax.__version__}'s optax.losses exports {len(provided)} functions: {', '.join(provided)} -- for "
        f"regression {', '.join(regression)}; regjax.losses adds {', '.join(ours)}, and the engine takes "
        f"'squared', 'l1', 'cross_entropy' by name or any per-example callable. "
        f"The book's Huber loss equals optax.huber_loss(δ = σ) / σ (max difference {gap:.1e} on [−3, 3]); passed "
        f"to the engine as a callable with task='regression'. With y₅ = 10000, |b̂ − b| is {rows[1][3]} under the "
        f"squared loss and {rows[3][3]} under Huber (regular data: {rows[0][3]} and {rows[2][3]}); §3.4.8 "
        f"compares it with the L1 loss too.",
        table=table(["loss", "data", "ŵ (mean)", "\\|b̂ − b\\|", "‖ŵ − w‖"], rows), rows=rows,
        optax_losses=provided)


def ex3_gradient(run, data, seed):
    x, y = jnp.asarray(data[0]), jnp.asarray(data[1])
    params = init_state(LINREG, SCRATCH_SGD, jax.random.key(seed)[None]).params
    params = jax.tree_util.tree_map(lambda a: a[0], params)

    def loss(p):
        return jnp.mean(squared_loss(LINREG.apply(p, {}, x, key=None, train=False)[0], y))

    grads = jax.grad(loss)(params)["dense0"]
    r = np.asarray(x @ params["dense0"]["kernel"][:, 0] + params["dense0"]["bias"][0] - y)
    closed_w, closed_b = np.asarray(x).T @ r / len(r), r.mean()
    vec = lambda v: "[" + ", ".join(f"{float(a):.5f}" for a in v) + "]"  # noqa: E731
    rows = [["∂L/∂w", vec(np.asarray(grads["kernel"])[:, 0]), vec(closed_w)],
            ["∂L/∂b", f"{float(grads['bias'][0]):.5f}", f"{closed_b:.5f}"]]
    diff = float(max(np.abs(np.asarray(grads["kernel"])[:, 0] - closed_w).max(), abs(grads["bias"][0] - closed_b)))
    return answer(
        "§3.5.3", "How do you access the gradient of the weights of the model?",
        f"Parameters are a pytree, so jax.grad(loss)(params) returns a pytree of the same shape: the weights' "
        f"gradient is grads['dense0']['kernel'] (in Flax the same tree under 'params'; the engine's step computes "
        f"exactly this). At the initial parameters it equals the closed form (1/n) Xᵀ(Xw + b − y) and "
        f"(1/n) Σ(Xw + b − y) to {diff:.1e}.", table=table(["gradient", "jax.grad", "closed form"], rows),
        max_diff=diff)


def ex4_lr_epochs(run, seeds, data, epochs):
    lrs = tiny(run, [0.001, 0.01, 0.1, 1.0], [0.01, 0.1])
    members = grid(seeds, lr=lrs)
    err = []
    run.sweep("3.5 lr epochs", LINREG, SCRATCH_SGD, data, members, epochs=epochs, batch_size=10, loss="squared",
              progress_every=epochs, after_epoch=lambda e, state, h: err.append(
                  np.linalg.norm(_theta(state) - np.r_[TRUE_W, TRUE_B], axis=-1)))
    err = np.stack(err)  # (epochs, members)
    design = np.c_[data[0], np.ones(len(data[0]))]
    ls_err = float(np.linalg.norm(np.linalg.lstsq(design, data[1], rcond=None)[0] - np.r_[TRUE_W, TRUE_B]))
    ep = np.arange(1, epochs + 1)
    curves = {}
    for lr in lrs:
        pick = np.array([np.isclose(c["lr"], lr) for c in members.configs])
        curves[f"lr {lr}"] = (ep, err[:, pick].mean(1), sample_std(err[:, pick], 1, single=None))
    curves["least squares (the data's limit)"] = (ep, np.full(epochs, ls_err))
    plot = plot_panels([{"series": curves, "xlabel": "epoch", "ylabel": "‖(ŵ, b̂) − (w, b)‖", "yscale": "log",
                         "title": f"batch 10, n = {len(data[0])}, {len(seeds)} seeds"}],
                       run.out / "ex_3_5_4_lr_epochs.png", "§3.5 ex. 4: learning rate and epochs")
    final = {lr: float(curves[f"lr {lr}"][1][-1]) for lr in lrs}
    half = {lr: float(curves[f"lr {lr}"][1][epochs // 2 - 1]) for lr in lrs}
    rows = [[lr, f"{half[lr]:.3g}", f"{final[lr]:.3g}", f"{final[lr] / ls_err:.2f}"] for lr in lrs]
    return answer(
        "§3.5.4", "Effect of learning rate and epochs on the solution: does it keep improving?",
        f"Not past a floor: the error falls geometrically until it meets the data's own limit, the least-squares "
        f"error {ls_err:.2g} (noise σ = {NOISE}), and then stops improving. lr {lrs[0]} needs the most epochs "
        f"({final[lrs[0]]:.2g} after {epochs}); the large rate lr {lrs[-1]} gets there fast but ends at "
        f"{final[lrs[-1]] / ls_err:.1f}× the floor, as its fixed-size minibatch steps keep jittering (a decaying "
        f"lr or a larger batch would remove that).", plot,
        table=table(["lr", f"error after {epochs // 2} epochs", f"after {epochs}", "÷ least-squares error"], rows),
        rows=rows, ls_err=ls_err)


def ex5_amount(run, seeds):
    sizes = tiny(run, [5, 10, 20, 50, 100, 200, 500, 1000, 2000, 5000, 10000], [5, 50])
    werr, berr, ls = [], [], []
    for n in sizes:
        sets = [linear_data(1000 + s, n, n_test=5) for s in seeds]
        stacked = tuple(np.stack(a) for a in zip(*sets))
        members = grid([run.args.seed], datasets=[{"data_seed": s} for s in seeds], lr=0.3)
        epochs = tiny(run, 2000 if n <= 5 else 600 if n <= 20 else 200 if n <= 200 else 60, 3)  # to convergence
        record(run, f"D2L §3.3 data, n = {n} ({len(seeds)} draws, §3.5 ex. 5)", max(n, 5))
        res = run.sweep(f"3.5 n={n}", LINREG, SCRATCH_SGD, stacked, members, epochs=epochs, batch_size=n, loss="squared",
                        progress_every=epochs)
        w, b = wb(res)
        werr.append(np.linalg.norm(w - TRUE_W, axis=-1))
        berr.append(np.abs(b - TRUE_B))
        ls.append([np.linalg.norm(np.linalg.lstsq(np.c_[d[0], np.ones(n)], d[1], rcond=None)[0][:2] - TRUE_W)
                   for d in sets])
    werr, berr, ls = np.array(werr), np.array(berr), np.array(ls)
    gap = float(np.max(np.abs(werr - ls) / ls))
    slope_w = float(np.polyfit(np.log(sizes), np.log(werr.mean(1)), 1)[0])
    slope_b = float(np.polyfit(np.log(sizes), np.log(berr.mean(1)), 1)[0])
    plot = plot_panels([{"series": {"‖ŵ − w‖": (sizes, werr.mean(1), sample_std(werr, 1, single=None)),
                                    "|b̂ − b|": (sizes, berr.mean(1), sample_std(berr, 1, single=None)),
                                    "‖ŵ − w‖ closed form": (sizes, ls.mean(1)),
                                    "σ/√n": (sizes, NOISE / np.sqrt(sizes))},
                         "xlabel": "number of examples n", "ylabel": "estimation error", "xscale": "log",
                         "yscale": "log", "title": f"noise σ = {NOISE}, {len(seeds)} data draws"}],
                       run.out / "ex_3_5_5_data_amount.png", "§3.5 ex. 5: estimation error vs amount of data")
    rows = [[n, pm(werr[i]), pm(berr[i]), f"{ls[i].mean():.4g}"] for i, n in enumerate(sizes)]
    return answer(
        "§3.5.5", "Plot the estimation error of ŵ and b̂ against the amount of data; why log spacing?",
        f"Trained to convergence (full-batch steps, so minibatch noise does not hide the statistical error) on "
        f"{len(seeds)} data draws per n: ‖ŵ − w‖ falls from {werr[0].mean():.2g} at n = {sizes[0]} to "
        f"{werr[-1].mean():.2g} at n = {sizes[-1]}, log-log slope {slope_w:.2f} (|b̂ − b|: {slope_b:.2f}), against "
        f"the −1/2 of error ∝ σ/√n; the engine's ‖ŵ − w‖ is within {gap:.1%} of the closed-form least "
        f"squares'. Log spacing fits because the "
        f"error is a power law: equal ratios of n give equal steps on the plot, and 5...10,000 spans 3.3 decades "
        f"(where most of the change happens, at small n), while 1000, 2000, ... would spend ten points on one "
        f"decade where the error changes by only √10.", plot,
        table=table(["n", "‖ŵ − w‖", "\\|b̂ − b\\|", "‖ŵ − w‖ closed form"], rows), sizes=sizes,
        slope_w=slope_w, slope_b=slope_b, max_rel_gap_to_closed_form=gap)


def section(run):
    seeds = seeds_of(run.args)[:tiny(run, None, 1)]
    n = tiny(run, 1000, 200)
    data = linear_data(run.args.seed, n)
    record(run, "D2L §3.3: w=[2,-3.4], b=4.2, noise 0.01", n)
    return in_book_order([ex1_sum_vs_mean(run, seeds, data, tiny(run, 10, 1)),
                          ex2_huber(run, seeds, data, tiny(run, 10, 1)),
                          ex3_gradient(run, data, run.args.seed), ex4_lr_epochs(run, seeds, data, tiny(run, 30, 2)),
                          ex5_amount(run, seeds)])
