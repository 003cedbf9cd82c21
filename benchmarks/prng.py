"""Suite ``prng``: what dropout's random bits cost, per PRNG implementation and per way of drawing the mask.

Masks alone (both layers' (256, 256) masks of one step, on a device loop) and a whole training epoch of
regjax's scan engine, for JAX's PRNG implementations and for the integer-threshold variants proposed in
``benchmarks/proposals.py``.
"""
from __future__ import annotations

import contextlib
from functools import partial

from benchmarks.common import device_loop, interleaved, median, row, suite_result
from benchmarks.proposals import dropout_bits
from benchmarks.train_mlp import BATCH, RATES, SIZES, engine_epochs, fashion_like

REPRODUCIBILITY = {
    "threefry2x32": "the default: counter-based; the same bits on CPU, GPU and TPU, under any sharding (with "
                    "jax_threefry_partitionable, default since JAX 0.5) and under vmap over keys -- the "
                    "reproducible choice.",
    "philox2x32": "counter-based like threefry (same reproducibility guarantees per JAX's docs), different "
                  "stream.",
    "rbg": "bits from XLA's RngBitGenerator (key derivation split/fold_in still threefry): bits differ across "
           "backends (CPU vs GPU vs TPU) and may change with XLA versions; under vmap over keys the whole batch "
           "is drawn from the first key; identical across shardings only without the TPU SPMD flag. Not "
           "empirically tested for randomness quality (BigCrush).",
    "unsafe_rbg": "as rbg, and key derivation (split, fold_in) also uses RBG, whose quality is not well "
                  "understood -- per-step keys from fold_in(key, step) lose threefry's guarantees.",
}

METHOD = (
    "Keys are typed keys jax.random.key(0, impl=NAME); every key of a run (parameters, shuffles, per-step and "
    "per-layer dropout keys via fold_in) derives from that root, so this measures exactly what setting "
    "jax.config.update('jax_default_prng_impl', NAME) would, without a subprocess per implementation. 'masks' = "
    "dropout of both hidden layers' (256, 256) activations (rates 0.2, 0.5) with per-step fold_in keys, K steps "
    "inside one jitted lax.scan (outputs summed), time per step. 'epoch' = a full regjax scan-engine epoch of "
    "the D2L MLP (train_mlp's data and model) with the dropout implementation swapped in "
    "(regjax.models.scratch.dropout patched while tracing), median of E epochs. After one compiling call each, "
    "the mask loops, and then the epochs, run round-robin across configurations (load changes hit all alike). "
    "Ratio "
    "= speed-up over threefry2x32 + regjax.dropout. Mask variants: regjax.dropout (jax.random.bernoulli: 32-bit "
    "uniform floats compared with keep_prob); 'int threshold 32/16/8 bits' (benchmarks/proposals.py: "
    "random uint32 words, 32//bits units per word, compared with round(keep_prob * 2^bits))."
)


def _impls():
    import jax

    names = ["threefry2x32", "philox2x32", "rbg", "unsafe_rbg"]
    out = []
    for name in names:
        try:
            jax.random.key(0, impl=name)
            out.append(name)
        except (ValueError, KeyError, TypeError):  # philox is newer than some JAX versions
            pass
    return out


def _variants():
    from regjax.dropout import dropout

    return {"regjax.dropout (uniform floats)": dropout,
            **{f"int threshold {b} bits": partial(dropout_bits, bits=b) for b in (32, 16, 8)}}


@contextlib.contextmanager
def dropout_in_models(fn):
    """Make the scratch models call ``fn`` as their dropout while inside (trace and compile in here)."""
    from regjax.models import scratch

    saved = scratch.dropout
    scratch.dropout = fn
    try:
        yield
    finally:
        scratch.dropout = saved


def _with_dropout(dropout_fn, make, *args, **kwargs):
    """``make(*args, **kwargs)``'s callable, built and called with ``dropout_fn`` as the models' dropout."""
    with dropout_in_models(dropout_fn):
        fn = make(*args, **kwargs)

    def call():
        with dropout_in_models(dropout_fn):
            return fn()

    return call


def _masks(fn, key, steps):
    import jax
    import jax.numpy as jnp

    h = jax.random.uniform(jax.random.key(1), (BATCH, SIZES[1]))

    def one_step(consts, step):
        k, h = consts
        k = jax.random.fold_in(k, step)
        return [fn(h, r, key=jax.random.fold_in(k, i), train=True) for i, r in enumerate(RATES)]

    return device_loop(one_step, (key, h), jnp.arange(steps))


def _keep_fraction(fn, key) -> float:
    import jax
    import jax.numpy as jnp

    x = jnp.ones((1024, 1024))
    return float(jnp.mean(jax.jit(lambda k: fn(x, RATES[1], key=k, train=True))(key) != 0))


def run(ctx):
    import jax

    mask_steps, repeats = (20, 3) if ctx.quick else (200, 7)
    n, timed = (2560, 2) if ctx.quick else (60000, 5)
    impls, variants = _impls(), _variants()
    current = "regjax.dropout (uniform floats)"
    # every implementation with the current dropout, every variant with the default implementation
    configs = [(impl, current) for impl in impls] + [("threefry2x32", v) for v in variants if v != current]
    mask_configs = [(impl, v) for impl in impls for v in variants]
    epoch_configs = configs
    if ctx.quick:  # a few of each: the wiring, not the figures
        epoch_configs = [configs[0], ("threefry2x32", "int threshold 16 bits")]
        mask_configs = epoch_configs + [("rbg", current)]
    rows = []
    keep = {(impl, v): _keep_fraction(variants[v], jax.random.key(3, impl=impl)) for impl, v in mask_configs}
    mask_t = interleaved({(impl, v): _masks(variants[v], jax.random.key(0, impl=impl), mask_steps)
                          for impl, v in mask_configs}, repeats)
    mask_t = {k: [s / mask_steps for s in t[1:]] for k, t in mask_t.items()}
    ref = median(mask_t["threefry2x32", current])
    for (impl, vname), t in mask_t.items():
        rows.append(row(f"masks: {impl} + {vname}", median(t) * 1e6, "us/step", times=t,
                        ratios={"vs threefry+regjax.dropout": ref / median(t)},
                        note=f"keep fraction at rate 0.5: {keep[impl, vname]:.4f}"))

    x, y = fashion_like(n)
    epochs = {(impl, v): _with_dropout(variants[v], engine_epochs, x, y, key=jax.random.key(0, impl=impl))
              for impl, v in epoch_configs}
    epochs["threefry2x32", "no dropout (rates 0)"] = engine_epochs(x, y, rates=(0.0, 0.0))
    epoch_t = {k: t[1:] for k, t in interleaved(epochs, timed).items()}
    ref = median(epoch_t["threefry2x32", current])
    steps = -(-n // BATCH)
    for (impl, vname), t in epoch_t.items():
        rows.append(row(f"epoch: {impl} + {vname}", n / median(t), "examples/s", times=t,
                        ratios={"vs threefry+regjax.dropout": ref / median(t)},
                        note=f"step {median(t) / steps * 1e3:.2f} ms"))
    rows += [row(f"reproducibility: {impl}", None, "", note=REPRODUCIBILITY[impl]) for impl in impls]
    return suite_result(METHOD, rows, impls=impls, reproducibility={i: REPRODUCIBILITY[i] for i in impls},
                        mask_steps=mask_steps, examples=n, timed_epochs=timed,
                        keep_fraction_at_rate_0_5={f"{i} + {v}": k for (i, v), k in keep.items()})
