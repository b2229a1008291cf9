"""PyTorch reference for tests/test_inception.py; runs under the torch interpreter (.venv-torch).

Builds pytorch-fid's FID Inception-v3 (`fid_inception_v3()`: torchvision's Inception-v3 with
the FIDInceptionA/C/E_1/E_2 blocks, 1008 classes, no aux classifier) in plain torch, without
torchvision, gives it the random weights of `reference_data.inception_state_dict` (numpy, so the
test draws the same ones) and writes to OUT (.npz), for the images of `reference_data.inception_images`:
  pool3            the pool3 features of x (N, H, W, 3) in [-1, 1] in eval mode (no resize)
  small_299        the pool3 features of `small` (N, h, w, 3) in [0, 1] through pytorch-fid's
                   preprocessing: bilinear resize to 299x299 (align_corners=False), then 2x - 1
  resize_<h>x<w>   F.interpolate bilinear resizes of resize_in (NHWC)
With --pth DIR it also saves the state dict with torch.save, as zip (new format) and legacy
files, for the .pth reader.

Usage: torch_inception.py OUT.npz [--pth DIR]
"""

import argparse
import os
import sys

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import reference_data  # noqa: E402


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
  model = FIDInception().eval()
  shapes = {k: tuple(v.shape) for k, v in model.state_dict().items()}
  model.load_state_dict({k: torch.from_numpy(v) for k, v in reference_data.inception_state_dict(shapes).items()})
  images = reference_data.inception_images()
  out = {}
  with torch.no_grad():
    out["pool3"] = model.pool3(nchw(images["x"])).numpy()
    resized = F.interpolate(nchw(images["small"]), size=(299, 299), mode="bilinear", align_corners=False)
    out["small_299"] = model.pool3(2 * resized - 1).numpy()
    for h, w in ((5, 7), (29, 23), (13, 40)):  # shrink, grow, mixed
      out[f"resize_{h}x{w}"] = nhwc(F.interpolate(nchw(images["resize_in"]), size=(h, w), mode="bilinear",
                                                  align_corners=False))
  np.savez(args.out, **out)
  if args.pth:
    torch.save(model.state_dict(), os.path.join(args.pth, "zip.pth"))
    torch.save(model.state_dict(), os.path.join(args.pth, "legacy.pth"), _use_new_zipfile_serialization=False)


if __name__ == "__main__":
  main()
