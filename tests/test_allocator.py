"""gantx.allocator (glibc): with freed memory kept, XLA:CPU's temporary buffers stop faulting in new pages."""

import json
import subprocess
import sys

from gantx import allocator

# A jitted function with a 64 MiB temporary (16,384 pages), called 24 times; prints the page
# faults of each call (its first calls grow the heap until the program's buffers fit in it) and
# the resident pages that release_freed_memory then hands back.
_PROGRAM = """
import json, resource, sys, time
from gantx import allocator
applied = allocator.keep_freed_memory() if sys.argv[1] == "keep" else None
import jax, jax.numpy as jnp
f = jax.jit(lambda x: jnp.sum(jax.lax.optimization_barrier(jnp.sin(x)) * x.T))
x = jnp.ones((4096, 4096))
faults = []
for _ in range(24):
  before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
  f(x).block_until_ready()
  time.sleep(0.05)  # XLA frees the temporary just after the result is ready: before the next call
  faults.append(resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before)
rss = lambda: int(open("/proc/self/statm").read().split()[1])
held = rss()
allocator.release_freed_memory()
print(json.dumps({"applied": applied, "faults": faults, "released_pages": held - rss()}))
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
  # The kept heap holds at least the last call's freed temporary until it is released.
  assert kept["released_pages"] > 0.9 * _PAGES, kept


def test_cpu_only_reads_jax_platforms_then_the_installed_plugins(monkeypatch, tmp_path):
  import importlib

  for platforms, expected in (("cpu", True), ("cuda", False), ("cuda,cpu", False), ("tpu", False)):
    monkeypatch.setenv("JAX_PLATFORMS", platforms)
    assert allocator.cpu_only() is expected, platforms
  monkeypatch.delenv("JAX_PLATFORMS", raising=False)
  assert allocator.cpu_only(), "this environment (CI's) has no accelerator plugin installed"
  # A plugin where JAX looks for one: a module in a `jax_plugins` folder on the path.
  (tmp_path / "jax_plugins" / "xla_fake_gpu").mkdir(parents=True)
  (tmp_path / "jax_plugins" / "xla_fake_gpu" / "__init__.py").write_text("")
  monkeypatch.syspath_prepend(str(tmp_path))
  importlib.invalidate_caches()
  assert not allocator.cpu_only()
  monkeypatch.setenv("JAX_PLATFORMS", "cpu")  # the environment's word wins
  assert allocator.cpu_only()
