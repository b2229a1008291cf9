"""Crash safety: runs killed with SIGKILL at any moment (during compilation, steps or checkpoint
writes) restart from a complete checkpoint and end bitwise equal to an uninterrupted run; and
resuming is bitwise exact on several devices too."""

import os
import random
import subprocess
import sys
import time

import numpy as np
import pytest
from conftest import REPO

STEPS = 16  # long enough that a run outlives the random kill times below
KILLS = 6  # attempts killed: alternately the instant a checkpoint write is seen, and at a random moment


def _cmd(workdir, out, steps=STEPS, model="cycle_gan"):
  return [sys.executable, "tests/multidevice.py", "train", model, str(steps), str(workdir), str(out)]


def _env(devices: int, every: int):
  return {**os.environ, "XLA_FLAGS": f"--xla_force_host_platform_device_count={devices}",
          "GANTX_CHECKPOINT_EVERY": str(every)}


def _states_equal(a, b):
  keys = [k for k in a.files if k.startswith("state")]
  assert keys
  for k in keys:
    np.testing.assert_array_equal(a[k], b[k], err_msg=k)


def _writing(checkpoints) -> bool:
  """True while orbax is writing a checkpoint (its temporary directory exists)."""
  return checkpoints.exists() and any("tmp" in p.name for p in checkpoints.iterdir())


def test_sigkill_at_random_moments_then_restart_is_invisible(tmp_path):
  """Odd attempts are killed at a random moment, even ones the instant a checkpoint write is
  seen in progress; the run then restarts and must end exactly where an unbroken run ends."""
  straight = tmp_path / "straight.npz"
  subprocess.run(_cmd(tmp_path / "straight", straight), cwd=REPO, env=_env(1, 1), check=True,
                 capture_output=True, timeout=600)
  rng, out, checkpoints = random.Random(0), tmp_path / "killed.npz", tmp_path / "killed" / "checkpoints"
  kills = {"random": 0, "mid_write": 0}
  for attempt in range(KILLS + 2):
    proc = subprocess.Popen(_cmd(tmp_path / "killed", out), cwd=REPO, env=_env(1, 1),
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.time() + (rng.uniform(1.0, 6.0) if attempt % 2 else 120)
    while proc.poll() is None and time.time() < deadline and attempt < KILLS:
      if attempt % 2 == 0 and _writing(checkpoints):
        break
      time.sleep(0.002)
    if proc.poll() is None and attempt < KILLS:
      proc.kill()  # SIGKILL: no handler runs
      proc.wait()
      kills["random" if attempt % 2 else "mid_write"] += 1
      continue
    assert proc.wait(timeout=600) == 0
    break
  assert out.exists() and kills["random"] >= 1 and kills["mid_write"] >= 1, kills
  _states_equal(np.load(straight), np.load(out))


@pytest.mark.parametrize("model", ["pix2pix", "cycle_gan"])
def test_resume_is_bitwise_exact_on_four_devices(tmp_path, model):
  """2N steps on 4 devices equal N steps, a restart, and N more on the same 4 devices, bit for bit."""
  env = _env(4, 2)
  subprocess.run(_cmd(tmp_path / "straight", tmp_path / "straight.npz", 4, model), cwd=REPO, env=env, check=True,
                 capture_output=True, timeout=600)
  for steps in (2, 4):
    subprocess.run(_cmd(tmp_path / "resumed", tmp_path / f"resumed{steps}.npz", steps, model), cwd=REPO, env=env,
                   check=True, capture_output=True, timeout=600)
  assert int(np.load(tmp_path / "resumed4.npz")["devices"]) == 4
  _states_equal(np.load(tmp_path / "straight.npz"), np.load(tmp_path / "resumed4.npz"))
