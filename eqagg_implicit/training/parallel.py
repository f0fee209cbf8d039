"""Data-parallel training: one device mesh, replicated parameters, batches split by rows.

The mesh has a single axis, "data". Parameters and optimiser state are replicated on every
device, and each batch leaf is split along its leading axis, so every device computes the
loss of its rows and `jax.jit` inserts the all-reduce of the gradients. With several hosts,
each process contributes the rows of its own devices to the global batch.
"""

import logging

import jax
import numpy as np
from jax.sharding import Mesh, NamedSharding, PartitionSpec
from jaxtyping import PyTree

logger = logging.getLogger(__name__)

DATA_AXIS = "data"


def initialize_distributed(coordinator_address: str, num_processes: int, process_id: int) -> None:
    """Connect this process to a multi-host JAX job; call before any other JAX work.

    **Arguments:**

    - `coordinator_address`: "host:port" of process 0, reachable from every host.
    - `num_processes`: the number of processes (usually one per host).
    - `process_id`: this process's index in [0, num_processes).

    **Returns:** nothing.
    """
    if num_processes < 1:
        raise ValueError(f"num_processes must be at least 1, got {num_processes}.")
    if not 0 <= process_id < num_processes:
        raise ValueError(f"process_id must be in [0, {num_processes}), got {process_id}.")
    if ":" not in coordinator_address:
        raise ValueError(f"coordinator_address must be host:port, got {coordinator_address!r}.")

    logger.info("Connecting process %d of %d to the coordinator at %s", process_id, num_processes, coordinator_address)
    jax.distributed.initialize(
        coordinator_address=coordinator_address, num_processes=num_processes, process_id=process_id
    )
    logger.info("Connected: %d processes, %d devices in total", jax.process_count(), jax.device_count())


def make_data_mesh(devices_per_process: int | None = None) -> Mesh:
    """Build a one-axis mesh over the first `devices_per_process` local devices of every process.

    **Arguments:**

    - `devices_per_process`: how many local devices each process uses; `None` uses all.

    **Returns:** a `Mesh` with the axis "data", devices ordered by process, so each process's
    devices hold a contiguous block of batch rows.
    """
    local_count = jax.local_device_count()
    if devices_per_process is None:
        devices_per_process = local_count
    if not 1 <= devices_per_process <= local_count:
        raise ValueError(
            f"--devices {devices_per_process} is invalid: this process has {local_count} local "
            f"{jax.default_backend()} devices; pass a number from 1 to {local_count}."
        )

    devices = []
    for process in range(jax.process_count()):
        process_devices = sorted((d for d in jax.devices() if d.process_index == process), key=lambda d: d.id)
        devices.extend(process_devices[:devices_per_process])
    return Mesh(np.array(devices), (DATA_AXIS,))


def replicated_sharding(mesh: Mesh) -> NamedSharding:
    """Return the sharding that keeps a full copy of an array on every device of `mesh`."""
    return NamedSharding(mesh, PartitionSpec())


def batch_sharding(mesh: Mesh) -> NamedSharding:
    """Return the sharding that splits an array's leading axis across the devices of `mesh`."""
    return NamedSharding(mesh, PartitionSpec(DATA_AXIS))


def replicate(tree: PyTree, mesh: Mesh) -> PyTree:
    """Place every array of `tree` on all devices of `mesh`; other leaves are kept as they are.

    Every process must pass the same values, as after initialising from the same seed or
    loading the same checkpoint.
    """
    sharding = replicated_sharding(mesh)

    def place(leaf):
        if isinstance(leaf, (jax.Array, np.ndarray)):
            value = np.asarray(leaf) if not isinstance(leaf, jax.Array) or leaf.is_fully_addressable else leaf
            return jax.make_array_from_process_local_data(sharding, value, value.shape)
        return leaf

    return jax.tree.map(place, tree)


def check_batch_divisible(batch: PyTree, mesh: Mesh) -> int:
    """Check that every leaf's leading axis has the same size, divisible by the mesh size.

    **Returns:** that leading size.
    """
    sizes = {np.shape(leaf)[0] if np.ndim(leaf) else None for leaf in jax.tree.leaves(batch)}
    if None in sizes or len(sizes) != 1:
        raise ValueError(
            f"Every array of a training batch must share one leading axis; got leading sizes {sorted(map(str, sizes))}."
        )
    size = sizes.pop()
    if size % mesh.size != 0:
        raise ValueError(
            f"The batch's leading axis has size {size}, which does not divide evenly over {mesh.size} devices. "
            f"Choose a --batch-size (or, for graph tasks, --sub-batches) that is a multiple of {mesh.size}, "
            "or change --devices."
        )
    return size


def shard_batch(batch: PyTree, mesh: Mesh) -> PyTree:
    """Turn a global batch of numpy arrays into JAX arrays split by rows across `mesh`.

    Every process passes the same global batch and contributes only the rows that belong to
    its own devices, so the batch is not sent between hosts.

    **Arguments:**

    - `batch`: the global batch; every leaf's leading axis must be divisible by the mesh size.
    - `mesh`: a mesh from `make_data_mesh`.

    **Returns:** the batch as global `jax.Array`s with `batch_sharding(mesh)`.
    """
    size = check_batch_divisible(batch, mesh)
    sharding = batch_sharding(mesh)

    num_processes = jax.process_count()
    rows_per_process = size // num_processes
    start = jax.process_index() * rows_per_process

    def place(leaf):
        leaf = np.asarray(leaf)
        local = leaf[start : start + rows_per_process]
        return jax.make_array_from_process_local_data(sharding, local, leaf.shape)

    return jax.tree.map(place, batch)
