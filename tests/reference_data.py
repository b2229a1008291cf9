"""Inputs of the PyTorch reference runs, drawn from numpy seeds (numpy only).

Both sides import this: the reference scripts under the torch interpreter (tests/torch_*.py) and
the tests under gantx's. So the stored reference files (tests/references/) hold only what PyTorch
computed, and the inputs, weights of the FID Inception included, are drawn again here.
"""

import numpy as np

# Networks (tests/test_convert.py): every official architecture, norm and dropout setting; file
# layouts legacy (torch < 1.6, as the official pretrained models) and zip, one under a DataParallel
# 'module.' prefix; every net with batch norm at batch 1 and 2 (its buffers after a train-mode call).
# Tiny widths.
NETWORK_CASES = [dict(case, seed=i) for i, case in enumerate([
    dict(name="unet128_batch_dropout", kind="G", net="unet_128", norm="batch", dropout=True, input_nc=3, output_nc=3, ngf=2, size=128, batch=1),
    dict(name="unet256_batch_b1", kind="G", net="unet_256", norm="batch", dropout=False, input_nc=3, output_nc=3, ngf=2, size=256, batch=1, legacy=True),
    dict(name="unet128_batch_b2", kind="G", net="unet_128", norm="batch", dropout=False, input_nc=3, output_nc=3, ngf=2, size=128, batch=2),
    dict(name="unet128_instance", kind="G", net="unet_128", norm="instance", dropout=False, input_nc=1, output_nc=3, ngf=2, size=128, batch=1),
    dict(name="resnet9_instance", kind="G", net="resnet_9blocks", norm="instance", dropout=False, input_nc=3, output_nc=3, ngf=4, size=32, prefix="module."),
    dict(name="resnet6_batch_dropout", kind="G", net="resnet_6blocks", norm="batch", dropout=True, input_nc=3, output_nc=1, ngf=4, size=32, legacy=True),
    dict(name="resnet6_batch_b1", kind="G", net="resnet_6blocks", norm="batch", dropout=False, input_nc=3, output_nc=3, ngf=4, size=32, batch=1),
    dict(name="resnet6_batch_b2", kind="G", net="resnet_6blocks", norm="batch", dropout=False, input_nc=3, output_nc=3, ngf=4, size=32, batch=2),
    dict(name="resnet6_none", kind="G", net="resnet_6blocks", norm="none", dropout=False, input_nc=3, output_nc=3, ngf=4, size=32),
    dict(name="basic_batch_b1", kind="D", net="basic", norm="batch", dropout=False, input_nc=6, ngf=4, size=64, batch=1),
    dict(name="basic_batch_b2", kind="D", net="basic", norm="batch", dropout=False, input_nc=6, ngf=4, size=64, batch=2),
    dict(name="basic_instance", kind="D", net="basic", norm="instance", dropout=False, input_nc=3, ngf=4, size=64, legacy=True),
    dict(name="nlayers4_none", kind="D", net="n_layers", n_layers_D=4, norm="none", dropout=False, input_nc=3, ngf=4, size=64),
    dict(name="pixel_batch_b1", kind="D", net="pixel", norm="batch", dropout=False, input_nc=6, ngf=4, size=16, batch=1, init_gain=1.0),
    dict(name="pixel_batch_b2", kind="D", net="pixel", norm="batch", dropout=False, input_nc=6, ngf=4, size=16, batch=2, init_gain=1.0),
])]

# Two official pix2pix steps (tests/test_steps.py): batch-norm generators and discriminators of
# each kind, at batch 1 and 2, no dropout.
STEP_CASES = [dict(case, seed=100 + i, input_nc=3, output_nc=3, size=32, norm="batch") for i, case in enumerate([
    dict(name="unet32_basic_b1", netG="unet_32", netD="basic", ngf=2, ndf=4, batch=1),
    dict(name="unet32_basic_b2", netG="unet_32", netD="basic", ngf=2, ndf=4, batch=2),
    dict(name="resnet6_pixel_b1", netG="resnet_6blocks", netD="pixel", ngf=4, ndf=4, batch=1),
    dict(name="resnet6_pixel_b2", netG="resnet_6blocks", netD="pixel", ngf=4, ndf=4, batch=2),
])]


def network_input(case: dict) -> np.ndarray:
  """(batch, size, size, input_nc) float32 in [-1, 1] for a network case of tests/test_reference.py."""
  rng = np.random.default_rng([7, case["seed"]])
  shape = (case.get("batch", 2), case["size"], case["size"], case["input_nc"])
  return rng.uniform(-1, 1, shape).astype(np.float32)


def pix2pix_batches(case: dict, steps: int = 2) -> list[tuple[np.ndarray, np.ndarray]]:
  """`steps` (A, B) batches, NHWC float32 in [-1, 1], for a pix2pix step case."""
  rng = np.random.default_rng([11, case["seed"]])
  n, size = case["batch"], case["size"]
  return [(rng.uniform(-1, 1, (n, size, size, case["input_nc"])).astype(np.float32),
           rng.uniform(-1, 1, (n, size, size, case["output_nc"])).astype(np.float32)) for _ in range(steps)]


def inception_state_dict(shapes: dict[str, tuple[int, ...]], seed: int = 0) -> dict[str, np.ndarray]:
  """Weights for pytorch-fid's Inception with state-dict keys and (PyTorch) shapes `shapes`: He-normal
  convolutions and batch norms away from identity (weight, bias, mean, var all differ from 1, 0, 0,
  1, so that a mix-up shows), which keep activations O(1). Keys in sorted order, one draw each."""
  rng = np.random.default_rng([13, seed])
  out = {}
  for key in sorted(shapes):
    shape = shapes[key]
    leaf = key.rsplit(".", 1)[1]
    if leaf == "num_batches_tracked":
      out[key] = np.zeros((), np.int64)
    elif key.startswith("fc."):
      out[key] = np.zeros(shape, np.float32)
    elif len(shape) == 4:  # conv weight (out, in, kh, kw)
      out[key] = (rng.standard_normal(shape) * np.sqrt(2.0 / np.prod(shape[1:]))).astype(np.float32)
    elif leaf == "weight":
      out[key] = (0.8 + 0.4 * rng.random(shape)).astype(np.float32)
    elif leaf == "bias":
      out[key] = (0.1 * rng.standard_normal(shape)).astype(np.float32)
    elif leaf == "running_mean":
      out[key] = (0.1 * rng.standard_normal(shape)).astype(np.float32)
    elif leaf == "running_var":
      out[key] = (0.6 + 0.8 * rng.random(shape)).astype(np.float32)
    else:
      raise ValueError(f"inception_state_dict: no rule for {key}")
  return out


def inception_images(seed: int = 0) -> dict[str, np.ndarray]:
  """x (2, 139, 107, 3) in [-1, 1]: non-square, large enough that Mixed_7b/7c work on 3x2 maps;
  small (2, 40, 56, 3) in [0, 1], for pytorch-fid's resize to 299; resize_in (1, 13, 17, 3)."""
  rng = np.random.default_rng([17, seed])
  return {"x": rng.uniform(-1, 1, (2, 139, 107, 3)).astype(np.float32),
          "small": rng.uniform(0, 1, (2, 40, 56, 3)).astype(np.float32),
          "resize_in": rng.uniform(-1, 1, (1, 13, 17, 3)).astype(np.float32)}
