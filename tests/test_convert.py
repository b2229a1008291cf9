"""Official PyTorch checkpoints <-> gantx: outputs equal to PyTorch's, exact round trips, clear errors.

The PyTorch side runs in a side interpreter (`torch_python` fixture) with the official networks of
benchmarks/torch_reference.py (official state-dict keys); gantx reads the files without torch.
"""

import json
import subprocess
import sys

import jax
import numpy as np
import pytest

from gantx import convert, pth

HERE = __file__.rsplit("/", 1)[0]
# Every official architecture, norm and dropout setting; file layouts legacy (torch < 1.6, as the
# official pretrained models) and zip, one under a DataParallel 'module.' prefix. Tiny widths.
CASES = [
    dict(name="unet128_batch_dropout", kind="G", net="unet_128", norm="batch", dropout=True, input_nc=3, output_nc=3, ngf=4, size=128),
    dict(name="unet256_batch", kind="G", net="unet_256", norm="batch", dropout=False, input_nc=3, output_nc=3, ngf=2, size=256, legacy=True),
    dict(name="unet128_instance", kind="G", net="unet_128", norm="instance", dropout=False, input_nc=1, output_nc=3, ngf=4, size=128),
    dict(name="resnet9_instance", kind="G", net="resnet_9blocks", norm="instance", dropout=False, input_nc=3, output_nc=3, ngf=4, size=32, prefix="module."),
    dict(name="resnet6_batch_dropout", kind="G", net="resnet_6blocks", norm="batch", dropout=True, input_nc=3, output_nc=1, ngf=4, size=32, legacy=True),
    dict(name="resnet6_none", kind="G", net="resnet_6blocks", norm="none", dropout=False, input_nc=3, output_nc=3, ngf=4, size=32),
    dict(name="basic_batch", kind="D", net="basic", norm="batch", dropout=False, input_nc=6, ngf=4, size=64),
    dict(name="basic_instance", kind="D", net="basic", norm="instance", dropout=False, input_nc=3, ngf=4, size=64, legacy=True),
    dict(name="nlayers4_none", kind="D", net="n_layers", n_layers_D=4, norm="none", dropout=False, input_nc=3, ngf=4, size=64),
    dict(name="pixel_batch", kind="D", net="pixel", norm="batch", dropout=False, input_nc=6, ngf=4, size=16, init_gain=1.0),
]
TOL = 1e-5  # max abs, float32


@pytest.fixture(scope="module")
def made(torch_python, tmp_path_factory):
  """Runs the PyTorch networks once for all cases: {name: (pth path, outputs npz)}."""
  folder = tmp_path_factory.mktemp("torch")
  (folder / "cases.json").write_text(json.dumps(CASES))
  subprocess.run([torch_python, f"{HERE}/torch_networks.py", "make", str(folder / "cases.json"), str(folder)], check=True)
  return folder


def _apply(module, variables, x, train):
  if train:
    out, _ = module.apply(variables, x, train=True, mutable=["batch_stats"])
    return np.asarray(out)
  return np.asarray(module.apply(variables, x, train=False))


def _expected_fields(case):
  fields = dict(kind=case["kind"], norm=case["norm"], input_nc=case["input_nc"])
  if case["kind"] == "G":
    fields.update(netG=case["net"], ngf=case["ngf"], output_nc=case["output_nc"])
    if case["net"].startswith("resnet"):
      fields["no_dropout"] = not case["dropout"]
  else:
    fields.update(netD=case["net"], ndf=case["ngf"])
    if case["net"] != "pixel":
      fields["n_layers_D"] = case.get("n_layers_D", 3)
  return fields


@pytest.mark.parametrize("case", CASES, ids=[c["name"] for c in CASES])
def test_outputs_equal_pytorch(made, case):
  state_dict = pth.load(made / f"{case['name']}.pth")
  detected = convert.detect(state_dict)
  assert detected == _expected_fields(case)
  base = None
  if case["net"].startswith("unet"):  # dropout is invisible in U-Net keys: the config says it
    from gantx.config import base_config
    base = base_config("pix2pix")
    base.no_dropout = not case["dropout"]
  module, channels = convert.network(detected, base)
  variables = convert.from_torch(state_dict, module, channels)
  ref = np.load(made / f"{case['name']}.npz")
  for mode in ("eval", "train"):
    if mode in ref:
      out = _apply(module, variables, ref["x"], mode == "train")
      assert out.shape == ref[mode].shape
      assert np.std(ref[mode]) > 1e-2, "the reference output is too small to compare"
      np.testing.assert_allclose(out, ref[mode], atol=TOL, rtol=0, err_msg=f"{case['name']} {mode}")


def test_export_loads_in_pytorch_and_round_trips(made, torch_python, tmp_path):
  """gantx -> .pth loads strictly in the official networks with the same outputs; .pth -> gantx is exact."""
  for case in CASES:
    state_dict = pth.load(made / f"{case['name']}.pth")
    module, channels = convert.network(convert.detect(state_dict))
    variables = convert.from_torch(state_dict, module, channels)
    exported = made / f"{case['name']}.exported.pth"
    convert.save_pth(variables, module, exported)
    again = convert.load_pth(exported, module, channels)
    assert jax.tree.all(jax.tree.map(np.array_equal, again, variables)), case["name"]
  subprocess.run([torch_python, f"{HERE}/torch_networks.py", "check", str(made / "cases.json"), str(made)], check=True)
  for case in CASES:
    exported = np.load(made / f"{case['name']}.exported.npz")
    assert exported["same_weights"], case["name"]
    np.testing.assert_allclose(exported["eval"], np.load(made / f"{case['name']}.npz")["eval"], atol=TOL, rtol=0)


def test_mismatched_files_name_the_key(made):
  state_dict = dict(pth.load(made / "resnet9_instance.pth"))
  module, channels = convert.network(convert.detect(state_dict))
  wrong = dict(state_dict, **{"module.model.10.conv_block.1.weight": np.zeros((4, 4, 3, 3), np.float32)})
  with pytest.raises(convert.ConversionError, match=r"model\.10\.conv_block\.1\.weight.*shape"):
    convert.from_torch(wrong, module, channels)
  missing = {k: v for k, v in state_dict.items() if k != "module.model.26.bias"}
  with pytest.raises(convert.ConversionError, match=r"Missing key 'model\.26\.bias'"):
    convert.from_torch(missing, module, channels)
  extra = dict(state_dict, **{"module.model.30.weight": np.zeros(3, np.float32)})
  with pytest.raises(convert.ConversionError, match=r"Unexpected key 'model\.30\.weight'"):
    convert.from_torch(extra, module, channels)
  d_module, d_channels = convert.network(convert.detect(pth.load(made / "basic_batch.pth")))
  with pytest.raises(convert.ConversionError, match=r"Missing key 'model\.0\.(weight|bias)'.*netG=resnet_9blocks"):
    convert.from_torch(state_dict, d_module, d_channels)  # a generator file for a discriminator
  with pytest.raises(convert.ConversionError, match="first key: 'fc.weight'"):
    convert.detect({"fc.weight": np.zeros((2, 2), np.float32)})


def test_old_instance_norm_buffers_are_ignored(made):
  """Pre-0.4 CycleGAN checkpoints carry InstanceNorm running stats; the official loader drops them."""
  state_dict = dict(pth.load(made / "resnet9_instance.pth"))
  old = dict(state_dict, **{"model.2.running_mean": np.zeros(4, np.float32), "model.2.running_var": np.ones(4, np.float32)})
  module, channels = convert.network(convert.detect(old))
  a = convert.from_torch(old, module, channels)
  b = convert.from_torch(state_dict, module, channels)
  assert jax.tree.all(jax.tree.map(np.array_equal, a, b))


def test_pth_reader_refuses_code(tmp_path):
  """A pickle that would call os.system is refused by name, as torch.load(weights_only=True) does."""
  import os
  import pickle

  class Evil:
    def __reduce__(self):
      return (os.system, ("echo owned",))

  path = tmp_path / "evil.pth"
  with open(path, "wb") as f:
    for obj in (0x1950A86A20F9469CFC6C, 1001, {"little_endian": True}, Evil(), []):
      pickle.dump(obj, f, protocol=2)
  with pytest.raises(pth.PthError, match=r"refusing to load (posix|os)\.system"):
    pth.load(path)
  (tmp_path / "short.pth").write_bytes(path.read_bytes()[:10])
  with pytest.raises(pth.PthError, match="short.pth"):
    pth.load(tmp_path / "short.pth")
  with pytest.raises(FileNotFoundError, match="nope.pth"):
    pth.load(tmp_path / "nope.pth")


def test_pth_reader_checks_bounds_and_round_trips_dtypes(tmp_path):
  """A tensor view past its storage is an error, never a read of other memory; every dtype the
  writer accepts (bfloat16 and big-endian input included) reads back equal."""
  storage = pth._Storage(np.dtype(np.float32), 4, np.arange(4, dtype=np.float32))
  assert pth._Tensor(storage, 1, (3,), (1,)).numpy().tolist() == [1, 2, 3]
  for offset, size, stride in ((2, (6,), (1,)), (0, (2, 2), (3, 1)), (-1, (2,), (1,)), (0, (2,), (-1,))):
    with pytest.raises(pth.PthError):
      pth._Tensor(storage, offset, size, stride).numpy()
  import ml_dtypes
  arrays = {"f": np.arange(6, dtype=">f4").reshape(2, 3), "b": np.arange(3, dtype=ml_dtypes.bfloat16),
            "i": np.array(5, np.int64), "u": np.arange(4, dtype=np.uint8), "t": np.array([True, False])}
  pth.save(arrays, tmp_path / "d.pth")
  back = pth.load(tmp_path / "d.pth")
  for k, v in arrays.items():
    assert back[k].dtype == v.dtype.newbyteorder("=") and back[k].shape == v.shape and np.array_equal(back[k], v), k
  raw = (tmp_path / "d.pth").read_bytes()
  (tmp_path / "cut.pth").write_bytes(raw[: len(raw) // 2])
  with pytest.raises(pth.PthError, match="cut.pth"):
    pth.load(tmp_path / "cut.pth")
