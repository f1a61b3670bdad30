"""``transferbench analyze CURVES_OR_RESULTS_DIR``: tables and figures of a transfer study.

``transferbench.cli`` calls :func:`register` on its subparsers; :func:`run` does the work.
"""

from __future__ import annotations

import argparse
import pathlib

from analysis import measures as measures_lib
from analysis import stats
from analysis.reference import YOSINSKI2014_CSV


def default_out(path: str | pathlib.Path) -> pathlib.Path:
  """``<dir>/analysis`` for a results directory, ``analysis_<stem>`` next to a curves file."""
  path = pathlib.Path(path)
  if path.is_dir():
    return path / 'analysis'
  stem = path.name.split('.')[0]
  return path.parent / f'analysis_{stem}'


def register(subparsers) -> argparse.ArgumentParser:
  """Adds the ``analyze`` subcommand (``func=run``) to an argparse subparsers object."""
  p = subparsers.add_parser(
      'analyze', help='start, slope, asymptote, negative transfer and decomposition of curves',
      description='Analyse long-format learning curves (a CSV/Parquet file or a results '
      'directory): writes runs.csv, summary.csv, decomposition.csv, summary.md, summary.tex and '
      'figures (PNG + PDF). See analysis/README.md for the formulas.')
  p.add_argument('curves', metavar='CURVES_OR_RESULTS_DIR',
                 help='curves file (.csv, .csv.gz, .tsv, .parquet) or results directory')
  p.add_argument('--out', metavar='DIR', help='output directory (default: <input>/analysis for '
                 'a directory, analysis_<stem> next to a file)')
  p.add_argument('--threshold', type=float, default=0.9,
                 help="time to threshold: fraction of scratch's asymptote to reach (default 0.9)")
  p.add_argument('--k', type=int, default=None,
                 help=f'evaluations averaged by the best-k and last-k rules (default '
                 f'{measures_lib.DEFAULT_K} for last_k, {measures_lib.PAPER_K} for best_k as '
                 f'Yosinski et al. 2014)')
  p.add_argument('--rule', choices=tuple(measures_lib.FINAL_RULES),
                 default=measures_lib.DEFAULT_RULE,
                 help=f'asymptote rule of the tables, threshold, decomposition and figures '
                 f'(default {measures_lib.DEFAULT_RULE}: '
                 f'{measures_lib.rule_name(measures_lib.DEFAULT_RULE, measures_lib.DEFAULT_K)}; '
                 f'best_k with k 10 is the paper\'s rule)')
  p.add_argument('--early-step', type=float, default=None,
                 help='step of the early-skill measure (default: per target, the first evaluation '
                 f'at or after {measures_lib.EARLY_FRACTION:g} of the budget)')
  p.add_argument('--reference', choices=('yosinski2014', 'none'), default='yosinski2014',
                 help='overlay published numbers in a Fig.-2-style figure (default yosinski2014)')
  p.add_argument('--seed', type=int, default=0, help='seed of the bootstrap (default 0)')
  p.add_argument('--n-boot', type=int, default=10000,
                 help='bootstrap resamples per comparison (default 10000)')
  p.add_argument('--alpha', type=float, default=stats.ALPHA,
                 help='family-wise error rate of the verdicts, per measure (Holm; default 0.05)')
  p.add_argument('--test', choices=stats.TEST_CHOICES, default='t',
                 help='test of mean gaps: t (paired/Welch, default) or permutation (exact)')
  p.add_argument('--no-figures', action='store_true', help='write the tables only')
  p.set_defaults(func=run)
  return p


def run(args: argparse.Namespace) -> int:
  """Reads the curves, analyses them, writes the report, prints the summary; returns 0."""
  import analysis  # Late: keeps `transferbench --help` fast.
  curves = analysis.read_curves(args.curves)
  result = analysis.analyze(curves, threshold=args.threshold, k=args.k, rule=args.rule,
                            n_boot=args.n_boot, seed=args.seed, alpha=args.alpha, test=args.test,
                            early_step=args.early_step)
  out = pathlib.Path(args.out) if args.out else default_out(args.curves)
  reference = args.reference
  if reference == 'yosinski2014' and not YOSINSKI2014_CSV.exists():
    print(f'note: {YOSINSKI2014_CSV} not found (not a source checkout): no reference overlay')
    reference = 'none'
  written = analysis.write_report(result, out, reference=reference, figures=not args.no_figures)
  print(analysis.report.report_markdown(result))
  print(f'Wrote {len(written)} files to {out}:')
  for path in written:
    print(f'  {path}')
  return 0
