"""Every file in configs/ runs as its docstring says, on a tiny stand-in of the data layout it reads.

A new config joins by itself (the matrix is configs/*.py). For each, the commands of its docstring
run as written (tests/commands.py), in a folder where they find what a user's folder has:
- its `python -m gantx.download ...` command, pointed (--url) at an archive in the official layout
  written here: aligned A|B files in train/ val/ (test/) for pix2pix, unaligned trainA/ trainB/
  testA/ testB/ of images of several sizes for CycleGAN (upstream resizes them all: resize_and_crop);
- its `python train.py ...` command with only what makes it small added (widths, image counts,
  steps): two steps with the step-0 evaluation and a checkpoint at each step, then the same command
  resumed to a third step;
- `translate` and `evaluate` of the result (`python -m gantx ...`);
- where the docstring says tfds works, the same two steps on a prepared tfds `cycle_gan/<name>`
  written here without TensorFlow (tests/tfds_data.py).
"""

from __future__ import annotations

import ast
import io
import json
import pathlib

import numpy as np
import pytest
from commands import run
from test_download import make_tar
from conftest import REPO
from PIL import Image

from gantx import config as config_lib

CONFIGS = sorted(pathlib.Path(REPO, "configs").glob("*.py"))
# Widths, image counts (the eval set, the built-in data, CycleGAN's history pool) and steps: all that the
# tests change. The images keep the configs' sizes.
SMALL = "--config.ngf=4 --config.ndf=4 --config.num_eval_images=2 --config.data.num_train=8 --config.data.num_test=2"
SMALL_POOL = " --config.pool_size=4"  # cycle_gan: 4 images instead of 50 (2 x 40 MB of state at 256x256)


def _docstring_commands(path: pathlib.Path) -> list[str]:
  doc = ast.get_docstring(ast.parse(path.read_text()))
  return [line.strip() for line in doc.splitlines() if line.strip().startswith("python ")]


def _png(rng, w: int, h: int) -> bytes:
  buffer = io.BytesIO()
  Image.fromarray(rng.integers(0, 256, (h, w, 3), np.uint8)).save(buffer, format="PNG")
  return buffer.getvalue()


def _archive(path: pathlib.Path, name: str, model: str) -> str:
  """A .tar.gz in the official layout of data set `name` for `model`; its file:// URL."""
  rng = np.random.default_rng(0)
  if model == "pix2pix":  # A|B files of two 24x16 halves; facades has a test/ split, the others val/ only
    splits = {"train": 4, "val": 2, **({"test": 2} if name == "facades" else {})}
    members = {f"{name}/{split}/{i}.png": _png(rng, 48, 16) for split, n in splits.items() for i in range(n)}
  else:  # images of several sizes in every domain: resize_and_crop makes them one
    sizes = [(24, 24), (40, 28), (30, 20)]
    members = {f"{name}/{split}/{i}.png": _png(rng, *sizes[i % 3])
               for split, n in (("trainA", 4), ("trainB", 3), ("testA", 2), ("testB", 2)) for i in range(n)}
  return make_tar(path, members)


def _ok(result, *expected: str) -> str:
  assert result.returncode == 0, result.stderr[-3000:]
  for text in expected:
    assert text in result.stdout, (text, result.stdout[-3000:])
  return result.stdout


def _train(sandbox: pathlib.Path, command: str, model: str, extra: str = "", resume: bool = True) -> pathlib.Path:
  """Trains 2 steps (evaluating at 0 and 2, a checkpoint at 2), resumes to 3; checks what a user
  looks at; the workdir."""
  workdir = sandbox / command.split("--workdir")[1].split()[0]
  small = SMALL + (SMALL_POOL if model == "cycle_gan" else "")
  first = _ok(run(f"{command} {small} {extra} --config.num_train_steps=2", sandbox), "Finished step 2")
  held_out = "cycle_L1_A" if model == "cycle_gan" else "L1_G"
  assert f"step 0 (epoch 0/" in first and held_out in first.split("step 0 (epoch 0/")[1].splitlines()[0]
  records = [json.loads(line) for line in (workdir / "metrics.jsonl").read_text().splitlines()]
  assert [r["step"] for r in records] == [0, 2] and all(held_out in r for r in records)
  assert (workdir / "checkpoints" / "2").is_dir() and (workdir / "losses.png").stat().st_size > 1000
  if resume:
    _ok(run(f"{command} {small} {extra} --config.num_train_steps=3", sandbox), "Resumed from", "at step 2",
        "Finished step 3")
  return workdir


def _one_process_per_model(path: pathlib.Path):
  """The config as a test parameter, in the xdist group of its model: the configs of a model share
  their compiled steps and translators (one StepSpec and network per model at these sizes), so they
  run in one test process, which compiles each program once (--dist loadgroup, pyproject.toml)."""
  model = config_lib.load_file(str(path)).model
  return pytest.param(path, id=path.stem, marks=pytest.mark.xdist_group(f"configs_{model}"))


@pytest.mark.parametrize("path", [_one_process_per_model(p) for p in CONFIGS])
def test_each_config_runs_as_its_docstring_says(path, tmp_path):
  config = config_lib.load_file(str(path))
  commands = _docstring_commands(path)
  train = [c for c in commands if c.startswith("python train.py")]
  assert len(train) == 1 and f"--config configs/{path.name}" in train[0], commands
  sandbox = tmp_path
  (sandbox / "configs").symlink_to(pathlib.Path(REPO, "configs"))
  for command in commands:
    if command.startswith("python -m gantx.download"):
      url = _archive(tmp_path / "archive.tar.gz", config.data.name, config.model)
      _ok(run(f"{command} --url {url}", sandbox), f"{config.data.name}:")
  if config.model == "colorization":  # any colour photos, in the folders its docstring names (of several sizes)
    rng = np.random.default_rng(0)
    for split, n in (("train", 4), ("test", 2)):
      folder = sandbox / config.data.root / config.data.name / split
      folder.mkdir(parents=True)
      for i in range(n):
        (folder / f"{i}.png").write_bytes(_png(rng, 24 + 8 * i, 20 + 4 * i))
  if config.data.source == "folder":
    assert (sandbox / config.data.root / config.data.name).is_dir(), "the docstring's download made no data set"
  workdir = _train(sandbox, train[0], config.model)

  test_split = {"cycle_gan": "testA", "colorization": "test"}.get(config.model, "val")
  test_images = sandbox / config.data.root / config.data.name / test_split
  if config.data.source == "builtin":  # a folder of the built-in data's test images
    test_images = sandbox / "photos"
    test_images.mkdir()
    Image.new("RGB", (config.crop_size, config.crop_size), (0, 85, 255)).save(test_images / "label_map.png")
  n = len(list(test_images.iterdir()))
  _ok(run(f"python -m gantx translate --workdir {workdir} --input {test_images} --output out", sandbox),
      f"Translated {n} image")
  assert len(list((sandbox / "out" / "images").glob("*_fake.png"))) == n
  evaluated = _ok(run(f"python -m gantx evaluate --workdir {workdir} --num_test 2", sandbox), "metrics.json")
  saved = json.loads((workdir / "eval" / "3" / "metrics.json").read_text())
  assert saved["step"] == 3 and saved["num_test"] == 2 and ("cycle_L1_A" in saved or "L1_G" in saved), evaluated

  if "--config.data.source=tfds" in ast.get_docstring(ast.parse(path.read_text())):
    from tfds_data import write_cycle_gan
    write_cycle_gan(sandbox / "tfds", config.data.name)
    tfds_command = train[0].replace(f"--workdir {workdir.relative_to(sandbox)}", "--workdir runs/tfds")
    _train(sandbox, f"{tfds_command} --config.data.source=tfds --config.data.root=tfds", config.model, resume=False)


def test_every_config_is_in_the_readme_table():
  readme = pathlib.Path(REPO, "README.md").read_text()
  assert [p.name for p in CONFIGS if f"`{p.name}`" not in readme] == []
