"""Executes a sweep on this machine: skip what is done, run the rest in dependency order.

Runs already complete in the results directory are skipped, so an interrupted sweep resumes by
running the same command again. A run whose source network failed is recorded as failed with the
reason; the sweep goes on.
"""

from __future__ import annotations

import dataclasses
import pathlib
import sys
import time
from typing import Sequence

import ml_collections
from tqdm.auto import tqdm

from harness import compilation, packing, runs, sweeps
from harness.results import ResultsStore, atomic_write_json, read_json


@dataclasses.dataclass
class SweepReport:
  """What a call of :func:`run_sweep` did."""
  total: int
  skipped: int
  completed: int
  failed: list[str]
  seconds: float
  execution: dict = dataclasses.field(default_factory=dict)  # packing.ExecutionReport.to_dict()


def _failed_source_record(spec: runs.RunSpec, reason: str) -> dict:
  return {'run_id': spec.run_id, 'spec': spec.to_dict(), 'labels': spec.labels(),
          'environment': runs.environment(), 'status': 'failed', 'error': reason, 'curve': []}


def run_sweep(config: ml_collections.ConfigDict, results_dir: str | pathlib.Path, *,
              progress: bool = True) -> SweepReport:
  """Runs every run of a sweep that is not complete yet.

  Args:
    config: the sweep config (after overrides).
    results_dir: where records and checkpoints go.
    progress: show a progress bar over runs, with an ETA.

  Returns:
    A :class:`SweepReport`.
  """
  start = time.time()
  specs = sweeps.expand(config)
  store = ResultsStore(results_dir)
  atomic_write_json(store.root / 'sweep.json', {'config': config.to_dict(),
                                                'run_ids': [s.run_id for s in specs]})
  todo = []
  for spec in specs:
    status = store.status(spec.run_id)
    if status == 'corrupt':
      aside = store.set_aside_corrupt(spec.run_id)
      tqdm.write(f'warning: corrupt record of run {spec.run_id} moved to {aside}; re-running it',
                 file=sys.stderr)
    if status != 'complete':
      todo.append(spec)
  data_dir = config.data_dir or None
  failed: list[str] = []
  # In a log file (cluster job, CI) a line every 30 s; in a terminal a live bar with an ETA.
  bar = tqdm(total=len(specs), initial=len(specs) - len(todo), unit='run', disable=not progress,
             desc=config.name, dynamic_ncols=True, file=sys.stderr,
             mininterval=0.1 if sys.stderr.isatty() else 30)

  def done(spec: runs.RunSpec, record: dict) -> None:
    if record['status'] != 'complete':
      failed.append(spec.run_id)
      tqdm.write(f"run {spec.run_id} ({spec.describe()}) failed: {record['error']}", file=sys.stderr)
    bar.update()

  # Fast path (harness.packing): families of runs in one compiled program each, packed per the
  # backend's strategy. What it leaves (streamed data, sources not complete) runs one by one.
  compilation.enable_persistent_cache()
  execution = config.get('execution') or {}
  fast = packing.execute(todo, store, data_dir, strategy=execution.get('strategy', 'auto'),
                         pack_size=execution.get('pack_size', 0), on_record=done)
  atomic_write_json(store.root / 'execution.json', fast.to_dict())
  for spec in fast.remaining:
    bar.set_postfix_str(spec.describe())
    source_status = store.status(spec.source_run) if spec.source_run else 'complete'
    if source_status != 'complete':
      record = _failed_source_record(spec, f'source run {spec.source_run} is {source_status or "missing"}')
      store.write_record(record)
    else:
      record = runs.train_and_evaluate(spec, store, data_dir)
    if record['status'] != 'complete':
      failed.append(spec.run_id)
      tqdm.write(f"run {spec.run_id} ({spec.describe()}) failed: {record['error']}", file=sys.stderr)
    bar.update()
  bar.close()
  return SweepReport(total=len(specs), skipped=len(specs) - len(todo),
                     completed=len(todo) - len(failed), failed=failed, seconds=time.time() - start,
                     execution=fast.to_dict())


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
