"""Suite ``train_mlp``: the D2L dropout MLP trained four ways in one process, on Fashion-MNIST-shaped data.

(a) regjax's scan engine (``make_epoch(make_step(model, scratch_sgd(lr)), 256)``: one jitted call per epoch);
(b) the same step jitted alone and called once per batch from Python, fed host NumPy batches (d2l's JAX style);
(c) PyTorch eager, d2l style; (d) the same PyTorch step under ``torch.compile`` (``benchmarks/torch_mlp.py``).
Plus a breakdown of (a): without dropout masks, the shuffle+gather alone, and the test-set evaluation.
"""
from __future__ import annotations

import numpy as np

from benchmarks.common import interleaved, median, row, suite_result, torch_or_none

SIZES, RATES, BATCH, LR = (784, 256, 256, 10), (0.2, 0.5), 256, 0.5

METHOD = (
    "Data: uniform [0,1) float32 images (N x 784) and uniform labels 0..9 (Fashion-MNIST-shaped; N = 60000, "
    "--quick fewer). Model 784-256-256-10, ReLU, dropout 0.2/0.5, N(0, 0.01^2) weights, SGD lr 0.5, batch 256 "
    "(last partial batch kept). Each variant trains 1 + E epochs from a fresh state in one process: the first "
    "epoch includes tracing/compilation; then the E timed epochs run round-robin across the variants and the "
    "breakdown parts, so that load changes on a shared machine hit all alike. 'examples/s' is N / median of "
    "the E timed epochs (each ended by block_until_ready or a host read of the metrics); '<E> epochs incl. "
    "compile' is the sum of the first E epochs, 'after warm-up' the sum of the last E. (e) = (a) training the "
    "flax.nnx version of the model (regjax.models.nnx.DropoutMLP through nnx_model: nnx.split/merge, same "
    "scratch SGD step); (f) the idiomatic NNX loop: the stateful module, nnx.Optimizer(model, optax.sgd(0.5), "
    "wrt=nnx.Param), an nnx.jit step per host NumPy batch, dropout keys from the nnx.Rngs stream the dropout "
    "layers keep. (a) regjax scan "
    "engine: make_epoch(make_step(mlp_model("
    "'scratch', ...), scratch_sgd(0.5)), 256) -- shuffle, batch and lax.scan on the device, state donated. (b) "
    "jit(make_step(...)) called per batch from a Python loop over host NumPy batches (host permutation + "
    "slicing; the 96-example last batch compiles a second shape), no host sync per step. (c) PyTorch eager, "
    "d2l style (benchmarks/torch_mlp.py): DataLoader(TensorDataset, batch 256, shuffle=True, num_workers=0), "
    "Python loop, nn.Sequential with Dropout, CrossEntropyLoss, torch.optim.SGD; metrics summed on the device "
    "and read once per epoch. (d) the same step function under torch.compile (default mode). (c1), CPU "
    "only: (c) with 1 torch thread, for context -- with other processes on the cores, OpenMP's 2-thread "
    "barriers stall and (c) can fall far below its idle speed; (c1) shows how much. Ratios are "
    "speed-ups of the row over (c) and (d) from this same run (>1 = faster). torch runs with as many threads "
    "as JAX's CPU backend (one per available core). Breakdown rows time parts of (a) in isolation; the "
    "proposal rows are (a) with make_epoch replaced by benchmarks/proposals.py make_epoch_gather_in_step, "
    "and (a) compiled inside proposals.unrolled_threefry_on_cpu (JAX's unrolled threefry lowering); full runs only."
)


def fashion_like(n: int, seed: int = 0):
    rng = np.random.default_rng(seed)
    return rng.random((n, SIZES[0]), dtype=np.float32), rng.integers(0, SIZES[-1], n).astype(np.int32)


def _model(rates=RATES, impl="scratch"):
    from regjax.models.adapters import mlp_model

    return mlp_model(impl, SIZES[0], SIZES[1:-1], SIZES[-1], rates, "normal")


def engine_epochs(x, y, *, key=None, rates=RATES, epoch_maker=None, impl="scratch"):
    """(a) A callable that trains one more epoch with regjax's scan engine on each call (``epoch_maker``:
    an alternative to ``regjax.engine.make_epoch`` with its signature; ``impl='nnx'``: (e), the same engine
    training the flax.nnx version of the model through its functional bridge)."""
    import jax
    import jax.numpy as jnp

    from regjax.engine import init_state, make_epoch, make_step
    from regjax.optim import scratch_sgd

    key = jax.random.key(0) if key is None else key
    model = _model(rates, impl)
    optimizer = scratch_sgd(LR)
    epoch = (epoch_maker or make_epoch)(make_step(model, optimizer), BATCH)
    state = init_state(model, optimizer, key)
    hparams = {"lr": jnp.float32(LR)}
    data_key = jax.random.fold_in(key, 2)
    x, y = jax.device_put(x), jax.device_put(y)
    count = 0

    def one():
        nonlocal state, count
        state, metrics = epoch(state, x, y, jax.random.fold_in(data_key, count), hparams)
        count += 1
        return jax.block_until_ready(metrics)

    one.lower = lambda: epoch.lower(state, x, y, jax.random.fold_in(data_key, count), hparams)  # the next call's
    return one


def nnx_loop_epochs(x, y):
    """(f) A callable that trains one more epoch the idiomatic flax.nnx way: the stateful module,
    ``nnx.Optimizer(model, optax.sgd(lr), wrt=nnx.Param)``, an ``nnx.jit`` train step called per host batch
    (permutation and slicing in NumPy), dropout keys from the ``nnx.Rngs`` stream the dropout layers keep."""
    import jax
    import optax
    from flax import nnx

    from regjax.models.nnx import DropoutMLP

    model = DropoutMLP(SIZES[0], SIZES[1:-1], SIZES[-1], RATES, "normal", rngs=nnx.Rngs(params=0),
                       dropout_rngs=nnx.Rngs(dropout=1))
    optimizer = nnx.Optimizer(model, optax.sgd(LR), wrt=nnx.Param)
    rng = np.random.default_rng(0)

    @nnx.jit
    def train_step(model, optimizer, xb, yb):
        def loss_fn(model):
            return optax.softmax_cross_entropy_with_integer_labels(model(xb), yb).mean()

        loss, grads = nnx.value_and_grad(loss_fn)(model)
        optimizer.update(model, grads)
        return loss

    def one():
        order = rng.permutation(len(x))
        for i in range(0, len(x), BATCH):
            idx = order[i:i + BATCH]
            loss = train_step(model, optimizer, x[idx], y[idx])
        return jax.block_until_ready(loss)

    return one


def jit_loop_epochs(x, y):
    """(b) A callable that trains one more epoch with jit(step) per host batch (d2l's JAX style)."""
    import jax
    import jax.numpy as jnp

    from regjax.engine import init_state, make_step
    from regjax.optim import scratch_sgd

    model = _model()
    optimizer = scratch_sgd(LR)
    step = jax.jit(make_step(model, optimizer), donate_argnums=(0,))
    state = init_state(model, optimizer, jax.random.key(0))
    hparams = {"lr": jnp.float32(LR)}
    rng = np.random.default_rng(0)

    def one():
        nonlocal state
        order = rng.permutation(len(x))
        for i in range(0, len(x), BATCH):
            idx = order[i:i + BATCH]
            state, _ = step(state, (x[idx], y[idx], np.ones(len(idx), np.float32)), hparams)
        return state

    return one


def torch_epochs(x, y, *, compile: bool, device: str, threads=None):
    """(c)/(d) A callable that trains one more epoch of the d2l-style PyTorch loop (with ``threads`` threads
    during its epochs, if given)."""
    import torch

    from benchmarks import torch_mlp

    torch.manual_seed(0)
    net = torch_mlp.make_net(SIZES[0], SIZES[1:-1], SIZES[-1], RATES).to(device)
    step = torch_mlp.make_step(net, LR, compile=compile)
    data = torch_mlp.loader(torch.from_numpy(x), torch.from_numpy(y.astype(np.int64)), BATCH, shuffle=True)

    def one():
        saved = torch.get_num_threads()
        torch.set_num_threads(threads or saved)
        try:
            return torch_mlp.train_epoch(net, step, data, device)  # reads the metrics: synchronised
        finally:
            torch.set_num_threads(saved)

    return one


def run(ctx):
    n, timed = (2560, 2) if ctx.quick else (60000, 10)
    x, y = fashion_like(n)
    variants = {"(a) regjax scan engine": lambda: engine_epochs(x, y),
                "(b) jit step per host batch": lambda: jit_loop_epochs(x, y),
                "(e) regjax scan engine, flax.nnx model": lambda: engine_epochs(x, y, impl="nnx"),
                "(f) idiomatic flax.nnx loop (nnx.Optimizer, nnx.jit step per batch)": lambda: nnx_loop_epochs(x, y)}
    skipped = {}
    if torch_or_none() is None:
        skipped["(c) torch eager"] = skipped["(d) torch.compile"] = "skipped: torch not installed"
    else:
        variants["(c) torch eager"] = lambda: torch_epochs(x, y, compile=False, device=ctx.torch_device)
        if ctx.threads > 1 and ctx.torch_device == "cpu" and not ctx.quick:
            # context, not a peer: on a shared CPU, OpenMP threads stall on cores other processes use
            variants["(c1) torch eager, 1 thread"] = lambda: torch_epochs(x, y, compile=False, device="cpu",
                                                                           threads=1)
        if ctx.quick:
            skipped["(d) torch.compile"] = "skipped in --quick (compiling takes ~30 s on CPU)"
        else:
            variants["(d) torch.compile"] = lambda: torch_epochs(x, y, compile=True, device=ctx.torch_device)
    parts = _engine_parts(ctx, x, y)
    times = interleaved({**{k: make() for k, make in variants.items()}, **parts}, timed)
    parts = {k: times.pop(k)[1:] for k in parts}

    speed = {name: n / median(t[1:]) for name, t in times.items()}
    first_epochs = {name: n / sum(t[:timed]) for name, t in times.items()}  # as a speed, for the ratios
    peers = [p for p in ("(c) torch eager", "(d) torch.compile", "(c1) torch eager, 1 thread") if p in times]

    def speedups(name, table):
        return {f"vs {p.split()[0]}": table[name] / table[p] for p in peers}

    rows = []
    for name, t in times.items():
        steady = t[1:]
        rows += [row(f"{name}: examples/s", speed[name], "examples/s", times=steady, ratios=speedups(name, speed),
                     note=f"step {median(steady) / -(-n // BATCH) * 1e3:.2f} ms"),
                 row(f"{name}: {timed} epochs incl. compile", sum(t[:timed]), "s", times=t,
                     ratios=speedups(name, first_epochs)),
                 row(f"{name}: {timed} epochs after warm-up", sum(steady), "s", times=steady)]
    rows += [row(name, None, "", note=why) for name, why in skipped.items()]
    rows += _engine_breakdown(n, median(times["(a) regjax scan engine"][1:]), parts)
    return suite_result(METHOD, rows, examples=n, timed_epochs=timed, steps_per_epoch=-(-n // BATCH),
                        examples_per_s=speed, epoch_times_s=times, breakdown_times_s=parts)


def _engine_parts(ctx, x, y) -> dict:
    """Callables timing parts of (a) alone -- an epoch without dropout masks, the shuffle+gather, the
    permutation, the test-set evaluation -- and (a) with the per-step gather of benchmarks/proposals.py."""
    import jax
    import jax.numpy as jnp

    from benchmarks.proposals import make_epoch_gather_in_step
    from regjax.data.batching import epoch_batches
    from regjax.engine import make_evaluate

    xd, yd = jax.device_put(x), jax.device_put(y)
    gather = jax.jit(lambda k: epoch_batches(k, xd, yd, BATCH))
    permutation = jax.jit(lambda k: jax.random.permutation(k, len(x)))
    xt, yt = fashion_like(1000 if ctx.quick else 10000, seed=1)
    model = _model()
    params, ms = model.init(jax.random.key(0))
    evaluate = make_evaluate(model)
    return {"no dropout": engine_epochs(x, y, rates=(0.0, 0.0)),
            **({} if ctx.quick else {  # proposals: full runs only (each is a compile; tested on their own)
                "gather in step": engine_epochs(x, y, epoch_maker=make_epoch_gather_in_step),
                "unrolled threefry": _compiled_unrolled(x, y)}),
            "shuffle + gather": lambda: gather(jax.random.key(1)),
            "permutation": lambda: permutation(jax.random.key(1)),
            f"evaluate {len(xt)}": lambda: evaluate(params, ms, jnp.asarray(xt), jnp.asarray(yt), {})}


def _compiled_unrolled(x, y):
    """(a) compiled with the unrolled threefry lowering (benchmarks/proposals.py): its first epoch, which
    compiles, runs inside the block; later calls reuse that executable."""
    from benchmarks.proposals import unrolled_threefry_on_cpu

    one = engine_epochs(x, y)
    with unrolled_threefry_on_cpu():
        one()
    return one


def _engine_breakdown(n, epoch, parts):
    share = lambda t: f"{median(t) / epoch:.0%} of an (a) epoch"  # noqa: E731
    evaluate = next(k for k in parts if k.startswith("evaluate"))
    return [
        row("(a) breakdown: epoch without dropout (rates 0)", n / median(parts["no dropout"]), "examples/s",
            times=parts["no dropout"], note=f"dropout masks cost {1 - median(parts['no dropout']) / epoch:.0%} "
                                            "of the epoch"),
        row("(a) breakdown: shuffle + gather (epoch_batches)", median(parts["shuffle + gather"]), "s/epoch",
            times=parts["shuffle + gather"], note=share(parts["shuffle + gather"])),
        row("(a) breakdown: permutation alone", median(parts["permutation"]), "s/epoch",
            times=parts["permutation"], note=share(parts["permutation"])),
        row(f"(a) breakdown: {evaluate} test examples", median(parts[evaluate]), "s", times=parts[evaluate],
            note=f"fit() runs it after every epoch: {share(parts[evaluate])}"),
    ] + [row(f"(a) proposal: {label}", n / median(parts[key]), "examples/s", times=parts[key],
             ratios={"vs (a)": epoch / median(parts[key])}, note=f"benchmarks/proposals.py {name}")
         for key, label, name in (
             ("gather in step", "gather each batch inside the scan step", "make_epoch_gather_in_step"),
             ("unrolled threefry", "threefry's unrolled lowering on the CPU (same bits)", "unrolled_threefry_on_cpu"))
         if key in parts]
