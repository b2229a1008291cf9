"""Forward passes of the official networks in PyTorch, float32 and float64, for benchmarks/conv_error.py.

  .venv-torch/bin/python benchmarks/torch_forward.py CASES.json DIR

For each case ({name, kind: G|D, net, norm, input_nc, output_nc, ngf}): builds the official network
(torch_reference.py), loads DIR/<name>.pth strictly (written by gantx), runs it in train mode (batch
norm with the batch's statistics; no dropout) on DIR/<name>_x.npy (NHWC) in float32 and in float64,
and writes DIR/<name>_torch.npz with y32 and y64 (NHWC).
"""

import json
import os
import sys

import numpy as np
import torch

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import torch_reference as ref  # noqa: E402


def build(case):
  if case["kind"] == "G":
    return ref.define_G(case["input_nc"], case["output_nc"], case["ngf"], case["net"], norm=case["norm"], init=False)
  return ref.define_D(case["input_nc"], case["ngf"], case["net"], norm=case["norm"], init=False)


@torch.no_grad()
def main(cases_file, folder):
  torch.set_num_threads(os.cpu_count() or 1)
  with open(cases_file) as f:
    cases = json.load(f)
  for case in cases:
    net = build(case)
    net.load_state_dict(torch.load(os.path.join(folder, case["name"] + ".pth"), weights_only=True), strict=True)
    x = torch.from_numpy(np.load(os.path.join(folder, case["name"] + "_x.npy"))).permute(0, 3, 1, 2)
    y32 = net.train()(x).permute(0, 2, 3, 1).numpy()
    y64 = net.double().train()(x.double()).permute(0, 2, 3, 1).numpy()
    np.savez(os.path.join(folder, case["name"] + "_torch.npz"), y32=y32, y64=y64)


if __name__ == "__main__":
  main(*sys.argv[1:])
