"""How many sweep members fit in memory: XLA's measured peak of the compiled program against the free memory.

Unless a chunk size is given, the sweep program is compiled for all N members and ``memory_analysis()`` gives
its peak bytes (arguments + outputs − aliased + temporaries); if that exceeds the budget -- ``memory_fraction`` of
the free memory (``Device.memory_stats()`` on GPU/TPU: ``bytes_limit − bytes_in_use``; on CPU the free physical
memory, ``os.sysconf('SC_AVPHYS_PAGES') × SC_PAGE_SIZE``) -- the bytes per member are ``(peak − shared data
bytes) / N`` and the chunk is as many members as fit in ``budget − shared data − the full stacked state``.
``plan_chunks`` does that for a sweep's ``Loop``: it compiles, measures, and cuts the members into chunks.
"""
from __future__ import annotations

import os
from typing import Any, Optional, Tuple

import jax
import numpy as np

from regjax.base import PyTree, TrainState
from regjax.engine.history import History
from regjax.engine.loop import Chunk, Loop, compile_loop
from regjax.engine.program import Program

__all__ = ["available_memory", "tree_bytes", "peak_bytes", "plan_chunk_size", "plan_chunks"]


def available_memory(device: Any = None) -> Tuple[int, str]:
    """``(bytes, source)``: free memory of ``device`` (default: the first device). Accelerators report it
    through ``Device.memory_stats()`` (``bytes_limit − bytes_in_use``); the CPU backend does not, so it is the
    machine's free physical memory from ``os.sysconf``."""
    device = device or jax.devices()[0]
    stats = None
    try:
        stats = device.memory_stats()
    except Exception:  # some backends raise instead of returning None
        stats = None
    if stats and "bytes_limit" in stats:
        return int(stats["bytes_limit"] - stats.get("bytes_in_use", 0)), f"{device.platform} memory_stats"
    return int(os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")), "os.sysconf SC_AVPHYS_PAGES"


def tree_bytes(tree: PyTree) -> int:
    """Bytes held by the leaves of ``tree`` (PRNG keys as their key data)."""
    total = 0
    for leaf in jax.tree_util.tree_leaves(tree):
        if jax.dtypes.issubdtype(leaf.dtype, jax.dtypes.prng_key):
            leaf = jax.random.key_data(leaf)
        total += int(np.prod(leaf.shape)) * leaf.dtype.itemsize
    return total


def peak_bytes(*compiled: Any) -> Optional[int]:
    """XLA's peak bytes of compiled programs that run one after another: the largest one's (``None`` where the
    backend does not say)."""
    peaks = []
    for program in compiled:
        try:
            m = program.memory_analysis()
        except Exception:
            return None
        if m is None:
            return None
        peaks.append(int(m.argument_size_in_bytes + m.output_size_in_bytes - m.alias_size_in_bytes +
                         m.temp_size_in_bytes))
    return max(peaks)


def plan_chunk_size(peak_bytes: int, num_members: int, shared_bytes: int, state_bytes: int, budget: int) -> int:
    """Members per chunk for a program measured at ``peak_bytes`` with all ``num_members`` members:
    ``num_members`` if it fits ``budget``; else ``(budget − shared − state) // bytes_per_member`` with
    ``bytes_per_member = (peak − shared) / num_members``, at least 1 (and the caller learns it may not fit)."""
    if peak_bytes <= budget:
        return num_members
    per_member = max(1.0, (peak_bytes - shared_bytes) / num_members)
    return int(min(num_members, max(1, (budget - shared_bytes - state_bytes) // per_member)))


def plan_chunks(loop: Loop, state: TrainState, history: History, start_epoch: int, chunk_size: Optional[int],
                memory_fraction: float, memory_budget: Optional[int], chunk_size_from: str = "chunk_size"
                ) -> Tuple[Program, float, int, dict]:
    """Compile the sweep's loop, choosing the chunk size from XLA's measured peak unless ``chunk_size`` is set
    (module docstring; ``chunk_size_from`` says by what: the argument, the history a sweep continues, a member
    mesh); returns ``(compiled Program, compile seconds, chunk_size, memory record)`` and sets ``loop.chunks`` (the
    last chunk padded with copies of its last member, so one compiled program serves every chunk)."""
    n = history.num_members
    if chunk_size is None:
        compiled, seconds = compile_loop(loop, state, history, start_epoch)
        peak = peak_bytes(*compiled)
        shared, state_bytes = tree_bytes(loop.data), tree_bytes(state)
        given = memory_budget is not None
        budget, source = (memory_budget, "memory_budget") if given else available_memory()
        budget = int(budget * (1 if given else memory_fraction))
        memory = {"peak_bytes_all_members": peak, "shared_data_bytes": shared, "state_bytes": state_bytes,
                  "budget_bytes": budget, "budget_source": source,
                  "bytes_per_member": None if peak is None else (peak - shared) / n}
        chunk_size = n if peak is None else plan_chunk_size(peak, n, shared, state_bytes, budget)
    else:
        chunk_size, memory, seconds = min(chunk_size, n), {"chunk_size_from": chunk_size_from}, 0.0
    if chunk_size < n or "chunk_size_from" in memory:
        if chunk_size < n:
            loop.chunks = [Chunk(np.minimum(np.arange(lo, lo + chunk_size), min(lo + chunk_size, n) - 1),
                                 min(chunk_size, n - lo)) for lo in range(0, n, chunk_size)]
        compiled, more = compile_loop(loop, state, history, start_epoch)
        seconds += more
        memory["peak_bytes_per_chunk"] = peak_bytes(*compiled)
    memory["chunk_size"] = chunk_size
    return compiled, seconds, chunk_size, memory
