"""JAX / PyTorch step-time ratios from repeated `step_time.py` runs: the median ratio of each case.

On a shared VM the speed of both frameworks drifts by tens of percent within minutes (BENCHMARKS.md,
"2026-11-27 03:34-04:27 UTC, dev-cpu ...: ratios over three runs"), so one run's ratio depends on
when each side happened to run. Each `step_time.py` run times PyTorch and then JAX within a few
minutes; this script makes N such runs back to back and reports, per case, each run's JAX and
PyTorch medians, each run's ratio, and the median ratio over the runs that have both. The PyTorch
step is the one `step_time.py` compares with: on a CPU PyTorch's float32 step for every row, on a
GPU the row's dtype.

  .venv/bin/python benchmarks/rounds.py --rounds 3 --out rounds.json -- --models pix2pix
  .venv/bin/python benchmarks/rounds.py --summarize run1.json run2.json run3.json

Everything after `--` goes to `step_time.py` (not --out: run i, from 1, writes its report to
OUT.run<i>.json). --summarize reads existing `step_time.py` reports instead of running.
"""

from __future__ import annotations

import argparse
import json
import pathlib
import statistics
import subprocess
import sys

HERE = pathlib.Path(__file__).resolve().parent


def summarize(reports: list[dict]) -> dict:
  """Per case (in order of first appearance): JAX and PyTorch medians and the ratio, one entry per
  report (None where the report lacks the case or a side of it)."""
  rows: dict = {}
  for i, rep in enumerate(reports):
    for c in rep["cases"]:
      jax_s = (c.get("jax") or {}).get("step_s_median")
      torch_s = (c.get("torch") or {}).get("step_s_median")
      row = rows.setdefault(c["case"], {"case": c["case"], "dtype": c["dtype"], "runs": [None] * len(reports)})
      row["runs"][i] = {"jax_s": jax_s, "torch_s": torch_s, "ratio": jax_s / torch_s if jax_s and torch_s else None}
  for row in rows.values():
    row["runs"] = [r or {"jax_s": None, "torch_s": None, "ratio": None} for r in row["runs"]]
    ratios = [r["ratio"] for r in row["runs"] if r["ratio"] is not None]
    row["ratio_n"] = len(ratios)
    row["ratio_median"] = statistics.median(ratios) if ratios else None
    row["ratio_range"] = [min(ratios), max(ratios)] if ratios else None
  return {"runs": len(reports), "dates": [r.get("date") for r in reports],
          "git": [r.get("git") for r in reports], "cases": list(rows.values())}


def markdown(summary: dict) -> str:
  lines = ["| case | JAX step s, by run | PyTorch step s, by run | ratio, by run | median ratio (runs) |",
           "|---|---|---|---|---:|"]
  fmt = lambda xs, spec: " / ".join("—" if x is None else format(x, spec) for x in xs)
  for row in summary["cases"]:
    runs = row["runs"]
    lines.append(f"| {row['case']} | {fmt([r['jax_s'] for r in runs], '.3f')}"
                 f" | {fmt([r['torch_s'] for r in runs], '.3f')} | {fmt([r['ratio'] for r in runs], '.2f')}"
                 f" | {'—' if row['ratio_median'] is None else format(row['ratio_median'], '.2f')} ({row['ratio_n']}) |")
  return "\n".join(lines)


def main(argv: list[str]) -> int:
  own, rest = (argv[:argv.index("--")], argv[argv.index("--") + 1:]) if "--" in argv else (argv, [])
  p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
  p.add_argument("--rounds", type=int, default=3, help="step_time.py runs, back to back (default 3)")
  p.add_argument("--out", default=None, help="the summary (JSON); run i's report goes to OUT.run<i>.json")
  p.add_argument("--summarize", nargs="+", default=None, metavar="REPORT", help="summarize these reports instead")
  p.add_argument("--step-time", default=str(HERE / "step_time.py"), help="the script to run (default: step_time.py here)")
  args = p.parse_args(own)
  if "--out" in rest:
    p.error("give --out to rounds.py, not to step_time.py")
  status = 0
  if args.summarize:
    paths = [pathlib.Path(f) for f in args.summarize]
    if args.out and pathlib.Path(args.out).resolve() in {q.resolve() for q in paths}:
      p.error("--out would overwrite one of the reports")
  else:
    if not args.out or args.rounds < 1:
      p.error("running needs --out and --rounds >= 1")
    base = pathlib.Path(args.out)
    paths = [base.with_suffix(f".run{i}.json") for i in range(1, args.rounds + 1)]
    for i, path in enumerate(paths, 1):
      print(f"[rounds] run {i} of {args.rounds} -> {path}", flush=True)
      path.unlink(missing_ok=True)  # never summarize an earlier invocation's report as this one's
      rc = subprocess.run([sys.executable, args.step_time, *rest, "--out", str(path)], check=False).returncode
      if rc not in (0, 1):  # 1: a case failed, the report says which; anything else: no usable report
        raise SystemExit(f"rounds.py: {args.step_time} exited with {rc} in run {i}")
      status = max(status, rc)
  reports = []
  for path in paths:
    try:
      reports.append(json.loads(path.read_text()))
    except (OSError, json.JSONDecodeError) as e:
      raise SystemExit(f"rounds.py: cannot read the report {path}: {e}") from None
  summary = summarize(reports)
  summary["reports"] = [str(path) for path in paths]
  summary["markdown"] = markdown(summary)
  print("\n" + summary["markdown"])
  if args.out:
    pathlib.Path(args.out).write_text(json.dumps(summary, indent=1))
    print(f"wrote {args.out}")
  return status


if __name__ == "__main__":
  sys.exit(main(sys.argv[1:]))
