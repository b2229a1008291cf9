"""PyTorch reference for tests/test_inception.py; runs under the torch interpreter (.venv-torch).

Builds pytorch-fid's FID Inception-v3 (`fid_inception_v3()`: torchvision's Inception-v3 with
the FIDInceptionA/C/E_1/E_2 blocks, 1008 classes, no aux classifier) in plain torch, without
torchvision, gives it random weights, and writes to OUT (.npz):
  sd/<key>         the state dict (pytorch-fid key names, fc.* and num_batches_tracked included)
  x, pool3         x (N, H, W, 3) in [-1, 1] and its pool3 features in eval mode (no resize)
  small, small_299 (N, h, w, 3) images in [0, 1] and their pool3 features through pytorch-fid's
                   preprocessing: bilinear resize to 299x299 (align_corners=False), then 2x - 1
  resize_in, resize_<h>x<w>  an NHWC image and its F.interpolate bilinear resizes
With --pth DIR it also saves the state dict with torch.save, as zip (new format) and legacy
files, for the .pth reader.

Usage: torch_inception.py OUT.npz [--pth DIR]
"""

import argparse
import os

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn


class BasicConv2d(nn.Module):

  def __init__(self, cin, cout, kernel_size, stride=1, padding=0):
    super().__init__()
    self.conv = nn.Conv2d(cin, cout, kernel_size, stride, padding, bias=False)
    self.bn = nn.BatchNorm2d(cout, eps=0.001)

  def forward(self, x):
    return F.relu(self.bn(self.conv(x)))


def avg_pool_same(x):
  return F.avg_pool2d(x, 3, stride=1, padding=1, count_include_pad=False)


class BlockA(nn.Module):  # FIDInceptionA

  def __init__(self, cin, pool_features):
    super().__init__()
    self.branch1x1 = BasicConv2d(cin, 64, 1)
    self.branch5x5_1 = BasicConv2d(cin, 48, 1)
    self.branch5x5_2 = BasicConv2d(48, 64, 5, padding=2)
    self.branch3x3dbl_1 = BasicConv2d(cin, 64, 1)
    self.branch3x3dbl_2 = BasicConv2d(64, 96, 3, padding=1)
    self.branch3x3dbl_3 = BasicConv2d(96, 96, 3, padding=1)
    self.branch_pool = BasicConv2d(cin, pool_features, 1)

  def forward(self, x):
    return torch.cat([
        self.branch1x1(x),
        self.branch5x5_2(self.branch5x5_1(x)),
        self.branch3x3dbl_3(self.branch3x3dbl_2(self.branch3x3dbl_1(x))),
        self.branch_pool(avg_pool_same(x)),
    ], 1)


class BlockB(nn.Module):  # torchvision InceptionB (Mixed_6a)

  def __init__(self, cin):
    super().__init__()
    self.branch3x3 = BasicConv2d(cin, 384, 3, stride=2)
    self.branch3x3dbl_1 = BasicConv2d(cin, 64, 1)
    self.branch3x3dbl_2 = BasicConv2d(64, 96, 3, padding=1)
    self.branch3x3dbl_3 = BasicConv2d(96, 96, 3, stride=2)

  def forward(self, x):
    return torch.cat([
        self.branch3x3(x),
        self.branch3x3dbl_3(self.branch3x3dbl_2(self.branch3x3dbl_1(x))),
        F.max_pool2d(x, 3, stride=2),
    ], 1)


class BlockC(nn.Module):  # FIDInceptionC

  def __init__(self, cin, c7):
    super().__init__()
    self.branch1x1 = BasicConv2d(cin, 192, 1)
    self.branch7x7_1 = BasicConv2d(cin, c7, 1)
    self.branch7x7_2 = BasicConv2d(c7, c7, (1, 7), padding=(0, 3))
    self.branch7x7_3 = BasicConv2d(c7, 192, (7, 1), padding=(3, 0))
    self.branch7x7dbl_1 = BasicConv2d(cin, c7, 1)
    self.branch7x7dbl_2 = BasicConv2d(c7, c7, (7, 1), padding=(3, 0))
    self.branch7x7dbl_3 = BasicConv2d(c7, c7, (1, 7), padding=(0, 3))
    self.branch7x7dbl_4 = BasicConv2d(c7, c7, (7, 1), padding=(3, 0))
    self.branch7x7dbl_5 = BasicConv2d(c7, 192, (1, 7), padding=(0, 3))
    self.branch_pool = BasicConv2d(cin, 192, 1)

  def forward(self, x):
    b7 = self.branch7x7_3(self.branch7x7_2(self.branch7x7_1(x)))
    bd = self.branch7x7dbl_1(x)
    for conv in (self.branch7x7dbl_2, self.branch7x7dbl_3, self.branch7x7dbl_4, self.branch7x7dbl_5):
      bd = conv(bd)
    return torch.cat([self.branch1x1(x), b7, bd, self.branch_pool(avg_pool_same(x))], 1)


class BlockD(nn.Module):  # torchvision InceptionD (Mixed_7a)

  def __init__(self, cin):
    super().__init__()
    self.branch3x3_1 = BasicConv2d(cin, 192, 1)
    self.branch3x3_2 = BasicConv2d(192, 320, 3, stride=2)
    self.branch7x7x3_1 = BasicConv2d(cin, 192, 1)
    self.branch7x7x3_2 = BasicConv2d(192, 192, (1, 7), padding=(0, 3))
    self.branch7x7x3_3 = BasicConv2d(192, 192, (7, 1), padding=(3, 0))
    self.branch7x7x3_4 = BasicConv2d(192, 192, 3, stride=2)

  def forward(self, x):
    b7 = self.branch7x7x3_4(self.branch7x7x3_3(self.branch7x7x3_2(self.branch7x7x3_1(x))))
    return torch.cat([self.branch3x3_2(self.branch3x3_1(x)), b7, F.max_pool2d(x, 3, stride=2)], 1)


class BlockE(nn.Module):  # FIDInceptionE_1 (pool 'avg') and FIDInceptionE_2 (pool 'max')

  def __init__(self, cin, pool):
    super().__init__()
    self.pool = pool
    self.branch1x1 = BasicConv2d(cin, 320, 1)
    self.branch3x3_1 = BasicConv2d(cin, 384, 1)
    self.branch3x3_2a = BasicConv2d(384, 384, (1, 3), padding=(0, 1))
    self.branch3x3_2b = BasicConv2d(384, 384, (3, 1), padding=(1, 0))
    self.branch3x3dbl_1 = BasicConv2d(cin, 448, 1)
    self.branch3x3dbl_2 = BasicConv2d(448, 384, 3, padding=1)
    self.branch3x3dbl_3a = BasicConv2d(384, 384, (1, 3), padding=(0, 1))
    self.branch3x3dbl_3b = BasicConv2d(384, 384, (3, 1), padding=(1, 0))
    self.branch_pool = BasicConv2d(cin, 192, 1)

  def forward(self, x):
    b3 = self.branch3x3_1(x)
    bd = self.branch3x3dbl_2(self.branch3x3dbl_1(x))
    pooled = F.max_pool2d(x, 3, stride=1, padding=1) if self.pool == "max" else avg_pool_same(x)
    return torch.cat([
        self.branch1x1(x),
        self.branch3x3_2a(b3), self.branch3x3_2b(b3),
        self.branch3x3dbl_3a(bd), self.branch3x3dbl_3b(bd),
        self.branch_pool(pooled),
    ], 1)


class FIDInception(nn.Module):
  """Attribute names as torchvision's Inception3, so the state-dict keys are pytorch-fid's."""

  def __init__(self):
    super().__init__()
    self.Conv2d_1a_3x3 = BasicConv2d(3, 32, 3, stride=2)
    self.Conv2d_2a_3x3 = BasicConv2d(32, 32, 3)
    self.Conv2d_2b_3x3 = BasicConv2d(32, 64, 3, padding=1)
    self.Conv2d_3b_1x1 = BasicConv2d(64, 80, 1)
    self.Conv2d_4a_3x3 = BasicConv2d(80, 192, 3)
    self.Mixed_5b = BlockA(192, 32)
    self.Mixed_5c = BlockA(256, 64)
    self.Mixed_5d = BlockA(288, 64)
    self.Mixed_6a = BlockB(288)
    self.Mixed_6b = BlockC(768, 128)
    self.Mixed_6c = BlockC(768, 160)
    self.Mixed_6d = BlockC(768, 160)
    self.Mixed_6e = BlockC(768, 192)
    self.Mixed_7a = BlockD(768)
    self.Mixed_7b = BlockE(1280, "avg")
    self.Mixed_7c = BlockE(2048, "max")
    self.fc = nn.Linear(2048, 1008)

  def pool3(self, x):
    """NCHW in [-1, 1] -> (N, 2048), as pytorch-fid's InceptionV3 blocks 0-3."""
    x = self.Conv2d_2b_3x3(self.Conv2d_2a_3x3(self.Conv2d_1a_3x3(x)))
    x = F.max_pool2d(x, 3, stride=2)
    x = self.Conv2d_4a_3x3(self.Conv2d_3b_1x1(x))
    x = F.max_pool2d(x, 3, stride=2)
    for name in ("5b", "5c", "5d", "6a", "6b", "6c", "6d", "6e", "7a", "7b", "7c"):
      x = getattr(self, "Mixed_" + name)(x)
    return F.adaptive_avg_pool2d(x, 1).flatten(1)


def randomize(model, gen):
  """He-normal convs and random batch norms (all four arrays away from identity, so that a
  mix-up of weight/bias/mean/var shows) that keep activations O(1)."""
  with torch.no_grad():
    for m in model.modules():
      if isinstance(m, nn.Conv2d):
        fan_in = m.weight[0].numel()
        m.weight.copy_(torch.randn(m.weight.shape, generator=gen) * (2.0 / fan_in) ** 0.5)
      elif isinstance(m, nn.BatchNorm2d):
        c = m.num_features
        m.weight.copy_(0.8 + 0.4 * torch.rand(c, generator=gen))
        m.bias.copy_(0.1 * torch.randn(c, generator=gen))
        m.running_mean.copy_(0.1 * torch.randn(c, generator=gen))
        m.running_var.copy_(0.6 + 0.8 * torch.rand(c, generator=gen))


def nhwc(t):
  return t.permute(0, 2, 3, 1).numpy()


def nchw(a):
  return torch.from_numpy(np.ascontiguousarray(a.transpose(0, 3, 1, 2)))


def main():
  parser = argparse.ArgumentParser()
  parser.add_argument("out")
  parser.add_argument("--pth", help="also torch.save the state dict into this folder")
  args = parser.parse_args()
  torch.set_num_threads(1)  # robust when the 2 cores are shared (2 threads: 2.4 to 9 s, 1: 2.5 to 3 s)
  gen = torch.Generator().manual_seed(0)
  rng = np.random.default_rng(0)
  model = FIDInception().eval()
  randomize(model, gen)
  out = {"sd/" + k: v.numpy() for k, v in model.state_dict().items()}

  with torch.no_grad():
    # Non-square, and large enough that Mixed_7b/7c work on 3x2 maps: the padded pools and the
    # 1x3 / 3x1 convs see both borders and interiors.
    x = rng.uniform(-1, 1, (2, 139, 107, 3)).astype(np.float32)
    out["x"], out["pool3"] = x, model.pool3(nchw(x)).numpy()

    small = rng.uniform(0, 1, (2, 40, 56, 3)).astype(np.float32)
    resized = F.interpolate(nchw(small), size=(299, 299), mode="bilinear", align_corners=False)
    out["small"], out["small_299"] = small, model.pool3(2 * resized - 1).numpy()

    img = rng.uniform(-1, 1, (1, 13, 17, 3)).astype(np.float32)
    out["resize_in"] = img
    for h, w in ((5, 7), (29, 23), (13, 40)):  # shrink, grow, mixed
      out[f"resize_{h}x{w}"] = nhwc(F.interpolate(nchw(img), size=(h, w), mode="bilinear", align_corners=False))

  np.savez(args.out, **out)
  if args.pth:
    torch.save(model.state_dict(), os.path.join(args.pth, "zip.pth"))
    torch.save(model.state_dict(), os.path.join(args.pth, "legacy.pth"), _use_new_zipfile_serialization=False)


if __name__ == "__main__":
  main()
