"""Suite ``batch_norm``: scratch ``regjax.batch_norm`` vs ``flax.linen.BatchNorm``, forward + backward."""
from __future__ import annotations

from benchmarks.common import device_loop, interleaved, median, row, suite_result

SHAPES = {"dense (N, C)": (256, 120), "LeNet conv0 NHWC": (256, 28, 28, 6), "LeNet conv1 NHWC": (256, 10, 10, 16)}

METHOD = (
    "Training-mode batch norm, forward + backward: jax.value_and_grad of sum(BN(x) * r) with respect to x and "
    "(scale, bias), also returning the updated moving statistics. Scratch: regjax.batch_norm(momentum=0.9, "
    "eps=1e-5); Flax: flax.linen.BatchNorm(use_running_average=False, momentum=0.9, epsilon=1e-5) with "
    "mutable batch_stats. K different inputs per timed call inside one jitted lax.scan (no per-call dispatch), "
    "all loops round-robin after one compiling call each; time per input; ratio = speed-up over Flax (>1 = "
    "faster than Flax). Scratch BN takes the variance in two passes (mean, then mean of squared deviations: no "
    "cancellation); Flax's default (use_fast_variance) takes E[x^2] - E[x]^2 in one pass."
)


def _scratch(shape):
    import jax
    import jax.numpy as jnp

    from regjax import batch_norm, batch_norm_init

    params, state = batch_norm_init(shape[-1])

    def loss(params, x, r):
        y, new_state = batch_norm(x, params, state, train=True, momentum=0.9, eps=1e-5)
        return jnp.sum(y * r), new_state

    return params, jax.value_and_grad(loss, argnums=(0, 1), has_aux=True)


def _flax(shape):
    import jax
    import jax.numpy as jnp
    from flax import linen as nn

    bn = nn.BatchNorm(use_running_average=False, momentum=0.9, epsilon=1e-5)
    variables = bn.init(jax.random.key(0), jnp.zeros(shape))

    def loss(params, x, r):
        y, updates = bn.apply({"params": params, "batch_stats": variables["batch_stats"]}, x,
                              mutable=["batch_stats"])
        return jnp.sum(y * r), updates["batch_stats"]

    return variables["params"], jax.value_and_grad(loss, argnums=(0, 1), has_aux=True)


IMPLS = {"scratch regjax.batch_norm": _scratch, "flax.linen.BatchNorm": _flax}


def run(ctx):
    import jax

    steps, rounds = (2, 2) if ctx.quick else (20, 7)
    loops = {}
    for label, shape in SHAPES.items():
        if ctx.quick and label == "LeNet conv0 NHWC":
            continue  # the largest: its two compilations are most of a quick run's time
        kx, kr = jax.random.split(jax.random.key(0))
        xs = jax.random.normal(kx, (steps, *shape))
        r = jax.random.normal(kr, shape)
        for impl, make in IMPLS.items():
            params, vg = make(shape)
            loops[label, shape, impl] = device_loop(lambda consts, x, vg=vg: vg(consts[0], x, consts[1]),
                                                    (params, r), xs)
    per_input = {k: [t / steps for t in ts[1:]] for k, ts in interleaved(loops, rounds).items()}
    rows = []
    for (label, shape, impl), t in per_input.items():
        ref = median(per_input[label, shape, "flax.linen.BatchNorm"])
        rows.append(row(f"{label} {shape}: {impl}", median(t) * 1e6, "us", times=t,
                        ratios={"vs flax": ref / median(t)}))
    return suite_result(METHOD, rows, steps=steps)
