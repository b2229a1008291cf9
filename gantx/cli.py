"""The flags that `train.py` and `python -m gantx` share, defined once (absl flags are global), so
that both entry points can live in one process (the tests run the README's commands in-process).

Each entry point parses its command line with `gantx.config.parse_flags`, which turns config
mistakes into one line.
"""

from absl import flags
from ml_collections import config_flags

CONFIG = config_flags.DEFINE_config_file(
    "config", None, "A config file in configs/ (train.py, study, import_pth); for translate/export --pth, the"
    " fields the .pth file does not tell (preprocess, crop_size, eval, no_dropout of a U-Net).", lock_config=True)
WORKDIR = flags.DEFINE_string("workdir", None, "The run's directory: checkpoints, metrics, samples (train.py); a"
                              " gantx run or a study's (with --replica) for the other commands.")
