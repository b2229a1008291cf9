"""Every command of the README's ```bash blocks runs as written, with only paths and sizes changed.

The commands run in order (tests/commands.py), in a folder that holds what a user's would: the
configs, folders of photos, the data sets and pretrained models fetched from a local HTTP server
that serves archives and .pth files in the official layouts (the README's own download commands,
pointed at it with --url or $GANTX_PRETRAINED_BASE_URL), and a CycleGAN run for the commands that
translate with one. Sizes (widths, image counts, steps, seeds) are appended where a command trains.
A README edit that breaks a command, or adds one this file cannot run, fails here.
"""

from __future__ import annotations

import functools
import http.server
import pathlib
import re
import shlex
import threading

import numpy as np
import pytest
from commands import run
from test_configs import _png
from test_download import make_tar
from conftest import REPO, STORED_REFERENCES

from gantx import pretrained

README = pathlib.Path(REPO, "README.md")
# Commands of the README that are not run here, and why.
NOT_RUN = {
    "python3.12 -m venv .venv && .venv/bin/pip install -e .[dev] && .venv/bin/python -m pytest -n logical tests":
        "the test suite itself (CI runs it)",
    "python3.11 -m venv .venv-torch && .venv-torch/bin/pip install torch==2.13.0 numpy":
        "installs PyTorch, the optional reference tier (CI sets it up)",
    ".venv-torch/bin/python tests/make_references.py tests/references": "needs PyTorch (the optional tier)",
}
# What makes a training command small: widths, image counts, steps. Appended to train.py and study.
# And XLA's own convolutions, which compile 2-3x faster: the CPU's GEMM forms of these same networks
# at these same image sizes are what tests/test_configs.py runs (conv_impl 'auto', as users do).
SMALL = ("--config.ngf=4 --config.ndf=4 --config.num_train_steps=2 --config.num_eval_images=2"
         " --config.data.num_train=8 --config.data.num_test=2 --config.conv_impl=xla")


def readme_commands() -> list[str]:
  """The command lines of the README's ```bash blocks, in order: continuation lines joined, comment
  lines and comments dropped."""
  commands = []
  for block in re.findall(r"```bash\n(.*?)```", README.read_text(), re.S):
    for line in block.replace("\\\n", " ").splitlines():
      words = shlex.split(line, comments=True)
      if words:
        commands.append(" ".join(words))
  return commands


def _sized(command: str) -> str:
  """`command` with the sizes that make it small (the study's seeds, widths, steps, image counts)."""
  command = command.split(" && ")[-1].replace(".venv/bin/python", "python")  # the set-up of command 1 is done
  if command.startswith(("python train.py", "python -m gantx study --config", "python -m gantx import_pth")):
    ngf = "--config.ngf=2" if "facades_ft" in command else ""  # the served facades model is 2 wide
    command = re.sub(r"--seeds \d+", "--seeds 2", f"{command} {SMALL} {ngf}")
  return command


@pytest.fixture
def server(tmp_path):
  """A local HTTP server with the official layouts: pix2pix/datasets/facades.tar.gz, the unaligned
  horse2zebra, and the pretrained generators horse2zebra (a ResNet) and facades_label2photo (a
  U-Net) from the stored PyTorch references."""
  rng = np.random.default_rng(0)
  root = tmp_path / "served"
  archives = {
      "pix2pix/datasets/facades.tar.gz": {f"facades/{s}/{i}.jpg": _png(rng, 48, 24)
                                          for s, n in (("train", 4), ("val", 2), ("test", 2)) for i in range(n)},
      "cyclegan/datasets/horse2zebra.tar.gz": {f"horse2zebra/{s}/{i}.jpg": _png(rng, 24 + 4 * i, 24)
                                               for s in ("trainA", "trainB", "testA", "testB") for i in range(3)},
  }
  models = {"cyclegan/pretrained_models/horse2zebra.pth": "resnet9_instance.pth",
            "pix2pix/models-pytorch/facades_label2photo.pth": "unet256_batch_b1.pth"}
  for path in [*archives, *models]:
    (root / path).parent.mkdir(parents=True, exist_ok=True)
  for path, members in archives.items():
    make_tar(root / path, members)
  for path, name in models.items():
    (root / path).write_bytes((STORED_REFERENCES / "networks" / name).read_bytes())

  class Quiet(http.server.SimpleHTTPRequestHandler):
    def log_message(self, *args):
      pass

  httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), functools.partial(Quiet, directory=str(root)))
  threading.Thread(target=httpd.serve_forever, daemon=True).start()
  yield f"http://127.0.0.1:{httpd.server_address[1]}"
  httpd.shutdown()
  httpd.server_close()


def _ok(command: str, cwd) -> str:
  result = run(command, cwd)
  assert result.returncode == 0, (command, result.stderr[-3000:])
  return result.stdout


def test_every_readme_command_runs_as_written(tmp_path, server, monkeypatch):
  monkeypatch.setenv(pretrained.BASE_URL_ENV, server)
  commands = readme_commands()
  assert len(commands) >= 25 and set(NOT_RUN) <= set(commands), [c for c in NOT_RUN if c not in commands]
  sandbox = tmp_path / "user"
  sandbox.mkdir()
  (sandbox / "configs").symlink_to(pathlib.Path(REPO, "configs"))
  rng = np.random.default_rng(1)
  for folder in ("photos", "horses", "zebras"):
    (sandbox / folder).mkdir()
    for i in range(2):
      (sandbox / folder / f"{i}.png").write_bytes(_png(rng, 32, 32))
  for side in ("photos_A", "photos_B"):  # two folders of the same scenes, for combine
    (sandbox / side / "train").mkdir(parents=True)
    for i in range(2):
      (sandbox / side / "train" / f"{i}.png").write_bytes(_png(rng, 16, 16))
  for split in ("trainA", "trainB", "testA", "testB"):  # images paired by position, for make_aligned
    (sandbox / "datasets" / "pairs" / split).mkdir(parents=True)
    for i in range(2):
      (sandbox / "datasets" / "pairs" / split / f"{i}.png").write_bytes(_png(rng, 16, 16))
  # The CycleGAN run that the README's translate --direction BtoA uses, as its config's docstring trains it.
  _ok(f"python -m gantx.download horse2zebra --root ./datasets --url {server}/cyclegan/datasets/horse2zebra.tar.gz",
      sandbox)
  _ok(f"python train.py --config configs/cyclegan_horse2zebra.py --workdir runs/h2z {SMALL} --config.pool_size=4",
      sandbox)

  ran = []
  for command in commands:
    if command in NOT_RUN:
      continue
    if command.startswith("python -m gantx.download"):
      name = shlex.split(command)[3]
      command += f" --url {server}/pix2pix/datasets/{name}.tar.gz"
    _ok(_sized(command), sandbox)
    ran.append(command)

  # What the commands left, as the README says.
  assert (sandbox / "runs" / "quickstart" / "samples" / "index.html").is_file()
  assert (sandbox / "runs" / "facades" / "checkpoints" / "2").is_dir()
  assert (sandbox / "runs" / "facades_b4" / "checkpoints" / "2").is_dir()
  assert (sandbox / "runs" / "ablation" / "study.json").is_file() and (sandbox / "runs" / "ablation" / "index.html").is_file()
  assert (sandbox / "runs" / "replica1" / "checkpoints").is_dir() and (sandbox / "runs" / "report" / "study.json").is_file()
  assert (sandbox / "datasets" / "mine" / "train" / "0.png").is_file() and (sandbox / "datasets" / "pairs" / "train").is_dir()
  assert (sandbox / "out" / "index.html").is_file() and (sandbox / "facades_G.jaxexport").is_file()
  assert (sandbox / "checkpoints" / "horse2zebra_pretrained" / "latest_net_G.pth").is_file()
  assert (sandbox / "runs" / "facades_ft" / "checkpoints" / "2").is_dir()
  assert (sandbox / "checkpoints" / "facades_gantx" / "latest_net_G.pth").is_file()
  assert len(ran) == len(commands) - len(NOT_RUN)
