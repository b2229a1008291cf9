"""Time a seed study's step against the run's step: is N replicas in one program faster per replica?

For each case and each N of --seeds, the script builds the state and the jitted step exactly as
`python -m gantx study` does (`train.initial_state`, `train.jitted_step`; N = 1 is the run's own
step, as train.py builds it), and times --steps steps after --warmup, each ended by
block_until_ready. It reports the wall time per step and per replica-step, images/s per replica,
XLA's FLOP count of the step (TFLOP/s achieved) and XLA's memory estimate. "N solo runs one after
the other" take N x the N = 1 step per step of all of them: the per-replica-step time of N = 1.

    .venv/bin/python benchmarks/study_speed.py --case quickstart --seeds 1,4      # CPU, ~3 min
    .venv/bin/python benchmarks/study_speed.py --case pix2pix --seeds 1,2         # unet_256 batch 1
    .venv/bin/python benchmarks/study_speed.py --seeds 1,12 --sweep lr=1e-4,2e-4,5e-4   # 3 values x 4 seeds
    python3 benchmarks/study_speed.py --case pix2pix,cycle_gan --seeds 1,4,8,16 --device gpu

Cases: quickstart (configs/quickstart.py: unet_64 at 64x64, half widths, batch 4), pix2pix
(unet_256 at 256x256, batch 1, the paper's), cycle_gan (resnet_9blocks at 256x256, batch 1).
--vary says which seed streams differ between replicas: with 'data' each replica gets its own
batch (what --vary init,data,step trains), without it one batch is shared.
"""

from __future__ import annotations

import argparse
import datetime
import json
import pathlib
import platform
import runpy
import sys
import time

REPO = pathlib.Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))


def _config(case: str):
  from gantx.config import base_config
  if case == "quickstart":
    return runpy.run_path(str(REPO / "configs" / "quickstart.py"))["get_config"]()
  c = base_config("pix2pix" if case == "pix2pix" else "cycle_gan")
  c.batch_size = 1
  return c


def build(case: str, n: int, vary: tuple[str, ...], sweep_spec: str = "") -> dict:
  """{'train_step', 'state', 'batch', 'config'}: the jitted step of N replicas (N = 1: the run's) as
  `python -m gantx study` builds it, its state, and a random batch placed as the loop places it.
  With `sweep_spec` ('lr=1e-4,2e-4,5e-4') the N replicas are N / values seed sets of each value."""
  import numpy as np

  from gantx import config as config_lib, parallel, seeds, state as state_lib, sweep, train

  config = _config(case)
  config_lib.validate(config)
  study = n > 1
  variants = sweep.parse([sweep_spec], config) if sweep_spec else [sweep.Variant("", ())]
  if n % len(variants):
    raise SystemExit(f"--seeds {n} is not a multiple of the {len(variants)} values of --sweep {sweep_spec}")
  mesh = parallel.make_study_mesh(n) if study else parallel.make_mesh()
  parallel.resolve_batch_size(config, mesh)
  hw = config_lib.crop_hw(config)
  nets = state_lib.build_networks(config, 1000)
  seed_sets = seeds.vary(seeds.from_config(config), vary, n // len(variants)) if study else []
  replicas = [train.Member(s, sweep.numeric_values(config, v) if sweep_spec else ())
              for v in variants for s in seed_sets] if study else None
  shared = not study or "data" not in vary
  state = train.initial_state(config, nets, replicas, hw, mesh)
  step, batch_sharding = train.jitted_step(config, nets, mesh, study, shared)
  rng = np.random.default_rng(0)
  lead = () if shared else (n,)
  host = {k: rng.uniform(-1, 1, (*lead, config.batch_size, *hw, nc)).astype(np.float32)
          for k, nc in (("A", config.input_nc), ("B", config.output_nc))}
  return {"train_step": step, "state": state, "batch": parallel.place(host, batch_sharding), "config": config}


def measure(case: str, n: int, vary: tuple[str, ...], warmup: int, steps: int, sweep_spec: str = "") -> dict:
  import jax
  import numpy as np

  built = build(case, n, vary, sweep_spec if n > 1 else "")
  step, state, batch, config = built["train_step"], built["state"], built["batch"], built["config"]
  del built
  began = time.perf_counter()
  compiled = step.lower(state, batch).compile()
  compile_s = time.perf_counter() - began
  cost = compiled.cost_analysis() or {}
  memory = compiled.memory_analysis()
  for _ in range(warmup):
    state, _ = compiled(state, batch)
  jax.block_until_ready(state)
  times = []
  for _ in range(steps):
    began = time.perf_counter()
    state, _ = compiled(state, batch)
    jax.block_until_ready(state)
    times.append(time.perf_counter() - began)
  step_s = float(np.median(times))
  flops = float(cost.get("flops", 0.0))
  mem = None if memory is None else (memory.argument_size_in_bytes + memory.output_size_in_bytes
                                     + memory.temp_size_in_bytes - memory.alias_size_in_bytes)
  return {"case": case, "seeds": n, "vary": list(vary), "sweep": sweep_spec if n > 1 else "", "step_s": step_s, "step_s_all": times,
          "replica_step_s": step_s / n, "images_per_s_per_replica": config.batch_size / step_s,
          "compile_s": compile_s, "gflop_per_step": flops / 1e9,
          "tflop_per_s": flops / step_s / 1e12 if flops else None, "xla_mem_gib": None if mem is None else mem / 2**30}


def main(argv=None) -> None:
  p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
  p.add_argument("--case", default="quickstart", help="comma separated: quickstart, pix2pix, cycle_gan")
  p.add_argument("--seeds", default="1,4", help="comma separated replica counts (1: the run's step)")
  p.add_argument("--vary", default="init,data,step", help="seed streams that differ between replicas")
  p.add_argument("--sweep", default="", help="a numeric sweep, FIELD=v1,v2,...: each N > 1 is N / values seeds of"
                 " each value (one compiled step; 12 with lr=1e-4,2e-4,5e-4: 3 values x 4 seeds)")
  p.add_argument("--device", default="cpu", choices=("cpu", "gpu"))
  p.add_argument("--warmup", type=int, default=2)
  p.add_argument("--steps", type=int, default=5)
  p.add_argument("--out", default=None, help="also write the results as JSON")
  args = p.parse_args(argv)
  from gantx import allocator
  if args.device == "cpu":
    allocator.keep_freed_memory()  # as train.py does on the CPU
  import jax
  if args.device == "cpu":
    jax.config.update("jax_platforms", "cpu")
  vary = tuple(v for v in args.vary.split(",") if v)
  rows = [measure(c, int(n), vary, args.warmup, args.steps, args.sweep) for c in args.case.split(",") for n in args.seeds.split(",")]
  head = (f"{datetime.datetime.now(datetime.timezone.utc):%Y-%m-%d %H:%M} UTC, {platform.node()},"
          f" {jax.devices()[0].device_kind} x {jax.device_count()}, jax {jax.__version__};"
          f" `python benchmarks/study_speed.py {' '.join(argv if argv is not None else sys.argv[1:])}`")
  print(head)
  print("| case | N | sweep | step s | per replica-step s | vs N=1 | images/s per replica | TFLOP/s | XLA mem GiB | compile s |")
  print("|---|---:|---|---:|---:|---:|---:|---:|---:|---:|")
  base = {r["case"]: r["replica_step_s"] for r in rows if r["seeds"] == 1}
  for r in rows:
    ratio = f"{r['replica_step_s'] / base[r['case']]:.2f}" if r["case"] in base else "-"
    tf = f"{r['tflop_per_s']:.3f}" if r["tflop_per_s"] else "-"
    mem = f"{r['xla_mem_gib']:.2f}" if r["xla_mem_gib"] is not None else "-"
    print(f"| {r['case']} | {r['seeds']} | {r['sweep'] or '-'} | {r['step_s']:.3f} | {r['replica_step_s']:.3f} | {ratio} |"
          f" {r['images_per_s_per_replica']:.2f} | {tf} | {mem} | {r['compile_s']:.1f} |")
  if args.out:
    pathlib.Path(args.out).write_text(json.dumps({"header": head, "rows": rows}, indent=1) + "\n")


if __name__ == "__main__":
  main()
