"""Time gantx train steps (JAX, XLA:CPU) against the official PyTorch steps, in one run.

For each case -- pix2pix (unet_256, batch norm, dropout, basic D, vanilla GAN) at every batch
size of --batch-sizes, and cycle_gan (resnet_9blocks, instance norm, lsgan, pool 50) at batch 1,
each in every compute dtype of --dtypes (float32; bfloat16 mixed precision) -- the script builds
the train state and jits `steps.train_step_fn` over a 1-device ('data',) mesh exactly as
`gantx/train.py` does (replicated state, batch sharded on its first axis, state donated, the
persistent compilation cache on), then records:

  compile s        lower + compile of the step, cold (empty persistent cache) and cached (after
                   jax.clear_caches(), so the executable comes from the on-disk cache, as in a
                   second run); the state init is timed apart
  GFLOP/step       XLA's cost analysis of the compiled step
  XLA mem          compiled.memory_analysis(): argument + output + temp - alias bytes
  peak RSS         the process's peak resident memory during the case (VmHWM, reset per case)
  step times       --warmup untimed steps, then --steps steps, each ended by block_until_ready

Then, with JAX idle (all JAX cases finish first), it runs the PyTorch reference
`benchmarks/torch_step.py` in the separate torch environment, one subprocess per case, and reads
the JSON object on its last stdout line (float32: PyTorch has no bfloat16 reference step). The
two never run at the same time.

    .venv/bin/python benchmarks/step_time.py --out benchmarks/results.json   # full (minutes)
    .venv/bin/python benchmarks/step_time.py --quick                         # plumbing check (~1 min)

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
from torch_step import cpu_name  # noqa: E402  (torch-free; torch is imported inside its main)
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
                 " --quick: 1); cycle_gan always runs at batch 1")
  p.add_argument("--size", type=int, default=None, help="square image side (default 256; --quick: 64)")
  p.add_argument("--ngf", type=int, default=None, help="generator width (default 64; --quick: 8)")
  p.add_argument("--ndf", type=int, default=None, help="discriminator width (default 64; --quick: 8)")
  p.add_argument("--warmup", type=int, default=None, help="untimed steps after compiling (default 2; --quick: 1)")
  p.add_argument("--steps", type=int, default=None, help="timed steps (default 5; --quick: 1)")
  p.add_argument("--seed", type=int, default=0)
  p.add_argument("--dtypes", default="float32,bfloat16", help="compute dtypes of the JAX cases (config.compute_dtype)")
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
  args.dtypes = [d.strip() for d in args.dtypes.split(",") if d.strip()]
  if set(args.dtypes) - {"float32", "bfloat16"} or not args.dtypes:
    p.error(f"--dtypes must be a subset of float32,bfloat16, got {args.dtypes}")
  if args.steps < 1 or args.warmup < 0 or not args.batch_sizes or min(args.batch_sizes) < 1:
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


def _reset_peak_rss() -> bool:
  """Resets this process's VmHWM (Linux >= 4.0); False where that is not possible."""
  try:
    with open("/proc/self/clear_refs", "w") as f:
      f.write("5")
    return True
  except OSError:
    return False


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

  @property
  def name(self) -> str:
    return f"{self.model} bs={self.batch_size} {self.size}x{self.size} {self.dtype}"

  @property
  def torch_key(self) -> tuple[str, int]:
    return self.model, self.batch_size

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
    config_lib.validate(c)
    return c


def _cost_flops(compiled) -> float | None:
  """FLOPs from compiled.cost_analysis(): a dict in jax 0.12 (a list of dicts in older jax)."""
  try:
    ca = compiled.cost_analysis()
  except Exception:  # noqa: BLE001 -- some backends do not implement it
    return None
  if isinstance(ca, (list, tuple)):
    ca = ca[0] if ca else None
  if not ca or "flops" not in ca:
    return None
  return float(ca["flops"])


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


def run_jax_case(case: Case, warmup: int, steps_n: int, seed: int) -> dict:
  import functools

  import jax
  import numpy as np
  from jax.sharding import AxisType

  from gantx import models, parallel, state as state_lib, steps

  config = case.config()
  reset_ok = _reset_peak_rss()
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
  with warnings.catch_warnings(record=True) as caught:
    warnings.simplefilter("always")
    t0 = time.perf_counter()
    lowered = train_step.lower(state, batch)
    t1 = time.perf_counter()
    compiled = lowered.compile()
    t2 = time.perf_counter()
    # A second run: nothing in memory, the executable read back from the persistent cache.
    jax.clear_caches()
    t3 = time.perf_counter()
    cached = train_step.lower(state, batch).compile()
    cached_s = time.perf_counter() - t3
    del cached
  lower_s, compile_s = t1 - t0, t2 - t1
  donation_warnings = [str(w.message).splitlines()[0] for w in caught if "donated" in str(w.message)]
  flops = _cost_flops(compiled)
  mem = _memory_stats(compiled)
  del lowered

  def one_step(s):
    s, metrics = compiled(s, batch)
    jax.block_until_ready((s, metrics))
    return s, metrics

  # Other processes' load is measured over the warmup and timed steps (/proc/stat ticks are 10 ms).
  busy0, own0, wall0 = _busy_cpu_s(), _own_cpu_s(), time.perf_counter()
  for _ in range(warmup):
    state, metrics = one_step(state)
  warmup_s = time.perf_counter() - wall0
  times = []
  for _ in range(steps_n):
    t0 = time.perf_counter()
    state, metrics = one_step(state)
    times.append(time.perf_counter() - t0)
  timed_wall = time.perf_counter() - wall0
  own_cpu = _own_cpu_s() - own0
  other = _other_load(busy0, _busy_cpu_s(), own_cpu, timed_wall)
  finite = bool(all(np.isfinite(float(v)) for v in jax.device_get(metrics).values()))
  rss, rss_how = _peak_rss_bytes(reset_ok)
  median = statistics.median(times)
  del state, metrics, batch, compiled, train_step
  gc.collect()
  jax.clear_caches()
  return {
      "netG": case.netG, "netD": config.netD, "norm": config.norm, "gan_mode": config.gan_mode,
      "ngf": case.ngf, "ndf": case.ndf, "dropout": not config.no_dropout, "pool_size": config.pool_size,
      "params": params, "init_s": init_s, "lower_s": lower_s, "compile_s": compile_s,
      "lower_plus_compile_s": lower_s + compile_s, "cached_lower_plus_compile_s": cached_s, "warmup_s": warmup_s,
      "compute_dtype": case.dtype,
      "flops_per_step": flops, "xla_memory": mem,
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


def run_torch_case(case: Case, args) -> dict:
  python = pathlib.Path(args.torch_python)
  if not python.is_absolute():
    python = REPO / python
  size = _torch_size(case, args)
  cmd = [str(python), str(TORCH_SCRIPT), "--threads", str(args.threads), "--warmup", str(args.warmup),
         "--steps", str(args.steps), "--batch-sizes", str(case.batch_size), "--models", case.model,
         "--image-size", str(size), "--seed", str(args.seed)]
  info = {"command": shlex.join(cmd), "image_size": size, "ngf": TORCH_NGF, "ndf": TORCH_NDF,
          "netG": TORCH_PIX2PIX_NETG if case.model == "pix2pix" else "resnet_9blocks"}
  if not python.exists():
    return {**info, "error": f"{python} not found (see benchmarks/README.md, or pass --no-torch)"}
  print(f"[torch] {case.name}: {info['command']}", flush=True)
  t0, busy0 = time.perf_counter(), _busy_cpu_s()
  proc = subprocess.Popen(cmd, cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
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
  if proc.returncode != 0:
    return {**info, "error": f"exit code {proc.returncode}", "output_tail": lines[-20:]}
  try:
    out = json.loads(lines[-1])
    (result,) = [r for r in out["results"] if r["model"] == case.model and r["batch_size"] == case.batch_size]
  except (IndexError, ValueError, KeyError) as e:
    return {**info, "error": f"could not read the JSON line: {e!r}", "output_tail": lines[-20:]}
  return {**info, "step_s_median": result["step_s_median"], "step_s_all": result["step_s_all"],
          "images_per_s": case.batch_size / result["step_s_median"], "torch_version": out.get("torch_version"),
          "threads": out.get("threads"), "loadavg_1min_start_end": out.get("loadavg_1min_start_end"),
          "peak_rss_bytes": out.get("peak_rss_bytes")}


# ----------------------------------------------------------------------------- report


def _fmt(x, spec, missing="—"):
  return missing if x is None else format(x, spec)


def markdown(report: dict) -> str:
  m, a = report["machine"], report["settings"]
  lines = [
      f"### gantx train step: JAX vs PyTorch (CPU){' — QUICK plumbing check, not a measurement' if a['quick'] else ''}",
      "",
      f"- date: {report['date']}",
      f"- machine: {m['cpu']}, {m['usable_cores']} usable cores (os.cpu_count {m['cpu_count']}),"
      f" {m['mem_total_gib']} GiB RAM; {', '.join(m['cpu_flags']) or 'no AVX flags'}",
      f"- load average (1/5/15 min): start {m['loadavg_start']}, after JAX {m['loadavg_after_jax']},"
      f" end {m['loadavg_end']}",
      f"- versions: python {report['versions']['python']}, jax {report['versions']['jax']},"
      f" jaxlib {report['versions']['jaxlib']}, flax {report['versions']['flax']},"
      f" optax {report['versions']['optax']}, torch {report['versions'].get('torch') or '—'}"
      f" ({a['threads']} threads)",
      f"- JAX: backend {report['jax_backend']}, XLA_FLAGS={os.environ.get('XLA_FLAGS', '') or '(unset)'},"
      f" 1-device mesh, state donated, persistent compilation cache on; git {report['git']['commit']}"
      + (f" + local changes in {', '.join(report['git']['modified_files'])}" if report['git']['modified_files'] else ""),
      f"- steps: {a['warmup']} warmup + {a['steps']} timed per case (median shown); image {a['size']}x{a['size']},"
      f" ngf {a['ngf']}, ndf {a['ndf']}",
      f"- command: `{report['command']}`",
      "",
      "| case | dtype | JAX step s (median) | PyTorch float32 step s (median) | ratio JAX/PyTorch | JAX img/s"
      " | JAX GFLOP/step | JAX GFLOP/s | compile s (cold / cached) | JAX peak mem GiB (XLA est. / RSS)"
      " | PyTorch peak RSS GiB | other load, cores (JAX / PyTorch) |",
      "|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
  ]
  notes = []
  for c in report["cases"]:
    j, t = c.get("jax", {}), c.get("torch") or {}
    dtype = c.get("dtype", "float32")
    name = c["case"].rsplit(" ", 1)[0] if c["case"].endswith(dtype) else c["case"]
    name += f" ({j['netG']})" if j.get("netG") and j["netG"] not in ("unet_256", "resnet_9blocks") else ""
    if "error" in j:
      lines.append(f"| {name} | {dtype} | error | {_fmt(t.get('step_s_median'), '.3f')} | — | — | — | — | — | — |"
                   f" {_fmt(t.get('peak_rss_bytes', 0) / GIB or None, '.2f')} | — / {_fmt(t.get('other_load_cores'), '.2f')} |")
      notes.append(f"{c['case']}: JAX failed: {j['error']}")
      continue
    ratio = "—"
    if t.get("step_s_median"):
      if _same_setup_dict(c):
        ratio = f"{j['step_s_median'] / t['step_s_median']:.2f}"
      else:
        ratio = "n/a*"
        notes.append(f"{c['case']}: PyTorch ran {t.get('netG')} at {t.get('image_size')}px, ngf {TORCH_NGF}"
                     f" (torch_step.py's fixed setup), JAX {j.get('netG')} at {a['size']}px, ngf {a['ngf']}:"
                     " not comparable, no ratio.")
    if "error" in t and dtype == report["settings"]["dtypes"][0]:
      notes.append(f"{c['case']}: PyTorch failed: {t['error']}")
    mem = j.get("xla_memory") or {}
    xla = mem.get("peak_estimate_bytes")
    mem_s = f"{_fmt(xla / GIB if xla else None, '.2f')} / {j['peak_rss_bytes'] / GIB:.2f}"
    trss = t.get("peak_rss_bytes")
    lines.append(
        f"| {name} | {dtype} | {j['step_s_median']:.3f} | {_fmt(t.get('step_s_median'), '.3f')} | {ratio}"
        f" | {j['images_per_s']:.2f} | {_fmt(j['flops_per_step'] / 1e9 if j['flops_per_step'] else None, '.1f')}"
        f" | {_fmt(j['gflops_per_s'], '.1f')} | {j['lower_plus_compile_s']:.1f} / {_fmt(j.get('cached_lower_plus_compile_s'), '.1f')}"
        f" | {mem_s} | {_fmt(trss / GIB if trss else None, '.2f')}"
        f" | {_fmt(j.get('other_load_cores'), '.2f')} / {_fmt(t.get('other_load_cores'), '.2f')} |")
    busy = max([x for x in (j.get("other_load_cores"), t.get("other_load_cores")) if x is not None], default=0)
    if busy > BUSY_CORES:
      notes.append(f"{c['case']}: other processes kept {busy:.2f} cores busy while it was timed: the machine was"
                   " not quiet, rerun before quoting these times.")
  lines += ["", "Columns: step s = median wall time of one optimizer step (G and D updates) after warmup;"
            " ratio < 1 means JAX is faster (bfloat16 rows are compared with PyTorch's float32 step);"
            " GFLOP/step = XLA cost analysis of the compiled step;"
            " GFLOP/s = that / JAX median; compile s = lower + compile of the jitted step, cold (empty persistent"
            " cache) / cached (in-memory caches cleared, executable from the on-disk cache, as a second run);"
            " XLA est. = argument + output + temp - aliased bytes of the compiled step;"
            " RSS = peak resident memory of the JAX process during the case (includes compilation) or of"
            " the PyTorch subprocess; other load = mean cores used by OTHER processes during the JAX warmup"
            " + timed steps / during the whole PyTorch subprocess (from /proc/stat; ~0 on a quiet machine)."]
  if notes:
    lines += [""] + [f"- {n}" for n in notes]
  return "\n".join(lines)


def _same_setup_dict(c: dict) -> bool:
  j, t = c["jax"], c["torch"]
  return (t.get("image_size") == j.get("image_size") and j.get("ngf") == TORCH_NGF and j.get("ndf") == TORCH_NDF
          and t.get("netG") == j.get("netG"))


def main(argv=None) -> int:
  args = _parse_args(argv)
  command = _command_line()
  load_start = _loadavg()
  if load_start[0] > BUSY_CORES * 2:
    print(f"WARNING: load average {load_start} at start: the machine is not quiet; times will be inflated"
          " (see the 'other load' column).", file=sys.stderr, flush=True)
  date = datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds")

  sys.path.insert(0, str(REPO))

  import flax
  import jax
  import jaxlib
  import optax

  cache_dir = args.cache_dir or tempfile.mkdtemp(prefix="gantx-bench-xla-cache-")
  jax.config.update("jax_compilation_cache_dir", cache_dir)  # as gantx.train.use_compilation_cache does
  jax.config.update("jax_persistent_cache_min_compile_time_secs", 0)

  cases = []
  for dtype in args.dtypes:
    if "pix2pix" in args.models:
      cases += [Case("pix2pix", bs, args.size, args.ngf, args.ndf, dtype) for bs in args.batch_sizes]
    if "cycle_gan" in args.models:
      cases.append(Case("cycle_gan", 1, args.size, args.ngf, args.ndf, dtype))
  for c in cases:
    try:
      c.config()  # fail on a bad size or width before anything compiles
    except ValueError as e:
      raise SystemExit(f"step_time.py: {c.name}: {e}") from None

  results = []
  failed = False
  for case in cases:
    print(f"[jax] {case.name}: building, compiling, {args.warmup} warmup + {args.steps} timed steps ...", flush=True)
    try:
      r = run_jax_case(case, args.warmup, args.steps, args.seed)
      r["image_size"] = case.size
      print(f"[jax]   compile {r['lower_plus_compile_s']:.1f} s (cached {r['cached_lower_plus_compile_s']:.1f} s),"
            f" median step {r['step_s_median']:.3f} s,"
            f" all {[round(x, 3) for x in r['step_s_all']]}, {_fmt(r['gflops_per_s'], '.1f')} GFLOP/s,"
            f" peak RSS {r['peak_rss_bytes'] / GIB:.2f} GiB", flush=True)
    except Exception as e:  # noqa: BLE001 -- report and go on with the other cases
      failed = True
      traceback.print_exc()
      r = {"error": f"{type(e).__name__}: {e}", "image_size": case.size}
    results.append({"case": case.name, "model": case.model, "batch_size": case.batch_size, "dtype": case.dtype,
                    "jax": r, "torch": None})
  load_after_jax = _loadavg()

  torch_version = None
  if not args.no_torch:
    torch_runs = {}
    for case, res in zip(cases, results):
      if case.torch_key in torch_runs:  # the float32 reference, shared by the dtypes of a case
        res["torch"] = torch_runs[case.torch_key]
        continue
      t = run_torch_case(case, args)
      torch_runs[case.torch_key] = t
      if "error" in t:
        failed = True
        print(f"[torch]   FAILED: {t['error']}", file=sys.stderr, flush=True)
        for line in t.get("output_tail", []):
          print(f"[torch]   | {line}", file=sys.stderr)
      else:
        torch_version = torch_version or t.get("torch_version")
        print(f"[torch]   median step {t['step_s_median']:.3f} s, all {[round(x, 3) for x in t['step_s_all']]}",
              flush=True)
      res["torch"] = t

  report = {
      "date": date,
      "command": command,
      "settings": {k: getattr(args, k) for k in ("models", "batch_sizes", "dtypes", "size", "ngf", "ndf", "warmup",
                                                 "steps", "seed", "quick", "threads", "torch_python", "torch_size",
                                                 "no_torch")},
      "compilation_cache_dir": cache_dir,
      "machine": {"cpu": cpu_name(), "cpu_flags": _cpu_flags(), "cpu_count": os.cpu_count(),
                  "usable_cores": _usable_cores(), "mem_total_gib": _mem_total_gib(),
                  "loadavg_start": load_start, "loadavg_after_jax": load_after_jax, "loadavg_end": _loadavg(),
                  "platform": platform.platform()},
      "versions": {"python": platform.python_version(), "jax": jax.__version__, "jaxlib": jaxlib.__version__,
                   "flax": flax.__version__, "optax": optax.__version__, "torch": torch_version},
      "jax_backend": jax.default_backend(),
      "xla_flags": os.environ.get("XLA_FLAGS", ""),
      "git": _git_info(),
      "cases": results,
  }
  md = markdown(report)
  report["markdown"] = md
  print("\n" + md + "\n", flush=True)
  if args.out:
    out = pathlib.Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(report, indent=2) + "\n")
    print(f"wrote {out}")
  return 1 if failed else 0


if __name__ == "__main__":
  sys.exit(main())
