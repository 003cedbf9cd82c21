"""Many devices and many hosts with JAX's own sharding: a ``Mesh`` with one ``'data'`` axis, GSPMD under
``jit``, and ``jax.distributed`` across processes. There is no second training loop and no hand-written
communication: ``fit(..., data_mesh=data_mesh(8))`` runs the same compiled step with every batch split along the
mesh's ``'data'`` axis, parameters / optimizer state / BatchNorm state replicated, and XLA inserting the
all-reduces (gradients, and the batch statistics of BatchNorm, which are therefore those of the *global* batch:
synced BN for the scratch and the Flax models alike). A sweep takes the other split: ``sweep(...,
member_mesh=member_mesh(8))`` puts whole members on each device (the ``'members'`` axis), the data replicated.

Data placement: the training set is replicated on every device (these datasets are small: 60,000 x 784
floats is 188 MB) and each epoch's shuffle and batching run inside the compiled epoch, as on one device; a
sharding constraint then gives each device its slice of every global batch. Each process loads the same data
and places only its own devices' copies (``jax.make_array_from_callback``: no cross-process transfer).

What stays identical across device counts: the batches, the dropout masks (JAX's ``jax_threefry_partitionable``
mode, on by default since JAX 0.5, makes random bits independent of how the output is sharded; ``data_mesh``
checks it) and therefore the whole computation -- up to the order of floating-point additions in the
cross-device reductions (gradient and BN-statistic sums are computed per device, then summed), so results on N
devices equal the one-device results to float tolerance, not bit for bit. On a fixed device count a run is
bit-reproducible (and so is resuming it).
"""
from __future__ import annotations

from typing import Any, Optional

import jax
import numpy as np
from jax.sharding import Mesh, NamedSharding
from jax.sharding import PartitionSpec as P

__all__ = ["DATA_AXIS", "MEMBER_AXIS", "data_mesh", "member_mesh", "replicate", "batch_sharding",
           "initialize_distributed"]

DATA_AXIS = "data"
MEMBER_AXIS = "members"


def _devices(devices: Any) -> list:
    """``devices`` as a list: an int takes the first N of ``jax.devices()``, ``None`` all of them."""
    available = jax.devices()
    if devices is None:
        return available
    if isinstance(devices, (int, np.integer)):
        if not 1 <= devices <= len(available):
            raise ValueError(f"devices must be in [1, {len(available)}] ({len(available)} {available[0].platform} "
                             f"device(s) available), got {devices}")
        return available[:devices]
    return list(devices)


def data_mesh(devices: Any = None) -> Mesh:
    """A 1-D mesh with the ``'data'`` axis over ``devices`` (an int: the first N of ``jax.devices()``; a list;
    ``None``: all of them), for ``fit(data_mesh=)``: every batch is split over it."""
    if not jax.config.jax_threefry_partitionable:
        raise RuntimeError("jax_threefry_partitionable is off: dropout masks would depend on the device count; "
                           "turn it on with jax.config.update('jax_threefry_partitionable', True)")
    return Mesh(np.asarray(_devices(devices)), (DATA_AXIS,))


def member_mesh(devices: Any = None) -> Mesh:
    """A 1-D mesh with the ``'members'`` axis over ``devices`` (as ``data_mesh``), for ``sweep(member_mesh=)``:
    the members of a sweep are split over it, each device training whole members on replicated data."""
    return Mesh(np.asarray(_devices(devices)), (MEMBER_AXIS,))


def replicate(tree: Any, mesh: Mesh) -> Any:
    """Place every leaf (host or device array, PRNG keys included) fully replicated on ``mesh``; in a
    multi-process run each process fills only its own devices, from its own copy of the value."""
    sharding = NamedSharding(mesh, P())

    def put(leaf):
        if isinstance(leaf, jax.Array) and jax.dtypes.issubdtype(leaf.dtype, jax.dtypes.prng_key):
            return jax.random.wrap_key_data(put(jax.random.key_data(leaf)), impl=jax.random.key_impl(leaf))
        host = np.asarray(leaf)
        return jax.make_array_from_callback(host.shape, sharding, lambda index: host[index])

    return jax.tree_util.tree_map(put, tree)


def batch_sharding(mesh: Mesh) -> NamedSharding:
    """Arrays of batches ``(num_batches, batch, ...)``: the batch axis split over the ``'data'`` axis."""
    return NamedSharding(mesh, P(None, DATA_AXIS))


def initialize_distributed(coordinator: Optional[str] = None, num_processes: Optional[int] = None,
                           process_id: Optional[int] = None) -> None:
    """``jax.distributed.initialize``: with no arguments on clusters JAX detects (SLURM, TPU pods, Open MPI,
    ...), or explicitly. Must run before anything else touches JAX's devices. On CPU the cross-process
    collectives use gloo (``jax_cpu_collectives_implementation``)."""
    # Only the CPU client reads this (its default has no cross-process collectives); GPUs/TPUs use their own.
    jax.config.update("jax_cpu_collectives_implementation", "gloo")
    jax.distributed.initialize(coordinator_address=coordinator, num_processes=num_processes, process_id=process_id)
