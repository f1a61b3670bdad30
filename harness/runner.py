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

from harness import compilation, packing, runs, sweeps
from harness.results import ResultsStore, atomic_write_json, read_json


@dataclasses.dataclass
class SweepReport:
  """What a call of :func:`execute` (or :func:`run_sweep`) did."""
  total: int
  skipped: int      # complete before this call
  completed: int    # trained by this call
  failed: list[str]
  seconds: float
  busy: list[str] = dataclasses.field(default_factory=list)  # held by another worker
  execution: dict = dataclasses.field(default_factory=dict)  # packing.ExecutionReport.to_dict()


def _failed_source_record(spec: runs.RunSpec, reason: str) -> dict:
  now = time.time()
  return runs.run_record(spec, now, finished_at=now, status='failed', error=reason, curve=[])


def _wait_for_source(store: ResultsStore, run_id: str) -> str | None:
  """The status of a source run, after waiting while another worker holds it."""
  status = store.status(run_id)
  if status != 'complete' and store.is_claimed(run_id):
    with store.claim(run_id, wait=True):  # Returns when its holder finishes (or dies).
      status = store.status(run_id)
  return status


def run_one(spec: runs.RunSpec, store: ResultsStore, data_dir: str | None = None,
            checkpoint_every: int = 0) -> dict | None:
  """Runs one run under its claim, unless it is complete or another worker is running it.

  A transfer whose source is being trained by another worker waits for it; one whose source
  failed (or is missing) is recorded as failed, with the reason.

  Args:
    spec: the run.
    store: the results directory.
    data_dir: TFDS data directory.
    checkpoint_every: progress-checkpoint interval in steps (0: none).

  Returns:
    The record written, or None if nothing was run (complete, or held by another worker).
  """
  source_status = _wait_for_source(store, spec.source_run) if spec.source_run else 'complete'
  with store.claim(spec.run_id) as mine:
    if not mine:
      return None
    if not store.start_attempt(spec.run_id):  # Another worker finished it meanwhile.
      return None
    if source_status != 'complete':
      record = _failed_source_record(spec, f'source run {spec.source_run} is {source_status or "missing"}')
      store.write_record(record)
    else:
      record = runs.train_and_evaluate(spec, store, data_dir, checkpoint_every=checkpoint_every)
    store.log_attempt(spec.run_id, 'end', status=record['status'])
    return record


def execute(specs: Sequence[runs.RunSpec], store: ResultsStore, data_dir: str | None = None, *,
            checkpoint_every: int = 0, strategy: str = 'auto', pack_size: int = 0,
            progress: bool = True, desc: str = 'sweep') -> SweepReport:
  """Runs, in order, each of ``specs`` that is not complete in ``store``: the one loop of a sweep.

  Called in-process by the local executor and by every task of a SLURM job array on its share of
  the runs, so both have the same semantics: each run goes through :func:`run_one` (its claim,
  its status read when its turn comes, its source checked), so a run that another worker
  completed meanwhile is skipped and one that another worker holds is reported busy.

  Args:
    specs: the runs, sources before the runs that copy from them.
    store: the results directory (shared by all workers).
    data_dir: TFDS data directory (None: the default).
    checkpoint_every: progress-checkpoint interval in steps (0: none).
    strategy, pack_size: how to train families of runs (``config.execution``, harness.packing).
    progress: show a progress bar over runs, with an ETA.
    desc: the progress bar's label.

  Returns:
    A :class:`SweepReport` over ``specs``.
  """
  start = time.time()
  todo = [spec for spec in specs if store.status(spec.run_id) != 'complete']
  failed: list[str] = []
  trained = 0
  # In a log file (cluster job, CI) a line every 30 s; in a terminal a live bar with an ETA.
  bar = tqdm(total=len(specs), initial=len(specs) - len(todo), unit='run', disable=not progress,
             desc=desc, dynamic_ncols=True, file=sys.stderr,
             mininterval=0.1 if sys.stderr.isatty() else 30)

  def done(spec: runs.RunSpec, record: dict) -> None:
    nonlocal trained
    if record['status'] == 'complete':
      trained += 1
    else:
      failed.append(spec.run_id)
      tqdm.write(f"run {spec.run_id} ({spec.describe()}) failed: {record['error']}", file=sys.stderr)
    bar.update()

  # Fast path (harness.packing): families of runs in one compiled program each, packed per the
  # backend's strategy. What it leaves (streamed data, runs long enough for progress checkpoints,
  # sources not complete yet) runs one by one; both paths train a run only under its claim.
  compilation.enable_persistent_cache()
  fast = packing.execute(todo, store, data_dir, strategy=strategy, pack_size=pack_size,
                         checkpoint_every=checkpoint_every, on_record=done)
  atomic_write_json(store.root / 'execution.json', fast.to_dict())
  for spec in fast.remaining:
    bar.set_postfix_str(spec.describe())
    record = run_one(spec, store, data_dir, checkpoint_every)
    if record is not None:
      done(spec, record)
  bar.close()
  busy = [spec.run_id for spec in todo if store.status(spec.run_id) is None]
  return SweepReport(total=len(specs), skipped=len(specs) - len(todo), completed=trained,
                     failed=failed, seconds=time.time() - start, busy=busy, execution=fast.to_dict())


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

  Several workers may run the same sweep on one results directory at once: each run is claimed
  by one of them (see :meth:`ResultsStore.claim`).

  Args:
    config: the sweep config (after overrides).
    results_dir: where records and checkpoints go.
    progress: show a progress bar over runs, with an ETA.

  Returns:
    A :class:`SweepReport`.
  """
  specs, store = prepare(config, results_dir)
  return execute(specs, store, config.data_dir or None, progress=progress, desc=config.name,
                 **execution_settings(config))


def execution_settings(config: ml_collections.ConfigDict) -> dict:
  """The keyword arguments of :func:`execute` that a sweep config sets."""
  execution = config.get('execution') or {}
  return dict(checkpoint_every=config.get('checkpoint_every', 0),
              strategy=execution.get('strategy', 'auto'), pack_size=execution.get('pack_size', 0))


def sweep_status(results_dir: str | pathlib.Path) -> dict[str, list[str]]:
  """Run ids of a results directory grouped by status: complete, failed, corrupt, running, pending.

  ``running`` lists the runs without a record whose claim a live worker holds; ``pending`` the
  other runs of the sweep (``sweep.json``) that have no record yet.
  """
  store = ResultsStore(results_dir)
  sweep_file = store.root / 'sweep.json'
  expected: Sequence[str] = []
  if sweep_file.exists():
    expected = read_json(sweep_file).get('run_ids', [])
  present = sorted(p.name for p in store.runs_dir.iterdir()) if store.runs_dir.is_dir() else []
  groups: dict[str, list[str]] = {'complete': [], 'failed': [], 'corrupt': [], 'running': [],
                                  'pending': []}
  for run_id in dict.fromkeys([*expected, *present]):
    status = store.status(run_id) or ('running' if store.is_claimed(run_id) else 'pending')
    groups[status].append(run_id)
  return groups
