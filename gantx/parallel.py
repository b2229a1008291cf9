"""Data parallelism: one `('data',)` mesh over every device of every process.

The train step is jitted once over this mesh: batches are sharded on their first (batch)
axis, and the state (parameters, optimizer states, batch statistics, history pools) is
replicated. XLA inserts the gradient all-reduce; batch-norm statistics and losses are
means over the global batch. One device is a mesh of size 1: the same code path.
"""

from __future__ import annotations

import os

import jax
import numpy as np
from jax.sharding import AxisType, Mesh, NamedSharding, PartitionSpec as P

DATA_AXIS = "data"


def maybe_initialize_distributed(config) -> None:
  """Starts multi-process JAX when asked: config.distributed, or the usual environment
  variables of a multi-host launcher (JAX_COORDINATOR_ADDRESS). On Cloud TPU,
  `jax.distributed.initialize()` finds the coordinator by itself.
  """
  if config.get("distributed", False) or os.environ.get("JAX_COORDINATOR_ADDRESS"):
    jax.distributed.initialize()


def make_mesh() -> Mesh:
  """A 1-D mesh over all devices of all processes, axis 'data'.

  The axis is `Auto`: shardings of the inputs and outputs are given, and XLA's partitioner
  propagates them through the step (the step's code has no sharding annotations).
  """
  return jax.make_mesh((jax.device_count(),), (DATA_AXIS,), axis_types=(AxisType.Auto,))


def batch_sharding(mesh: Mesh) -> NamedSharding:
  """Arrays split on their first axis over the 'data' axis."""
  return NamedSharding(mesh, P(DATA_AXIS))


def replicated(mesh: Mesh) -> NamedSharding:
  """Arrays held whole on every device."""
  return NamedSharding(mesh, P())


def check_batch_size(config, mesh: Mesh) -> int:
  """Returns the per-device batch size; raises ValueError if config.batch_size cannot be split."""
  devices, processes = mesh.devices.size, jax.process_count()
  if config.batch_size % devices:
    raise ValueError(
        f"config.batch_size={config.batch_size} is the global batch and must be a multiple of the"
        f" {devices} devices (per-device batch = batch_size / devices). Use"
        f" --config.batch_size={max(devices, config.batch_size // devices * devices)} or a multiple of {devices}.")
  if config.batch_size % processes:
    raise ValueError(f"config.batch_size={config.batch_size} must be a multiple of the {processes} processes.")
  return config.batch_size // devices


def global_batch(local: dict[str, np.ndarray], sharding: NamedSharding) -> dict[str, jax.Array]:
  """Assembles each process's rows into global arrays sharded on the batch axis."""
  return {k: jax.make_array_from_process_local_data(sharding, np.asarray(v)) for k, v in local.items()}
