"""Parallelism: one `('data',)` mesh over every device of every process, or for a seed study
(`gantx.study`) a `('seeds', 'data')` mesh.

The train step is jitted once over the mesh: batches are sharded on their first (batch) axis,
and the state (parameters, optimizer states, batch statistics, history pools) is replicated.
XLA inserts the gradient all-reduce; batch-norm statistics and losses are means over the global
batch. One device is a mesh of size 1: the same code path.

A study's state has a leading replica axis sharded over 'seeds'; each replica's batch is split
over 'data' (data parallel within the replica), and nothing is reduced across replicas.
"""

from __future__ import annotations

import os

import jax
import numpy as np
from jax.sharding import AxisType, Mesh, NamedSharding, PartitionSpec as P

DATA_AXIS = "data"
SEEDS_AXIS = "seeds"


class PeerTimeoutError(RuntimeError):
  """Another process did not arrive within the time set (config.peer_timeout_s)."""


def maybe_initialize_distributed(config) -> None:
  """Starts multi-process JAX when asked: `config.distributed=True`, or JAX_COORDINATOR_ADDRESS
  set in the environment (host:port of process 0), with JAX_NUM_PROCESSES and JAX_PROCESS_ID
  where no cluster manager provides them. On Cloud TPU and SLURM `jax.distributed.initialize()`
  finds all of it by itself. Call it first, before anything runs on a device.

  Processes wait for each other up to config.peer_timeout_s at start-up (`initialize`), at
  `barrier`s and in orbax's checkpoint barriers; then `prepare_processes` makes the hosts agree.
  """
  env = os.environ
  if not (config.get("distributed", False) or env.get("JAX_COORDINATOR_ADDRESS")):
    return
  kwargs = {}
  if "JAX_NUM_PROCESSES" in env:
    kwargs["num_processes"] = int(env["JAX_NUM_PROCESSES"])
  if "JAX_PROCESS_ID" in env:
    kwargs["process_id"] = int(env["JAX_PROCESS_ID"])
  print(f"Joining the other processes (JAX_COORDINATOR_ADDRESS={env.get('JAX_COORDINATOR_ADDRESS', 'found by JAX')});"
        f" waiting up to {config.peer_timeout_s:g} s for them (config.peer_timeout_s).", flush=True)
  jax.distributed.initialize(initialization_timeout=int(config.peer_timeout_s), **kwargs)
  prepare_processes()


def prepare_processes() -> None:
  """Settings without which hosts that run at different speeds hang (docs/pods.md, "Timeouts").

  - orbax synchronises the processes through the coordination service's barriers, which have a
    timeout, instead of a collective program: its default runs `sync_global_devices` from the
    asynchronous save's own thread while the loop dispatches train steps, and on the CPU a first
    collective that one process reaches more than 30 s after another fails (gloo's fixed
    connection timeout, jax-ml/jax#40831).
  - On the CPU, JAX's persistent compilation cache is off. An executable loaded from the cache has
    another fingerprint than the same program compiled afresh, JAX derives the launch id of every
    multi-process execution from it, and gloo matches collectives by launch id: a process that
    compiled and one that loaded from the cache (the second to arrive finds the first's entry)
    wait for each other's collectives forever (measured: docs/pods.md, "Timeouts").
  """
  if jax.process_count() == 1:
    return
  from absl import flags  # pylint: disable=g-import-not-at-top
  import orbax.checkpoint  # noqa: F401  pylint: disable=g-import-not-at-top,unused-import  (defines the flag)

  if not flags.FLAGS.is_parsed():
    flags.FLAGS.mark_as_parsed()
  flags.FLAGS.experimental_orbax_use_distributed_barrier = True
  if jax.default_backend() == "cpu":
    jax.config.update("jax_enable_compilation_cache", False)


_barriers: dict[str, int] = {}


def barrier(name: str, timeout_s: float) -> None:
  """Waits until every process has reached `name` (the coordination service's barrier: no device
  program runs, so it cannot be confused with a train step's collectives). PeerTimeoutError
  naming the barrier when another process does not arrive within `timeout_s`. Each call with
  the same name is a new barrier (a counter makes its key unique)."""
  if jax.process_count() == 1:
    return
  from jax._src import distributed  # pylint: disable=g-import-not-at-top  (the client has no public handle)

  count = _barriers[name] = _barriers.get(name, 0) + 1
  try:
    distributed.global_state.client.wait_at_barrier(f"gantx/{name}/{count}", int(timeout_s * 1000))
  except Exception as e:  # the client raises JaxRuntimeError (DEADLINE_EXCEEDED, or a peer's error)
    raise PeerTimeoutError(
        f"Process {jax.process_index()} of {jax.process_count()} waited {timeout_s:.0f} s (config.peer_timeout_s)"
        f" at '{name}' and another process did not arrive: it is gone, stuck or much slower"
        f" ({type(e).__name__}: {str(e).splitlines()[0][:200]}).") from e


def make_mesh() -> Mesh:
  """A 1-D mesh over all devices of all processes, axis 'data'.

  The axis is `Auto`: shardings of the inputs and outputs are given, and XLA's partitioner
  propagates them through the step (the step's code has no sharding annotations).
  """
  return jax.make_mesh((jax.device_count(),), (DATA_AXIS,), axis_types=(AxisType.Auto,))


def make_study_mesh(num_seeds: int) -> Mesh:
  """A 2-D ('seeds', 'data') mesh for `num_seeds` replicas over all devices.

  With at least as many replicas as devices, each device holds num_seeds / devices replicas
  (a (devices, 1) mesh); with fewer, each replica is data parallel over devices / num_seeds
  devices. ValueError naming --seeds when neither divides.
  """
  devices = jax.device_count()
  if num_seeds >= devices and num_seeds % devices == 0:
    shape = (devices, 1)
  elif num_seeds < devices and devices % num_seeds == 0:
    shape = (num_seeds, devices // num_seeds)
  else:
    raise ValueError(
        f"--seeds {num_seeds} cannot be spread over {devices} devices: give a multiple of {devices}"
        f" (replicas per device) or a divisor of it (devices per replica).")
  return jax.make_mesh(shape, (SEEDS_AXIS, DATA_AXIS), axis_types=(AxisType.Auto,) * 2)


def batch_sharding(mesh: Mesh) -> NamedSharding:
  """Arrays split on their first axis over the 'data' axis (replicated over 'seeds', if any)."""
  return NamedSharding(mesh, P(DATA_AXIS))


def replica_sharding(mesh: Mesh) -> NamedSharding:
  """A study's stacked arrays: the leading replica axis split over 'seeds'."""
  return NamedSharding(mesh, P(SEEDS_AXIS))


def replica_batch_sharding(mesh: Mesh) -> NamedSharding:
  """A study's batches of shape (replicas, batch, ...): replicas over 'seeds', rows over 'data'."""
  return NamedSharding(mesh, P(SEEDS_AXIS, DATA_AXIS))


def replicated(mesh: Mesh) -> NamedSharding:
  """Arrays held whole on every device."""
  return NamedSharding(mesh, P())


def resolve_batch_size(config, mesh: Mesh) -> int:
  """The global batch (of one replica, in a study): config.per_device_batch_size * devices if that
  is set (> 0), else config.batch_size; sets config.batch_size to it. Raises ValueError, naming the
  fields, if both are set and disagree, or if the batch cannot be split evenly over the 'data'
  devices and the processes. Returns the per-device batch."""
  devices, processes = mesh.shape[DATA_AXIS], jax.process_count()
  if config.per_device_batch_size > 0:
    implied = config.per_device_batch_size * devices
    if config.batch_size not in (1, implied):  # 1 is the default: per_device_batch_size decides
      raise ValueError(
          f"config.batch_size={config.batch_size} and config.per_device_batch_size={config.per_device_batch_size}"
          f" ({config.per_device_batch_size} x {devices} devices = a global batch of {implied}) disagree: give"
          f" one of them (--config.batch_size={implied} agrees; --config.per_device_batch_size=0 turns it off).")
    config.batch_size = implied
  if config.batch_size % devices:
    raise ValueError(
        f"config.batch_size={config.batch_size} is the global batch and must be a multiple of the"
        f" {devices} devices (per-device batch = batch_size / devices). Use"
        f" --config.batch_size={max(devices, config.batch_size // devices * devices)} or a multiple of {devices}.")
  if config.batch_size % processes:
    raise ValueError(f"config.batch_size={config.batch_size} must be a multiple of the {processes} processes.")
  return config.batch_size // devices


def replicate(tree, mesh: Mesh):
  """Places a pytree that every process holds whole (the same values everywhere) on all devices
  of the mesh, replicated."""
  return place(tree, replicated(mesh))


def place(tree, sharding: NamedSharding):
  """Places a pytree that every process holds whole (the same values everywhere) with `sharding`.
  Multi-process meshes span devices other processes own, which `jax.device_put` cannot address,
  so each process provides its own devices' shards."""
  if jax.process_count() == 1:
    return jax.device_put(tree, sharding)

  def put(x):
    if jax.dtypes.issubdtype(x.dtype, jax.dtypes.prng_key):
      return jax.random.wrap_key_data(put(jax.random.key_data(x)), impl=jax.random.key_impl(x))
    x = np.asarray(x)
    return jax.make_array_from_callback(x.shape, sharding, lambda index: x[index])

  return jax.tree.map(put, tree)


def global_batch(local: dict[str, np.ndarray], sharding: NamedSharding) -> dict[str, jax.Array]:
  """Assembles each process's rows into global arrays sharded on the batch axis."""
  return {k: jax.make_array_from_process_local_data(sharding, np.asarray(v)) for k, v in local.items()}
