"""§3.1 linear regression: the book's normal densities and loop-vs-vectorized timing redrawn; 1 the constant b that
minimizes Σ(x − b)² (mean) and Σ|x − b| (median), 4 a rank-deficient design, 5 Laplace noise (L1 loss, fixed vs
decaying learning rate), 8 Poisson counts (E[k] = λ, a Poisson-NLL regression)."""
from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import optax

from regjax.base import Model
from regjax.data.synthetic import synthetic_linear
from regjax.engine import grid, init_state
from regjax.losses import poisson_nll_loss
from regjax.models.adapters import scratch_linreg
from regjax.plots import plot_panels

from .common import SCRATCH_SGD, answer, figure, in_book_order, mean_std, sample_std, seeds_of, table, timed, tiny
from .s3_3 import LINREG, TRUE_B, TRUE_W, record, wb

SECTION, TITLE = "3.1", "Linear regression"
CONST = Model(lambda key: ({"b": jnp.zeros(())}, {}),
              lambda params, ms, x, *, key=None, train=False, hparams=None: (
                  jnp.broadcast_to(params["b"], (x.shape[0], 1)), ms))
DUP_MODELS = {"σ=1": scratch_linreg(3, weight_init=jax.nn.initializers.normal(1.0)), "σ=0.01 (D2L)": scratch_linreg(3)}


def book_figures(run):
    x = np.linspace(-7, 7, 281)
    pairs = [(0, 1), (0, 2), (3, 1)]
    dens = {f"mean {m}, std {s}": (x, np.exp(-0.5 * ((x - m) / s) ** 2) / np.sqrt(2 * np.pi * s ** 2))
            for m, s in pairs}
    p1 = plot_panels([{"series": dens, "xlabel": "x", "ylabel": "p(x)"}], run.out / "book_3_1_normal.png",
                     "§3.1: normal densities")
    sizes = tiny(run, [10, 100, 1000, 10000], [100, 10000])
    rows, series = [], {k: [] for k in ("Python loop, numpy elements", "Python loop, lists", "numpy a + b",
                                        "jnp a + b")}
    for n in sizes:
        a, b = np.ones(n, np.float32), np.ones(n, np.float32)
        la, lb = a.tolist(), b.tolist()
        ja, jb = jnp.asarray(a), jnp.asarray(b)

        def loop_np():
            c = np.zeros(n, np.float32)
            for i in range(n):
                c[i] = a[i] + b[i]

        def loop_list():
            c = [0.0] * n
            for i in range(n):
                c[i] = la[i] + lb[i]

        reps = tiny(run, 7, 2)
        t = [timed(loop_np, reps), timed(loop_list, reps), timed(lambda: a + b, 50),
             timed(lambda: (ja + jb).block_until_ready(), 50)]
        for k, v in zip(series, t):
            series[k].append(v)
        rows.append([n] + [f"{1e3 * v:.4f}" for v in t])
    p2 = plot_panels([{"series": {k: (sizes, v) for k, v in series.items()}, "xlabel": "vector length n",
                       "ylabel": "seconds (median)", "xscale": "log", "yscale": "log", "title": "CPU (2 cores)"}],
                     run.out / "book_3_1_vectorization.png", "§3.1: adding two vectors, loop vs vectorized")
    speedup = series["Python loop, numpy elements"][-1] / series["numpy a + b"][-1]
    caption = (f"Adding two {sizes[-1]}-vectors on the CPU (2 cores): a Python loop over numpy elements takes "
               f"{1e3 * series['Python loop, numpy elements'][-1]:.2f} ms, numpy's a + b "
               f"{1e3 * series['numpy a + b'][-1]:.4f} ms ({speedup:.0f}× faster), jnp's a + b "
               f"{1e3 * series['jnp a + b'][-1]:.4f} ms (dispatch-bound at this size). Times in ms by n:\n\n"
               + table(["n", "loop numpy (ms)", "loop lists (ms)", "numpy a + b (ms)", "jnp a + b (ms)"], rows))
    return [figure("3.1", "normal", "Normal densities for (mean, std) = (0, 1), (0, 2), (3, 1)", p1),
            figure("3.1", "vectorization", caption, p2, rows=rows)]


def ex1_mean_median(run):
    n = tiny(run, 101, 21)
    samples = np.asarray(jax.random.exponential(jax.random.key(run.args.seed + 1), (n,)), np.float32)
    record(run, f"{n} draws of Exponential(1) (§3.1 ex. 1)", n)
    data = (np.zeros((n, 1), np.float32), samples, np.zeros((n, 1), np.float32), samples)
    epochs = tiny(run, 60, 3)
    found = {}
    for name, loss, opt in (("Σ(x − b)²", "squared", optax.sgd(0.5)),
                            ("Σ|x − b|", "l1", optax.sgd(optax.exponential_decay(0.5, 1, 0.9)))):
        state, _ = run.fit(f"3.1 constant {loss}", CONST, opt, data, epochs=epochs, batch_size=n, loss=loss,
                           progress_every=epochs)
        found[name] = float(state.params["b"])
    scan = np.linspace(samples.min(), samples.max(), 20001)
    sq = ((samples[None, :] - scan[:, None]) ** 2).sum(1)
    ab = np.abs(samples[None, :] - scan[:, None]).sum(1)
    rows = [["Σ(x − b)²", f"{found['Σ(x − b)²']:.4f}", f"{scan[sq.argmin()]:.4f}", f"{samples.mean():.4f}",
             f"{np.median(samples):.4f}"],
            ["Σ\\|x − b\\|", f"{found['Σ|x − b|']:.4f}", f"{scan[ab.argmin()]:.4f}", f"{samples.mean():.4f}",
             f"{np.median(samples):.4f}"]]
    return answer(
        "§3.1.1", "Which constant b minimizes Σ(xᵢ − b)²? Relation to the normal? And for Σ|xᵢ − b|?",
        f"Setting the derivative −2Σ(xᵢ − b) to 0 gives b = mean(x); it is the maximum-likelihood location of a "
        f"normal with fixed variance (its NLL is the squared loss up to constants). For Σ|xᵢ − b| the subgradient "
        f"Σ sign(b − xᵢ) is 0 when as many points lie above b as below: b = median(x) (the ML location of a "
        f"Laplace distribution). On {n} Exponential(1) draws (mean {samples.mean():.4f} ≠ median "
        f"{np.median(samples):.4f}) gradient descent through the engine finds {found['Σ(x − b)²']:.4f} and "
        f"{found['Σ|x − b|']:.4f} (L1 with a decaying step: a fixed one would hop around the median), matching "
        f"a direct scan.", table=table(["loss", "engine b̂", "scan argmin", "mean", "median"], rows), rows=rows)


def ex4_rank(run, seeds):
    n, sigma = 200, 0.01
    key = jax.random.key(run.args.seed + 4)
    x2, y = synthetic_linear(jax.random.fold_in(key, 0), TRUE_W, TRUE_B, n)
    x = np.asarray(jnp.stack([x2[:, 0], x2[:, 0], x2[:, 1]], 1))  # a duplicated column: w₁ + w₂ = 2 is all y fixes
    y = np.asarray(y)
    record(run, "D2L §3.3 data with the first feature duplicated (§3.1 ex. 4)", n)
    design = np.c_[x, np.ones(n)]
    gram = design.T @ design
    noisy = design + np.c_[sigma * np.random.default_rng(run.args.seed).normal(size=(n, 3)), np.zeros(n)]
    ev, ev_noisy = np.linalg.eigvalsh(gram), np.linalg.eigvalsh(noisy.T @ noisy)
    min_norm = np.linalg.pinv(design) @ y
    rows, sums = [], []
    models = tiny(run, DUP_MODELS, {"σ=1": DUP_MODELS["σ=1"]})
    for name, model in models.items():
        members = grid(seeds, lr=0.03)
        init = np.asarray(init_state(model, SCRATCH_SGD, members.keys).params["dense0"]["kernel"])[..., 0]
        res = run.sweep(f"3.1 duplicated column {name}", model, SCRATCH_SGD, (x, y, x, y), members,
                        epochs=tiny(run, 10, 1), batch_size=10, loss="squared", progress_every=tiny(run, 10, 1))
        w, b = wb(res)
        sums += (w[:, 0] + w[:, 1]).tolist()
        for i, s in enumerate(seeds):
            dist = np.linalg.norm(np.r_[w[i], b[i]] - min_norm)
            rows.append([name, s, f"{init[i, 0] - init[i, 1]:+.5f}", f"{w[i, 0] - w[i, 1]:+.5f}",
                         f"{w[i, 0] + w[i, 1]:.4f}", f"{dist:.4f}"])
    return answer(
        "§3.1.4", "XᵀX not full rank: what happens, the fix (noise), E[XᵀX], and SGD?",
        f"With a duplicated feature column XᵀX (4×4 with the ones column) has rank {np.linalg.matrix_rank(gram)}: "
        f"smallest eigenvalue {ev[0]:.1e} (largest {ev[-1]:.0f}), so the normal equations have no unique solution "
        f"-- every w with w₁ + w₂ = 2 fits equally well. Adding N(0, {sigma}²) noise to the entries makes it "
        f"invertible: smallest eigenvalue {ev_noisy[0]:.3f}, close to the expected nσ² = {n * sigma ** 2:.3f}, since "
        f"E[(X + E)ᵀ(X + E)] = XᵀX + nσ²·diag(1, 1, 1, 0) (the ones column gets no noise) -- ridge regression in "
        f"disguise. SGD "
        f"fits the data (w₁ + w₂ = {mean_std(sums)} over all runs), but the gradient moves w₁ and w₂ by the "
        f"same amount, so w₁ − w₂ "
        f"never changes from its initial value: the solution depends on the init, and only a small init lands near "
        f"the minimum-norm solution (w₁ = w₂ = {min_norm[0]:.3f}).",
        table=table(["init", "seed", "initial w₁ − w₂", "final w₁ − w₂", "final w₁ + w₂",
                     "distance to min-norm solution"], rows), rows=rows,
        min_eig=float(ev[0]), min_eig_noisy=float(ev_noisy[0]))


def _lad(x, y, iters=200) -> np.ndarray:
    """The least-absolute-deviations fit (w, b) by iteratively reweighted least squares."""
    design = np.c_[x, np.ones(len(x))].astype(np.float64)
    theta = np.linalg.lstsq(design, y, rcond=None)[0]
    for _ in range(iters):
        wts = 1.0 / np.maximum(np.abs(y - design @ theta), 1e-8)
        theta = np.linalg.solve(design.T @ (design * wts[:, None]), design.T @ (wts * y))
    return theta


def ex5_laplace(run, seeds):
    n, epochs = tiny(run, 1000, 100), tiny(run, 20, 2)
    key = jax.random.key(run.args.seed + 5)
    x, y = synthetic_linear(jax.random.fold_in(key, 0), TRUE_W, TRUE_B, n, noise=0.0)
    x, y = np.asarray(x), np.asarray(y + jax.random.laplace(jax.random.fold_in(key, 1), (n,)))
    record(run, "D2L §3.3 weights with Laplace(0, 1) noise (§3.1 ex. 5)", n)
    best = _lad(x, y)
    traj = {}

    def tracker(label, members):
        def after(epoch, state, history):
            p = state.params["dense0"]
            theta = np.c_[np.asarray(p["kernel"])[..., 0], np.asarray(p["bias"])]
            for j, c in enumerate(members.configs):
                traj.setdefault(label(c), []).append(np.linalg.norm(theta[j] - best))
        return after

    fixed = grid(seeds, lr=[0.1, 0.01])
    run.sweep("3.1 laplace fixed lr", LINREG, SCRATCH_SGD, (x, y, x, y), fixed, epochs=epochs, batch_size=10, loss="l1",
              progress_every=epochs, after_epoch=tracker(lambda c: f"fixed lr {c['lr']:g} seed {c['seed']}", fixed))
    decay = grid(seeds)
    schedule = optax.exponential_decay(0.1, transition_steps=100, decay_rate=0.7)
    run.sweep("3.1 laplace decaying lr", LINREG, optax.sgd(schedule), (x, y, x, y), decay, epochs=epochs,
              batch_size=10, loss="l1", progress_every=epochs,
              after_epoch=tracker(lambda c: f"lr 0.1·0.7^(epoch) seed {c['seed']}", decay))
    groups = {}
    for label, v in traj.items():
        groups.setdefault(label.rsplit(" seed", 1)[0], []).append(v)
    ep = np.arange(1, epochs + 1)
    curves = {g: (ep, np.mean(v, 0), sample_std(v, 0, single=None)) for g, v in groups.items()}
    plot = plot_panels([{"series": curves, "xlabel": "epoch", "ylabel": "‖(ŵ, b̂) − LAD optimum‖", "yscale": "log",
                         "title": f"L1 loss, batch 10, {len(seeds)} seeds"}],
                       run.out / "ex_3_1_5_laplace.png", "§3.1 ex. 5: Laplace noise, L1 loss")
    rows = [[g, mean_std([t[-1] for t in v]), f"{np.mean([np.std(t[len(t) // 2:]) for t in v]):.2e}"]
            for g, v in groups.items()]
    last = {g: np.mean([t[-1] for t in v]) for g, v in groups.items()}
    shrink = last["fixed lr 0.1"] / last["fixed lr 0.01"]
    scaling = ("about proportional to lr" if 7 <= shrink <= 14 else
               f"{'less' if shrink < 7 else 'more'} than proportional to lr" if shrink > 1 else "not smaller at all")
    return answer(
        "§3.1.5", "Laplace noise: the NLL, a closed form?, and minibatch SGD -- what goes wrong near the optimum?",
        f"−log P(y|X) = Σ|yᵢ − xᵢᵀw − b| + n log 2: the L1 loss. No closed form (it is a linear program; the "
        f"solution is a regression median). SGD on the L1 loss takes steps of size lr·sign(residual) whatever the "
        f"distance to the optimum, so near it a fixed lr keeps hopping: after {epochs} epochs the distance to the "
        f"LAD optimum (IRLS) is {last['fixed lr 0.1']:.3g} at lr 0.1 and {last['fixed lr 0.01']:.3g} at lr 0.01 "
        f"(a plateau that shrinks {shrink:.1f}× for a 10× smaller lr: {scaling}), while "
        f"a decaying lr (0.1 × 0.7 per epoch) gets to "
        f"{last[next(g for g in last if g.startswith('lr'))]:.3g}. Fixes: decay the lr, average iterates, or a "
        f"smooth loss such as Huber's near 0.", plot,
        table=table(["learning rate", "final distance to LAD optimum", "std of distance over the last half"], rows),
        rows=rows, lad=best.tolist())


def ex8_poisson(run, seeds):
    key = jax.random.key(run.args.seed + 8)
    rates = [0.5, 2.0, 10.0]
    draws = tiny(run, 200000, 2000)
    rows = []
    for i, lam in enumerate(rates):
        k = np.asarray(jax.random.poisson(jax.random.fold_in(key, i), lam, (draws,)))
        rows.append([lam, f"{k.mean():.4f}", f"{k.var():.4f}"])
    n, w_true, b_true = tiny(run, 1000, 100), np.array([0.5, -0.3], np.float32), 1.0
    x = np.asarray(jax.random.normal(jax.random.fold_in(key, 10), (n, 2)))
    counts = np.asarray(jax.random.poisson(jax.random.fold_in(key, 11), np.exp(x @ w_true + b_true))).astype(np.float32)
    record(run, "Poisson counts, log λ = 0.5 x₁ − 0.3 x₂ + 1 (§3.1 ex. 8)", n)
    res = run.sweep("3.1 poisson", LINREG, SCRATCH_SGD, (x, counts, x, counts), grid(seeds, lr=0.01),
                    epochs=tiny(run, 20, 1), batch_size=10, loss=poisson_nll_loss, task="regression",
                    progress_every=tiny(run, 20, 1))
    w, b = wb(res)
    rows += [["fit: log λ = wᵀx + b", f"ŵ = [{w[:, 0].mean():.3f}, {w[:, 1].mean():.3f}]", f"b̂ = {b.mean():.3f}"]]
    return answer(
        "§3.1.8", "Counts: why not Gaussian noise, E[k] = λ for Poisson, and a Poisson loss (for λ and log λ)?",
        f"Counts are non-negative integers whose spread grows with their size; Gaussian noise allows negative "
        f"and fractional values with a constant spread. E[k] = Σ k λᵏe^{{−λ}}/k! = λ Σ λ^{{k−1}}e^{{−λ}}/(k−1)! = λ; "
        f"sampled ({draws} draws): means {', '.join(r[1] for r in rows[:3])} for λ = 0.5, 2, 10 (the variances "
        f"{', '.join(r[2] for r in rows[:3])} equal λ too). The NLL loss is λ − k log λ (+ log k!); for "
        f"θ = log λ it is e^θ − kθ (convex, no positivity constraint): regjax's poisson_nll_loss, with which the "
        f"engine recovers ŵ = [{w[:, 0].mean():.3f}, {w[:, 1].mean():.3f}], b̂ = {b.mean():.3f} from {n} counts "
        f"(true [0.5, −0.3], 1.0).", table=table(["λ / model", "mean of k / ŵ", "variance of k / b̂"], rows),
        rows=rows, w_hat=w.tolist(), b_hat=b.tolist())


def section(run):
    seeds = seeds_of(run.args)[:tiny(run, None, 1)]
    out = [ex1_mean_median(run)]  # the figures after the first training: a rerun removes the old plots when it starts
    out += book_figures(run)
    out += [ex4_rank(run, seeds), ex5_laplace(run, seeds), ex8_poisson(run, seeds)]
    return in_book_order(out)
