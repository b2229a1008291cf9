"""Peak host memory of a CPU train step, as train.py runs it: compile, then steps.

    .venv/bin/python benchmarks/memory.py cycle_gan [--config.remat_blocks=True] [--nokeep]
    .venv/bin/python benchmarks/memory.py pix2pix

The model's base config at 256x256, batch 1, float32 (as the official code's defaults), built as
train.py builds it (`train.initial_state`, `train.jitted_step`, gantx.allocator's settings unless
--nokeep). Prints the resident memory (VmRSS) and its peak (VmHWM, reset before compile and before
the steps) after init, after compile (with XLA's temporary-buffer size) and after each step, and the
median step time; STEPS=n steps (default 4). The freed memory goes back to the OS before the first
step and after it (allocator.release_freed_memory), as train.py does. Results: BENCHMARKS.md, "CPU memory".
"""
import os
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
keep = "--nokeep" not in sys.argv
from gantx import allocator
if keep:
  allocator.keep_freed_memory()
import jax  # noqa: E402
import numpy as np  # noqa: E402
jax.config.update("jax_platforms", "cpu")
from gantx import config as config_lib, parallel, state as state_lib, train
model = sys.argv[1]

def rss():
  d = {}
  for line in open("/proc/self/status"):
    if line.startswith(("VmHWM", "VmRSS")):
      k, v = line.split(":"); d[k] = int(v.split()[0]) / 2**20
  return d

def reset():  # VmHWM starts again from VmRSS
  open("/proc/self/clear_refs", "w").write("5")

c = config_lib.base_config(model); c.batch_size = 1
for a in sys.argv[2:]:
  if a.startswith("--config."):
    k, v = a[9:].split("="); c[k] = type(c[k])(v) if not isinstance(c[k], bool) else v == "True"
config_lib.validate(c)
mesh = parallel.make_mesh(); parallel.resolve_batch_size(c, mesh)
hw = config_lib.crop_hw(c)
nets = state_lib.build_networks(c, 1000)
state = train.initial_state(c, nets, None, hw, mesh)
step, bs = train.jitted_step(c, nets, mesh)
rng = np.random.default_rng(0)
batch = parallel.place({k: rng.uniform(-1, 1, (1, *hw, 3)).astype(np.float32) for k in "AB"}, bs)
print("after init", rss(), flush=True)
reset(); t = time.time()
compiled = step.lower(state, batch).compile()
m = compiled.memory_analysis()
print(f"compile {time.time()-t:.1f}s", rss(), "temp GiB", m.temp_size_in_bytes / 2**30, "arg", m.argument_size_in_bytes/2**30, flush=True)
allocator.release_freed_memory()  # as train.py before its first step
reset()
times = []
for i in range(int(os.environ.get("STEPS", 4))):
  t = time.time(); state, met = compiled(state, batch); jax.block_until_ready(state); times.append(time.time() - t)
  if i == 0: allocator.release_freed_memory()
  print(f"step {i} {times[-1]:.2f}s", rss(), flush=True)
print("median step", np.median(times[1:]))
