"""End to end: train_and_evaluate on built-in data learns, writes its outputs, and resumes exactly;
train.py refuses bad input with messages that name the field or the file."""

import json
import os
import subprocess
import sys

import jax
import numpy as np
import pytest
from conftest import REPO, tiny_config

from gantx import data, train as train_lib


def _metrics(workdir):
  return [json.loads(line) for line in open(os.path.join(workdir, "metrics.jsonl"))]


def _learning_config(model, steps):
  c = tiny_config(model, num_train_steps=steps, log_every_steps=10, eval_every_steps=steps,
                  checkpoint_every_steps=steps)
  c.data.num_train, c.data.num_test = 64, 8
  c.num_eval_images = 8
  if model == "pix2pix":
    c.ngf, c.ndf, c.batch_size = 8, 8, 4
  else:
    c.ngf, c.ndf, c.batch_size = 8, 8, 1
  return c


def test_pix2pix_learns_and_writes_its_outputs(tmp_path):
  config = _learning_config("pix2pix", 150)
  train_lib.train_and_evaluate(config, tmp_path)
  rows = _metrics(tmp_path)
  held_out = [r["L1_G"] for r in rows if "L1_G" in r]
  assert len(held_out) == 2  # before training and at the end
  assert held_out[-1] < 0.6 * held_out[0], held_out  # the untrained net is far worse on held-out pairs
  assert {"G_GAN", "G_L1", "D_real", "D_fake", "lr", "images_per_s"} <= set(rows[-1])
  assert {"L1_G", "PSNR_G", "SSIM_G"} <= set(rows[-1])
  assert sorted(os.listdir(tmp_path / "samples")) == ["G_0000000.png", "G_0000150.png", "index.html"]
  gallery = (tmp_path / "samples" / "index.html").read_text()
  assert gallery.index("G_0000150.png") < gallery.index("G_0000000.png")  # newest first
  assert (tmp_path / "losses.png").stat().st_size > 1000
  assert os.listdir(tmp_path / "checkpoints") == ["150"]
  counts = json.loads((tmp_path / "params.json").read_text())
  assert set(counts) == {"G", "D"} and all(n > 0 for n in counts.values())
  assert json.loads((tmp_path / "config.json").read_text())["netG"] == "unet_32"


def test_cycle_gan_finds_the_hidden_mapping(tmp_path):
  """Unpaired training moves G_A(A) much closer to the true B (never shown as a pair) than the
  untrained G_A, and closer than the identity map (A itself) is: it learned more than copying."""
  config = _learning_config("cycle_gan", 300)
  train_lib.train_and_evaluate(config, tmp_path)
  held_out = [r["L1_G_A"] for r in _metrics(tmp_path) if "L1_G_A" in r]
  assert len(held_out) == 2
  eval_set = data.make_eval_set(config)
  identity = float(np.mean(np.abs(eval_set["A"] - eval_set["B"])))
  assert held_out[-1] < 0.6 * held_out[0], held_out
  assert held_out[-1] < identity, (held_out, identity)
  assert sorted(os.listdir(tmp_path / "samples")) == ["G_A_0000000.png", "G_A_0000300.png",
                                                       "G_B_0000000.png", "G_B_0000300.png", "index.html"]


@pytest.mark.parametrize("model", ["pix2pix", "cycle_gan"])
def test_resume_continues_exactly(tmp_path, model):
  """4 steps in one run equal 2 steps, a restart from the checkpoint, and 2 more, bit for bit."""
  config = tiny_config(model, num_train_steps=4, checkpoint_every_steps=2, log_every_steps=1, eval_every_steps=0)
  straight = train_lib.train_and_evaluate(config, tmp_path / "straight")
  config.num_train_steps = 2
  train_lib.train_and_evaluate(config, tmp_path / "resumed")
  config.num_train_steps = 4
  resumed = train_lib.train_and_evaluate(config, tmp_path / "resumed")
  leaves = lambda s: jax.tree.leaves(jax.tree.map(
      lambda x: jax.random.key_data(x) if jax.dtypes.issubdtype(x.dtype, jax.dtypes.prng_key) else x, s))
  for a, b in zip(leaves(straight), leaves(resumed)):
    np.testing.assert_array_equal(a, b)
  assert _metrics(tmp_path / "straight")[-1] == {**_metrics(tmp_path / "resumed")[-1],
                                                 "images_per_s": _metrics(tmp_path / "straight")[-1]["images_per_s"]}


def test_resume_refuses_a_different_model(tmp_path):
  config = tiny_config("pix2pix", num_train_steps=1, checkpoint_every_steps=1, eval_every_steps=0)
  train_lib.train_and_evaluate(config, tmp_path)
  config.ngf = 8
  with pytest.raises(ValueError, match=r"another architecture \(ngf: saved 4, now 8\)"):
    train_lib.train_and_evaluate(config, tmp_path)
  config.ngf, config.batch_size = 4, 4
  with pytest.raises(ValueError, match=r"batch_size: saved 2, now 4.*allow_config_change"):
    train_lib.train_and_evaluate(config, tmp_path)
  assert sorted(p.name for p in (tmp_path / "checkpoints").iterdir()) == ["1"]  # untouched
  assert json.loads((tmp_path / "config.json").read_text())["batch_size"] == 2


def _train_cli(tmp_path, *overrides):
  cmd = [sys.executable, "train.py", "--config", "configs/quickstart.py", "--workdir", str(tmp_path / "run"), *overrides]
  return subprocess.run(cmd, cwd=REPO, capture_output=True, text=True, timeout=300)


@pytest.mark.parametrize("override,expected", [
    ("--config.lamda_L1=10", "--config.lamda_L1=10: the config has no field 'lamda_L1'; did you mean 'lambda_L1'?"),
    ("--config.data.nme=x", "--config.data.nme=x: config.data has no field 'nme'; did you mean 'data.name'?"),
    ("--config.num_train_steps=0", "config.num_train_steps=0: give a number of steps > 0, or -1 to train all the epochs"),
])
def test_cli_config_mistakes_are_one_line(tmp_path, override, expected):
  result = _train_cli(tmp_path, override)
  assert result.returncode != 0
  assert result.stderr.strip().splitlines() == [result.stderr.strip()] and expected in result.stderr, result.stderr
  assert not (tmp_path / "run").exists()


def test_cli_missing_config_file_lists_the_configs(tmp_path):
  cmd = [sys.executable, "train.py", "--config", "configs/nope.py", "--workdir", str(tmp_path / "run")]
  result = subprocess.run(cmd, cwd=REPO, capture_output=True, text=True, timeout=300)
  assert result.returncode != 0 and len(result.stderr.strip().splitlines()) == 1
  assert "--config configs/nope.py: no such file" in result.stderr and "pix2pix_maps.py, pix2pix_night2day.py, quickstart.py" in result.stderr


def test_config_command_lists_every_field_with_its_value_and_comment():
  result = subprocess.run([sys.executable, "-m", "gantx", "config", "configs/pix2pix_maps.py", "--config.lr=0.001"],
                          cwd=REPO, capture_output=True, text=True, timeout=300)
  assert result.returncode == 0, result.stderr
  lines = result.stdout.splitlines()
  row = lambda field: next(line for line in lines if line[2:].split(" ")[0] == field)
  assert row("lambda_L1").startswith("  lambda_L1") and "100.0" in row("lambda_L1") and "weight of L1" in row("lambda_L1")
  assert row("lr").startswith("* lr") and "0.001" in row("lr")  # overridden: marked
  assert row("data.name").startswith("* data.name") and "'maps'" in row("data.name")  # set by the file
  from gantx.config import base_config
  base = base_config("pix2pix")
  fields = [k for k, v in base.items() if not hasattr(v, "keys")] + [f"data.{k}" for k in base.data]
  assert all(any(line[2:].split(" ")[0] == f for line in lines) for f in fields)


def test_cli_missing_data_names_the_path_and_the_download_command(tmp_path):
  result = _train_cli(tmp_path, "--config.data.source=folder", "--config.data.name=facades",
                      f"--config.data.root={tmp_path / 'datasets'}")
  assert result.returncode != 0
  assert str(tmp_path / "datasets" / "facades") in result.stderr
  assert "python -m gantx.download facades" in result.stderr


def test_cli_image_size_the_generator_cannot_take(tmp_path):
  result = _train_cli(tmp_path, "--config.crop_size=48", "--config.load_size=48")
  assert result.returncode != 0
  assert "crop_size" in result.stderr and "multiples of 64" in result.stderr


def test_cli_invalid_value_names_the_field(tmp_path):
  result = _train_cli(tmp_path, "--config.norm=batchnorm")
  assert result.returncode != 0
  assert "config.norm='batchnorm'" in result.stderr
