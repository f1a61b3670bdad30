"""Executes a sweep on this machine: skip what is done, run the rest in dependency order.

Runs already complete in the results directory are skipped, so an interrupted sweep resumes by
running the same command again. A run whose source network failed is recorded as failed with the
reason; the sweep goes on. :func:`execute` is that loop; the local executor (:func:`run_sweep`)
and every task of a SLURM job array (``harness.executors``) call it on their runs.
"""

from __future__ import annotations

import contextlib
import dataclasses
import functools
import os
import pathlib
import pickle
import subprocess
import sys
import tempfile
import threading
import time
from typing import Callable, Sequence

import ml_collections
from tqdm.auto import tqdm

from harness import compilation, engine, runs, sweeps
from harness.engine import semantics
from harness.errors import UserError
from harness.results import (ResultsStore, append_json_line, atomic_write_json,
                             pair_kinds_of_config, read_json)
from harness.specs import RunSpec


@dataclasses.dataclass
class SweepReport:
  """What a call of :func:`execute` (or :func:`run_sweep`) did."""
  total: int
  skipped: int      # complete before this call
  completed: int    # trained by this call
  failed: list[str]
  seconds: float
  busy: list[str] = dataclasses.field(default_factory=list)  # held by another worker
  execution: dict = dataclasses.field(default_factory=dict)  # engine.ExecutionReport.to_dict()


def _failed_source_record(spec: RunSpec, reason: str) -> dict:
  now = time.time()
  return runs.run_record(spec, now, finished_at=now, status='failed', error=reason, curve=[])


def run_one(spec: RunSpec, store: ResultsStore, data_dir: str | None = None,
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
  source_status = engine.source_status(store, spec.source_run) if spec.source_run else 'complete'
  with contextlib.ExitStack() as claims:
    if not semantics.claim(claims, store, spec.run_id):  # held, or finished meanwhile
      return None
    if source_status != 'complete':
      record = _failed_source_record(spec, f'source run {spec.source_run} is {source_status or "missing"}')
      store.write_record(record)
    else:
      record = runs.train_and_evaluate(spec, store, data_dir, checkpoint_every=checkpoint_every)
    semantics.log_end(store, spec.run_id, record)
    return record


def execute(specs: Sequence[RunSpec], store: ResultsStore, data_dir: str | None = None, *,
            checkpoint_every: int = 0, strategy: str = 'auto', pack_size: int = 0,
            concurrency: int = 0, progress: bool = True, desc: str = 'sweep',
            record: bool = True) -> SweepReport:
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
    strategy, pack_size, concurrency: how to train families of runs (``config.execution``:
      strategy, pack_size, concurrent_runs; see harness.engine).
    progress: show a progress bar over runs, with an ETA.
    desc: the progress bar's label.
    record: write the execution entry (:func:`record_execution`); the local executor's
      processes leave it to their parent, which writes one for all of them.

  Returns:
    A :class:`SweepReport` over ``specs``.
  """
  start = time.time()
  todo = [spec for spec in specs if store.status(spec.run_id) != 'complete']
  pending = {spec.run_id for spec in todo}
  for spec in specs:  # finished by a worker that died before logging its end?
    if spec.run_id not in pending:
      store.log_missing_end(spec.run_id)
  failed: list[str] = []
  trained = 0
  # In a log file (cluster job, CI) a line every 30 s; in a terminal a live bar with an ETA.
  bar = tqdm(total=len(specs), initial=len(specs) - len(todo), unit='run', disable=not progress,
             desc=desc, dynamic_ncols=True, file=sys.stderr,
             mininterval=0.1 if sys.stderr.isatty() else 30)

  def done(spec: RunSpec, record: dict) -> None:
    nonlocal trained
    if record['status'] == 'complete':
      trained += 1
    else:
      failed.append(spec.run_id)
      tqdm.write(f"run {spec.run_id} ({spec.describe()}) failed: {record['error']}", file=sys.stderr)
    bar.update()

  # The engine trains families of runs with their strategy. What it leaves (streamed data, runs
  # long enough for progress checkpoints, sources not complete) runs here one by one, except the
  # runs whose sources are among those: they go back to the engine once their sources are done
  # (a long pre-training need not send its short transfers to the per-run path). Both train a
  # run only under its claim.
  compilation.enable_persistent_cache()
  engine_calls, one_by_one, left = [], 0, todo
  while left:
    fast = engine.execute(left, store, data_dir, strategy=strategy, pack_size=pack_size,
                           concurrency=concurrency, checkpoint_every=checkpoint_every,
                           on_record=done)
    engine_calls.append(fast.to_dict())
    waiting = {spec.run_id for spec in fast.remaining}
    left = [spec for spec in fast.remaining if spec.source_run in waiting]
    for spec in fast.remaining:
      if spec.source_run in waiting:
        continue
      one_by_one += 1
      bar.set_postfix_str(spec.describe())
      record = run_one(spec, store, data_dir, checkpoint_every)
      if record is not None:
        done(spec, record)
  bar.close()
  busy = [spec.run_id for spec in todo if store.status(spec.run_id) is None]
  execution = _merged(engine_calls, one_by_one)
  if record:
    execution = record_execution(store, execution, trained + len(failed))
  return SweepReport(total=len(specs), skipped=len(specs) - len(todo), completed=trained,
                     failed=failed, seconds=time.time() - start, busy=busy, execution=execution)


def _merged(calls: list[dict], one_by_one: int) -> dict:
  """One execution entry for the engine's calls of a sweep (``ExecutionReport.to_dict``s):
  counts and seconds added, strategies joined, ``remaining`` = the runs trained one by one."""
  if not calls:  # nothing to do: the engine's report of no runs
    return dict(remaining=0, strategies={}, families=0, programs_compiled=0, xla_compiles=0,
                cache_hits=0, concurrent_runs=1, seconds=0.0)
  out = dict(calls[0])
  for call in calls[1:]:
    for key in ('families', 'programs_compiled', 'xla_compiles', 'cache_hits', 'seconds'):
      out[key] += call[key]
    out['strategies'] = {**out['strategies'], **call['strategies']}
    out['concurrent_runs'] = max(out['concurrent_runs'], call['concurrent_runs'])
  out['remaining'] = one_by_one
  return out


def record_execution(store: ResultsStore, execution: dict, runs_ran: int) -> dict:
  """Writes how a call ran its runs (the entry format: :mod:`harness.results`), if it ran any.

  A call that ran nothing writes nothing, so ``execution.json`` keeps the provenance of the call
  that trained the runs; every entry is also appended to ``executions.jsonl``.

  Args:
    store: the results directory.
    execution: the engine's counts (``engine.ExecutionReport.to_dict()``, or merged over workers).
    runs_ran: runs this call trained, complete or failed.

  Returns:
    The entry: ``execution`` with ``runs_ran`` and ``finished_at``.
  """
  entry = {**execution, 'runs_ran': runs_ran, 'finished_at': time.time()}
  if runs_ran:
    atomic_write_json(store.root / 'execution.json', entry)
    append_json_line(store.root / 'executions.jsonl', entry)
  return entry


def prepare(config: ml_collections.ConfigDict, results_dir: str | pathlib.Path
            ) -> tuple[list[RunSpec], ResultsStore]:
  """Expands a sweep and writes its ``sweep.json`` (provenance; ``status`` reads its run ids,
  ``load_curves`` its pairs' kinds, so that reading curves builds no tasks).

  Returns:
    The sweep's runs (sources first) and its results store.
  """
  specs = sweeps.expand(config)
  store = ResultsStore(results_dir)
  atomic_write_json(store.root / 'sweep.json', {
      'config': config.to_dict(), 'run_ids': [s.run_id for s in specs],
      'pair_kinds': pair_kinds_of_config(config.to_dict())})
  return specs, store


def run_sweep(config: ml_collections.ConfigDict, results_dir: str | pathlib.Path, *,
              progress: bool = True) -> SweepReport:
  """Runs every run of a sweep that is not complete yet on this machine (the local executor).

  With ``workers`` > 1 (:func:`local_workers`) this process and ``workers - 1`` worker processes,
  each pinned to its own CPU core, run :func:`execute` on the sweep side by side; every run is
  claimed by one of them (see :meth:`ResultsStore.claim`) and transfers start as soon as their
  source is complete. Whatever a worker that died left is then run here.

  Args:
    config: the sweep config (after overrides).
    results_dir: where records and checkpoints go.
    progress: show a progress bar over runs, with an ETA.

  Returns:
    A :class:`SweepReport`.
  """
  specs, store = prepare(config, results_dir)
  todo = [spec for spec in specs if store.status(spec.run_id) != 'complete']
  workers = min(local_workers(config), len(todo), len(engine.cpu_cores()))
  run_here = functools.partial(execute, data_dir=config.data_dir or None, desc=config.name,
                               **execution_settings(config))
  if workers < 2:
    return run_here(specs, store, progress=progress)
  start = time.time()
  reports = _run_with_workers(config, specs, store, todo, workers, progress, run_here)
  left = [spec for spec in todo if store.status(spec.run_id) is None
          and not store.is_claimed(spec.run_id)]
  if left:  # a worker died (or stopped at a bad input): finish here, errors raised here
    reports.append(run_here(left, store, progress=progress, record=False))
  execution = _merge_executions([r.execution for r in reports], workers, time.time() - start)
  failed = [spec.run_id for spec in todo if store.status(spec.run_id) == 'failed']
  ran = sum(store.status(spec.run_id) in ('complete', 'failed') for spec in todo)
  execution = record_execution(store, execution, ran)
  busy = [spec.run_id for spec in todo if store.status(spec.run_id) is None]
  return SweepReport(total=len(specs), skipped=len(specs) - len(todo),
                     completed=sum(store.status(s.run_id) == 'complete' for s in todo),
                     failed=failed, seconds=time.time() - start, busy=busy, execution=execution)


def local_workers(config: ml_collections.ConfigDict) -> int:
  """Processes the local executor trains with: ``config.execution.workers`` (default 1).

  Not more by default: one process already keeps two cores busy, and single-core workers were
  no faster on the 2-core CPU this was built on (docs/performance.md). On a CPU with many cores,
  where one small model's matmuls do not scale across all of them, or for runs dominated by
  Python-side overhead, ``--config.execution.workers=N`` runs N at once.
  """
  return max(1, int((config.get('execution') or {}).get('workers', 1) or 1))


def worker_main(argv: Sequence[str] | None = None) -> None:
  """A worker process of the local executor: ``CONFIG_PICKLE RESULTS_DIR CORE REPORT_PICKLE``.

  Pins itself to its core before JAX starts its CPU threads, runs :func:`execute` on the whole
  sweep and writes its :class:`SweepReport`. A bad input ends it with status 2 and no report: the
  parent runs what is left itself and reports the error once.
  """
  config_path, results_dir, core, report_path = argv or sys.argv[1:]
  if hasattr(os, 'sched_setaffinity'):
    os.sched_setaffinity(0, {int(core)})
  config = pickle.loads(pathlib.Path(config_path).read_bytes())
  try:
    report = execute(sweeps.expand(config), ResultsStore(results_dir), config.data_dir or None,
                     progress=False, record=False, **execution_settings(config))
  except UserError:
    sys.exit(2)
  pathlib.Path(report_path).write_bytes(pickle.dumps(report))


def _run_with_workers(config, specs, store: ResultsStore, todo: list, workers: int,
                      progress: bool, run_here: Callable) -> list[SweepReport]:
  """Starts ``workers - 1`` worker processes (fresh interpreters: JAX is not fork-safe) on cores
  1.., runs :func:`execute` here pinned to core 0 meanwhile, waits for the workers; one progress
  bar over the sweep's pending runs, read from the results directory."""
  cores = engine.cpu_cores()
  bar = tqdm(total=len(todo), unit='run', disable=not progress, dynamic_ncols=True,
             file=sys.stderr, desc=f'{config.name} ({workers} workers)',
             mininterval=0.1 if sys.stderr.isatty() else 30)
  finished = threading.Event()

  def show_progress():
    while not finished.wait(0.5):
      bar.update(sum(store.status(spec.run_id) is not None for spec in todo) - bar.n)

  with tempfile.TemporaryDirectory(prefix='transferbench-workers-') as tmp:
    config_path = pathlib.Path(tmp) / 'config.pickle'
    config_path.write_bytes(pickle.dumps(config))
    code = 'from harness.runner import worker_main; worker_main()'
    report_paths = [pathlib.Path(tmp) / f'report{i}.pickle' for i in range(1, workers)]
    procs = [subprocess.Popen([sys.executable, '-c', code, str(config_path), str(store.root),
                               str(cores[i]), str(path)])
             for i, path in zip(range(1, workers), report_paths)]
    thread = threading.Thread(target=show_progress, daemon=True)
    thread.start()
    try:
      if hasattr(os, 'sched_setaffinity'):
        os.sched_setaffinity(0, {cores[0]})
      reports = [run_here(specs, store, progress=False, record=False)]
      for proc in procs:
        proc.wait()
    finally:
      if hasattr(os, 'sched_setaffinity'):
        os.sched_setaffinity(0, cores)
      for proc in procs:  # interrupted (Ctrl-C): the workers stop too; their claims die with them
        if proc.poll() is None:
          proc.terminate()
          proc.wait()
      finished.set()
      thread.join()
      bar.update(sum(store.status(spec.run_id) is not None for spec in todo) - bar.n)
      bar.close()
    # (each process printed its own failed runs as they failed)
    return reports + [pickle.loads(path.read_bytes()) for path in report_paths if path.exists()]


def _merge_executions(executions: list[dict], workers: int, seconds: float) -> dict:
  """One ``execution.json`` for several workers: counts summed, strategies merged."""
  merged = {'workers': workers, 'seconds': round(seconds, 3), 'strategies': {}}
  for execution in executions:
    merged['strategies'].update(execution.get('strategies', {}))
    for key in ('remaining', 'programs_compiled', 'xla_compiles', 'cache_hits'):
      merged[key] = merged.get(key, 0) + execution.get(key, 0)
    merged['families'] = max(merged.get('families', 0), execution.get('families', 0))
    merged['concurrent_runs'] = max(merged.get('concurrent_runs', 1),
                                    execution.get('concurrent_runs', 1))
  return merged


def execution_settings(config: ml_collections.ConfigDict) -> dict:
  """The keyword arguments of :func:`execute` that a sweep config sets."""
  execution = config.get('execution') or {}
  return dict(checkpoint_every=config.get('checkpoint_every', 0),
              strategy=execution.get('strategy', 'auto'), pack_size=execution.get('pack_size', 0),
              concurrency=execution.get('concurrent_runs', 0))


def sweep_status(results_dir: str | pathlib.Path) -> dict[str, list[str]]:
  """Run ids of a results directory grouped by status: complete, failed, corrupt, running, pending.

  ``running`` lists the runs without a record whose claim a live worker holds; ``pending`` the
  other runs of the sweep (``sweep.json``) that have no record yet.

  Raises:
    UserError: the directory has neither ``sweep.json`` nor ``runs/`` (not a results directory).
  """
  store = ResultsStore(results_dir)
  sweep_file = store.root / 'sweep.json'
  if not sweep_file.is_file() and not store.runs_dir.is_dir():
    raise UserError(f'{store.root} is not a results directory (it has no sweep.json and no runs/): '
                    'give the directory `transferbench run` wrote, e.g. results/quickstart')
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
