"""Engine changes proposed by the benchmarks, measured side by side with the current code (``prng`` and
``train_mlp`` suites). Each is written to be lifted into ``regjax`` as is.

1. ``dropout_bits`` (for ``regjax.dropout``): draw the mask as integers. ``regjax.dropout`` calls
   ``jax.random.bernoulli``, i.e. 32 random bits per unit turned into a float in [0, 1) and compared with
   ``keep_prob``. Here the bits are compared with an integer threshold instead, and with ``bits`` < 32 one 32-bit
   random word serves ``32 // bits`` units (JAX's own 8/16-bit ``random.bits`` still spends a full threefry
   evaluation per element under the default ``jax_threefry_partitionable``, so the packing is done by hand). The
   keep probability is quantised to ``threshold / 2**bits`` and kept units are scaled by its exact inverse, so
   ``E[dropout(x)] = x`` still holds; the drop rate actually used is off by at most ``2**-(bits+1)`` (bits=16:
   0.2 -> 0.199997; bits=8: 0.2 -> 0.19921875). The masks differ from ``regjax.dropout``'s for the same key (a
   new, equally reproducible stream).

2. ``make_epoch_gather_in_step`` (for ``regjax.engine.make_epoch``): shuffle indices, not the data. The current
   epoch gathers the whole shuffled training set into a (num_batches, batch, ...) copy before the scan (for
   Fashion-MNIST: 188 MB read and 188 MB written per epoch); here the scan carries only the index batches and
   each step gathers its own 256 rows, which then stay in cache for the step's matmul. (Adopted: the engine's
   ``make_epoch`` now gathers per step; this copy stays as the measured reference.)

3. ``unrolled_threefry_on_cpu`` (not for ``regjax``: it reaches into JAX): on the CPU, JAX lowers threefry2x32
   -- the random bits of every dropout mask and step key -- as a *rolled* loop of 5 iterations, whose
   loop-carried buffers XLA copies every iteration (the ``profile`` suite's 'copies'); on GPUs it uses the
   unrolled form. Registering the unrolled lowering for the CPU while an epoch is compiled gives the same bits
   (threefry is integer arithmetic) and removes the loop. It uses JAX-internal names, and registering it for
   real would change how every threefry in the process compiles -- hence a proposal for JAX, not a change here.
"""
from __future__ import annotations

import contextlib
from functools import partial

import jax
import jax.numpy as jnp

from regjax._checks import check_in_range, concrete_float
from regjax.data.batching import epoch_batches

__all__ = ["dropout_bits", "make_epoch_gather_in_step", "unrolled_threefry_on_cpu"]


def dropout_bits(x, rate, *, key=None, train: bool = True, bits: int = 32):
    """Inverted dropout with keep = (uniform ``bits``-bit integer) < round((1 - rate) * 2**bits)."""
    if bits not in (8, 16, 32):
        raise ValueError(f"bits must be 8, 16 or 32, got {bits!r}")
    check_in_range(rate, "rate", 0.0, 1.0)
    if not train or concrete_float(rate, "rate") == 0.0:
        return x
    x = jnp.asarray(x)
    levels = 2.0 ** bits
    # 2**32 itself does not fit in uint32: at bits=32 a (traced) rate 0 still drops with probability 6e-8
    top = levels if bits < 32 else levels - 256
    threshold = jnp.clip(jnp.round((1.0 - jnp.asarray(rate, jnp.float32)) * levels), 0.0, top)
    per_word = 32 // bits
    words = jax.random.bits(key, (-(-x.size // per_word),), jnp.uint32)
    if per_word > 1:
        shifts = jnp.arange(per_word, dtype=jnp.uint32) * bits
        words = ((words[:, None] >> shifts) & jnp.uint32(2 ** bits - 1)).reshape(-1)[:x.size]
    keep = words.reshape(x.shape) < threshold.astype(jnp.uint32)
    keep_prob = threshold / levels
    scale = jnp.where(keep_prob > 0, 1.0 / jnp.where(keep_prob > 0, keep_prob, 1.0), 0.0).astype(x.dtype)
    return jnp.where(keep, x * scale, jnp.zeros_like(x))


def make_epoch_gather_in_step(step, batch_size: int):
    """``make_epoch``'s contract (same batches, keys and metrics; ``state`` donated), gathering per step."""

    @partial(jax.jit, donate_argnums=(0,))
    def epoch(state, x, y, data_key, hparams):
        index_batches = epoch_batches(data_key, jnp.arange(x.shape[0]), y, batch_size)

        def body(s, batch):
            idx, yb, weight = batch
            return step(s, (jnp.take(x, idx, axis=0), yb, weight), hparams)

        state, metrics = jax.lax.scan(body, state, tuple(index_batches))
        return state, jax.tree_util.tree_map(jnp.sum, metrics)

    return epoch


@contextlib.contextmanager
def unrolled_threefry_on_cpu():
    """Within the block, programs *lowered* for the CPU get JAX's unrolled threefry2x32 (its GPU lowering)
    instead of the rolled loop; the CPU rule is restored on exit (compiled programs keep what they got)."""
    from jax._src.random import threefry2x32 as threefry  # JAX-internal: see the module docstring
    from jax.interpreters import mlir

    mlir.register_lowering(threefry.threefry2x32_p, threefry._threefry2x32_lowering_rule, platform="cpu")
    try:
        yield
    finally:
        mlir.register_lowering(threefry.threefry2x32_p, threefry._threefry2x32_cpu_lowering_rule, platform="cpu")
