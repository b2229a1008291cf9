"""Time gantx train steps (JAX) against the official PyTorch steps, in one run, on the CPU or a GPU.

For each case -- pix2pix (unet_256, batch norm, dropout, basic D, vanilla GAN) at every batch
size of --batch-sizes, and cycle_gan (resnet_9blocks, instance norm, lsgan, pool 50) at every
size of --cyclegan-batch-sizes (default 1), each in every compute dtype of --dtypes (float32;
bfloat16 mixed precision) -- the script builds
the train state and jits `steps.train_step_fn` over a 1-device ('data',) mesh exactly as
`gantx/train.py` does (replicated state, batch sharded on its first axis, state donated, the
persistent compilation cache on), then records:

  compile s        lower + compile of the step, cold (empty persistent cache) and cached (after
                   jax.clear_caches(), so the executable comes from the on-disk cache, as in a
                   second run); the state init is timed apart
  GFLOP/step       XLA's cost analysis of the step with direct convolutions (conv_impl='xla'),
                   lowered for the CPU: the arithmetic PyTorch does (Winograd layers do less)
  XLA mem          compiled.memory_analysis(): argument + output + temp - alias bytes
  peak RSS         the process's peak resident memory during the case (VmHWM, reset per case);
                   on a GPU also the device's peak bytes in use (of the process so far)
  step times       --warmup untimed steps, then --steps timed samples, each ended by
                   block_until_ready: one step per sample, or (--sample-s > 0, for GPUs, where
                   one step is short and a sync per step would time the host) as many steps as
                   take about that long

First, before JAX touches a device, it runs the PyTorch reference `benchmarks/torch_step.py` in
the separate torch environment, one subprocess per model, and reads the JSON object on its last
stdout line: on the CPU in float32 (bfloat16 rows are compared with it), on a GPU (--device gpu)
in each dtype (bfloat16 under torch.autocast). The two frameworks never run at the same time,
and on a GPU the torch processes have exited (their memory freed) before JAX allocates.

    .venv/bin/python benchmarks/step_time.py --out benchmarks/results.json   # full (minutes)
    .venv/bin/python benchmarks/step_time.py --quick                         # plumbing check (~1 min)
    python3 benchmarks/step_time.py --device gpu --torch-python python3 --batch-sizes 1,4,16,64 \
        --cyclegan-batch-sizes 1,4,16,64 --sample-s 0.5 --steps 5 --warmup 2 --out results.json

Prints a markdown block (machine, versions, command, table) that can be pasted into
BENCHMARKS.md; --out writes the same results, and that markdown, as JSON.
"""

from __future__ import annotations

import argparse
import dataclasses
import datetime
import gc
import json
import os
import pathlib
import platform
import resource
import shlex
import statistics
import subprocess
import sys
import tempfile
import time
import traceback
import warnings

REPO = pathlib.Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO / "benchmarks"))
from torch_step import cpu_name, reset_peak_rss, time_samples  # noqa: E402  (torch-free; torch is imported inside its main)
TORCH_SCRIPT = REPO / "benchmarks" / "torch_step.py"
# torch_step.py always builds the official networks at these widths, with netG unet_256.
TORCH_NGF = TORCH_NDF = 64
TORCH_PIX2PIX_NETG = "unet_256"
GIB = 1024**3
BUSY_CORES = 0.2  # other processes' load (cores) above which a case is flagged as measured on a busy machine


def _usable_cores() -> int:
  try:
    return len(os.sched_getaffinity(0))
  except AttributeError:
    return os.cpu_count() or 1


def _parse_args(argv=None) -> argparse.Namespace:
  p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
  p.add_argument("--models", default="pix2pix,cycle_gan", help="comma separated subset of pix2pix,cycle_gan")
  p.add_argument("--batch-sizes", default=None, help="pix2pix batch sizes, comma separated (default 1,4;"
                 " --quick: 1)")
  p.add_argument("--cyclegan-batch-sizes", default="1", help="cycle_gan batch sizes, comma separated (default 1)")
  p.add_argument("--device", default="cpu", choices=("cpu", "gpu"),
                 help="where both frameworks run: cpu (default) or gpu (JAX's CUDA backend, torch on cuda)")
  p.add_argument("--sample-s", type=float, default=0.0,
                 help="> 0: each timed sample runs as many steps as take about this long, one sync per sample"
                      " (for GPUs); 0 (default): one step per sample")
  p.add_argument("--deadline-s", type=float, default=0.0,
                 help="> 0: skip the JAX cases that would start after this many seconds (recorded as skipped)")
  p.add_argument("--size", type=int, default=None, help="square image side (default 256; --quick: 64)")
  p.add_argument("--ngf", type=int, default=None, help="generator width (default 64; --quick: 8)")
  p.add_argument("--ndf", type=int, default=None, help="discriminator width (default 64; --quick: 8)")
  p.add_argument("--warmup", type=int, default=None, help="untimed steps after compiling (default 2; --quick: 1)")
  p.add_argument("--steps", type=int, default=None, help="timed steps (default 5; --quick: 1)")
  p.add_argument("--seed", type=int, default=0)
  p.add_argument("--dtypes", default="float32,bfloat16", help="compute dtypes of the JAX cases (config.compute_dtype)")
  p.add_argument("--conv-impl", default="auto", help="config.conv_impl of the JAX cases: auto (default), xla, gemm")
  p.add_argument("--no-cached-compile", action="store_true",
                 help="skip the second (cached) lower + compile of each step (saves time on GPUs)")
  p.add_argument("--cache-dir", default=None,
                 help="persistent compilation cache directory (default: a fresh temporary one, so the cold compile"
                      " really compiles)")
  p.add_argument("--quick", action="store_true",
                 help="plumbing check: --size 64, ngf/ndf 8, batch 1, 1 warmup and 1 timed step (explicit flags"
                      " win);"
                      " pix2pix uses unet_64. The PyTorch side keeps its fixed widths, so no ratio is shown.")
  p.add_argument("--threads", type=int, default=_usable_cores(),
                 help=f"torch.set_num_threads for the reference (default: the usable cores, {_usable_cores()} here)")
  p.add_argument("--torch-python", default=".venv-torch/bin/python",
                 help="python of the torch environment, relative to the repo root unless absolute")
  p.add_argument("--torch-size", type=int, default=None,
                 help="image side for the PyTorch reference (default: --size; pix2pix is raised to a multiple"
                      " of 256 because torch_step.py always builds unet_256)")
  p.add_argument("--no-torch", action="store_true", help="skip the PyTorch reference")
  p.add_argument("--no-keep-freed-memory", action="store_true",
                 help="JAX on the CPU without gantx.allocator.keep_freed_memory (as train.py --nokeep_freed_memory);"
                      " --device gpu never applies it")
  p.add_argument("--torch-keep-freed-memory", action="store_true",
                 help="PyTorch with the same glibc settings (GLIBC_TUNABLES: one arena, no mmap, no trim)")
  p.add_argument("--out", default=None, help="write the results (and the markdown) to this JSON file")
  args = p.parse_args(argv)
  defaults = dict(batch_sizes=("1", "1,4"), size=(64, 256), ngf=(8, 64), ndf=(8, 64), warmup=(1, 2), steps=(1, 5))
  for name, (quick, full) in defaults.items():
    if getattr(args, name) is None:
      setattr(args, name, quick if args.quick else full)
  args.models = [m.strip() for m in args.models.split(",") if m.strip()]
  bad = set(args.models) - {"pix2pix", "cycle_gan"}
  if bad:
    p.error(f"unknown --models entries: {sorted(bad)}")
  args.batch_sizes = [int(b) for b in args.batch_sizes.split(",") if b.strip()]
  args.cyclegan_batch_sizes = [int(b) for b in args.cyclegan_batch_sizes.split(",") if b.strip()]
  args.dtypes = [d.strip() for d in args.dtypes.split(",") if d.strip()]
  if set(args.dtypes) - {"float32", "bfloat16"} or not args.dtypes:
    p.error(f"--dtypes must be a subset of float32,bfloat16, got {args.dtypes}")
  if (args.steps < 1 or args.warmup < 0 or not args.batch_sizes or not args.cyclegan_batch_sizes
      or min(args.batch_sizes + args.cyclegan_batch_sizes) < 1):
    p.error("need --steps >= 1, --warmup >= 0 and batch sizes >= 1")
  return args


# ----------------------------------------------------------------------------- machine / memory


def _cpu_flags() -> list[str]:
  try:
    with open("/proc/cpuinfo") as f:
      for line in f:
        if line.startswith("flags"):
          flags = line.split(":", 1)[1].split()
          return sorted(f for f in flags if f.startswith(("avx512", "avx2", "amx", "fma")))
  except OSError:
    pass
  return []


def _mem_total_gib() -> float | None:
  try:
    with open("/proc/meminfo") as f:
      for line in f:
        if line.startswith("MemTotal:"):
          return round(int(line.split()[1]) * 1024 / GIB, 1)
  except OSError:
    pass
  return None


def _loadavg() -> list[float]:
  return [round(x, 2) for x in os.getloadavg()]


def _peak_rss_bytes(reset_worked: bool) -> tuple[int, str]:
  """(bytes, how): VmHWM since the last reset, else the lifetime ru_maxrss."""
  if reset_worked:
    try:
      with open("/proc/self/status") as f:
        for line in f:
          if line.startswith("VmHWM:"):
            return int(line.split()[1]) * 1024, "VmHWM since case start"
    except OSError:
      pass
  kib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss  # KiB on Linux
  return kib * 1024, "ru_maxrss of the process so far"


def _busy_cpu_s() -> float | None:
  """CPU seconds all processes of the machine have used (busy jiffies of /proc/stat's 'cpu' line)."""
  try:
    with open("/proc/stat") as f:
      fields = [int(x) for x in f.readline().split()[1:]]
  except (OSError, ValueError):
    return None
  user, nice, system, idle, iowait, irq, softirq, steal = (fields + [0] * 8)[:8]
  return (user + nice + system + irq + softirq + steal) / os.sysconf("SC_CLK_TCK")


def _own_cpu_s() -> float:
  r = resource.getrusage(resource.RUSAGE_SELF)
  return r.ru_utime + r.ru_stime


def _other_load(busy0, busy1, own_cpu_s: float, wall_s: float) -> float | None:
  """Mean number of cores that OTHER processes kept busy during a timed section (0 = quiet)."""
  if busy0 is None or busy1 is None or wall_s <= 0:
    return None
  return round(max(0.0, (busy1 - busy0) - own_cpu_s) / wall_s, 2)


def _git_info() -> dict:
  def git(*a):
    try:
      return subprocess.run(["git", *a], cwd=REPO, capture_output=True, text=True, timeout=10).stdout
    except (OSError, subprocess.SubprocessError):
      return ""
  status = git("status", "--porcelain", "--untracked-files=no")
  return {"commit": git("rev-parse", "--short", "HEAD").strip(),
          "modified_files": [l[3:] for l in status.splitlines() if len(l) > 3]}


def _command_line() -> str:
  exe = pathlib.Path(sys.executable)
  try:
    exe = exe.relative_to(pathlib.Path.cwd())  # keep the venv's path, not its symlink target
  except ValueError:
    pass
  script = pathlib.Path(sys.argv[0])
  try:
    script = script.resolve().relative_to(pathlib.Path.cwd())
  except ValueError:
    pass
  return shlex.join([str(exe), str(script), *sys.argv[1:]])


# ----------------------------------------------------------------------------- cases


@dataclasses.dataclass
class Case:
  model: str
  batch_size: int
  size: int
  ngf: int
  ndf: int
  dtype: str = "float32"
  conv_impl: str = "auto"

  @property
  def name(self) -> str:
    return f"{self.model} bs={self.batch_size} {self.size}x{self.size} {self.dtype}"

  def torch_key(self, device: str) -> tuple[str, int, str]:
    """The PyTorch run this case is compared with: the same dtype on a GPU, float32 on the CPU."""
    return self.model, self.batch_size, self.dtype if device == "gpu" else "float32"

  @property
  def netG(self) -> str:
    if self.model == "cycle_gan":
      return "resnet_9blocks"
    if self.size % 256 == 0:
      return "unet_256"
    if self.size & (self.size - 1):
      raise ValueError(f"pix2pix needs --size a multiple of 256 or a power of two (unet_<size>), got {self.size}")
    return f"unet_{self.size}"

  def config(self):
    from gantx import config as config_lib
    c = config_lib.base_config(self.model)
    c.batch_size, c.ngf, c.ndf, c.netG = self.batch_size, self.ngf, self.ndf, self.netG
    c.crop_size = self.size
    c.load_size = max(c.load_size, self.size)
    c.compute_dtype = self.dtype
    c.conv_impl = self.conv_impl
    config_lib.validate(c)
    return c


def _cost_flops(stage) -> tuple[float | None, str | None]:
  """(FLOPs, None) from .cost_analysis() of a Compiled or Lowered (a dict in jax 0.12, a list of dicts in
  older jax), or (None, why not): the reason goes into the report, where the GFLOP column is empty."""
  try:
    ca = stage.cost_analysis()
  except Exception as e:  # noqa: BLE001 -- some backends do not implement it
    return None, f"{type(e).__name__}: {str(e).splitlines()[0] if str(e) else ''}"
  if isinstance(ca, (list, tuple)):
    ca = ca[0] if ca else None
  if not ca or "flops" not in ca:
    return None, f"cost_analysis() gave no 'flops': {str(ca)[:200]}"
  return float(ca["flops"]), None


def _memory_stats(compiled) -> dict | None:
  """compiled.memory_analysis() (a CompiledMemoryStats in jax 0.12) as a dict of byte counts."""
  try:
    m = compiled.memory_analysis()
  except Exception:  # noqa: BLE001
    return None
  if m is None:
    return None
  fields = ("argument_size_in_bytes", "output_size_in_bytes", "alias_size_in_bytes", "temp_size_in_bytes",
            "generated_code_size_in_bytes")
  out = {f: int(getattr(m, f)) for f in fields if hasattr(m, f)}
  if {"argument_size_in_bytes", "output_size_in_bytes", "temp_size_in_bytes"} <= out.keys():
    # Donated (aliased) outputs reuse their argument buffers, so they are counted once.
    out["peak_estimate_bytes"] = (out["argument_size_in_bytes"] + out["output_size_in_bytes"]
                                  + out["temp_size_in_bytes"] - out.get("alias_size_in_bytes", 0))
  return out


def _device_peak_bytes(device) -> int | None:
  """The device's peak bytes in use (of this process so far: XLA cannot reset it); None on the CPU."""
  try:
    stats = device.memory_stats()
  except Exception:  # noqa: BLE001
    return None
  return int(stats["peak_bytes_in_use"]) if stats and "peak_bytes_in_use" in stats else None


def build_jax_step(case: Case, seed: int) -> dict:
  """The case's train step as `gantx/train.py` builds it: a 1-device ('data',) mesh, the state
  replicated, the batch sharded on its first axis, the state donated. Returns config, nets,
  state, batch, the jitted step (not yet compiled), init_s (state init, compiled and run) and
  params (parameter count of each network)."""
  import functools

  import jax
  import numpy as np
  from jax.sharding import AxisType

  from gantx import models, parallel, state as state_lib, steps

  config = case.config()
  # A 1-device ('data',) mesh, as parallel.make_mesh() gives on one device.
  mesh = jax.make_mesh((1,), (parallel.DATA_AXIS,), axis_types=(AxisType.Auto,), devices=jax.devices()[:1])
  repl, batch_sharding = parallel.replicated(mesh), parallel.batch_sharding(mesh)
  parallel.resolve_batch_size(config, mesh)

  nets = state_lib.build_networks(config, spe=1000)
  root = jax.random.key(seed)
  init = functools.partial(state_lib.init_state, config, nets, image_hw=(case.size, case.size))
  t0 = time.perf_counter()
  state = jax.block_until_ready(jax.jit(init, out_shardings=repl)(jax.random.fold_in(root, 0)))
  init_s = time.perf_counter() - t0
  params = {name: models.count_params(p) for name, p in state.params.items()}

  rng = np.random.default_rng(seed)
  shape = (case.batch_size, case.size, case.size, 3)
  local = {k: rng.uniform(-1, 1, shape).astype(np.float32) for k in ("A", "B")}
  batch = jax.block_until_ready(parallel.global_batch(local, batch_sharding))

  train_step = jax.jit(steps.train_step_fn(config, nets), in_shardings=(repl, batch_sharding),
                       out_shardings=(repl, repl), donate_argnums=0)
  return dict(config=config, nets=nets, state=state, batch=batch, train_step=train_step, init_s=init_s,
              params=params)


def run_jax_case(case: Case, warmup: int, steps_n: int, seed: int, sample_s: float = 0.0,
                 cached_compile: bool = True) -> dict:
  import jax
  import numpy as np

  from gantx import allocator, state as state_lib, steps

  reset_ok = reset_peak_rss()
  built = build_jax_step(case, seed)
  config, state, batch, train_step = built["config"], built["state"], built["batch"], built["train_step"]
  init_s, params = built["init_s"], built["params"]
  del built
  with warnings.catch_warnings(record=True) as caught:
    warnings.simplefilter("always")
    t0 = time.perf_counter()
    lowered = train_step.lower(state, batch)
    t1 = time.perf_counter()
    compiled = lowered.compile()
    t2 = time.perf_counter()
    cached_s = None
    if cached_compile:  # A second run: nothing in memory, the executable read back from the persistent cache.
      jax.clear_caches()
      t3 = time.perf_counter()
      cached = train_step.lower(state, batch).compile()
      cached_s = time.perf_counter() - t3
      del cached
  lower_s, compile_s = t1 - t0, t2 - t1
  donation_warnings = [str(w.message).splitlines()[0] for w in caught if "donated" in str(w.message)]
  flops_compiled, _ = _cost_flops(compiled)
  # FLOPs of the step with XLA's direct convolutions (conv_impl='xla'), lowered for the CPU from
  # abstract arguments: the arithmetic of the direct form, which PyTorch's step does too, one
  # count for every backend (after compilation, GPUs' cuDNN calls are not counted) and every
  # conv_impl (the CPU rules' Winograd layers do fewer multiply-adds than they are credited with).
  direct = dataclasses.replace(case, conv_impl="xla").config()
  abstract = jax.tree.map(lambda a: jax.ShapeDtypeStruct(a.shape, a.dtype), (state, batch))
  direct_step = steps.train_step_fn(direct, state_lib.build_networks(direct, spe=1000))
  # On the H100 of 2026-11-27 (jax 0.11.2) this count came back empty, where on the H200 the day
  # before it did not; the reason is now kept in the report ("flops_error").
  flops, flops_error = _cost_flops(jax.jit(direct_step).trace(*abstract).lower(lowering_platforms=("cpu",)))
  mem = _memory_stats(compiled)
  del lowered

  live = {"state": state}  # the state is donated: each step's output is the next one's input
  allocator.release_freed_memory()  # the compiler's freed memory, as train.py after its first step

  def run():
    live["state"], live["metrics"] = compiled(live["state"], batch)

  # Other processes' load is measured over the warmup and timed steps (/proc/stat ticks are 10 ms).
  busy0, own0, wall0 = _busy_cpu_s(), _own_cpu_s(), time.perf_counter()
  times, chunk, warmup_s = time_samples(run, lambda: jax.block_until_ready(live), warmup, steps_n, sample_s)
  state, metrics = live["state"], live["metrics"]
  timed_wall = time.perf_counter() - wall0
  own_cpu = _own_cpu_s() - own0
  other = _other_load(busy0, _busy_cpu_s(), own_cpu, timed_wall)
  finite = bool(all(np.isfinite(float(v)) for v in jax.device_get(metrics).values()))
  rss, rss_how = _peak_rss_bytes(reset_ok)
  device_peak = _device_peak_bytes(jax.devices()[0])
  median = statistics.median(times)
  del state, metrics, batch, compiled, train_step
  gc.collect()
  jax.clear_caches()
  return {
      "netG": case.netG, "netD": config.netD, "norm": config.norm, "gan_mode": config.gan_mode,
      "ngf": case.ngf, "ndf": case.ndf, "dropout": not config.no_dropout, "pool_size": config.pool_size,
      "params": params, "init_s": init_s, "lower_s": lower_s, "compile_s": compile_s,
      "lower_plus_compile_s": lower_s + compile_s, "cached_lower_plus_compile_s": cached_s, "warmup_s": warmup_s,
      "compute_dtype": case.dtype, "conv_impl": config.conv_impl,
      "flops_per_step": flops, "flops_error": flops_error, "flops_per_step_compiled": flops_compiled, "xla_memory": mem,
      "device_peak_bytes_so_far": device_peak, "steps_per_sample": chunk,
      "peak_rss_bytes": rss, "peak_rss_how": rss_how, "donation_warnings": donation_warnings,
      "step_s_median": median, "step_s_all": times, "metrics_finite": finite,
      "images_per_s": case.batch_size / median,
      "gflops_per_s": flops / median / 1e9 if flops else None,
      "cores_used": round(own_cpu / timed_wall, 2), "other_load_cores": other,
  }


# ----------------------------------------------------------------------------- torch


def _torch_size(case: Case, args) -> int:
  size = args.torch_size or case.size
  if case.model == "pix2pix" and size % 256:
    size = (size // 256 + 1) * 256
  return size


def run_torch_model(model: str, cases: list[Case], args) -> dict:
  """One torch_step.py subprocess for all of `model`'s cases: {torch_key: result dict}."""
  python = pathlib.Path(args.torch_python)
  if not python.is_absolute() and "/" in args.torch_python:
    python = REPO / python
  size = _torch_size(cases[0], args)
  keys = sorted({c.torch_key(args.device) for c in cases})
  batch_sizes = sorted({k[1] for k in keys})
  dtypes = sorted({k[2] for k in keys}, reverse=True)  # float32 first
  cmd = [str(python), str(TORCH_SCRIPT), "--threads", str(args.threads), "--warmup", str(args.warmup),
         "--steps", str(args.steps), "--batch-sizes", ",".join(map(str, batch_sizes)), "--models", model,
         "--image-size", str(size), "--seed", str(args.seed), "--device", "cuda" if args.device == "gpu" else "cpu",
         "--dtypes", ",".join(dtypes), "--sample-s", str(args.sample_s)]
  info = {"command": shlex.join(cmd), "image_size": size, "ngf": TORCH_NGF, "ndf": TORCH_NDF,
          "netG": TORCH_PIX2PIX_NETG if model == "pix2pix" else "resnet_9blocks"}
  if "/" in str(python) and not python.exists():
    return {k: {**info, "error": f"{python} not found (see benchmarks/README.md, or pass --no-torch)"} for k in keys}
  print(f"[torch] {model}: {info['command']}", flush=True)
  t0, busy0 = time.perf_counter(), _busy_cpu_s()
  from gantx import allocator

  env = dict(os.environ, GLIBC_TUNABLES=allocator.GLIBC_TUNABLES) if args.torch_keep_freed_memory else None
  proc = subprocess.Popen(cmd, cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=env)
  lines = []
  for line in proc.stdout:
    lines.append(line.rstrip("\n"))
    if not line.startswith("{"):
      print(f"[torch]   {line.rstrip()}", flush=True)
  proc.stdout.close()
  _, status, usage = os.wait4(proc.pid, 0)  # this child's own rusage (CPU times)
  proc.returncode = os.waitstatus_to_exitcode(status)
  info["wall_s"] = time.perf_counter() - t0
  # Over the whole subprocess (import, build, warmup, timing): the parent only waits meanwhile.
  info["other_load_cores"] = _other_load(busy0, _busy_cpu_s(), usage.ru_utime + usage.ru_stime, info["wall_s"])
  try:
    out = json.loads(lines[-1]) if proc.returncode == 0 else None
  except (IndexError, ValueError) as e:
    out, info["error"] = None, f"could not read the JSON line: {e!r}"
  if out is None:
    info.setdefault("error", f"exit code {proc.returncode}")
    return {k: {**info, "output_tail": lines[-20:]} for k in keys}
  info.update(torch_version=out.get("torch_version"), threads=out.get("threads"), device=out.get("device"),
              cudnn_allow_tf32=out.get("cudnn_allow_tf32"),
              loadavg_1min_start_end=out.get("loadavg_1min_start_end"))
  results = {}
  for key in keys:
    found = [r for r in out["results"] if (r["model"], r["batch_size"], r["dtype"]) == key]
    if not found:
      results[key] = {**info, "error": "no result for this case in the JSON line"}
    elif "error" in found[0]:
      results[key] = {**info, "error": found[0]["error"]}
    else:
      r = found[0]
      results[key] = {**info, "step_s_median": r["step_s_median"], "step_s_all": r["step_s_all"],
                      "steps_per_sample": r.get("steps_per_sample", 1), "dtype": r["dtype"],
                      "images_per_s": key[1] / r["step_s_median"], "peak_rss_bytes": r.get("peak_rss_bytes"),
                      "peak_device_bytes": r.get("peak_device_bytes")}
  return results


def measure_matmul_ceilings() -> dict:
  """TFLOP/s of an 8192^3 matmul in bfloat16 and in float32 at JAX's default precision (TF32 on
  recent GPUs): the ceilings a step's FLOP rate is compared with."""
  import jax
  import jax.numpy as jnp

  n, out = 8192, {}
  for name in ("bfloat16", "float32"):
    a = jax.random.normal(jax.random.key(1), (n, n), name)
    b = jax.random.normal(jax.random.key(2), (n, n), name)
    f = jax.jit(lambda a, b: a @ b)
    f(a, b).block_until_ready()
    times = []
    for _ in range(5):
      t0 = time.perf_counter()
      for _ in range(10):
        c = f(a, b)
      c.block_until_ready()
      times.append((time.perf_counter() - t0) / 10)
    out[name] = 2 * n**3 / statistics.median(times) / 1e12
  return out


# ----------------------------------------------------------------------------- report


def _fmt(x, spec, missing="—"):
  return missing if x is None else format(x, spec)


def markdown(report: dict) -> str:
  m, a = report["machine"], report["settings"]
  gpu = a["device"] == "gpu"
  ceil = report.get("matmul_tflops") or {}
  quick = " — QUICK plumbing check, not a measurement" if a["quick"] else ""
  lines = [
      f"### gantx train step: JAX vs PyTorch ({report.get('device_name') or a['device']}){quick}",
      "",
      f"- date: {report['date']}",
      f"- machine: {m['cpu']}, {m['usable_cores']} usable cores (os.cpu_count {m['cpu_count']}),"
      f" {m['mem_total_gib']} GiB RAM; {', '.join(m['cpu_flags']) or 'no AVX flags'}",
      f"- load average (1/5/15 min): start {m['loadavg_start']}, end {m['loadavg_end']}",
      f"- versions: python {report['versions']['python']}, jax {report['versions']['jax']},"
      f" jaxlib {report['versions']['jaxlib']}, flax {report['versions']['flax']},"
      f" optax {report['versions']['optax']}, torch {report['versions'].get('torch') or '—'}"
      + ("" if gpu else f" ({a['threads']} threads)")
      + (f"; PyTorch with GLIBC_TUNABLES={report['torch_glibc_tunables']}" if report.get("torch_glibc_tunables") else ""),
      f"- JAX: backend {report['jax_backend']}, XLA_FLAGS={os.environ.get('XLA_FLAGS', '') or '(unset)'},"
      f" conv_impl {a['conv_impl']}, 1-device mesh, state donated, persistent compilation cache on,"
      f" freed memory kept (gantx.allocator) {report.get('keep_freed_memory')};"
      f" git {report['git']['commit']}"
      + (f" + local changes in {', '.join(report['git']['modified_files'])}" if report['git']['modified_files'] else ""),
      f"- steps: {a['warmup']} warmup + {a['steps']} timed samples per case (median shown)"
      + (f", each sample about {a['sample_s']} s of steps ended by one sync" if a["sample_s"] else ", one step each")
      + f"; image {a['size']}x{a['size']}, ngf {a['ngf']}, ndf {a['ndf']}",
      f"- command: `{report['command']}`",
  ]
  if ceil:
    lines.append(f"- measured ceilings (8192^3 matmul, JAX): bfloat16 {ceil['bfloat16']:.0f} TFLOP/s, float32 at"
                 f" default precision {ceil['float32']:.0f} TFLOP/s")
  torch_dtype = "same dtype" if gpu else "float32"
  lines += [
      "",
      f"| case | dtype | JAX step s (median) | PyTorch step s ({torch_dtype}) | ratio JAX/PyTorch | JAX img/s"
      " | PyTorch img/s | JAX GFLOP/step | JAX TFLOP/s" + (" | JAX / PyTorch % of ceiling" if ceil else "")
      + " | compile s (cold / cached)"
      + (" | JAX mem GiB (XLA est. / device peak so far) | PyTorch device peak GiB" if gpu else
         " | JAX peak mem GiB (XLA est. / RSS) | PyTorch peak RSS GiB | other load, cores (JAX / PyTorch)") + " |",
      "|---|---|" + "---:|" * (11 + bool(ceil) - gpu),
  ]
  notes = []
  for c in report["cases"]:
    j, t = c.get("jax", {}), c.get("torch") or {}
    dtype = c.get("dtype", "float32")
    name = c["case"].rsplit(" ", 1)[0] if c["case"].endswith(dtype) else c["case"]
    name += f" ({j['netG']})" if j.get("netG") and j["netG"] not in ("unet_256", "resnet_9blocks") else ""
    tstep = t.get("step_s_median")
    if "error" in t and (gpu or dtype == a["dtypes"][0]):
      notes.append(f"{c['case']}: PyTorch failed: {t['error']}")
    if "error" in j or "skipped" in j:
      what = "error" if "error" in j else "skipped"
      notes.append(f"{c['case']}: JAX {what}: {j.get('error') or j.get('skipped')}")
      lines.append(f"| {name} | {dtype} | {what} | {_fmt(tstep, '.4f')} |" + " — |" * (9 + bool(ceil) - gpu))
      continue
    ratio = "—"
    if tstep:
      if _same_setup_dict(c):
        ratio = f"{j['step_s_median'] / tstep:.2f}"
      else:
        ratio = "n/a*"
        notes.append(f"{c['case']}: PyTorch ran {t.get('netG')} at {t.get('image_size')}px, ngf {TORCH_NGF}"
                     f" (torch_step.py's fixed setup), JAX {j.get('netG')} at {a['size']}px, ngf {a['ngf']}:"
                     " not comparable, no ratio.")
    flops = j.get("flops_per_step")
    jt = flops / j["step_s_median"] / 1e12 if flops else None
    row = (f"| {name} | {dtype} | {j['step_s_median']:.4f} | {_fmt(tstep, '.4f')} | {ratio}"
           f" | {j['images_per_s']:.2f} | {_fmt(c['batch_size'] / tstep if tstep else None, '.2f')}"
           f" | {_fmt(flops / 1e9 if flops else None, '.1f')} | {_fmt(jt, '.3f')}")
    if ceil:
      peak = ceil[dtype] * 1e12
      tt = flops / tstep if flops and tstep and ratio != "n/a*" else None
      row += f" | {_fmt(jt * 1e12 / peak * 100 if jt else None, '.1f')} / {_fmt(tt / peak * 100 if tt else None, '.1f')}"
    row += f" | {j['lower_plus_compile_s']:.1f} / {_fmt(j.get('cached_lower_plus_compile_s'), '.1f')}"
    mem = j.get("xla_memory") or {}
    xla = mem.get("peak_estimate_bytes")
    gib = lambda b: b / GIB if b else None
    if gpu:
      row += (f" | {_fmt(gib(xla), '.2f')} / {_fmt(gib(j.get('device_peak_bytes_so_far')), '.2f')}"
              f" | {_fmt(gib(t.get('peak_device_bytes')), '.2f')} |")
    else:
      row += (f" | {_fmt(gib(xla), '.2f')} / {j['peak_rss_bytes'] / GIB:.2f} | {_fmt(gib(t.get('peak_rss_bytes')), '.2f')}"
              f" | {_fmt(j.get('other_load_cores'), '.2f')} / {_fmt(t.get('other_load_cores'), '.2f')} |")
    lines.append(row)
    busy = max([x for x in (j.get("other_load_cores"), t.get("other_load_cores")) if x is not None], default=0)
    if busy > BUSY_CORES and not gpu:
      notes.append(f"{c['case']}: other processes kept {busy:.2f} cores busy while it was timed: the machine was"
                   " not quiet, rerun before quoting these times.")
  lines += ["", "Columns: step s = median wall time of one optimizer step (G and D updates) after warmup;"
            " ratio < 1 means JAX is faster" + ("" if gpu else " (bfloat16 rows are compared with PyTorch's float32 step)")
            + "; GFLOP/step = XLA's cost analysis of the step with direct convolutions (conv_impl='xla'), lowered for the CPU: the arithmetic PyTorch's step does, so the same count serves its rate (JAX's Winograd layers do fewer);"
            " TFLOP/s = that / median step time"
            + ("; % of ceiling = that rate over the measured matmul rate of the row's dtype" if ceil else "")
            + "; compile s = lower + compile of the jitted step, cold (empty persistent"
            " cache) / cached (in-memory caches cleared, executable from the on-disk cache, as a second run);"
            " XLA est. = argument + output + temp - aliased bytes of the compiled step"
            + ("; device peak = peak bytes in use on the GPU (JAX: of the process so far, cases run in table order;"
               " PyTorch: torch.cuda.max_memory_allocated per case)." if gpu else
               "; RSS = peak resident memory of the JAX process during the case (includes compilation) or of"
               " the PyTorch subprocess; other load = mean cores used by OTHER processes during the JAX warmup"
               " + timed steps / during the whole PyTorch subprocess (from /proc/stat; ~0 on a quiet machine).")]
  if notes:
    lines += [""] + [f"- {n}" for n in notes]
  return "\n".join(lines)


def _same_setup_dict(c: dict) -> bool:
  j, t = c["jax"], c["torch"]
  return (t.get("image_size") == j.get("image_size") and j.get("ngf") == TORCH_NGF and j.get("ndf") == TORCH_NDF
          and t.get("netG") == j.get("netG"))


def _save(report: dict, out: str | None) -> None:
  if out:
    path = pathlib.Path(out)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(report, indent=2) + "\n")


def main(argv=None) -> int:
  t_start = time.perf_counter()
  args = _parse_args(argv)
  command = _command_line()
  load_start = _loadavg()
  if load_start[0] > BUSY_CORES * 2 and args.device == "cpu":
    print(f"WARNING: load average {load_start} at start: the machine is not quiet; times will be inflated"
          " (see the 'other load' column).", file=sys.stderr, flush=True)
  date = datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds")

  sys.path.insert(0, str(REPO))

  from gantx import allocator

  # As train.py does on a CPU, before JAX starts its backend.
  keep_freed_memory = args.device == "cpu" and not args.no_keep_freed_memory and allocator.keep_freed_memory()
  import flax
  import jax  # no device is touched until the PyTorch runs are over
  import jaxlib
  import optax

  cache_dir = args.cache_dir or tempfile.mkdtemp(prefix="gantx-bench-xla-cache-")
  jax.config.update("jax_compilation_cache_dir", cache_dir)  # as gantx.train.use_compilation_cache does
  jax.config.update("jax_persistent_cache_min_compile_time_secs", 0)

  # Small batches first, so that a --deadline-s cuts the largest ones.
  cases = [Case(model, bs, args.size, args.ngf, args.ndf, dtype, args.conv_impl)
           for bs in sorted(set(args.batch_sizes) | set(args.cyclegan_batch_sizes))
           for model in args.models
           if bs in (args.batch_sizes if model == "pix2pix" else args.cyclegan_batch_sizes)
           for dtype in args.dtypes]
  for c in cases:
    try:
      c.config()  # fail on a bad size or width before anything compiles
    except ValueError as e:
      raise SystemExit(f"step_time.py: {c.name}: {e}") from None

  report = {
      "date": date,
      "command": command,
      "settings": {k: getattr(args, k) for k in ("models", "batch_sizes", "cyclegan_batch_sizes", "dtypes", "size",
                                                 "ngf", "ndf", "warmup", "steps", "sample_s", "device", "conv_impl", "seed",
                                                 "quick", "threads", "torch_python", "torch_size", "no_torch",
                                                 "no_cached_compile", "deadline_s", "torch_keep_freed_memory")},
      "keep_freed_memory": keep_freed_memory,
      "torch_glibc_tunables": allocator.GLIBC_TUNABLES if args.torch_keep_freed_memory else None,
      "compilation_cache_dir": cache_dir,
      "machine": {"cpu": cpu_name(), "cpu_flags": _cpu_flags(), "cpu_count": os.cpu_count(),
                  "usable_cores": _usable_cores(), "mem_total_gib": _mem_total_gib(),
                  "loadavg_start": load_start, "platform": platform.platform()},
      "versions": {"python": platform.python_version(), "jax": jax.__version__, "jaxlib": jaxlib.__version__,
                   "flax": flax.__version__, "optax": optax.__version__, "torch": None},
      "xla_flags": os.environ.get("XLA_FLAGS", ""),
      "git": _git_info(),
      "cases": [{"case": c.name, "model": c.model, "batch_size": c.batch_size, "dtype": c.dtype, "jax": {},
                 "torch": None} for c in cases],
  }
  failed = False

  # PyTorch first, one subprocess per model, before JAX allocates any device memory.
  if not args.no_torch:
    for model in args.models:
      model_cases = [c for c in cases if c.model == model]
      runs = run_torch_model(model, model_cases, args)
      for case, res in zip(cases, report["cases"]):
        if case.model == model:
          t = runs[case.torch_key(args.device)]
          res["torch"] = t
          failed |= "error" in t
          report["versions"]["torch"] = report["versions"]["torch"] or t.get("torch_version")
      for key, t in runs.items():
        if "error" in t:
          print(f"[torch]   {key}: FAILED: {t['error']}", file=sys.stderr, flush=True)
          for line in t.get("output_tail", []):
            print(f"[torch]   | {line}", file=sys.stderr)
      _save(report, args.out)

  report["jax_backend"] = jax.default_backend()
  if (report["jax_backend"] == "gpu") != (args.device == "gpu"):
    raise SystemExit(f"step_time.py: --device {args.device} but JAX's backend is {report['jax_backend']}")
  report["device_name"] = jax.devices()[0].device_kind if args.device == "gpu" else None
  if args.device == "gpu":
    report["matmul_tflops"] = measure_matmul_ceilings()
    print(f"[jax] matmul ceilings (TFLOP/s): {report['matmul_tflops']}", flush=True)

  for case, res in zip(cases, report["cases"]):
    elapsed = time.perf_counter() - t_start
    if args.deadline_s and elapsed > args.deadline_s:
      res["jax"] = {"skipped": f"--deadline-s {args.deadline_s:g} passed ({elapsed:.0f} s)", "image_size": case.size}
      continue
    print(f"[jax] {case.name}: building, compiling, {args.warmup} warmup + {args.steps} timed samples ...", flush=True)
    try:
      r = run_jax_case(case, args.warmup, args.steps, args.seed, args.sample_s, not args.no_cached_compile)
      r["image_size"] = case.size
      print(f"[jax]   compile {r['lower_plus_compile_s']:.1f} s (cached {_fmt(r['cached_lower_plus_compile_s'], '.1f')} s),"
            f" median step {r['step_s_median']:.4f} s ({r['steps_per_sample']} per sample),"
            f" all {[round(x, 4) for x in r['step_s_all']]}, {_fmt(r['gflops_per_s'], '.1f')} GFLOP/s,"
            f" peak RSS {r['peak_rss_bytes'] / GIB:.2f} GiB", flush=True)
      if r.get("flops_error"):
        print(f"[jax]   no FLOP count: {r['flops_error']}", flush=True)
    except Exception as e:  # noqa: BLE001 -- report and go on with the other cases
      failed = True
      traceback.print_exc()
      r = {"error": f"{type(e).__name__}: {str(e).splitlines()[0] if str(e) else ''}", "image_size": case.size}
    res["jax"] = r
    _save(report, args.out)

  report["machine"]["loadavg_end"] = _loadavg()
  md = markdown(report)
  report["markdown"] = md
  print("\n" + md + "\n", flush=True)
  _save(report, args.out)
  if args.out:
    print(f"wrote {args.out}")
  return 1 if failed else 0


if __name__ == "__main__":
  sys.exit(main())
