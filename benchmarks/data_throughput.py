"""Throughput of the gantx input pipeline alone, and how much of a train step waits on it.

    .venv/bin/python benchmarks/data_throughput.py            # full: ~1.5-2 min on 2 cores
    .venv/bin/python benchmarks/data_throughput.py --quick    # no train steps, fewer batches: ~30 s

What one run does, in this order:

1. Writes a facades-like data set to a temporary folder: --images aligned A|B JPEGs of 512x256
   (quality 95; A a noisy rendering of a built-in label map, B its label colours), as upstream's
   facades/train/.
2. Times the bad-file check (config.data.check_images: every file decoded once, in threads).
3. Pipeline alone: `data.make_train_iterator` for pix2pix, resize_and_crop 286 -> 256 with flips,
   --batch-size, under each loader setting (worker processes x threads per process). The first
   batch (start-up: workers, first decodes) is timed apart; then --batches batches: images/s.
   "x step" is that rate over the rate the train step consumes, --batch-size / --step-time
   (default 0.95 s per pix2pix unet_256 step at batch 1, from benchmarks/step_time.py on this
   machine kind); the target is >= 5.
4. Unless --train-steps 0 (the default with --quick): the real pix2pix unet_256 train step, jitted
   as gantx/train.py builds it (mesh of all devices, state donated, asynchronous dispatch), runs
   after one compiling step alternating rounds of --train-steps steps on one fixed batch and
   --train-steps steps fed by the pipeline (num_workers 0, default threads), two of each, so that
   drifts in the machine's speed hit both alike. Reported: seconds per step
   of each, the share of the fed loop's wall time spent inside next() (the loop blocks there only
   when no batch is ready), and the slowdown of the fed loop over the fixed-batch one (waiting
   plus the cores the loader takes from the step).

"other load" is the mean number of cores that OTHER processes used meanwhile (from /proc/stat, as
in step_time.py): above ~0.2 the machine was not quiet and the rates are low. Prints a markdown
block (machine, versions, command, tables) for BENCHMARKS.md.
"""

from __future__ import annotations

import argparse
import datetime
import multiprocessing
import os
import pathlib
import platform
import resource
import sys
import tempfile
import time

REPO = pathlib.Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "benchmarks"))
# Machine-description helpers shared with the train-step benchmark (standard library only).
from step_time import _busy_cpu_s, _command_line, _git_info, _loadavg, _mem_total_gib, _other_load, _usable_cores  # noqa: E402
from torch_step import cpu_name  # noqa: E402  (torch-free)

DATASET = "facades_bench"
SIDE = 256  # one side of an A|B file, as facades


def _parse_args(argv=None) -> argparse.Namespace:
  p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
  p.add_argument("--images", type=int, default=None, help="A|B files to generate (default 200; --quick: 64)")
  p.add_argument("--batches", type=int, default=None, help="timed batches per loader setting (default 300; --quick: 100)")
  p.add_argument("--batch-size", type=int, default=1, help="batch size (pix2pix default: 1)")
  p.add_argument("--loaders", default="0x1,0x2,2x1,2x2",
                 help="loader settings, WORKERSxTHREADS (worker processes x threads in each loading process)")
  p.add_argument("--step-time", type=float, default=0.95,
                 help="seconds per train step at --batch-size, for the 'x step' column (step_time.py: pix2pix"
                      " unet_256 batch 1, 0.95 s)")
  p.add_argument("--train-steps", type=int, default=None,
                 help="real unet_256 train steps per round; two rounds each of fixed-batch and pipeline-fed steps,"
                      " alternating (default 5; --quick: 0 = skip)")
  p.add_argument("--quick", action="store_true", help="64 images, 100 batches per setting, no train steps")
  args = p.parse_args(argv)
  for name, (quick, full) in {"images": (64, 200), "batches": (100, 300), "train_steps": (0, 5)}.items():
    if getattr(args, name) is None:
      setattr(args, name, quick if args.quick else full)
  args.loaders = [tuple(int(x) for x in s.split("x")) for s in args.loaders.split(",")]
  return args


def _cpu_s() -> float:
  """CPU seconds of this process and its live child processes (grain's workers)."""
  own = resource.getrusage(resource.RUSAGE_SELF)
  total = own.ru_utime + own.ru_stime
  for child in multiprocessing.active_children():
    try:
      with open(f"/proc/{child.pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()  # after the command name: state, ppid, ...
    except OSError:
      continue
    total += (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")  # utime, stime
  return total


def write_dataset(root: pathlib.Path, n: int) -> None:
  """n facades-like A|B JPEGs (2*SIDE x SIDE) in root/DATASET/train/."""
  import numpy as np
  from PIL import Image

  from gantx.data import builtin

  folder = root / DATASET / "train"
  folder.mkdir(parents=True)
  rng = np.random.default_rng(0)
  for i in range(n):
    labels = builtin.label_map(rng, SIDE)
    photo = np.clip(builtin.render(labels) + rng.normal(0, 12, (SIDE, SIDE, 3)), 0, 255)  # photo-like detail
    pair = np.concatenate([photo, builtin.LABEL_PALETTE[labels]], 1).astype(np.uint8)
    Image.fromarray(pair).save(folder / f"{i}.jpg", quality=95)


def bench_config(root: pathlib.Path, batch_size: int, workers: int):
  from gantx import config as config_lib

  c = config_lib.dataset_config("pix2pix", DATASET, batch_size=batch_size)  # resize_and_crop 286 -> 256, flips
  c.data.root, c.data.num_workers = str(root), workers
  return c


def time_check(root: pathlib.Path, n: int) -> dict:
  from gantx import data

  c = bench_config(root, 1, 0)
  t0 = time.perf_counter()
  data.train_size(c)  # runs the check (printed by gantx.data)
  seconds = time.perf_counter() - t0
  return {"files": n, "seconds": seconds, "files_per_s": n / seconds}


def time_loader(root: pathlib.Path, batch_size: int, workers: int, threads: int, batches: int) -> dict:
  """Start-up (first batch) and images/s over `batches` more batches of one loader setting."""
  from gantx import data

  c = bench_config(root, batch_size, workers)
  data.train_size(c)  # the check is cached per process: keep it out of the start-up time
  t0 = time.perf_counter()
  it = data.make_train_iterator(c, num_threads=threads)
  next(it)
  startup = time.perf_counter() - t0
  busy0, cpu0, t1 = _busy_cpu_s(), _cpu_s(), time.perf_counter()
  for _ in range(batches):
    next(it)
  seconds = time.perf_counter() - t1
  other = _other_load(busy0, _busy_cpu_s(), _cpu_s() - cpu0, seconds)
  if workers:
    it.close()
  return {"workers": workers, "threads": threads, "startup_s": startup, "images_per_s": batches * batch_size / seconds,
          "other_load_cores": other}


def time_training(root: pathlib.Path, batch_size: int, steps_n: int) -> dict:
  """Seconds per train step on one fixed batch and fed by the pipeline, as gantx/train.py's loop."""
  import jax

  from gantx import data, parallel, state as state_lib, steps

  c = bench_config(root, batch_size, 0)
  mesh = parallel.make_mesh()  # as train.py: every device (one here)
  repl, batch_sharding = parallel.replicated(mesh), parallel.batch_sharding(mesh)
  nets = state_lib.build_networks(c, spe=1000)
  state = parallel.replicate(state_lib.init_state(c, nets, jax.random.key(0), data.train_image_hw(c)), mesh)
  train_step = jax.jit(steps.train_step_fn(c, nets, batch_sharding), in_shardings=(repl, batch_sharding),
                       out_shardings=(repl, repl), donate_argnums=0)
  it = data.make_train_iterator(c)
  fixed = parallel.global_batch(next(it), batch_sharding)
  t0 = time.perf_counter()
  state = jax.block_until_ready(train_step(state, fixed)[0])  # compiles
  compile_s = time.perf_counter() - t0

  def loop(next_batch):
    nonlocal state
    waited, busy0, cpu0, start = 0.0, _busy_cpu_s(), _cpu_s(), time.perf_counter()
    for _ in range(steps_n):
      t = time.perf_counter()
      local = next_batch()
      waited += time.perf_counter() - t
      state, _ = train_step(state, parallel.global_batch(local, batch_sharding))
    jax.block_until_ready(state)
    seconds = time.perf_counter() - start
    return seconds / steps_n, waited / seconds, _other_load(busy0, _busy_cpu_s(), _cpu_s() - cpu0, seconds)

  fixed_local = jax.device_get(fixed)
  # Alternating rounds (fixed, fed, fixed, fed): drifts in the machine's speed hit both alike.
  rounds = [(loop(lambda: fixed_local), loop(lambda: next(it))) for _ in range(2)]
  mean = lambda values: sum(values) / len(values)  # noqa: E731
  fixed_step, fed_step = (mean([r[k][0] for r in rounds]) for k in (0, 1))
  return {"steps": 2 * steps_n, "compile_s": compile_s, "fixed_step_s": fixed_step, "fed_step_s": fed_step,
          "in_next_share": mean([r[1][1] for r in rounds]), "slowdown": fed_step / fixed_step - 1,
          "other_load_cores": tuple(mean([r[k][2] or 0.0 for r in rounds]) for k in (0, 1))}


def _fmt(x, spec: str) -> str:
  return "—" if x is None else format(x, spec)


def markdown(report: dict) -> str:
  a, m, v = report["args"], report["machine"], report["versions"]
  step_rate = a["batch_size"] / a["step_time"]
  lines = [
      f"### gantx input pipeline: images/s alone and waiting in training{' (--quick)' if a['quick'] else ''}",
      "",
      f"- date: {report['date']}",
      f"- machine: {m['cpu']}, {m['usable_cores']} usable cores, {m['mem_total_gib']} GiB RAM;"
      f" load average (1/5/15 min) start {m['loadavg_start']}, end {m['loadavg_end']}",
      f"- versions: python {v['python']}, grain {v['grain']}, pillow {v['pillow']}, numpy {v['numpy']}, jax {v['jax']}",
      f"- git: {report['git']['commit']}" + (f" + local changes in {', '.join(report['git']['modified_files'])}"
                                            if report["git"]["modified_files"] else ""),
      f"- data: {a['images']} aligned A|B JPEGs of {2 * SIDE}x{SIDE} (quality 95); pix2pix, resize_and_crop"
      f" 286 -> 256, flips, batch {a['batch_size']}",
      f"- command: `{report['command']}`",
      "",
      f"Bad-file check: {report['check']['files']} files in {report['check']['seconds']:.2f} s"
      f" ({report['check']['files_per_s']:.0f} files/s).",
      "",
      f"| loader (workers x threads) | start-up s | images/s | x step ({a['step_time']} s/step) | other load, cores |",
      "|---|---:|---:|---:|---:|",
  ]
  for r in report["loaders"]:
    lines.append(f"| {r['workers']} x {r['threads']} | {r['startup_s']:.2f} | {r['images_per_s']:.1f} |"
                 f" {r['images_per_s'] / step_rate:.0f} | {_fmt(r['other_load_cores'], '.2f')} |")
  t = report.get("training")
  if t:
    lines += [
        "",
        f"Train step fed by the pipeline (unet_256, batch {a['batch_size']}, {t['steps']} steps each in two alternating rounds, loader 0 x"
        f" default threads; compile {t['compile_s']:.1f} s):",
        "",
        "| step s, fixed batch | step s, pipeline-fed | time in next() | slowdown | other load, cores (fixed / fed) |",
        "|---:|---:|---:|---:|---:|",
        f"| {t['fixed_step_s']:.3f} | {t['fed_step_s']:.3f} | {100 * t['in_next_share']:.1f}% |"
        f" {100 * t['slowdown']:+.1f}% | {_fmt(t['other_load_cores'][0], '.2f')} / {_fmt(t['other_load_cores'][1], '.2f')} |",
    ]
  return "\n".join(lines)


def main(argv=None) -> int:
  args = _parse_args(argv)
  import grain  # noqa: F401  (versions)
  import jax
  import numpy as np
  import PIL

  report = {"args": vars(args) | {"loaders": [list(x) for x in args.loaders]}, "command": _command_line(),
            "date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
            "git": _git_info()}
  load_start = _loadavg()
  with tempfile.TemporaryDirectory(prefix="gantx-data-bench-") as tmp:
    root = pathlib.Path(tmp)
    t0 = time.perf_counter()
    write_dataset(root, args.images)
    print(f"wrote {args.images} files in {time.perf_counter() - t0:.1f} s", flush=True)
    report["check"] = time_check(root, args.images)
    report["loaders"] = []
    for workers, threads in args.loaders:
      r = time_loader(root, args.batch_size, workers, threads, args.batches)
      print(f"loader {workers} x {threads}: start-up {r['startup_s']:.2f} s, {r['images_per_s']:.1f} images/s,"
            f" other load {r['other_load_cores']}", flush=True)
      report["loaders"].append(r)
    if args.train_steps > 0:
      report["training"] = t = time_training(root, args.batch_size, args.train_steps)
      print(f"training: fixed {t['fixed_step_s']:.3f} s/step, fed {t['fed_step_s']:.3f} s/step,"
            f" in next() {100 * t['in_next_share']:.1f}%", flush=True)
  from importlib import metadata

  report["machine"] = {"cpu": cpu_name(), "usable_cores": _usable_cores(), "mem_total_gib": _mem_total_gib(),
                       "loadavg_start": load_start, "loadavg_end": _loadavg(), "platform": platform.platform()}
  report["versions"] = {"python": platform.python_version(), "grain": metadata.version("grain"),
                        "pillow": PIL.__version__, "numpy": np.__version__, "jax": jax.__version__}
  print("\n" + markdown(report) + "\n", flush=True)
  return 0


if __name__ == "__main__":  # grain's worker processes re-import this module
  sys.exit(main())
