"""The ``transferbench`` command line: ``run``, ``status``, ``config``, ``analyze``, ``estimate``,
``reproduce``, ``data``, ``bench``.

Every user-fixable problem ends as one line ``transferbench: error: ...`` and exit status 2; so
does a full disk (what was written completely is kept). A closed pipe on stdout (``| head``)
ends the command quietly.
"""

from __future__ import annotations

import argparse
import errno
import importlib.util
import os
import pathlib
import sys
from types import ModuleType
from typing import Sequence

from harness.errors import UserError

# The source checkout: benchmarks/ lives there, outside the installed packages.
CHECKOUT = pathlib.Path(__file__).resolve().parent.parent


def _format_results_table(results_dir: pathlib.Path) -> str:
  """Per condition and n: mean ± 95% CI of the final target accuracy over seeds.

  Runs that differ in another way than condition, n, task and seed (another model, k-shot size
  or training config: the strata of ``analysis.curves``) are rows of their own, with leading
  columns that say how they differ: averaging a 600-step and a 50-step run would measure neither.

  Args:
    results_dir: a sweep's results directory.

  Returns:
    The table as text, or a note pointing at ``transferbench status`` when no run is complete.
  """
  from analysis import final_accuracy_table
  from analysis.curves import STRATA
  from harness.results import load_curves
  curves = load_curves(results_dir)
  if curves.empty:
    return f'(no complete runs: see `transferbench status {results_dir}`)'
  table = final_accuracy_table(curves)
  # The pair shows in source -> target already.
  strata = [c for c in STRATA if c in table.columns and c != 'pair']
  widths = {c: max(len(c), *(len(str(v)) for v in table[c])) + 2 for c in strata}
  lines = [''.join(f'{c:<{widths[c]}}' for c in strata)
           + f"{'condition':<16}{'n':>3}  {'source -> target':<28}{'final accuracy':>24}{'seeds':>7}"]
  for row in table.itertuples(index=False):
    name = row.condition + ('+' if row.fine_tuned else '')
    ci = 'n/a' if row.ci != row.ci else f'{row.ci:.4f}'  # NaN with a single seed.
    lines.append(''.join(f'{str(getattr(row, c)):<{widths[c]}}' for c in strata)
                 + f'{name:<16}{row.n_layers:>3}  {row.source + " -> " + row.target:<28}'
                 f'{row.mean:>12.4f} ± {ci:<9}{row.count:>7}')
  return '\n'.join(lines)


def cmd_run(args: argparse.Namespace) -> int:
  """``transferbench run``: runs (or resumes) a sweep, then prints its results table.

  Returns:
    0, or 1 when a run failed or a problem was reported.
  """
  from harness import executors, sweeps
  config = sweeps.apply_overrides(sweeps.load_sweep(args.sweep, args.arg), args.overrides)
  config = executors.apply_arguments(config, args)
  if args.data_dir:
    config.data_dir = args.data_dir
  results = pathlib.Path(args.results or pathlib.Path('results') / config.name)
  try:
    outcome = executors.get(config.executor)(config, results, progress=not args.no_progress,
                                             wait_for_jobs=args.wait, echo=print)
  except OSError as e:
    if _disk_full(e) is None:
      raise
    raise UserError(f'{_disk_full_message(_disk_full(e))}; the complete runs in {results} are '
                    'kept: free space there and run the same command again to resume') from None
  report = outcome.report
  if report is None:  # submitted to a cluster, not waited for
    return 0
  print(f'{report.total} runs: {report.completed} trained, {report.skipped} already complete, '
        f'{len(report.failed)} failed ({report.seconds:.0f} s). Records in {results}/runs/')
  ex = report.execution
  if ex.get('families'):
    workers = f" over {ex['workers']} worker processes" if ex.get('workers', 1) > 1 else ''
    print(f"Execution: {', '.join(sorted(set(ex['strategies'].values())))}; {ex['families']} "
          f"program family(ies), {ex['programs_compiled']} programs compiled{workers} "
          f"({ex['cache_hits']} from the persistent cache); up to {ex.get('concurrent_runs', 1)} "
          f"run(s) at once; see {results}/execution.json")
  print()
  from analysis import measures
  rule = measures.rule_name(measures.DEFAULT_RULE, measures.DEFAULT_K)
  print(f'Final target accuracy ({rule}; mean ± 95% CI over seeds, t-distribution):')
  print(_format_results_table(results))
  for problem in outcome.problems:
    print(problem)
  if report.failed:
    print(f'\n{len(report.failed)} run(s) failed or did not run: see `transferbench status {results}`')
  if report.busy:
    print(f'\n{len(report.busy)} run(s) were being run by another worker on {results}: '
          'run the command again once it has finished to see them all')
  return 1 if report.failed or outcome.problems else 0


def cmd_status(args: argparse.Namespace) -> int:
  """``transferbench status``: counts of complete, failed and pending runs; failed ones listed."""
  from harness import runner
  from harness.results import ResultsStore
  results = pathlib.Path(args.results_dir)
  if not results.is_dir():
    raise UserError(f'no results directory {results}: run `transferbench run SWEEP --results {results}` first')
  groups = runner.sweep_status(results)
  print(f'{results}: ' + ', '.join(f'{len(v)} {k}' for k, v in groups.items()))
  store = ResultsStore(results)
  for run_id in groups['failed']:
    record = store.read_record(run_id)
    step = record.get('diverged_at_step')
    where = f' (diverged at step {step})' if step is not None else ''
    print(f"  failed  {run_id}  {record['labels']['condition']} n={record['labels']['n_layers']}"
          f"{where}: {record.get('error', '')}")
  for run_id in groups['corrupt']:
    print(f'  corrupt {run_id}: {store.record_path(run_id)} (re-running the sweep redoes it)')
  from harness import executors
  jobs = executors.queued_jobs_note(results)
  if jobs:
    print(jobs)
  return 0


def build_parser() -> argparse.ArgumentParser:
  """The ``transferbench`` parser: ``run`` and ``status`` here, the study commands registered by
  their modules (each ``register(subparsers)`` with ``func=run``)."""
  parser = argparse.ArgumentParser(
      prog='transferbench', description='Layer-wise feature transferability studies. Start with '
      '`transferbench run quickstart`; `transferbench run --help` lists the sweeps and '
      '`transferbench config SWEEP` their fields.')
  sub = parser.add_subparsers(dest='command', required=True)
  from harness import sweeps
  listed = sweeps.shipped()
  width = max(map(len, listed), default=0) + 2  # the longest name still gets a gap
  shipped = '\n'.join(f'  {name:<{width}}{doc}' for name, doc in listed.items())
  run = sub.add_parser(
      'run', help='run (or resume) a sweep', formatter_class=argparse.RawDescriptionHelpFormatter,
      description=f'Run a sweep (or resume it: complete runs are skipped), then print its table.\n\n'
      f'Shipped sweeps:\n{shipped}\n\nAny config field can be overridden: --config.FIELD=VALUE '
      '(e.g. --config.seeds=5\n--config.train.steps=1000). `transferbench config SWEEP` lists every '
      'field, its value\nand its meaning (harness/sweeps.py, FIELDS).')
  run.add_argument('sweep', help='sweep name (sweeps/NAME.py) or path to a sweep file')
  run.add_argument('--results', help='results directory (default: results/<sweep name>)')
  run.add_argument('--arg', help='string argument passed to get_config(arg)')
  run.add_argument('--data-dir', help='TFDS data directory (default: $TRANSFERBENCH_DATA_DIR or ~/tensorflow_datasets)')
  run.add_argument('--no-progress', action='store_true', help='no progress bar')
  from harness import executors
  executors.add_arguments(run)
  run.set_defaults(func=cmd_run)
  status = sub.add_parser(
      'status', help='count complete, failed and pending runs of a results directory',
      description='Count the complete, failed, corrupt, running and pending runs of a results '
      'directory (written by `transferbench run`) and list the failed ones with their error. '
      'Reads only; re-running the sweep redoes failed and corrupt runs.')
  status.add_argument('results_dir', help='a results directory, e.g. results/quickstart')
  status.set_defaults(func=cmd_status)
  from transferbench import config_command
  config_command.register(sub)
  from transferbench import analyze_command
  analyze_command.register(sub)
  from transferbench import estimate_command
  estimate_command.register(sub)
  from transferbench import reproduce_command
  reproduce_command.register(sub)
  from transferbench import import_command
  import_command.register(sub)
  _register_data(sub)
  _register_bench(sub)
  return parser


def _register_data(sub) -> None:
  """``transferbench data install`` (the embedded data's wheels) and ``transferbench data
  register NAME PATH`` (a user's own .npz or image folder as a data set)."""
  from harness import userdata
  data_cmd = sub.add_parser('data', help="install the embedded data sets, or register your own "
                            "(.npz or a folder of images per class) for dataset='NAME' in any sweep",
                            description='The embedded data sets (install) and data sets of your '
                            'own (register); see docs/data.md.')
  actions = data_cmd.add_subparsers(dest='action', required=True)
  register = actions.add_parser('register', help='build an .npz or image folder into the TFDS '
                                'data directory under a name', description=userdata.__doc__.split('\n')[0])
  userdata.add_arguments(register)
  register.set_defaults(func=userdata.run)
  from transferbench import data_command
  data_command.register(actions)


def _load_bench() -> ModuleType | None:
  """``benchmarks/bench.py`` of the source checkout (None in an installed, non-editable copy).

  Loaded from its file, so ``pip install -e .`` of a clone is enough and no other package named
  ``benchmarks`` on the path can stand in for it.
  """
  if 'benchmarks.bench' in sys.modules:
    return sys.modules['benchmarks.bench']
  path = CHECKOUT / 'benchmarks' / 'bench.py'
  if not path.is_file():
    return None
  spec = importlib.util.spec_from_file_location('benchmarks.bench', path)
  module = importlib.util.module_from_spec(spec)
  sys.modules[spec.name] = module
  spec.loader.exec_module(module)
  return module


def _register_bench(sub) -> None:
  """``transferbench bench`` from the checkout, or a subcommand that says where to get it."""
  bench = _load_bench()
  if bench is not None:
    bench.register(sub)
    return
  def missing(_):
    raise UserError('the benchmark lives in the source checkout (benchmarks/bench.py), not in the '
                    'installed package: clone the repository and `pip install -e .` there')
  stub = sub.add_parser('bench', help='time one small sweep (needs the source checkout)')
  stub.set_defaults(func=missing, any_options=True)  # its options are the missing module's


def main(argv: Sequence[str] | None = None) -> int:
  """Entry point of the ``transferbench`` console script.

  Args:
    argv: the arguments (default: ``sys.argv[1:]``); ``--config.FIELD=VALUE`` overrides are
      collected for ``run`` and ``reproduce``.

  Returns:
    The exit status: the command's, or 2 after a one-line ``transferbench: error: ...``.
  """
  argv = list(sys.argv[1:] if argv is None else argv)
  parser = build_parser()
  args, rest = parser.parse_known_args(argv)
  overrides = [a for a in rest if a.startswith('--config.')]
  unknown = [a for a in rest if not a.startswith('--config.')]
  if getattr(args, 'any_options', False):
    unknown = overrides = []
  if unknown or (overrides and args.command not in ('run', 'reproduce', 'config')):
    parser.error(f"unrecognized arguments: {' '.join(unknown or overrides)}")
  args.overrides = overrides
  try:
    code = args.func(args) or 0
    sys.stdout.flush()  # here, where a closed pipe is caught, not at exit
    return code
  except UserError as e:
    print(f'transferbench: error: {e}', file=sys.stderr)
    return 2
  except BrokenPipeError:
    return _stdout_closed()
  except Exception as e:
    full = _disk_full(e)
    if full is None:
      raise
    print(f'transferbench: error: {_disk_full_message(full)}: free space there and run the '
          'command again', file=sys.stderr)
    return 2


def _disk_full(error: BaseException | None) -> OSError | None:
  """The ``OSError(ENOSPC)`` in ``error``'s chain of causes, if a full disk is what failed."""
  seen = set()
  while error is not None and id(error) not in seen:
    if isinstance(error, OSError) and error.errno == errno.ENOSPC:
      return error
    seen.add(id(error))
    error = error.__cause__ or error.__context__
  return None


def _disk_full_message(error: OSError) -> str:
  where = f' writing {error.filename}' if error.filename else ''
  return f'the disk is full (no space left on the device{where})'


def _stdout_closed() -> int:
  """The reader of stdout went away (``transferbench status DIR | head -1``): stop quietly.

  Python's recipe: point stdout at /dev/null so that the flush at exit does not raise again.
  Returns 141 (128 + SIGPIPE), the status of a shell tool stopped by a closed pipe.
  """
  try:
    devnull = os.open(os.devnull, os.O_WRONLY)
    os.dup2(devnull, sys.stdout.fileno())
  except (OSError, ValueError):  # stdout without a file descriptor (captured)
    pass
  return 141


if __name__ == '__main__':
  sys.exit(main())
