"""§4.1 softmax regression: the derivations, each checked numerically (float64 on the CPU, no training): 1 the
Hessian of the softmax cross-entropy = the covariance of the one-hot label under softmax, 2-4 codes and
Bradley-Terry, 5 RealSoftMax against max, 6 log-sum-exp (convex, shift, overflow), 7 temperature."""
from __future__ import annotations

import math

import jax
import jax.numpy as jnp
import numpy as np

from .common import answer, in_book_order, table

SECTION, TITLE = "4.1", "Softmax regression"
LAMBDAS = [0.5, 1.0, 2.0, 5.0, 10.0, 100.0]
TEMPERATURES = [0.01, 0.1, 0.5, 1.0, 2.0, 10.0, 1000.0]


def _f64(fn, *args):
    """``fn(*args)`` in float64 (the checks compare closed forms at ~1e-12, beyond float32's 1e-7)."""
    with jax.enable_x64(True):
        return fn(*args)


def _hessian_check(seed: int, q: int = 5) -> dict:
    def run():
        o = jax.random.normal(jax.random.key(seed), (q,), jnp.float64) * 2
        y = 2
        loss = lambda o: jax.nn.logsumexp(o) - o[y]
        p = jax.nn.softmax(o)
        h_auto = jax.hessian(loss)(o)
        h_closed = jnp.diag(p) - jnp.outer(p, p)
        onehots = jnp.eye(q)                                  # the one-hot vector e_k is drawn with probability p_k
        mean = p @ onehots
        cov = (p[:, None, None] * jnp.einsum("ki,kj->kij", onehots - mean, onehots - mean)).sum(0)
        eig = jnp.linalg.eigvalsh(h_auto)
        return {"hessian_vs_closed": float(jnp.abs(h_auto - h_closed).max()),
                "hessian_vs_covariance": float(jnp.abs(h_auto - cov).max()),
                "min_eigenvalue": float(eig.min()), "max_eigenvalue": float(eig.max()),
                "hessian_diag": np.asarray(jnp.diag(h_auto)).tolist(), "p": np.asarray(p).tolist()}
    return _f64(run)


def _realsoftmax_rows() -> list:
    def run():
        a, b = 1.0, 0.3
        rows = []
        for lam in LAMBDAS:
            r = float(jnp.logaddexp(lam * a, lam * b) / lam)
            gap = math.log1p(math.exp(-lam * abs(a - b))) / lam
            rows.append((lam, r, gap, math.log(2) / lam, float(-jnp.logaddexp(-lam * a, -lam * b) / lam)))
        gaps = [float(jnp.logaddexp(a, 0.0)) - a for a in (0.0, 1.0, 5.0, 20.0)]
        return rows, gaps
    return _f64(run)


def _logsumexp_checks(seed: int) -> dict:
    def run():
        x = jax.random.normal(jax.random.key(seed + 1), (6,), jnp.float64)
        g = lambda x: jax.nn.logsumexp(x)
        eig = jnp.linalg.eigvalsh(jax.hessian(g)(x))
        # convexity along random chords: g(tx + (1-t)y) <= t g(x) + (1-t) g(y)
        k1, k2, k3 = jax.random.split(jax.random.key(seed + 2), 3)
        xs, ys = jax.random.normal(k1, (1000, 6)) * 3, jax.random.normal(k2, (1000, 6)) * 3
        t = jax.random.uniform(k3, (1000, 1))
        lhs = jax.vmap(g)(t * xs + (1 - t) * ys)
        rhs = t[:, 0] * jax.vmap(g)(xs) + (1 - t[:, 0]) * jax.vmap(g)(ys)
        shift = {b: float(g(x + b) - g(x)) for b in (-3.0, 0.5, 10.0)}
        return {"hessian_min_eigenvalue": float(eig.min()), "chord_violations": int((lhs > rhs + 1e-12).sum()),
                "shift": shift}

    out = _f64(run)
    naive = lambda x: jnp.log(jnp.sum(jnp.exp(x)))
    shifted = lambda x: jnp.max(x) + jnp.log(jnp.sum(jnp.exp(x - jnp.max(x))))
    rows = []
    for name, x in (("moderate [1, 2, 3]", [1.0, 2.0, 3.0]), ("large [100, 101, 102]", [100.0, 101.0, 102.0]),
                    ("very small [-120, -121, -122]", [-120.0, -121.0, -122.0]),
                    ("tiny [-1000, -1001, -1002]", [-1000.0, -1001.0, -1002.0])):
        x32 = jnp.asarray(x, jnp.float32)
        rows.append((name, float(naive(x32)), float(shifted(x32)), float(jax.nn.logsumexp(x32))))
    out["rows"] = rows
    return out


def _temperature_rows() -> list:
    p = np.array([0.5, 0.3, 0.15, 0.05])
    rows = []
    for t in TEMPERATURES:
        q = p ** (1 / t)
        q /= q.sum()
        rows.append((t, 1 / t, *[float(v) for v in q]))
    return rows


def section(run):
    seed = run.args.seed
    run.set_dataset({"name": "none (closed-form checks of §4.1's derivations)", "n_train": 5}, n_train=5)
    out = []

    # 1. Hessian = covariance
    h = _hessian_check(seed)
    out.append(answer(
        "§4.1.1", "Second derivative of the softmax cross-entropy; show it equals the variance of softmax(o).",
        f"l = log Σ_j exp(o_j) − o_y, so ∂l/∂o_i = softmax(o)_i − y_i and ∂²l/∂o_i∂o_j = p_i δ_ij − p_i p_j: "
        f"H = diag(p) − ppᵀ, which is Cov[e_k] for the one-hot e_k drawn with probability p_k (E[e] = p, "
        f"E[eeᵀ] = diag(p)). Checked at random 5-class logits: jax.hessian vs the closed form differ by at most "
        f"{h['hessian_vs_closed']:.1e}, vs the covariance by {h['hessian_vs_covariance']:.1e}; its eigenvalues lie "
        f"in [{h['min_eigenvalue']:.1e}, {h['max_eigenvalue']:.3f}] (PSD, one zero along the all-ones direction, "
        f"since softmax ignores a common shift).",
        table=table(["class", "p_i", "H_ii (jax.hessian)", "p_i(1 − p_i)"],
                    [(i, p, d, p * (1 - p)) for i, (p, d) in enumerate(zip(h["p"], h["hessian_diag"]))]), **h))

    # 2. codes for 3 equiprobable classes
    rows2 = [(n, float(3 ** n), math.ceil(n * math.log2(3)), math.ceil(n * math.log2(3)) / n)
             for n in (1, 2, 3, 5, 10, 100)]
    out.append(answer(
        "§4.1.2", "Three equiprobable classes: the problem with a binary code; a better code (n observations jointly).",
        f"The entropy is log₂3 = {math.log2(3):.4f} bits, but a binary code spends whole bits per symbol: 2 bits "
        f"per class (one of the four codewords wasted), or a prefix code {{0, 10, 11}} at 5/3 = 1.667 bits. Encoding "
        f"n observations jointly takes ⌈n log₂3⌉ bits for the 3ⁿ outcomes: "
        f"{'; '.join(f'n = {r[0]}: {r[2]} bits, {r[3]:.4g} per symbol' for r in rows2[1:])}, approaching "
        f"log₂3 as n grows (the rounding up costs at most 1/n bit per symbol; arithmetic coding gets there "
        f"without blocks).",
        table=table(["n jointly", "outcomes 3ⁿ", "bits ⌈n log₂3⌉", "bits per symbol"], rows2), rows=rows2))

    # 3. PAM-3
    digits = [(v, np.base_repr(v, 3).zfill(2), format(v, "03b")) for v in range(8)]
    out.append(answer(
        "§4.1.3", "PAM-3 with levels {−1, 0, 1}: ternary units to send an integer in {0, …, 7}? Why better?",
        f"⌈log₃8⌉ = ⌈{math.log(8, 3):.3f}⌉ = 2 trits (3² = 9 ≥ 8 > 3), against 3 bits: each symbol carries log₂3 "
        f"= {math.log2(3):.3f} bits, so fewer symbols (a lower symbol rate, hence less bandwidth and crosstalk per "
        f"bit) for the same data, and a symmetric ±1 signal has no DC component; the price is a smaller gap between "
        f"levels at equal voltage swing, i.e. less noise margin.",
        table=table(["value", "ternary (2 trits)", "binary (3 bits)"], digits)))

    # 4. Bradley-Terry
    o = np.array([1.3, 0.4])
    p2 = np.exp(o) / np.exp(o).sum()
    p3 = np.exp(np.r_[o, 0.0]) / np.exp(np.r_[o, 0.0]).sum()
    out.append(answer(
        "§4.1.4", "Bradley-Terry: prove softmax meets the requirement; add a default option 'neither'.",
        f"P(apple) = e^{{o_a}}/(e^{{o_a}} + e^{{o_o}}) = σ(o_a − o_o): strictly increasing in o_a (derivative "
        f"p(1 − p) > 0) and > ½ exactly when o_a > o_o, so the larger score is the likelier choice. For 'neither', "
        f"add a third score o_n (fixed at 0 for identifiability): P(i) = e^{{o_i}}/(e^{{o_a}} + e^{{o_o}} + "
        f"e^{{o_n}}); the "
        f"ratio P(apple)/P(orange) = e^{{o_a − o_o}} is unchanged (independence of irrelevant alternatives). With "
        f"o = (1.3, 0.4): two choices {p2[0]:.3f}/{p2[1]:.3f}, with 'neither' {p3[0]:.3f}/{p3[1]:.3f}/{p3[2]:.3f} "
        f"(ratio {p2[0] / p2[1]:.3f} = {p3[0] / p3[1]:.3f}).",
        table=table(["choices", "P(apple)", "P(orange)", "P(neither)", "P(apple)/P(orange)"],
                    [("2", p2[0], p2[1], "--", p2[0] / p2[1]), ("3", p3[0], p3[1], p3[2], p3[0] / p3[1])])))

    # 5. RealSoftMax
    rows5, gaps = _realsoftmax_rows()
    out.append(answer(
        "§4.1.5", "RealSoftMax(a,b) = log(eᵃ+eᵇ): > max(a,b); smallest gap; λ-scaled → max as λ→∞; softmin; n numbers.",
        f"With a ≥ b: log(eᵃ + eᵇ) = a + log(1 + e^{{b−a}}) > a since e^{{b−a}} > 0; the gap log(1 + e^{{b−a}}) is "
        f"at most "
        f"log 2 (a = b) and tends to 0 as a − b → ∞ but never reaches it (b = 0: gaps {gaps[0]:.4f}, {gaps[1]:.4f}, "
        f"{gaps[2]:.2e}, {gaps[3]:.1e} at a = 0, 1, 5, 20). λ⁻¹RealSoftMax(λa, λb) = a + λ⁻¹log(1 + e^{{−λ(a−b)}}) "
        f"lies in (max, max + log 2/λ], so it → max as λ → ∞ (table, a = 1, b = 0.3: gap {rows5[0][2]:.3f} at "
        f"λ = {LAMBDAS[0]:g}, {rows5[-1][2]:.1e} at λ = {LAMBDAS[-1]:g}). Softmin: −λ⁻¹log(e^{{−λa}} + e^{{−λb}}) < "
        f"min(a, b), → min; for n numbers λ⁻¹log Σᵢ e^{{λxᵢ}} ∈ (max, max + log n/λ].",
        table=table(["λ", "λ⁻¹RealSoftMax(λa, λb)", "gap λ⁻¹log(1 + e^{−λ(a−b)})", "bound log 2/λ",
                     "softmin (min = 0.3)"], rows5),
        rows=rows5))

    # 6. log-sum-exp
    c = _logsumexp_checks(seed)
    r6 = c["rows"]
    out.append(answer(
        "§4.1.6", "g(x) = log Σ exp xᵢ: convex; 'translation invariant'; very large / small xᵢ; stable with "
        "b = max xᵢ.",
        f"∇g = softmax(x) and ∇²g = diag(p) − ppᵀ (a covariance, PSD), so g is convex: at random x the Hessian's "
        f"smallest eigenvalue is {c['hessian_min_eigenvalue']:.1e} (≥ 0 up to round-off) and "
        f"{c['chord_violations']} of 1000 random chords violate convexity. (b) is wrong as the book states it: "
        f"g(x + b) = g(x) + b (measured g(x + b) − g(x) = {c['shift'][-3.0]:g}, {c['shift'][0.5]:g}, "
        f"{c['shift'][10.0]:g} for b = −3, 0.5, 10); softmax, not g, is shift invariant. (c) In float32 the naive "
        f"form overflows for large entries (exp(100) > 3.4e38: {r6[1][1]}) and underflows for very negative ones "
        f"(exp(−1000) = 0: log 0 = {r6[3][1]}). (d) g(x) = b + log Σ exp(xᵢ − b) with b = max xᵢ has every "
        f"exponent ≤ 0 and one term = 1, so the sum is in [1, n]: no overflow, no log 0 ({r6[1][2]:.4f}, "
        f"{r6[3][2]:.4f}; jax.nn.logsumexp agrees).",
        table=table(["x (float32)", "naive log Σ exp", "max-shifted", "jax.nn.logsumexp"], r6),
        **{k: v for k, v in c.items() if k != "rows"}))

    # 7. temperature
    rows7 = _temperature_rows()
    out.append(answer(
        "§4.1.7", "Q(i) ∝ P(i)^α: α for doubling / halving the temperature; T → 0; T → ∞.",
        f"P(i) ∝ exp(o_i/T) gives P^α ∝ exp(o_i α/T), temperature T/α: doubling T is α = 1/2, halving α = 2. T → 0 "
        f"(α → ∞) concentrates Q on the argmax (P = (0.5, 0.3, 0.15, 0.05): Q₁ = {rows7[0][2]:.4f} at T = "
        f"{TEMPERATURES[0]:g}); T → ∞ (α → 0) flattens Q to uniform (Q = "
        f"{', '.join(f'{v:.3f}' for v in rows7[-1][2:])} "
        f"at T = {TEMPERATURES[-1]:g}).",
        table=table(["T (relative)", "α = 1/T", "Q₁", "Q₂", "Q₃", "Q₄"], rows7), rows=rows7))
    return in_book_order(out)
