"""Using trained models: translate, test-time modes, HTML pages, evaluate, jax.export, .pth round trips."""

import json
import pathlib
import subprocess
import sys

import jax
import numpy as np
import pytest
from PIL import Image

from conftest import REPO, tiny_config
from gantx import convert, evaluate, export, inception, pth, train, translate
from gantx.data import BadImageError


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
  """Two-step runs of both models (tiny), with a checkpoint at step 2. The pix2pix U-Net has a
  dropout level (unet_64; unet_32 has none) and a wide init, so test-time modes show in 8 bits."""
  out = {}
  for model in ("pix2pix", "cycle_gan"):
    workdir = tmp_path_factory.mktemp(model)
    config = tiny_config(model, num_train_steps=2, checkpoint_every_steps=2, eval_every_steps=2, log_every_steps=1)
    if model == "pix2pix":
      config.netG, config.load_size, config.crop_size, config.init_gain = "unet_64", 72, 64, 0.3
    train.train_and_evaluate(config, workdir)
    out[model] = workdir
  return out


def _write_images(folder: pathlib.Path, sizes) -> list[pathlib.Path]:
  rng = np.random.default_rng(0)
  paths = []
  for i, (w, h) in enumerate(sizes):
    path = folder / ("sub" if i % 2 else "") / f"img{i}.png"
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(rng.integers(0, 256, (h, w, 3), np.uint8)).save(path)
    paths.append(path)
  return paths


def test_translate_folder_writes_every_image_and_the_page(runs, tmp_path):
  _write_images(tmp_path / "in", [(32, 32), (48, 40), (20, 20)])
  (tmp_path / "in" / "notes.txt").write_text("not an image")
  gen = translate.from_workdir(runs["cycle_gan"], "BtoA")
  assert gen.name == "G_B"
  rows, skipped = translate.translate(gen, tmp_path / "in", tmp_path / "out", batch_size=2, progress=False)
  assert [r["name"] for r in rows] == ["img0", "img2", "sub_img1"]  # sorted paths, folders flattened
  assert skipped == {}
  page = (tmp_path / "out" / "index.html").read_text()
  for r in rows:
    for key in ("real", "fake"):
      image = Image.open(tmp_path / "out" / r[key])
      assert image.size == (32, 32)  # resize_and_crop at test time: crop_size x crop_size
      assert r[key] in page


def test_pix2pix_test_time_modes(runs, tmp_path):
  """Default (paper): dropout on, per-image batch statistics; eval: running averages. Both are
  independent of the batch size, and the default repeats with the same seed. Another batch size
  changes only float rounding (convolutions block their sums by batch), which the 8-bit output
  shows as one level on a few pixels; other dropout masks change much more."""
  _write_images(tmp_path / "in", [(32, 32)] * 3)
  gen = translate.from_workdir(runs["pix2pix"])

  def fakes(out, **kw):
    translate.translate(gen, tmp_path / "in", tmp_path / out, progress=False, **kw)
    return np.stack([np.asarray(Image.open(tmp_path / out / "images" / f"img{i}_fake.png")) if i != 1 else
                     np.asarray(Image.open(tmp_path / out / "images" / "sub_img1_fake.png")) for i in range(3)]).astype(int)

  def assert_rounding_apart(a, b):
    assert np.abs(a - b).max() <= 1 and np.mean(a != b) < 1e-3

  default = fakes("a", batch_size=3)
  np.testing.assert_array_equal(fakes("a2", batch_size=3), default)
  assert_rounding_apart(fakes("b", batch_size=1), default)
  assert np.abs(fakes("c", batch_size=3, seed=123) - default).mean() > 1  # other dropout masks
  evaluated = fakes("d", batch_size=3, eval_mode=True)
  assert_rounding_apart(fakes("e", batch_size=1, eval_mode=True, seed=5), evaluated)  # no randomness
  assert np.abs(evaluated - default).mean() > 1


def test_export_round_trip_equals_the_live_model(runs, tmp_path):
  gen = translate.from_workdir(runs["pix2pix"])
  x = np.random.default_rng(1).uniform(-1, 1, (3, 64, 64, 3)).astype(np.float32)
  key = jax.random.key(7)
  for eval_mode in (False, True):
    export.save(export.export_generator(gen, 64, 64, eval_mode), tmp_path / "g.jaxexport")
    loaded = export.load(tmp_path / "g.jaxexport")
    live = evaluate.make_translator(gen.module, eval_mode)(
        gen.variables["params"], gen.variables["batch_stats"], x, jax.vmap(lambda i: jax.random.fold_in(key, i))(np.arange(3)))
      # Weights become constants of the exported program, which XLA compiles differently (folding,
    # layouts): float32 rounding, amplified through the saturating U-Net (measured <= 7e-5).
    np.testing.assert_allclose(np.asarray(loaded.call(x, jax.random.key_data(key))), np.asarray(live), atol=2e-4, rtol=0)
    np.testing.assert_allclose(np.asarray(loaded.call(x[:1], jax.random.key_data(key))), np.asarray(live)[:1],
                               atol=2e-4, rtol=0)
  assert np.abs(np.asarray(live)).max() > 1e-3


def test_evaluate_writes_metrics_and_page(runs, tmp_path):
  weights = tmp_path / "pt_inception.pth"
  rng = np.random.default_rng(0)
  pth.save({k: rng.normal(0, 0.05, s).astype(np.float32) if len(s) > 1 else np.abs(rng.normal(1, 0.1, s)).astype(np.float32)
            for k, s in inception.expected_state_dict_shapes().items()}, weights)
  metrics, out = evaluate.evaluate_run(runs["pix2pix"], tmp_path / "p2p", num_test=3, fid_weights=str(weights))
  assert out == tmp_path / "p2p"
  saved = json.loads((tmp_path / "p2p" / "metrics.json").read_text())
  assert saved == pytest.approx(metrics)
  assert saved["step"] == 2 and saved["num_test"] == 3 and saved["FID_G"] > 0 and np.isfinite(saved["KID_G"])
  saved, _ = evaluate.evaluate_run(runs["cycle_gan"], tmp_path / "eval", num_test=3)
  for g in ("G_A", "G_B"):
    assert 0 < saved[f"L1_{g}"] < 2 and saved[f"PSNR_{g}"] > 0 and -1 <= saved[f"SSIM_{g}"] <= 1
  for side in "AB":  # the held-out cycle and identity L1 (lambda_identity 0.5)
    assert 0 < saved[f"cycle_L1_{side}"] < 2 and 0 < saved[f"idt_L1_{side}"] < 2
  page = (tmp_path / "eval" / "index.html").read_text()
  images = sorted(p.name for p in (tmp_path / "eval" / "images").iterdir())
  # Official names: real_A, fake_B, rec_A (G_A), real_B, fake_A, rec_B (G_B) for each of the 3 test images.
  assert images == [f"{i:04d}_{v}.png" for i in range(3) for v in ("fake_A", "fake_B", "real_A", "real_B", "rec_A", "rec_B")]
  assert "<th>reconstruction</th>" in page and "<th>target</th>" in page
  assert all(f"images/{name}" in page for name in images)
  with pytest.raises(FileNotFoundError, match="nothing.pth.*does not download"):
    evaluate.evaluate_run(runs["cycle_gan"], tmp_path / "eval2", num_test=2, fid_weights=str(tmp_path / "nothing.pth"))


def test_cli_evaluate_says_where_and_how_many_and_lists_the_steps(runs, tmp_path):
  cli = [sys.executable, "-m", "gantx", "evaluate", f"--workdir={runs['pix2pix']}"]
  done = subprocess.run(cli + ["--num_test=50"], cwd=REPO, capture_output=True, text=True)
  assert done.returncode == 0, done.stderr
  assert "--num_test 50: the test set has 4 images; evaluated 4" in done.stdout
  assert f"{runs['pix2pix'] / 'eval' / '2' / 'index.html'}" in done.stdout
  assert json.loads((runs["pix2pix"] / "eval" / "2" / "metrics.json").read_text())["num_test"] == 4
  bad = subprocess.run(cli + ["--step=123"], cwd=REPO, capture_output=True, text=True)
  assert bad.returncode != 0 and "No checkpoint of step 123" in bad.stderr and "it holds step 2." in bad.stderr
  assert len(bad.stderr.strip().splitlines()) == 1


def test_official_files_round_trip_into_a_new_run_that_trains(runs, tmp_path):
  """export_pth -> import_pth gives the same generator; train.py fine-tunes the imported run."""
  files = convert.export_run(str(runs["pix2pix"]), str(tmp_path / "pth"))
  assert [pathlib.Path(p).name for p in files] == ["latest_net_G.pth", "latest_net_D.pth"]
  config = tiny_config("pix2pix", num_train_steps=1, eval_every_steps=1, checkpoint_every_steps=1, netG="unet_64",
                       load_size=72, crop_size=64)
  convert.import_run(config, str(tmp_path / "imported"), {"G": files[0], "D": files[1]})
  a, b = translate.from_workdir(runs["pix2pix"]), translate.from_workdir(tmp_path / "imported")
  assert jax.tree.all(jax.tree.map(np.array_equal, a.variables, b.variables))
  with pytest.raises(FileExistsError):
    convert.import_run(config, str(tmp_path / "imported"), {"G": files[0]})
  state = train.train_and_evaluate(config, tmp_path / "imported")
  assert int(state.step) == 1
  wrong = tiny_config("pix2pix", ngf=8, netG="unet_64", load_size=72, crop_size=64)
  with pytest.raises(convert.ConversionError, match=r"ngf=4.*config\.ngf=8"):
    convert.import_run(wrong, str(tmp_path / "wrong"), {"G": files[0]})
  with pytest.raises(convert.ConversionError, match="holds a discriminator"):
    translate.from_pth(files[1])


def test_a_bad_image_stops_the_folder_unless_skipped_and_changes_no_other_output(runs, tmp_path):
  paths = _write_images(tmp_path / "in", [(32, 32)] * 3)
  good = paths[1].read_bytes()
  paths[1].write_bytes(good[: len(good) // 2])  # truncated
  gen = translate.from_workdir(runs["pix2pix"])
  with pytest.raises(BadImageError, match=rf"{paths[1]}.*--skip_bad_images"):
    translate.translate(gen, tmp_path / "in", tmp_path / "out", progress=False)
  rows, skipped = translate.translate(gen, tmp_path / "in", tmp_path / "out", batch_size=1, progress=False,
                                      skip_bad_images=True)
  assert [r["name"] for r in rows] == ["img0", "img2"] and list(skipped) == [str(paths[1])]
  assert "Cannot decode" in skipped[str(paths[1])]
  paths[1].write_bytes(good)  # the same folder, whole: the other images' outputs are the same
  translate.translate(gen, tmp_path / "in", tmp_path / "whole", batch_size=1, progress=False)
  for name in ("img0", "img2"):
    np.testing.assert_array_equal(np.asarray(Image.open(tmp_path / "out" / "images" / f"{name}_fake.png")),
                                  np.asarray(Image.open(tmp_path / "whole" / "images" / f"{name}_fake.png")))


def test_bad_inputs_are_named(runs, tmp_path):
  gen = translate.from_workdir(runs["pix2pix"])
  (tmp_path / "empty").mkdir()
  with pytest.raises(FileNotFoundError, match="empty"):
    translate.translate(gen, tmp_path / "empty", tmp_path / "out", progress=False)
  with pytest.raises(FileNotFoundError, match="missing.png"):
    translate.translate(gen, tmp_path / "missing.png", tmp_path / "out", progress=False)
  with pytest.raises(ValueError, match="only direction AtoB"):
    translate.from_workdir(runs["pix2pix"], "BtoA")
  with pytest.raises(FileNotFoundError, match="not a gantx work directory"):
    translate.from_workdir(tmp_path)


def test_cli_translate_and_usage_errors(runs, tmp_path):
  _write_images(tmp_path / "in", [(32, 32)])
  cli = [sys.executable, "-m", "gantx"]
  done = subprocess.run(cli + ["translate", f"--workdir={runs['cycle_gan']}", f"--input={tmp_path / 'in'}",
                               f"--output={tmp_path / 'out'}", "--eval=true"], cwd=REPO, capture_output=True, text=True)
  assert done.returncode == 0, done.stderr
  assert (tmp_path / "out" / "images" / "img0_fake.png").exists()
  bad = subprocess.run(cli + ["translate", f"--workdir={runs['cycle_gan']}"], cwd=REPO, capture_output=True, text=True)
  assert bad.returncode != 0 and "translate needs --input --output" in bad.stderr
  bad = subprocess.run(cli + ["paint"], cwd=REPO, capture_output=True, text=True)
  assert bad.returncode != 0 and "Usage: python -m gantx" in bad.stderr


def test_import_needs_no_data_set_and_resumes_with_per_device_batch(runs, tmp_path):
  files = convert.export_run(str(runs["pix2pix"]), str(tmp_path / "pth"))
  # A folder config whose data set is not downloaded: importing only needs the networks.
  away = tiny_config("pix2pix", netG="unet_64", load_size=72, crop_size=64, **{"data.source": "folder",
                     "data.root": str(tmp_path / "no_data")})
  convert.import_run(away, str(tmp_path / "away"), {"G": files[0]})
  assert translate.from_workdir(tmp_path / "away").name == "G"
  # per_device_batch_size resolves to the same global batch as train.py's, so training resumes.
  per_device = tiny_config("pix2pix", netG="unet_64", load_size=72, crop_size=64, batch_size=1,
                           per_device_batch_size=2, num_train_steps=1, eval_every_steps=5)
  convert.import_run(per_device, str(tmp_path / "pd"), {"D": files[1]})
  assert int(train.train_and_evaluate(per_device, tmp_path / "pd").step) == 1
  # A PatchGAN file fits netD='n_layers' with n_layers_D=3 as well as 'basic'.
  convert.import_run(tiny_config("pix2pix", netG="unet_64", load_size=72, crop_size=64, netD="n_layers"),
                     str(tmp_path / "nl"), {"D": files[1]})
