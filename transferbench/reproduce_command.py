"""``transferbench reproduce STUDY``: train a study's sweep (or read curves) and check its claims.

The command line and the part that launches training live here, in the application layer;
:mod:`analysis.reproduce` turns curves into claim verdicts and never trains. Two sources of
curves:

* a results directory (``--results``, default ``results/<sweep name>``): the study's sweep is run
  or resumed first unless ``--analyze-only``;
* ``--curves FILE``: any long-format curves with ``pair``/``pair_kind`` (a user's own logs, or
  the published networks via :func:`analysis.reference.yosinski2014_curves`); nothing is trained.

The studies are the rows of :data:`analysis.studies.STUDIES`; each names its pipeline
(:data:`PIPELINES`): ``curves`` (the above), ``resets`` (evaluation-only per-layer resets of the
trained base nets, :mod:`transferbench.resets_pipeline`), ``basins`` (fine-tuned and scratch
pairs, :mod:`transferbench.basins_pipeline`) or ``lp_ft`` (linear probe, fine-tune and LP-FT
networks evaluated in and out of distribution, :mod:`transferbench.lp_ft_pipeline`). A results
directory written by another study's sweep (its ``sweep.json``) is refused.
"""

from __future__ import annotations

import argparse
import functools
import pathlib

from analysis import convergence as convergence_lib
from analysis import measures as measures_lib
from analysis import reproduce
from analysis import stats
from analysis import studies
from harness.errors import UserError


def register(subparsers) -> argparse.ArgumentParser:
  """Adds the ``reproduce`` subcommand (``func=run``) to an argparse subparsers object."""
  p = subparsers.add_parser(
      'reproduce', help='run a published study at small scale and check its claims',
      formatter_class=argparse.RawDescriptionHelpFormatter,
      epilog='studies:\n' + studies.listing(),
      description='Run (or resume) a study\'s sweep, or read --curves FILE, then check the '
      'paper\'s claims (reproduced / not reproduced / inconclusive) with one-sided t-tests over '
      'the independent units, Holm over each claim\'s parts; dotted overrides like '
      '--config.seeds=3 follow. See docs/analysis/pooling_and_claims.md.')
  p.add_argument('study', metavar='STUDY',
                 help=f'the study to reproduce: {", ".join(sorted(studies.STUDIES))} (below)')
  p.add_argument('--results', help='results directory (default: results/<sweep name>)')
  p.add_argument('--curves', metavar='FILE',
                 help='check the claims on this long-format curves file (with pair and '
                 'pair_kind columns) instead of a results directory; trains nothing')
  p.add_argument('--analyze-only', action='store_true',
                 help='do not train: analyse the runs already in --results')
  p.add_argument('--out', help='output directory (default: <results>/reproduce, or '
                 'reproduce_<stem> next to --curves)')
  p.add_argument('--arg', help="string argument of the sweep's get_config(arg), e.g. tiny")
  p.add_argument('--data-dir', help='TFDS data directory (default: $TRANSFERBENCH_DATA_DIR)')
  p.add_argument('--no-progress', action='store_true', help='no progress bar')
  p.add_argument('--no-figures', action='store_true', help='tables only')
  p.add_argument('--rule', choices=tuple(measures_lib.FINAL_RULES), default=measures_lib.DEFAULT_RULE,
                 help=f'score of a run (default {measures_lib.DEFAULT_RULE}, the project-wide '
                 "final-score rule; best_k for the paper's mean of the k best evaluations on the "
                 "paper's schedule; last for tables with one evaluation per run)")
  p.add_argument('--k', type=int, default=None,
                 help=f'evaluations of the k rules (default {measures_lib.PAPER_K} for best_k, '
                 f'{measures_lib.DEFAULT_K} otherwise)')
  p.add_argument('--alpha', type=float, default=stats.ALPHA, help='significance level (0.05)')
  p.add_argument('--margin', type=float, default=reproduce.Settings.margin,
                 help='non-inferiority margin of "AnB+ nowhere below base", as a fraction of '
                 'base (default 0.01)')
  p.add_argument('--dip-n', type=int, help='n of the fragile co-adaptation dip, fixed in advance '
                 '(default: the paper\'s 5 of 7 layers scaled to the deepest n, round(5 N / 7))')
  p.add_argument('--convergence-tol', type=float, default=reproduce.Settings.convergence_tolerance,
                 help='a base net converged iff its test accuracy gained less than this over the '
                 'last 20%% of training (default 0.002: 0.2 points); an unconverged base makes '
                 'fragile co-adaptation inconclusive')
  p.set_defaults(func=run)
  return p


def _settings(args: argparse.Namespace) -> reproduce.Settings:
  if not 0 < args.alpha < 1:
    raise UserError(f'--alpha {args.alpha} must be in (0, 1)')
  if not 0 <= args.margin < 1:
    raise UserError(f'--margin {args.margin} must be a fraction of base in [0, 1), e.g. 0.01')
  if args.k is None:
    args.k = measures_lib.default_k(args.rule)
  if args.k < 1:
    raise UserError(f'--k {args.k} must be a positive integer')
  if not args.convergence_tol > 0:
    raise UserError(f'--convergence-tol {args.convergence_tol} must be an accuracy gain > 0, '
                    'e.g. 0.002')
  return reproduce.Settings(rule=args.rule, k=args.k, alpha=args.alpha, margin=args.margin,
                            dip_n=args.dip_n, convergence_tolerance=args.convergence_tol)


def _sweep_config(args: argparse.Namespace, study: studies.Study):
  from harness import sweeps
  config = sweeps.apply_overrides(sweeps.load_sweep(study.sweep, args.arg),
                                  getattr(args, 'overrides', []))
  if args.data_dir:
    config.data_dir = args.data_dir
  return config


def _sweep_names(study: studies.Study) -> set[str]:
  """The config names a study's sweeps write (with their default and their tiny argument)."""
  return {_config_name(sweep, arg)
          for sweep in (study.sweep, *study.also) for arg in (None, 'tiny')}


@functools.lru_cache(maxsize=None)
def _config_name(sweep: str, arg: str | None) -> str:
  """The ``name`` of a sweep's config, loaded once per process (the ownership check asks for
  every study's sweeps)."""
  from harness import sweeps
  return sweeps.load_sweep(sweep, arg).name


def _check_owner(results: pathlib.Path, expected: str, study: str) -> None:
  """Refuses a results directory whose sweep.json records another study's sweep."""
  from harness.results import load_sweep_config
  recorded = (load_sweep_config(results) or {}).get('name') if results.is_dir() else None
  if recorded is None or recorded == expected:
    return
  owners = {name: _sweep_names(s) for name, s in studies.STUDIES.items()}
  if recorded in owners[study]:  # another sweep of the same study
    return
  studies.check_results_belong(str(results), recorded, expected, study,
                               studies.study_of_sweep(recorded, owners))


def _results_curves(args: argparse.Namespace, study: studies.Study):
  """(curves, results directory, default output) after running the sweep unless --analyze-only."""
  from harness.results import load_curves
  config = _sweep_config(args, study)
  results = pathlib.Path(args.results or pathlib.Path('results') / config.name)
  _check_owner(results, config.name, args.study)
  if args.analyze_only:
    if not results.is_dir():
      raise UserError(f'no results directory {results}: run `transferbench reproduce '
                      f'{args.study}` first, or pass --results DIR')
  else:
    from harness import runner
    report = runner.run_sweep(config, results, progress=not args.no_progress)
    print(f'{report.total} runs: {report.completed} trained, {report.skipped} already complete, '
          f'{len(report.failed)} failed ({report.seconds:.0f} s). Records in {results}/runs/')
    if getattr(report, 'busy', None):
      print(f'{len(report.busy)} run(s) are being run by another worker on {results}: the claims '
            'below leave them out; run the command again once it has finished')
  curves = load_curves(results)
  if curves.empty:
    raise UserError(f'no complete runs in {results}: run `transferbench reproduce` without '
                    '--analyze-only first')
  return curves, results, results / 'reproduce'


def _curves_pipeline(args: argparse.Namespace, study: studies.Study,
                     settings: reproduce.Settings) -> int:
  """Claims on training curves (a results directory, or --curves FILE)."""
  if args.curves:
    if args.analyze_only or args.results:
      raise UserError('--curves reads a curves file: drop --results / --analyze-only')
    from analysis.curves import read_curves
    source = pathlib.Path(args.curves)
    curves = read_curves(source)
    default_out = source.parent / f'reproduce_{source.name.split(".")[0]}'
  else:
    curves, source, default_out = _results_curves(args, study)
  out = pathlib.Path(args.out) if args.out else default_out
  draw = not args.no_figures
  results, runs, rel, convergence, written = reproduce.reproduce_curves(
      curves, study, settings, out, draw=draw and study.figure is None)
  if draw and study.figure is not None:
    from analysis.plotting import save
    written += save(study.figure(rel), out, args.study)
  return _report(f'{args.study}: claims of the paper vs {len(runs)} runs in {source} '
                 f'({settings.describe()})', results, written, out,
                 convergence_lib.text(convergence, settings.convergence_rule()))


def _report(header: str, claims, written: list, out: pathlib.Path, convergence: str = '') -> int:
  """Prints a study's claims (and its nets' convergence, if checked) and what it wrote; 0."""
  print(f'\n{header}')
  print(reproduce.claims_text(claims))
  if convergence:
    print('\n' + convergence)
  print(f'\nWrote {len(written)} files to {out}')
  return 0


def _network_results(args: argparse.Namespace, study: studies.Study):
  """(results directory, output directory) of a study measured on trained networks, not curves."""
  if args.curves:
    raise UserError(f'{args.study} is measured on the trained networks, not on curves: drop '
                    '--curves (pass --results DIR)')
  _, results, default_out = _results_curves(args, study)
  return results, pathlib.Path(args.out) if args.out else default_out


def _resets_pipeline(args: argparse.Namespace, study: studies.Study,
                     settings: reproduce.Settings) -> int:
  """Evaluation-only: per-layer resets of the sweep's trained base nets, then the claims."""
  from transferbench import resets_pipeline
  results, out = _network_results(args, study)
  table = resets_pipeline.measure(results, _sweep_config(args, study).data_dir or None)
  claims, written = resets_pipeline.check(table, study, settings, out, draw=not args.no_figures)
  return _report(f'{args.study}: claims of the paper vs {table["run_id"].nunique()} networks in '
                 f'{results}', claims, written, out)


def _basins_pipeline(args: argparse.Namespace, study: studies.Study,
                     settings: reproduce.Settings) -> int:
  """Base nets, then fine-tuned pairs (weights kept); barriers, distances and CKA; the claims."""
  from transferbench import basins_pipeline
  results, out = _network_results(args, study)
  config = _sweep_config(args, study)
  table = basins_pipeline.measure(results, config, config.data_dir or None,
                                  train=not args.analyze_only)
  claims, written = basins_pipeline.check(table, study, settings, out)
  return _report(f'{args.study}: claims of the paper vs {len(table)} replicate(s) in {results}',
                 claims, written, out)


def _lp_ft_pipeline(args: argparse.Namespace, study: studies.Study,
                    settings: reproduce.Settings) -> int:
  """Base nets, then LP, FT and LP-FT per seed (weights kept); ID, OOD accuracy and feature
  distortion of each network; the claims."""
  from transferbench import lp_ft_pipeline
  config = _sweep_config(args, study)
  ood = lp_ft_pipeline.ood_name(config)  # before training: a sweep without one is refused
  results, out = _network_results(args, study)
  table = lp_ft_pipeline.measure(results, config, config.data_dir or None,
                                 train=not args.analyze_only)
  converged = lp_ft_pipeline.source_convergence(results, settings)
  claims, written = lp_ft_pipeline.check(table, study, settings, out, ood,
                                         draw=not args.no_figures, converged=converged)
  return _report(f'{args.study}: claims of the paper vs {table["seed"].nunique()} seed(s) in '
                 f'{results} (OOD = {ood})', claims, written, out,
                 convergence_lib.text(converged, settings.convergence_rule()))


PIPELINES = {'curves': _curves_pipeline, 'resets': _resets_pipeline,
             'basins': _basins_pipeline, 'lp_ft': _lp_ft_pipeline}


def run(args: argparse.Namespace) -> int:
  """Measures the study (training unless --analyze-only or --curves), checks and prints the claims."""
  study = studies.get(args.study)
  return PIPELINES[study.pipeline](args, study, _settings(args))
