"""Shared test set-up: tiny configs, and absl flags parsed (grain's multiprocess workers read them).

The rule for exact comparisons (the suite runs on Intel, AMD and ARM, idle or loaded):
- bitwise holds on one machine: the same computation run twice (two runs, a resume, two processes,
  a study's replica and its extract) is compared bit for bit;
- across machines only to rounding: a value pinned in a test file or computed by another program
  (PyTorch's stored references) is compared with a tolerance when it is float arithmetic, since the
  CPU's instructions (FMA, AVX-512 or not) and XLA's settings change its rounding;
- pinned digests only of integer data: PRNG keys, batch indices, file order, 8-bit images.
"""

import fcntl
import os
import pathlib
import subprocess
import sys
import tempfile

# Set before jax is imported, and inherited by the subprocesses tests start (xdist workers
# too): every process of one run shares a fresh compilation cache, and XLA skips most optimisations (tests care about
# numbers, not speed; compile time dominates tiny models).
os.environ.setdefault("JAX_COMPILATION_CACHE_DIR", tempfile.mkdtemp(prefix="gantx-test-jax-cache-"))
os.environ.setdefault("JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS", "0")
os.environ.setdefault("JAX_PERSISTENT_CACHE_MIN_ENTRY_SIZE_BYTES", "0")
os.environ.setdefault("JAX_DISABLE_MOST_OPTIMIZATIONS", "1")
# gs:// against the local GCS server of tests/test_buckets.py (read when these libraries are
# imported): no credentials looked for, no gRPC bucket-type probe (a 60 s timeout per bucket).
os.environ.setdefault("FSSPEC_GCS_TOKEN", "anon")
os.environ.setdefault("GCSFS_EXPERIMENTAL_ZB_HNS_SUPPORT", "false")
os.environ.setdefault("GOOGLE_AUTH_TOKEN_FOR_TESTING", "test")

import pytest  # noqa: E402
from absl import flags  # noqa: E402

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(HERE)
if REPO not in sys.path:
  sys.path.insert(0, REPO)

if not flags.FLAGS.is_parsed():
  flags.FLAGS.mark_as_parsed()


def tiny_config(model: str = "pix2pix", **overrides):
  """A config small enough to compile and run in seconds on 2 CPU cores."""
  from gantx.config import base_config
  c = base_config(model)
  c.ngf, c.ndf = 4, 4
  c.netG = "resnet_2blocks" if model == "cycle_gan" else "unet_32"
  c.load_size, c.crop_size = 36, 32
  c.batch_size = 2
  c.data.num_train, c.data.num_test = 16, 4
  c.num_eval_images = 4
  # XLA's own convolutions: they compile 2-3x faster than the CPU's GEMM forms (a 2-replica CycleGAN
  # study step: 6.0 s against 15.2 s), and what these configs test is the loop. The GEMM forms have
  # their own tests (test_conv.py, test_models.py, the bfloat16 step), and the configs' and README's
  # tests run them as users do (conv_impl 'auto').
  c.conv_impl = "xla"
  if model == "cycle_gan":
    c.pool_size = 4
  for k, v in overrides.items():
    if "." in k:
      block, field = k.split(".")
      c[block][field] = v
    else:
      c[k] = v
  return c


@pytest.fixture
def make_config():
  return tiny_config


# PyTorch reference tests run torch in a side interpreter: the CPU wheel of torch 2.13.0 on this
# platform is for Python 3.11 (a Python 3.12 `pip install torch` pulls a multi-GB CUDA build), and
# gantx itself reads .pth files without torch. The README's test command creates .venv-torch.
TORCH_SETUP = "python3.11 -m venv .venv-torch && .venv-torch/bin/pip install torch==2.13.0 numpy"


def torch_python_path() -> str | None:
  """The interpreter with torch: $GANTX_TORCH_PYTHON, else <repo>/.venv-torch/bin/python; None if absent."""
  path = os.environ.get("GANTX_TORCH_PYTHON") or os.path.join(REPO, ".venv-torch", "bin", "python")
  return path if os.path.exists(path) else None


@pytest.fixture(scope="session")
def torch_python():
  """Path of a Python that imports torch; skips (with the setup command) when there is none."""
  path = torch_python_path()
  if path is None:
    pytest.skip(f"PyTorch reference test: no Python with torch (set GANTX_TORCH_PYTHON or run `{TORCH_SETUP}`).")
  return path


# The PyTorch reference outputs, as stored in the repository (tests/make_references.py wrote them).
STORED_REFERENCES = pathlib.Path(HERE) / "references"


@pytest.fixture(scope="session")
def live_references(torch_python, tmp_path_factory, worker_id):
  """The PyTorch reference outputs computed now, by tests/make_references.py under torch_python;
  once per test run (the xdist workers share the folder of their run)."""
  base = tmp_path_factory.getbasetemp()
  shared = base if worker_id == "master" else base.parent
  out = shared / "live_references"
  with open(shared / "live_references.lock", "w") as lock:
    fcntl.flock(lock, fcntl.LOCK_EX)
    if not (out / "manifest.json").exists():
      subprocess.run([torch_python, os.path.join(HERE, "make_references.py"), str(out)], check=True,
                     capture_output=True, timeout=600)
  return out


@pytest.fixture(scope="session", params=["stored", pytest.param("live", marks=pytest.mark.torch)])
def references(request):
  """Folder of PyTorch reference outputs: the stored copy, and (the torch tier) a fresh run of PyTorch."""
  return STORED_REFERENCES if request.param == "stored" else request.getfixturevalue("live_references")


# The slowest tests (subprocesses, several devices, full-size configs), slowest first: pytest-xdist
# hands tests out in collection order, so these start first and the short ones fill in around them
# instead of one long test running alone at the end. From `--durations` (pyproject.toml: every run
# prints its 20 slowest).
SLOWEST_FIRST = (
    "test_parallel.py::test_two_processes", "test_crash.py::test_sigkill", "test_crash.py::test_resume",
    "test_parallel.py::test_eight_devices", "test_configs.py::test_each_config", "test_readme.py",
    "test_notebook.py", "test_steps.py::test_bfloat16_step", "test_buckets.py::test_sigkill",
    "test_study.py::test_eight_devices", "test_study.py::test_a_sweep_killed", "test_study.py::test_a_config_without",
    "test_models.py::test_conv_impl_xla_equals_gemm", "test_resume.py::test_sigterm", "test_resume.py::test_same_seed",
)


def pytest_collection_modifyitems(items):
  def rank(item):
    name = item.nodeid.split("/")[-1]
    return next((k for k, prefix in enumerate(SLOWEST_FIRST) if name.startswith(prefix)), len(SLOWEST_FIRST))
  items.sort(key=rank)
