"""notebooks/quickstart.ipynb runs from top to bottom (tiny settings)."""

import os

import nbformat
from nbclient import NotebookClient

from conftest import REPO


def test_quickstart_notebook_runs(tmp_path, monkeypatch):
  monkeypatch.setenv("GANTX_NOTEBOOK_TINY", "1")
  monkeypatch.setenv("GANTX_NOTEBOOK_WORKDIR", str(tmp_path / "run"))
  nb = nbformat.read(os.path.join(REPO, "notebooks", "quickstart.ipynb"), as_version=4)
  NotebookClient(nb, timeout=600, kernel_name="python3", resources={"metadata": {"path": os.path.join(REPO, "notebooks")}}).execute()
  outputs = "".join(o.get("text", "") for cell in nb.cells if cell.cell_type == "code" for o in cell.outputs)
  assert "trained to step 6" in outputs
  assert "max |exported - live| =" in outputs
  assert "study: {'L1_G':" in outputs and (tmp_path / "run_study" / "study.png").exists()
  assert (tmp_path / "run" / "G.jaxexport").exists() and (tmp_path / "run" / "eval_notebook" / "index.html").exists()
  assert any(o.get("output_type") == "display_data" and "image/png" in o.get("data", {})
             for cell in nb.cells if cell.cell_type == "code" for o in cell.outputs)
