"""Crash safety: progress checkpoints resume bit for bit, claims keep workers apart, and a sweep
killed with SIGKILL at random points ends with exactly the results of an uninterrupted one."""

import json
import os
import random
import signal
import subprocess
import sys
import time

import jax
import numpy as np
import pytest

from harness import engine, runner, runs, sweeps
from harness.results import ResultsStore
from tests.test_packing import _assert_same_curves as assert_same_curves
from tests.test_sweeps import tiny_config

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


class Crash(Exception):
  pass


def same(a, b) -> bool:
  """Exact equality of curves, NaN (the train loss at step 0) equal to NaN."""
  return json.dumps(a) == json.dumps(b)


def _scratch_spec(data_dir, steps=40):
  config = tiny_config(data_dir)
  config.train.steps = steps
  config.train.eval_every = 8
  return next(s for s in sweeps.expand(config) if s.condition == 'scratch')


def test_run_killed_after_a_checkpoint_resumes_with_the_uninterrupted_curve(data_dir, tmp_path):
  spec = _scratch_spec(data_dir)
  clean = ResultsStore(tmp_path / 'clean')
  expected = runs.train_and_evaluate(spec, clean, data_dir)

  store = ResultsStore(tmp_path / 'crashed')
  def crash_at_step_24(point):
    if point['step'] == 24:
      raise Crash()
  with pytest.raises(Crash):
    runs.train_and_evaluate(spec, store, data_dir, on_eval=crash_at_step_24, checkpoint_every=10)
  assert store.status(spec.run_id) is None  # no record: the run does not look complete
  assert sorted(p.name for p in store.progress_dir(spec.run_id).iterdir()) == ['20']

  record = runs.train_and_evaluate(spec, store, data_dir, checkpoint_every=10)
  assert record['resumed_from_step'] == 20
  assert same(record['curve'], expected['curve'])  # bit for bit: floats compared exactly
  assert not store.progress_dir(spec.run_id).exists()  # cleaned up once the record is written
  got, _ = runs.load_checkpoint(store.checkpoint_dir(spec.run_id))
  want, _ = runs.load_checkpoint(clean.checkpoint_dir(spec.run_id))
  jax.tree.map(np.testing.assert_array_equal, got, want)


def test_claim_is_exclusive_and_released_when_its_holder_is_killed(tmp_path):
  store = ResultsStore(tmp_path)
  holder = subprocess.Popen(
      [sys.executable, '-c',
       'import sys, time; from harness.results import ResultsStore\n'
       f'with ResultsStore({str(tmp_path)!r}).claim("r1") as mine:\n'
       '  print(mine, flush=True); time.sleep(60)'],
      cwd=ROOT, stdout=subprocess.PIPE, text=True)
  try:
    assert holder.stdout.readline().strip() == 'True'
    with store.claim('r1') as mine:
      assert not mine
    assert store.is_claimed('r1')
    assert json.loads((store.run_dir('r1') / 'claim').read_text())['pid'] == holder.pid
  finally:
    holder.send_signal(signal.SIGKILL)
    holder.wait()
  assert not store.is_claimed('r1')  # the kernel released the dead holder's lock
  with store.claim('r1') as mine:
    assert mine


@pytest.mark.parametrize('checkpoint_every', [4, 0], ids=['per-run path', 'packed path'])
def test_worker_killed_between_record_and_end_line_is_logged_as_finished_once(
    checkpoint_every, data_dir, tmp_path, monkeypatch):
  """The one moment where a kill leaves a finished run whose log ends in ``start``: the next
  sweep does not rerun it and logs its end (with the writer's identity) exactly once."""
  config = tiny_config(data_dir, checkpoint_every=checkpoint_every)
  log_attempt = ResultsStore.log_attempt
  def die_before_the_first_end(self, run_id, event, **fields):
    if event == 'end':
      raise Crash()
    log_attempt(self, run_id, event, **fields)
  monkeypatch.setattr(ResultsStore, 'log_attempt', die_before_the_first_end)
  with pytest.raises(Crash):
    runner.run_sweep(config, tmp_path, progress=False)
  monkeypatch.setattr(ResultsStore, 'log_attempt', log_attempt)
  store = ResultsStore(tmp_path)
  dead = [p.name for p in store.runs_dir.iterdir() if store.status(p.name) == 'complete']
  assert dead and all([a['event'] for a in store.attempts(run_id)] == ['start'] for run_id in dead)
  holder = subprocess.Popen(  # while a live worker holds a run, its end is that worker's to log
      [sys.executable, '-c', 'import time; from harness.results import ResultsStore\n'
       f'with ResultsStore({str(tmp_path)!r}).claim({dead[0]!r}): print(flush=True); time.sleep(60)'],
      cwd=ROOT, stdout=subprocess.PIPE, text=True)
  try:
    holder.stdout.readline()
    assert not store.log_missing_end(dead[0])
  finally:
    holder.send_signal(signal.SIGKILL)
    holder.wait()
  report = runner.run_sweep(config, tmp_path, progress=False)
  assert report.failed == [] and report.skipped == len(dead)  # not trained again
  for run_id in dead:
    start, end = store.attempts(run_id)
    record = store.read_record(run_id)
    assert end['event'] == 'end' and end['status'] == 'complete'
    assert end['pid'] == start['pid'] == record['executor']['pid']  # the writer's end, logged late
    assert end['time'] == record['finished_at'] and end['logged_late_by']['pid'] == os.getpid()
    assert not store.log_missing_end(run_id)  # once
  _check_same_results_once_each(tmp_path, {r['run_id']: r['curve'] for r in store.records()})


def test_attempts_log_skips_a_torn_line_and_appends_after_it(tmp_path):
  store = ResultsStore(tmp_path)
  store.log_attempt('r1', 'start')
  with open(store.run_dir('r1') / 'attempts.jsonl', 'a') as f:
    f.write('{"event": "en')  # killed mid-write
  store.log_attempt('r1', 'end', status='complete')
  assert [a['event'] for a in store.attempts('r1')] == ['start', 'end']


# A sweep whose runs are long enough (100 steps) for kills to land inside runs, and short enough
# for the test suite.
OVERRIDES = ['--config.train.steps=100', '--config.train.eval_every=25']


# A sweep long enough that a worker process started with it (~1.6 s to import and load) gets a
# share before this process alone has trained every run (~1.1 s for the 24 runs of 100 steps;
# 96 runs of 1000 steps: the worker trained 23).
LONGER = ('--config.seeds=8', '--config.train.steps=1000', '--config.train.eval_every=250')


def _sweep_command(data_dir, results, checkpoint_every=0, changes=()):
  """The sweep as a subprocess; runs with steps > checkpoint_every > 0 take the per-run path
  (progress checkpoints), the others the engine's strategies (harness.engine)."""
  sweep = os.path.join(ROOT, 'tests', 'tiny_sweep.py')
  return [sys.executable, '-m', 'transferbench.cli', 'run', sweep, '--arg', data_dir, '--results',
          str(results), '--no-progress', *OVERRIDES, f'--config.checkpoint_every={checkpoint_every}',
          *changes]


def _config(data_dir, checkpoint_every, changes=()):
  return sweeps.apply_overrides(sweeps.load_sweep(os.path.join(ROOT, 'tests', 'tiny_sweep.py'), data_dir),
                                [*OVERRIDES, f'--config.checkpoint_every={checkpoint_every}', *changes])


@pytest.fixture(scope='module')
def uninterrupted(data_dir, tmp_path_factory):
  """The uninterrupted sweep's curves by run id, per checkpoint_every (which picks the path:
  packed and per-run training agree to float tolerance, each with itself bit for bit)."""
  cache = {}
  def curves(checkpoint_every, changes=()):
    if (checkpoint_every, changes) not in cache:
      results = tmp_path_factory.mktemp('uninterrupted')
      config = _config(data_dir, checkpoint_every, changes)
      assert runner.run_sweep(config, results, progress=False).failed == []
      cache[checkpoint_every, changes] = {r['run_id']: r['curve']
                                          for r in ResultsStore(results).records()}
    return cache[checkpoint_every, changes]
  return curves


def _check_same_results_once_each(results, expected, num_test=None):
  """Every expected run complete, equal to ``expected`` (bit for bit, or to the float tolerance
  of packed vs per-run training when ``num_test`` is given), and finished exactly once."""
  store = ResultsStore(results)
  records = {r['run_id']: r for r in store.records()}
  assert set(records) == set(expected)  # none lost, none extra
  if num_test:
    assert_same_curves({k: r['curve'] for k, r in records.items()}, expected, num_test)
  for run_id, record in records.items():
    assert record['status'] == 'complete'
    assert num_test or same(record['curve'], expected[run_id]), run_id
    ends = [a for a in store.attempts(run_id) if a['event'] == 'end']
    assert len(ends) == 1, f'run {run_id} finished {len(ends)} times'  # never run twice
  return records


@pytest.mark.parametrize('checkpoint_every', [25, 0], ids=['per-run path, progress checkpoints', 'packed path'])
def test_sweep_killed_at_random_points_ends_with_the_uninterrupted_results(checkpoint_every, data_dir, tmp_path, uninterrupted):
  results = tmp_path / 'killed'
  rng = random.Random(1234 + checkpoint_every)
  kills_inside_a_run = 0
  command = _sweep_command(data_dir, results, checkpoint_every)
  for _ in range(4):
    process = subprocess.Popen(command, cwd=ROOT,
                               stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    # Wait until it has started training (its first attempt line), then a random moment more.
    store = ResultsStore(results)
    started = lambda: sum(len(store.attempts(p.name)) for p in store.runs_dir.glob('*')) if store.runs_dir.is_dir() else 0
    before = started()
    deadline = time.time() + 120
    while started() == before and process.poll() is None and time.time() < deadline:
      time.sleep(0.05)
    time.sleep(rng.uniform(0.0, 0.8))
    if process.poll() is None:
      process.send_signal(signal.SIGKILL)
      kills_inside_a_run += 1
    process.wait()
  assert kills_inside_a_run >= 2
  final = subprocess.run(command, cwd=ROOT, capture_output=True, text=True)
  assert final.returncode == 0, final.stderr[-2000:]
  records = _check_same_results_once_each(results, uninterrupted(checkpoint_every))
  # Some killed runs left no record (re-run from the start or a checkpoint); none was lost.
  attempts = {run_id: ResultsStore(results).attempts(run_id) for run_id in records}
  assert sum(len(a) for a in attempts.values()) > 2 * len(records)  # starts without an end
  assert not any(ResultsStore(results).progress_dir(r).exists() for r in records)


def test_two_workers_on_one_results_directory_never_run_a_run_twice(data_dir, tmp_path, uninterrupted):
  results = tmp_path / 'shared'
  workers = [subprocess.Popen(_sweep_command(data_dir, results), cwd=ROOT, stdout=subprocess.PIPE,
                              stderr=subprocess.PIPE, text=True) for _ in range(2)]
  outputs = [w.communicate(timeout=600) for w in workers]
  assert all(w.returncode == 0 for w in workers), [o[1][-1000:] for o in outputs]
  # A transfer whose source the other worker was still training waits for it, then takes the
  # per-run path: equal to the packed path's curves to float tolerance (tests/test_packing.py).
  num_test = min(len(engine.device_task(spec.target, data_dir)[2][1])
                 for spec in sweeps.expand(_config(data_dir, 0)))
  _check_same_results_once_each(results, uninterrupted(0), num_test)
  # Both did part of the work (the second worker skips what the first holds, and vice versa).
  pids = {a['pid'] for p in (results / 'runs').iterdir() for a in ResultsStore(results).attempts(p.name)}
  assert len(pids) == 2


def test_local_executor_with_two_worker_processes_runs_each_run_once(data_dir, tmp_path,
                                                                     uninterrupted):
  """``--config.execution.workers=2``: this process and one pinned worker share the sweep;
  transfers wait for a source the other one trains and are then packed as usual."""
  results = tmp_path / 'two'
  done = subprocess.run(_sweep_command(data_dir, results, 0, LONGER)
                        + ['--config.execution.workers=2'],
                        cwd=ROOT, capture_output=True, text=True, timeout=600)
  assert done.returncode == 0, done.stderr[-2000:]
  assert 'programs compiled over 2 worker processes' in done.stdout
  num_test = min(len(engine.device_task(spec.target, data_dir)[2][1])
                 for spec in sweeps.expand(_config(data_dir, 0)))
  records = _check_same_results_once_each(results, uninterrupted(0, LONGER), num_test)
  pids = {a['pid'] for run_id in records for a in ResultsStore(results).attempts(run_id)}
  assert len(pids) == 2
  assert {r['execution']['strategy'] for r in records.values()} == {'fused'}  # none left to per_run
  assert json.loads((results / 'execution.json').read_text())['workers'] == 2


def test_unreadable_progress_checkpoint_is_set_aside_and_the_run_starts_over(data_dir, tmp_path, capsys):
  spec = _scratch_spec(data_dir, steps=16)
  expected = runs.train_and_evaluate(spec, ResultsStore(tmp_path / 'clean'), data_dir)
  store = ResultsStore(tmp_path / 'damaged')
  step_dir = store.progress_dir(spec.run_id) / '8'
  step_dir.mkdir(parents=True)
  (step_dir / '_CHECKPOINT_METADATA').write_text('{not json')
  record = runs.train_and_evaluate(spec, store, data_dir)
  assert 'resumed_from_step' not in record and same(record['curve'], expected['curve'])
  assert 'is unreadable' in capsys.readouterr().err
  assert [p.name.startswith('progress.unreadable-') for p in store.run_dir(spec.run_id).iterdir()].count(True) == 1
