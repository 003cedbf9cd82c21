"""§5.3 forward/backward propagation on the section's model -- z = W1 x (+ b1), h = ReLU(z), o = W2 h,
J = cross-entropy(o, y) + λ/2 (‖W1‖² + ‖W2‖²): 1 the gradient's shape, 2 the hand-derived backward pass with a
bias against jax.grad, 3 memory for training vs prediction (formula vs XLA's memory analysis of the compiled
programs), 4 the cost of second derivatives (grad vs Hessian-vector product vs full Hessian, timed on this CPU)."""
from __future__ import annotations

import jax
import jax.numpy as jnp
from jax.flatten_util import ravel_pytree

from regjax.engine import peak_bytes

from .common import answer, in_book_order, table, timed, tiny

SECTION, TITLE = "5.3", "Forward propagation, backward propagation, and computational graphs"
LAM = 1e-3


def _init(key, d, h, q, bias=False):
    k1, k2 = jax.random.split(key)
    p = {"W1": jax.random.normal(k1, (h, d)) * 0.1, "W2": jax.random.normal(k2, (q, h)) * 0.1}
    if bias:
        p["b1"] = jnp.zeros((h,))
    return p


def _objective(p, x, y):
    """J = mean cross-entropy + λ/2 (‖W1‖² + ‖W2‖²), batch rows x (n, d), labels y (n,); the bias is not decayed."""
    z = x @ p["W1"].T + p.get("b1", 0.0)
    o = jax.nn.relu(z) @ p["W2"].T
    loss = -jnp.mean(jnp.take_along_axis(jax.nn.log_softmax(o), y[:, None], 1))
    return loss + LAM / 2 * (jnp.sum(p["W1"] ** 2) + jnp.sum(p["W2"] ** 2))


def _manual_grads(p, x, y):
    """The backward equations of §5.3 with the bias b1 added (batch-mean loss)."""
    n = x.shape[0]
    z = x @ p["W1"].T + p["b1"]
    h = jax.nn.relu(z)
    o = h @ p["W2"].T
    d_o = (jax.nn.softmax(o) - jax.nn.one_hot(y, o.shape[1])) / n      # ∂J/∂o
    d_h = d_o @ p["W2"]                                                # ∂J/∂h = W2ᵀ ∂J/∂o
    d_z = d_h * (z > 0)                                                # ∂J/∂z = ∂J/∂h ⊙ φ'(z)
    return {"W2": d_o.T @ h + LAM * p["W2"], "W1": d_z.T @ x + LAM * p["W1"], "b1": d_z.sum(0)}


def section(run):
    key = jax.random.key(run.args.seed)
    out = []

    # 1. gradient shape
    n, m = 3, 5
    xm = jax.random.normal(key, (n, m))
    a = jax.random.normal(jax.random.fold_in(key, 1), (m, 4))
    g = jax.grad(lambda X: jnp.sum(jnp.tanh(X @ a)))(xm)
    out.append(answer(
        "§5.3.1", "Inputs X to a scalar function f are n × m matrices: dimensionality of ∂f/∂X?",
        f"∂f/∂X has the shape of X, n × m: one partial derivative ∂f/∂X_ij per entry. jax.grad of "
        f"f(X) = Σ tanh(XA) at a {n}×{m} X returns shape {tuple(g.shape)}.",
        table=table(["X", "∂f/∂X (jax.grad)"], [[f"{n}×{m}", "×".join(map(str, g.shape))]]),
        grad_shape=list(g.shape)))

    # 2. backward equations with a bias
    d, h, q, nb = 20, 16, 3, 32
    kx, ky, kp = jax.random.split(jax.random.fold_in(key, 2), 3)
    x, y = jax.random.normal(kx, (nb, d)), jax.random.randint(ky, (nb,), 0, q)
    p = _init(kp, d, h, q, bias=True)
    p["b1"] = jax.random.normal(jax.random.fold_in(kp, 3), (h,)) * 0.1
    auto, hand = jax.grad(_objective)(p, x, y), _manual_grads(p, x, y)
    errs = {k: float(jnp.abs(auto[k] - hand[k]).max() / jnp.abs(auto[k]).max()) for k in ("W1", "b1", "W2")}
    out.append(answer(
        "§5.3.2", "Add a bias to the hidden layer: computational graph, forward and backward equations.",
        "Graph: x, W1 → [matmul] → (+ b1) → z → [φ] → h; h, W2 → [matmul] → o; o, y → [l] → L; W1, W2 → [‖·‖², "
        "λ/2] → s; L, s → [+] → J (b1 feeds only z, not s). Forward: z = W1x + b1, h = φ(z), o = W2h, L = l(o, y), "
        "s = λ/2(‖W1‖² + ‖W2‖²), J = L + s. Backward: ∂J/∂o = ∂l/∂o, ∂J/∂W2 = (∂J/∂o)hᵀ + λW2, ∂J/∂h = W2ᵀ∂J/∂o, "
        "∂J/∂z = ∂J/∂h ⊙ φ'(z), ∂J/∂W1 = (∂J/∂z)xᵀ + λW1, ∂J/∂b1 = ∂J/∂z (summed over the batch). These "
        f"hand-written equations match jax.grad (ReLU, softmax cross-entropy, batch {nb}) to a relative "
        f"{max(errs.values()):.1e}.",
        table=table(["parameter", "max abs(hand − jax.grad) / max abs(jax.grad)"], [[k, f"{v:.1e}"] for k, v in
                                                                             errs.items()]),
        relative_errors=errs))

    # 3. memory: formula vs XLA for training and prediction
    d, h, q = 784, 256, 10
    params = _init(key, d, h, q)
    n_params = h * d + q * h

    def train_step(p, x, y):
        g = jax.grad(_objective)(p, x, y)
        return jax.tree_util.tree_map(lambda w, gw: w - 0.1 * gw, p, g)

    def predict(p, x):
        return jax.nn.relu(x @ p["W1"].T) @ p["W2"].T

    rows, data = [], []
    for nb in tiny(run, [1, 64, 256, 1024], [1, 64]):
        xs, ys = jnp.zeros((nb, d)), jnp.zeros((nb,), jnp.int32)
        tr = jax.jit(train_step).lower(params, xs, ys).compile()
        pr = jax.jit(predict).lower(params, xs).compile()
        xla_tr, xla_pr = peak_bytes(tr), peak_bytes(pr)
        temp = tr.memory_analysis().temp_size_in_bytes / (4 * nb)  # temporaries of the training step per example
        # formula (float32): training holds params, gradients/new params, the input batch and labels, and the
        # activations kept for the backward pass (z, h: n·h each; o and its gradient: n·q each);
        # prediction holds params, the input and one layer's activations at a time (z/h in place: n·h; o: n·q)
        f_tr = 4 * (2 * n_params + nb * d + 2 * nb * h + 2 * nb * q) + 4 * nb
        f_pr = 4 * (n_params + nb * d + nb * h + nb * q)
        rows.append([nb, f"{f_tr / 2**20:.2f}", "n/a" if xla_tr is None else f"{xla_tr / 2**20:.2f}",
                     f"{f_pr / 2**20:.2f}", "n/a" if xla_pr is None else f"{xla_pr / 2**20:.2f}", f"{temp:.0f}"])
        data.append({"batch": nb, "formula_train": f_tr, "xla_train": xla_tr, "formula_predict": f_pr,
                     "xla_predict": xla_pr, "train_temp_floats_per_example": temp})
    last = data[-1]
    ratio = lambda a, b: "n/a" if a is None or b is None else f"{a / b:.2f}"
    out.append(answer(
        "§5.3.3", "Compute the memory footprint for training and prediction in the model of this section.",
        f"With d = {d}, h = {h}, q = {q} (no bias): {n_params} parameters = {4 * n_params / 2**20:.2f} MiB in float32. "
        f"Training a batch of n needs the parameters, their gradients (or the updated copy), the input (n·d) and the "
        f"intermediates kept for backpropagation -- z and h (n·h each) and o with its gradient (n·q each): "
        f"4·(2·{n_params} + n·({d} + 2·{h} + 2·{q})) bytes. Prediction keeps no intermediates for later: "
        f"4·({n_params} + n·({d} + {h} + {q})). At n = {last['batch']} the formula gives "
        f"{last['formula_train'] / 2**20:.2f} MiB (training) vs {last['formula_predict'] / 2**20:.2f} MiB "
        f"(prediction); XLA's memory analysis of the compiled programs (arguments + outputs + temporaries, CPU) says "
        f"{ratio(last['xla_train'], 2**20)} vs {ratio(last['xla_predict'], 2**20)} MiB: XLA/formula = "
        f"{ratio(last['xla_train'], last['formula_train'])} (training), "
        f"{ratio(last['xla_predict'], last['formula_predict'])} (prediction). XLA keeps "
        f"{last['train_temp_floats_per_example']:.0f} "
        f"floats of temporaries per example in training (≈ {last['train_temp_floats_per_example'] / h:.1f}·h) "
        f"against the formula's 2h + 2q = {2 * h + 2 * q}; the memory analysis gives only this total, not which "
        f"buffers (z, h, ∂J/∂h, the n·q logits and their gradient) XLA's buffer assignment keeps alive at once. "
        f"The parameter terms dominate "
        f"at small n, the activation terms at large n, where training needs ≈ "
        f"{ratio(last['xla_train'], last['xla_predict'])}x the memory of prediction.",
        table=table(["batch n", "train, formula MiB", "train, XLA MiB", "predict, formula MiB", "predict, XLA MiB",
                     "train temporaries per example (floats)"],
                    rows), memory=data))

    # 4. second derivatives: cost of grad vs Hessian-vector product vs full Hessian
    d, h, q, nb = 20, 16, 3, tiny(run, 1024, 64)
    p0 = _init(jax.random.fold_in(key, 4), d, h, q, bias=True)
    flat, unravel = ravel_pytree(p0)
    x, y = jax.random.normal(kx, (nb, d)), jax.random.randint(ky, (nb,), 0, q)
    obj = lambda w: _objective(unravel(w), x, y)
    v = jax.random.normal(jax.random.fold_in(key, 5), flat.shape)
    fns = {"gradient": jax.jit(jax.grad(obj)),
           "Hessian-vector product": jax.jit(lambda w: jax.jvp(jax.grad(obj), (w,), (v,))[1]),
           "full Hessian": jax.jit(jax.hessian(obj))}
    repeats = tiny(run, 20, 3)
    times = {k: timed(lambda f=f: jax.block_until_ready(f(flat)), repeats // (2 if k == "full Hessian" else 1), best=True)
             for k, f in fns.items()}
    P = flat.size
    base = times["gradient"]
    out.append(answer(
        "§5.3.4", "Second derivatives: what happens to the computational graph; how long should it take?",
        f"Differentiating the backward graph adds a second pass through forward + backward (forward-over-reverse): "
        f"a Hessian-vector product costs a small constant times a gradient, while the full Hessian needs one such "
        f"pass per parameter (P = {P}) and P² = {P * P} entries of memory. Measured on this CPU (2 shared cores, "
        f"batch {nb}, fastest of {repeats} calls, {repeats // 2} for the full Hessian): gradient {base * 1e6:.0f} µs, Hessian-vector product "
        f"{times['Hessian-vector product'] * 1e6:.0f} µs ({times['Hessian-vector product'] / base:.1f}x), full "
        f"Hessian {times['full Hessian'] * 1e6:.0f} µs ({times['full Hessian'] / base:.0f}x), vs P × one "
        f"Hessian-vector product = "
        f"{P * times['Hessian-vector product'] * 1e3:.1f} ms: jax.hessian (forward-over-reverse, the P directions "
        f"vmapped) takes {times['full Hessian'] / (P * times['Hessian-vector product']):.2g}x that -- on this "
        f"small model it {'saves' if times['full Hessian'] < P * times['Hessian-vector product'] else 'does not save'} "
        f"time over P separate products, and either way the cost grows like P times a gradient.",
        table=table(["computation", "fastest time (µs)", "× gradient"],
                    [[k, f"{t * 1e6:.0f}", f"{t / base:.1f}"] for k, t in times.items()]),
        seconds=times, num_params=P))
    return in_book_order(out)
