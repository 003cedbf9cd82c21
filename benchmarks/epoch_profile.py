"""Suite ``profile``: where one engine epoch of the D2L dropout MLP spends its time, from a ``jax.profiler``
trace: every executed XLA operation (a CPU thunk, a GPU kernel) attributed to what it computes, and the
number of operations (kernel launches on a GPU) per SGD step.

Attribution reads the compiled epoch's optimized HLO: an operation that is a matrix product, or a fusion
containing one, is a matrix product; otherwise its JAX name stack (the HLO ``op_name`` metadata: e.g.
``jit(epoch)/jit(_shuffle)/sort``, ``.../jvp(jit(_bernoulli))/jit(_uniform)/...``, ``.../transpose(jvp())/...``)
decides -- the epoch's permutation, the dropout masks' random bits and step keys, the loss, the batch gather,
backward and forward elementwise work, the SGD update, the metrics -- and what is left is named by its opcode
(copies, loop control). Time is *self* time: a while loop's events exclude the operations run inside it, which
are attributed themselves.
"""
from __future__ import annotations

import collections
import gzip
import json
import re
from pathlib import Path

from benchmarks.common import row, suite_result, unavailable
from benchmarks.train_mlp import BATCH, engine_epochs, fashion_like

METHOD = (
    "One engine epoch (train_mlp's (a): make_epoch(make_step(mlp_model('scratch', 784, (256, 256), 10, "
    "(0.2, 0.5), 'normal'), None), 256), N = 60,000 uniform Fashion-MNIST-shaped examples; --quick 2,560) "
    "after two warm-up epochs, traced with jax.profiler.trace(create_perfetto_trace=True). Device events: the "
    "GPU kernels where the trace has a /device:GPU lane (its stream rows only), else the CPU runtime's XLA "
    "thunks (host dispatch events and zero-length 'end:' markers left out). Each event's self time (its "
    "duration minus the parts of events nested in it, per thread) is attributed through the compiled epoch's "
    "optimized HLO: matrix products (an op that is or fuses a dot/convolution/GEMM), else by the op's JAX name "
    "stack (module docstring): shuffle, dropout masks' random bits and step keys, loss, batch gather and scan "
    "slicing, backward elementwise, forward elementwise, SGD update, metrics; else copies, loop control, other. "
    "Shares are of the summed self time of all threads (on 2 cores XLA runs thunks in parallel, so the sum "
    "exceeds the epoch's wall time, reported beside it). 'ops per step' = device events / SGD steps (kernel "
    "launches on a GPU). The trace is kept when --trace-dir is given (perfetto_trace.json.gz opens in "
    "ui.perfetto.dev)."
)

MATMUL = "matrix products (forward, dW, dX)"
CATEGORIES = [  # (category, test on the operation's own op_name -- its JAX name stack); first match wins
    ("shuffle (the epoch's permutation)", lambda n: "jit(_shuffle)" in n or n.startswith("sort")),
    ("dropout masks: random bits and step keys", lambda n: any(k in n for k in ("_bernoulli", "_uniform", "threefry",
                                                                                 "random_bits"))),
    ("loss (softmax cross-entropy)", lambda n: any(k in n for k in ("take_along_axis", "log_softmax", "logsumexp",
                                                                    "softmax"))),
    ("batch gather and scan slicing", lambda n: any(k in n for k in ("gather", "dynamic_index_in_dim",
                                                                     "dynamic_slice", "dynamic-slice"))),
    ("backward elementwise (ReLU, dropout, bias gradients)", lambda n: "transpose(" in n),
    ("forward elementwise (bias, ReLU, dropout apply)", lambda n: "jvp(" in n),
    ("SGD update", lambda n: re.search(r"closed_call/(sub|mul)$", n) is not None),
    ("metrics", lambda n: "reduce_sum" in n or "argmax" in n or "reduce" in n),
    ("batch gather and scan slicing", lambda n: "jit(_take)" in n or "dynamic_update" in n),
]

def _instruction(line: str):
    """``(name, opcode)`` of an HLO instruction line, else ``None`` (the type may be a tuple with spaces)."""
    m = re.match(r"^\s*(?:ROOT\s+)?%?([\w.\-]+)\s*=\s*", line)
    if not m:
        return None
    rest = line[m.end():]
    if rest.startswith("("):  # a tuple type: skip to its closing parenthesis
        depth = 0
        for i, ch in enumerate(rest):
            depth += {"(": 1, ")": -1}.get(ch, 0)
            if depth == 0:
                rest = rest[i + 1:]
                break
    else:
        rest = rest.split(" ", 1)[1] if " " in rest else ""
    op = re.match(r"\s*([\w\-]+)\(", rest)
    return (m.group(1), op.group(1)) if op else None


def hlo_index(hlo_text: str) -> dict:
    """``{instruction name: (kind, op_name)}`` of an optimized HLO module: ``kind`` is ``'dot'`` for a matrix
    product or a fusion containing one, else the opcode; ``op_name`` the instruction's JAX name stack (a
    fusion's: its own, else the first of its fused instructions')."""
    computations, current, instrs = {}, None, {}
    for line in hlo_text.splitlines():
        head = re.match(r"^\s*(?:ENTRY\s+)?%?([\w.\-]+)\s.*\{\s*$", line)
        if head and "=" not in line.split("{")[0]:
            current = head.group(1)
            computations[current] = []
            continue
        parsed = _instruction(line)
        if parsed is None:
            continue
        name, opcode = parsed
        op_name = (re.findall(r'op_name="([^"]*)"', line) or [""])[0]
        gemm = opcode == "custom-call" and re.search(r"gemm|matmul|dot", line, re.I) is not None
        instrs[name] = (opcode, op_name, re.findall(r"(?:calls|body|condition|to_apply)=%?([\w.\-]+)", line), gemm)
        if current is not None:
            computations[current].append(name)
    index = {}
    for name, (opcode, op_name, called, gemm) in instrs.items():
        inner = [instrs[i] for comp in called for i in computations.get(comp, [])]
        fused = inner if opcode == "fusion" else []  # a loop's body is its own operations, timed by themselves
        is_dot = gemm or opcode in ("dot", "convolution") or any(o in ("dot", "convolution") or g
                                                                for o, _, _, g in fused)
        op_name = op_name or next((n for _, n, _, _ in inner if n), "")
        index[name] = ("dot" if is_dot else opcode, op_name)
    return index


def categorize(event_name: str, index: dict) -> str:
    """The category of a device event named ``event_name`` (a thunk's HLO name; a GPU kernel's name or its
    ``hlo_op``, where XLA writes ``loop_add_fusion_3`` for the HLO's ``loop_add_fusion.3``)."""
    key = event_name.split(":")[0].strip()
    if key not in index:
        key = re.sub(r"_(\d+)$", r".\1", key)
    if key not in index:
        if re.search(r"gemm|xmma|cutlass|cublas|sgemm", event_name, re.I):
            return MATMUL
        return "other (not in the HLO: runtime, copies)"
    kind, op_name = index[key]
    if kind == "dot":
        return MATMUL
    name = op_name.split("jit(epoch)/", 1)[-1]
    for category, test in CATEGORIES:
        if test(name):
            return category
    return {"copy": "copies (loop-carried buffers)", "while": "loop control"}.get(kind, f"other: {kind}")


def device_events(trace: dict) -> tuple:
    """``(events, lane)``: complete events of the GPU lanes if any (only their stream rows, where the trace names
    them: not the 'XLA Ops' / 'XLA Modules' summary rows), else the CPU host's XLA thunks. A GPU kernel event
    that records its ``hlo_op`` is renamed to it."""
    events = trace["traceEvents"] if isinstance(trace, dict) else trace
    meta = [e for e in events if e.get("ph") == "M"]
    names = {e.get("pid"): (e.get("args") or {}).get("name", "") for e in meta if e.get("name") == "process_name"}
    threads = {(e.get("pid"), e.get("tid")): (e.get("args") or {}).get("name", "") for e in meta
               if e.get("name") == "thread_name"}
    timed = [e for e in events if "dur" in e and "ts" in e and e.get("name")]
    gpu = {pid for pid, name in names.items() if "/device:GPU" in name}
    if gpu:
        streams = {lane for lane, name in threads.items() if lane[0] in gpu and "stream" in name.lower()}
        kernels = [e for e in timed if e.get("pid") in gpu and (not streams or (e.get("pid"), e.get("tid")) in streams)]
        return [{**e, "name": (e.get("args") or {}).get("hlo_op") or e["name"]} for e in kernels], "GPU kernels"
    skip = re.compile(r"^\$|ThunkExecutor|ThreadPool|TfrtCpu|PjRt|Execute|PjitFunction|DevicePut|ParseArguments|"
                      r"Handle inputs|Allocate", re.I)
    return [e for e in timed if not skip.search(e["name"]) and not e["name"].startswith("end: ")], "CPU thunks"


def self_times(events: list) -> list:
    """``[(name, self seconds)]``: each event's duration minus that of the events nested directly in it (per
    process and thread)."""
    out = []
    close = lambda done, child: out.append((done["name"], max(0.0, done["dur"] - child) / 1e6))  # noqa: E731
    by_lane = collections.defaultdict(list)
    for e in events:
        by_lane[(e.get("pid"), e.get("tid"))].append(e)
    for lane in by_lane.values():
        lane.sort(key=lambda e: (e["ts"], -e["dur"]))
        stack = []  # [event, time of its children inside it]
        for e in lane:
            while stack and e["ts"] >= stack[-1][0]["ts"] + stack[-1][0]["dur"]:
                close(*stack.pop())
            if stack:  # only the part of the child inside its parent (events may overlap)
                parent = stack[-1][0]
                stack[-1][1] += min(e["ts"] + e["dur"], parent["ts"] + parent["dur"]) - e["ts"]
            stack.append([e, 0.0])
        for done, child in stack:
            close(done, child)
    return out


def run(ctx):
    import time

    import jax

    n = 2560 if ctx.quick else 60000
    x, y = fashion_like(n)
    one = engine_epochs(x, y)
    for _ in range(2):
        one()
    folder = Path(ctx.trace_dir) if ctx.trace_dir else ctx.tmp / "trace"
    with jax.profiler.trace(str(folder), create_perfetto_trace=True):
        t0 = time.perf_counter()
        one()
        wall = time.perf_counter() - t0
    traces = sorted(folder.rglob("perfetto_trace.json.gz"), key=lambda p: p.stat().st_mtime)
    if not traces:
        return unavailable(METHOD, "the profiler wrote no perfetto trace")
    trace = json.loads(gzip.decompress(traces[-1].read_bytes()))
    events, lane = device_events(trace)
    index = hlo_index(one.lower().compile().as_text())  # the very program the epochs ran
    steps = -(-n // BATCH)
    per_category = collections.Counter()
    count = collections.Counter()
    for name, seconds in self_times(events):
        category = categorize(name, index)
        per_category[category] += seconds
        count[category] += 1
    total = sum(per_category.values())
    rows = [row(f"traced epoch ({lane})", wall, "s", note=f"{len(events)} events, {len(events) / steps:.1f} ops "
                                                         f"per step ({steps} steps); events' self time "
                                                         f"{total:.3f} s")]
    for category, seconds in per_category.most_common():
        rows.append(row(f"epoch share: {category}", 100 * seconds / total if total else None, "%",
                        note=f"{seconds * 1e3:.1f} ms, {count[category] / steps:.1f} ops per step"))
    return suite_result(METHOD, rows, lane=lane, steps=steps, ops_per_step=len(events) / steps,
                        seconds_by_category=dict(per_category), events_by_category=dict(count),
                        trace=str(traces[-1]) if ctx.trace_dir else None)
