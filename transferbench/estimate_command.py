"""``transferbench estimate``: transferability estimators per copied layer.

Two uses. ``transferbench estimate RESULTS`` scores the source networks of a results directory at
every layer n and correlates the scores with the measured AnB / AnB+ accuracy
(:mod:`analysis.estimate`). ``transferbench estimate --source-checkpoint DIR DIR ... --target
DATASET`` ranks several networks (imported public networks or checkpoints trained by
transferbench) for one target at every layer: model selection (:mod:`analysis.model_selection`).

The command line calls :func:`register` on its subparsers; :func:`run` does the work. This is
the application layer: argument parsing and printing here, the computation in :mod:`analysis`.
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
      'estimate', help='transferability estimators (LogME, LEEP, NCE, H-score, kNN, probe) per '
      'layer; model selection over several networks',
      description='With RESULTS: score the source networks of a results directory at every layer '
      'n on the target training set with transferability estimators, and correlate the scores '
      'with the measured AnB / AnB+ accuracy (scores.csv, joined.csv, correlations.csv, figures). '
      'With --source-checkpoint DIR DIR ... --target DATASET: rank those networks for the target '
      "at every one of their layers and by their best layer (scores.csv, rankings.csv, "
      'model_selection.md, a figure of score vs relative depth; with --accuracy, the rankings '
      "against the networks' fine-tuned accuracy). See docs/zoo.md.")
  p.add_argument('results', metavar='RESULTS', nargs='?',
                 help='results directory of a sweep with transfer runs')
  p.add_argument('--source-checkpoint', dest='source_checkpoints', action='extend', nargs='+',
                 metavar='DIR', help='networks to rank (repeat it or list several): imported '
                 "(`transferbench import-weights`) or a run's checkpoint/ directory")
  p.add_argument('--target', metavar='DATASET', help='target data set of --source-checkpoint')
  p.add_argument('--target-classes', type=int, nargs='+', metavar='C',
                 help='classes of the target (default all)')
  p.add_argument('--image-size', type=int, metavar='PIXELS',
                 help='input size of networks that resize (imported ones; default each '
                 "checkpoint's, 224 for ImageNet networks): smaller for a quick CPU check")
  p.add_argument('--accuracy', metavar='CSV', help="each network's fine-tuned accuracy on the "
                 'target (columns network, accuracy; network = the checkpoint directory name): '
                 'the rankings are correlated with it')
  p.add_argument('--out', metavar='DIR', help='output directory (default: RESULTS/estimates; '
                 'required with --source-checkpoint)')
  p.add_argument('--max-examples', type=int, default=1000,
                 help='target training examples scored, a seeded subsample (default 1000)')
  p.add_argument('--source-examples', type=int, default=1000,
                 help='source training examples for the per-layer source classifier of LEEP/NCE '
                 '(default 1000)')
  p.add_argument('--estimators', nargs='+', metavar='NAME',
                 help=f"estimators to compute (default all: {' '.join(ESTIMATORS)}; with "
                 '--source-checkpoint, all but LEEP and NCE, which need the source data)')
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


def _settings(args: argparse.Namespace, estimators: tuple[str, ...] | None):
  from analysis import estimate
  settings = estimate.EstimateSettings(
      max_examples=args.max_examples, source_examples=args.source_examples, max_dim=args.max_dim,
      batch_size=args.batch_size, knn_k=args.knn_k, folds=args.folds, seed=args.seed,
      estimators=estimators)
  estimate.check_settings(settings)
  return settings


def run(args: argparse.Namespace) -> int:
  """Dispatches to the results directory or the model-selection use; returns 0."""
  networks_only = {'--target': args.target, '--target-classes': args.target_classes,
                   '--image-size': args.image_size, '--accuracy': args.accuracy}
  if args.source_checkpoints and args.results:
    raise UserError('give either RESULTS or --source-checkpoint DIR ..., not both')
  if args.source_checkpoints:
    if (args.rule, args.k) != (ACCURACY_RULE, ACCURACY_K):
      raise UserError('--rule and --k score the runs of a results directory (RESULTS); the '
                      "networks' accuracies come from --accuracy FILE: drop --rule/--k")
    return run_networks(args)
  if not args.results:
    raise UserError('nothing to score: give a results directory (RESULTS) or networks to rank '
                    '(--source-checkpoint DIR DIR ... --target DATASET)')
  given = [name for name, value in networks_only.items() if value is not None]
  if given:
    raise UserError(f'{given[0]} goes with --source-checkpoint, not with RESULTS')
  return run_results(args)


def run_results(args: argparse.Namespace) -> int:
  """Scores a results directory's sources, joins, correlates, writes and prints; returns 0."""
  from analysis import estimate  # Late: keeps `transferbench --help` fast.
  results = pathlib.Path(args.results)
  if not results.is_dir():
    raise UserError(f'no results directory {results}: run `transferbench run SWEEP --results {results}` first')
  settings = _settings(args, tuple(args.estimators) if args.estimators else None)
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
  _print_written(out, written)
  return 0


# Model selection scores what needs only the target by default: LEEP and NCE need each source's
# own training data (ImageNet for an imported network), rarely at hand.
def _default_estimators() -> tuple[str, ...]:
  return tuple(name for name, e in ESTIMATORS.items() if not e.needs_source)


def _checked_networks(args: argparse.Namespace, settings) -> tuple[list, object, object]:
  """The networks, the target task and the accuracy (or None), every input checked.

  Raises:
    UserError: the first problem (see docs/zoo.md, section 4), before anything is scored.
  """
  from analysis import model_selection as ms
  from harness import data, tasks
  if not args.target:
    raise UserError('--source-checkpoint needs the target data set: add --target DATASET')
  if not args.out:
    raise UserError('--source-checkpoint needs an output directory: add --out DIR')
  if args.image_size is not None and args.image_size < 8:
    raise UserError(f'--image-size {args.image_size} is too small: give 8 pixels or more')
  networks = ms.load_networks(args.source_checkpoints)
  accuracy = ms.read_accuracy(args.accuracy, networks) if args.accuracy else None
  pair = {'kind': 'target', 'dataset': args.target}
  if args.target_classes:
    pair['classes'] = tuple(args.target_classes)
  _, target = tasks.make_task_pair(pair, args.data_dir)
  ms.check_inputs(networks, data.dataset_info(target.dataset, args.data_dir).input_shape,
                  args.image_size)
  ms.check_source_data(networks, settings, args.data_dir)
  return networks, target, accuracy


def run_networks(args: argparse.Namespace) -> int:
  """Checks everything, scores and ranks the networks, writes and prints; returns 0.

  Every check runs before any network is scored, so bad input writes nothing.
  """
  from analysis import model_selection as ms  # Late: keeps `transferbench --help` fast.
  from analysis.features import task_sample
  settings = _settings(args, tuple(args.estimators) if args.estimators else _default_estimators())
  networks, target, accuracy = _checked_networks(args, settings)
  sample = task_sample(target, args.data_dir, settings.max_examples, settings.seed)
  scores = ms.score_networks(networks, target, sample, settings, args.data_dir, args.image_size,
                             show_progress=not args.no_progress)
  ranked = ms.rankings(scores)
  corr = ms.accuracy_correlations(ranked, accuracy) if accuracy is not None else None
  about = (f'{len(networks)} networks scored on {target.name} ({len(target.classes)} classes; '
           f'{len(sample[1])} training examples, class-stratified, seed {args.seed}).')
  out = pathlib.Path(args.out)
  written = ms.write_outputs(out, scores, ranked, corr, about, figures_too=not args.no_figures)
  print(about)
  _print_rankings(ranked, settings.estimators)
  _print_written(out, written)
  return 0


def _print_rankings(ranked, estimators: tuple[str, ...]) -> None:
  """Per estimator, the networks by their best layer and at their last layer."""
  for name in estimators:
    mine = ranked[ranked['estimator'] == name]
    for scope, label in (('best', 'by best layer'), ('last', 'at last layer')):
      rows = mine[(mine['scope'] == scope) & mine['rank'].notna()]
      line = '  '.join(f'{int(r.rank)}. {r.network} (n={r.n_layers}, {r.score:.4g})'
                       for r in rows.itertuples(index=False))
      print(f'{name:<13} {label:<14} {line}')


def _print_written(out: pathlib.Path, written: list[pathlib.Path]) -> None:
  print(f'Wrote {len(written)} files to {out}:')
  for path in written:
    print(f'  {path}')
