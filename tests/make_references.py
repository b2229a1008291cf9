"""Writes the PyTorch reference outputs that the tests compare gantx with (run under a Python with torch).

  .venv-torch/bin/python tests/make_references.py tests/references

into OUT (here the stored copy the default test run reads; the live tier, `pytest -m torch`, runs
it into a temporary folder and checks gantx against that):
  networks/  <case>.pth and <case>.npz of tests/torch_networks.py for reference_data.NETWORK_CASES
  steps/     <case>_G.pth, <case>_D.pth and <case>.npz of tests/torch_steps.py for STEP_CASES
  inception.npz  tests/torch_inception.py's outputs
  manifest.json  torch and numpy versions, the command, the date
The inputs are not stored: tests/reference_data.py draws them from numpy seeds on both sides.
"""

import datetime
import json
import os
import subprocess
import sys

import numpy as np
import torch

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
import reference_data  # noqa: E402


def main(out: str) -> None:
  for sub in ("networks", "steps"):
    os.makedirs(os.path.join(out, sub), exist_ok=True)
  runs = [("torch_networks.py", ["make"], reference_data.NETWORK_CASES, "networks"),
          ("torch_steps.py", [], reference_data.STEP_CASES, "steps")]
  for script, command, cases, sub in runs:
    cases_file = os.path.join(out, sub, "cases.json")
    with open(cases_file, "w") as f:
      json.dump(cases, f, indent=1)
    subprocess.run([sys.executable, os.path.join(HERE, script), *command, cases_file, os.path.join(out, sub)], check=True)
  subprocess.run([sys.executable, os.path.join(HERE, "torch_inception.py"), os.path.join(out, "inception.npz")], check=True)
  manifest = {"torch": torch.__version__, "numpy": np.__version__, "python": sys.version.split()[0],
              "command": f"{os.path.basename(sys.executable)} tests/make_references.py {out}",
              "date": datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC")}
  with open(os.path.join(out, "manifest.json"), "w") as f:
    json.dump(manifest, f, indent=1)
    f.write("\n")


if __name__ == "__main__":
  main(sys.argv[1])
