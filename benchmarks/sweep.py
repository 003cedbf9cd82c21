"""Suite ``sweep``: many configurations trained as ONE vmapped program (``regjax.engine.sweep``) against the same
configurations trained one after another, side by side in one run; and members/s against the member count.
"""
from __future__ import annotations

from benchmarks.common import median, row, suite_result
from benchmarks.train_mlp import fashion_like

METHOD = (
    "Three ways to train the same members (hyperparameters x seeds), timed in turn, round after round (so a "
    "load change hits all alike): (v) regjax.engine.sweep -- every member in one compiled program, jax.vmap "
    "over the member axis; (a) regjax.engine.train_sequentially -- the very single-member program a sweep "
    "vmaps, compiled once and called member after member from Python through the same epoch driver (the fair "
    "best case of a loop); (b) regjax.engine.fit_loop -- one fit call per member (the natural path; the first "
    "call compiles, the others find the program cached). Every way evaluates the test set after each epoch "
    "and fetches each epoch's metrics. 'train': (v) the sweep's own epoch and evaluation times, (a) the loop "
    "after compiling, (b) the wall minus the compile times fit reports (so it includes each call's state "
    "initialisation and checks: the price of the natural path). 'wall': the whole call; the first round's "
    "includes compilation (and the vmapped initialiser's), later rounds find the programs cached. Ratios: the "
    "sweep's speed-up over the row, on the median train time and on the median wall of the rounds after the "
    "first (--quick: of its one round). Workloads: 'weight decay' = D2L §3.7 (linear regression, d 200, n_train 20, "
    "n_test 100, batch 5, scratch SGD lr 0.003, lambda/2 ||w||^2), 16 lambdas x 8 seeds = 128 members, 100 "
    "epochs; 'dropout MLP' = D2L §5.6's 784-256-256-10 MLP (dropout 0.2/0.5, scratch SGD lr 0.5, batch 256) "
    "with an L2 penalty, 4 lambdas x 4 seeds = 16 members, 2 epochs on 10,000 uniform Fashion-MNIST-shaped "
    "examples (2,000 test). Peak bytes per member: XLA's memory analysis of the compiled sweep (the sweep's "
    "measured chunk planning: (peak - shared data) / members). Scaling rows: one sweep per member count N "
    "(1, 2, 4, ..., 128 for weight decay over 20 epochs; 1, 2, 4, 8, 16 for the MLP over 1 epoch), each "
    "compiled for its N, then timed R times: member-epochs per second of training (compile excluded) -- flat "
    "where one member already keeps the cores busy. --quick: fewer members, epochs and rounds, and the three "
    "ways on the weight-decay workload only."
)

WD_LAMBDAS = [0.0] + [3.0 * 10 ** (j / 4) for j in range(-8, 7)]  # experiments/sweep.py's grid


def _workloads(quick: bool) -> dict:
    """``{name: (model, optimizer, data, members, fit kwargs, epochs)}``."""
    from regjax.engine import grid
    from regjax.models.adapters import scratch_mlp
    import jax

    from regjax.data import seed_keys, weight_decay_data
    from regjax.models.adapters import scratch_linreg
    from regjax.optim import scratch_sgd

    data = weight_decay_data(seed_keys(0)[0], 20, 100, 200)  # D2L §3.7's problem, as experiments/weight_decay.py
    linear = scratch_linreg(200, weight_init=jax.nn.initializers.normal(1.0))
    lams, seeds = (WD_LAMBDAS[::8], 2) if quick else (WD_LAMBDAS, 8)
    n, n_test, mlp_lams, mlp_seeds = (512, 256, [0.0], 2) if quick else (10000, 2000, [0, 1e-4, 1e-3, 1e-2], 4)
    x, y = fashion_like(n)
    xt, yt = fashion_like(n_test, seed=1)
    mlp = scratch_mlp(784, (256, 256), 10, (0.2, 0.5), "normal")
    return {
        "weight decay": (linear, scratch_sgd(0.003), data, grid(range(seeds), lam=lams, lr=0.003),
                         {"batch_size": 5, "loss": "squared"}, 3 if quick else 100),
        "dropout MLP": (mlp, scratch_sgd(0.5), (x, y, xt, yt), grid(range(mlp_seeds), lam=mlp_lams, lr=0.5),
                        {"batch_size": 256}, 1 if quick else 2),
    }


def _three_ways(model, optimizer, data, members, kwargs, epochs, rounds) -> dict:
    """``{way: [{'wall_s', 'compile_s', 'train_s'} per round]}`` and the sweep's memory record."""
    import time

    from regjax.engine import fit_loop, sweep, train_sequentially

    runs = {"(v) vmapped sweep": [], "(a) compiled program in a loop": [], "(b) loop of fit calls": []}
    memory = None
    for _ in range(rounds):
        t0 = time.perf_counter()
        result = sweep(model, optimizer, data, members, epochs=epochs, **kwargs)
        wall = time.perf_counter() - t0
        runs["(v) vmapped sweep"].append({"wall_s": wall, "compile_s": result.history.compile_time_s,
                                          "train_s": result.history.run_time_s})
        memory = memory or result.memory
        t0 = time.perf_counter()
        _, seq = train_sequentially(model, optimizer, data, members, epochs=epochs, **kwargs)
        runs["(a) compiled program in a loop"].append({**seq, "wall_s": time.perf_counter() - t0})
        runs["(b) loop of fit calls"].append(fit_loop(model, optimizer, data, members, epochs=epochs, **kwargs))
    return {"runs": runs, "memory": memory}


def _comparison_rows(name, members, epochs, measured) -> list:
    runs, memory = measured["runs"], measured["memory"] or {}

    def warm_wall(rs):
        return median([r["wall_s"] for r in (rs[1:] or rs)])

    sweep_runs = runs["(v) vmapped sweep"]
    sweep_train, sweep_wall = median([r["train_s"] for r in sweep_runs]), warm_wall(sweep_runs)
    per_member = memory.get("bytes_per_member")
    rows = []
    for way, rs in runs.items():
        train = [r["train_s"] for r in rs]
        ratios = None if way.startswith("(v)") else {"sweep speed-up, train": median(train) / sweep_train,
                                                    "sweep speed-up, wall": warm_wall(rs) / sweep_wall}
        note = (f"wall {warm_wall(rs):.2f} s; first round's wall {rs[0]['wall_s']:.2f} s (compile "
                f"{rs[0]['compile_s']:.2f} s)")
        if way.startswith("(v)"):
            note += f"; {_peak_note(per_member)}, chunk {memory.get('chunk_size')}"
        rows.append(row(f"{name}, {len(members)} members x {epochs} epochs: {way}, train", median(train), "s",
                        times=train, ratios=ratios, note=note))
    return rows


def _peak_note(per_member) -> str:
    """XLA's peak bytes less the shared data, per member; XLA's analysis can come out below the data's size
    (buffers it counts elsewhere), which says nothing per member."""
    if per_member is None or per_member < 0:
        return "peak per member: n/a (XLA's peak below the shared data's size)"
    return f"peak {per_member / 2**20:.2f} MiB per member"


def _scaling(name, model, optimizer, data, members_for, kwargs, epochs, counts, rounds) -> tuple:
    """Member-epochs/s of training against the member count (one compiled sweep per count)."""
    from regjax.engine import sweep

    rows, record = [], {}
    base = None
    for n in counts:
        members = members_for(n)
        trains, peak = [], None
        for _ in range(rounds + 1):  # the first call compiles for this count
            result = sweep(model, optimizer, data, members, epochs=epochs, **kwargs)
            trains.append(result.history.run_time_s)
            peak = peak or (result.memory or {}).get("bytes_per_member")
        t = trains[1:]
        rate = n * epochs / median(t)
        base = base or rate
        record[n] = {"train_s": t, "member_epochs_per_s": rate, "bytes_per_member": peak}
        rows.append(row(f"{name} scaling: {n} member(s)", rate, "member-epochs/s", times=t,
                        ratios={"vs 1 member": rate / base},
                        note=f"{median(t) / epochs * 1e3:.1f} ms per epoch of all members; {_peak_note(peak)}"))
    return rows, record


def run(ctx):
    from regjax.engine import grid

    rounds = 1 if ctx.quick else 3
    rows, record = [], {}
    workloads = _workloads(ctx.quick)
    for name, (model, optimizer, data, members, kwargs, epochs) in workloads.items():
        if ctx.quick and name != "weight decay":  # --quick: one workload proves the three ways' wiring
            continue
        measured = _three_ways(model, optimizer, data, members, kwargs, epochs, rounds)
        record[name] = {"members": len(members), "epochs": epochs, **measured}
        rows += _comparison_rows(name, members, epochs, measured)

    model, optimizer, data, _, kwargs, _ = workloads["weight decay"]
    counts = [1, 4] if ctx.quick else [1, 2, 4, 8, 16, 32, 64, 128]
    wd_rows, record["weight decay scaling"] = _scaling(
        "weight decay", model, optimizer, data, lambda n: grid(range(n), lam=3.0, lr=0.003), kwargs,
        2 if ctx.quick else 20, counts, rounds)
    model, optimizer, data, _, kwargs, _ = workloads["dropout MLP"]
    mlp_counts = [1, 2] if ctx.quick else [1, 2, 4, 8, 16]
    mlp_rows, record["dropout MLP scaling"] = _scaling(
        "dropout MLP", model, optimizer, data, lambda n: grid(range(n), lam=0.0, lr=0.5), kwargs, 1, mlp_counts,
        rounds)
    rows += wd_rows + mlp_rows
    return suite_result(METHOD, rows, measurements=record)
