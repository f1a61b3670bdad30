"""``transferbench estimate RESULTS``: transferability estimators per copied layer vs measured transfer.

The command line calls :func:`register` on its subparsers; :func:`run` does the work. This is
the application layer: argument parsing and printing here, the computation in
:mod:`analysis.estimate`, results read through :mod:`harness.results`.
"""

from __future__ import annotations

import argparse
import pathlib

from analysis import measures as measures_lib
from analysis.estimate import ACCURACY_K, ACCURACY_RULE
from analysis.estimators import ESTIMATORS
from harness import results as results_api
from harness.errors import UserError


def register(subparsers) -> argparse.ArgumentParser:
  """Adds the ``estimate`` subcommand (``func=run``) to an argparse subparsers object."""
  p = subparsers.add_parser(
      'estimate', help='transferability estimators (LogME, LEEP, NCE, H-score, kNN, probe) per layer',
      description='Score the source networks of a results directory at every layer n on the '
      'target training set with transferability estimators, and correlate the scores with the '
      'measured AnB / AnB+ accuracy. Writes scores.csv, joined.csv, correlations.csv and '
      'figures (PNG + PDF).')
  p.add_argument('results', metavar='RESULTS', help='results directory of a sweep with transfer runs')
  p.add_argument('--out', metavar='DIR', help='output directory (default: RESULTS/estimates)')
  p.add_argument('--max-examples', type=int, default=1000,
                 help='target training examples scored, a seeded subsample (default 1000)')
  p.add_argument('--source-examples', type=int, default=1000,
                 help='source training examples for the per-layer source classifier of LEEP/NCE '
                 '(default 1000)')
  p.add_argument('--estimators', nargs='+', choices=tuple(ESTIMATORS), metavar='NAME',
                 help=f"estimators to compute (default all: {' '.join(ESTIMATORS)})")
  p.add_argument('--max-dim', type=int, default=4096,
                 help='conv feature maps above this many values are average-pooled (default 4096)')
  p.add_argument('--knn-k', type=int, default=5, help='neighbours of the kNN baseline (default 5)')
  p.add_argument('--folds', type=int, default=3, help='folds of the linear probe (default 3)')
  p.add_argument('--rule', choices=tuple(measures_lib.FINAL_RULES), default=ACCURACY_RULE,
                 help=f'final-accuracy rule of the measured accuracy (default {ACCURACY_RULE})')
  p.add_argument('--k', type=int, default=ACCURACY_K,
                 help=f'evaluations of the best_k/last_k rules (default {ACCURACY_K})')
  p.add_argument('--seed', type=int, default=0, help='seed of the subsamples and folds (default 0)')
  p.add_argument('--batch-size', type=int, default=256, help='examples per forward pass (default 256)')
  p.add_argument('--data-dir', help="TFDS data directory (default: the sweep's, else "
                 '$TRANSFERBENCH_DATA_DIR or ~/tensorflow_datasets)')
  p.add_argument('--no-figures', action='store_true', help='write the tables only')
  p.add_argument('--no-progress', action='store_true', help='no progress bar')
  p.set_defaults(func=run)
  return p


def _data_dir(results: pathlib.Path, given: str | None) -> str | None:
  """--data-dir, else the data_dir recorded with the sweep, else None (the default)."""
  if given:
    return given
  return (results_api.load_sweep_config(results) or {}).get('data_dir') or None


def run(args: argparse.Namespace) -> int:
  """Scores, joins, correlates, writes and prints; returns 0."""
  from analysis import estimate  # Late: keeps `transferbench --help` fast.
  results = pathlib.Path(args.results)
  if not results.is_dir():
    raise UserError(f'no results directory {results}: run `transferbench run SWEEP --results {results}` first')
  settings = estimate.EstimateSettings(
      max_examples=args.max_examples, source_examples=args.source_examples, max_dim=args.max_dim,
      batch_size=args.batch_size, knn_k=args.knn_k, folds=args.folds, seed=args.seed,
      estimators=tuple(args.estimators) if args.estimators else None)
  sources, notes = estimate.find_sources(results)
  accuracy = estimate.measured_accuracy(results, rule=args.rule, k=args.k)
  scores = estimate.score_sources(sources, settings, _data_dir(results, args.data_dir),
                                  show_progress=not args.no_progress)
  joined = estimate.join_scores(scores, accuracy)
  per_run = estimate.join_runs(scores, estimate.run_accuracy(results, rule=args.rule, k=args.k))
  corr = estimate.correlations(joined, per_run)
  out = pathlib.Path(args.out) if args.out else results / 'estimates'
  written = estimate.write_outputs(out, scores, joined, per_run, corr,
                                   figures_too=not args.no_figures, rule=args.rule, k=args.k)
  for note in notes:
    print(f'note: {note}')
  pairs = joined[['source', 'target']].drop_duplicates()
  print(f'{len(sources)} source network(s), {len(pairs)} source-target pair(s), '
        f'{scores["n_layers"].nunique()} layer(s), {settings.max_examples} target examples at most.')
  print(f'Correlation of seed-mean score with measured final accuracy ({args.rule}; '
        "'layers': seed means across n, 'runs': single runs; per pair, averaged over pairs):")
  print(estimate.summary_table(corr, rule=args.rule, k=args.k))
  print(f'Wrote {len(written)} files to {out}:')
  for path in written:
    print(f'  {path}')
  return 0
