"""Seed studies: N replicas of one run in one program, one source of randomness varied at a time.

    python -m gantx study --config configs/quickstart.py --workdir runs/study --seeds 4 --vary init
    python -m gantx study extract --workdir runs/study --replica 2 --output runs/replica2
    python -m gantx study report runs/seed0 runs/seed1 runs/seed2 --output runs/study_report

Replica k takes base + k in each varied seed stream (`gantx.seeds`: init, data, step) and the base
value in the others. The replicas' train states are stacked on a leading axis and trained by the
run's own loop (`train.run`) with the run's step under `jax.vmap`, sharded over a ('seeds', 'data')
mesh: each replica has its own parameters, Adam state, batch statistics, history pools and key.
Replicas that share the data seed share one data stream, loaded once.

A study's work directory:
  config.json, params.json, checkpoints/   as a run's (the checkpoints hold the stacked states)
  seeds.json                               N, the varied streams, each replica's seeds
  replica_<k>/                             metrics.jsonl, tb/, samples/, losses.png of replica k
  study.json   per replica its seeds and every evaluated metric at every evaluation; across the
               replicas their mean, standard deviation, min, max and a bootstrap 95% interval of the mean
  study.png    each metric and loss against the step: the mean, a +-1 std band, every replica
  index.html   the final samples of every replica side by side, the table, the picture
`study report` writes the last three for separate runs of one config (seeds trained as separate jobs).
"""

from __future__ import annotations

import io
import json
import os
from typing import NamedTuple

import jax
import ml_collections
import numpy as np
from etils import epath

from gantx import checkpointing, paths, seeds as seeds_lib, train as train_lib, writers

# Fields of a run's config that do not change what it computes (paths, bookkeeping): runs may differ
# in them and still be replicas of one study.
_OPERATIONAL = {"compilation_cache_dir", "distributed", "peer_timeout_s", "step_timeout_s", "allow_config_change",
                "max_checkpoints_to_keep", "checkpoint_every_steps", "data.root", "data.num_workers", "data.check_images"}
_SEED_FIELDS = {"seed", "init_seed", "data_seed", "step_seed"}
# Evaluation metrics in metrics.jsonl (the rest are losses, lr and images/s).
_METRIC_PREFIXES = ("L1_", "PSNR_", "SSIM_", "FID_", "KID_", "class_acc_", "cycle_L1_", "idt_L1_")
_BOOTSTRAP_SAMPLES = 10_000


class Replica(NamedTuple):
  """One replica of a study: its seeds and the folder with its metrics.jsonl and samples/."""
  seeds: seeds_lib.Seeds
  run_dir: epath.Path


def run_study(config, workdir: str | os.PathLike, num_seeds: int, vary: tuple[str, ...]) -> None:
  """Trains `num_seeds` replicas of `config` varying the seed streams `vary`, in `workdir`
  (resumed if it holds this study), then writes the report."""
  if num_seeds is None or num_seeds < 2:
    raise ValueError(f"--seeds {num_seeds}: a study has at least 2 replicas.")
  if not vary:
    raise ValueError(f"--vary is empty: vary one or more of {', '.join(seeds_lib.FACTORS)}.")
  workdir = paths.check_workdir(workdir)
  replicas = seeds_lib.vary(seeds_lib.from_config(config), tuple(vary), num_seeds)
  record = {"seeds": num_seeds, "vary": list(vary), "replicas": [s._asdict() for s in replicas]}
  existing = checkpointing.read_study(workdir)
  if existing is None and (workdir / "checkpoints").is_dir() and any((workdir / "checkpoints").iterdir()):
    raise ValueError(f"{workdir} holds a run, not a study ({checkpointing.STUDY_FILE} is missing): give the"
                     " study its own --workdir (`python -m gantx study report` makes a study's report from runs).")
  if existing is not None and existing != record:
    raise ValueError(f"{workdir} holds a study of other seeds ({existing['seeds']} replicas varying"
                     f" {','.join(existing['vary'])}, seeds {existing['replicas']}): use another --workdir, or"
                     f" --seeds {existing['seeds']} --vary {','.join(existing['vary'])} to continue it.")
  lead = jax.process_index() == 0
  if lead:
    workdir.mkdir(parents=True, exist_ok=True)
    (workdir / checkpointing.STUDY_FILE).write_text(json.dumps(record, indent=1) + "\n")
  members = [Replica(s, workdir / f"replica_{k}") for k, s in enumerate(replicas)]
  train_lib.run(config, workdir, replicas=replicas, on_eval=lambda step: report(members, workdir))
  if lead:
    report(members, workdir)
    print(f"Study report: {workdir / 'index.html'}, {workdir / 'study.png'}, {workdir / 'study.json'};"
          f" each replica's run in {workdir}/replica_<k>/ (python -m gantx translate ... --replica k).")


# ----------------------------------------------------------------------------- the report


def _records(run_dir: epath.Path) -> list[dict]:
  path = run_dir / "metrics.jsonl"
  if not path.is_file():
    raise FileNotFoundError(f"{path} not found: {run_dir} has logged nothing yet.")
  return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def _series(records: list[dict], metrics: bool) -> dict[str, dict[int, float]]:
  """{name: {step: value}} of the evaluation metrics (`metrics`) or of the losses."""
  out: dict[str, dict[int, float]] = {}
  for r in records:
    for k, v in r.items():
      if k in ("step", "lr", "images_per_s") or k.startswith(_METRIC_PREFIXES) != metrics:
        continue
      out.setdefault(k, {})[int(r["step"])] = float(v)
  return out


def spread(values: list[float], seed: int = 0) -> dict[str, float | list[float] | int]:
  """Mean, sample standard deviation, min, max and a bootstrap 95% interval of the mean (percentiles
  of the means of 10,000 resamples with replacement, from a fixed seed: the report is reproducible)."""
  x = np.asarray(values, np.float64)
  means = x[np.random.default_rng(seed).integers(0, len(x), (_BOOTSTRAP_SAMPLES, len(x)))].mean(axis=1)
  return {"n": len(x), "mean": float(x.mean()), "std": float(x.std(ddof=1)) if len(x) > 1 else 0.0,
          "min": float(x.min()), "max": float(x.max()),
          "ci95": [float(np.percentile(means, 2.5)), float(np.percentile(means, 97.5))]}


def summarize(members: list[Replica]) -> dict:
  """The contents of study.json for these replicas' logs."""
  logs = [_records(m.run_dir) for m in members]
  metrics = [_series(r, True) for r in logs]
  names = sorted(set().union(*metrics))
  summary = {}
  for name in names:
    steps = sorted(set.intersection(*(set(m.get(name, {})) for m in metrics)))
    summary[name] = {str(s): spread([m[name][s] for m in metrics]) for s in steps}
  final = {name: per_step[max(per_step, key=int)] for name, per_step in summary.items() if per_step}
  return {"replicas": [{"replica": k, "seeds": m.seeds._asdict(), "run": str(m.run_dir),
                        "metrics": {n: {str(s): v for s, v in sorted(ms.items())} for n, ms in met.items()}}
                       for k, (m, met) in enumerate(zip(members, metrics))],
          "summary": summary, "final": final}


def _plot(members: list[Replica], path: epath.Path) -> None:
  """study.png: every metric, then every loss, against the step: mean, +-1 std, every replica."""
  from matplotlib.figure import Figure  # pylint: disable=g-import-not-at-top  (only for this plot)

  logs = [_records(m.run_dir) for m in members]
  panels = []
  for metrics in (True, False):
    series = [_series(r, metrics) for r in logs]
    panels += [(name, [s.get(name, {}) for s in series]) for name in sorted(set().union(*series))]
  cols = 3
  rows = max(1, -(-len(panels) // cols))
  fig = Figure(figsize=(4.2 * cols, 2.8 * rows))
  axes = fig.subplots(rows, cols, squeeze=False)
  for ax, (name, per_replica) in zip(axes.flat, panels):
    for k, s in enumerate(per_replica):
      if s:
        ax.plot(sorted(s), [s[t] for t in sorted(s)], lw=0.7, alpha=0.6, label=f"replica {k}")
    steps = sorted(set.intersection(*(set(s) for s in per_replica)))
    if steps:
      values = np.array([[s[t] for t in steps] for s in per_replica])
      mean, std = values.mean(0), values.std(0, ddof=1)
      ax.plot(steps, mean, color="black", lw=1.8, label="mean")
      ax.fill_between(steps, mean - std, mean + std, color="black", alpha=0.15, label="+-1 std")
    ax.set_title(name, fontsize=9)
    ax.set_xlabel("step", fontsize=8)
    ax.ticklabel_format(axis="y", useOffset=False)
  for ax in axes.flat[len(panels):]:
    ax.axis("off")
  if panels:
    axes.flat[0].legend(fontsize=6)
  fig.tight_layout()
  buffer = io.BytesIO()
  fig.savefig(buffer, format="png", dpi=80)
  path.write_bytes(buffer.getvalue())


def _final_samples(members: list[Replica], output: epath.Path) -> tuple[list[str], list[tuple[str, list[str]]]]:
  """Copies each replica's latest sample grids into output/samples/; (columns, rows) of the page."""
  (output / "samples").mkdir(parents=True, exist_ok=True)
  grids = []
  for k, m in enumerate(members):
    found = {}
    for png in sorted((m.run_dir / "samples").glob("*_*.png")):
      name, step = png.stem.rsplit("_", 1)
      found[name] = max(found.get(name, (-1, None)), (int(step), png))
    grids.append(found)
  names = sorted(set().union(*grids))
  rows = []
  for k, found in enumerate(grids):
    cells = []
    for name in names:
      if name in found:
        step, png = found[name]
        target = output / "samples" / f"replica_{k}_{png.name}"
        if os.fspath(png) != os.fspath(target):
          target.write_bytes(png.read_bytes())
        cells.append(f"samples/{target.name}")
      else:
        cells.append("")
    rows.append((f"replica {k} {members[k].seeds._asdict()}", cells))
  return names, rows


def report(members: list[Replica], output: str | os.PathLike) -> dict:
  """Writes study.json, study.png and index.html for `members` into `output`; returns study.json."""
  output = paths.path(output)
  output.mkdir(parents=True, exist_ok=True)
  study = summarize(members)
  (output / "study.json").write_text(json.dumps(study, indent=1) + "\n")
  _plot(members, output / "study.png")
  columns, rows = _final_samples(members, output)
  table = ["<table border='1' style='border-collapse:collapse'><tr><th>metric (final)</th>"
           + "".join(f"<th>replica {k}</th>" for k in range(len(members)))
           + "<th>mean</th><th>std</th><th>min</th><th>max</th><th>95% CI of the mean</th></tr>"]
  for name, s in study["final"].items():
    step = max(study["summary"][name], key=int)
    per = [r["metrics"][name].get(step) for r in study["replicas"]]
    table.append(f"<tr><td>{name} (step {step})</td>" + "".join(f"<td>{v:.4g}</td>" for v in per)
                 + f"<td>{s['mean']:.4g}</td><td>{s['std']:.3g}</td><td>{s['min']:.4g}</td><td>{s['max']:.4g}</td>"
                 f"<td>[{s['ci95'][0]:.4g}, {s['ci95'][1]:.4g}]</td></tr>")
  table.append("</table>")
  extra = "\n".join(table) + "\n<p><img src='study.png' style='max-width:100%'></p>"
  writers.html_table(output / "index.html", f"Seed study: {len(members)} replicas", columns, rows, head_html=extra)
  return study


def _comparable(config: dict) -> dict:
  flat = {}
  for k, v in config.items():
    for kk, vv in (v.items() if isinstance(v, dict) else [(None, v)]):
      name = k if kk is None else f"{k}.{kk}"
      if name not in _OPERATIONAL and name not in _SEED_FIELDS:
        flat[name] = vv
  return flat


def report_from_runs(run_dirs: list[str], output: str | os.PathLike) -> dict:
  """The study report of separate ordinary runs of one config (seeds trained as separate jobs).
  ValueError naming the field where two runs' configs differ in more than their seeds."""
  members, first = [], None
  for d in map(paths.path, run_dirs):
    if checkpointing.read_study(d) is not None:
      raise ValueError(f"{d} is a study's work directory: its report is {d / 'index.html'} (study report takes runs).")
    config = json.loads((d / "config.json").read_text()) if (d / "config.json").is_file() else None
    if config is None:
      raise FileNotFoundError(f"{d / 'config.json'} not found: {d} is not a gantx run.")
    if first is None:
      first = (d, _comparable(config))
    else:
      now = _comparable(config)
      for field in sorted(set(first[1]) | set(now)):
        if first[1].get(field) != now.get(field):
          raise ValueError(f"{d} and {first[0]} are not replicas of one config: {field} is {now.get(field)!r}"
                           f" there and {first[1].get(field)!r} in {first[0]} (runs may differ in their seeds alone).")
    members.append(Replica(seeds_lib.from_config(ml_collections.ConfigDict(config)), d))
  if len(members) < 2:
    raise ValueError("study report needs at least 2 runs.")
  study = report(members, output)
  print(f"Study report of {len(members)} runs: {paths.path(output) / 'index.html'}")
  return study


# ----------------------------------------------------------------------------- one replica as a run


def extract(workdir: str | os.PathLike, replica: int, output: str | os.PathLike) -> epath.Path:
  """Writes replica `replica` of the study in `workdir` as an ordinary run directory `output` (its
  config with the replica's seeds, its logs and samples, the latest checkpoint's state, data
  position and log window): train.py continues it as if the replica had trained alone."""
  from gantx import data  # pylint: disable=g-import-not-at-top

  workdir, output = paths.path(workdir), paths.check_workdir(output)
  study = checkpointing.read_study(workdir)
  if study is None:
    raise ValueError(f"{workdir} is not a study's work directory ({checkpointing.STUDY_FILE} is missing).")
  config, step, state = checkpointing.load_run(workdir, replica=replica)  # the replica's config and state
  if output.exists() and any(output.iterdir()):
    raise FileExistsError(f"{output} is not empty: extract into a new directory.")
  streams = checkpointing.data_streams(study)
  source = checkpointing.Checkpointer(workdir / "checkpoints", config.max_checkpoints_to_keep, streams)
  try:
    iterator = data.make_train_iterator(config)
    log = source.restore_extra(step, "data" if streams == 1 else f"data_{replica}", iterator)
  finally:
    source.close()
  if log is not None:
    log = {"window": [log["window"][replica]]}
  paths.copy_tree(workdir / f"replica_{replica}", output)
  (output / "params.json").write_bytes((workdir / "params.json").read_bytes())
  (output / "config.json").write_text(config.to_json_best_effort(indent=2))
  target = checkpointing.Checkpointer(output / "checkpoints", config.max_checkpoints_to_keep)
  try:
    target.save(step, state, [iterator], config, log=log)
  finally:
    target.close()
  overrides = " ".join(f"--config.{f}_seed={v}" for f, v in zip(seeds_lib.FACTORS, seeds_lib.from_config(config)))
  print(f"Replica {replica} of {workdir} at step {step} is the run {output}; continue it with\n"
        f"  python train.py --config <the study's config> --workdir {output} {overrides}")
  return output
