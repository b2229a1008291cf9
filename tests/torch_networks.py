"""Runs the official networks in PyTorch for tests/test_convert.py (under a Python with torch).

  python tests/torch_networks.py make CASES.json OUT_DIR
      for each case: builds the network (benchmarks/torch_reference.py: official keys and layers)
      with random weights and batch-norm statistics, saves its state dict as OUT_DIR/<name>.pth
      (legacy or zip layout, optionally under a DataParallel 'module.' prefix), and writes
      OUT_DIR/<name>.npz with the outputs for x = reference_data.network_input(case): eval
      (model.eval()) and, for networks without dropout, train (model.train(): batch statistics of
      x) and buffers/<key>: every batch-norm buffer after that train-mode call (running_mean,
      running_var, num_batches_tracked).
  python tests/torch_networks.py check CASES.json IN_DIR
      loads IN_DIR/<name>.exported.pth (written by gantx) strictly into a fresh network and writes
      IN_DIR/<name>.exported.npz with its eval output on the same x, and same_weights: whether its
      keys and tensors equal the original file's.
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


def build(case):
  if case["kind"] == "G":
    return ref.define_G(case["input_nc"], case["output_nc"], case["ngf"], case["net"], norm=case["norm"],
                        use_dropout=case["dropout"], init_gain=case.get("init_gain", 0.1))
  return ref.define_D(case["input_nc"], case["ngf"], case["net"], case.get("n_layers_D", 3), norm=case["norm"],
                      init_gain=case.get("init_gain", 0.1))


def randomise_stats(net, gen):
  for m in net.modules():
    if isinstance(m, torch.nn.BatchNorm2d):
      m.running_mean.copy_(torch.randn(m.num_features, generator=gen) * 0.1)
      m.running_var.copy_(torch.rand(m.num_features, generator=gen) + 0.5)
      m.num_batches_tracked.fill_(3)


@torch.no_grad()
def make(cases, out):
  for i, case in enumerate(cases):
    torch.manual_seed(i)
    gen = torch.Generator().manual_seed(100 + i)
    net = build(case)
    randomise_stats(net, gen)
    x = torch.from_numpy(reference_data.network_input(case)).permute(0, 3, 1, 2)
    state = net.state_dict()
    if case.get("prefix"):
      state = {case["prefix"] + k: v for k, v in state.items()}
    # Saved before the train-mode pass, which updates the running statistics.
    torch.save(state, os.path.join(out, case["name"] + ".pth"), _use_new_zipfile_serialization=not case.get("legacy"))
    outputs = {"eval": net.eval()(x).permute(0, 2, 3, 1).numpy()}
    if not case["dropout"]:
      outputs["train"] = net.train()(x).permute(0, 2, 3, 1).numpy()
      outputs.update({f"buffers/{k}": v.numpy() for k, v in net.named_buffers()})
    np.savez(os.path.join(out, case["name"] + ".npz"), **outputs)


@torch.no_grad()
def check(cases, folder):
  for case in cases:
    net = build(case)
    state = torch.load(os.path.join(folder, case["name"] + ".exported.pth"), weights_only=True)
    net.load_state_dict(state, strict=True)
    original = torch.load(os.path.join(folder, case["name"] + ".pth"), weights_only=True)
    original = {k[len(case.get("prefix", "")):]: v for k, v in original.items()}
    same = all(torch.equal(state[k], v) for k, v in original.items())
    x = torch.from_numpy(reference_data.network_input(case)).permute(0, 3, 1, 2)
    np.savez(os.path.join(folder, case["name"] + ".exported.npz"), eval=net.eval()(x).permute(0, 2, 3, 1).numpy(),
             same_weights=same and state.keys() == original.keys())


if __name__ == "__main__":
  command, cases_file, folder = sys.argv[1:]
  with open(cases_file) as f:
    {"make": make, "check": check}[command](json.load(f), folder)
