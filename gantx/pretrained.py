"""The official pretrained pix2pix / CycleGAN generators, by name: downloaded, checked, ready to translate.

    python -m gantx download_model horse2zebra        # -> checkpoints/horse2zebra_pretrained/latest_net_G.pth
    python -m gantx download_model facades_label2photo --kind pix2pix
    python -m gantx translate --pretrained horse2zebra --input horses/ --output out/   # downloads once, then translates

As upstream's scripts/download_cyclegan_model.sh and scripts/download_pix2pix_model.sh, each model is
one generator file `<root>/<name>_pretrained/latest_net_G.pth` (both scripts use that folder, so the
official test.py finds it with `--name <name>_pretrained`). sat2map, map2sat and facades_label2photo
exist as both a pix2pix model (unet_256, batch norm, dropout) and a CycleGAN one (resnet_9blocks,
instance norm): `--kind` picks one, and since upstream gives both the same folder, a file of the
other kind already there is refused rather than overwritten.

A download goes to a temporary file beside the target and is renamed into place only once it reads
as a PyTorch state dict (`gantx.pth`) holding a generator of the model's architecture (converted in
full by `gantx.convert`), so a failed or cut download leaves nothing behind. `--url` replaces the
address of one file (http(s):// or file://); the environment variable GANTX_PRETRAINED_BASE_URL
replaces the official server for every model: a mirror with upstream's layout,
`<base>/cyclegan/pretrained_models/<name>.pth` and `<base>/pix2pix/models-pytorch/<name>.pth`
(read at each call; the tests point it at a local server).

`generator(name)` returns the downloaded generator with the settings of upstream's test commands
(`test_options`), for `gantx.translate.translate`.
"""

from __future__ import annotations

import difflib
import http.client
import os
import pathlib
import shutil
import tempfile
import urllib.error
import urllib.request
from typing import Any, NamedTuple

from gantx import config as config_lib
from gantx import convert, paths, pth

KINDS = ("pix2pix", "cyclegan")
OFFICIAL_BASE_URL = "http://efrosgans.eecs.berkeley.edu"
BASE_URL_ENV = "GANTX_PRETRAINED_BASE_URL"
# Upstream's URL templates (scripts/download_cyclegan_model.sh, scripts/download_pix2pix_model.sh).
MODEL_URLS = {"cyclegan": "{base}/cyclegan/pretrained_models/{name}.pth",
              "pix2pix": "{base}/pix2pix/models-pytorch/{name}.pth"}
FILE_NAME = "latest_net_G.pth"  # what both scripts save, read by test.py's default --epoch latest
TIMEOUT_S = 60.0  # per socket operation: a stalled server is an error, not a hang


class OtherModelError(convert.ConversionError):
  """A valid generator of the other kind's architecture (a U-Net where a ResNet is wanted, or the reverse)."""


class PretrainedModel(NamedTuple):
  """One official pretrained generator.

  `dataset` is the official data set it was trained on (`gantx.download` fetches it) and
  `direction` the side of that data set it reads (config.direction): by the data sets' X2Y names
  (A = X) and their documented layouts (facades: A = photo, B = labels; maps: A = aerial photo;
  cityscapes: A = photo). Translating images does not use it: the generator maps whatever it is
  given. It matters where paired data are read (evaluating against the data set's other side).
  """
  name: str
  kind: str  # 'pix2pix' or 'cyclegan'
  dataset: str
  direction: str  # 'AtoB' or 'BtoA'


def _models(kind: str, rows: str) -> dict[str, PretrainedModel]:
  out = {}
  for row in rows.split():
    name, dataset, direction = row.split(":")
    out[name] = PretrainedModel(name, kind, dataset, direction)
  return out


# Upstream's lists, in their order (the scripts' "available models" notes).
CYCLEGAN_MODELS = _models("cyclegan", """
    apple2orange:apple2orange:AtoB orange2apple:apple2orange:BtoA
    summer2winter_yosemite:summer2winter_yosemite:AtoB winter2summer_yosemite:summer2winter_yosemite:BtoA
    horse2zebra:horse2zebra:AtoB zebra2horse:horse2zebra:BtoA monet2photo:monet2photo:AtoB
    style_monet:monet2photo:BtoA style_cezanne:cezanne2photo:BtoA style_ukiyoe:ukiyoe2photo:BtoA
    style_vangogh:vangogh2photo:BtoA sat2map:maps:AtoB map2sat:maps:BtoA
    cityscapes_photo2label:cityscapes:AtoB cityscapes_label2photo:cityscapes:BtoA
    facades_photo2label:facades:AtoB facades_label2photo:facades:BtoA iphone2dslr_flower:iphone2dslr_flower:AtoB""")
PIX2PIX_MODELS = _models("pix2pix", """
    edges2shoes:edges2shoes:AtoB sat2map:maps:AtoB map2sat:maps:BtoA facades_label2photo:facades:BtoA
    day2night:night2day:BtoA""")
MODELS = {"cyclegan": CYCLEGAN_MODELS, "pix2pix": PIX2PIX_MODELS}
# The architecture family each kind's files hold (netG prefix), and the official one, for messages.
_NETG = {"pix2pix": ("unet", "unet_256"), "cyclegan": ("resnet", "resnet_9blocks")}


def names(kind: str | None = None) -> tuple[str, ...]:
  """The official model names of `kind`, or of both (each name once)."""
  kinds = KINDS if kind is None else (kind,)
  return tuple(dict.fromkeys(n for k in kinds for n in MODELS[k]))


def _known() -> str:
  return f"pix2pix: {', '.join(PIX2PIX_MODELS)}. cyclegan: {', '.join(CYCLEGAN_MODELS)}."


def model(name: str, kind: str | None = None) -> PretrainedModel:
  """The registry entry of `name`; `kind` is needed only for the names of both lists.

  Raises ValueError naming the closest name for a mistyped one, the right --kind for a name of the
  other kind, and both kinds for an ambiguous name given without one."""
  if kind is not None and kind not in KINDS:
    raise ValueError(f"kind={kind!r} is not one of {', '.join(KINDS)}.")
  kinds = [k for k in KINDS if name in MODELS[k]]
  if not kinds:
    close = difflib.get_close_matches(name, names(), n=1)
    hint = f" Did you mean {close[0]!r}?" if close else ""
    raise ValueError(f"Unknown pretrained model {name!r}.{hint} {_known()}")
  if kind is None:
    if len(kinds) > 1:
      raise ValueError(f"{name!r} is both a pix2pix model (unet_256) and a cyclegan model (resnet_9blocks):"
                       f" give --kind pix2pix or --kind cyclegan.")
    kind = kinds[0]
  elif kind not in kinds:
    raise ValueError(f"{name!r} is a {kinds[0]} model, not a {kind} one: use --kind {kinds[0]}"
                     f" (or leave --kind out). {_known()}")
  return MODELS[kind][name]


def base_url() -> str:
  """$GANTX_PRETRAINED_BASE_URL (read at each call, so a test or a mirror can set it), else upstream's server."""
  return (os.environ.get(BASE_URL_ENV) or OFFICIAL_BASE_URL).rstrip("/")


def model_url(name: str, kind: str | None = None) -> str:
  """The address of model `name` (upstream's, or under the $GANTX_PRETRAINED_BASE_URL mirror)."""
  m = model(name, kind)
  return MODEL_URLS[m.kind].format(base=base_url(), name=m.name)


def model_path(name: str, root: os.PathLike | str = "checkpoints") -> pathlib.Path:
  """`<root>/<name>_pretrained/latest_net_G.pth`, where upstream's scripts save it (for either kind)."""
  return pathlib.Path(root) / f"{name}_pretrained" / FILE_NAME


def test_options(name: str, kind: str | None = None) -> dict[str, Any]:
  """The config fields (gantx names) of upstream's test command for model `name`.

  Both kinds: test.py's defaults load_size = crop_size = 256 with 'resize_and_crop' (so images
  are resized to 256 x 256), and its hard-coded no_flip and serial_batches; eval False (no
  --eval in the documented commands).
  cyclegan: `--model test --no_dropout` (README, "Apply a pre-trained model (CycleGAN)") with the
  default resnet_9blocks and instance norm. The style_* models (photo -> painting) keep each image's
  size and aspect ratio, preprocess 'none' (sides rounded to multiples of 4): docs/qa.md ("Out of
  memory") advises `--model test --preprocess none` to run one generator on whole images at test
  time; no upstream document names a setting for style_* itself, and the Lua CycleGAN README ran
  them with scale_width at 256. A large photo at full size needs much memory
  (`--config.preprocess=scale_width --config.crop_size=W` bounds it, qa.md's other choice).
  pix2pix: `--model pix2pix`, whose defaults are unet_256, batch norm and dropout (no
  --no_dropout: the generators were trained with it and test.py keeps it on).
  direction: see `PretrainedModel` (README: facades_label2photo with --direction BtoA;
  docs/datasets.md: day2night is night2day with --direction BtoA).
  The file's own keys still decide netG, norm, ngf and a ResNet's dropout (`translate.from_pth`).
  """
  m = model(name, kind)
  options = dict(load_size=256, crop_size=256, preprocess="resize_and_crop", no_flip=True, serial_batches=True,
                 eval=False, direction=m.direction)
  if m.kind == "cyclegan":
    options.update(netG="resnet_9blocks", norm="instance", no_dropout=True)
    if m.name.startswith("style_"):
      options["preprocess"] = "none"
  else:
    options.update(netG="unet_256", norm="batch", no_dropout=False)
  return options


def test_config(name: str, kind: str | None = None):
  """`config.base_config` of the model's kind with `test_options` applied."""
  m = model(name, kind)
  c = config_lib.base_config("pix2pix" if m.kind == "pix2pix" else "cycle_gan")
  for field, value in test_options(name, kind).items():
    c[field] = value
  return c


def _check(path: os.PathLike | str, m: PretrainedModel) -> dict[str, Any]:
  """What `convert.detect` reads from the file, after checking that it is a generator of the
  model's architecture family whose every tensor converts. Raises ValueError otherwise
  (pth.PthError, convert.ConversionError, OtherModelError), FileNotFoundError if it is missing."""
  state_dict = pth.load(path)
  detected = convert.detect(state_dict)
  if detected["kind"] != "G":
    raise convert.ConversionError(f"it holds a discriminator ({detected['netD']}), not a generator")
  family, official = _NETG[m.kind]
  if not detected["netG"].startswith(family):
    raise OtherModelError(f"it holds a {detected['netG']} generator, but the {m.kind} models are {official}")
  module, channels = convert.network(detected)
  convert.from_torch(state_dict, module, channels)  # every key present, of the right shape
  return detected


def _describe(detected: dict[str, Any]) -> str:
  return f"{detected['netG']}, {detected['norm']} norm, ngf {detected['ngf']}"


def _one_line(text: str) -> str:
  return " ".join(str(text).split())


def _fetch(url: str, dest: pathlib.Path) -> None:
  """Copies `url` (http(s):// or file://) to `dest`; OSError naming the URL for a network error,
  an HTTP error or a body shorter than its Content-Length."""
  print(f"Downloading {url}", flush=True)
  try:
    with urllib.request.urlopen(url, timeout=TIMEOUT_S) as response, open(dest, "wb") as out:
      shutil.copyfileobj(response, out, length=1 << 20)
      expected = response.headers.get("Content-Length")
    if expected is not None and dest.stat().st_size != int(expected):
      raise OSError(f"the connection closed after {dest.stat().st_size} of {expected} bytes")
  except (OSError, http.client.HTTPException, ValueError) as e:  # URLError is an OSError; ValueError: a bad URL
    reason = e.reason if isinstance(e, urllib.error.URLError) and not isinstance(e, urllib.error.HTTPError) else e
    raise OSError(_one_line(f"Could not download {url}: {reason}. If you have the file (fetched another way), give"
                            f" it with --url file:///path/to/{pathlib.PurePosixPath(url).name}.")) from e
  print(f"  {dest.stat().st_size / 2**20:.1f} MiB", flush=True)


def download_model(name: str, root: os.PathLike | str = "checkpoints", kind: str | None = None,
                   url: str | None = None) -> pathlib.Path:
  """Fetches official model `name` to `<root>/<name>_pretrained/latest_net_G.pth` and checks it.

  Nothing is fetched when a valid file of the model's kind is already there; a file that does not
  read as one is replaced, and a valid file of the other kind (sat2map, map2sat, facades_label2photo
  share a folder upstream) is refused (FileExistsError). Nothing is written unless the whole file
  arrived and holds a generator of the model's architecture.

  Args:
    name: an official model name (`names()`).
    root: the folder of checkpoints (upstream's --checkpoints_dir, ./checkpoints); local.
    kind: 'pix2pix' or 'cyclegan'; needed only for the names in both lists.
    url: replaces the model's address (http(s):// or file://), e.g. a mirror or a file fetched by hand.
  Returns:
    The path of the generator file.
  Raises:
    ValueError (one line) for an unknown or ambiguous name, or a file that is not such a generator;
    OSError (one line, naming the URL) when the download fails.
  """
  m = model(name, kind)
  url = url or model_url(m.name, m.kind)
  if paths.is_remote(root):
    raise ValueError(f"--root {root}: pretrained models are downloaded to a local folder.")
  target = model_path(m.name, root)
  if target.exists():
    try:
      detected = _check(target, m)
      print(f"{target} is already there ({_describe(detected)}); nothing to download.")
      return target
    except (ValueError, OSError) as e:
      if isinstance(e, OtherModelError):
        raise FileExistsError(_one_line(f"{target} holds another model ({e}), not the {m.kind} {m.name}: upstream"
                                        f" gives both kinds this folder; remove it or use another --root.")) from e
      print(_one_line(f"{target} is there but unusable ({e}); downloading it again."))
  created = [d for d in (target.parent, *target.parent.parents) if not d.exists()]  # removed again on failure
  target.parent.mkdir(parents=True, exist_ok=True)
  fd, tmp_name = tempfile.mkstemp(prefix=f".{FILE_NAME}.", suffix=".part", dir=target.parent)
  os.close(fd)
  tmp = pathlib.Path(tmp_name)
  try:
    _fetch(url, tmp)
    try:
      detected = _check(tmp, m)
    except (ValueError, OSError) as e:
      reason = str(e)[len(str(tmp)):].lstrip(":. ") if str(e).startswith(str(tmp)) else str(e)  # pth names the file
      reason = reason.rstrip(".")
      raise ValueError(_one_line(
          f"{url} is not the {m.kind} generator {m.name}: {reason}. Nothing was saved: try again, or fetch the file"
          f" another way and give it with --url file:///path/to/{m.name}.pth.")) from e
    os.replace(tmp, target)
  finally:
    tmp.unlink(missing_ok=True)
    for folder in created:  # innermost first
      if folder.is_dir() and not any(folder.iterdir()):
        folder.rmdir()
  print(f"{target}: {_describe(detected)} generator.")
  return target


def generator(name: str, root: os.PathLike | str = "checkpoints", kind: str | None = None, url: str | None = None):
  """`translate.Generator` of official model `name` with upstream's test settings (`test_options`),
  downloaded once to `<root>/<name>_pretrained/` (reused after). Arguments as `download_model`."""
  # Here, not at the top: translate imports the data pipeline, which downloading does not need.
  from gantx import translate  # pylint: disable=g-import-not-at-top

  m = model(name, kind)
  path = download_model(m.name, root, kind=m.kind, url=url)
  return translate.from_pth(path, test_config(m.name, m.kind))
