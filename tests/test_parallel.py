"""Data parallelism: several devices and several processes give the results of one device.

Each check runs in subprocesses (tests/multidevice.py) with simulated CPU devices
(--xla_force_host_platform_device_count), since a process's device count is fixed at start.
"""

import os
import subprocess
import sys
import time

import numpy as np
import pytest
from conftest import REPO
from gcs_server import free_port
from test_buckets import bucket  # noqa: F401  (the fixture: a gs:// bucket on a local GCS server)

from gantx import checkpointing, paths

# float32 tolerances between meshes. Reductions (the gradient all-reduce, batch-norm statistics,
# loss means) are summed in another order on 8 devices, which moves values by rounding.
# After one step, everything is the same computation up to that rounding:
RTOL, ATOL = 1e-4, 1e-6  # metrics, batch statistics: relative 1e-4
IMAGE_ATOL = 1e-5  # generator outputs and pooled images, in [-1, 1]
MOMENT_RTOL = 1e-4  # Adam's moments (the first gradient and its square), relative to each tensor's max
LR, PARAM_ATOL = 2e-4, 1e-5  # parameters, except entries whose true gradient is zero (conv biases
# followed by a norm, which cancels them): Adam scales their rounding noise (|gradient| < NOISE)
# to steps of up to lr, so they may differ by 2 * lr.
NOISE = 1e-5  # measured here: <= 6e-7 (bias gradients that are zero in exact arithmetic)
# Later steps start from those parameters, so the states follow the same trajectory within
# bounds that Adam's normalisation of the noise sets (measured worst, on two CPUs and with two
# formulations of the convolutions: moments 1.1e-2, images 4e-4, losses 1e-4 relative):
TRAJECTORY_MOMENT_RTOL, TRAJECTORY_IMAGE_ATOL, TRAJECTORY_RTOL = 5e-2, 1e-2, 1e-2
STEPS = 3


def _run(*args, devices: int, env: dict | None = None, timeout: int = 600, check: bool = True):
  full_env = {**os.environ, "XLA_FLAGS": f"--xla_force_host_platform_device_count={devices}", **(env or {})}
  proc = subprocess.run([sys.executable, "tests/multidevice.py", *map(str, args)], cwd=REPO, env=full_env,
                        capture_output=True, text=True, timeout=timeout)
  if check and proc.returncode != 0:
    raise AssertionError(proc.stderr[-3000:])
  return proc


def _moment(flat: dict, param_key: str) -> np.ndarray:
  """Adam's first moment of the parameter entry `state.params[NET]...` (NET in G* or D*)."""
  path = param_key[len("state.params"):]
  return flat[f"state.opt_state['{path[2]}'][0].mu{path}"]


def _assert_close(one: dict, many: dict, keys: list[str], steps: int) -> None:
  """many[k] equals one[k] for every key (keys name state parts, metrics, outputs) after `steps`
  optimizer steps: to rounding after one step, along the same trajectory after more."""
  first = steps == 1
  moment_rtol = MOMENT_RTOL if first else TRAJECTORY_MOMENT_RTOL
  image_atol = IMAGE_ATOL if first else TRAJECTORY_IMAGE_ATOL
  rtol = RTOL if first else TRAJECTORY_RTOL
  for key in keys:
    a, b = one[key], many[key]
    if key.startswith("state.params"):
      np.testing.assert_allclose(b, a, rtol=0, atol=2 * LR * steps, err_msg=key)
      if first:
        noise = np.abs(b - a) > PARAM_ATOL
        assert np.all(np.abs(_moment(one, key))[noise] < NOISE / 2), (key, np.abs(b - a)[noise].max())
    elif key.startswith("state.opt_state") and a.ndim:
      np.testing.assert_allclose(b, a, rtol=0, atol=moment_rtol * float(np.abs(a).max()) + ATOL, err_msg=key)
    elif key.startswith(("outputs", "state.pools")):
      np.testing.assert_allclose(b, a, rtol=0, atol=image_atol, err_msg=key)
    else:  # metrics, batch statistics, step counts, key
      np.testing.assert_allclose(b, a, rtol=rtol, atol=ATOL, err_msg=key)


@pytest.mark.parametrize("model", ["pix2pix", "cycle_gan"])
def test_eight_devices_equal_one_device(tmp_path, model):
  """Global batch 8: parameters, batch statistics, optimizer states, pools, metrics and what the
  generators compute, on an 8-device mesh, equal those on one device (to the float32 tolerances
  above) after one step and after three."""
  _run("compare", model, STEPS, tmp_path / "r.npz", devices=8)
  r = np.load(tmp_path / "r.npz")
  assert int(r["devices"]) == 8
  for steps in (1, STEPS):
    prefix = f"one/{steps}/"
    keys = [k[len(prefix):] for k in r.files if k.startswith(prefix)]
    assert any("pools" in k for k in keys) == (model == "cycle_gan")
    assert any(k.startswith("outputs") for k in keys) and any(k.startswith("state.opt_state") for k in keys)
    _assert_close(*({k: r[f"{mesh}/{steps}/{k}"] for k in keys} for mesh in ("one", "all")), keys, steps)
  # Each device does ~1/8 of the work, plus the replicated Adam update (large for tiny nets).
  # Measured: pix2pix 0.154, cycle_gan 0.129; cycle_gan without the pooled images' sharding
  # constraint (every device running D on the whole pool output) 0.148.
  flops_one, flops_each = r["flops_per_device"]
  assert flops_each < {"pix2pix": 0.16, "cycle_gan": 0.135}[model] * flops_one


def test_global_batch_that_does_not_divide_the_devices_is_refused(tmp_path):
  proc = _run("train", "pix2pix", 1, tmp_path / "run", tmp_path / "r.npz", devices=8, check=False)
  assert proc.returncode != 0
  assert "config.batch_size=4 is the global batch and must be a multiple of the 8 devices" in proc.stderr
  assert not (tmp_path / "run" / "checkpoints").exists()


def test_per_device_batch_size_sets_the_global_batch_and_a_conflict_is_refused():
  from gantx import parallel
  from conftest import tiny_config
  config = tiny_config("pix2pix", batch_size=1, per_device_batch_size=3)  # batch_size at its default
  assert parallel.resolve_batch_size(config, parallel.make_mesh()) == 3
  assert config.batch_size == 3  # one device in this process
  assert parallel.resolve_batch_size(config, parallel.make_mesh()) == 3  # agreeing values pass (a resumed run's)
  config = tiny_config("pix2pix", batch_size=2, per_device_batch_size=3)
  with pytest.raises(ValueError, match=r"config.batch_size=2 and config.per_device_batch_size=3 .* disagree"):
    parallel.resolve_batch_size(config, parallel.make_mesh())


def _two_processes(tmp_path, workdir, steps, env_of, timeout: int = 300) -> list[subprocess.CompletedProcess]:
  """Runs `multidevice.py train pix2pix STEPS WORKDIR` as two processes of two devices each
  (jax.distributed over localhost, gloo); env_of(i) adds to process i's environment. Both are
  ended, whatever happens, before this returns."""
  env = {"JAX_COORDINATOR_ADDRESS": f"127.0.0.1:{free_port()}", "JAX_NUM_PROCESSES": "2"}
  procs = []
  try:
    for i in range(2):
      extra = env_of(i)
      time.sleep(float(extra.pop("DELAY", 0)))
      procs.append(subprocess.Popen(
          [sys.executable, "tests/multidevice.py", "train", "pix2pix", str(steps), str(workdir),
           str(tmp_path / f"multi{i}.npz")], cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
          env={**os.environ, **env, **extra, "JAX_PROCESS_ID": str(i),
               "XLA_FLAGS": "--xla_force_host_platform_device_count=2"}))
    return [subprocess.CompletedProcess(p.args, p.wait(timeout=timeout), *p.communicate()) for p in procs]
  finally:  # a hung pair must not outlive the test
    for p in procs:
      if p.poll() is None:
        p.kill()
        p.communicate()


def test_two_processes_survive_a_slow_start_stop_at_a_stuck_one_and_resume_to_one_process(tmp_path, bucket):
  """Two processes of two devices each train together on their own data shards, with their work
  directory in a gs:// bucket (both write the checkpoints there through orbax and tensorstore,
  process 0 the logs):
  - process 1 starts 31 s after process 0 (more than gloo's 30 s connection timeout) and later
    stops entering collectives (alive, stuck before its third batch): both watchdogs write what
    they wait for and their stacks (the first to fire tells the other), and exit with status 75,
    well before any collective timeout;
  - the same command resumes from the last checkpoint and ends where one process with four
    devices ends (to the float32 tolerances of a reduction order)."""
  steps, multi = STEPS, f"{bucket}/runs/two_processes"
  _run("train", "pix2pix", steps, tmp_path / "single", tmp_path / "single.npz", devices=4)
  stuck = _two_processes(tmp_path, multi, steps, lambda i: {
      "GANTX_CHECKPOINT_EVERY": "1", "GANTX_STEP_TIMEOUT": "10",
      **({"DELAY": "31", "GANTX_STALL_AT": "3"} if i == 1 else {})})
  for i, p in enumerate(stuck):
    assert p.returncode == 75, (i, p.returncode, p.stderr[-3000:])
    assert f"gantx watchdog: process {i} of 2: " in p.stderr, p.stderr[-3000:]
    assert "Exiting with status 75: run the same command again to resume from the last checkpoint" in p.stderr
  assert "Waiting for step 3 to finish" in stuck[0].stderr and " in finish" in stuck[0].stderr  # the collective
  assert "Waiting for the data of step 3" in stuck[1].stderr and " in stalling_batch" in stuck[1].stderr
  assert "the last checkpoint is" in stuck[0].stderr and paths.path(f"{multi}/checkpoints/2").is_dir()
  resumed = _two_processes(tmp_path, multi, steps, lambda i: {"GANTX_CHECKPOINT_EVERY": "1"})
  for p in resumed:
    assert p.returncode == 0, p.stderr[-3000:]
  assert "Resumed from gs://" in resumed[0].stdout and "at step 2" in resumed[0].stdout
  single = np.load(tmp_path / "single.npz")
  assert int(single["devices"]) == 4 and int(single["processes"]) == 1
  for i in range(2):
    two = np.load(tmp_path / f"multi{i}.npz")
    assert int(two["devices"]) == 4 and int(two["processes"]) == 2
    _assert_close(single, two, [k for k in single.files if k.startswith("state")], steps)
  # Only process 0 writes logs; both wrote the checkpoints together.
  assert paths.path(f"{multi}/metrics.jsonl").exists()
  _, _, saved = checkpointing.load_run(multi)
  assert int(saved["step"]) == steps


def test_resume_on_another_device_count(tmp_path):
  """Saved on 4 devices, resumed on 1, then on 4 again: ends where 4 straight steps on 4 devices
  end (to the float32 tolerances: only the reduction order differs)."""
  moved = tmp_path / "moved"
  for devices, steps in ((4, 2), (1, 3), (4, 4)):
    _run("train", "pix2pix", steps, moved, tmp_path / f"moved{steps}.npz", devices=devices)
  _run("train", "pix2pix", 4, tmp_path / "straight", tmp_path / "straight.npz", devices=4)
  straight, resumed = np.load(tmp_path / "straight.npz"), np.load(tmp_path / "moved4.npz")
  assert int(np.load(tmp_path / "moved3.npz")["devices"]) == 1 and int(resumed["devices"]) == 4
  _assert_close(straight, resumed, [k for k in straight.files if k.startswith("state")], steps=4)
  assert sorted(p.name for p in (moved / "checkpoints").iterdir()) == ["2", "3", "4"]
