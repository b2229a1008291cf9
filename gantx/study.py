"""Studies: N replicas of a run in one program, one source of randomness varied at a time, and
variants of the config compared against each other, paired by seed.

    python -m gantx study --config configs/quickstart.py --workdir runs/study --seeds 4 --vary init
    python -m gantx study --config configs/quickstart.py --workdir runs/ablation --seeds 4 --vary init \\
        --sweep preset=pix2pix_losses
    python -m gantx study extract --workdir runs/study --replica 2 --output runs/replica2
    python -m gantx study report runs/seed0 runs/seed1 runs/seed2 --output runs/study_report

Replica k of every variant takes base + k in each varied seed stream (`gantx.seeds`: init, data,
step) and the base value in the others. The replicas' train states are stacked on a leading axis and
trained by the run's own loop (`train.run`) with the run's step under `jax.vmap`, sharded over a
('seeds', 'data') mesh: each replica has its own parameters, Adam state, batch statistics, history
pools, key and numbers (`state.hparams`: a sweep's lr, lambdas, ...). Replicas that share the data
seed share one data stream, loaded once. `--sweep` (gantx/sweep.py) makes the grid of variants x
seeds; variants that differ in values of the step train in one program, the others in groups, one
after another, by the same loop.

A study's work directory:
  config.json, params.json, checkpoints/   as a run's (the checkpoints hold the stacked states); with
                                           several groups, each in group_<g>/
  seeds.json                               N, the varied streams, each replica's seeds (and variant),
                                           the sweep's variants and groups
  replica_<j>/                             metrics.jsonl, tb/, samples/, losses.png of replica j
                                           (j = variant x N + seed index)
  study.json   per replica its seeds, variant and every evaluated metric at every evaluation; per
               variant the mean, standard deviation, min, max and Student's t 95% interval of the
               mean of every metric at every evaluation; against the baseline variant, paired by
               seed, the mean difference, its paired t interval and an exact sign-flip p-value; per
               metric the variants ranked by their final mean, best first (`metrics.BETTER`)
  study.png    each metric against the step: per variant the mean and its 95% band (a seed study: and
               every replica)
  index.html   the table, the picture, and the final samples of every variant (of every replica) side by side
`study report` writes the last three for separate runs (seeds, and variants, trained as separate jobs).
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

from gantx import checkpointing, metrics as metrics_lib, paths, seeds as seeds_lib, stats, sweep
from gantx import train as train_lib, writers

# Fields of a run's config that do not change what it computes (paths, bookkeeping): runs may differ
# in them and still be replicas of one study.
_OPERATIONAL = {"compilation_cache_dir", "distributed", "peer_timeout_s", "step_timeout_s", "allow_config_change",
                "max_checkpoints_to_keep", "checkpoint_every_steps", "data.root", "data.num_workers",
                "data.check_images"}
_SEED_FIELDS = {"seed", "init_seed", "data_seed", "step_seed"}


class Replica(NamedTuple):
  """One replica of a study: its seeds, the folder with its metrics.jsonl and samples/, its variant."""
  seeds: seeds_lib.Seeds
  run_dir: epath.Path
  variant: str = ""


def run_study(config, workdir: str | os.PathLike, num_seeds: int, vary: tuple[str, ...],
              sweep_specs: tuple[str, ...] = (), baseline: str | None = None) -> None:
  """Trains `num_seeds` replicas of `config` varying the seed streams `vary`, for every variant of
  `sweep_specs` (`sweep.parse`; none: the config alone), in `workdir` (resumed if it holds this
  study), group by group; then writes the report, comparing each variant with `baseline` (a
  variant's name; default the first)."""
  if num_seeds is None or num_seeds < 2:
    raise ValueError(f"--seeds {num_seeds}: a study has at least 2 replicas.")
  if not vary:
    raise ValueError(f"--vary is empty: vary one or more of {', '.join(seeds_lib.FACTORS)}.")
  variants = sweep.parse(list(sweep_specs), config) if sweep_specs else [sweep.Variant("", ())]
  names = [v.name for v in variants]
  if baseline is not None and baseline not in names:
    raise ValueError(f"--baseline {baseline!r} is not a variant of this study: {', '.join(names)}.")
  workdir = paths.check_workdir(workdir)
  seed_sets = seeds_lib.vary(seeds_lib.from_config(config), tuple(vary), num_seeds)
  groups = sweep.groups(config, variants)
  record = {"seeds": num_seeds, "vary": list(vary), "replicas": [s._asdict() for s in seed_sets]}
  if sweep_specs:  # a seed study's record is as it always was, so that older studies resume
    record = {"seeds": num_seeds, "vary": list(vary), "sweep": list(sweep_specs),
              "variants": [{"name": v.name, "changes": dict(v.changes)} for v in variants], "groups": groups,
              "replicas": [{**s._asdict(), "variant": v} for v in range(len(variants)) for s in seed_sets]}
  existing = checkpointing.read_study(workdir)
  if existing is None and (workdir / "checkpoints").is_dir() and any((workdir / "checkpoints").iterdir()):
    raise ValueError(f"{workdir} holds a run, not a study ({checkpointing.STUDY_FILE} is missing): give the"
                     " study its own --workdir (`python -m gantx study report` makes a study's report from runs).")
  if existing is not None and existing != record:
    what = f" sweeping {' '.join(existing['sweep'])}" if existing.get("sweep") else ""
    raise ValueError(f"{workdir} holds a study of other seeds or variants ({existing['seeds']} replicas varying"
                     f" {','.join(existing['vary'])}{what}): use another --workdir, or the study's --seeds, --vary"
                     " and --sweep to continue it.")
  lead = jax.process_index() == 0
  if lead:
    workdir.mkdir(parents=True, exist_ok=True)
    (workdir / checkpointing.STUDY_FILE).write_text(json.dumps(record, indent=1) + "\n")
    if len(groups) > 1:  # the base config (each group's own is in group_<g>/): a replica's is it + its variant
      (workdir / "config.json").write_text(config.to_json_best_effort(indent=2))
  n = num_seeds
  members = [Replica(s, workdir / f"replica_{v * n + k}", variants[v].name)
             for v in range(len(variants)) for k, s in enumerate(seed_sets)]
  base = baseline or names[0]
  for g, group in enumerate(groups):
    if len(groups) > 1:
      print(f"Group {g + 1} of {len(groups)}: {'; '.join(variants[v].name for v in group)}.")
    js = [v * n + k for v in group for k in range(n)]
    group_config = sweep.apply(config, variants[group[0]].changes)  # its structure and gates
    train_lib.run(group_config, checkpointing.group_dir(workdir, record, g),
                  [train_lib.Member(members[j].seeds, sweep.numeric_values(config, variants[j // n]) if sweep_specs
                                    else ()) for j in js],
                  on_eval=lambda step: report(members, workdir, base), replica_dirs=[members[j].run_dir for j in js])
  if lead:
    report(members, workdir, base)
    print(f"Study report: {workdir / 'index.html'}, {workdir / 'study.png'}, {workdir / 'study.json'};"
          f" each replica's run in {workdir}/replica_<k>/ (python -m gantx translate ... --replica k).")


# ----------------------------------------------------------------------------- the report


def _records(run_dir: epath.Path) -> list[dict]:
  path = run_dir / "metrics.jsonl"
  if not path.is_file():
    return []  # a group not trained yet
  return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def _series(records: list[dict], metrics: bool) -> dict[str, dict[int, float]]:
  """{name: {step: value}} of the evaluation metrics (`metrics`) or of the losses."""
  out: dict[str, dict[int, float]] = {}
  for r in records:
    for k, v in r.items():
      if k in ("step", "lr", "images_per_s") or (metrics_lib.family(k) is not None) != metrics:
        continue
      out.setdefault(k, {})[int(r["step"])] = float(v)
  return out


def _by_variant(members: list[Replica]) -> dict[str, list[int]]:
  out: dict[str, list[int]] = {}
  for k, m in enumerate(members):
    out.setdefault(m.variant, []).append(k)
  return out


def _spreads(metrics: list[dict[str, dict[int, float]]]) -> dict[str, dict[str, dict]]:
  """{metric: {step: stats.summary}} over the replicas, at the steps all of them evaluated."""
  out = {}
  for name in sorted(set().union(*metrics)):
    steps = sorted(set.intersection(*(set(m.get(name, {})) for m in metrics)))
    out[name] = {str(s): stats.summary([m[name][s] for m in metrics]) for s in steps}
  return {name: per_step for name, per_step in out.items() if per_step}


def summarize(members: list[Replica], baseline: str | None = None) -> dict:
  """The contents of study.json for these replicas' logs (see the module docstring). A seed study
  (one variant) has 'summary' and 'final' over its replicas; a variant study has them per variant
  under 'variants', and 'comparisons' of every variant with the baseline at the last step all
  replicas evaluated, paired by seed index."""
  metrics = [_series(_records(m.run_dir), True) for m in members]
  replicas = [{"replica": k, "seeds": m.seeds._asdict(), **({"variant": m.variant} if m.variant else {}),
               "run": str(m.run_dir), "metrics": {n: {str(s): v for s, v in sorted(ms.items())} for n, ms in met.items()}}
              for k, (m, met) in enumerate(zip(members, metrics))]
  per_variant = {}
  for name, ks in _by_variant(members).items():
    summary = _spreads([metrics[k] for k in ks]) if all(metrics[k] for k in ks) else {}
    per_variant[name] = {"summary": summary,
                         "final": {m: per_step[max(per_step, key=int)] for m, per_step in summary.items()}}
  if len(per_variant) == 1:
    return {"replicas": replicas, **next(iter(per_variant.values()))}
  variants = _by_variant(members)
  baseline = baseline or next(iter(variants))
  comparisons = {}
  for name, ks in variants.items():
    if name == baseline:
      continue
    comparisons[name] = {}
    for metric in set(per_variant[name]["final"]) & set(per_variant[baseline]["final"]):
      ours, theirs = [metrics[k][metric] for k in ks], [metrics[k][metric] for k in variants[baseline]]
      steps = set.intersection(*(set(s) for s in ours + theirs))
      if steps:
        step = max(steps)
        comparisons[name][metric] = {"step": step, **stats.paired_comparison([s[step] for s in theirs],
                                                                              [s[step] for s in ours])}
  finals = {name: v["final"] for name, v in per_variant.items()}
  ranking = {m: sorted((name for name in finals if m in finals[name]),
                       key=lambda name: metrics_lib.rank_key(m, finals[name][m]["mean"]))
             for m in sorted(set().union(*finals.values())) if metrics_lib.family(m)}
  return {"replicas": replicas, "baseline": baseline, "variants": per_variant, "comparisons": comparisons,
          "ranking": ranking}


def _plot(members: list[Replica], path: epath.Path) -> None:
  """study.png: every held-out metric against the step: per variant its mean and 95% band (t); a
  seed study also shows every replica."""
  from matplotlib.figure import Figure  # pylint: disable=g-import-not-at-top  (only for this plot)

  series = [_series(_records(m.run_dir), True) for m in members]
  names = sorted(set().union(*series))
  if not names:
    return
  variants = _by_variant(members)
  cols = min(3, len(names))
  rows = -(-len(names) // cols)
  fig = Figure(figsize=(4.3 * cols, 2.9 * rows))
  axes = fig.subplots(rows, cols, squeeze=False)
  colours = [f"C{i % 10}" for i in range(len(variants))]
  for ax, name in zip(axes.flat, names):
    for colour, (variant, ks) in zip(colours, variants.items()):
      per_replica = [series[k].get(name, {}) for k in ks]
      if len(variants) == 1:
        for k, s in zip(ks, per_replica):
          if s:
            ax.plot(sorted(s), [s[t] for t in sorted(s)], lw=0.7, alpha=0.5, label=f"replica {k}")
      steps = sorted(set.intersection(*(set(s) for s in per_replica)))
      if steps:
        values = np.array([[s[t] for t in steps] for s in per_replica])
        low, high = zip(*(stats.mean_interval(values[:, i]) for i in range(len(steps))))
        ax.plot(steps, values.mean(0), color="black" if len(variants) == 1 else colour, lw=1.8,
                label="mean" if len(variants) == 1 else variant)
        ax.fill_between(steps, low, high, color="black" if len(variants) == 1 else colour, alpha=0.15)
    ax.set_title(name, fontsize=9)
    ax.set_xlabel("step", fontsize=8)
    ax.ticklabel_format(axis="y", useOffset=False)
  for ax in axes.flat[len(names):]:
    ax.axis("off")
  axes.flat[0].legend(fontsize=6)
  fig.tight_layout()
  buffer = io.BytesIO()
  fig.savefig(buffer, format="png", dpi=80)
  path.write_bytes(buffer.getvalue())


def _final_samples(members: list[Replica], output: epath.Path) -> tuple[list[str], list[tuple[str, list[str]]]]:
  """Copies the latest sample grids into output/samples/: of every replica of a seed study, of every
  variant's first replica (the same test images) of a variant study. (columns, rows) of the page."""
  (output / "samples").mkdir(parents=True, exist_ok=True)
  variants = _by_variant(members)
  shown = list(range(len(members))) if len(variants) == 1 else [ks[0] for ks in variants.values()]
  grids = []
  for k in shown:
    found = {}
    for png in sorted((members[k].run_dir / "samples").glob("*_*.png")):
      name, step = png.stem.rsplit("_", 1)
      found[name] = max(found.get(name, (-1, None)), (int(step), png))
    grids.append(found)
  names = sorted(set().union(*grids))
  rows = []
  for k, found in zip(shown, grids):
    cells = []
    for name in names:
      if name in found:
        _, png = found[name]
        target = output / "samples" / f"replica_{k}_{png.name}"
        if os.fspath(png) != os.fspath(target):
          target.write_bytes(png.read_bytes())
        cells.append(f"samples/{target.name}")
      else:
        cells.append("")
    label = f"replica {k} {members[k].seeds._asdict()}" if len(variants) == 1 else f"{members[k].variant} (replica {k})"
    rows.append((label, cells))
  return names, rows


def _interval(s: dict) -> str:
  return f"[{s['ci95'][0]:.4g}, {s['ci95'][1]:.4g}]"


def _tables(study: dict) -> str:
  """The report's tables: a seed study's final metrics per replica and their spread; a variant
  study's per variant mean and interval, and each variant against the baseline."""
  if "variants" not in study:
    replicas = study["replicas"]
    rows = ["<table border='1' style='border-collapse:collapse'><tr><th>metric (final)</th>"
            + "".join(f"<th>replica {r['replica']}</th>" for r in replicas)
            + "<th>mean</th><th>std</th><th>min</th><th>max</th><th>95% interval of the mean (t)</th></tr>"]
    for name, s in study["final"].items():
      step = max(study["summary"][name], key=int)
      per = [r["metrics"][name].get(step) for r in replicas]
      rows.append(f"<tr><td>{name} (step {step})</td>" + "".join(f"<td>{v:.4g}</td>" for v in per)
                  + f"<td>{s['mean']:.4g}</td><td>{s['std']:.3g}</td><td>{s['min']:.4g}</td><td>{s['max']:.4g}</td>"
                  f"<td>{_interval(s)}</td></tr>")
    return "\n".join(rows + ["</table>"])
  metrics = sorted(set().union(*(v["final"] for v in study["variants"].values())))
  rows = ["<h3>Each variant: mean [95% interval of the mean, t] at the last evaluation</h3>",
          "<table border='1' style='border-collapse:collapse'><tr><th>variant</th>"
          + "".join(f"<th>{m}</th>" for m in metrics) + "</tr>"]
  for name, v in study["variants"].items():
    cells = "".join(f"<td>{v['final'][m]['mean']:.4g} {_interval(v['final'][m])}</td>" if m in v["final"] else "<td></td>"
                    for m in metrics)
    rows.append(f"<tr><td>{name}{' (baseline)' if name == study['baseline'] else ''}</td>{cells}</tr>")
  rows += ["</table>", "<h3>Ranking by each metric's final mean, best first (lower L1, higher PSNR and SSIM,"
           " sharpness nearer 1)</h3>", "<table border='1' style='border-collapse:collapse'><tr><th>metric</th>"
           + "".join(f"<th>{k + 1}</th>" for k in range(len(study["variants"]))) + "</tr>"]
  rows += [f"<tr><td>{m}</td>{''.join(f'<td>{name}</td>' for name in order)}</tr>" for m, order in study["ranking"].items()]
  rows += ["</table>", f"<h3>Against the baseline {study['baseline']!r}, paired by seed: mean difference"
           " (variant - baseline) [95% paired t interval], sign-flip p</h3>",
           "<table border='1' style='border-collapse:collapse'><tr><th>variant</th>"
           + "".join(f"<th>{m}</th>" for m in metrics) + "</tr>"]
  notes = set()
  for name, per_metric in study["comparisons"].items():
    cells = []
    for m in metrics:
      c = per_metric.get(m)
      if c is None:
        cells.append("<td></td>")
        continue
      cells.append(f"<td>{c['diff']:+.4g} {_interval(c)} p={c['p']:.3g}{'*' if c['too_small'] else ''}</td>")
      if c["too_small"]:
        notes.add(c["verdict"].split(":")[0] + f": with N = {c['n']} no sign-flip p-value can be below"
                  f" {c['min_p']:.3g}.")
    rows.append(f"<tr><td>{name}</td>{''.join(cells)}</tr>")
  rows.append("</table>")
  rows += [f"<p>* {note}</p>" for note in sorted(notes)]
  return "\n".join(rows)


def report(members: list[Replica], output: str | os.PathLike, baseline: str | None = None) -> dict:
  """Writes study.json, study.png and index.html for `members` into `output`; returns study.json."""
  output = paths.path(output)
  output.mkdir(parents=True, exist_ok=True)
  study = summarize(members, baseline)
  (output / "study.json").write_text(json.dumps(study, indent=1) + "\n")
  _plot(members, output / "study.png")
  columns, rows = _final_samples(members, output)
  extra = _tables(study) + "\n<p><img src='study.png' style='max-width:100%'></p>"
  variants = len(_by_variant(members))
  title = (f"Seed study: {len(members)} replicas" if variants == 1
           else f"Study of {variants} variants x {len(members) // variants} seeds")
  writers.html_table(output / "index.html", title, columns, rows, head_html=extra)
  return study


# ----------------------------------------------------------------------------- separate runs


def _comparable(config: dict) -> dict:
  flat = {}
  for k, v in config.items():
    for kk, vv in (v.items() if isinstance(v, dict) else [(None, v)]):
      name = k if kk is None else f"{k}.{kk}"
      if name not in _OPERATIONAL and name not in _SEED_FIELDS:
        flat[name] = vv
  return flat


def report_from_runs(run_dirs: list[str], output: str | os.PathLike, baseline: str | None = None) -> dict:
  """The study report of separate ordinary runs (seeds, and variants, trained as separate jobs).

  Runs whose configs differ only in their seeds are replicas of one config (a seed study). Runs
  that differ in fields a sweep may vary (`sweep.NUMERIC`, `sweep.STRUCTURAL`) are variants,
  named by those fields, and compared as a sweep's (paired by their seeds). ValueError naming the
  field where two runs differ in anything else."""
  runs = []
  for d in map(paths.path, run_dirs):
    if checkpointing.read_study(d) is not None:
      raise ValueError(f"{d} is a study's work directory: its report is {d / 'index.html'} (study report takes runs).")
    if not (d / "config.json").is_file():
      raise FileNotFoundError(f"{d / 'config.json'} not found: {d} is not a gantx run.")
    runs.append((d, json.loads((d / "config.json").read_text())))
  if len(runs) < 2:
    raise ValueError("study report needs at least 2 runs.")
  flats = [_comparable(c) for _, c in runs]
  fields = sorted(set().union(*flats))
  differing = [f for f in fields if len({json.dumps(flat.get(f)) for flat in flats}) > 1]
  for f in differing:
    if f not in sweep.NUMERIC + sweep.STRUCTURAL:
      first = next(i for i, flat in enumerate(flats) if flat.get(f) != flats[0].get(f))
      raise ValueError(f"{runs[first][0]} and {runs[0][0]} are not replicas or variants of one config: {f} is"
                       f" {flats[first].get(f)!r} there and {flats[0].get(f)!r} in {runs[0][0]} (runs may differ in"
                       f" their seeds and in the fields a sweep varies: {', '.join(sweep.NUMERIC + sweep.STRUCTURAL)}).")
  if missing := [d for d, _ in runs if not (d / "metrics.jsonl").is_file()]:
    raise FileNotFoundError(f"{missing[0] / 'metrics.jsonl'} not found: {missing[0]} has logged nothing yet.")
  members = []
  for (d, config), flat in zip(runs, flats):
    variant = ", ".join(f"{f}={flat.get(f)}" for f in differing)
    members.append(Replica(seeds_lib.from_config(ml_collections.ConfigDict(config)), d, variant))
  by_variant = _by_variant(members)
  if len(by_variant) > 1:  # pair by seeds: each variant's replicas in the order of the seed sets they share
    shared = set.intersection(*({members[k].seeds for k in ks} for ks in by_variant.values()))
    if len(shared) < 2:
      raise ValueError(f"Variants {', '.join(by_variant)} share fewer than 2 seed sets: nothing to pair.")
    order = sorted(shared)
    members = [next(members[k] for k in ks if members[k].seeds == s) for ks in by_variant.values() for s in order]
  study = report(members, output, baseline)
  print(f"Study report of {len(members)} runs: {paths.path(output) / 'index.html'}")
  return study


# ----------------------------------------------------------------------------- one replica as a run


def extract(workdir: str | os.PathLike, replica: int, output: str | os.PathLike) -> epath.Path:
  """Writes replica `replica` of the study in `workdir` as an ordinary run directory `output` (its
  config with the replica's seeds and variant, its logs and samples, the latest checkpoint's state,
  data position and log window): train.py continues it as if the replica had trained alone."""
  from gantx import data  # pylint: disable=g-import-not-at-top

  workdir, output = paths.path(workdir), paths.check_workdir(output)
  study = checkpointing.read_study(workdir)
  if study is None:
    raise ValueError(f"{workdir} is not a study's work directory ({checkpointing.STUDY_FILE} is missing).")
  config, step, state = checkpointing.load_run(workdir, replica=replica)  # the replica's config and state
  if output.exists() and any(output.iterdir()):
    raise FileExistsError(f"{output} is not empty: extract into a new directory.")
  where = checkpointing.study_member(study, replica)
  group = checkpointing.group_dir(workdir, study, where.group)
  source = checkpointing.Checkpointer(group / "checkpoints", config.max_checkpoints_to_keep, where.streams)
  try:
    iterator = data.make_train_iterator(config)
    log = source.restore_extra(step, "data" if where.streams == 1 else f"data_{where.stream}", iterator)
  finally:
    source.close()
  if log is not None:
    log = {"window": [log["window"][where.index]]}
  paths.copy_tree(workdir / f"replica_{replica}", output)
  (output / "params.json").write_bytes((group / "params.json").read_bytes())
  (output / "config.json").write_text(config.to_json_best_effort(indent=2))
  target = checkpointing.Checkpointer(output / "checkpoints", config.max_checkpoints_to_keep)
  try:
    target.save(step, state, [iterator], config, log=log)
  finally:
    target.close()
  overrides = " ".join(f"--config.{f}_seed={v}" for f, v in zip(seeds_lib.FACTORS, seeds_lib.from_config(config)))
  changes = " ".join(f"--config.{f}={v}" for f, v in where.changes.items())
  print(f"Replica {replica} of {workdir} at step {step} is the run {output}; continue it with\n"
        f"  python train.py --config <the study's config> --workdir {output} {overrides}"
        + (f" {changes}" if changes else ""))
  return output
