"""Official PyTorch checkpoints <-> gantx: outputs and batch-norm buffers equal to PyTorch's, exact
round trips, clear errors.

The PyTorch side (official networks of benchmarks/torch_reference.py, official state-dict keys) ran
in tests/torch_networks.py: its files are stored in tests/references/networks/ (`references`
fixture, "stored"), and rerun under a Python with torch when one is there ("live", marked torch).
gantx reads the files without torch.
"""

import json
import subprocess

import jax
import numpy as np
import pytest
from conftest import HERE
from reference_data import NETWORK_CASES, network_input

from gantx import convert, pth

CASES = NETWORK_CASES
TOL = 1e-5  # max abs, float32


@pytest.fixture(scope="module")
def made(references):
  return references / "networks"


def _apply(module, variables, x, train):
  if train:
    return module.apply(variables, x, train=True, mutable=["batch_stats"])
  return np.asarray(module.apply(variables, x, train=False)), None


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


def _module_and_variables(case, state_dict):
  detected = convert.detect(state_dict)
  base = None
  if case["net"].startswith("unet"):  # dropout is invisible in U-Net keys: the config says it
    from gantx.config import base_config
    base = base_config("pix2pix")
    base.no_dropout = not case["dropout"]
  module, channels = convert.network(detected, base)
  return detected, module, convert.from_torch(state_dict, module, channels)


def test_the_stored_references_are_of_these_cases():
  """tests/references/ was written for reference_data's cases: after changing them, rerun
  `.venv-torch/bin/python tests/make_references.py tests/references` (README)."""
  from conftest import STORED_REFERENCES
  from reference_data import STEP_CASES
  for sub, cases in (("networks", CASES), ("steps", STEP_CASES)):
    assert json.loads((STORED_REFERENCES / sub / "cases.json").read_text()) == cases, sub


@pytest.mark.parametrize("case", CASES, ids=[c["name"] for c in CASES])
def test_outputs_and_buffers_equal_pytorch(made, case):
  """eval and train-mode outputs; after the train-mode call, every batch-norm buffer as PyTorch
  updates it: running_mean, running_var (with the unbiased batch variance: at batch 1 the 2x2
  U-Net layers average 4 values, a factor 4/3 from the biased one) and num_batches_tracked."""
  state_dict = pth.load(made / f"{case['name']}.pth")
  detected, module, variables = _module_and_variables(case, state_dict)
  assert detected == _expected_fields(case)
  ref, x = np.load(made / f"{case['name']}.npz"), network_input(case)
  for mode in ("eval", "train"):
    if mode in ref:
      out, updated = _apply(module, variables, x, mode == "train")
      assert out.shape == ref[mode].shape
      assert np.std(ref[mode]) > 1e-2, "the reference output is too small to compare"
      np.testing.assert_allclose(out, ref[mode], atol=TOL, rtol=0, err_msg=f"{case['name']} {mode}")
  buffers = {k[len("buffers/"):]: ref[k] for k in ref.files if k.startswith("buffers/")}
  if "train" not in ref or not buffers:
    return
  ours = {k: v for k, v in convert.to_torch({**variables, **updated}, module).items()
          if k.rsplit(".", 1)[1] in ("running_mean", "running_var", "num_batches_tracked")}
  assert ours.keys() == buffers.keys()
  for key, want in buffers.items():
    if key.endswith("num_batches_tracked"):
      assert int(ours[key]) == int(want) == 4, key  # 3 in the file, one train-mode call
    else:
      np.testing.assert_allclose(ours[key], want, rtol=2e-6, atol=1e-7, err_msg=f"{case['name']} {key}")


def test_export_round_trips_exactly(made):
  """.pth -> gantx -> .pth gives the same tensors (num_batches_tracked included) and .pth -> gantx again
  the same variables."""
  for case in CASES:
    state_dict = pth.load(made / f"{case['name']}.pth")
    module, channels = convert.network(convert.detect(state_dict))
    variables = convert.from_torch(state_dict, module, channels)
    again = convert.from_torch(convert.to_torch(variables, module), module, channels)
    assert jax.tree.all(jax.tree.map(np.array_equal, again, variables)), case["name"]
    exported = convert.to_torch(variables, module)
    original = convert.clean(state_dict)
    assert exported.keys() == original.keys(), case["name"]
    for key, value in original.items():
      np.testing.assert_array_equal(exported[key], value, err_msg=key)


@pytest.mark.torch
def test_export_loads_in_pytorch_with_the_same_outputs(torch_python, live_references, tmp_path):
  """gantx -> .pth loads strictly in the official networks (PyTorch itself) with the same outputs."""
  folder = live_references / "networks"
  for case in CASES:
    state_dict = pth.load(folder / f"{case['name']}.pth")
    module, channels = convert.network(convert.detect(state_dict))
    convert.save_pth(convert.from_torch(state_dict, module, channels), module, folder / f"{case['name']}.exported.pth")
  subprocess.run([torch_python, f"{HERE}/torch_networks.py", "check", str(folder / "cases.json"), str(folder)], check=True)
  for case in CASES:
    exported = np.load(folder / f"{case['name']}.exported.npz")
    assert exported["same_weights"], case["name"]
    np.testing.assert_allclose(exported["eval"], np.load(folder / f"{case['name']}.npz")["eval"], atol=TOL, rtol=0)


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
  d_module, d_channels = convert.network(convert.detect(pth.load(made / "basic_batch_b2.pth")))
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
