"""Preemption, damaged checkpoints and seeds: a restart must be invisible in the results."""

import json
import os
import re
import signal
import subprocess
import sys
import time

import jax
import pytest
import numpy as np
from conftest import REPO, tiny_config

from gantx import checkpointing, train as train_lib


def _arrays(state):
  return [np.asarray(jax.random.key_data(x) if jax.dtypes.issubdtype(x.dtype, jax.dtypes.prng_key) else x)
          for x in jax.tree.leaves(state)]


def _start_training(workdir, *overrides):
  cmd = [sys.executable, "train.py", "--config", "configs/quickstart.py", "--workdir", str(workdir),
         "--config.num_train_steps=100000", "--config.log_every_steps=1", "--config.eval_every_steps=0",
         "--config.ngf=8", "--config.ndf=8", *overrides]
  return subprocess.Popen(cmd, cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def _wait_for_steps(workdir, n):
  metrics, deadline = workdir / "metrics.jsonl", time.time() + 300
  while not (metrics.exists() and metrics.read_text().count("\n") >= n) and time.time() < deadline:
    time.sleep(0.05)


def test_sigterm_is_followed_by_at_most_two_steps_and_a_checkpoint(tmp_path):
  """The signal arrives after some step F had finished; the loop finishes the <= 2 steps in flight,
  checkpoints the last of them (step C, C - F <= 2), says how long after the signal, and exits 0."""
  workdir = tmp_path / "run"
  proc = _start_training(workdir, "--config.checkpoint_every_steps=100000")
  _wait_for_steps(workdir, 5)  # step 0's evaluation, then steps 1-4
  proc.send_signal(signal.SIGTERM)
  out, err = proc.communicate(timeout=300)
  assert proc.returncode == 0, err[-2000:]
  finished = int(re.search(r"SIGTERM after step (\d+) finished", err)[1])
  stopped = re.search(r"Stopped by SIGTERM after step (\d+); checkpoint (\S+) written ([\d.]+) s after SIGTERM", out)
  assert stopped and "Run the same command again to resume" in out, out[-2000:]
  step = int(stopped[1])
  assert finished >= 4 and 0 <= step - finished <= 2, (finished, step)
  assert [p.name for p in (workdir / "checkpoints").iterdir()] == [str(step)]
  restored = checkpointing.Checkpointer(workdir / "checkpoints", 1).restore_arrays(step)
  assert int(restored["step"]) == step
  lines = [json.loads(line) for line in (workdir / "metrics.jsonl").read_text().splitlines()]
  assert [r["step"] for r in lines][-1] == step  # every finished step logged, the in-flight ones too


def test_a_second_signal_exits_at_once_and_keeps_the_last_complete_checkpoint(tmp_path):
  workdir = tmp_path / "run"
  proc = _start_training(workdir, "--config.checkpoint_every_steps=2")
  _wait_for_steps(workdir, 7)
  proc.send_signal(signal.SIGTERM)
  time.sleep(0.01)
  proc.send_signal(signal.SIGTERM)
  proc.communicate(timeout=300)
  assert proc.returncode == -signal.SIGTERM  # the default action: no clean-up, no final checkpoint
  ckpt = checkpointing.Checkpointer(workdir / "checkpoints", 3)
  latest = ckpt.latest_step()  # a write cut short leaves a temporary directory, not a step
  assert latest is not None and latest % 2 == 0
  assert int(ckpt.restore_arrays(latest)["step"]) == latest


def test_unreadable_latest_checkpoint_falls_back_to_the_previous_one(tmp_path, capsys):
  config = tiny_config("pix2pix", num_train_steps=3, checkpoint_every_steps=1, eval_every_steps=0)
  straight = train_lib.train_and_evaluate(config, tmp_path / "straight")
  config.num_train_steps = 2
  train_lib.train_and_evaluate(config, tmp_path / "damaged")
  latest = tmp_path / "damaged" / "checkpoints" / "2"
  largest = max((p for p in latest.rglob("*") if p.is_file()), key=lambda p: p.stat().st_size)
  largest.write_bytes(largest.read_bytes()[: largest.stat().st_size // 2])  # a write cut short
  capsys.readouterr()
  config.num_train_steps = 3
  resumed = train_lib.train_and_evaluate(config, tmp_path / "damaged")
  out = capsys.readouterr().out
  assert f"Checkpoint {latest} cannot be read" in out
  assert "Resumed from" in out and "at step 1." in out
  assert (tmp_path / "damaged" / "checkpoints" / "2.unreadable").exists()  # kept, not deleted
  for a, b in zip(_arrays(straight), _arrays(resumed)):
    np.testing.assert_array_equal(a, b)


def _train_in_subprocess(tmp_path, name, seed):
  out = tmp_path / f"{name}.npz"
  proc = subprocess.run([sys.executable, "tests/multidevice.py", "train", "cycle_gan", "3", str(tmp_path / name),
                         str(out), str(seed)], cwd=REPO, capture_output=True, text=True, timeout=600)
  assert proc.returncode == 0, proc.stderr[-2000:]
  return np.load(out)


def test_same_seed_is_bitwise_identical_across_processes_and_another_seed_is_not(tmp_path):
  a, b, c = (_train_in_subprocess(tmp_path, name, seed) for name, seed in (("a", 0), ("b", 0), ("c", 1)))
  keys = [k for k in a.files if k.startswith("state")]
  for k in keys:
    np.testing.assert_array_equal(a[k], b[k], err_msg=k)
  assert any(not np.array_equal(a[k], c[k]) for k in keys if "params" in k)


def test_non_finite_loss_stops_training_and_keeps_the_last_good_checkpoint(tmp_path):
  """One good step is checkpointed; resumed with lr 1e30, the next step's losses overflow."""
  config = tiny_config("pix2pix", num_train_steps=1, checkpoint_every_steps=1, eval_every_steps=0)
  train_lib.train_and_evaluate(config, tmp_path)
  config.lr, config.num_train_steps = 1e30, 5
  with pytest.raises(FloatingPointError, match=r"Non-finite loss .* at step 2; the last good checkpoint"):
    train_lib.train_and_evaluate(config, tmp_path)
  assert sorted(p.name for p in (tmp_path / "checkpoints").iterdir()) == ["1"]


def test_resume_with_other_image_shapes_is_a_config_error_that_keeps_the_checkpoints(tmp_path):
  """preprocess 'none' takes the images' size, which no config field fixes: a resume whose data now
  gives another size must be refused before restoring, and must not mark the checkpoint damaged."""
  c = tiny_config("cycle_gan", preprocess="none", load_size=32, num_train_steps=1, checkpoint_every_steps=1,
                  eval_every_steps=100)
  train_lib.train_and_evaluate(c, tmp_path)
  bigger = tiny_config("cycle_gan", preprocess="none", load_size=40, num_train_steps=2, eval_every_steps=100)
  with pytest.raises(ValueError, match=r"pools/fake_A/images: saved \(4, 32, 32, 3\), now \(4, 40, 40, 3\)"):
    train_lib.train_and_evaluate(bigger, tmp_path)
  assert sorted(os.listdir(tmp_path / "checkpoints")) == ["1"]
