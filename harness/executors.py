"""Executors: where the runs of a sweep execute, ``local`` (this process) or ``slurm`` (job arrays).

Both call :func:`harness.runner.execute`, so a run means the same everywhere: its status is read
when its turn comes, complete runs are skipped, a transfer whose source is not complete is
recorded as failed with the reason. The results directory is the only source of truth: a job
array task is not "successful" because SLURM says so but because its runs' records are complete,
so nothing here needs SLURM accounting (``sacct``).

SLURM (``--executor slurm``, through submitit). Only the runs not yet complete are submitted,
as one job array per *phase* (``harness.engine.scheduler.levels``, the dependency levels every
executor uses): phase 0 holds the runs that need no other pending run (base nets, runs that copy
from a checkpoint or from nothing), phase k the runs whose source run is in phase k-1. Each
array task does ``config.slurm.runs_per_task`` runs one after the other.
Phase k's array starts after phase k-1's array has ended: ``--dependency=afterany:<array id>``.

Why ``afterany`` and not ``afterok``: with ``afterok`` a single source task that fails (a node
crash, a time limit, a bug) makes SLURM hold *every* transfer task forever
(``DependencyNeverSatisfied``). With ``afterany`` the transfer array starts once the sources' array
has ended, whatever happened to it, and each transfer checks its own source in the results
directory: transfers of complete sources train, the others are recorded as failed ("source run ID
is missing"), so nothing is left pending and ``transferbench status`` tells the whole story.
``config.slurm.dependency='afterok'`` gives the strict form where a site prefers it (a failed
source task then leaves the next array pending until it is cancelled).

Resume. Running the same command again submits only what is not complete (failed runs are
redone). Array tasks are :class:`submitit.helpers.Checkpointable`: on preemption or at the time
limit, submitit requeues the task, which skips the runs it had already completed and resumes the
interrupted one from its last progress checkpoint (``config.checkpoint_every``). Each run is
claimed (``ResultsStore.claim``) while it trains, so no two workers ever run it at once.
"""

from __future__ import annotations

import dataclasses
import json
import os
import pathlib
import shutil
import subprocess
import sys
import time
from typing import Callable, Sequence

import ml_collections
from tqdm.auto import tqdm

from harness import runner
from harness.engine import scheduler
from harness.errors import UserError
from harness.results import ResultsStore
from harness.specs import RunSpec

POLL_S = 1.0


# ----------------------------------------------------------------------------------------------
# Planning: phases (dependency levels) and chunks (array tasks).

def phases(pending: Sequence[RunSpec]) -> list[list[RunSpec]]:
  """Pending runs by dependency level (``harness.engine.scheduler.levels``): a job array each."""
  return scheduler.levels(pending)


def chunks(specs: Sequence[RunSpec], size: int) -> list[list[RunSpec]]:
  """Consecutive groups of at most ``size`` runs: the work of one array task each."""
  if size < 1:
    raise UserError(f'slurm.runs_per_task is {size}: give a number >= 1, e.g. --runs-per-task 4')
  return [list(specs[i:i + size]) for i in range(0, len(specs), size)]


# ----------------------------------------------------------------------------------------------
# What one array task runs.

try:
  import submitit
  _Checkpointable = submitit.helpers.Checkpointable
except ImportError:  # pragma: no cover - submitit is a dependency; keep `local` usable without it.
  submitit = None
  _Checkpointable = object


class ArrayTask(_Checkpointable):
  """One task of a job array: :func:`runner.execute` over its share of the runs.

  Being ``Checkpointable``, it is requeued with the same arguments on preemption or timeout;
  :func:`runner.execute` then skips the runs completed before.
  """

  def __call__(self, specs: list[RunSpec], results_dir: str, data_dir: str | None,
               settings: dict | None = None) -> dict:
    """Runs ``specs``; ``settings`` are :func:`runner.execution_settings` of the sweep."""
    report = runner.execute(specs, ResultsStore(results_dir), data_dir, progress=True,
                            desc=f"task {os.environ.get('SLURM_ARRAY_TASK_ID', '?')}",
                            **(settings or {}))
    return dataclasses.asdict(report)


# ----------------------------------------------------------------------------------------------
# Submission.

@dataclasses.dataclass
class ArraySubmission:
  """One submitted job array (one phase)."""
  phase: int
  job_id: str
  run_ids: list[list[str]]       # per array task
  jobs: list = dataclasses.field(default_factory=list, repr=False)  # submitit jobs


@dataclasses.dataclass
class Submission:
  """What ``--executor slurm`` submitted for a sweep."""
  folder: pathlib.Path            # submitit's folder: sbatch scripts, logs, pickles
  total: int                      # runs in the sweep
  skipped: int                    # already complete, not submitted
  arrays: list[ArraySubmission]

  @property
  def run_ids(self) -> list[str]:
    return [r for array in self.arrays for task in array.run_ids for r in task]

  def describe(self) -> str:
    """Lines for the user: job ids, what each array does, where the logs are."""
    if not self.arrays:
      return f'{self.total} runs, all complete: nothing submitted.'
    lines = [f'{self.total} runs: {self.skipped} already complete, {len(self.run_ids)} submitted '
             f'as {len(self.arrays)} SLURM job array(s):']
    for array in self.arrays:
      after = f', starts after job {self.arrays[array.phase - 1].job_id} has ended' if array.phase else ''
      lines.append(f'  job {array.job_id}: phase {array.phase}, {sum(map(len, array.run_ids))} runs '
                   f'in {len(array.run_ids)} task(s){after}')
    example = self.arrays[0].jobs[0].paths.stderr if self.arrays[0].jobs else None
    lines.append(f'Logs: {self.folder}/' + (f' (e.g. {example.name})' if example else ''))
    return '\n'.join(lines)


def sbatch_parameters(items: Sequence[str]) -> dict:
  """``('qos=high', 'exclusive')`` -> ``{'qos': 'high', 'exclusive': True}`` (sbatch long options)."""
  params: dict = {}
  for item in items:
    key, sep, value = str(item).partition('=')
    key = key.strip().lstrip('-').replace('-', '_')
    if not key:
      raise UserError(f"bad sbatch option '{item}': write KEY=VALUE, e.g. --sbatch qos=high")
    if key == 'dependency':
      raise UserError('sbatch option dependency is set by transferbench (phases run one after '
                      'another): drop it from slurm.sbatch / --sbatch')
    params[key] = value if sep else True
  return params


DEPENDENCIES = ('afterany', 'afterok')


def dependency_type(slurm: ml_collections.ConfigDict) -> str:
  """``config.slurm.dependency``, checked: how a phase's array waits for the previous one."""
  dependency = slurm.get('dependency', 'afterany')
  if dependency not in DEPENDENCIES:
    raise UserError(f"config.slurm.dependency='{dependency}' is not supported: use afterany (the "
                    'default; transfers of failed sources are recorded as failed) or afterok')
  return dependency


def slurm_parameters(slurm: ml_collections.ConfigDict, tasks: int) -> dict:
  """submitit ``AutoExecutor.update_parameters`` keywords from ``config.slurm``."""
  params = dict(name=slurm.job_name, timeout_min=int(slurm.time_min), nodes=1, tasks_per_node=1,
                cpus_per_task=int(slurm.cpus_per_task),
                slurm_array_parallelism=int(slurm.array_parallelism) or max(tasks, 1),
                slurm_additional_parameters=sbatch_parameters(slurm.sbatch),
                slurm_setup=list(slurm.setup))
  if slurm.partition:
    params['slurm_partition'] = slurm.partition
  if slurm.gpus_per_node:
    params['gpus_per_node'] = int(slurm.gpus_per_node)
  if slurm.mem_gb:
    params['mem_gb'] = float(slurm.mem_gb)
  return params


def submit(config: ml_collections.ConfigDict, results_dir: str | pathlib.Path) -> Submission:
  """Submits the sweep's runs that are not complete as dependent SLURM job arrays.

  Args:
    config: the sweep config; ``config.slurm`` holds the submission parameters.
    results_dir: the results directory, on a file system shared with the compute nodes.

  Returns:
    The :class:`Submission` (job ids, run ids per task, submitit jobs).

  Raises:
    UserError: no SLURM here, submitit missing, or bad ``config.slurm`` values.
  """
  if submitit is None:
    raise UserError('--executor slurm needs submitit: pip install submitit')
  if shutil.which('sbatch') is None:
    raise UserError('no sbatch on PATH: run --executor slurm on a SLURM login node '
                    '(or start a test cluster with scripts/slurm-cluster)')
  results_dir = pathlib.Path(results_dir).absolute()
  folder = results_dir / 'slurm'
  active = jobs_of(folder)
  if active:  # Submitting again now would run their runs twice, concurrently.
    raise UserError(f"jobs {' '.join(active)} submitted earlier for {results_dir} are still queued "
                    f"or running: wait for them (`squeue`, `transferbench status {results_dir}`) "
                    f"or cancel them (`scancel {' '.join(active)}`), then run this command again")
  specs, store = runner.prepare(config, results_dir)
  pending = [s for s in specs if store.status(s.run_id) != 'complete']
  submission = Submission(folder=folder, total=len(specs), skipped=len(specs) - len(pending), arrays=[])
  data_dir = str(pathlib.Path(config.data_dir).absolute()) if config.data_dir else None
  dependency = dependency_type(config.slurm)
  previous = None
  for phase, phase_specs in enumerate(phases(pending)):
    groups = chunks(phase_specs, int(config.slurm.runs_per_task))
    executor = submitit.AutoExecutor(folder=folder, cluster='slurm')
    params = slurm_parameters(config.slurm, len(groups))
    if previous is not None:
      params['slurm_additional_parameters']['dependency'] = f'{dependency}:{previous}'
    try:
      executor.update_parameters(**params)
      jobs = executor.map_array(ArrayTask(), groups, [str(results_dir)] * len(groups),
                                [data_dir] * len(groups),
                                [runner.execution_settings(config)] * len(groups))
    except (submitit.core.utils.FailedJobError, subprocess.CalledProcessError, ValueError) as e:
      detail = ' '.join(line.replace('sbatch: error: ', '') for line in str(e).strip().splitlines())
      earlier = (f' (job {previous}, phase {phase - 1}, was submitted: `scancel {previous}` '
                 'or let it run)') if previous else ''
      raise UserError(f'sbatch refused the phase-{phase} job array: {detail}{earlier}; '
                      'fix config.slurm (--partition, --time, --sbatch ...)') from None
    previous = jobs[0].job_id.split('_')[0]
    submission.arrays.append(ArraySubmission(
        phase=phase, job_id=previous, run_ids=[[s.run_id for s in g] for g in groups], jobs=jobs))
  if submission.arrays:
    _log_submission(submission)
  return submission


def _log_submission(submission: Submission) -> None:
  """Appends the submission to ``slurm/submissions.jsonl`` (which job ran which runs, when)."""
  entry = {'time': time.time(), 'arrays': [{'phase': a.phase, 'job_id': a.job_id,
                                            'run_ids': a.run_ids} for a in submission.arrays]}
  submission.folder.mkdir(parents=True, exist_ok=True)
  with open(submission.folder / 'submissions.jsonl', 'a') as f:
    f.write(json.dumps(entry) + '\n')


# ----------------------------------------------------------------------------------------------
# Waiting: squeue (no accounting needed), then the results directory says what happened.

def queued(job_ids: Sequence[str]) -> dict[str, tuple[str, str]]:
  """``{job or task id: (state, reason)}`` of the jobs among ``job_ids`` still in the queue."""
  if not job_ids:
    return {}
  proc = subprocess.run(['squeue', '-h', '-j', ','.join(job_ids), '-o', '%i|%T|%r'],
                        capture_output=True, text=True, timeout=60)
  if proc.returncode != 0:
    if 'Invalid job id' in proc.stderr:  # every job has left the controller's memory
      return {}
    raise UserError(f'squeue failed: {proc.stderr.strip()}')
  return {line.split('|')[0]: tuple(line.split('|')[1:3]) for line in proc.stdout.splitlines() if line}


def jobs_of(folder: pathlib.Path) -> list[str]:
  """Ids of the queued or running jobs whose batch script is in ``folder`` (any submission).

  Found through the script path SLURM keeps for each job (submitit writes it into ``folder``),
  so no bookkeeping of job ids is needed.
  """
  proc = subprocess.run(['squeue', '-h', '-o', '%A|%o'], capture_output=True, text=True, timeout=60)
  if proc.returncode != 0:
    raise UserError(f'squeue failed: {proc.stderr.strip()}: is this a SLURM login node?')
  prefix = f'{folder}{os.sep}'
  return sorted({line.split('|', 1)[0] for line in proc.stdout.splitlines()
                 if '|' in line and line.split('|', 1)[1].startswith(prefix)}, key=int)


def queued_jobs_note(results_dir: str | pathlib.Path) -> str | None:
  """For ``transferbench status``: the SLURM jobs of a results directory still queued, if any."""
  folder = pathlib.Path(results_dir).absolute() / 'slurm'
  if not folder.is_dir() or shutil.which('squeue') is None:
    return None
  try:
    jobs = jobs_of(folder)
  except (UserError, OSError, subprocess.SubprocessError):
    return None
  return f"SLURM jobs queued or running: {' '.join(jobs)} (logs in {folder}/)" if jobs else None


def task_failures(submission: Submission) -> list[str]:
  """One line per array task that did not end normally, pointing at its log."""
  from submitit.core.utils import pickle_load
  lines = []
  for array in submission.arrays:
    for job in array.jobs:
      paths = job.paths
      if not paths.result_pickle.exists():
        lines.append(f'task {job.job_id} ended without a result (cancelled, time limit, out of '
                     f'memory or node failure): see {paths.stderr}')
        continue
      outcome, payload = pickle_load(paths.result_pickle)
      if outcome == 'error':
        last = str(payload).strip().splitlines()[-1] if str(payload).strip() else 'error'
        lines.append(f'task {job.job_id} failed: {last}: see {paths.stderr}')
  return lines


def wait(submission: Submission, store: ResultsStore, *, progress: bool = True,
         poll_s: float = POLL_S) -> list[str]:
  """Waits until the submission's jobs have left the queue, showing completed runs.

  Returns:
    :func:`task_failures` lines (empty when every array task ended normally).
  """
  ids = [a.job_id for a in submission.arrays]
  run_ids = submission.run_ids
  bar = tqdm(total=len(run_ids), unit='run', disable=not progress, desc='slurm', file=sys.stderr,
             dynamic_ncols=True, mininterval=0.1 if sys.stderr.isatty() else 30)
  while True:
    in_queue = queued(ids)
    states = sorted({state for state, _ in in_queue.values()})
    bar.set_postfix_str(', '.join(states) or 'done', refresh=False)
    bar.update(sum(store.status(r) == 'complete' for r in run_ids) - bar.n)
    if not in_queue:
      break
    if all(reason == 'DependencyNeverSatisfied' for _, reason in in_queue.values()):
      bar.close()
      raise UserError(f'jobs {", ".join(sorted(in_queue))} wait for a dependency that can never be '
                      'satisfied: scancel them and run the same command again')
    time.sleep(poll_s)
  bar.close()
  return task_failures(submission)


# ----------------------------------------------------------------------------------------------
# The registry used by `transferbench run --executor NAME`.

@dataclasses.dataclass
class Outcome:
  """What an executor did: a report when the runs ended here, else only the submission."""
  report: runner.SweepReport | None
  submission: Submission | None = None
  problems: list[str] = dataclasses.field(default_factory=list)


def run_local(config: ml_collections.ConfigDict, results_dir: pathlib.Path, *, progress: bool,
              wait_for_jobs: bool, echo: Callable[[str], None]) -> Outcome:
  """Runs the sweep in this process (``wait_for_jobs`` is implied)."""
  return Outcome(runner.run_sweep(config, results_dir, progress=progress))


def run_slurm(config: ml_collections.ConfigDict, results_dir: pathlib.Path, *, progress: bool,
              wait_for_jobs: bool, echo: Callable[[str], None]) -> Outcome:
  """Submits the sweep to SLURM; with ``wait_for_jobs``, waits and reports like a local run."""
  start = time.time()
  submission = submit(config, results_dir)
  echo(submission.describe())
  if not wait_for_jobs or not submission.arrays:
    if submission.arrays:
      echo(f'Follow with `squeue` and `transferbench status {results_dir}`; run the same command '
           'again to resubmit what is not complete.')
    report = runner.SweepReport(submission.total, submission.skipped, 0, [], time.time() - start)
    return Outcome(report if not submission.arrays else None, submission)
  store = ResultsStore(results_dir)
  problems = wait(submission, store, progress=progress)
  statuses = {r: store.status(r) for r in submission.run_ids}
  report = runner.SweepReport(
      total=submission.total, skipped=submission.skipped,
      completed=sum(s == 'complete' for s in statuses.values()),
      failed=[r for r, s in statuses.items() if s != 'complete'], seconds=time.time() - start)
  return Outcome(report, submission, problems)


EXECUTORS: dict[str, Callable[..., Outcome]] = {'local': run_local, 'slurm': run_slurm}


def get(name: str) -> Callable[..., Outcome]:
  """The executor called ``name``."""
  if name not in EXECUTORS:
    raise UserError(f"unknown executor '{name}': use one of {', '.join(EXECUTORS)}")
  return EXECUTORS[name]


# ----------------------------------------------------------------------------------------------
# Command-line flags: shortcuts for config.executor and config.slurm.

# flag -> (config.slurm field, type, help)
SLURM_FLAGS = {
    '--partition': ('partition', str, 'SLURM partition'),
    '--time': ('time_min', int, 'time limit of one array task, minutes'),
    '--gpus': ('gpus_per_node', int, 'GPUs per array task'),
    '--cpus': ('cpus_per_task', int, 'CPUs per array task'),
    '--mem': ('mem_gb', float, 'memory per array task, GB'),
    '--array-parallelism': ('array_parallelism', int, 'at most this many tasks of an array at once'),
    '--runs-per-task': ('runs_per_task', int, 'runs done one after the other by one array task'),
}


def add_arguments(parser) -> None:
  """Adds ``--executor``, ``--wait`` and the ``config.slurm`` shortcuts to ``transferbench run``."""
  parser.add_argument('--executor', choices=sorted(EXECUTORS),
                      help="where runs execute: 'local' (this process) or 'slurm' (job arrays); "
                           'default: config.executor')
  parser.add_argument('--wait', action='store_true',
                      help='slurm: wait for the jobs and print the results (default: return after submitting)')
  for flag, (field, kind, text) in SLURM_FLAGS.items():
    parser.add_argument(flag, type=kind, help=f'{text} (config.slurm.{field})')
  parser.add_argument('--sbatch', action='append', default=[], metavar='KEY=VALUE',
                      help='extra sbatch option, repeatable, e.g. --sbatch qos=high (config.slurm.sbatch)')


def apply_arguments(config: ml_collections.ConfigDict, args) -> ml_collections.ConfigDict:
  """Copies the flags of :func:`add_arguments` into ``config`` (they win over the sweep file)."""
  if args.executor:
    config.executor = args.executor
  for flag, (field, _, _) in SLURM_FLAGS.items():
    value = getattr(args, flag.lstrip('-').replace('-', '_'))
    if value is not None:
      config.slurm[field] = value
  if args.sbatch:
    config.slurm.sbatch = tuple(config.slurm.sbatch) + tuple(args.sbatch)
  return config
