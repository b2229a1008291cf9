"""gantx.allocator (glibc): with freed memory kept, XLA:CPU's temporary buffers stop faulting in new pages."""

import json
import subprocess
import sys

# A jitted function with a 64 MiB temporary (16,384 pages), called 24 times; prints the page
# faults of each call. Its first calls grow the heap until the program's buffers fit in it.
_PROGRAM = """
import json, resource, sys
from gantx import allocator
applied = allocator.keep_freed_memory() if sys.argv[1] == "keep" else None
import jax, jax.numpy as jnp
f = jax.jit(lambda x: jnp.sum(jax.lax.optimization_barrier(jnp.sin(x)) * x.T))
x = jnp.ones((4096, 4096))
faults = []
for _ in range(24):
  before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
  f(x).block_until_ready()
  faults.append(resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before)
print(json.dumps({"applied": applied, "faults": faults}))
"""
_PAGES = 4096 * 4096 * 4 // 4096


def _faults(mode: str) -> dict:
  out = subprocess.run([sys.executable, "-c", _PROGRAM, mode], capture_output=True, text=True, check=True, timeout=300)
  return json.loads(out.stdout.strip().splitlines()[-1])


def test_kept_memory_is_reused_by_the_next_calls():
  kept, default = _faults("keep"), _faults("default")
  assert kept["applied"] is True
  # Without it every call maps its temporary afresh; with it the last calls reuse the heap's pages.
  assert min(default["faults"][-8:]) > 0.9 * _PAGES, default
  assert max(kept["faults"][-8:]) < 0.01 * _PAGES, kept
