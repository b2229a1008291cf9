"""Commands for trained models: `python -m gantx <command> [flags]`.

  translate   images through a generator:  --workdir RUN | --pth FILE.pth, --input, --output
  evaluate    a run's checkpoint on its test split (L1, PSNR, SSIM; FID, KID with --fid_weights)
  export      a generator as a jax.export (StableHLO) file: --workdir RUN | --pth FILE, --output
  import_pth  official .pth files into a new run: --config, --workdir, --net G=latest_net_G.pth ...
  export_pth  every network of a run as official <prefix>_net_<name>.pth files: --workdir, --output

Training itself is `python train.py --config ... --workdir ...`.
"""

from __future__ import annotations

import json
import re

from absl import app, flags, logging
from ml_collections import config_flags

COMMANDS = ("translate", "evaluate", "export", "import_pth", "export_pth")

_CONFIG = config_flags.DEFINE_config_file(
    "config", None, "import_pth: the run's config file; translate/export --pth: fields the file does not"
    " tell (preprocess, crop_size, eval, no_dropout of a U-Net).", lock_config=True)
_WORKDIR = flags.DEFINE_string("workdir", None, "A gantx run (train.py --workdir).")
_PTH = flags.DEFINE_string("pth", None, "translate/export: an official generator .pth instead of --workdir.")
_INPUT = flags.DEFINE_string("input", None, "translate: an image file or a folder of images.")
_OUTPUT = flags.DEFINE_string("output", None, "Output folder (translate, evaluate, export_pth) or file (export).")
_DIRECTION = flags.DEFINE_enum("direction", "AtoB", ["AtoB", "BtoA"], "translate/export of a CycleGAN run: AtoB uses G_A, BtoA uses G_B.")
_STEP = flags.DEFINE_integer("step", None, "Checkpoint step (default: the latest).")
_BATCH = flags.DEFINE_integer("batch_size", 8, "translate: images per forward pass (results do not depend on it).")
_EVAL = flags.DEFINE_enum("eval", None, ["true", "false"],
                          "Test-time mode: false = official default (dropout on, batch norm statistics of"
                          " each image), true = official --eval (running averages). Default: the run's config.")
_SEED = flags.DEFINE_integer("seed", None, "translate: dropout seed at test time (default: the run's config.seed).")
_NUM_TEST = flags.DEFINE_integer("num_test", 50, "evaluate: number of test images (official --num_test).")
_FID = flags.DEFINE_string("fid_weights", None, "evaluate: pytorch-fid's pt_inception-2015-12-05-6726825d.pth.")
_SIZE = flags.DEFINE_string("size", None, "export: HxW of the images (default: crop_size x crop_size).")
_NET = flags.DEFINE_multi_string("net", [], "import_pth: NAME=FILE.pth, e.g. G=latest_net_G.pth (repeatable).")
_PREFIX = flags.DEFINE_string("prefix", "latest", "export_pth: file names <prefix>_net_<name>.pth.")


def _required(command: str, *names: str) -> None:
  missing = [n for n in names if flags.FLAGS[n].value in (None, [], "")]
  if missing:
    raise app.UsageError(f"{command} needs --{' --'.join(missing)}.")


def _generator():
  from gantx import translate  # pylint: disable=g-import-not-at-top

  if bool(_WORKDIR.value) == bool(_PTH.value):
    raise app.UsageError("Give exactly one of --workdir (a gantx run) and --pth (an official generator file).")
  if _WORKDIR.value:
    return translate.from_workdir(_WORKDIR.value, _DIRECTION.value, _STEP.value)
  return translate.from_pth(_PTH.value, _CONFIG.value)


def _eval_mode() -> bool | None:
  return None if _EVAL.value is None else _EVAL.value == "true"


def main(argv):
  from gantx.train import USER_ERRORS  # pylint: disable=g-import-not-at-top

  try:
    _run(argv)
  except USER_ERRORS as e:
    if flags.FLAGS.verbosity >= 1:
      raise
    raise SystemExit(f"python -m gantx: error: {e}") from e


def _run(argv):
  if len(argv) != 2 or argv[1] not in COMMANDS:
    raise app.UsageError(f"Usage: python -m gantx {{{','.join(COMMANDS)}}} [flags]; got {' '.join(argv[1:]) or 'nothing'}.")
  command = argv[1]
  if not flags.FLAGS["verbosity"].present:
    logging.set_verbosity(logging.WARNING)
  if command == "translate":
    _required(command, "input", "output")
    from gantx import translate  # pylint: disable=g-import-not-at-top
    rows = translate.translate(_generator(), _INPUT.value, _OUTPUT.value, batch_size=_BATCH.value,
                               eval_mode=_eval_mode(), seed=_SEED.value)
    print(f"Translated {len(rows)} images into {_OUTPUT.value} (index.html).")
  elif command == "evaluate":
    _required(command, "workdir")
    from gantx import evaluate  # pylint: disable=g-import-not-at-top
    metrics = evaluate.evaluate_run(_WORKDIR.value, _OUTPUT.value, step=_STEP.value, num_test=_NUM_TEST.value,
                                    fid_weights=_FID.value, eval_mode=_eval_mode())
    print(json.dumps(metrics, indent=2))
  elif command == "export":
    _required(command, "output")
    from gantx import export  # pylint: disable=g-import-not-at-top
    from gantx import models  # pylint: disable=g-import-not-at-top
    gen = _generator()
    size = re.fullmatch(r"(\d+)x(\d+)", (_SIZE.value or f"{gen.config.crop_size}x{gen.config.crop_size}").lower())
    multiple = models.size_multiple(gen.config.netG)
    if not size or int(size[1]) % multiple or int(size[2]) % multiple:
      raise app.UsageError(f"--size={_SIZE.value}: give HxW with H and W multiples of {multiple} ({gen.config.netG}).")
    h, w = int(size[1]), int(size[2])
    export.save(export.export_generator(gen, h, w, _eval_mode()), _OUTPUT.value)
    print(f"Exported {gen.name} for {h}x{w} images to {_OUTPUT.value}.")
  elif command == "import_pth":
    _required(command, "config", "workdir", "net")
    from gantx import convert  # pylint: disable=g-import-not-at-top
    if bad := [item for item in _NET.value if "=" not in item]:
      raise app.UsageError(f"--net={bad[0]}: give NAME=FILE.pth, e.g. --net G=latest_net_G.pth.")
    files = dict(item.split("=", 1) for item in _NET.value)
    convert.import_run(_CONFIG.value, _WORKDIR.value, files)
    print(f"Imported {', '.join(files)} into {_WORKDIR.value} (step 0): translate, evaluate or train from it.")
  elif command == "export_pth":
    _required(command, "workdir", "output")
    from gantx import convert  # pylint: disable=g-import-not-at-top
    for path in convert.export_run(_WORKDIR.value, _OUTPUT.value, _STEP.value, _PREFIX.value):
      print(path)


if __name__ == "__main__":
  app.run(main)
