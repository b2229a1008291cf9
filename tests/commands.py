"""Runs command lines as a user types them, in this process: `python train.py ...`,
`python -m gantx ...` and `python -m gantx.download ...`, in a working folder.

The README's and the config files' commands are tested as written through this. In-process, a
command's entry point does exactly what it does in a new process (its `main`, after the same flag
parsing), and every command shares this process's compiled steps, so the suite can afford to run
all of them; tests/test_train.py starts train.py as a process, for what a process adds.
"""

from __future__ import annotations

import contextlib
import importlib.util
import io
import os
import shlex
import sys
from typing import NamedTuple

from absl import app, flags
from conftest import REPO


class Result(NamedTuple):
  returncode: int
  stdout: str
  stderr: str


def _train_script():
  spec = importlib.util.spec_from_file_location("gantx_train_script", os.path.join(REPO, "train.py"))
  module = importlib.util.module_from_spec(spec)
  spec.loader.exec_module(module)
  return module


_SCRIPTS = {}


def entry_point(argv: list[str]):
  """(flag parser, main, argv for the parser) of a command line split into words."""
  if argv[:2] == ["python", "train.py"]:
    from gantx import config as config_lib  # pylint: disable=g-import-not-at-top
    if "train" not in _SCRIPTS:
      _SCRIPTS["train"] = _train_script()
    return config_lib.parse_flags, _SCRIPTS["train"].main, ["train.py", *argv[2:]]
  if argv[:3] == ["python", "-m", "gantx"]:
    from gantx import __main__ as gantx_main  # pylint: disable=g-import-not-at-top
    return gantx_main.parse_flags, gantx_main.main, ["gantx", *argv[3:]]
  if argv[:3] == ["python", "-m", "gantx.download"]:
    from gantx import download  # pylint: disable=g-import-not-at-top
    return None, download.main, argv[3:]
  raise ValueError(f"Not a gantx command: {shlex.join(argv)}")


def run(command: str, cwd: os.PathLike | str) -> Result:
  """Runs `command` (one shell command line: words, quotes and `# comments`) in folder `cwd`; its
  exit status, standard output and standard error. A crash (an exception other than the entry
  point's own exits) propagates: that is a failure of the command, not a result."""
  argv = shlex.split(command, comments=True)
  parse, main, args = entry_point(argv)
  out, err = io.StringIO(), io.StringIO()
  code = 0
  argv_before = sys.argv
  with contextlib.chdir(cwd), contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
    sys.argv = args  # as in a new process: ml_collections reads the --config.<field> overrides from it
    try:
      if parse is None:
        code = main(args) or 0
      else:
        flags.FLAGS.unparse_flags()  # every flag back to its default, as in a new process
        for name in [n for n in flags.FLAGS if n.startswith("config.")]:
          delattr(flags.FLAGS, name)  # the last command's --config.<field> overrides (ml_collections defines them)
        main(parse(args))
    except SystemExit as e:
      if isinstance(e.code, str):
        err.write(e.code + "\n")
        code = 1
      else:
        code = e.code or 0
    except app.UsageError as e:
      err.write(f"{e}\n")
      code = 1
    finally:
      sys.argv = argv_before
      if not flags.FLAGS.is_parsed():
        flags.FLAGS.mark_as_parsed()
  return Result(code, out.getvalue(), err.getvalue())
