"""Train pix2pix or CycleGAN: `python train.py --config configs/pix2pix_maps.py --workdir runs/maps`.

Any config field can be overridden: `--config.batch_size=4 --config.lambda_L1=50`.
Running again with the same --workdir resumes from its latest checkpoint.
"""

from absl import app, flags, logging

from gantx import allocator, cli, parallel
from gantx import config as config_lib
from gantx import train as train_lib

_CONFIG, _WORKDIR = cli.CONFIG, cli.WORKDIR
_KEEP_FREED_MEMORY = flags.DEFINE_bool(
    "keep_freed_memory", None, "Keep freed host memory for reuse (glibc): each CPU step reuses the pages of "
    "the last instead of faulting in new ones (8-19% of a CPU step; resident memory stays at its peak). "
    "Default: where JAX runs on the CPU alone (gantx.allocator.cpu_only); on a GPU host it slowed compiling.")


def main(argv):
  if len(argv) > 1:
    raise app.UsageError(f"Unexpected arguments: {' '.join(argv[1:])}")
  if missing := [f"--{f.name}" for f in (_CONFIG, _WORKDIR) if f.value is None]:
    raise app.UsageError(f"train.py needs {' and '.join(missing)} (train.py --config configs/<file>.py --workdir <dir>).")
  if not flags.FLAGS["verbosity"].present:
    logging.set_verbosity(logging.WARNING)  # orbax logs every file it writes at INFO; -v 0 shows it
  keep = _KEEP_FREED_MEMORY.value
  if keep or (keep is None and allocator.cpu_only()):
    allocator.keep_freed_memory()  # before JAX starts its backend and threads
  parallel.maybe_initialize_distributed(_CONFIG.value)
  try:
    train_lib.train_and_evaluate(_CONFIG.value, _WORKDIR.value)
  except train_lib.USER_ERRORS as e:  # a bad file, field or checkpoint: its message, not a traceback
    if flags.FLAGS.verbosity >= 1:
      raise
    raise SystemExit(f"train.py: error: {e}") from e


if __name__ == "__main__":
  app.run(main, flags_parser=config_lib.parse_flags)
