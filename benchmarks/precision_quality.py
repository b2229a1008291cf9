"""Training quality of bfloat16 mixed precision against float32: held-out L1 of the quickstarts.

For each model (pix2pix: configs/quickstart.py; cycle_gan: configs/quickstart_cyclegan.py), each
seed of --seeds and each compute dtype (float32, bfloat16), the script runs
`gantx.train.train_and_evaluate` on the built-in generated data for the config's number of steps
(or --steps) and reads the held-out metrics it logged (metrics.jsonl): L1 (and PSNR) of every
generator on the aligned eval set, at every evaluation. Same seed = same initial parameters, same
data order and dropout keys; only the arithmetic of the convolutions differs.

    .venv/bin/python benchmarks/precision_quality.py --models pix2pix            # ~9 min on 2 cores
    .venv/bin/python benchmarks/precision_quality.py --models cycle_gan --seeds 0  # ~6 min

Prints a markdown block for BENCHMARKS.md; --out writes the results as JSON.
"""

from __future__ import annotations

import argparse
import datetime
import importlib.util
import json
import pathlib
import platform
import statistics
import sys
import tempfile
import time

REPO = pathlib.Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))
CONFIGS = {"pix2pix": REPO / "configs" / "quickstart.py", "cycle_gan": REPO / "configs" / "quickstart_cyclegan.py"}
DTYPES = ("float32", "bfloat16")


def _parse_args(argv=None) -> argparse.Namespace:
  p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
  p.add_argument("--models", default="pix2pix,cycle_gan", help="comma separated subset of pix2pix,cycle_gan")
  p.add_argument("--seeds", default="0,1", help="comma separated seeds (config.seed)")
  p.add_argument("--steps", type=int, default=None, help="train steps (default: the quickstart config's)")
  p.add_argument("--out", default=None, help="write the results (and the markdown) to this JSON file")
  p.add_argument("--keep-workdirs", action="store_true", help="keep the run directories (printed)")
  args = p.parse_args(argv)
  args.models = [m.strip() for m in args.models.split(",") if m.strip()]
  if set(args.models) - set(CONFIGS):
    p.error(f"unknown --models entries: {sorted(set(args.models) - set(CONFIGS))}")
  args.seeds = [int(s) for s in args.seeds.split(",") if s.strip()]
  return args


def _config(model: str, dtype: str, seed: int, steps: int | None):
  spec = importlib.util.spec_from_file_location(f"quickstart_{model}", CONFIGS[model])
  module = importlib.util.module_from_spec(spec)
  spec.loader.exec_module(module)
  c = module.get_config()
  c.compute_dtype, c.seed = dtype, seed
  if steps:
    c.num_train_steps = steps
    c.eval_every_steps = min(c.eval_every_steps, steps)
  return c


def _read_metrics(workdir: pathlib.Path) -> list[dict]:
  with open(workdir / "metrics.jsonl") as f:
    return [json.loads(line) for line in f if line.strip()]


def run_one(model: str, dtype: str, seed: int, steps: int | None, root: pathlib.Path) -> dict:
  from gantx import train

  config = _config(model, dtype, seed, steps)
  workdir = root / f"{model}_{dtype}_seed{seed}"
  t0 = time.perf_counter()
  train.train_and_evaluate(config, workdir)
  wall = time.perf_counter() - t0
  rows = _read_metrics(workdir)
  evals = [r for r in rows if any(k.startswith("L1_") for k in r)]
  speed = [r["images_per_s"] for r in rows if "images_per_s" in r]
  return {"model": model, "dtype": dtype, "seed": seed, "steps": config.num_train_steps, "wall_s": wall,
          "workdir": str(workdir), "evals": evals, "final": evals[-1] if evals else {},
          "images_per_s_median": statistics.median(speed) if speed else None}


def markdown(report: dict) -> str:
  lines = [
      "### bfloat16 mixed precision vs float32: held-out quality of the quickstarts",
      "",
      f"- date: {report['date']}; machine: {report['machine']}; command: `{report['command']}`",
      "- same seed = same initial parameters, data order and dropout keys; held-out metrics on the built-in"
      " eval set (16 aligned pairs), each run evaluated in its own compute dtype",
      "",
      "| model (steps) | seed | metric | float32 | bfloat16 | bfloat16 - float32 | train img/s f32 / bf16 |",
      "|---|---:|---|---:|---:|---:|---:|",
  ]
  by_key = {(r["model"], r["seed"], r["dtype"]): r for r in report["runs"]}
  for model in report["settings"]["models"]:
    diffs = {}
    for seed in report["settings"]["seeds"]:
      f32, bf16 = by_key.get((model, seed, "float32")), by_key.get((model, seed, "bfloat16"))
      if not f32 or not bf16:
        continue
      for metric in sorted(k for k in f32["final"] if k.startswith(("L1_", "PSNR_"))):
        a, b = f32["final"][metric], bf16["final"].get(metric)
        if b is None:
          continue
        diffs.setdefault(metric, []).append((a, b))
        lines.append(f"| {model} ({f32['steps']}) | {seed} | {metric} | {a:.4f} | {b:.4f} | {b - a:+.4f}"
                     f" | {f32['images_per_s_median'] or 0:.1f} / {bf16['images_per_s_median'] or 0:.1f} |")
    for metric, pairs in diffs.items():
      if len(pairs) > 1:
        a, b = statistics.mean(p[0] for p in pairs), statistics.mean(p[1] for p in pairs)
        lines.append(f"| {model} | mean of {len(pairs)} | {metric} | {a:.4f} | {b:.4f} | {b - a:+.4f} | |")
  lines += ["", "Held-out L1 at each evaluation (float32 / bfloat16):", ""]
  for model in report["settings"]["models"]:
    for seed in report["settings"]["seeds"]:
      f32, bf16 = by_key.get((model, seed, "float32")), by_key.get((model, seed, "bfloat16"))
      if not f32 or not bf16:
        continue
      for metric in sorted(k for k in f32["final"] if k.startswith("L1_")):
        pts = [f"{a['step']}: {a[metric]:.3f} / {b.get(metric, float('nan')):.3f}"
               for a, b in zip(f32["evals"], bf16["evals"])]
        lines.append(f"- {model} seed {seed} {metric}: " + ", ".join(pts))
  return "\n".join(lines)


def main(argv=None) -> int:
  args = _parse_args(argv)
  sys.path.insert(0, str(REPO / "benchmarks"))
  from torch_step import cpu_name  # torch-free helper

  command = " ".join([pathlib.Path(sys.executable).name, *sys.argv])
  root = pathlib.Path(tempfile.mkdtemp(prefix="gantx-precision-"))
  runs = []
  for model in args.models:
    for seed in args.seeds:
      for dtype in DTYPES:
        print(f"[precision] {model} seed {seed} {dtype} ...", flush=True)
        r = run_one(model, dtype, seed, args.steps, root)
        print(f"[precision]   final {({k: round(v, 4) for k, v in r['final'].items() if k.startswith(('L1_', 'PSNR_'))})},"
              f" {r['wall_s']:.0f} s", flush=True)
        runs.append(r)
  report = {"date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
            "machine": f"{cpu_name()}, Python {platform.python_version()}", "command": command,
            "settings": {"models": args.models, "seeds": args.seeds, "steps": args.steps}, "runs": runs}
  md = markdown(report)
  report["markdown"] = md
  print("\n" + md + "\n", flush=True)
  if args.out:
    pathlib.Path(args.out).write_text(json.dumps(report, indent=2) + "\n")
    print(f"wrote {args.out}")
  if args.keep_workdirs:
    print(f"run directories under {root}")
  else:
    import shutil
    shutil.rmtree(root, ignore_errors=True)
  return 0


if __name__ == "__main__":
  sys.exit(main())
