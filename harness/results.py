"""Results store: one self-contained record per run, written atomically, loadable into pandas.

Layout of a results directory::

    RESULTS/sweep.json                   the resolved sweep config (provenance), its run ids
                                         and its pairs' kinds (:func:`pair_kinds`)
    RESULTS/execution.json               how the latest call that ran runs ran them (below)
    RESULTS/executions.jsonl             one such entry per call that ran runs, oldest first
    RESULTS/runs/<run_id>/record.json    config, environment, status, learning curve
    RESULTS/runs/<run_id>/checkpoint/    final weights of scratch runs (sources of transfers)
    RESULTS/runs/<run_id>/progress/      periodic checkpoint of an unfinished run (then deleted)
    RESULTS/runs/<run_id>/claim          lock file held by the worker running the run
    RESULTS/runs/<run_id>/attempts.jsonl one line per start and end of an attempt (who, when)

A record is written to a temporary file, fsynced and renamed, so a crash never leaves a partial
record that looks complete. A worker runs a run only while it holds the run's claim, an
exclusive ``flock`` on the claim file that the kernel releases when the holder dies (even by
SIGKILL), so two workers (processes, SLURM array tasks) never run one run at once and a killed
worker never leaves a stale claim. flock is honoured across hosts on NFSv4 and on Lustre/GPFS
mounted with flock support; on a file system without it, give each worker its own runs.
:func:`load_curves` turns the records into the long format shared with ``analysis/`` and users'
notebooks (one row per evaluation)::

    run_id, condition, n_layers, fine_tuned, source, target, seed, step, accuracy, loss, ...

An execution entry (``harness.runner.record_execution``) is a JSON object: the engine's counts
(``strategies`` run id -> strategy, ``families``, ``programs_compiled``, ``xla_compiles``,
``cache_hits``, ``concurrent_runs``, ``remaining``; ``workers`` and ``seconds`` when several
processes ran), ``runs_ran`` (runs this call trained, complete or failed) and ``finished_at`` (unix
time). A call that runs nothing (a re-run of a complete sweep) writes no entry, so
``execution.json`` keeps the provenance of the runs that did train; ``executions.jsonl`` keeps
every earlier entry, one per line (a SLURM array writes one per task).
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import json
import os
import pathlib
import socket
import sys
import tempfile
import time
from typing import Any, Iterator

import pandas as pd
from tqdm.auto import tqdm

from harness.errors import UserError

RECORD = 'record.json'
SLURM_VARIABLES = ('SLURM_JOB_ID', 'SLURM_ARRAY_JOB_ID', 'SLURM_ARRAY_TASK_ID', 'SLURM_RESTART_COUNT')
CURVE_COLUMNS = ('run_id', 'condition', 'n_layers', 'fine_tuned', 'source', 'target', 'seed',
                 'step', 'accuracy', 'loss')


def atomic_write_json(path: pathlib.Path, obj: Any) -> None:
  """Writes JSON so that ``path`` either keeps its old content or has the complete new one.

  Raises:
    OSError: as the write raised it; a full disk names ``path`` (a failed write names no file).
  """
  path.parent.mkdir(parents=True, exist_ok=True)
  fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f'.{path.name}.', suffix='.tmp')
  try:
    with os.fdopen(fd, 'w') as f:
      json.dump(obj, f, indent=1, sort_keys=True)
      f.flush()
      os.fsync(f.fileno())
    os.replace(tmp, path)
  except OSError as e:
    pathlib.Path(tmp).unlink(missing_ok=True)
    if e.errno == errno.ENOSPC and not e.filename:
      raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), str(path)) from e
    raise
  except BaseException:
    pathlib.Path(tmp).unlink(missing_ok=True)
    raise


def append_json_line(path: pathlib.Path, obj: Any) -> None:
  """Appends ``obj`` as one JSON line, fsynced: one short O_APPEND write, so concurrent writers
  (workers, array tasks) do not interleave; after a torn last line (a crash mid-write) it starts
  a new line."""
  line = json.dumps(obj, sort_keys=True)
  path.parent.mkdir(parents=True, exist_ok=True)
  with open(path, 'ab+') as f:
    f.seek(0, os.SEEK_END)
    torn = f.tell() > 0 and (f.seek(-1, os.SEEK_END), f.read(1))[1] != b'\n'
    f.write((('\n' if torn else '') + line + '\n').encode())
    f.flush()
    os.fsync(f.fileno())


def worker_identity() -> dict:
  """Host, process and, under SLURM, job and array task of the current worker."""
  ids = {'host': socket.gethostname(), 'pid': os.getpid()}
  ids.update({var.lower(): os.environ[var] for var in SLURM_VARIABLES if var in os.environ})
  return ids


def read_json(path: pathlib.Path) -> dict:
  """Reads a record, with a one-line error naming the file and the fix if it is corrupt."""
  try:
    with open(path) as f:
      obj = json.load(f)
  except (json.JSONDecodeError, UnicodeDecodeError) as e:
    raise UserError(f'corrupt result file {path} ({e.msg if hasattr(e, "msg") else e}): '
                    'delete it and re-run the sweep to recompute that run') from None
  if not isinstance(obj, dict):
    raise UserError(f'corrupt result file {path} (not a JSON object): delete it and re-run the sweep')
  return obj


class ResultsStore:
  """The records and checkpoints of one sweep under ``root``."""

  def __init__(self, root: str | os.PathLike):
    self.root = pathlib.Path(root)
    self.runs_dir = self.root / 'runs'

  def run_dir(self, run_id: str) -> pathlib.Path:
    return self.runs_dir / run_id

  def record_path(self, run_id: str) -> pathlib.Path:
    return self.run_dir(run_id) / RECORD

  def checkpoint_dir(self, run_id: str) -> pathlib.Path:
    return self.run_dir(run_id) / 'checkpoint'

  def progress_dir(self, run_id: str) -> pathlib.Path:
    return self.run_dir(run_id) / 'progress'

  @contextlib.contextmanager
  def claim(self, run_id: str, wait: bool = False) -> Iterator[bool]:
    """Holds the run's exclusive claim for the duration of the ``with`` block.

    Args:
      run_id: the run.
      wait: block until the claim is free; otherwise give up at once if another worker holds it.

    Yields:
      True if this process holds the claim, False if another worker does (``wait=False``).
    """
    path = self.run_dir(run_id) / 'claim'
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
    try:
      try:
        fcntl.flock(fd, fcntl.LOCK_EX | (0 if wait else fcntl.LOCK_NB))
      except BlockingIOError:
        yield False
        return
      os.ftruncate(fd, 0)  # Who holds it, for people looking at the directory.
      os.write(fd, json.dumps(worker_identity()).encode())
      try:
        yield True
      finally:
        fcntl.flock(fd, fcntl.LOCK_UN)
    finally:
      os.close(fd)

  def is_claimed(self, run_id: str) -> bool:
    """Whether a live worker holds the run's claim right now."""
    if not (self.run_dir(run_id) / 'claim').exists():
      return False
    with self.claim(run_id) as mine:
      return not mine

  def start_attempt(self, run_id: str) -> bool:
    """Starts an attempt at a run whose claim the caller holds, unless it is complete.

    A corrupt record is moved aside (kept for inspection) so that the run is redone.

    Returns:
      False if another worker completed the run meanwhile; else True, with ``start`` logged.
    """
    self._log_missing_end(run_id)
    status = self.status(run_id)
    if status == 'complete':
      return False
    if status == 'corrupt':
      aside = self.set_aside_corrupt(run_id)
      tqdm.write(f'warning: corrupt record of run {run_id} moved to {aside}; re-running it',
                 file=sys.stderr)
    self.log_attempt(run_id, 'start')
    return True

  def log_attempt(self, run_id: str, event: str, **fields: Any) -> None:
    """Appends ``{'event': event, worker identity, time, **fields}`` to the run's attempts log."""
    append_json_line(self.run_dir(run_id) / 'attempts.jsonl',
                     {'event': event, **worker_identity(), 'time': time.time(), **fields})

  def log_missing_end(self, run_id: str) -> bool:
    """Logs the ``end`` of a finished run whose worker died after writing its record.

    A record is written before its attempt's ``end`` line, so a worker killed between the two
    leaves a finished run whose last logged event is its ``start``. This appends that ``end``
    with the writer's identity and finish time (from the record) and ``logged_late_by``, so the
    log says the run finished once. It does nothing while a live worker holds the run's claim
    (that worker logs its own end).

    Returns:
      Whether a missing ``end`` was logged.
    """
    if self._unended_start(run_id) is None:  # checked without the claim first: the usual case
      return False
    with self.claim(run_id) as mine:
      return mine and self._log_missing_end(run_id)

  def _unended_start(self, run_id: str) -> dict | None:
    """The run's last attempt line if it is a ``start`` and the run has a finished record."""
    log = self.attempts(run_id)
    if not log or log[-1]['event'] != 'start' or self.status(run_id) not in ('complete', 'failed'):
      return None
    return log[-1]

  def _log_missing_end(self, run_id: str) -> bool:
    """:meth:`log_missing_end` for a caller that holds the run's claim."""
    start = self._unended_start(run_id)
    if start is None:
      return False
    record = self.read_record(run_id)
    writer = record.get('executor') or {}
    if not writer or any(start.get(k) != v for k, v in writer.items()):
      return False  # the record is not that attempt's
    self.log_attempt(run_id, 'end', **writer, time=record.get('finished_at', time.time()),
                     status=record['status'], logged_late_by=worker_identity())
    return True

  def attempts(self, run_id: str) -> list[dict]:
    """The run's attempts log (a torn last line from a crash mid-write is skipped)."""
    path = self.run_dir(run_id) / 'attempts.jsonl'
    if not path.exists():
      return []
    out = []
    for line in path.read_text().splitlines():
      try:
        out.append(json.loads(line))
      except json.JSONDecodeError:
        continue
    return out

  def status(self, run_id: str) -> str | None:
    """``'complete'``, ``'failed'``, ``'corrupt'`` or None (never run)."""
    path = self.record_path(run_id)
    if not path.exists():
      return None
    try:
      return read_json(path).get('status', 'corrupt')
    except UserError:
      return 'corrupt'

  def set_aside_corrupt(self, run_id: str) -> pathlib.Path:
    """Renames a corrupt record out of the way (kept for inspection) so the run can be redone."""
    path = self.record_path(run_id)
    aside = path.with_name(f'{RECORD}.corrupt-{time.strftime("%Y%m%d-%H%M%S")}')
    os.replace(path, aside)
    return aside

  def write_record(self, record: dict) -> None:
    atomic_write_json(self.record_path(record['run_id']), record)

  def read_record(self, run_id: str) -> dict:
    return read_json(self.record_path(run_id))

  def records(self) -> Iterator[dict]:
    """All records under ``runs/``, in run-id order."""
    if not self.runs_dir.is_dir():
      return
    for path in sorted(self.runs_dir.glob(f'*/{RECORD}')):
      yield read_json(path)


def record_rows(record: dict) -> list[dict]:
  """The long-format rows (one per evaluation) of one record."""
  labels = record['labels']
  extra = {'status': record['status'], 'model': record['spec']['model'],
           'pair': labels.get('pair', ''), 'examples_per_class': labels.get('examples_per_class')}
  return [{'run_id': record['run_id'], **{k: labels[k] for k in CURVE_COLUMNS[1:7]},
           'step': p['step'], 'accuracy': p['accuracy'], 'loss': p['loss'],
           'train_loss': p.get('train_loss'), **extra} for p in record.get('curve', [])]


# harness.tasks pair kind -> the analysis's pair_kind (analysis.curves.PAIR_KINDS).
PAIR_KIND_OF_TASK_KIND = {'random_halves': 'random_halves', 'partition': 'dissimilar',
                          'datasets': 'dissimilar'}


def pair_kinds(results_dir: str | os.PathLike) -> dict[str, str]:
  """Pair label (``'A|B'``, the ``pair`` column) -> pair_kind, from the directory's sweep.json.

  A sweep records its pairs' kinds there when it runs (:func:`pair_kinds_of_config`); for a
  directory written before it did, the kinds are rebuilt from the recorded config. A label that
  is not in the map (no sweep.json, a data set not available here for the rebuild, or a shared
  source network's task name) gets kind ``none`` in :func:`load_curves`: never pooled.
  """
  sweep_file = pathlib.Path(results_dir) / 'sweep.json'
  if not sweep_file.is_file():
    return {}
  recorded = read_json(sweep_file)
  if 'pair_kinds' in recorded:
    return dict(recorded['pair_kinds'])
  return pair_kinds_of_config(recorded.get('config', {}))


def pair_kinds_of_config(config: dict) -> dict[str, str]:
  """Pair label -> pair_kind of each pair of a sweep config (a plain dict) whose tasks can be
  built here (the others are left out)."""
  from harness import tasks  # Lazy: tasks imports the data layer.
  kinds = {}
  for pair in config.get('pairs', []):
    try:
      a, b = tasks.make_task_pair(pair, config.get('data_dir') or None)
    except UserError:
      continue
    kinds[tasks.pair_label(a, b)] = PAIR_KIND_OF_TASK_KIND.get(pair.get('kind'), 'none')
  return kinds


def _config_fields(spec: dict) -> dict:
  """The fields of a run's spec that its sweep config sets alike for all its runs: training
  budget and hyper-parameters, and the model's keyword arguments."""
  from harness.specs import TRAIN_DEFAULTS  # Lazy: specs imports the task layer.
  fields = {f'train.{k}': v for k, v in {**TRAIN_DEFAULTS, **spec.get('train', {})}.items()}
  fields.update({f'model_kwargs.{k}': v for k, v in spec.get('model_kwargs', {}).items()})
  return fields


def config_labels(records: list[dict]) -> dict[str, str]:
  """Run id -> the values of the config fields that differ between the records, e.g.
  ``'train.steps=50'`` ('' for every run when all share one config).

  A results directory reused with another config (``--config.train.steps=50`` added to an
  existing one) holds runs of two experiments under the same condition labels; this label, the
  ``config`` column of :func:`load_curves`, keeps them apart: the analysis and the ``run``
  table treat it as a stratum, so runs of different configs are never averaged together.
  """
  fields = {r['run_id']: _config_fields(r['spec']) for r in records}
  names = sorted({name for f in fields.values() for name in f})
  differing = [n for n in names
               if len({json.dumps(f.get(n), sort_keys=True) for f in fields.values()}) > 1]
  return {run_id: ' '.join(f'{n}={f.get(n)}' for n in differing) for run_id, f in fields.items()}


def load_curves(results_dir: str | os.PathLike, include_failed: bool = False) -> pd.DataFrame:
  """Loads every run's learning curve of a results directory into one long DataFrame.

  Args:
    results_dir: a directory written by ``transferbench run``.
    include_failed: keep the (partial) curves of failed runs; ``status`` tells them apart.

  Returns:
    A DataFrame with columns ``run_id, condition, n_layers, fine_tuned, source, target, seed,
    step, accuracy, loss`` plus ``train_loss, status, model, pair, examples_per_class``,
    ``config`` (:func:`config_labels`: '' unless the runs' configs differ) and ``pair_kind``
    (:func:`pair_kinds`).

  Raises:
    UserError: the directory holds no results, or a record is corrupt.
  """
  records = [record for record in load_records(results_dir)
             if include_failed or record['status'] == 'complete']
  labels = config_labels(records)
  rows = [{**row, 'config': labels[record['run_id']]}
          for record in records for row in record_rows(record)]
  columns = list(CURVE_COLUMNS) + ['train_loss', 'status', 'model', 'pair', 'examples_per_class',
                                   'config']
  df = pd.DataFrame(rows, columns=columns)
  df['pair_kind'] = df['pair'].map(pair_kinds(results_dir)).fillna('none')
  return df.astype({'n_layers': int, 'seed': int, 'step': int, 'fine_tuned': bool,
                    'accuracy': float, 'loss': float})


# ----------------------------------------------------------------------------------------------
# The records API for readers (analysis, notebooks): a results directory is read only through
# load_curves (above), load_records, load_run and load_sweep_config, never file by file.

def load_records(results_dir: str | os.PathLike) -> list[dict]:
  """Every run's record of a results directory (complete, failed), in run-id order.

  Raises:
    UserError: the directory holds no results, or a record is corrupt.
  """
  store = ResultsStore(results_dir)
  if not store.runs_dir.is_dir():
    raise UserError(f'no results in {results_dir}: expected {store.runs_dir}/<run_id>/{RECORD}; '
                    'run `transferbench run SWEEP --results DIR` first')
  return list(store.records())


def load_run(run_dir: str | os.PathLike) -> tuple[dict, dict | None]:
  """One run's record and, if it saved weights (scratch runs do), its final variables.

  Args:
    run_dir: ``RESULTS/runs/<run_id>``; also the parent of a ``source_checkpoint``.

  Returns:
    ``(record, variables)``: variables ``{'params', 'batch_stats'}`` as read by
    :func:`harness.runs.load_checkpoint`, or None when the run has no checkpoint.

  Raises:
    UserError: no record in ``run_dir``, or a corrupt one.
  """
  run_dir = pathlib.Path(run_dir)
  if not (run_dir / RECORD).is_file():
    raise UserError(f'no run record {run_dir / RECORD}: point at a run directory '
                    'RESULTS/runs/<run_id> written by `transferbench run`')
  record = read_json(run_dir / RECORD)
  checkpoint = run_dir / 'checkpoint'
  if not (checkpoint / 'meta.json').is_file():
    return record, None
  from harness import runs  # Late: harness.runs imports this module (and JAX, orbax).
  variables, _ = runs.load_checkpoint(checkpoint)
  return record, variables


def load_sweep_config(results_dir: str | os.PathLike) -> dict | None:
  """The resolved sweep config that ``transferbench run`` recorded (``sweep.json``), or None."""
  path = pathlib.Path(results_dir) / 'sweep.json'
  return read_json(path).get('config') if path.is_file() else None
