"""Host memory: let the process reuse the memory XLA:CPU frees instead of returning it to the OS.

A jitted train step allocates its temporaries (hundreds of MB) on every call and frees them
at the end. With glibc's defaults, allocations of that size are fresh `mmap`s (or are made in
per-thread arenas of at most 64 MB, which fall back to `mmap`), so every step touches new
pages: ~64,000 page faults and ~0.13 s of kernel time per pix2pix step on the 2-core machine.
One arena, no `mmap` below 1 GiB and no trimming keep the freed blocks in the heap, where the
next step finds them already mapped (BENCHMARKS.md: ~8,000 faults, ~8% faster steps).

The cost: memory freed by the process stays resident (its peak RSS does not grow).
"""

from __future__ import annotations

import ctypes
import ctypes.util
import sys

# glibc mallopt parameters (malloc.h).
_M_TRIM_THRESHOLD = -1
_M_TOP_PAD = -2
_M_MMAP_THRESHOLD = -3
_M_ARENA_MAX = -8

_done = False


def keep_freed_memory() -> bool:
  """Tunes glibc malloc as above; True if applied (Linux/glibc), False elsewhere. Idempotent.

  Call it before the first compile and before threads start allocating (arenas created
  earlier keep their settings): at the top of a training or benchmark script.
  """
  global _done
  if _done:
    return True
  if not sys.platform.startswith("linux"):
    return False
  try:
    libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
    mallopt = libc.mallopt
  except (OSError, AttributeError):  # not glibc (e.g. musl)
    return False
  settings = ((_M_ARENA_MAX, 1), (_M_MMAP_THRESHOLD, 1 << 30), (_M_TRIM_THRESHOLD, 1 << 34), (_M_TOP_PAD, 1 << 28))
  _done = all(mallopt(param, value) == 1 for param, value in settings)
  return _done
