"""§3.7 weight decay, on the section's problem (n_train 20, d 200, batch 5, lr 0.003, 100 epochs; --epochs/--lr/
--batch-size): 1 the λ curve, 2 the validation-chosen vs the test-optimal λ, 3 L1 vs L2, 4 the Frobenius norm
(checked), 6 the Gaussian prior = ridge (MAP checked against the closed form)."""
from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
import numpy as np

from regjax import decayed_sgd, l1_decayed_sgd, l2_penalty
from regjax.engine import grid
from regjax.plots import plot_panels
from regjax.selection import ridge_closed_form, select_lambda
from weight_decay import weight_decay_problem

from .common import SCRATCH_SGD, answer, loss_against, seeds_of, stats, table, tiny, trend

SECTION, TITLE = "3.7", "Weight decay"
NOISE = 0.01  # the label noise σ of D2L §3.7's problem
LAMBDAS = [0.0] + [3.0 * 10 ** (j / 4) for j in range(-5, 10)]          # §3.7's λ grid (0, 0.17 ... 533)


def section(run):
    args = run.args
    run.set_dataset({"name": "synthetic_linear (D2L §3.7)", "n_train": 20, "n_test": 100, "d": 200}, n_train=20)
    data, model = weight_decay_problem(args.seed, noise=NOISE)
    seeds, lam = seeds_of(args), np.asarray(LAMBDAS)
    epochs = tiny(run, args.epochs, 3)
    out = []

    # 1. λ curve
    members = grid(seeds, lam=LAMBDAS, lr=args.lr)
    res = run.sweep("3.7 lambda", model, SCRATCH_SGD, data, members, epochs=epochs, loss="squared",
                    progress_every=epochs)
    train_m, train_s, test_m, test_s, best, plot = loss_against(
        members, res, "lam", lam, run.out / "ex_3_7_1_lambda_curve.png", xlabel="λ", xscale="symlog",
        title=f"{len(seeds)} seeds, {epochs} epochs", suptitle="§3.7 ex. 1: loss against λ")
    out.append(answer(
        "§3.7.1", "Experiment with the value of λ: plot training and test loss as a function of λ. What do you "
        "observe?",
        f"Train loss {trend(train_m)} with λ ({train_m[0]:.2g} at λ=0, {train_m[-1]:.2g} at λ={lam[-1]:.3g}) while "
        f"test loss falls from {test_m[0]:.3g} to its minimum {test_m[best]:.3g} at λ={lam[best]:.3g} "
        f"({_after_best(test_m, test_s, best, lam)}); the "
        f"test-train gap shrinks from {test_m[0] - train_m[0]:.3g} to {test_m[best] - train_m[best]:.3g}. The true "
        f"weights are 0.01 each (‖w‖ = 0.14), so strong shrinkage is what this problem wants.", plot,
        lambdas=LAMBDAS, train_mean=train_m.tolist(), test_mean=test_m.tolist(), test_std=test_s.tolist()))

    # 2. validation-chosen vs test-optimal λ
    sel = select_lambda(model, SCRATCH_SGD, np.asarray(data[0]), np.asarray(data[1]), LAMBDAS, key=jax.random.key(args.seed),
                        k=5, seeds=seeds, epochs=epochs, batch_size=args.batch_size, hparams={"lr": args.lr},
                        train=functools.partial(run.sweep, "3.7 cross-validation", progress_every=epochs))
    at = {v: i for i, v in enumerate(LAMBDAS)}
    chosen, one_se = test_m[at[sel.best_lambda]], test_m[at[sel.one_se_lambda]]
    marks = {f"validation λ {sel.best_lambda:.3g}": sel.best_lambda, f"one-SE λ {sel.one_se_lambda:.3g}":
             sel.one_se_lambda, f"test-best λ {lam[best]:.3g}": lam[best]}
    plot = plot_panels([{"series": {"5-fold validation": (lam, sel.mean, sel.std)}, "marks": marks, "xlabel": "λ",
                         "ylabel": "loss", "xscale": "symlog", "yscale": "log", "title": "validation (folds)"},
                        {"series": {"test": (lam, test_m, test_s)}, "marks": marks, "xlabel": "λ", "ylabel": "loss",
                         "xscale": "symlog", "yscale": "log", "title": "test (seeds)"}],
                       run.out / "ex_3_7_2_validation.png", "§3.7 ex. 2: is the validation-chosen λ optimal?")
    out.append(answer(
        "§3.7.2", "Use a validation set to find the optimal λ. Is it really the optimal value? Does this matter?",
        f"5-fold CV on the 20 training examples picks λ={sel.best_lambda:.3g} (one-SE rule {sel.one_se_lambda:.3g}); "
        f"the test-optimal λ is {lam[best]:.3g}. Test loss at the chosen λ {chosen:.3g}, "
        f"{100 * (chosen / test_m[best] - 1):+.0f}% from the optimum {test_m[best]:.3g} (one-SE λ: "
        f"{100 * (one_se / test_m[best] - 1):+.0f}%), while the test curve spans a factor "
        f"{np.nanmax(test_m) / test_m[best]:.0f} over the grid. With 16 examples per fold the validation estimate "
        f"is noisy (its std over folds is {sel.std[at[sel.best_lambda]] / sel.mean[at[sel.best_lambda]]:.0%} of "
        f"its mean at the chosen λ), so the choice lands near, not exactly at, the optimum; it matters little "
        f"here because the curve is flat near its minimum.", plot,
        selection=sel.to_dict(), best_test_lambda=float(lam[best])))

    # 3. L1 vs L2 (both as decay in the optimizer, λ injected)
    rows = {}
    for name, opt, strength in (("L2", decayed_sgd(args.lr, 0.0), "weight_decay"),
                                ("L1", l1_decayed_sgd(args.lr, 0.0), "l1")):
        m = grid(seeds, **{strength: LAMBDAS})
        r = run.sweep(f"3.7 {name}", model, opt, data, m, epochs=epochs, loss="squared",
                      progress_every=epochs)
        w = np.abs(np.asarray(r.state.params["dense0"]["kernel"]).reshape(len(m), -1))
        step = args.lr * m.hparams[strength][:, None]  # one L1 step: subgradient descent hovers within it
        rows[name] = {"test": stats(m, r.final("test_loss"), [strength]),
                      "small": stats(m, (w <= step).mean(axis=1), [strength])}
    b1, b2 = (int(np.nanargmin(rows[n]["test"][0])) for n in ("L1", "L2"))
    plot = plot_panels([{"series": {n: (lam, *rows[n]["test"]) for n in rows}, "xlabel": "λ", "ylabel": "final test loss",
                         "xscale": "symlog", "yscale": "log", "title": "test loss"},
                        {"series": {n: (lam, *rows[n]["small"]) for n in rows}, "xlabel": "λ",
                         "ylabel": "fraction of weights with |w| ≤ ηλ", "xscale": "symlog", "title": "weights at 0"}],
                       run.out / "ex_3_7_3_l1_vs_l2.png", "§3.7 ex. 3: L1 vs L2 penalty")
    frac = lambda n, b: 100 * rows[n]["small"][0][b]
    out.append(answer(
        "§3.7.3", "What would the update equations look like if instead of ‖w‖² we used Σ|wᵢ| (L1)?",
        f"w ← w − η(∇loss + λ·sign(w)): a constant pull of ηλ toward 0, where L2's pull ηλw fades as w shrinks -- "
        f"so L1 drives weights to 0 (subgradient descent then hovers within one step ηλ of it) and L2 only shrinks "
        f"them. At L1's best λ = {lam[b1]:.3g} (test loss {rows['L1']['test'][0][b1]:.3g}), {frac('L1', b1):.0f}% of "
        f"the 200 weights end within ηλ = {args.lr * lam[b1]:.2g} of 0 under L1 and {frac('L2', b1):.0f}% under L2 "
        f"(test loss {rows['L2']['test'][0][b1]:.3g}); L2's best is λ = {lam[b2]:.3g} (test loss "
        f"{rows['L2']['test'][0][b2]:.3g}).", plot,
        lambdas=LAMBDAS, **{f"{n}_{k}_mean": v[0].tolist() for n in rows for k, v in rows[n].items()}))
    out.append(_frobenius(args))
    out.append(_map_is_ridge(run, data, model, args))
    return out


def _after_best(mean, std, best, lam) -> str:
    """What the test loss does beyond its minimum: rises, or stays within the seed-to-seed spread."""
    if best == len(lam) - 1:
        return "the largest λ of the grid"
    if mean[-1] - mean[best] <= max(std[best], std[-1]):
        return f"then stays within the seed spread: {mean[-1]:.3g} at λ={lam[-1]:.3g}"
    return f"then rises to {mean[-1]:.3g}"


def _frobenius(args):
    """§3.7.4: ½‖W‖_F² = ½ Σᵢⱼ wᵢⱼ² = ½ tr(WᵀW) -- what l2_penalty computes on a matrix -- and its gradient W."""
    rows, worst = [], 0.0
    for i, shape in enumerate([(3, 4), (200, 1), (64, 256)]):
        w = jax.random.normal(jax.random.key(args.seed + i), shape)
        params = {"dense0": {"kernel": w}}
        penalty, grad = float(l2_penalty(params)), jax.grad(l2_penalty)(params)["dense0"]["kernel"]
        wd = np.asarray(w, np.float64)
        trace, fro = 0.5 * float(np.trace(wd.T @ wd)), 0.5 * float(np.linalg.norm(wd, "fro") ** 2)
        gap = float(jnp.abs(grad - w).max())
        worst = max(worst, abs(penalty - trace) / trace, gap)
        rows.append([f"{shape[0]}×{shape[1]}", penalty, trace, fro, f"{gap:.1e}"])
    return answer(
        "§3.7.4", "Find the analogue of ‖w‖² = wᵀw for matrices (the Frobenius norm).",
        f"‖W‖_F² = Σᵢⱼ wᵢⱼ² = tr(WᵀW) (the sum of squared singular values), the matrix penalty weight decay uses on "
        f"every weight matrix; its gradient is 2W (W for ½‖W‖_F²). Checked: regjax's l2_penalty equals ½ tr(WᵀW) "
        f"in float64 to a relative {worst:.1e} and jax.grad of it is W exactly (table).",
        table=table(["W", "l2_penalty(W)", "½ tr(WᵀW)", "½‖W‖_F² (numpy)", "max abs(∇ − W)"], rows))


def _map_is_ridge(run, data, model, args):
    """§3.7.6: a Gaussian prior w ~ N(0, σ_w² I) with Gaussian noise σ makes the MAP estimate the ridge solution of
    mean ½(xᵀw + b − y)² + λ·½‖w‖² with λ = σ² / (n σ_w²). Checked: the engine's λ-penalized training (full
    batch, run to convergence) against the closed-form ridge."""
    lams = tiny(run, [1.0, 3.0, 10.0], [1.0])  # lr 0.05 is stable while 0.05·(λ + λ_max(XᵀX/n) ≈ 16) < 2
    epochs = tiny(run, 3000, 20)
    x, y = np.asarray(data[0]), np.asarray(data[1])
    members = grid([args.seed], lam=lams, lr=0.05)
    res = run.sweep("3.7 MAP", model, SCRATCH_SGD, data, members, epochs=epochs, batch_size=len(x), loss="squared",
                    progress_every=epochs)
    w = np.asarray(res.state.params["dense0"]["kernel"]).reshape(len(lams), -1)
    b = np.asarray(res.state.params["dense0"]["bias"]).reshape(len(lams))
    rows, worst = [], 0.0
    for i, lam in enumerate(lams):
        w_ridge, b_ridge = ridge_closed_form(x, y, lam)
        rel = float(np.linalg.norm(w[i] - w_ridge) / np.linalg.norm(w_ridge))
        worst = max(worst, rel)
        rows.append([lam, NOISE ** 2 / (len(x) * lam), float(np.linalg.norm(w_ridge)), rel, abs(float(b[i]) - b_ridge)])
    return answer(
        "§3.7.6", "How can the prior P(w) be identified with regularization (posterior ∝ likelihood × prior)?",
        f"−log P(w|x) = Σᵢ (yᵢ − xᵢᵀw − b)²/(2σ²) + ‖w‖²/(2σ_w²) + const for Gaussian noise σ and a Gaussian prior "
        f"N(0, σ_w² I): dividing by n/σ², the MAP estimate minimizes mean ½(xᵀw + b − y)² + λ·½‖w‖² with "
        f"λ = σ²/(n σ_w²) -- weight decay is a Gaussian prior (a Laplace prior gives L1). Checked on §3.7's problem "
        f"(n 20, d 200): full-batch gradient descent with the penalty ({epochs} epochs, lr 0.05) "
        + (f"lands on the closed-form ridge/MAP solution within a relative {worst:.1e}" if worst < 1e-2 else
           f"is still a relative {worst:.2g} from the closed-form ridge/MAP solution (not converged)")
        + f" for λ in {lams} (table: the prior variance each λ means for σ = {NOISE:g}).",
        table=table(["λ", "σ_w² = σ²/(nλ)", "‖w_MAP‖ (closed form)", "‖w − w_MAP‖/‖w_MAP‖ (engine)",
                     "abs(b − b_MAP)"], rows))


