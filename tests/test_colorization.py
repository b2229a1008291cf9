"""Colorization, as the official colorization model and data mode: Lab as scikit-image computes it,
any folder of colour photos trains (a grayscale one too, as upstream reads it), and samples,
translate and evaluate show and score RGB."""

import json
import warnings

import numpy as np
from conftest import tiny_config
from PIL import Image
from skimage import color

from gantx import evaluate, train as train_lib, translate
from gantx.data import images, lab


def _photo(rng, w, h):
  """A smooth colour field with noise (uint8 RGB): photo-like colours, not saturated noise."""
  y, x = np.linspace(0, 1, h)[:, None, None], np.linspace(0, 1, w)[None, :, None]
  corners = rng.uniform(0, 255, (4, 3))
  field = corners[0] * (1 - y) * (1 - x) + corners[1] * (1 - y) * x + corners[2] * y * (1 - x) + corners[3] * y * x
  return np.clip(field + rng.normal(0, 8, (h, w, 3)), 0, 255).astype(np.uint8)


def test_lab_is_scikit_images_and_goes_back():
  rng = np.random.default_rng(0)
  img = np.concatenate([_photo(rng, 40, 30), rng.integers(0, 256, (30, 40, 3), np.uint8),
                        np.full((30, 40, 3), 128, np.uint8), np.zeros((30, 40, 3), np.uint8)])
  np.testing.assert_allclose(lab.rgb_to_lab(img / 255.0), color.rgb2lab(img), rtol=0, atol=1e-9)
  some_lab = np.stack([rng.uniform(0, 100, 2000), rng.uniform(-120, 120, 2000), rng.uniform(-120, 120, 2000)], -1)
  with warnings.catch_warnings():  # scikit-image warns about the out-of-gamut colours it clips
    warnings.simplefilter("ignore")
    np.testing.assert_allclose(lab.lab_to_rgb(some_lab[None]), color.lab2rgb(some_lab[None]), rtol=0, atol=1e-9)
  np.testing.assert_allclose(lab.lab_to_rgb(lab.rgb_to_lab(img / 255.0)), img / 255.0, rtol=0, atol=1e-9)
  a, b = lab.split(img)  # the official example: A = L / 50 - 1, B = ab / 110
  assert a.shape == img.shape[:2] + (1,) and b.shape == img.shape[:2] + (2,) and a.dtype == b.dtype == np.float32
  assert -1 <= a.min() and a.max() <= 1 and np.abs(b).max() <= 1.2
  np.testing.assert_allclose(a[..., 0], color.rgb2lab(img)[..., 0] / 50 - 1, atol=1e-5)
  np.testing.assert_allclose(lab.to_rgb(a, b), images.to_float(img), atol=1e-4)  # float32 storage only


def test_a_folder_of_photos_trains_translates_and_evaluates_in_colour(tmp_path):
  rng = np.random.default_rng(1)
  for split, sizes in (("train", [(40, 30), (32, 32), (50, 36), (36, 44)]), ("test", [(32, 32), (48, 40)])):
    (tmp_path / "data" / "photos" / split).mkdir(parents=True)
    for i, (w, h) in enumerate(sizes):
      Image.fromarray(_photo(rng, w, h)).save(tmp_path / "data" / "photos" / split / f"{i}.png")
  Image.fromarray(_photo(rng, 40, 40)[..., 0]).save(tmp_path / "data" / "photos" / "train" / "gray.png")  # mode L
  config = tiny_config("colorization", num_train_steps=2, eval_every_steps=2,
                       checkpoint_every_steps=2, **{"data.source": "folder", "data.root": str(tmp_path / "data"),
                                                    "data.name": "photos"})
  train_lib.train_and_evaluate(config, tmp_path / "run")
  record = [json.loads(line) for line in (tmp_path / "run" / "metrics.jsonl").read_text().splitlines()][-1]
  assert {"L1_G", "PSNR_G", "SSIM_G", "sharpness_G", "G_L1", "G_GAN"} <= set(record)
  grid = np.asarray(Image.open(tmp_path / "run" / "samples" / "G_0000002.png"))
  assert grid.shape[-1] == 3 and grid.shape[1] > 3 * 32  # input (lightness) | output (RGB) | target (RGB)

  metrics, columns = evaluate.evaluate(  # the target column is the test photo itself, through Lab and back
      config, *_state(tmp_path / "run"), _eval_set(config), {"G": evaluate.make_translator(_module(config), False)},
      __import__("jax").random.key(0))
  (label_a, a), (label_fake, fake), (label_b, target) = columns["G"]
  assert (label_a, label_fake, label_b) == ("real_A", "fake_B", "real_B")
  assert a.shape[-1] == 1 and fake.shape[-1] == 3 and target.shape[-1] == 3
  photo = np.asarray(Image.open(tmp_path / "data" / "photos" / "test" / "0.png"))  # 32x32: no resize
  np.testing.assert_allclose(target[0], images.to_float(photo), atol=1e-4)
  assert metrics["L1_G"] > 0 and np.isfinite(metrics["PSNR_G"])

  gen = translate.from_workdir(tmp_path / "run")
  rows, _ = translate.translate(gen, tmp_path / "data" / "photos" / "test", tmp_path / "out", progress=False)
  real = Image.open(tmp_path / "out" / rows[0]["real"])
  fake = Image.open(tmp_path / "out" / rows[0]["fake"])
  assert real.mode == "L" and fake.mode == "RGB" and fake.size == real.size == (32, 32)
  lightness = lab.rgb_to_lab(np.asarray(fake) / 255.0)[..., 0]  # the colourised photo keeps the input's lightness
  want = lab.rgb_to_lab(photo / 255.0)[..., 0]
  assert np.mean(np.abs(lightness - want)) < 3.0  # in L units (0..100); gamut clipping moves a few pixels
  # As an official file: a 1 -> 2 channel generator is the colorization model's, translated the same way.
  from gantx import convert
  (pth,) = [p for p in convert.export_run(str(tmp_path / "run"), str(tmp_path / "pth")) if p.endswith("net_G.pth")]
  assert translate.from_pth(pth).config.model == "colorization"
  from gantx import checkpointing
  official = translate.from_pth(pth, checkpointing.run_config(tmp_path / "run"))  # the run's test-time settings
  again, _ = translate.translate(official, tmp_path / "data" / "photos" / "test", tmp_path / "again", progress=False)
  np.testing.assert_array_equal(np.asarray(Image.open(tmp_path / "again" / again[0]["fake"])), np.asarray(fake))


def test_the_built_in_data_colours_offline(tmp_path):
  config = tiny_config("colorization", num_train_steps=1,
                       eval_every_steps=1)
  train_lib.train_and_evaluate(config, tmp_path)
  record = [json.loads(line) for line in (tmp_path / "metrics.jsonl").read_text().splitlines()][-1]
  assert {"L1_G", "PSNR_G", "SSIM_G"} <= set(record)


def _state(workdir):
  from gantx import checkpointing
  _, _, state = checkpointing.load_run(workdir)
  return state["params"], state["batch_stats"]


def _eval_set(config):
  from gantx import data
  return data.make_eval_set(config)


def _module(config):
  from gantx import state as state_lib
  return state_lib.build_networks(config, 1).modules["G"]
