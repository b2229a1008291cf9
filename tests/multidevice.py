"""Helpers run in subprocesses with several simulated CPU devices (see test_parallel.py).

`python tests/multidevice.py compare MODEL STEPS OUT.npz` trains STEPS steps of a tiny MODEL
on fixed random batches twice in one process, on a 1-device mesh and on a mesh of all devices,
and saves both states, metrics and generator outputs after the first step and after the last
(`one/1/...`, `all/STEPS/...`). `... train MODEL STEPS WORKDIR OUT.npz [SEED]` runs
train_and_evaluate (each process of a multi-process run calls it) and saves the final state;
`... study MODEL STEPS WORKDIR OUT.npz SEEDS BATCH` runs seed studies of each count in SEEDS ('8,4')
and saves their stacked states.
"""

import os
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import jax  # noqa: E402
import numpy as np  # noqa: E402
from conftest import tiny_config  # noqa: E402

from gantx import parallel, state as state_lib, steps  # noqa: E402


def flat(tree, prefix):
  """{path: numpy array} of a pytree (PRNG keys as key data)."""
  out = {}
  for path, leaf in jax.tree_util.tree_leaves_with_path(tree):
    if jax.dtypes.issubdtype(leaf.dtype, jax.dtypes.prng_key):
      leaf = jax.random.key_data(leaf)
    out[prefix + jax.tree_util.keystr(path)] = np.asarray(jax.device_get(leaf))
  return out


def run_on(mesh, config, batches):
  """{steps done: (state, metrics, outputs)} after the first step and after the last."""
  nets = state_lib.build_networks(config, 10)
  repl, sharded = parallel.replicated(mesh), parallel.batch_sharding(mesh)
  state = jax.device_put(state_lib.init_state(config, nets, jax.random.key(0), (config.crop_size,) * 2), repl)
  step = jax.jit(steps.train_step_fn(config, nets, sharded), in_shardings=(repl, sharded), out_shardings=(repl, repl))
  metrics, snapshots = [], {}
  for n, batch in enumerate(batches, 1):
    state, m = step(state, jax.device_put(batch, sharded))
    metrics.append(m)
    if n in (1, len(batches)):
      # What the trained generators compute (eval mode) on the first batch.
      outputs = {name: nets.modules[name].apply(
          {"params": state.params[name], "batch_stats": state.batch_stats[name]},
          batches[0]["A" if name in ("G", "G_A") else "B"], train=False) for name in nets.generators}
      snapshots[n] = jax.device_get((state, metrics, outputs))
  return snapshots


def compare(model: str, num_steps: int, out: str) -> None:
  config = tiny_config(model, batch_size=jax.device_count())
  rng = np.random.default_rng(0)
  shape = (config.batch_size, config.crop_size, config.crop_size, 3)
  batches = [{k: rng.uniform(-1, 1, shape).astype(np.float32) for k in "AB"} for _ in range(num_steps)]
  one = jax.make_mesh((1,), (parallel.DATA_AXIS,), axis_types=(jax.sharding.AxisType.Auto,), devices=jax.devices()[:1])
  results = {}
  for name, mesh in (("one", one), ("all", parallel.make_mesh())):
    for n, (state, metrics, outputs) in run_on(mesh, config, batches).items():
      results.update(flat(state, f"{name}/{n}/state"))
      results.update(flat(metrics, f"{name}/{n}/metrics"))
      results.update(flat(outputs, f"{name}/{n}/outputs"))
  results["devices"] = np.array(jax.device_count())
  results["flops_per_device"] = np.array([flops_per_device(config, mesh) for mesh in (one, parallel.make_mesh())])
  np.savez(out, **results)


def flops_per_device(config, mesh) -> float:
  """XLA's FLOP count of one device's share of the compiled step."""
  nets = state_lib.build_networks(config, 10)
  repl, sharded = parallel.replicated(mesh), parallel.batch_sharding(mesh)
  state = jax.eval_shape(lambda k: state_lib.init_state(config, nets, k, (config.crop_size,) * 2), jax.random.key(0))
  batch = {k: jax.ShapeDtypeStruct((config.batch_size, config.crop_size, config.crop_size, 3), np.float32) for k in "AB"}
  step = jax.jit(steps.train_step_fn(config, nets, sharded), in_shardings=(repl, sharded), out_shardings=(repl, repl))
  return float(step.lower(state, batch).compile().cost_analysis()["flops"])


def train(model: str, num_steps: int, workdir: str, out: str, seed: str = "0") -> None:
  """$GANTX_CHECKPOINT_EVERY sets checkpoint_every_steps; $GANTX_STEP_TIMEOUT step_timeout_s (the
  watchdog); $GANTX_STALL_AT=k makes this process stop before the batch of its k-th step, alive but
  entering no more collectives (a stuck host)."""
  from gantx import train as train_lib
  env = os.environ
  every = int(env.get("GANTX_CHECKPOINT_EVERY", num_steps))
  config = tiny_config(model, batch_size=4, num_train_steps=num_steps, eval_every_steps=0,
                       checkpoint_every_steps=every, seed=int(seed))
  config.step_timeout_s = float(env.get("GANTX_STEP_TIMEOUT", config.step_timeout_s))
  if "GANTX_STALL_AT" in env:
    stall_at, calls, batch = int(env["GANTX_STALL_AT"]), [0], parallel.global_batch

    def stalling_batch(*args):
      calls[0] += 1
      while calls[0] >= stall_at:
        time.sleep(1)
      return batch(*args)

    parallel.global_batch = stalling_batch
  parallel.maybe_initialize_distributed(config)
  state = train_lib.train_and_evaluate(config, workdir)
  results = flat(state, "state")
  results["processes"] = np.array(jax.process_count())
  results["devices"] = np.array(jax.device_count())
  np.savez(out, **results)


# The sweep of `study`'s 'VxN' studies: V learning rates (values of one compiled step).
SWEEP_LRS = ("2e-4", "1e-3", "5e-4", "1e-4")


def study(model: str, num_steps: int, workdir: str, out: str, seeds: str, batch_size: str) -> None:
  """Studies of each entry of `seeds` ('8,4': that many replicas, every stream varied; '2x4': 2
  variants (`SWEEP_LRS`) x 4 seeds) at a global batch of `batch_size` per replica, in WORKDIR/<entry>;
  OUT holds each one's stacked state as <entry>/state..."""
  from gantx import checkpointing, study as study_lib
  results = {}
  for entry in seeds.split(","):
    variants, _, n = entry.rpartition("x")
    sweep = (f"lr={','.join(SWEEP_LRS[:int(variants)])}",) if variants else ()
    config = tiny_config(model, batch_size=int(batch_size), num_train_steps=num_steps, eval_every_steps=0,
                         checkpoint_every_steps=num_steps)
    study_lib.run_study(config, f"{workdir}/{entry}", int(n), ("init", "data", "step"), sweep)
    state = checkpointing.Checkpointer(f"{workdir}/{entry}/checkpoints", 1).restore_arrays(num_steps)
    results.update(flat(state, f"{entry}/state"))
    results[f"{entry}/devices"] = np.array(jax.device_count())
  np.savez(out, **results)


if __name__ == "__main__":
  command, model, num_steps, *paths = sys.argv[1:]
  {"compare": compare, "train": train, "study": study}[command](model, int(num_steps), *paths)
