"""Executes a sweep on this machine: skip what is done, run the rest in dependency order.

Runs already complete in the results directory are skipped, so an interrupted sweep resumes by
running the same command again. A run whose source network failed is recorded as failed with the
reason; the sweep goes on. :func:`execute` is that loop; the local executor (:func:`run_sweep`)
and every task of a SLURM job array (``harness.executors``) call it on their runs.
"""

from __future__ import annotations

import dataclasses
import pathlib
import sys
import time
from typing import Sequence

import ml_collections
from tqdm.auto import tqdm

from harness import runs, sweeps
from harness.results import ResultsStore, atomic_write_json, read_json


@dataclasses.dataclass
class SweepReport:
  """What a call of :func:`execute` (or :func:`run_sweep`) did."""
  total: int
  skipped: int
  completed: int
  failed: list[str]
  seconds: float


def _failed_source_record(spec: runs.RunSpec, reason: str) -> dict:
  now = time.time()
  return {'run_id': spec.run_id, 'spec': spec.to_dict(), 'labels': spec.labels(),
          'environment': runs.environment(), 'executor': runs.worker(), 'started_at': now,
          'finished_at': now, 'status': 'failed', 'error': reason, 'curve': []}


def execute(specs: Sequence[runs.RunSpec], store: ResultsStore, data_dir: str | None = None, *,
            progress: bool = True, desc: str = 'sweep') -> SweepReport:
  """Runs, in order, each of ``specs`` that is not complete in ``store``: the one loop of a sweep.

  Called in-process by the local executor and by every task of a SLURM job array on its share of
  the runs, so both have the same semantics. Each run's status is read when its turn comes (not
  once up front): a run that another worker completed meanwhile is skipped, a corrupt record is
  set aside and redone, and a selffer/transfer run whose source is not complete (failed, or its
  job died) is recorded as failed with the reason; re-running the sweep redoes it.

  Args:
    specs: the runs, sources before the runs that copy from them.
    store: the results directory (shared by all workers).
    data_dir: TFDS data directory (None: the default).
    progress: show a progress bar over runs, with an ETA.
    desc: the progress bar's label.

  Returns:
    A :class:`SweepReport` over ``specs``.
  """
  start = time.time()
  done = sum(store.status(spec.run_id) == 'complete' for spec in specs)
  skipped, completed = 0, 0
  failed: list[str] = []
  # In a log file (cluster job, CI) a line every 30 s; in a terminal a live bar with an ETA.
  bar = tqdm(total=len(specs), initial=done, unit='run', disable=not progress,
             desc=desc, dynamic_ncols=True, file=sys.stderr,
             mininterval=0.1 if sys.stderr.isatty() else 30)
  for spec in specs:
    status = store.status(spec.run_id)
    if status == 'complete':
      skipped += 1
      continue
    if status == 'corrupt':
      aside = store.set_aside_corrupt(spec.run_id)
      tqdm.write(f'warning: corrupt record of run {spec.run_id} moved to {aside}; re-running it',
                 file=sys.stderr)
    bar.set_postfix_str(spec.describe())
    source_status = store.status(spec.source_run) if spec.source_run else 'complete'
    if source_status != 'complete':
      record = _failed_source_record(spec, f'source run {spec.source_run} is {source_status or "missing"}')
      store.write_record(record)
    else:
      record = runs.train_and_evaluate(spec, store, data_dir)
    if record['status'] == 'complete':
      completed += 1
    else:
      failed.append(spec.run_id)
      tqdm.write(f"run {spec.run_id} ({spec.describe()}) failed: {record['error']}", file=sys.stderr)
    bar.update()
  bar.close()
  return SweepReport(total=len(specs), skipped=skipped, completed=completed, failed=failed,
                     seconds=time.time() - start)


def prepare(config: ml_collections.ConfigDict, results_dir: str | pathlib.Path
            ) -> tuple[list[runs.RunSpec], ResultsStore]:
  """Expands a sweep and writes its ``sweep.json`` (provenance; ``status`` reads its run ids).

  Returns:
    The sweep's runs (sources first) and its results store.
  """
  specs = sweeps.expand(config)
  store = ResultsStore(results_dir)
  atomic_write_json(store.root / 'sweep.json', {'config': config.to_dict(),
                                                'run_ids': [s.run_id for s in specs]})
  return specs, store


def run_sweep(config: ml_collections.ConfigDict, results_dir: str | pathlib.Path, *,
              progress: bool = True) -> SweepReport:
  """Runs every run of a sweep that is not complete yet, in this process (the local executor).

  Args:
    config: the sweep config (after overrides).
    results_dir: where records and checkpoints go.
    progress: show a progress bar over runs, with an ETA.

  Returns:
    A :class:`SweepReport`.
  """
  specs, store = prepare(config, results_dir)
  return execute(specs, store, config.data_dir or None, progress=progress, desc=config.name)


def sweep_status(results_dir: str | pathlib.Path) -> dict[str, list[str]]:
  """Run ids of a results directory grouped by status: complete, failed, corrupt, pending.

  ``pending`` lists the runs of the sweep (``sweep.json``) that have no record yet.
  """
  store = ResultsStore(results_dir)
  sweep_file = store.root / 'sweep.json'
  expected: Sequence[str] = []
  if sweep_file.exists():
    expected = read_json(sweep_file).get('run_ids', [])
  present = sorted(p.name for p in store.runs_dir.iterdir()) if store.runs_dir.is_dir() else []
  groups: dict[str, list[str]] = {'complete': [], 'failed': [], 'corrupt': [], 'pending': []}
  for run_id in dict.fromkeys([*expected, *present]):
    groups[store.status(run_id) or 'pending'].append(run_id)
  return groups
