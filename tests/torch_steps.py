"""Runs the official pix2pix step in PyTorch for tests/test_reference.py (under a Python with torch).

  python tests/torch_steps.py CASES.json OUT_DIR

For each case: builds the official networks (benchmarks/torch_reference.py) with the case's
generator and discriminator, saves their initial state dicts as OUT_DIR/<name>_G.pth and
<name>_D.pth, then runs two official `Pix2PixModel.optimize_parameters` iterations on the batches
of `reference_data.pix2pix_batches` and writes OUT_DIR/<name>.npz: every tensor of both state dicts
after the two steps (G/<key>, D/<key>: parameters and buffers, num_batches_tracked included) and
each step's losses (loss/<step>/<name>). No dropout: its masks cannot match across frameworks.
"""

import json
import os
import sys

import numpy as np
import torch

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(os.path.dirname(HERE), "benchmarks"))
sys.path.insert(0, HERE)
import reference_data  # noqa: E402
import torch_reference as ref  # noqa: E402


def generator(case):
  if case["netG"].startswith("unet_"):
    num_downs = int(case["netG"][5:]).bit_length() - 1
    return ref.init_weights(ref.UnetGenerator(case["input_nc"], case["output_nc"], num_downs, case["ngf"],
                                              norm=case["norm"], use_dropout=False), "normal", 0.02)
  return ref.define_G(case["input_nc"], case["output_nc"], case["ngf"], case["netG"], norm=case["norm"])


def run(case, out):
  torch.manual_seed(case["seed"])
  net_g = generator(case)
  net_d = ref.define_D(case["input_nc"] + case["output_nc"], case["ndf"], case["netD"], norm=case["norm"])
  torch.save(net_g.state_dict(), os.path.join(out, case["name"] + "_G.pth"))
  torch.save(net_d.state_dict(), os.path.join(out, case["name"] + "_D.pth"))
  step = ref.Pix2PixStep(netG_module=net_g, netD_module=net_d, use_dropout=False)
  result = {}
  for i, (a, b) in enumerate(reference_data.pix2pix_batches(case), start=1):
    losses = step(torch.from_numpy(a).permute(0, 3, 1, 2), torch.from_numpy(b).permute(0, 3, 1, 2))
    result.update({f"loss/{i}/{k}": v.numpy() for k, v in losses.items()})
  for prefix, net in (("G", net_g), ("D", net_d)):
    result.update({f"{prefix}/{k}": v.detach().numpy() for k, v in net.state_dict().items()})
  np.savez(os.path.join(out, case["name"] + ".npz"), **result)


if __name__ == "__main__":
  cases_file, folder = sys.argv[1:]
  torch.set_num_threads(1)
  with open(cases_file) as f:
    for case in json.load(f):
      run(case, folder)
