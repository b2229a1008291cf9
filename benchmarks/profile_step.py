"""Where a train step's time goes: a kernel-level profile of the gantx step (JAX) or of the
official step (PyTorch), summed per kernel and per kind of kernel.

One case per run (model, batch size, compute dtype), built as `step_time.py` builds it. The
script compiles (JAX) or warms up (PyTorch), times --steps steps without the profiler (the wall
step), then traces --steps more steps (jax.profiler with a Perfetto trace, torch.profiler's
Chrome trace) and sums the device events of the trace: each kernel's time per step and calls
per step, and the totals of five kinds of kernel (convolution/matmul libraries, layout
transposes and copies, reductions and norms, other fusions/elementwise, memcpy/memset). Device
busy time per step below the wall step is time the device waited (launches, host work). For JAX
on the CPU, where the trace's events are XLA's op names, each op's source in the model (its
op_name metadata) is shown, and the busy time is summed per layer and pass.

    python3 benchmarks/profile_step.py --framework jax --device gpu --model cycle_gan --batch-size 4
    python3 benchmarks/profile_step.py --framework torch --device gpu --model cycle_gan --batch-size 4
    .venv/bin/python benchmarks/profile_step.py --framework jax --device cpu --model pix2pix --size 64 \\
        --ngf 8 --ndf 8 --steps 2      # plumbing check on the CPU (host XLA ops instead of kernels)

On the GPU the JAX side uses the machine's jax (with CUDA) and the torch side its torch, both
under one `python3` (benchmarks/gpu_run.sh); on the CPU torch is not profiled. Prints the
summary; --out DIR also writes it as DIR/profile_<framework>_<model>_bs<B>_<dtype><tag>.json.
"""

from __future__ import annotations

import argparse
import collections
import glob
import gzip
import itertools
import json
import os
import pathlib
import re
import statistics
import sys
import tempfile
import time

REPO = pathlib.Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO / "benchmarks"))
sys.path.insert(0, str(REPO))
from torch_step import time_samples  # noqa: E402  (torch-free; torch is imported inside its functions)

# The first pattern a kernel's name matches gives its kind (GPU kernel names of XLA, cuDNN,
# cuBLAS, CUTLASS and PyTorch; on the CPU, XLA's op names).
KINDS = (
    ("memcpy/memset", r"memcpy|memset"),
    ("layout (transpose, copy)", r"transpose|nchwtonhwc|nhwctonchw|copy|converttensor"),
    ("convolution/matmul library", r"xmma|cudnn|conv(?!ert)|gemm|cutlass|wgrad|dgrad|fprop|implicit|winograd"
                                   r"|nvjet|sm\d\d_|cublas|dot|ynn"),
    ("reduction/norm", r"reduc|norm|welford"),
    ("other fusion/elementwise", r""),
)


def _parse_args(argv=None):
  p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
  p.add_argument("--framework", choices=("jax", "torch"), default="jax")
  p.add_argument("--device", choices=("cpu", "gpu"), default="gpu")
  p.add_argument("--model", choices=("pix2pix", "cycle_gan"), default="cycle_gan")
  p.add_argument("--batch-size", type=int, default=4)
  p.add_argument("--dtype", choices=("float32", "bfloat16"), default="float32")
  p.add_argument("--size", type=int, default=256, help="square image side (default 256)")
  p.add_argument("--ngf", type=int, default=64)
  p.add_argument("--ndf", type=int, default=64)
  p.add_argument("--warmup", type=int, default=3, help="untimed steps after compiling (default 3)")
  p.add_argument("--steps", type=int, default=5, help="timed steps, then as many traced steps (default 5)")
  p.add_argument("--top", type=int, default=25, help="kernels listed, longest first (default 25)")
  p.add_argument("--seed", type=int, default=0)
  p.add_argument("--out", default=None, help="folder for the summary JSON")
  p.add_argument("--tag", default="", help="appended to the JSON's file name (e.g. the XLA_FLAGS variant)")
  p.add_argument("--study-seeds", type=int, default=0,
                 help="profile a seed study's step of this many replicas (1: the run's step) instead; with --study-case")
  p.add_argument("--study-case", default="pix2pix", help="study_speed.py's case: quickstart, pix2pix, cycle_gan")
  args = p.parse_args(argv)
  if args.framework == "torch" and args.device != "gpu":
    p.error("the PyTorch step is profiled on the GPU only (--device gpu)")
  if args.steps < 1 or args.warmup < 0:
    p.error("need --steps >= 1 and --warmup >= 0")
  return args


def kind_of(name: str) -> str:
  low = name.lower()
  return next(kind for kind, pattern in KINDS if re.search(pattern, low))


def device_events(trace: dict, device: str) -> list[tuple[str, float, str]]:
  """(name, duration in seconds, 'process / thread') of each device event of a Chrome/Perfetto trace: on a GPU the
  kernels and copies (the processes named after a GPU, or events of category kernel/gpu_*), on
  the CPU XLA's host ops (events carrying an `hlo_op`, else those of the XLA threads)."""
  events = trace["traceEvents"] if isinstance(trace, dict) else trace
  procs = {e["pid"]: e.get("args", {}).get("name", "") for e in events
           if e.get("ph") == "M" and e.get("name") == "process_name"}
  threads = {(e["pid"], e["tid"]): e.get("args", {}).get("name", "") for e in events
             if e.get("ph") == "M" and e.get("name") == "thread_name"}
  # jax's GPU process also has lines derived from the kernels (XLA Modules, XLA Ops, Steps):
  # only its stream lines are counted (all but the derived ones if none is named a stream),
  # so no kernel is counted twice.
  gpu_threads = {t for (pid, _), t in threads.items() if re.search(r"/device:gpu", procs.get(pid, ""), re.I)}
  if any(re.search(r"stream", t, re.I) for t in gpu_threads):
    counted = {t for t in gpu_threads if re.search(r"stream", t, re.I)}
  else:
    counted = {t for t in gpu_threads
               if not re.search(r"xla ops|xla modules|steps|launch|tensorflow ops|name scope|source", t, re.I)}
  out = []
  for e in events:
    if e.get("ph") != "X" or "dur" not in e:
      continue
    thread = threads.get((e.get("pid"), e.get("tid")), "")
    if device == "gpu":
      cat = str(e.get("cat", "")).lower()
      proc = procs.get(e.get("pid"), "")
      if cat in ("kernel", "gpu_memcpy", "gpu_memset") or (re.search(r"/device:gpu", proc, re.I) and thread in counted):
        out.append((e["name"], e["dur"] * 1e-6, f"{proc} / {thread}"))
    else:
      args = e.get("args") or {}
      if "hlo_op" in args or re.search(r"xla ops", thread, re.I):
        out.append((e["name"], e["dur"] * 1e-6, f"{procs.get(e.get('pid'), '')} / {thread}"))
  return out


def _family(name: str) -> str:
  """A kernel name without its instance number: XLA's fusion.12, loop_add_fusion_3 -> one family."""
  return re.sub(r"([._]\d+)+$", "", name)


def _group(totals: dict, key) -> dict:
  """{key(name): [seconds, calls]} summed over `totals` ({name: [seconds, calls]})."""
  out = collections.defaultdict(lambda: [0.0, 0])
  for name, (dur, n) in totals.items():
    out[key(name)][0] += dur
    out[key(name)][1] += n
  return out


def summarize(events: list[tuple[str, float, str]], steps: int, wall_step_s: float, top: int) -> dict:
  """Per-step totals of each kernel name, of each family of names and of each kind (KINDS)."""
  per_name = collections.defaultdict(lambda: [0.0, 0])
  for name, dur, _ in events:
    per_name[name][0] += dur
    per_name[name][1] += 1
  busy = sum(d for d, _ in per_name.values()) / steps

  def ranked(groups: dict, n: int | None = None) -> list[dict]:
    order = sorted(groups.items(), key=lambda kv: -kv[1][0])[:n]
    return [{"name": name, "kind": kind_of(name), "s_per_step": dur / steps, "calls_per_step": calls / steps}
            for name, (dur, calls) in order]

  return {
      "wall_step_s": wall_step_s,
      "device_busy_s_per_step": busy,  # summed over streams: can exceed the wall time where they overlap
      "kernels_per_step": sum(n for _, n in per_name.values()) / steps,
      "kinds": {k["name"]: {"s_per_step": k["s_per_step"], "calls_per_step": k["calls_per_step"],
                            "share_of_busy": k["s_per_step"] / busy if busy else None}
                for k in ranked(_group(per_name, kind_of))},
      "top": ranked(per_name, top),
      "top_families": ranked(_group(per_name, _family), top),
      "trace_lines_counted": dict(collections.Counter(line for _, _, line in events)),
  }


def hlo_sources(hlo_text: str) -> dict[str, str]:
  """Instruction name -> the JAX op path that made it (its `op_name` metadata: the jitted function,
  transforms and flax module path, e.g. `transpose(jvp(UnetGenerator))/outer/inner/down_conv/...`).
  On the CPU the trace's event names are these instruction names; GPU kernels are named otherwise."""
  found = re.finditer(r'^\s*(?:ROOT )?%?([\w.\-]+) = [^\n]*?metadata=\{[^}\n]*?op_name="([^"]*)"', hlo_text, re.M)
  return {name: op for name, op in (m.groups() for m in found)}


def layer_of(source: str | None) -> str:
  """`jit(step)/transpose(jvp(UnetGenerator))/outer/inner/down_conv/jit(_conv_winograd)/...` ->
  `UnetGenerator/outer/inner/down_conv backward`: the network, the module path, and the pass."""
  if not source:
    return "(no source)"
  parts = source.split("/")
  net = next((i for i, part in enumerate(parts) if "jvp(" in part), None)
  if net is None:
    return "(outside the networks: losses, optimizer)"
  path = [re.sub(r"^.*jvp\((\w+)\)+$", r"\1", parts[net])]
  path += [part for part in itertools.takewhile(lambda x: re.fullmatch(r"\w+", x) and not x.startswith("_"),
                                                parts[net + 1:-1])]  # the last part is the op
  return "/".join(path) + (" backward" if parts[net].startswith("transpose(") else " forward")


def _read_trace(path: str) -> dict:
  opener = gzip.open if path.endswith(".gz") else open
  with opener(path, "rt") as f:
    return json.load(f)


def profile_jax(args) -> tuple[float, list[tuple[str, float, str]], dict]:
  from gantx import allocator

  if args.device == "cpu":
    allocator.keep_freed_memory()  # as train.py does on a CPU, before JAX starts its backend
  import jax

  from step_time import Case, build_jax_step

  if jax.default_backend() != args.device:
    raise SystemExit(f"--device {args.device}, but jax runs on {jax.default_backend()}")
  if args.study_seeds:  # a seed study's step (benchmarks/study_speed.py builds it as `python -m gantx study`)
    from study_speed import build
    built = build(args.study_case, args.study_seeds, ("init", "data", "step"))
  else:
    built = build_jax_step(Case(args.model, args.batch_size, args.size, args.ngf, args.ndf, args.dtype), args.seed)
  compiled = built["train_step"].lower(built["state"], built["batch"]).compile()
  sources = hlo_sources(compiled.as_text())
  live = {"state": built["state"]}
  batch = built["batch"]
  del built

  def run():
    live["state"], live["metrics"] = compiled(live["state"], batch)

  def sync():
    jax.block_until_ready(live)

  times, _, _ = time_samples(run, sync, args.warmup, args.steps, 0.0)
  with tempfile.TemporaryDirectory() as tmp:
    with jax.profiler.trace(tmp, create_perfetto_trace=True):
      for _ in range(args.steps):
        run()
      sync()
    found = glob.glob(os.path.join(tmp, "**", "perfetto_trace.json.gz"), recursive=True)
    if not found:
      raise SystemExit(f"jax.profiler wrote no perfetto_trace.json.gz under {tmp}")
    events = device_events(_read_trace(found[0]), args.device)
  info = {"jax": jax.__version__, "backend": jax.default_backend(), "device_name": str(jax.devices()[0]),
          "sources": sources}
  return statistics.median(times), events, info


def profile_torch(args) -> tuple[float, list[tuple[str, float, str]], dict]:
  import torch

  from torch_step import official_step, step_runner

  torch.manual_seed(args.seed)
  torch.backends.cudnn.benchmark = True  # as the official train.py
  device = torch.device("cuda")
  step = official_step(args.model, device)
  A = torch.rand(args.batch_size, 3, args.size, args.size, device=device) * 2 - 1
  B = torch.rand(args.batch_size, 3, args.size, args.size, device=device) * 2 - 1
  run = step_runner(step, A, B, args.dtype)

  times, _, _ = time_samples(run, torch.cuda.synchronize, args.warmup, args.steps, 0.0)
  activities = [torch.profiler.ProfilerActivity.CPU, torch.profiler.ProfilerActivity.CUDA]
  with torch.profiler.profile(activities=activities) as prof:
    for _ in range(args.steps):
      run()
    torch.cuda.synchronize()
  with tempfile.TemporaryDirectory() as tmp:
    path = os.path.join(tmp, "trace.json")
    prof.export_chrome_trace(path)
    events = device_events(_read_trace(path), "gpu")
  info = {"torch": torch.__version__, "device_name": torch.cuda.get_device_name(device),
          "cudnn_allow_tf32": torch.backends.cudnn.allow_tf32}
  return statistics.median(times), events, info


def main(argv=None) -> dict:
  args = _parse_args(argv)
  t0 = time.perf_counter()
  wall, events, info = (profile_jax if args.framework == "jax" else profile_torch)(args)
  if not events:
    raise SystemExit("the trace holds no device events: nothing to summarize")
  sources = info.pop("sources", {})
  summary = summarize(events, args.steps, wall, args.top)
  for t in summary["top"]:  # where each of the longest ops comes from in the model (JAX on the CPU)
    t["source"] = sources.get(t["name"])
  if sources:
    per_layer = collections.Counter()
    for name, dur, _ in events:
      per_layer[layer_of(sources.get(name))] += dur / args.steps
    summary["layers"] = [{"layer": k, "s_per_step": v} for k, v in per_layer.most_common(args.top)]
  report = {"framework": args.framework, "device": args.device, "model": args.model, "batch_size": args.batch_size,
            "dtype": args.dtype, "size": args.size, "ngf": args.ngf, "ndf": args.ndf, "steps": args.steps,
            "xla_flags": os.environ.get("XLA_FLAGS", ""), "date": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
            "run_s": time.perf_counter() - t0, **info, **summary}
  label = f"{args.framework} {args.model} bs={args.batch_size} {args.size}x{args.size} {args.dtype}"
  print(f"## {label} on {info['device_name']}" + (f" (XLA_FLAGS={report['xla_flags']})" if report["xla_flags"] else ""))
  print(f"wall step {wall * 1e3:.2f} ms; device busy {summary['device_busy_s_per_step'] * 1e3:.2f} ms/step;"
        f" {summary['kernels_per_step']:.0f} kernels/step")
  print("| kind | ms/step | calls/step | share of busy |\n|---|---:|---:|---:|")
  for kind, k in summary["kinds"].items():
    print(f"| {kind} | {k['s_per_step'] * 1e3:.2f} | {k['calls_per_step']:.0f} | {k['share_of_busy']:.0%} |")
  for title, key in (("kernel", "top"), ("kernel family (instance numbers dropped)", "top_families")):
    print(f"| {title} | kind | ms/step | calls/step | source |\n|---|---|---:|---:|---|")
    for t in summary[key]:
      print(f"| `{t['name'][:100]}` | {t['kind']} | {t['s_per_step'] * 1e3:.3f} | {t['calls_per_step']:.1f} |"
            f" {t.get('source') or '—'} |")
  if summary.get("layers"):
    print("| layer and pass (op_name metadata) | ms/step |\n|---|---:|")
    for t in summary["layers"]:
      print(f"| {t['layer']} | {t['s_per_step'] * 1e3:.1f} |")
  print("trace lines counted:", summary["trace_lines_counted"])
  if args.out:
    os.makedirs(args.out, exist_ok=True)
    path = os.path.join(args.out, f"profile_{args.framework}_{args.model}_bs{args.batch_size}_{args.dtype}{args.tag}.json")
    with open(path, "w") as f:
      json.dump(report, f, indent=1)
    print(f"wrote {path}")
  return report


if __name__ == "__main__":
  main()
