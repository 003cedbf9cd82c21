"""§5.4 numerical stability and initialization: the book's sigmoid-gradient figure and its product of 100 random
4x4 matrices; 2 equal initialization in linear / softmax regression vs an MLP (engine sweeps over seeds), 3 the
singular-value bounds of a product of matrices (random matrices), 4 LARS vs SGD with momentum on a deep ReLU
MLP with vanishing or exploding init over a grid of learning rates."""
from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import optax

from regjax.data import synthetic_linear
from regjax.diagnostics import matrix_product_norms
from regjax.engine import grid
from regjax.models.adapters import scratch_linreg, scratch_mlp, scratch_softmax_regression
from regjax.plots import plot_panels

from .common import SCRATCH_SGD, answer, figure, in_book_order, sample_std, seeds_of, table, tiny

SECTION, TITLE = "5.4", "Numerical stability and initialization"
INITS = {"constant 0": jax.nn.initializers.constant(0.0), "constant 0.3": jax.nn.initializers.constant(0.3),
         "normal σ=0.01": "normal"}


def section(run):
    args = run.args
    seeds = seeds_of(args)[:tiny(run, args.seeds, 1)]
    out = []

    # book figures: sigmoid and its gradient; the product of 100 random 4x4 matrices
    x = jnp.linspace(-8.0, 8.0, 321)
    plot = plot_panels([{"series": {"sigmoid": (x, jax.nn.sigmoid(x)),
                                    "gradient": (x, jax.vmap(jax.grad(jax.nn.sigmoid))(x))},
                         "xlabel": "x", "ylabel": "value", "title": "sigmoid"}],
                       run.out / "book_5_4_sigmoid_gradient.png", "§5.4: the sigmoid's vanishing gradient")
    out.append(figure("5.4", "sigmoid vanishing gradient", "sigmoid and its gradient (jax.grad) on [-8, 8]", plot))
    logn = np.asarray(matrix_product_norms(jax.random.key(args.seed), 100, 4))
    plot = plot_panels([{"series": {"‖M₁⋯M_k‖_F": (np.arange(1, 101), logn)}, "xlabel": "k matrices",
                         "ylabel": "log10 Frobenius norm", "title": "product of N(0,1) 4x4 matrices"}],
                       run.out / "book_5_4_matrix_product.png", "§5.4: exploding products")
    out.append(figure("5.4", "matrix product", f"norm of the product of k random 4x4 N(0, 1) matrices: "
                      f"10^{logn[9]:.1f} after 10, 10^{logn[-1]:.1f} after 100 (the book's 'explodes')", plot,
                      log10_norm=logn.tolist()))

    out.append(_equal_init(run, seeds))
    out.append(_product_bounds(run))
    out.append(_lars(run, seeds))
    return in_book_order(out)


def _equal_init(run, seeds):
    """Ex. 2: constant vs random init for linear regression, softmax regression and a one-hidden-layer MLP."""
    args = run.args
    epochs = tiny(run, 10, 1)
    w_true = jnp.array([2.0, -3.4, 1.5, 0.7, -1.2])
    kd = jax.random.key(args.seed)
    xtr, ytr = synthetic_linear(kd, w_true, 4.2, 1000)
    xte, yte = synthetic_linear(jax.random.fold_in(kd, 1), w_true, 4.2, 200)
    run.set_dataset({"name": "synthetic_linear (5 features, D2L §3.3 style)", "n_train": 1000, "n_test": 200},
                    n_train=1000)
    ds = run.ds or run.load_images()
    images = run.images(ds, flatten=True, train_size=tiny(run, None, 200))
    n_in = images[0].shape[1]
    problems = {"linear regression": (lambda w: scratch_linreg(5, w), (xtr, ytr, xte, yte), "squared", 0.03),
                "softmax regression": (lambda w: scratch_softmax_regression(n_in, 10, w), images, "cross_entropy",
                                       0.1),
                "MLP, 64 ReLU units": (lambda w: scratch_mlp(n_in, (64,), 10, (0.0,), w), images, "cross_entropy",
                                       0.1)}
    if run.args.tiny:  # --tiny: the fewest compiles that still run every code path
        problems = {k: v for k, v in problems.items() if k != "softmax regression"}
    rows, data, gaps = [], {}, {}
    inits = tiny(run, INITS, {"constant 0.3": INITS["constant 0.3"]})  # --tiny: one compile per problem
    for pname, (build, d, loss, lr) in problems.items():
        for iname, init in inits.items():
            members = grid(seeds, lr=lr)
            res = run.sweep(f"5.4 equal init {pname} {iname}", build(init), SCRATCH_SGD, d, members, epochs=epochs,
                            batch_size=32, loss=loss, progress_every=epochs)
            metric = res.final("test_loss" if loss == "squared" else "test_accuracy")
            spread = "--"
            if pname.startswith("MLP"):
                k = np.asarray(res.state.params["dense0"]["kernel"])          # (members, inputs, hidden)
                gaps[iname] = float(np.max(k.max(axis=2) - k.min(axis=2)))  # largest gap between two units
                spread = f"{gaps[iname]:.2g}"
            data[(pname, iname)] = (float(np.mean(metric)), sample_std(metric))
            rows.append([pname, iname, "test MSE" if loss == "squared" else "test accuracy",
                         f"{np.mean(metric):.4g} ± {sample_std(metric):.2g}", spread])
    f = lambda p, i: f"{data[(p, i)][0]:.4g}" if (p, i) in data else "n/a"
    return answer(
        "§5.4.2", "Can all weight parameters in linear regression or softmax regression be initialized to the same "
        "value?",
        f"Yes: with no hidden units there is no symmetry to break -- each output's weights get different gradients "
        f"from the data (∂L/∂w_j = Σ (ŷ − y) x_j differs per feature j; in softmax regression each class's "
        f"row gets (p_k − y_k) x). Measured ({len(seeds)} seeds, {epochs} epochs): linear regression ends at test MSE "
        f"{f('linear regression', 'constant 0')} (constant 0), {f('linear regression', 'constant 0.3')} (0.3), "
        f"{f('linear regression', 'normal σ=0.01')} (normal); softmax regression at accuracy "
        f"{f('softmax regression', 'constant 0')} / {f('softmax regression', 'constant 0.3')} / "
        f"{f('softmax regression', 'normal σ=0.01')}. An MLP with equal init is stuck: at constant 0 ReLU units "
        f"output 0 and get zero gradient ({f('MLP, 64 ReLU units', 'constant 0')}); at 0.3 the largest gap "
        f"between two of the 64 hidden units' weights after training is {gaps.get('constant 0.3', float('nan')):.2g} "
        f"(identical units: a one-unit network; {f('MLP, 64 ReLU units', 'constant 0.3')}), vs "
        f"{f('MLP, 64 ReLU units', 'normal σ=0.01')} with random "
        f"init ({run.ds.name if run.ds else 'images'}).",
        table=table(["model", "init", "metric", f"mean ± std ({len(seeds)} seeds)", "max gap between hidden units"],
                    rows), results={f"{p} / {i}": v for (p, i), v in data.items()})


def _product_bounds(run):
    """Ex. 3: σ_max(AB) ≤ σ_max(A)σ_max(B), σ_min(AB) ≥ σ_min(A)σ_min(B), |λ(AB)| ≤ σ_max(A)σ_max(B),
    κ(AB) ≤ κ(A)κ(B) on random Gaussian matrices; and κ of deep products."""
    key = jax.random.key(run.args.seed + 11)
    trials = tiny(run, 1000, 50)
    rows, worst = [], {}
    for n in (4, 16, 64):
        ka, kb = jax.random.split(jax.random.fold_in(key, n))
        a = np.asarray(jax.random.normal(ka, (trials, n, n)), np.float64)
        b = np.asarray(jax.random.normal(kb, (trials, n, n)), np.float64)
        sa, sb, sab = (np.linalg.svd(m, compute_uv=False) for m in (a, b, a @ b))
        lam = np.abs(np.linalg.eigvals(a @ b)).max(axis=1)
        upper = sab[:, 0] / (sa[:, 0] * sb[:, 0])
        lower = sab[:, -1] / (sa[:, -1] * sb[:, -1])
        rho = lam / (sa[:, 0] * sb[:, 0])
        kappa = (sab[:, 0] / sab[:, -1]) / ((sa[:, 0] / sa[:, -1]) * (sb[:, 0] / sb[:, -1]))
        worst[n] = {"upper": float(upper.max()), "lower": float(lower.min()), "rho": float(rho.max()),
                    "kappa": float(kappa.max()), "kappa_median": float(np.median(sab[:, 0] / sab[:, -1]))}
        rows.append([n, trials, f"{upper.max():.4f}", f"{lower.min():.4f}", f"{rho.max():.4f}", f"{kappa.max():.4f}",
                     f"{np.median(sa[:, 0] / sa[:, -1]):.3g}", f"{worst[n]['kappa_median']:.3g}"])
    # conditioning of a deep product: κ of M1...Mk for the book's 4x4 matrices
    mats = np.asarray(jax.random.normal(jax.random.fold_in(key, 99), (40, 4, 4)), np.float64)
    prod, conds = np.eye(4), []
    for m in mats:
        prod = prod @ m
        s = np.linalg.svd(prod, compute_uv=False)
        conds.append(s[0] / s[-1])
    limit = 1 / np.finfo(np.float64).eps
    first = next((k + 1 for k, c in enumerate(conds) if c > limit), None)
    singular = ("" if first is None else f"; from {first} matrices on κ exceeds 1/eps = {limit:.1e}: the product "
                f"is numerically singular and the computed κ is no longer meaningful")
    ok = all(w["upper"] <= 1 + 1e-9 and w["lower"] >= 1 - 1e-9 and w["rho"] <= 1 + 1e-9 for w in worst.values())
    return answer(
        "§5.4.3", "Analytic bounds on the eigenvalues of a product of two matrices: what do they say about "
        "well-conditioned gradients?",
        f"For square A, B: σ_min(A)σ_min(B) ≤ σ_i(AB) ≤ σ_max(A)σ_max(B) (submultiplicativity of the operator norm, "
        f"and of ‖(AB)⁻¹‖), every eigenvalue has |λ(AB)| ≤ ‖AB‖₂ ≤ σ_max(A)σ_max(B), and so κ(AB) ≤ κ(A)κ(B). On "
        f"{'all' if ok else 'NOT all'} random Gaussian pairs tested the bounds hold (worst ratios in the table: ≤ 1 "
        f"above, ≥ 1 below). So the gradient through L layers, a product of L Jacobians, can have a condition number "
        f"as large as the product of theirs: it grows geometrically with depth unless every factor keeps its "
        f"singular values near 1 (orthogonal-like layers, variance-preserving init). The book's 4x4 matrices: κ of "
        f"the product is {_kappa(conds[0])} after 1, {_kappa(conds[4])} after 5, {_kappa(conds[9])} after 10 and "
        f"{_kappa(conds[-1])} after {len(conds)} matrices (float64{singular}) -- the product collapses towards "
        f"rank 1.",
        table=table(["n", "pairs", "max σ_max(AB)/(σ_max(A)σ_max(B))", "min σ_min(AB)/(σ_min(A)σ_min(B))",
                     "max ρ(AB)/(σ_max(A)σ_max(B))", "max κ(AB)/(κ(A)κ(B))", "median κ(A)", "median κ(AB)"], rows),
        worst=worst, product_condition=conds)


def _lars(run, seeds):
    """Ex. 4: a deep ReLU MLP (6 x 64) whose init makes gradients vanish (N(0, 0.01²)) or explode (N(0, 0.5²))
    with depth, trained with SGD + momentum vs LARS (same momentum, trust coefficient 1: lr = each layer's
    relative step) over a grid of learning rates."""
    ds = run.ds or run.load_images()
    data = run.images(ds, flatten=True, train_size=tiny(run, None, 200))
    epochs, depth = tiny(run, 20, 1), 6
    lrs = tiny(run, [1e-4, 1e-3, 1e-2, 1e-1], [1e-3, 1e-2])
    regimes = tiny(run, {"vanishing, N(0, 0.01²) init": 0.01, "exploding, N(0, 0.5²) init": 0.5},
                   {"vanishing, N(0, 0.01²) init": 0.01})
    opts = {"SGD": optax.inject_hyperparams(optax.sgd)(learning_rate=0.1, momentum=0.9),
            "LARS": optax.inject_hyperparams(optax.lars)(learning_rate=0.1, trust_coefficient=1.0, momentum=0.9)}
    if run.args.tiny:
        opts = {"LARS": opts["LARS"]}
    acc, diverged, panels = {}, {}, []
    for regime, std in regimes.items():
        model = scratch_mlp(data[0].shape[1], (64,) * depth, 10, (0.0,) * depth,
                            weight_init=jax.nn.initializers.normal(std))
        for name, opt in opts.items():
            members = grid(seeds, lr=lrs)
            res = run.sweep(f"5.4 lars {regime} {name}", model, opt, data, members, epochs=epochs, batch_size=64,
                            progress_every=epochs)
            raw = res.final("test_accuracy")
            final = np.nan_to_num(raw, nan=0.0)  # a diverged member scores 0
            at = lambda a, lr: a[[c["lr"] == lr for c in members.configs]]
            acc[(regime, name)] = [(float(np.mean(at(final, lr))), sample_std(at(final, lr))) for lr in lrs]
            diverged[(regime, name)] = [int(np.isnan(at(raw, lr)).sum()) for lr in lrs]
        panels.append({"series": {n: (lrs, [m for m, _ in acc[(regime, n)]], [s for _, s in acc[(regime, n)]])
                                  for n in opts}, "xlabel": "learning rate", "ylabel": "final test accuracy",
                       "xscale": "log", "title": regime})
    cell = lambda k, j: (f"{acc[k][j][0]:.3f} ± {acc[k][j][1]:.3f}"
                         + (f" ({diverged[k][j]} diverged)" if diverged[k][j] else ""))
    rows = [[f"{lr:g}"] + [cell(k, j) for k in acc] for j, lr in enumerate(lrs)]
    plot = plot_panels(panels, run.out / "ex_5_4_4_lars.png",
                       f"§5.4 ex. 4: LARS vs SGD, {depth}x64 ReLU MLP, {epochs} epochs ({ds.name})")
    good = {k: [lr for lr, (m, _) in zip(lrs, v) if m >= 0.5] for k, v in acc.items()}
    best = {k: max(m for m, _ in v) for k, v in acc.items()}
    say = lambda k: ("not run" if k not in acc else
                     f"{len(good[k])} of {len(lrs)} learning rates (best {best[k]:.3f})" if good[k] else
                     f"none of the {len(lrs)} learning rates (best {best[k]:.3f})")
    parts = "; ".join(f"{regime}: SGD at {say((regime, 'SGD'))}, LARS at {say((regime, 'LARS'))}"
                      for regime in regimes)
    return answer(
        "§5.4.4", "If some terms diverge, can we fix this after the fact? (layerwise adaptive rate scaling, LARS)",
        f"Partly: LARS rescales each layer's update to a fixed fraction of that layer's weight norm, "
        f"η·‖w_l‖/‖g_l‖·g_l, so layers whose gradients have vanished or exploded still move at the same relative "
        f"speed -- it repairs the per-layer step size, not the gradient's direction, and not a loss that is already "
        f"non-finite. {depth}x64 ReLU MLP on {ds.name}, SGD and LARS both with momentum 0.9, {len(seeds)} seeds, "
        f"{epochs} epochs (a diverged member scores 0); learning rates reaching test accuracy ≥ 0.5 (chance 0.1) -- "
        f"{parts}.", plot,
        table=table(["lr"] + [f"{r}: {n}" for r, n in acc], rows), learning_rates=lrs,
        accuracy={f"{r} / {n}": v for (r, n), v in acc.items()},
        diverged={f"{r} / {n}": v for (r, n), v in diverged.items()})


def _kappa(c: float) -> str:
    """A float64 condition number; beyond 1/eps only its bound is meaningful."""
    limit = 1 / np.finfo(np.float64).eps
    return f"> {limit:.1e} (numerically singular)" if c > limit else f"{c:.3g}"

