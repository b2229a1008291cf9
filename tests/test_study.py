"""Seed streams and seed studies: one source of randomness varied at a time, N replicas in one
program equal to N runs, the report."""

import hashlib
import json
import os
import pathlib
import runpy
import shlex
import shutil
import signal
import subprocess
import sys
import time

import jax
import numpy as np
import pytest
from conftest import HERE, REPO, tiny_config

from gantx import data, schedules, seeds, state as state_lib, train as train_lib


def _digest(tree) -> str:
  h = hashlib.sha256()
  for path, x in jax.tree_util.tree_flatten_with_path(tree)[0]:
    x = jax.random.key_data(x) if jax.dtypes.issubdtype(x.dtype, jax.dtypes.prng_key) else x
    h.update(jax.tree_util.keystr(path).encode())
    h.update(np.ascontiguousarray(np.asarray(x)).tobytes())
  return h.hexdigest()[:16]


def _abs_sum(tree) -> float:
  return float(sum(np.sum(np.abs(np.asarray(x)), dtype=np.float64) for x in jax.tree.leaves(tree)))


# The quickstart's run before the seed streams existed (git 4793c61, the commit before them). Pinned
# bitwise, as integer data (conftest: bitwise only for integers and keys): the run key and the first
# three batches as 8-bit images. Sums of the state after three steps are float arithmetic over whole
# networks and are compared to rounding. The initial parameters are float draws whose rounding
# depends on the CPU and the XLA settings: they are compared in this process with what the old key
# derivation gives (init_state with fold_in(key(seed), 0) and no separate run key).
# After the three steps, the sum of |G's first Adam moment| tells the runs apart: measured, another
# step seed moves it by 0.9%, another data seed by 3.6%, and rounding alone (the numbers of the step
# as state values rather than constants XLA folds) by 1.7e-4; the sums of |parameters| move by
# rounding only, as every update is at most lr.
BEFORE_STREAMS = {"init_key": "adda0f45e3d6641f", "batches_uint8": "32f2d5b9df5d7e7c",
                  "sums_after": {"D": 11529.467247006925, "G": 118113.00867016609},
                  "g_first_moment_sum_after": 10837.218276051322}


def _uint8_digest(batches) -> str:
  from gantx.data import images
  h = hashlib.sha256()
  for b in batches:
    for k in sorted(b):
      h.update(k.encode())
      h.update(np.ascontiguousarray(images.to_uint8(b[k])).tobytes())
  return h.hexdigest()[:16]


def test_a_config_without_stream_seeds_runs_as_before_the_streams(tmp_path):
  config = runpy.run_path(f"{REPO}/configs/quickstart.py")["get_config"]()
  config.num_train_steps, config.eval_every_steps, config.checkpoint_every_steps, config.log_every_steps = 3, 0, 3, 1
  assert seeds.from_config(config) == seeds.Seeds(0, 0, 0)
  nets = state_lib.build_networks(config, schedules.steps_per_epoch(data.train_size(config), config.batch_size))
  key, run_key = seeds.state_keys(seeds.from_config(config))
  init = state_lib.init_state(config, nets, key, (64, 64), run_key=run_key)
  before = state_lib.init_state(config, nets, jax.random.fold_in(jax.random.key(config.seed), 0), (64, 64))
  assert _digest(init) == _digest(before)  # same process: bitwise
  it = data.make_train_iterator(config)
  assert _digest(init.key) == BEFORE_STREAMS["init_key"]
  assert _uint8_digest([next(it) for _ in range(3)]) == BEFORE_STREAMS["batches_uint8"]
  state = train_lib.train_and_evaluate(config, tmp_path)
  assert _digest(state.key) == BEFORE_STREAMS["init_key"]
  for name, want in BEFORE_STREAMS["sums_after"].items():
    np.testing.assert_allclose(_abs_sum(state.params[name]), want, rtol=1e-5, err_msg=name)
  np.testing.assert_allclose(_abs_sum(state.opt_state["G"][0].mu), BEFORE_STREAMS["g_first_moment_sum_after"],
                             rtol=2e-3)


def test_each_stream_seed_changes_its_stream_alone():
  config = runpy.run_path(f"{REPO}/configs/quickstart.py")["get_config"]()
  base = seeds.from_config(config)
  for factor in seeds.FACTORS:
    varied = seeds.from_config(seeds.with_seeds(config, base._replace(**{factor: 7})))
    assert varied == base._replace(**{factor: 7})
  init, run = seeds.state_keys(base._replace(init=7))
  assert _digest(run) == _digest(seeds.state_keys(base)[1]) and _digest(init) != _digest(seeds.state_keys(base)[0])
  init, run = seeds.state_keys(base._replace(step=7))
  assert _digest(init) == _digest(seeds.state_keys(base)[0]) and _digest(run) != _digest(seeds.state_keys(base)[1])
  assert _digest(seeds.eval_key(base._replace(data=7))) == _digest(seeds.eval_key(base))
  assert seeds.vary(base, ("init", "step"), 3) == [seeds.Seeds(k, 0, k) for k in range(3)]
  with pytest.raises(ValueError, match="Unknown seed stream 'weights'"):
    seeds.vary(base, ("weights",), 2)


# ----------------------------------------------------------------------------- studies

VARY_ALL = ("init", "data", "step")


def _study_config(model, steps, **kw):
  c = tiny_config(model, num_train_steps=steps, log_every_steps=1, eval_every_steps=steps, checkpoint_every_steps=1,
                  **kw)
  c.max_checkpoints_to_keep = 5
  return c


def _losses(run_dir):
  rows = [json.loads(line) for line in (pathlib.Path(run_dir) / "metrics.jsonl").read_text().splitlines()]
  return {r["step"]: {k: v for k, v in r.items() if k not in ("step", "images_per_s", "lr")} for r in rows}


def _close(a, b, rtol, what):
  """Two trees equal to `rtol` relative to their L2 norm. Per element would not do: Adam divides
  each gradient by its own root mean square, so an entry whose gradient is rounding noise (a bias
  before instance norm, whose true gradient is 0) moves by +-lr either way (docs/reproducibility.md)."""
  if not jax.tree.leaves(b):
    assert not jax.tree.leaves(a), what
    return
  x = np.concatenate([np.ravel(np.asarray(v, np.float64)) for v in jax.tree.leaves(a)])
  y = np.concatenate([np.ravel(np.asarray(v, np.float64)) for v in jax.tree.leaves(b)])
  assert x.shape == y.shape, what
  assert np.linalg.norm(x - y) <= rtol * np.linalg.norm(y), (what, np.linalg.norm(x - y) / np.linalg.norm(y))


def _split_conv_biases(a, b, instance_norm: bool):
  """(a's leaves, b's leaves, [(a, b) of conv biases]) of two trees of parameters (or of Adam
  moments, same paths). Under instance norm a convolution's bias right before the norm has a true
  gradient of 0: its gradient is rounding noise, which Adam scales to steps of +-lr either way. So
  with instance norm the conv biases are bounded (by Adam's largest move), not compared; the
  kernels, and every other array, are."""
  keep_a, keep_b, biases = [], [], []
  for (path, x), y in zip(jax.tree_util.tree_flatten_with_path(a)[0], jax.tree.leaves(b)):
    names = [str(getattr(k, "key", getattr(k, "name", k))) for k in path]
    if instance_norm and names[-1] == "bias" and len(names) > 1 and "conv" in names[-2]:
      biases.append((np.asarray(x), np.asarray(y)))
    else:
      keep_a.append(np.asarray(x))
      keep_b.append(np.asarray(y))
  return keep_a, keep_b, biases


# A numeric sweep of each model: 2 values of a number of the step, each with the 2 seed sets.
SWEEPS = {"pix2pix": ("lambda_L1", (100.0, 10.0)), "cycle_gan": ("lambda_A", (10.0, 5.0))}


@pytest.mark.parametrize("model", ["pix2pix", "cycle_gan"])
def test_a_sweep_equals_its_replicas_trained_alone_and_so_does_its_report(tmp_path, model):
  """Each replica of a numeric sweep (2 values x 2 seed sets, every stream varied) against a run with
  its value and seeds: losses after each of 3 steps, parameters, batch statistics, Adam moments and
  pools after 1 and 3 steps, the held-out metrics, all to float32 rounding (a vmapped convolution
  batches its products differently); `study report` of the 4 runs gives the study's table and
  comparisons; and (pix2pix) `study extract` gives a run that continues as the replica alone."""
  from gantx import checkpointing, study as study_lib
  config = _study_config(model, 3)
  field, values = SWEEPS[model]
  study_lib.run_study(config, tmp_path / "study", 2, VARY_ALL, (f"{field}={','.join(map(str, values))}",))
  record = json.loads((tmp_path / "study" / "seeds.json").read_text())
  assert record["replicas"] == [{"init": k, "data": k, "step": k, "variant": v} for v in range(2) for k in range(2)]
  assert record["groups"] == [[0, 1]]  # values of one compiled step: one group
  solos = []
  for j, (v, k) in enumerate((v, k) for v in range(2) for k in range(2)):
    solo = seeds.with_seeds(config, seeds.Seeds(k, k, k))
    solo[field] = values[v]
    solos.append(str(tmp_path / f"solo{j}"))
    train_lib.train_and_evaluate(solo, tmp_path / f"solo{j}")
    ours, alone = _losses(tmp_path / "study" / f"replica_{j}"), _losses(tmp_path / f"solo{j}")
    assert sorted(ours) == sorted(alone) == [0, 1, 2, 3]
    for step in ours:
      assert ours[step].keys() == alone[step].keys()
      np.testing.assert_allclose([ours[step][n] for n in sorted(ours[step])], [alone[step][n] for n in sorted(ours[step])],
                                 rtol=1e-5 if step < 3 else 1e-4, err_msg=f"replica {j} step {step}")
    for step in (1, 3):
      _, _, replica = checkpointing.load_run(tmp_path / "study", step, replica=j)
      _, _, run = checkpointing.load_run(tmp_path / f"solo{j}", step)
      assert replica.keys() == run.keys()
      assert float(replica["hparams"][field]) == values[v]
      for part in ("params", "batch_stats", "opt_state", "pools"):
        for name in replica[part]:
          ours, alone, biases = _split_conv_biases(replica[part][name], run[part][name], config.norm == "instance")
          # Rounding after one step; after three it has gone through Adam's normalisation twice more.
          _close(ours, alone, 1e-5 if step == 1 else 1e-4, f"replica {j} step {step} {part}/{name}")
          for x, y in (biases if part == "params" else []):
            # Adam moves an entry by at most lr (1 - beta1) / sqrt(1 - beta2) a step, whatever its gradient.
            bound = 2 * step * config.lr * (1 - config.beta1) / np.sqrt(1 - 0.999)
            assert np.abs(x - y).max() <= bound, (name, step, np.abs(x - y).max())
      np.testing.assert_array_equal(jax.random.key_data(replica["key"]), jax.random.key_data(run["key"]))
  studied = json.loads((tmp_path / "study" / "study.json").read_text())
  names = [f"{field}={v}" for v in values]
  assert [r["variant"] for r in studied["replicas"]] == [names[0]] * 2 + [names[1]] * 2
  assert studied["baseline"] == names[0] and list(studied["comparisons"]) == [names[1]]
  from gantx import metrics
  assert studied["ranking"] and set(studied["ranking"]) == set(studied["variants"][names[0]]["final"])
  for name, order in studied["ranking"].items():  # best first: lower L1, higher PSNR, sharpness nearer 1
    means = [studied["variants"][v]["final"][name]["mean"] for v in order]
    assert sorted(order) == sorted(names) and means == sorted(means, key=lambda x: metrics.rank_key(name, x)), name
  assert metrics.rank_key("L1_G", 0.1) < metrics.rank_key("L1_G", 0.2)
  assert metrics.rank_key("PSNR_G", 21.0) < metrics.rank_key("PSNR_G", 20.0)
  assert metrics.rank_key("sharpness_G", 1.1) < metrics.rank_key("sharpness_G", 0.7)
  reported = study_lib.report_from_runs(solos, tmp_path / "report")
  rename = lambda name: name.replace(f"{field}={values[0]}", names[0]).replace(f"{field}={values[1]}", names[1])
  assert {rename(v) for v in reported["variants"]} == set(names)
  for variant, stats in studied["variants"].items():
    other = next(s for v, s in reported["variants"].items() if rename(v) == variant)
    assert other["final"].keys() == stats["final"].keys() and stats["final"]
    for name, s in stats["final"].items():
      for stat in ("mean", "std", "min", "max"):
        np.testing.assert_allclose(other["final"][name][stat], s[stat], rtol=1e-3, atol=1e-5, err_msg=f"{name} {stat}")
  (ours,), (theirs,) = studied["comparisons"].values(), reported["comparisons"].values()
  for name, c in ours.items():
    np.testing.assert_allclose(theirs[name]["diff"], c["diff"], rtol=1e-2, atol=1e-5, err_msg=name)
    assert theirs[name]["p"] == c["p"] and c["too_small"]  # N = 2: the report says so
  if model == "pix2pix":
    _check_extract_continues_as_the_replica_alone(tmp_path, config, tmp_path / "study", tmp_path / "solo1", 1, 3)
  for page in ("study.png", "index.html", "study.json"):
    assert (tmp_path / "report" / page).stat().st_size > 500 and (tmp_path / "study" / page).stat().st_size > 500
  page = (tmp_path / "study" / "index.html").read_text()
  assert all(f"samples/replica_{j}_G" in page for j in (0, 2)) and "paired t interval" in page
  assert "N too small for a claim" in page


def test_a_study_with_one_sweep_value_is_the_seed_study_bitwise(tmp_path):
  """`--sweep lr=<the config's lr>` trains what the seed study without --sweep trains, bit for bit."""
  from gantx import checkpointing, study as study_lib
  config = _study_config("pix2pix", 2)
  study_lib.run_study(config, tmp_path / "plain", 2, ("init",))
  study_lib.run_study(config, tmp_path / "swept", 2, ("init",), (f"lr={config.lr}",))
  for x, y in zip(*(_arrays(checkpointing.Checkpointer(tmp_path / d / "checkpoints", 1).restore_arrays(2))
                    for d in ("plain", "swept"))):
    np.testing.assert_array_equal(x, y)
  for k in range(2):
    assert _losses(tmp_path / "plain" / f"replica_{k}") == _losses(tmp_path / "swept" / f"replica_{k}")


def test_the_reports_interval_is_students_t_and_says_so():
  """The study's interval of a mean is Student's t (gantx/stats.py: its coverage at N = 3..10), not the
  percentile bootstrap it was, which at N = 3 is [min, max]."""
  from gantx import stats, study as study_lib
  values = [1.0, 2.0, 4.0]
  s = stats.summary(values)
  assert s["ci95"][0] < min(values) and s["ci95"][1] > max(values)  # wider than [min, max] at N = 3
  np.testing.assert_allclose(s["ci95"], stats.mean_interval(values))
  table = study_lib._tables({"replicas": [{"replica": k, "metrics": {"L1_G": {"5": v}}} for k, v in enumerate(values)],
                             "summary": {"L1_G": {"5": s}}, "final": {"L1_G": s}})
  assert "95% interval of the mean (t)" in table and f"[{s['ci95'][0]:.4g}, {s['ci95'][1]:.4g}]" in table


def test_report_refuses_runs_of_different_configs(tmp_path):
  """Runs may differ in their seeds and in what a sweep varies; in anything else they are not one study."""
  from gantx import study as study_lib
  for name, load_size in (("a", 36), ("b", 40)):
    (tmp_path / name).mkdir()
    (tmp_path / name / "config.json").write_text(tiny_config("pix2pix", load_size=load_size, lr=1e-4 * len(name),
                                                             seed=len(name)).to_json())
  with pytest.raises(ValueError, match=r"not replicas or variants of one config: load_size is 40 there and 36"):
    study_lib.report_from_runs([str(tmp_path / "a"), str(tmp_path / "b")], tmp_path / "out")


@pytest.mark.parametrize("factor", VARY_ALL)
def test_each_varied_stream_changes_its_randomness_alone(factor):
  """--vary data: the same initial networks, other batches; --vary init: other networks, the same
  batches; --vary step: the same networks and batches, another run key (dropout masks, pool draws)
  and evaluation key."""
  from gantx import data as data_lib
  config = tiny_config("cycle_gan")
  sets = seeds.vary(seeds.from_config(config), (factor,), 2)
  nets = state_lib.build_networks(config, 10)
  states = [state_lib.init_state(config, nets, *seeds.state_keys(s)[:1], (32, 32), run_key=seeds.state_keys(s)[1])
            for s in sets]
  batches = [next(data_lib.make_train_iterator(seeds.with_seeds(config, s))) for s in sets]
  same = lambda a, b: _digest(a) == _digest(b)
  assert same(states[0].params, states[1].params) == (factor != "init")
  assert same(batches[0], batches[1]) == (factor != "data")
  assert same(states[0].key, states[1].key) == (factor != "step")
  assert same(seeds.eval_key(sets[0]), seeds.eval_key(sets[1])) == (factor != "step")


def _study_cli(tmp_path, *args, steps=4, model="pix2pix"):
  config_file = tmp_path / "tiny_study.py"
  config_file.write_text(f"import sys\nsys.path.insert(0, {str(HERE)!r})\nfrom conftest import tiny_config\n\n"
                         f"def get_config():\n  return tiny_config({model!r}, num_train_steps={steps}, eval_every_steps=0,"
                         " checkpoint_every_steps=1, log_every_steps=1)\n")
  return [sys.executable, "-m", "gantx", "study", f"--config={config_file}", *args]


def test_a_sweep_killed_mid_group_and_restarted_ends_bitwise_as_an_unbroken_one(tmp_path):
  """A sweep of two groups (two discriminators: two compiled steps) x 2 seeds, 3 steps each: SIGKILL
  (no handler runs) once the second group's checkpoint 2 exists, and a restart: every group's
  stacked state and every replica's log equal the unbroken study's, bit for bit."""
  from gantx import checkpointing
  args = ("--seeds=2", "--vary=init,data,step", "--sweep=netD=basic,pixel")
  subprocess.run(_study_cli(tmp_path, f"--workdir={tmp_path / 'straight'}", *args, steps=3), cwd=REPO, check=True,
                 capture_output=True, timeout=600)
  killed = _study_cli(tmp_path, f"--workdir={tmp_path / 'killed'}", *args, steps=3)
  proc = subprocess.Popen(killed, cwd=REPO, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
  deadline, mid = time.time() + 300, tmp_path / "killed" / "group_1" / "checkpoints" / "2"
  while proc.poll() is None and time.time() < deadline and not mid.is_dir():
    time.sleep(0.01)
  proc.kill()
  assert proc.wait() == -signal.SIGKILL, "the study ended before it was killed"
  assert not (tmp_path / "killed" / "group_1" / "checkpoints" / "3").exists()
  subprocess.run(killed, cwd=REPO, check=True, capture_output=True, timeout=600)
  for group in ("group_0", "group_1"):
    want = _arrays(checkpointing.Checkpointer(tmp_path / "straight" / group / "checkpoints", 1, 2).restore_arrays(3))
    got = _arrays(checkpointing.Checkpointer(tmp_path / "killed" / group / "checkpoints", 1, 2).restore_arrays(3))
    for x, y in zip(got, want):
      np.testing.assert_array_equal(x, y)
  for j in range(4):
    assert _losses(tmp_path / "killed" / f"replica_{j}") == _losses(tmp_path / "straight" / f"replica_{j}")


def test_bad_study_input_is_one_line(tmp_path):
  """Each mistake a user can make with a study is one line on stderr and a failing exit status (the
  commands run as typed, tests/commands.py)."""
  from commands import run

  def one_line(argv, expected):
    result = run(shlex.join(["python", *argv[1:]]), REPO)
    assert result.returncode != 0 and len(result.stderr.strip().splitlines()) == 1, result.stderr
    assert expected in result.stderr, result.stderr
  workdir = f"--workdir={tmp_path / 's'}"
  one_line(_study_cli(tmp_path, workdir, "--seeds=1"), "--seeds 1: a study has at least 2 replicas")
  one_line(_study_cli(tmp_path, workdir, "--seeds=2", "--vary=init,weights"),
           "Unknown seed stream 'weights': vary one or more of init, data, step")
  for sweep, expected in (("lamda_L1=1,2", "'lamda_L1' cannot be swept. Did you mean 'lambda_L1'?"),
                          ("lr=fast", "--sweep lr=fast: 'fast' is not a number (config.lr is 0.0002)"),
                          ("lr=", "--sweep lr=: give FIELD=v1,v2,... (at least one value) or preset=NAME"),
                          ("preset=cyclegan_losses", "a cycle_gan preset; the config's model is 'pix2pix'"),
                          ("preset=pix2pix_loss", "no such preset. Did you mean 'pix2pix_losses'?")):
    one_line(_study_cli(tmp_path, workdir, "--seeds=2", f"--sweep={sweep}"), expected)
  assert not (tmp_path / "s").exists()  # nothing was written
  run_dir = tmp_path / "run"
  train_lib.train_and_evaluate(tiny_config("pix2pix", num_train_steps=1, eval_every_steps=0), run_dir)
  one_line(_study_cli(tmp_path, f"--workdir={run_dir}", "--seeds=2"), f"{run_dir} holds a run, not a study")
  one_line([sys.executable, "-m", "gantx", "evaluate", f"--workdir={run_dir}", "--replica=0"],
           "--replica 0: " + str(run_dir) + " is a run, not a seed study")
  study = tmp_path / "study"
  assert run(shlex.join(["python", *_study_cli(tmp_path, f"--workdir={study}", "--seeds=2", "--vary=step", steps=1)[1:]]),
             REPO).returncode == 0
  one_line([sys.executable, "train.py", f"--config={tmp_path / 'tiny_study.py'}", f"--workdir={study}"],
           f"{study} is a seed study's work directory")
  one_line([sys.executable, "-m", "gantx", "export_pth", f"--workdir={study}", "--replica=2", f"--output={tmp_path}"],
           "--replica 2 is out of range: the study in")
  one_line(_study_cli(tmp_path, f"--workdir={study}", "--seeds=3", "--vary=step", steps=1),
           "holds a study of other seeds or variants")


def _check_extract_continues_as_the_replica_alone(tmp_path, config, study_dir, solo_dir, replica: int, step: int):
  """`study extract`: the run it writes holds the replica's state bit for bit, and train.py continues
  it exactly as it continues the replica's own run (`solo_dir`: same seeds, so same data position and
  key) whose state at that step is set to the replica's."""
  from gantx import checkpointing, study as study_lib
  study_lib.extract(study_dir, replica, tmp_path / "extracted")
  _, _, state = checkpointing.load_run(study_dir, step, replica=replica)
  _, saved_step, extracted = checkpointing.load_run(tmp_path / "extracted")
  assert saved_step == step
  for x, y in zip(_arrays(extracted), _arrays(state)):
    np.testing.assert_array_equal(x, y)
  solo = seeds.with_seeds(config, seeds.Seeds(replica, replica, replica))
  alone = tmp_path / "alone"
  shutil.copytree(solo_dir, alone)
  ckpt = checkpointing.Checkpointer(alone / "checkpoints", 5)
  it = data.make_train_iterator(solo)
  ckpt.restore_extra(step, "data", it)
  ckpt.close()
  for p in (alone / "checkpoints").iterdir():
    shutil.rmtree(p)
  ckpt = checkpointing.Checkpointer(alone / "checkpoints", 5)
  ckpt.save(step, state, [it], solo)  # the replica's state, from the study
  ckpt.close()
  solo.num_train_steps = step + 1
  continued = train_lib.train_and_evaluate(solo, tmp_path / "extracted")
  for x, y in zip(_arrays(continued), _arrays(train_lib.train_and_evaluate(solo, alone))):
    np.testing.assert_array_equal(x, y)


def _arrays(state):
  return [np.asarray(jax.random.key_data(x) if jax.dtypes.issubdtype(x.dtype, jax.dtypes.prng_key) else x)
          for x in jax.tree.leaves(state)]


def test_eight_devices_equal_one_device_for_variants_x_seeds_and_for_four_replicas(tmp_path):
  """8 simulated devices holding a replica each: 2 variants (learning rates, values of one step) x 4
  seeds (mesh seeds 8 x data 1); and 4 replicas that are 2-way data parallel each (seeds 4 x data 2):
  both equal one device to float32 rounding. Replica k's seeds do not depend on N, so the 4-replica
  study is the first variant's half of the 8-replica one."""
  from multidevice import SWEEP_LRS, flat
  env = {**os.environ, "XLA_FLAGS": "--xla_force_host_platform_device_count=8"}
  subprocess.run([sys.executable, "tests/multidevice.py", "study", "pix2pix", "2", str(tmp_path / "d8"),
                  str(tmp_path / "d8.npz"), "2x4,4", "2"], cwd=REPO, env=env, check=True, capture_output=True, timeout=600)
  both = np.load(tmp_path / "d8.npz")
  eight, four = ({k[len(p):]: both[k] for k in both.files if k.startswith(p)} for p in ("2x4/", "4/"))
  from gantx import checkpointing, study as study_lib
  config = tiny_config("pix2pix", batch_size=2, num_train_steps=2, eval_every_steps=0, checkpoint_every_steps=2)
  study_lib.run_study(config, tmp_path / "one_device", 4, ("init", "data", "step"),  # this process: one device
                      (f"lr={','.join(SWEEP_LRS[:2])}",))
  one = {**flat(checkpointing.Checkpointer(tmp_path / "one_device" / "checkpoints", 1).restore_arrays(2), "state"),
         "devices": np.array(jax.device_count())}
  assert int(eight["devices"]) == 8 and int(one["devices"]) == 1
  params = [k for k in one if k.startswith("state['params']")]
  assert params and all(four[k].shape[0] == 4 and one[k].shape[0] == 8 for k in params)
  np.testing.assert_array_equal(one["state['hparams']['lr']"], np.float32([2e-4] * 4 + [1e-3] * 4))
  for other, n in ((eight, 8), (four, 4)):
    for net in ("G", "D"):  # each network's parameters, relative to their L2 norm
      keys = [k for k in params if k.startswith(f"state['params']['{net}']")]
      x = np.concatenate([other[k].reshape(n, -1) for k in keys], axis=1).astype(np.float64)
      y = np.concatenate([one[k][:n].reshape(n, -1) for k in keys], axis=1).astype(np.float64)
      assert np.linalg.norm(x - y) <= 1e-5 * np.linalg.norm(y), (net, n, np.linalg.norm(x - y) / np.linalg.norm(y))
    for k in one:
      if not k.startswith("state") or k in params:
        continue
      if one[k].dtype.kind == "f":  # batch statistics, Adam moments: small sums of cancelling terms
        x, y = other[k].astype(np.float64), one[k][:n].astype(np.float64)
        assert np.linalg.norm(x - y) <= 1e-4 * max(np.linalg.norm(y), 1e-6), (k, n)
      else:  # steps, counters, keys
        np.testing.assert_array_equal(other[k], one[k][:n])
