"""``--executor slurm`` against a real single-node SLURM cluster (scripts/slurm-cluster), no mocks.

The cluster is started once for this module and stopped at its end; the tests skip, saying why,
where it cannot be started (not root, SLURM not installed: `scripts/slurm-cluster install`).
"""

from __future__ import annotations

import json
import os
import pathlib
import shutil
import subprocess
import sys
import time

import pytest

from harness import distributed, executors, specs, sweeps
from transferbench.cli import main
from harness.errors import UserError
from harness.results import ResultsStore

SCRIPT = pathlib.Path(__file__).resolve().parent.parent / 'scripts' / 'slurm-cluster'
# The quickstart sweep shrunk: get_config('tiny') with one seed, 12 runs (baseA, baseB, then for
# n = 1, 2: BnB, BnB+, AnB, AnB+, random-frozen). Few array tasks: each pays a Python+JAX start.
SWEEP = ['quickstart', '--arg', 'tiny', '--config.seeds=1']
SLURM = ['--executor', 'slurm', '--runs-per-task', '8', '--time', '20', '--no-progress']


def _why_no_slurm() -> str | None:
  if os.geteuid() != 0:
    return 'the test cluster runs as root (SlurmUser=root): run the tests as root'
  missing = [t for t in ('munged', 'slurmctld', 'slurmd', 'sbatch', 'squeue')
             if shutil.which(t) is None and not os.access(f'/usr/sbin/{t}', os.X_OK)]
  if missing:
    return f'SLURM is not installed (no {", ".join(missing)}): run `scripts/slurm-cluster install` as root'
  try:
    import submitit  # noqa: F401
  except ImportError:
    return 'submitit is not installed'
  return None


@pytest.fixture(scope='module')
def slurm_cluster(tmp_path_factory):
  """A running single-node SLURM cluster; ``SLURM_CONF`` points at it while the module runs."""
  reason = _why_no_slurm()
  if reason:
    pytest.skip(f'no SLURM cluster: {reason}')
  directory = tmp_path_factory.mktemp('slurm-cluster')
  start = subprocess.run([str(SCRIPT), 'start', str(directory)], capture_output=True, text=True,
                         timeout=120)
  try:
    if start.returncode != 0:
      pytest.skip(f'no SLURM cluster: `scripts/slurm-cluster start` failed: {start.stderr.strip()[-500:]}')
    with pytest.MonkeyPatch.context() as patch:
      patch.setenv('SLURM_CONF', str(directory / 'slurm.conf'))
      yield directory
  finally:
    subprocess.run([str(SCRIPT), 'stop', str(directory)], capture_output=True, timeout=120)


def _records(results: pathlib.Path) -> dict[str, dict]:
  return {r['run_id']: r for r in ResultsStore(results).records()}


def _expected_specs(data_dir: str) -> list[specs.RunSpec]:
  config = sweeps.apply_overrides(sweeps.load_sweep('quickstart', 'tiny'), ['--config.seeds=1'])
  config.data_dir = data_dir
  return sweeps.expand(config)


@pytest.fixture(scope='module')
def local_results(data_dir, tmp_path_factory):
  results = tmp_path_factory.mktemp('local')
  assert main(['run', *SWEEP, '--results', str(results), '--data-dir', data_dir, '--no-progress']) == 0
  return results


@pytest.fixture(scope='module')
def slurm_results(slurm_cluster, data_dir, local_results, tmp_path_factory):
  results = tmp_path_factory.mktemp('slurm')
  start = time.time()
  code = main(['run', *SWEEP, '--results', str(results), '--data-dir', data_dir, *SLURM, '--wait'])
  assert code == 0, _logs(results)
  print(f'slurm sweep: {time.time() - start:.1f} s')
  return results


def _logs(results: pathlib.Path) -> str:
  """The jobs' stderr, to explain a failure."""
  return '\n'.join(f'--- {p}\n{p.read_text()[-2000:]}' for p in sorted((results / 'slurm').glob('*.err')))


def test_sweep_on_slurm_runs_each_run_once_sources_first_same_results(slurm_results, local_results, data_dir):
  specs = _expected_specs(data_dir)
  records = _records(slurm_results)
  assert sorted(records) == sorted(s.run_id for s in specs)
  assert all(r['status'] == 'complete' for r in records.values())
  # Exactly once: one attempt per run, one submission of two arrays (sources, then transfers).
  log = [json.loads(line) for line in (slurm_results / 'slurm' / 'submissions.jsonl').read_text().splitlines()]
  assert len(log) == 1 and [a['phase'] for a in log[0]['arrays']] == [0, 1]
  submitted = [r for a in log[0]['arrays'] for task in a['run_ids'] for r in task]
  assert sorted(submitted) == sorted(records)
  phase_of = {r: a['job_id'] for a in log[0]['arrays'] for task in a['run_ids'] for r in task}
  store = ResultsStore(slurm_results)
  for run_id in records:  # one attempt each, started and ended
    assert [a['event'] for a in store.attempts(run_id)] == ['start', 'end'], run_id
  job = lambda r: r['executor'].get('slurm_array_job_id', r['executor'].get('slurm_job_id'))
  for spec in specs:
    record = records[spec.run_id]
    assert job(record) == phase_of[spec.run_id]
    assert record['started_at'] <= record['finished_at']
    if spec.source_run:  # a transfer started only after its source had finished
      source = records[spec.source_run]
      assert record['started_at'] >= source['finished_at'], spec.describe()
      assert job(record) != job(source)
  # The same numbers as in-process (CPU runs are deterministic).
  local = _records(local_results)
  assert sorted(local) == sorted(records)
  for run_id, record in records.items():
    assert record['curve'] == local[run_id]['curve'], record['labels']
    assert 'slurm_job_id' not in local[run_id]['executor']


def test_resubmitting_reruns_only_missing_and_failed_runs(slurm_results, data_dir, tmp_path, capsys):
  results = tmp_path / 'results'
  shutil.copytree(slurm_results, results)
  shutil.rmtree(results / 'slurm')
  specs = _expected_specs(data_dir)
  store = ResultsStore(results)
  base = next(s for s in specs if s.condition == 'scratch' and s.target.name.endswith('A0'))
  transfer = next(s for s in specs if s.condition == 'transfer' and not s.fine_tuned)
  random_frozen = next(s for s in specs if s.condition == 'random_frozen')
  shutil.rmtree(store.run_dir(base.run_id))           # lost: record and checkpoint
  store.record_path(transfer.run_id).unlink()         # lost: record
  failed = store.read_record(random_frozen.run_id)    # a failed run is redone too
  store.write_record({**failed, 'status': 'failed', 'error': 'node failure'})
  before = _records(results)
  capsys.readouterr()

  assert main(['run', *SWEEP, '--results', str(results), '--data-dir', data_dir, *SLURM, '--wait']) == 0, _logs(results)
  out = capsys.readouterr().out
  assert '12 runs: 9 already complete, 3 submitted as 2 SLURM job array(s)' in out  # AnB waits for baseA
  after = _records(results)
  redone = {r for r in after if r not in before or after[r]['started_at'] != before[r]['started_at']}
  assert redone == {base.run_id, transfer.run_id, random_frozen.run_id}
  assert all(r['status'] == 'complete' for r in after.values())
  assert after[random_frozen.run_id]['curve'] == failed['curve']
  assert (store.checkpoint_dir(base.run_id) / 'meta.json').is_file()


def test_transfers_of_cancelled_sources_are_recorded_failed_not_left_pending(slurm_cluster, data_dir, tmp_path):
  """afterany: the transfer array runs even when the source array died, and says why it failed."""
  results = tmp_path / 'results'
  config = sweeps.apply_overrides(sweeps.load_sweep('quickstart', 'tiny'), ['--config.seeds=1'])
  config.data_dir = data_dir
  config.slurm.runs_per_task = 16
  config.slurm.sbatch = ('hold',)  # both arrays submitted held
  submission = executors.submit(config, results)
  sources, transfers = submission.arrays
  with pytest.raises(UserError, match=f'jobs {sources.job_id} {transfers.job_id} submitted earlier .* still queued'):
    executors.submit(config, results)  # would run the same runs twice
  subprocess.run(['scancel', sources.job_id], check=True)
  subprocess.run(['scontrol', 'release', transfers.job_id], check=True)
  problems = executors.wait(submission, ResultsStore(results), progress=False)
  assert len(problems) == 1 and problems[0].startswith(f'task {sources.job_id} ended without a result')
  records = _records(results)
  specs = _expected_specs(data_dir)
  assert sorted(records) == sorted(s.run_id for s in specs if s.source_run)
  for record in records.values():
    assert record['status'] == 'failed'
    assert record['error'] == f"source run {record['spec']['source_run']} is missing"
  assert executors.queued([sources.job_id, transfers.job_id]) == {}


@pytest.mark.slow
def test_preempted_task_is_requeued_and_resumes_without_redoing_complete_runs(slurm_cluster, data_dir, tmp_path):
  """submitit's Checkpointable: SIGTERM + USR2 (what SLURM sends on preemption) -> requeue.

  Enough source runs (2 seeds, 600 steps: 8 runs in one task) that the signal, which takes a
  moment to arrive, lands while some are left: with 4 short runs, two at a time, the task once
  finished them all first and the requeued task had nothing to resume.
  """
  results = tmp_path / 'results'
  config = sweeps.apply_overrides(sweeps.load_sweep('quickstart', 'tiny'),
                                  ['--config.seeds=2', '--config.train.steps=600'])
  config.data_dir = data_dir
  config.slurm.runs_per_task = 16
  submission = executors.submit(config, results)
  store = ResultsStore(results)
  deadline = time.time() + 300
  while not list(store.runs_dir.glob('*/record.json')) and time.time() < deadline:
    time.sleep(0.2)
  submission.arrays[0].jobs[0]._interrupt()  # preemption
  interrupted_at = time.time()
  first = _records(results)
  assert first, 'the sources task should still be running after its first run'
  assert executors.wait(submission, store, progress=False) == [], _logs(results)
  records = _records(results)
  assert len(records) == 24 and all(r['status'] == 'complete' for r in records.values())
  for run_id, before in first.items():  # complete before the preemption: not redone
    assert records[run_id]['started_at'] == before['started_at']
  for run_id in records:  # and no run done twice, by the first task and its requeued self
    ends = [a for a in store.attempts(run_id) if a['event'] == 'end']
    assert len(ends) == 1, f'run {run_id} finished {len(ends)} times'
  sources = [r for r in records.values() if not r['spec']['source_run']]
  resumed = [r for r in sources if r['executor'].get('slurm_restart_count') == '1']
  assert resumed, 'the requeued task should have done the source runs left at the preemption'
  assert all(r['run_id'] not in first and r['started_at'] > interrupted_at for r in resumed)


def test_distributed_initialize_is_a_no_op_outside_a_multi_task_step(monkeypatch):
  monkeypatch.delenv('SLURM_STEP_NUM_TASKS', raising=False)
  assert distributed.step_tasks() == 1 and distributed.initialize() is False
  assert distributed.check() == 1.0  # one process, one CPU device


def test_srun_processes_form_one_jax_program(slurm_cluster):
  """docs/slurm.md's multi-host recipe, on two processes: jax.distributed from SLURM's variables."""
  proc = subprocess.run(['srun', '--ntasks=2', '--cpus-per-task=1', sys.executable, '-m',
                         'harness.distributed'], capture_output=True, text=True, timeout=300,
                        env={**os.environ, 'JAX_PLATFORMS': 'cpu'})
  assert proc.returncode == 0, proc.stderr[-3000:]
  lines = sorted(line for line in proc.stdout.splitlines() if line.startswith('process'))
  assert lines == [f'process {i} of 2: 1 local device(s), 2 in all; global sum 3' for i in (0, 1)]
