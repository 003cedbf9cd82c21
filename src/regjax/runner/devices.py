"""Devices and processes of a run: multi-process initialisation (``--coordinator``/``--distributed``) before
anything touches JAX's devices, then how many devices this run trains on (``--devices``)."""
from __future__ import annotations

import argparse
import dataclasses
import functools
import sys
from typing import Callable, NoReturn, Optional

from jax.sharding import Mesh

__all__ = ["Devices", "setup_devices"]


@dataclasses.dataclass(frozen=True)
class Devices:
    """``count`` devices (of all processes) and whether this process is the ``primary`` one (process 0, the
    only one that writes). A single run splits each batch over them (``data_mesh``), a sweep its members
    (``member_mesh``); both are ``None`` on one device of one process."""

    count: int = 1
    processes: int = 1
    primary: bool = True

    @property
    def parallel(self) -> bool:
        return self.count > 1 or self.processes > 1

    @functools.cached_property
    def data_mesh(self) -> Optional[Mesh]:
        from regjax.parallel import data_mesh

        return data_mesh(self.count) if self.parallel else None

    @functools.cached_property
    def member_mesh(self) -> Optional[Mesh]:
        from regjax.parallel import member_mesh

        return member_mesh(self.count) if self.parallel else None


def setup_devices(args: argparse.Namespace, refuse: Callable[[str], NoReturn]) -> Devices:
    """Initialise multi-process JAX if asked, then check ``--devices`` against what is there (``refuse``
    exits 2 with the message)."""
    explicit = [args.coordinator, args.num_processes, args.process_id]
    if any(v is not None for v in explicit) and not all(v is not None for v in explicit):
        refuse("--coordinator, --num-processes and --process-id go together")
    if args.distributed and args.coordinator:
        refuse("--distributed detects the cluster itself: give it or --coordinator, not both")
    if args.distributed or args.coordinator:
        from regjax.parallel import initialize_distributed

        if args.coordinator and args.process_id >= args.num_processes:
            refuse(f"--process-id {args.process_id} must be < --num-processes {args.num_processes}")
        if args.coordinator:
            print(f"process {args.process_id}: waiting for {args.num_processes} processes at {args.coordinator} ...",
                  file=sys.stderr, flush=True)
        try:
            initialize_distributed(args.coordinator, args.num_processes, args.process_id)
        except Exception as err:  # no cluster detected, bad address, ...
            refuse(f"multi-process initialisation failed: {type(err).__name__}: {err}")
    import jax

    processes = jax.process_count()
    devices = args.devices if args.devices is not None else ("all" if processes > 1 else 1)
    if processes > 1 and devices != "all":
        refuse("a multi-process run trains on all devices of all processes: leave --devices out or say 'all'")
    available = jax.device_count()
    if devices != "all" and devices > available:
        hint = (" (on CPU, XLA_FLAGS=--xla_force_host_platform_device_count=N set before starting simulates N)"
                if jax.default_backend() == "cpu" else "")
        refuse(f"--devices {devices}: only {available} {jax.default_backend()} device(s) available{hint}")
    return Devices(available if devices == "all" else devices, processes, jax.process_index() == 0)
