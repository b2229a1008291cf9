"""How far each way of computing the convolutions is from PyTorch and from float64, at full width.

For every official generator and discriminator at full width (ngf = ndf = 64; 256x256 images,
unet_128 at 128x128), with random weights (the official init, N(0, 0.02), and random batch-norm
affine parameters) and a random image, the script runs the network in train mode (batch norm with
the image's statistics, no dropout) in float32:

  training   conv_impl 'gemm' with conv.RULES: the forms train.py uses on the CPU (Winograd where
             it applies, GEMMs, XLA's convolution for the thin layers)
  inference  conv_impl 'gemm' with conv.INFERENCE_RULES: no Winograd (translate, evaluate, export,
             the evaluations during training)
  xla        conv_impl 'xla': XLA's own convolutions (what GPUs and TPUs run)

and the official network in PyTorch (benchmarks/torch_forward.py, under .venv-torch) with the same
weights, in float32 and float64. It prints each one's relative error, ||y - ref|| / ||ref|| (L2
over the output), against PyTorch float64 and against PyTorch float32.

    .venv/bin/python benchmarks/conv_error.py --out benchmarks/results/conv_error.json   # ~5 min on 2 cores
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import pathlib
import platform
import subprocess
import sys
import tempfile

REPO = pathlib.Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

CASES = [
    dict(name="unet_256", kind="G", net="unet_256", norm="batch", input_nc=3, output_nc=3, ngf=64, size=256),
    dict(name="unet_128", kind="G", net="unet_128", norm="batch", input_nc=3, output_nc=3, ngf=64, size=128),
    dict(name="resnet_9blocks", kind="G", net="resnet_9blocks", norm="instance", input_nc=3, output_nc=3, ngf=64, size=256),
    dict(name="resnet_6blocks", kind="G", net="resnet_6blocks", norm="instance", input_nc=3, output_nc=3, ngf=64, size=256),
    dict(name="D_basic_pix2pix", kind="D", net="basic", norm="batch", input_nc=6, ngf=64, size=256),
    dict(name="D_basic_cyclegan", kind="D", net="basic", norm="instance", input_nc=3, ngf=64, size=256),
    dict(name="D_pixel", kind="D", net="pixel", norm="batch", input_nc=6, ngf=64, size=256),
]
FORMS = ("training", "inference", "xla")


def _module(case, conv_impl: str, rules):
  from gantx import config as config_lib, conv, models
  c = config_lib.base_config()
  c.update(dict(norm=case["norm"], ngf=case["ngf"], ndf=case["ngf"], no_dropout=True, conv_impl=conv_impl))
  if case["kind"] == "G":
    c.netG = case["net"]
    module = models.define_G(c, case["input_nc"], case["output_nc"])
  else:
    c.netD = case["net"]
    module = models.define_D(c, case["input_nc"])
  return models.with_rules(module, rules or conv.RULES)


def gantx_outputs(case, folder: pathlib.Path) -> dict:
  import jax
  import numpy as np

  from gantx import conv, convert

  rng = np.random.default_rng(0)
  x = rng.uniform(-1, 1, (1, case["size"], case["size"], case["input_nc"])).astype(np.float32)
  module = _module(case, "gemm", conv.RULES)
  variables = module.init(jax.random.key(0), x, train=False)
  def perturb(path, v):  # batch norm's affine parameters away from (1, 0), so that they matter
    names = [str(getattr(k, "key", k)) for k in path]
    return v + 0.3 * rng.standard_normal(v.shape).astype(np.float32) if "bn" in names and names[-1] in ("scale", "bias") else v

  variables = jax.tree_util.tree_map_with_path(perturb, variables)
  convert.save_pth(variables, module, str(folder / f"{case['name']}.pth"))
  np.save(folder / f"{case['name']}_x.npy", x)
  out = {}
  for form, impl, rules in (("training", "gemm", conv.RULES), ("inference", "gemm", conv.INFERENCE_RULES),
                            ("xla", "xla", None)):
    m = _module(case, impl, rules)
    apply = jax.jit(lambda v, x: m.apply(v, x, train=True, mutable=["batch_stats"])[0])
    with jax.default_matmul_precision("highest"):
      out[form] = np.asarray(apply(variables, x))
  return out


def main(argv=None) -> None:
  p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
  p.add_argument("--torch-python", default=str(REPO / ".venv-torch" / "bin" / "python"))
  p.add_argument("--cases", default=",".join(c["name"] for c in CASES))
  p.add_argument("--out", default=None)
  args = p.parse_args(argv)
  import jax
  import numpy as np
  jax.config.update("jax_platforms", "cpu")
  cases = [c for c in CASES if c["name"] in args.cases.split(",")]
  rel = lambda y, ref: float(np.linalg.norm((y - ref).ravel()) / np.linalg.norm(ref.ravel()))
  rows = []
  with tempfile.TemporaryDirectory(prefix="gantx-conv-error-") as tmp:
    folder = pathlib.Path(tmp)
    ours = {c["name"]: gantx_outputs(c, folder) for c in cases}
    (folder / "cases.json").write_text(json.dumps(cases))
    subprocess.run([args.torch_python, str(REPO / "benchmarks" / "torch_forward.py"), str(folder / "cases.json"),
                    str(folder)], check=True)
    for c in cases:
      torch_out = np.load(folder / f"{c['name']}_torch.npz")
      y64, y32 = torch_out["y64"], torch_out["y32"]
      row = {"net": c["name"], "torch32_vs_64": rel(y32, y64)}
      for form in FORMS:
        row[f"{form}_vs_64"] = rel(ours[c["name"]][form].astype(np.float64), y64)
        row[f"{form}_vs_torch32"] = rel(ours[c["name"]][form], y32)
      rows.append(row)
  head = (f"{datetime.datetime.now(datetime.timezone.utc):%Y-%m-%d %H:%M} UTC, {platform.node()}, jax {jax.__version__};"
          f" `python benchmarks/conv_error.py {' '.join(argv if argv is not None else sys.argv[1:])}`")
  print(head)
  print("| network | PyTorch f32 vs f64 | training vs f64 | inference vs f64 | xla vs f64 |"
        " training vs PyTorch | inference vs PyTorch | xla vs PyTorch |")
  print("|---|---:|---:|---:|---:|---:|---:|---:|")
  for r in rows:
    print(f"| {r['net']} | {r['torch32_vs_64']:.1e} | " + " | ".join(f"{r[f'{f}_vs_64']:.1e}" for f in FORMS) + " | "
          + " | ".join(f"{r[f'{f}_vs_torch32']:.1e}" for f in FORMS) + " |")
  if args.out:
    pathlib.Path(args.out).write_text(json.dumps({"header": head, "rows": rows}, indent=1) + "\n")


if __name__ == "__main__":
  main()
