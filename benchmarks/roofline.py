"""Suite ``roofline``: the time of exactly the matrix products one SGD step of the D2L MLP needs.

For layers i = 0..L-1 with input a_i (B x fan_in), weight W_i and output gradient g_i (B x fan_out):
forward a_i @ W_i, weight gradient a_i^T @ g_i for every layer, input gradient g_i @ W_i^T for every layer but
the first (the data needs no gradient). FLOPs per example: 2 * (2 * sum fan_in*fan_out + sum_{i>0} fan_in*fan_out)
= 1,211,392 for 784-256-256-10 (not 3 x forward = 1,612,800).
"""
from __future__ import annotations

from benchmarks.common import interleaved, median, row, suite_result
from benchmarks.train_mlp import BATCH, SIZES, engine_epochs, fashion_like

METHOD = (
    "The eight matrix products of one SGD step at batch 256 with the real step's data flow and nothing else: "
    "forward a_{i+1} = a_i @ W_i (no activation, no dropout), output gradient g_L = logits, input gradients "
    "g_i = g_{i+1} @ W_i^T for every layer but the first, weight gradients a_i^T @ g_i, then W -= 1e-6 dW "
    "(the update's 0.27 MFLOP/step is <0.1% and the real step has it too). K steps run inside one jitted "
    "lax.scan over K fresh 256-example batches of the train_mlp data (so, as in training, only the batch comes "
    "from memory; activations and weights stay in cache; no per-call dispatch; every product feeds the next "
    "step, so nothing can be hoisted). Roofline examples/s = K*256 / median time: the best this device's matmul "
    "kernels allow for this model. FLOPs counted by formula and cross-checked with XLA's cost analysis of the "
    "products. '% of roofline' divides (a) regjax's scan engine examples/s by it, the engine's epochs (on "
    "train_mlp's data) measured here, interleaved with the roofline's calls so both see the same load."
)


def flops_per_example(sizes=SIZES) -> dict:
    layers = list(zip(sizes[:-1], sizes[1:]))
    forward = sum(2 * a * b for a, b in layers)
    dx = sum(2 * a * b for a, b in layers[1:])
    return {"forward": forward, "dW": forward, "dX": dx, "total": 2 * forward + dx}


def sgd_matmuls(weights, x):
    """The products of one step, chained like the real step: returns the weight gradients."""
    acts = [x]
    for w in weights[:-1]:
        acts.append(acts[-1] @ w)
    grads = [acts[-1] @ weights[-1]]  # the logits stand in for dL/dlogits
    for w in reversed(weights[1:]):
        grads.insert(0, grads[0] @ w.T)
    return [a.T @ g for a, g in zip(acts, grads)]


def _train_matmuls(weights, batches):
    import jax

    def body(ws, x):
        return [w - 1e-6 * dw for w, dw in zip(ws, sgd_matmuls(ws, x))], None

    return jax.lax.scan(body, weights, batches)[0]


def _xla_flops(weights, x) -> float | None:
    import jax

    try:
        cost = jax.jit(sgd_matmuls).lower(weights, x).compile().cost_analysis()
        cost = cost[0] if isinstance(cost, (list, tuple)) else cost
        return float(cost["flops"]) / BATCH
    except Exception:  # cost analysis is best-effort and backend-dependent
        return None


def run(ctx):
    import jax

    steps, rounds, n = (4, 2, 2560) if ctx.quick else (60, 7, 60000)
    keys = jax.random.split(jax.random.key(0), len(SIZES) - 1)
    weights = [jax.random.normal(k, (a, b)) * 0.01 for k, a, b in zip(keys, SIZES[:-1], SIZES[1:])]
    x, y = fashion_like(n)
    batches = jax.device_put(x[:steps * BATCH].reshape(steps, BATCH, SIZES[0]))
    loop = jax.jit(_train_matmuls)
    times = interleaved({"roofline": lambda: loop(weights, batches), "engine": engine_epochs(x, y)}, rounds)
    times = {k: t[1:] for k, t in times.items()}
    flops = flops_per_example()
    best = steps * BATCH / median(times["roofline"])
    engine = n / median(times["engine"])
    xla = _xla_flops(weights, batches[0])
    xla_note = f"{xla:,.0f}" if xla else "n/a"
    rows = [
        row("FLOPs per example (fwd + dW + dX but first)", flops["total"], "FLOP",
            note=f"forward {flops['forward']:,} + dW {flops['dW']:,} + dX {flops['dX']:,}; 3 x forward would be "
                 f"{3 * flops['forward']:,}; XLA cost analysis {xla_note}"),
        row("matmul roofline", best, "examples/s", times=times["roofline"],
            note=f"{best * flops['total'] / 1e9:.1f} GFLOP/s; step {median(times['roofline']) / steps * 1e3:.2f} ms"),
        row("(a) regjax scan engine", engine, "examples/s", times=times["engine"],
            ratios={"of roofline": engine / best},
            note=f"{engine / best:.0%} of the roofline; {engine * flops['total'] / 1e9:.1f} GFLOP/s in matmuls"),
    ]
    return suite_result(METHOD, rows, flops_per_example=flops, xla_flops_per_example=xla, steps=steps, times_s=times,
                        roofline_examples_per_s=best, engine_examples_per_s=engine,
                        percent_of_roofline=100 * engine / best)
