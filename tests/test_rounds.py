"""benchmarks/rounds.py: per-case ratios over repeated step_time.py reports."""

import importlib.util
import json
import pathlib
import subprocess
import sys

ROUNDS = pathlib.Path(__file__).resolve().parents[1] / "benchmarks" / "rounds.py"


def _rounds():
  spec = importlib.util.spec_from_file_location("rounds", ROUNDS)
  module = importlib.util.module_from_spec(spec)
  spec.loader.exec_module(module)
  return module


def _report(date, cases):
  return {"date": date, "git": {"commit": "abc"}, "cases": [
      {"case": name, "dtype": dtype, "jax": {"step_s_median": j} if j else {"skipped": "deadline"},
       "torch": {"step_s_median": t}} for name, dtype, j, t in cases]}


def test_summarize_takes_each_runs_ratio_then_the_median(tmp_path):
  reports = [_report("d0", [("pix2pix bs=4 float32", "float32", 1.4, 2.8), ("pix2pix bs=4 bfloat16", "bfloat16", 1.0, 2.8)]),
             _report("d1", [("pix2pix bs=4 float32", "float32", 1.8, 1.8), ("pix2pix bs=4 bfloat16", "bfloat16", None, 1.8)]),
             _report("d2", [("pix2pix bs=4 float32", "float32", 2.1, 2.7), ("pix2pix bs=4 bfloat16", "bfloat16", 1.2, 2.7)])]
  summary = _rounds().summarize(reports)
  f32, bf16 = summary["cases"]
  assert [round(r["ratio"], 4) for r in f32["runs"]] == [0.5, 1.0, round(2.1 / 2.7, 4)]
  assert f32["ratio_median"] == 2.1 / 2.7  # the median of the ratios, not the ratio of the medians (1.8 / 2.7)
  assert f32["ratio_range"] == [0.5, 1.0]
  assert bf16["runs"][1]["ratio"] is None and bf16["ratio_median"] == (1.0 / 2.8 + 1.2 / 2.7) / 2
  assert summary["dates"] == ["d0", "d1", "d2"]

  # The command line reads saved reports and writes the summary with its table.
  paths = []
  for i, rep in enumerate(reports):
    paths.append(tmp_path / f"r{i}.json")
    paths[-1].write_text(json.dumps(rep))
  out = tmp_path / "summary.json"
  proc = subprocess.run([sys.executable, str(ROUNDS), "--summarize", *map(str, paths), "--out", str(out)],
                        capture_output=True, text=True, check=True)
  assert "| pix2pix bs=4 float32 | 1.400 / 1.800 / 2.100 | 2.800 / 1.800 / 2.700 | 0.50 / 1.00 / 0.78 | 0.78 |" in proc.stdout
  assert json.loads(out.read_text())["cases"][0]["ratio_median"] == f32["ratio_median"]


def test_a_missing_report_is_named(tmp_path):
  proc = subprocess.run([sys.executable, str(ROUNDS), "--summarize", str(tmp_path / "none.json")],
                        capture_output=True, text=True)
  assert proc.returncode != 0 and "none.json" in proc.stderr
