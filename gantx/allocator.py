"""The host allocator: freed memory stays with the process for the next step.

XLA:CPU allocates each execution's temporary buffer (681 MB in a pix2pix train step at batch 4,
256x256) with malloc, from one of its own threads. glibc serves a block that large with a fresh
mmap in that thread's arena and unmaps it when it is freed, so every step writes to new pages:
174,000 page faults per pix2pix batch-4 step, 8-19% of the CPU step's time (BENCHMARKS.md,
"Host allocator"). `keep_freed_memory` makes glibc serve every thread from the main heap, never
by mmap, and never give freed memory back on its own, so each step reuses the pages of the one
before. `release_freed_memory` hands the free pages back at chosen moments: before and after the
first step (the compiler's memory; without it CycleGAN's heap kept growing, 4.9 -> 13.1 GB over five
steps, as the compiler's freed scraps were never merged, and its first step came on top of it: a
4.95 GiB peak against 4.34, BENCHMARKS.md "CPU memory") and at each log flush, so that the
resident memory stays near what the steps use (pix2pix batch 4: 2.5 GB, 2.4 without any of this).

Only where JAX runs on the CPU (`cpu_only`): on a GPU host the steps' buffers live on the device,
and one arena for all threads made XLA:GPU's compile 3-11x slower on an H100's 16-core host
(BENCHMARKS.md, "NVIDIA H100 ... after the transposed-convolution fix").
"""

from __future__ import annotations

import ctypes
import ctypes.util
import importlib.metadata
import importlib.util
import os
import pkgutil

# glibc's mallopt parameters (malloc.h).
_M_TRIM_THRESHOLD, _M_MMAP_MAX, _M_ARENA_MAX = -1, -4, -8
# keep_freed_memory's settings as the environment of a process started with them (another program,
# e.g. the PyTorch reference in benchmarks/step_time.py --torch-keep-freed-memory).
GLIBC_TUNABLES = "glibc.malloc.arena_max=1:glibc.malloc.mmap_max=0:glibc.malloc.trim_threshold=68719476736"


def _libc():
  try:
    return ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
  except OSError:
    return None


def cpu_only() -> bool:
  """Whether JAX will run on the host's CPU alone, judged without starting its backend.

  JAX_PLATFORMS, where set, decides: True when it names cpu alone. Else False when an
  accelerator plugin is installed (a `jax_plugins` module or entry point, as the CUDA, ROCm and
  Metal plugins are, or libtpu), even on a machine without the accelerator: JAX then falls back to
  the CPU, which runs without `keep_freed_memory` unless `train.py --keep_freed_memory` asks.
  """
  platforms = os.environ.get("JAX_PLATFORMS", "").strip()
  if platforms:
    return [p.strip() for p in platforms.split(",")] == ["cpu"]
  namespace = importlib.util.find_spec("jax_plugins")  # where JAX itself looks (xla_bridge.discover_pjrt_plugins)
  modules = namespace is not None and any(pkgutil.iter_modules(namespace.submodule_search_locations))
  entry_points = importlib.metadata.entry_points(group="jax_plugins")
  return not (modules or entry_points or importlib.util.find_spec("libtpu"))


def keep_freed_memory() -> bool:
  """One malloc arena, no mmap'd blocks, no trimming (glibc's mallopt); True where it applied.

  Call it before JAX starts its backend: a thread that has already allocated keeps its own
  arena, and an arena other than the main one still maps large blocks. Elsewhere than glibc
  (macOS, musl) it changes nothing and returns False.
  """
  mallopt = getattr(_libc(), "mallopt", None)
  if mallopt is None:
    return False
  mallopt.argtypes, mallopt.restype = (ctypes.c_int, ctypes.c_int), ctypes.c_int
  # -1 as the trim threshold turns trimming off (mallopt(3)); each call returns 1 on success.
  return all([mallopt(param, value) == 1 for param, value in
              ((_M_ARENA_MAX, 1), (_M_MMAP_MAX, 0), (_M_TRIM_THRESHOLD, -1))])


def release_freed_memory() -> None:
  """Merges the heap's free blocks and returns their pages to the OS (glibc's malloc_trim); the
  next step faults in what it needs once. A few tenths of a second at most; nothing elsewhere."""
  trim = getattr(_libc(), "malloc_trim", None)
  if trim is not None:
    trim.argtypes, trim.restype = (ctypes.c_size_t,), ctypes.c_int
    trim(0)
