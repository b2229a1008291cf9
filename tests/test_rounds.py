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
       "torch": {"step_s_median": t} if t else None} for name, dtype, j, t in cases]}


REPORTS = [_report("d0", [("pix2pix bs=4 float32", "float32", 1.4, 2.8), ("pix2pix bs=4 bfloat16", "bfloat16", 1.0, 2.8)]),
           _report("d1", [("pix2pix bs=4 float32", "float32", 1.8, 1.8), ("pix2pix bs=4 bfloat16", "bfloat16", None, 1.8),
                          ("cycle_gan bs=1 float32", "float32", 7.0, None)]),
           _report("d2", [("pix2pix bs=4 float32", "float32", 2.1, 2.7), ("pix2pix bs=4 bfloat16", "bfloat16", 1.2, 2.7)])]


def test_summarize_takes_each_runs_ratio_then_the_median(tmp_path):
  summary = _rounds().summarize(REPORTS)
  f32, bf16, cyclegan = summary["cases"]
  assert [round(r["ratio"], 4) for r in f32["runs"]] == [0.5, 1.0, round(2.1 / 2.7, 4)]
  assert f32["ratio_median"] == 2.1 / 2.7  # the median of the ratios, not the ratio of the medians (1.8 / 2.7)
  assert f32["ratio_range"] == [0.5, 1.0] and f32["ratio_n"] == 3
  assert bf16["runs"][1]["ratio"] is None and bf16["ratio_median"] == (1.0 / 2.8 + 1.2 / 2.7) / 2
  # A case that only one report has keeps its place in the runs: None before and after it.
  assert [r["jax_s"] for r in cyclegan["runs"]] == [None, 7.0, None] and cyclegan["ratio_median"] is None
  assert summary["dates"] == ["d0", "d1", "d2"]

  # The command line reads saved reports and writes the summary with its table.
  paths = []
  for i, rep in enumerate(REPORTS):
    paths.append(tmp_path / f"r{i}.json")
    paths[-1].write_text(json.dumps(rep))
  out = tmp_path / "summary.json"
  proc = subprocess.run([sys.executable, str(ROUNDS), "--summarize", *map(str, paths), "--out", str(out)],
                        capture_output=True, text=True, check=True)
  assert ("| pix2pix bs=4 float32 | 1.400 / 1.800 / 2.100 | 2.800 / 1.800 / 2.700 | 0.50 / 1.00 / 0.78 | 0.78 (3) |"
          in proc.stdout)
  assert "| cycle_gan bs=1 float32 | — / 7.000 / — | — / — / — | — / — / — | — (0) |" in proc.stdout
  assert json.loads(out.read_text())["cases"][0]["ratio_median"] == f32["ratio_median"]


def test_running_passes_the_flags_and_reads_each_runs_fresh_report(tmp_path):
  # A stand-in for step_time.py: writes report k (counted in a file) to --out, echoing its flags.
  stub = tmp_path / "stub.py"
  stub.write_text(f"""import json, pathlib, sys
reports = json.loads({json.dumps(json.dumps(REPORTS))})
count = pathlib.Path({str(tmp_path / "count")!r})
k = int(count.read_text()) if count.exists() else 0
count.write_text(str(k + 1))
rep = dict(reports[k], argv=sys.argv[1:])
pathlib.Path(sys.argv[sys.argv.index("--out") + 1]).write_text(json.dumps(rep))
""")
  out = tmp_path / "rounds.json"
  (tmp_path / "rounds.run3.json").write_text("stale")  # an earlier invocation's: replaced, not read
  proc = subprocess.run([sys.executable, str(ROUNDS), "--rounds", "3", "--out", str(out), "--step-time", str(stub),
                         "--", "--models", "pix2pix"], capture_output=True, text=True)
  assert proc.returncode == 0, proc.stderr
  assert json.loads((tmp_path / "rounds.run3.json").read_text())["argv"] == [
      "--models", "pix2pix", "--out", str(tmp_path / "rounds.run3.json")]
  assert json.loads(out.read_text())["cases"][0]["ratio_median"] == 2.1 / 2.7


def test_bad_invocations_are_named(tmp_path):
  missing = subprocess.run([sys.executable, str(ROUNDS), "--summarize", str(tmp_path / "none.json")],
                           capture_output=True, text=True)
  assert missing.returncode != 0 and "none.json" in missing.stderr
  crash = tmp_path / "crash.py"
  crash.write_text("import sys; sys.exit(2)")
  crashed = subprocess.run([sys.executable, str(ROUNDS), "--rounds", "1", "--out", str(tmp_path / "r.json"),
                            "--step-time", str(crash)], capture_output=True, text=True)
  assert crashed.returncode != 0 and "exited with 2 in run 1" in crashed.stderr
