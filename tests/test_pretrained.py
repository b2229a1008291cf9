"""Tests of gantx.pretrained against a local HTTP server with upstream's URL layout (nothing leaves the machine).

The served generators are the stored PyTorch reference networks of tests/test_convert.py (tiny widths):
resnet9_instance (resnet_9blocks, instance norm: a CycleGAN pretrained model's architecture, zip layout
under a 'module.' prefix) and unet256_batch_b1 (unet_256, batch norm: a pix2pix one, in the legacy
layout of the official files), so a downloaded generator's output is compared with PyTorch's.
"""

from __future__ import annotations

import functools
import http.server
import socket
import threading

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from conftest import STORED_REFERENCES
from PIL import Image
from reference_data import NETWORK_CASES, network_input

from gantx import convert, evaluate, pretrained, pth, translate

NETWORKS = STORED_REFERENCES / "networks"
CASES = {c["name"]: c for c in NETWORK_CASES}
RESNET, UNET, DISCRIMINATOR = "resnet9_instance", "unet256_batch_b1", "basic_instance"
TOL = 1e-5  # max abs, float32 (as tests/test_convert.py)

# What the server holds, by upstream's path: (kind, name) -> bytes, or a special behaviour.
GOOD = (NETWORKS / f"{RESNET}.pth").read_bytes()
SERVED = {
    ("cyclegan", "horse2zebra"): GOOD,
    ("cyclegan", "style_monet"): GOOD,
    ("cyclegan", "sat2map"): GOOD,
    ("pix2pix", "facades_label2photo"): (NETWORKS / f"{UNET}.pth").read_bytes(),
    ("cyclegan", "apple2orange"): GOOD[: len(GOOD) // 2],  # truncated
    ("cyclegan", "orange2apple"): b"<html><body>Moved</body></html>\n",  # not a .pth
    ("cyclegan", "summer2winter_yosemite"): (NETWORKS / f"{DISCRIMINATOR}.pth").read_bytes(),
    ("pix2pix", "map2sat"): GOOD,  # a ResNet where the pix2pix models are U-Nets
}
SHORT_BODY = "/cyclegan/pretrained_models/monet2photo.pth"  # declares more bytes than it sends


class Server:
  """A threaded HTTP server on 127.0.0.1 serving `SERVED` under upstream's layout; `requests` lists the paths asked."""

  def __init__(self, folder):
    for (kind, name), data in SERVED.items():
      path = folder / pretrained.MODEL_URLS[kind].format(base="", name=name).lstrip("/")
      path.parent.mkdir(parents=True, exist_ok=True)
      path.write_bytes(data)
    self.requests: list[str] = []
    requests = self.requests

    class Handler(http.server.SimpleHTTPRequestHandler):
      def do_GET(self):
        requests.append(self.path)
        if self.path == SHORT_BODY:
          self.send_response(200)
          self.send_header("Content-Length", str(len(GOOD)))
          self.end_headers()
          self.wfile.write(GOOD[:100])
          return
        super().do_GET()

      def log_message(self, *args):
        pass

    self.httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), functools.partial(Handler, directory=str(folder)))
    self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}"
    self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)
    self.thread.start()

  def close(self):
    self.httpd.shutdown()
    self.httpd.server_close()


@pytest.fixture(scope="module")
def server(tmp_path_factory):
  s = Server(tmp_path_factory.mktemp("served"))
  yield s
  s.close()


@pytest.fixture(autouse=True)
def local_only(monkeypatch, server):
  """Every download of every test goes to the local server, never through a proxy."""
  monkeypatch.setenv(pretrained.BASE_URL_ENV, server.url)
  for var in ("http_proxy", "https_proxy", "HTTP_PROXY", "HTTPS_PROXY", "all_proxy", "ALL_PROXY"):
    monkeypatch.delenv(var, raising=False)


def files_under(folder):
  return sorted(str(p.relative_to(folder)) for p in folder.rglob("*")) if folder.exists() else []


def test_official_urls_folders_and_options(monkeypatch):
  monkeypatch.delenv(pretrained.BASE_URL_ENV)
  official = "http://efrosgans.eecs.berkeley.edu"
  assert pretrained.model_url("horse2zebra") == f"{official}/cyclegan/pretrained_models/horse2zebra.pth"
  assert pretrained.model_url("sat2map", "pix2pix") == f"{official}/pix2pix/models-pytorch/sat2map.pth"
  assert pretrained.model_url("sat2map", "cyclegan").endswith("/cyclegan/pretrained_models/sat2map.pth")
  assert str(pretrained.model_path("day2night")) == "checkpoints/day2night_pretrained/latest_net_G.pth"
  assert len(pretrained.names("cyclegan")) == 18 and len(pretrained.names("pix2pix")) == 5
  assert len(pretrained.names()) == 20  # sat2map, map2sat, facades_label2photo are in both lists
  h2z = pretrained.test_options("horse2zebra")
  assert h2z["no_dropout"] and h2z["netG"] == "resnet_9blocks" and h2z["norm"] == "instance"
  assert (h2z["preprocess"], h2z["load_size"], h2z["crop_size"]) == ("resize_and_crop", 256, 256)
  assert h2z["direction"] == "AtoB"
  assert pretrained.test_options("style_vangogh")["preprocess"] == "none"
  assert pretrained.test_options("zebra2horse")["direction"] == "BtoA"
  facades = pretrained.test_options("facades_label2photo", "pix2pix")
  assert (facades["netG"], facades["norm"], facades["no_dropout"]) == ("unet_256", "batch", False)
  assert not facades["eval"]
  assert facades["direction"] == "BtoA" and pretrained.test_options("day2night")["direction"] == "BtoA"
  assert pretrained.model("day2night").dataset == "night2day"
  config = pretrained.test_config("style_monet")
  assert config.model == "cycle_gan" and config.preprocess == "none"


def test_download_by_name_writes_where_upstream_does_and_only_once(tmp_path, server, capsys):
  root = tmp_path / "checkpoints"
  before = len(server.requests)
  path = pretrained.download_model("horse2zebra", root)
  assert path == root / "horse2zebra_pretrained" / "latest_net_G.pth"
  assert server.requests[before:] == ["/cyclegan/pretrained_models/horse2zebra.pth"]
  assert path.read_bytes() == GOOD
  assert files_under(root) == ["horse2zebra_pretrained", "horse2zebra_pretrained/latest_net_G.pth"]
  detected = convert.detect(pth.load(path))
  assert (detected["kind"], detected["netG"], detected["norm"]) == ("G", "resnet_9blocks", "instance")
  assert "resnet_9blocks" in capsys.readouterr().out
  assert pretrained.download_model("horse2zebra", root) == path  # already there: nothing fetched
  assert len(server.requests) == before + 1
  assert "already there" in capsys.readouterr().out


def test_generator_equals_pytorch(tmp_path):
  """The downloaded CycleGAN (resnet_9blocks, instance norm) and pix2pix (unet_256, batch norm, legacy
  file) generators give PyTorch's stored outputs, with upstream's test settings applied."""
  root = tmp_path / "checkpoints"
  gen = pretrained.generator("horse2zebra", root)
  assert isinstance(gen, translate.Generator)
  c = gen.config
  assert (c.model, c.netG, c.no_dropout, c.ngf) == ("cycle_gan", "resnet_9blocks", True, 4)
  assert (c.preprocess, c.load_size, c.crop_size) == ("resize_and_crop", 256, 256)
  case = CASES[RESNET]
  x = network_input(case)
  keys = jnp.stack([jax.random.key(i) for i in range(len(x))])
  run = evaluate.make_translator(gen.module, gen.config.eval)  # upstream's default mode: no dropout, IN
  out = np.asarray(run(gen.variables["params"], gen.variables.get("batch_stats", {}), jnp.asarray(x), keys))
  np.testing.assert_allclose(out, np.load(NETWORKS / f"{RESNET}.npz")["eval"], atol=TOL, rtol=0)

  gen = pretrained.generator("facades_label2photo", root, kind="pix2pix")
  c = gen.config
  assert (c.model, c.netG, c.norm, c.no_dropout, c.eval) == ("pix2pix", "unet_256", "batch", False, False)
  assert gen.config.direction == "BtoA"
  case = CASES[UNET]
  x = network_input(case)
  run = evaluate.make_translator(gen.module, True)  # --eval: running averages, no dropout, as the stored output
  eval_out = np.asarray(run(gen.variables["params"], gen.variables["batch_stats"], jnp.asarray(x), keys[:1]))
  np.testing.assert_allclose(eval_out, np.load(NETWORKS / f"{UNET}.npz")["eval"], atol=TOL, rtol=0)


def test_translating_a_tiny_image_follows_the_test_options(tmp_path):
  """horse2zebra resizes to 256 x 256 (upstream's test default); style_* keeps the image's size ('none')."""
  image = tmp_path / "photo.png"
  Image.fromarray(np.random.default_rng(0).integers(0, 256, (20, 28, 3), np.uint8)).save(image)
  root = tmp_path / "checkpoints"
  for name, size in (("horse2zebra", (256, 256)), ("style_monet", (28, 20))):
    rows, skipped = translate.translate(pretrained.generator(name, root), image, tmp_path / name, progress=False)
    assert not skipped and len(rows) == 1
    assert Image.open(tmp_path / name / rows[0]["fake"]).size == size, name


def test_names_kinds_and_typos_are_one_line_errors(tmp_path, server):
  before = len(server.requests)
  with pytest.raises(ValueError, match=r"'sat2map' is both a pix2pix .* give --kind pix2pix or --kind cyclegan") as e:
    pretrained.download_model("sat2map", tmp_path)
  assert "\n" not in str(e.value)
  with pytest.raises(ValueError, match=r"Unknown pretrained model 'horse2zebr'\. Did you mean 'horse2zebra'\? pix"):
    pretrained.generator("horse2zebr", tmp_path)
  with pytest.raises(ValueError, match="'horse2zebra' is a cyclegan model, not a pix2pix one: use --kind cyclegan"):
    pretrained.download_model("horse2zebra", tmp_path, kind="pix2pix")
  assert len(server.requests) == before and files_under(tmp_path) == []


def _refused_url() -> str:
  """An address on which nothing listens (a port just freed)."""
  with socket.socket() as s:
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
  return f"http://127.0.0.1:{port}"


@pytest.mark.parametrize("name, kind, error, match", [
    ("winter2summer_yosemite", None, OSError, r"Could not download http://\S+/winter2summer_yos\S+: HTTP Error 404"),
    ("horse2zebra", "refused", OSError, r"Could not download http://\S+/horse2zebra\.pth: .*(refused|Errno)"),
    ("monet2photo", None, OSError, r"monet2photo\.pth: the connection closed after 100 of \d+ bytes"),
    ("apple2orange", None, ValueError, r"apple2orange\.pth is not the cyclegan generator apple2orange: .*PyTorch file"),
    ("orange2apple", None, ValueError, r"orange2apple\.pth is not the cyclegan generator orange2apple: .*PyTorch file"),
    ("summer2winter_yosemite", None, ValueError, r"summer2winter_yosemite: it holds a discriminator \(basic\)"),
    ("map2sat", "pix2pix", ValueError, r"it holds a resnet_9blocks generator, but the pix2pix models are unet_256"),
], ids=["404", "refused", "short_body", "truncated", "not_pth", "discriminator", "other_kind"])
def test_failed_downloads_leave_nothing(tmp_path, monkeypatch, name, kind, error, match):
  if kind == "refused":
    monkeypatch.setenv(pretrained.BASE_URL_ENV, _refused_url())
    kind = None
  root = tmp_path / "checkpoints"
  with pytest.raises(error, match=match) as e:
    pretrained.download_model(name, root, kind=kind)
  assert "\n" not in str(e.value) and "--url file:///path/to/" in str(e.value)
  assert not root.exists()  # no file, no temporary file, not even the folders


def test_url_override_and_a_file_already_there(tmp_path, server, capsys):
  root = tmp_path / "checkpoints"
  source = tmp_path / "mirror.pth"
  source.write_bytes(GOOD)
  before = len(server.requests)
  path = pretrained.download_model("zebra2horse", root, url=source.as_uri())
  assert path.read_bytes() == GOOD and len(server.requests) == before
  with pytest.raises(OSError, match=r"Could not download file://\S+/missing\.pth: .*--url file:///path/to/missing"):
    pretrained.download_model("apple2orange", root, url=(tmp_path / "missing.pth").as_uri())
  # A broken file there (an interrupted wget) is replaced; a valid one of the other kind is refused.
  broken = pretrained.model_path("style_monet", root)
  broken.parent.mkdir(parents=True)
  broken.write_bytes(b"partial")
  assert pretrained.download_model("style_monet", root).read_bytes() == GOOD
  assert "unusable" in capsys.readouterr().out
  pretrained.download_model("sat2map", root, kind="cyclegan")
  with pytest.raises(FileExistsError, match=r"sat2map_pretrained/latest_net_G\.pth holds another model .* not the pix"):
    pretrained.download_model("sat2map", root, kind="pix2pix")
  assert pretrained.model_path("sat2map", root).read_bytes() == GOOD
  assert sorted(p.name for p in pretrained.model_path("sat2map", root).parent.iterdir()) == ["latest_net_G.pth"]


def _cli(*args, cwd):
  import os
  import subprocess
  import sys
  from conftest import REPO
  env = {**os.environ, "PYTHONPATH": REPO}
  return subprocess.run([sys.executable, "-m", "gantx", *args], cwd=cwd, env=env, capture_output=True, text=True,
                        timeout=300)


def test_the_commands_as_the_readme_gives_them(tmp_path, server):
  """`python -m gantx download_model NAME` writes where upstream's script does (in the current
  folder's checkpoints/); `translate --pretrained NAME` reuses it (no second request) and translates
  with the model's test settings; a name in both lists without --kind is one line."""
  (tmp_path / "photos").mkdir()
  Image.fromarray(np.random.default_rng(0).integers(0, 255, (20, 28, 3), np.uint8)).save(tmp_path / "photos" / "a.png")
  before = len(server.requests)
  got = _cli("download_model", "horse2zebra", cwd=tmp_path)
  assert got.returncode == 0, got.stderr
  assert (tmp_path / "checkpoints" / "horse2zebra_pretrained" / "latest_net_G.pth").read_bytes() == GOOD
  got = _cli("translate", "--pretrained", "horse2zebra", "--input", "photos", "--output", "out", cwd=tmp_path)
  assert got.returncode == 0, got.stderr
  assert "Translated 1 image into out" in got.stdout and "already there" in got.stdout
  assert server.requests[before:] == ["/cyclegan/pretrained_models/horse2zebra.pth"]  # downloaded once
  assert Image.open(tmp_path / "out" / "images" / "a_fake.png").size == (256, 256)
  got = _cli("download_model", "map2sat", cwd=tmp_path)
  assert got.returncode != 0 and got.stderr.strip().count("\n") == 0, got.stderr
  assert "'map2sat' is both a pix2pix model (unet_256) and a cyclegan model" in got.stderr
