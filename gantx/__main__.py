"""Commands for trained models, configs and seed studies: `python -m gantx <command> [flags]`.

  translate   images through a generator:  --workdir RUN | --pth FILE.pth | --pretrained NAME, --input, --output
  download_model  an official pretrained generator by name: download_model NAME [--root checkpoints] [--kind]
  evaluate    a run's checkpoint on its test split (L1, PSNR, SSIM; FID, KID with --fid_weights)
  export      a generator as a jax.export (StableHLO) file: --workdir RUN | --pth FILE, --output
  import_pth  official .pth files into a new run: --config, --workdir, --net G=latest_net_G.pth ...
  export_pth  every network of a run as official <prefix>_net_<name>.pth files: --workdir, --output
  config      every field of a config file, with its value and what it does: config FILE [--config.x=y]
  study       N replicas of a run in one program: --config, --workdir, --seeds N, --vary init,data,step,
              [--sweep FIELD=v1,v2 | --sweep preset=NAME] variants x seeds, compared paired by seed
  study extract  one replica of a study as an ordinary run: --workdir STUDY --replica k --output RUN
  study report   the study's report from separate runs of one config: study report RUN... --output DIR
  combine     two folders of A and B images into A|B pairs: --fold_A DIR --fold_B DIR --output DIR [--use_AB]
  make_aligned  trainA/ trainB/ (testA/ testB/) paired by position into train/ (test/): --dataset_path DIR

translate, evaluate, export and export_pth take --replica k on a study's work directory.
Training itself is `python train.py --config ... --workdir ...`.
"""

from __future__ import annotations

import json
import re

from absl import app, flags, logging
from ml_collections import config_flags

from gantx import cli, config as config_lib

COMMANDS = ("translate", "evaluate", "export", "import_pth", "export_pth", "config", "study", "download_model",
            "combine", "make_aligned")
STUDY_COMMANDS = ("extract", "report")

_CONFIG, _WORKDIR = cli.CONFIG, cli.WORKDIR
_REPLICA = flags.DEFINE_integer("replica", None, "On a study's work directory: the replica (0..N-1) to use.")
_PTH = flags.DEFINE_string("pth", None, "translate/export: an official generator .pth instead of --workdir.")
_PRETRAINED = flags.DEFINE_string("pretrained", None, "translate/export: an official pretrained model by name"
                                  " (horse2zebra, style_monet, ...): downloaded once into --root, run with the official"
                                  " test settings (gantx/pretrained.py).")
_KIND = flags.DEFINE_enum("kind", None, ["pix2pix", "cyclegan"], "download_model, --pretrained: the model's kind, for"
                          " the names of both lists (sat2map, map2sat, facades_label2photo).")
_ROOT = flags.DEFINE_string("root", "checkpoints", "download_model, --pretrained: the checkpoints folder (official"
                            " --checkpoints_dir).")
_URL = flags.DEFINE_string("url", None, "download_model, --pretrained: fetch the model from this address instead"
                           " (http(s):// or file://).")
_FOLD_A = flags.DEFINE_string("fold_A", None, "combine: the folder of A images, one sub-folder per split.")
_FOLD_B = flags.DEFINE_string("fold_B", None, "combine: the folder of B images, the same sub-folders and names.")
_NUM_IMGS = flags.DEFINE_integer("num_imgs", None, "combine: at most this many images per split.")
_USE_AB = flags.DEFINE_bool("use_AB", False, "combine: pair x_A.<ext> with x_B.<ext> (official --use_AB).")
_DATASET_PATH = flags.DEFINE_string("dataset_path", None, "make_aligned: the folder with trainA/ trainB/ (testA/ testB/).")
_INPUT = flags.DEFINE_string("input", None, "translate: an image file or a folder of images.")
_OUTPUT = flags.DEFINE_string("output", None, "Output folder (translate, evaluate, export_pth, study extract/report)"
                              " or file (export).")
_DIRECTION = flags.DEFINE_enum("direction", "AtoB", ["AtoB", "BtoA"], "translate/export of a CycleGAN run: AtoB uses G_A, BtoA uses G_B.")
_STEP = flags.DEFINE_integer("step", None, "Checkpoint step (default: the latest).")
_BATCH = flags.DEFINE_integer("batch_size", 8, "translate: images per forward pass (results do not depend on it).")
_EVAL = flags.DEFINE_enum("eval", None, ["true", "false"],
                          "Test-time mode: false = official default (dropout on, batch norm statistics of"
                          " each image), true = official --eval (running averages). Default: the run's config.")
_SEED = flags.DEFINE_integer("seed", None, "translate: dropout seed at test time (default: the run's config.seed).")
_SKIP_BAD = flags.DEFINE_bool("skip_bad_images", False, "translate: leave out unreadable images (listed) instead"
                              " of stopping at the first.")
_NUM_TEST = flags.DEFINE_integer("num_test", 50, "evaluate: number of test images (official --num_test).")
_FID = flags.DEFINE_string("fid_weights", None, "evaluate: pytorch-fid's pt_inception-2015-12-05-6726825d.pth.")
_SIZE = flags.DEFINE_string("size", None, "export: HxW of the images (default: crop_size x crop_size).")
_NET = flags.DEFINE_multi_string("net", [], "import_pth: NAME=FILE.pth, e.g. G=latest_net_G.pth (repeatable).")
_PREFIX = flags.DEFINE_string("prefix", "latest", "export_pth: file names <prefix>_net_<name>.pth.")
_SEEDS = flags.DEFINE_integer("seeds", None, "study: the number of replicas N (>= 2).")
_VARY = flags.DEFINE_list("vary", ["init", "data", "step"], "study: the seed streams that differ between"
                          " replicas (init, data, step; replica k takes base + k in each).")
_SWEEP = flags.DEFINE_multi_string("sweep", [], "study: variants, FIELD=v1,v2,... (repeatable: every combination)"
                                   " or preset=pix2pix_losses|pix2pix_patch|cyclegan_losses (gantx/sweep.py).")
_BASELINE = flags.DEFINE_string("baseline", None, "study, study report: the variant the others are compared with"
                                " (default: the first).")


def _required(command: str, *names: str) -> None:
  missing = [n for n in names if flags.FLAGS[n].value in (None, [], "")]
  if missing:
    raise app.UsageError(f"{command} needs --{' --'.join(missing)}.")


def _generator():
  from gantx import translate  # pylint: disable=g-import-not-at-top

  if sum(bool(v) for v in (_WORKDIR.value, _PTH.value, _PRETRAINED.value)) != 1:
    raise app.UsageError("Give exactly one of --workdir (a gantx run), --pth (an official generator file) and"
                         " --pretrained (an official model by name).")
  if _WORKDIR.value:
    return translate.from_workdir(_WORKDIR.value, _DIRECTION.value, _STEP.value, _REPLICA.value)
  if _PRETRAINED.value:
    from gantx import pretrained  # pylint: disable=g-import-not-at-top
    return pretrained.generator(_PRETRAINED.value, _ROOT.value, _KIND.value, _URL.value)
  return translate.from_pth(_PTH.value, _CONFIG.value)


def _eval_mode() -> bool | None:
  return None if _EVAL.value is None else _EVAL.value == "true"


def _plural(n: int, word: str) -> str:
  return f"{n} {word}{'' if n == 1 else 's'}"


def parse_flags(argv: list[str]) -> list[str]:
  """`config FILE` is `config --config=FILE`; then gantx's parser (`config.parse_flags`)."""
  if len(argv) > 2 and argv[1] == "config" and not argv[2].startswith("-"):
    argv = [argv[0], "config", f"--config={argv[2]}", *argv[3:]]
  return config_lib.parse_flags(argv)


def main(argv):
  from gantx.train import USER_ERRORS  # pylint: disable=g-import-not-at-top

  try:
    _run(argv)
  except USER_ERRORS as e:
    if flags.FLAGS.verbosity >= 1:
      raise
    raise SystemExit(f"python -m gantx: error: {e}") from e


def _run(argv):
  command = argv[1] if len(argv) > 1 else None
  positional = {"study": None, "download_model": 1}.get(command, 0)  # arguments after the command (None: any)
  if command not in COMMANDS or (positional is not None and len(argv) - 2 != positional):
    what = " (download_model takes one model name)" if command == "download_model" else ""
    raise app.UsageError(f"Usage: python -m gantx {{{','.join(COMMANDS)}}} [flags]; got"
                         f" {' '.join(argv[1:]) or 'nothing'}{what}.")
  if not flags.FLAGS["verbosity"].present:
    logging.set_verbosity(logging.WARNING)
  if command == "translate":
    _required(command, "input", "output")
    from gantx import translate  # pylint: disable=g-import-not-at-top
    rows, skipped = translate.translate(_generator(), _INPUT.value, _OUTPUT.value, batch_size=_BATCH.value,
                                        eval_mode=_eval_mode(), seed=_SEED.value, skip_bad_images=_SKIP_BAD.value)
    print(f"Translated {_plural(len(rows), 'image')} into {_OUTPUT.value} (index.html).")
    if skipped:
      print(f"Left out {_plural(len(skipped), 'file')} (--skip_bad_images):")
      for path, why in skipped.items():
        print(f"  {why}")
  elif command == "evaluate":
    _required(command, "workdir")
    from gantx import evaluate  # pylint: disable=g-import-not-at-top
    metrics, output = evaluate.evaluate_run(_WORKDIR.value, _OUTPUT.value, step=_STEP.value, num_test=_NUM_TEST.value,
                                            fid_weights=_FID.value, eval_mode=_eval_mode(), replica=_REPLICA.value)
    print(json.dumps(metrics, indent=2))
    if metrics["num_test"] < _NUM_TEST.value:
      print(f"--num_test {_NUM_TEST.value}: the test set has {_plural(metrics['num_test'], 'image')};"
            f" evaluated {metrics['num_test']}.")
    print(f"Wrote {output / 'metrics.json'}, and {output / 'index.html'} with the images in {output / 'images'}.")
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
    for path in convert.export_run(_WORKDIR.value, _OUTPUT.value, _STEP.value, _PREFIX.value, _REPLICA.value):
      print(path)
  elif command == "config":
    _required(command, "config")
    print(config_lib.describe(_CONFIG.value, config_flags.get_config_filename(flags.FLAGS["config"])))
  elif command == "download_model":
    from gantx import pretrained  # pylint: disable=g-import-not-at-top
    pretrained.download_model(argv[2], _ROOT.value, _KIND.value, _URL.value)
  elif command == "combine":
    _required(command, "fold_A", "fold_B", "output")
    from gantx import tools  # pylint: disable=g-import-not-at-top
    tools.combine(_FOLD_A.value, _FOLD_B.value, _OUTPUT.value, num_imgs=_NUM_IMGS.value, use_AB=_USE_AB.value)
  elif command == "make_aligned":
    _required(command, "dataset_path")
    from gantx import tools  # pylint: disable=g-import-not-at-top
    tools.make_aligned(_DATASET_PATH.value)
  else:
    _study(argv[2:])


def _study(args: list[str]) -> None:
  from gantx import study  # pylint: disable=g-import-not-at-top

  sub = args[0] if args else None
  if sub is None:
    _required("study", "config", "workdir", "seeds")
    from gantx import parallel  # pylint: disable=g-import-not-at-top
    parallel.maybe_initialize_distributed(_CONFIG.value)  # a study on several hosts, as train.py
    study.run_study(_CONFIG.value, _WORKDIR.value, _SEEDS.value, tuple(_VARY.value), tuple(_SWEEP.value),
                    _BASELINE.value)
  elif sub == "extract":
    _required("study extract", "workdir", "replica", "output")
    study.extract(_WORKDIR.value, _REPLICA.value, _OUTPUT.value)
  elif sub == "report" and len(args) > 1:
    _required("study report", "output")
    study.report_from_runs(args[1:], _OUTPUT.value, _BASELINE.value)
  else:
    raise app.UsageError(f"Usage: python -m gantx study [{'|'.join(STUDY_COMMANDS)}] ...; got {' '.join(args)}"
                         " (study report takes the run directories).")


if __name__ == "__main__":
  app.run(main, flags_parser=parse_flags)
