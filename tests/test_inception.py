"""The FID Inception against a PyTorch build of pytorch-fid's network, and its weight import."""

import os
import subprocess

import jax
import numpy as np
import pytest

import reference_data
from gantx import inception, metrics

HERE = os.path.dirname(os.path.abspath(__file__))
TOL = 1e-4  # max abs difference of pool3 features (float32, features O(1))


def fake_state_dict(seed=0):
  """Random arrays under every key of pytorch-fid's state dict, extras included."""
  rng = np.random.default_rng(seed)
  sd = {k: rng.standard_normal(s).astype(np.float32) for k, s in inception.expected_state_dict_shapes().items()}
  sd["fc.weight"], sd["fc.bias"] = np.zeros((1008, 2048), np.float32), np.zeros(1008, np.float32)
  sd["Mixed_5b.branch1x1.bn.num_batches_tracked"] = np.zeros((), np.int64)
  return sd


def test_parameter_count_and_tree():
  """21,785,568 trainable numbers: torchvision's inception_v3 (27,161,264) less fc (2,049,000)
  and AuxLogits (3,326,696). The import fills exactly the module's variable tree."""
  shapes = inception.expected_state_dict_shapes()
  assert len(shapes) == 94 * 5
  assert sum(np.prod(s) for k, s in shapes.items() if "running" not in k) == 21_785_568
  variables = inception.params_from_state_dict(fake_state_dict())
  random = inception.random_inception_variables(0)
  as_shapes = lambda t: jax.tree_util.tree_map(np.shape, t)
  assert as_shapes(variables) == as_shapes(random)
  kernel = variables["params"]["Mixed_6b"]["branch7x7_2"]["conv"]["kernel"]
  assert kernel.shape == (1, 7, 128, 128)  # (kh, kw, in, out) from (out, in, kh, kw) = (128, 128, 1, 7)


def test_state_dict_errors_name_the_key():
  sd = fake_state_dict()
  sd["Mixed_6c.branch7x7_2.conv.weight"] = sd["Mixed_6c.branch7x7_2.conv.weight"].transpose(0, 1, 3, 2)
  with pytest.raises(ValueError, match=r"'Mixed_6c\.branch7x7_2\.conv\.weight' has shape \(160, 160, 7, 1\), "
                     r"expected \(160, 160, 1, 7\)"):
    inception.params_from_state_dict(sd)
  sd = fake_state_dict()
  del sd["Mixed_7c.branch_pool.bn.running_var"]
  with pytest.raises(ValueError, match=r"missing key 'Mixed_7c\.branch_pool\.bn\.running_var'"):
    inception.params_from_state_dict(sd)
  sd = fake_state_dict()
  sd["AuxLogits.conv0.conv.weight"] = np.zeros((128, 768, 1, 1), np.float32)  # torchvision's Inception
  with pytest.raises(ValueError, match="unexpected keys.*AuxLogits"):
    inception.params_from_state_dict(sd)


def test_missing_weight_file_raises_with_path_and_url(tmp_path):
  path = tmp_path / "nowhere" / inception.WEIGHTS_FILE
  with pytest.raises(FileNotFoundError) as err:
    inception.load_pt_inception(path)
  message = str(err.value)
  assert str(path) in message and inception.WEIGHTS_URL in message and "does not download" in message


def test_small_input_raises():
  with pytest.raises(ValueError, match="smaller than 75x75"):
    inception.FIDInceptionV3().apply(inception.random_inception_variables(0), np.zeros((1, 74, 80, 3), np.float32))


def _reference_variables():
  """The weights tests/torch_inception.py gave PyTorch's network, drawn again (reference_data)."""
  shapes = dict(inception.expected_state_dict_shapes(), **{"fc.weight": (1008, 2048), "fc.bias": (1008,)})
  return inception.params_from_state_dict(reference_data.inception_state_dict(shapes))


def test_matches_pytorch(references, subtests):
  """pytorch-fid's network in PyTorch (tests/torch_inception.py, stored or run now) and gantx's, on
  the same random weights and images: three checks."""
  ref = dict(np.load(references / "inception.npz"))
  images = reference_data.inception_images()
  variables = _reference_variables()

  with subtests.test("pool3, 139x107: Mixed_7 maps are 3x2, weights and BN stats random"):
    out = np.asarray(jax.jit(inception.FIDInceptionV3().apply)(variables, images["x"]))
    assert np.abs(ref["pool3"]).max() > 1.0  # not vanishing: the comparison has teeth
    np.testing.assert_allclose(out, ref["pool3"], rtol=0, atol=TOL)

  with subtests.test("inception_features: pytorch-fid's resize to 299 and 2x - 1, batches of 1"):
    feats = metrics.inception_features(variables, 2 * images["small"] - 1, batch_size=1)
    assert feats.shape == (2, 2048) and feats.dtype == np.float64
    np.testing.assert_allclose(feats, ref["small_299"], rtol=0, atol=TOL)

  with subtests.test("jax.image.resize(antialias=False) is F.interpolate(bilinear, align_corners=False)"):
    for key in [k for k in ref if k.startswith("resize_")]:
      h, w = map(int, key[len("resize_"):].split("x"))
      out = jax.image.resize(images["resize_in"], (1, h, w, 3), "bilinear", antialias=False)
      np.testing.assert_allclose(np.asarray(out), ref[key], rtol=0, atol=1e-6, err_msg=key)


@pytest.mark.torch
def test_load_pt_inception_reads_both_torch_save_formats(torch_python, tmp_path):
  """pytorch-fid's weight file predates torch's zip format: both formats, written by torch.save, read
  back as the weights the state dict holds."""
  subprocess.run([torch_python, os.path.join(HERE, "torch_inception.py"), str(tmp_path / "ref.npz"), "--pth",
                  str(tmp_path)], check=True, capture_output=True, timeout=300)
  variables = _reference_variables()
  for name in ("zip.pth", "legacy.pth"):
    loaded = inception.load_pt_inception(tmp_path / name)
    jax.tree_util.tree_map(np.testing.assert_array_equal, loaded, variables)
