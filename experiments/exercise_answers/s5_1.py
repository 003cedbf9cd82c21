"""§5.1 multilayer perceptrons: the book's activation figure (ReLU, sigmoid, tanh and their derivatives by
jax.grad), and numerical checks of the derivations: 1 deep linear networks (rank of a product), 2 pReLU's and
3 Swish's derivatives, 4 ReLU MLPs are piecewise linear, 5 tanh(x) + 1 = 2 sigmoid(2x), 7 sigmoid's vanishing
gradient. No training: everything is exact arithmetic on small arrays (float64 via numpy where it matters)."""
from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np

from regjax.plots import plot_panels

from .common import answer, figure, in_book_order, table

SECTION, TITLE = "5.1", "Multilayer perceptrons"


def _derivative(f):
    """f' on a grid: jax.grad of the scalar function, vmapped."""
    return jax.vmap(jax.grad(f))


def _rank(m, tol=1e-6):
    s = np.linalg.svd(np.asarray(m, np.float64), compute_uv=False)
    return int((s > tol * s[0]).sum())


def section(run):
    seed = run.args.seed
    x = jnp.linspace(-8.0, 8.0, 401)
    out = []

    # book figure: the three activations and their derivatives
    acts = {"ReLU": jax.nn.relu, "sigmoid": jax.nn.sigmoid, "tanh": jnp.tanh}
    panels = [{"series": {name: (x, f(x)), f"d {name}/dx": (x, _derivative(f)(x))}, "xlabel": "x",
               "ylabel": "value", "title": name} for name, f in acts.items()]
    plot = plot_panels(panels, run.out / "book_5_1_activations.png", "§5.1: activations and their derivatives")
    out.append(figure("5.1", "activations", "ReLU, sigmoid and tanh with their derivatives (jax.grad, vmapped)", plot))

    # 1. deep linear networks: a product of matrices, rank <= the narrowest width
    key = jax.random.key(seed)
    k1, k2, k3, k4, k5 = jax.random.split(key, 5)
    d, narrow = 10, 2
    w1, w2 = jax.random.normal(k1, (narrow, d)), jax.random.normal(k2, (d, narrow))
    wide = [jax.random.normal(k, (d, d)) for k in jax.random.split(k3, 3)]
    xs = jax.random.normal(k4, (d, 50))
    layered = wide[2] @ (wide[1] @ (wide[0] @ xs))
    collapsed = (wide[2] @ wide[1] @ wide[0]) @ xs
    rel = float(jnp.abs(layered - collapsed).max() / jnp.abs(layered).max())
    r_narrow, r_wide = _rank(w2 @ w1), _rank(wide[2] @ wide[1] @ wide[0])
    out.append(answer(
        "§5.1.1", "Adding layers to a linear deep network never increases expressive power; example where it "
        "reduces it?",
        f"W_L...W_2 W_1 x = (W_L...W_1) x: any stack of linear layers is one linear map (three 10x10 layers vs their "
        f"product: max relative difference {rel:.1e}, round-off), so depth adds nothing; and rank(AB) <= min(rank A, "
        f"rank B), so a narrow middle layer caps the rank. A 10 -> {narrow} -> 10 linear network has a product of "
        f"numerical rank {r_narrow} (vs {r_wide} for 10 -> 10 -> 10 -> 10): it can only represent rank-{narrow} maps, "
        f"strictly fewer than the single 10x10 layer it replaces.",
        table=table(["network", "numerical rank of the product", "full rank"],
                    [[f"10 -> {narrow} -> 10", r_narrow, d], ["10 -> 10 -> 10 -> 10", r_wide, d]]),
        rank_narrow=r_narrow, rank_wide=r_wide, collapse_rel_error=rel))

    # 2. pReLU derivative
    grid = jnp.concatenate([jnp.linspace(-5.0, -0.01, 200), jnp.linspace(0.01, 5.0, 200)])
    rows, errs = [], []
    for alpha in (0.01, 0.25):
        prelu = lambda v, a=alpha: jnp.where(v > 0, v, a * v)
        err = float(jnp.abs(_derivative(prelu)(grid) - jnp.where(grid > 0, 1.0, alpha)).max())
        errs.append(err)
        rows.append([f"α = {alpha}", "1 (x > 0), α (x < 0)", f"{err:.1e}"])
    out.append(answer(
        "§5.1.2", "Compute the derivative of the pReLU activation function.",
        f"pReLU(x) = max(0, x) + α min(0, x), so pReLU'(x) = 1 for x > 0 and α for x < 0 (undefined at 0; "
        f"frameworks pick one side). jax.grad agrees on 400 points of [-5, 5] \\ {{0}} to {max(errs):.1e}.",
        table=table(["α", "derivative", "max abs(formula − jax.grad)"], rows), max_error=max(errs)))

    # 3. Swish derivative
    rows, errs = [], []
    for beta in (0.5, 1.0, 2.0):
        swish = lambda v, b=beta: v * jax.nn.sigmoid(b * v)
        s = jax.nn.sigmoid(beta * x)
        err = float(jnp.abs(_derivative(swish)(x) - (s + beta * x * s * (1 - s))).max())
        errs.append(err)
        rows.append([f"β = {beta}", f"{err:.1e}"])
    out.append(answer(
        "§5.1.3", "Compute the derivative of the Swish activation function x·sigmoid(βx).",
        f"By the product rule and σ' = σ(1−σ): d/dx [x σ(βx)] = σ(βx) + βx σ(βx)(1 − σ(βx)). jax.grad agrees on "
        f"401 points of [-8, 8] to {max(errs):.1e} for β ∈ {{0.5, 1, 2}}.",
        table=table(["β", "max abs(formula − jax.grad)"], rows), max_error=max(errs)))

    # 4. a ReLU MLP is continuous piecewise linear
    sizes = [1, 8, 8, 1]
    keys = jax.random.split(k5, len(sizes))
    params = [(jax.random.normal(k, (a, b)), jax.random.normal(jax.random.fold_in(k, 1), (b,)))
              for k, a, b in zip(keys, sizes[:-1], sizes[1:])]

    def net(v):  # float64 (numpy): float32 round-off would blur the second differences
        h = v[:, None]
        for i, (w, b) in enumerate(params):
            h = h @ np.asarray(w, np.float64) + np.asarray(b, np.float64)
            h = np.maximum(h, 0.0) if i < len(params) - 1 else h
        return h[:, 0]

    t = np.linspace(-3.0, 3.0, 20001)
    y = net(t)
    second = np.abs(np.diff(y, 2))
    kinks = second > 1e-9 * np.abs(y).max()  # a kink: |slope change| * h (~1e-4); elsewhere round-off (~1e-15)
    pieces = int(np.sum(np.diff(np.flatnonzero(kinks)) > 1)) + 1 if kinks.any() else 0  # adjacent flags = one kink
    jump = float(np.abs(np.diff(y)).max())
    out.append(answer(
        "§5.1.4", "Show that an MLP using only ReLU (or pReLU) constructs a continuous piecewise linear function.",
        f"Each layer composes an affine map with max(0, ·) (or pReLU), each continuous and piecewise linear; sums and "
        f"compositions of continuous piecewise-linear functions are again continuous piecewise linear (finitely many "
        f"pieces: each unit splits its input region along one hyperplane). Check: a random 1-8-8-1 ReLU net on 20001 "
        f"points of [-3, 3]: the second difference (float64) is at round-off level ({np.median(second):.0e}) except at "
        f"{int(kinks.sum())} of the grid points ({kinks.mean():.2%}): {pieces} kinks, i.e. {pieces + 1} "
        f"linear pieces; the largest step between neighbours is {jump:.2e} (continuous).",
        table=table(["net", "grid points", "points with Δ²f above round-off", "kinks",
                     "largest step f(x+h) − f(x), h = 3e-4"],
                    [["1-8-8-1 ReLU", len(t), int(kinks.sum()), pieces, f"{jump:.2e}"]]),
        kink_points=int(kinks.sum()), kinks=pieces, max_jump=jump))

    # 5. tanh(x) + 1 = 2 sigmoid(2x); same function classes
    xd = np.linspace(-8, 8, 401)
    ident = float(np.abs(np.tanh(xd) + 1 - 2 / (1 + np.exp(-2 * xd))).max())
    kw = jax.random.split(jax.random.fold_in(key, 5), 4)
    W, b = jax.random.normal(kw[0], (3, 16)), jax.random.normal(kw[1], (16,))
    V, c = jax.random.normal(kw[2], (16, 2)), jax.random.normal(kw[3], (2,))
    xin = jax.random.normal(jax.random.fold_in(key, 6), (100, 3))
    tanh_net = jnp.tanh(xin @ W + b) @ V + c
    sig_net = jax.nn.sigmoid(xin @ (2 * W) + 2 * b) @ (2 * V) + (c - V.sum(0))
    nets = float(jnp.abs(tanh_net - sig_net).max())
    out.append(answer(
        "§5.1.5", "Show tanh(x) + 1 = 2 sigmoid(2x); prove the function classes of both nonlinearities are identical.",
        f"tanh x + 1 = (eˣ − e⁻ˣ + eˣ + e⁻ˣ)/(eˣ + e⁻ˣ) = 2/(1 + e⁻²ˣ) = 2σ(2x) (float64 on [-8, 8]: max error "
        f"{ident:.1e}). Hence tanh(Wx + b) V + c = σ(2Wx + 2b)(2V) + (c − 1ᵀV): every tanh layer is a sigmoid layer "
        f"with rescaled weights and a shifted bias of the next layer, and conversely σ(z) = (tanh(z/2) + 1)/2. A "
        f"random 3-16-2 tanh net and its sigmoid rewrite agree to {nets:.1e} (float32).",
        table=table(["check", "max abs error"], [["tanh(x) + 1 − 2σ(2x), float64", f"{ident:.1e}"],
                                                 ["tanh net − sigmoid rewrite, float32", f"{nets:.1e}"]]),
        identity_error=ident, net_error=nets))

    # 7. vanishing sigmoid gradient
    pts = np.array([-10.0, -5.0, 0.0, 5.0, 10.0])
    dsig = np.asarray(_derivative(jax.nn.sigmoid)(jnp.asarray(pts)))
    depth_prod = 0.25 ** 10
    out.append(answer(
        "§5.1.7", "Provide an example where the gradients vanish for the sigmoid activation function.",
        f"σ'(x) = σ(x)(1 − σ(x)) is at most 0.25 (at 0) and {dsig[-1]:.2e} at x = ±10: a unit whose pre-activation "
        f"is large in magnitude (e.g. weights init too large, or inputs of scale 10) passes almost no gradient back. "
        f"Through 10 stacked sigmoid layers the σ' factors alone contribute at most 0.25¹⁰ = {depth_prod:.1e} (the "
        f"weight matrices multiply in too: with operator norms ≤ 1, the whole gradient is scaled by at most that).",
        table=table(["x"] + [f"{p:g}" for p in pts], [["σ'(x)"] + [f"{v:.3e}" for v in dsig]]),
        sigmoid_grad=dict(zip(map(float, pts), map(float, dsig)))))
    return in_book_order(out)
