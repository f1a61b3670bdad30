"""Transferability estimators per copied layer, and how well they predict measured transfer.

For every transfer source of a results directory (a trained network some AnB run copies layers
from: a scratch run's checkpoint, or a ``source_checkpoint``) and every target task it was
transferred to, and every n = 1 .. L-1, the estimators of :mod:`analysis.estimators` score the
source network's features after layer n on a seeded subsample of the target training set. These
scores are then compared with the measured final accuracy of AnB (copied, frozen) and AnB+
(copied, fine-tuned) at the same n, averaged over seeds.

Per-layer LEEP and NCE. Both need the source model's predictions over its own classes, which a
network only makes at its top. At layer n the source head is replaced by a linear classifier of
the *source* task fitted on the source network's layer-n features of a subsample of the source
training set (:func:`analysis.estimators.fit_source_classifier`); its class probabilities on the
target examples are theta(x) for LEEP and its argmax is z for NCE. At n = L-1 this classifier
sees exactly what the real head sees and approximates it; below, it measures how much
source-task information layer n makes linearly available. One definition at every n keeps the
comparison across layers free of a change of method.

Correlations (Kendall tau-b, weighted tau with scipy's hyperbolic weights on the top ranks, and
Pearson r) between the seed-mean score and the seed-mean accuracy are computed:

* ``layers``: per source-target pair, across n (does the estimator rank the layers right?);
* ``runs``: per source-target pair, over single transfer runs (every seed and n): the score of
  the source network a run copies from vs that run's accuracy (more points, with seed noise);
* ``pairs``: per n, across source-target pairs (needs at least 3 pairs);
* ``all``: over every (pair, n) point, when there are several pairs.
"""

from __future__ import annotations

import dataclasses
import pathlib
import warnings
from typing import Iterable

import numpy as np
import pandas as pd

from harness.errors import UserError
from harness.results import ResultsStore

MEASURES = {False: 'AnB', True: 'AnB+'}  # fine_tuned -> Yosinski's label of the transfer runs.
SCORE_COLUMNS = ('source_run', 'source', 'target', 'seed', 'n_layers', 'estimator', 'score')
MIN_POINTS = 3  # Fewer points than this give no correlation (NaN).


@dataclasses.dataclass(frozen=True)
class Source:
  """A trained source network and the target tasks it was transferred to.

  Attributes:
    source_id: run id of the source (scratch) run, or the checkpoint path.
    checkpoint: directory of its checkpoint.
    task: its training task (the source task A).
    seed: its seed (-1 for an external checkpoint shared by every seed).
    targets: target tasks of the transfer runs that copy from it.
    strata: model / examples_per_class of those runs, for joining with their accuracies.
  """
  source_id: str
  checkpoint: pathlib.Path
  task: object
  seed: int
  targets: tuple
  strata: tuple[tuple[str, object], ...] = ()


def find_sources(results_dir: str | pathlib.Path) -> tuple[list[Source], list[str]]:
  """The transfer sources of a results directory whose checkpoints exist.

  Args:
    results_dir: a directory written by ``transferbench run``.

  Returns:
    ``(sources, notes)``: the sources, sorted by source task, seed and id; notes name sources
    skipped because their checkpoint is missing.

  Raises:
    UserError: no results, no complete transfer (AnB) run, or no source checkpoint.
  """
  from harness import tasks
  store = ResultsStore(results_dir)
  if not store.runs_dir.is_dir():
    raise UserError(f'no results in {results_dir}: run `transferbench run SWEEP --results '
                    f'{results_dir}` first')
  found: dict[str, dict] = {}
  for record in store.records():
    spec = record['spec']
    if record.get('status') != 'complete' or spec['condition'] != 'transfer':
      continue
    source_id = spec.get('source_run') or spec.get('source_checkpoint')
    entry = found.setdefault(source_id, {'targets': {}, 'spec': spec})
    entry['targets'][spec['target']['name']] = tasks.TaskSpec.from_dict(spec['target'])
  if not found:
    raise UserError(f'no complete transfer (AnB) runs in {results_dir}: estimators need a sweep '
                    "whose conditions include 'transfer'")
  sources, notes = [], []
  for source_id, entry in found.items():
    spec = entry['spec']
    external = not spec.get('source_run')
    checkpoint = pathlib.Path(source_id) if external else store.checkpoint_dir(source_id)
    if not (checkpoint / 'meta.json').is_file():
      notes.append(f'source {source_id}: no checkpoint at {checkpoint}, skipped')
      continue
    if external:
      seed = -1
    elif store.status(source_id) == 'complete':
      seed = int(store.read_record(source_id)['labels']['seed'])
    else:
      seed = int(spec['seed'])
    strata = (('model', spec['model']), ('examples_per_class', spec['target'].get('examples_per_class')))
    sources.append(Source(source_id, checkpoint, tasks.TaskSpec.from_dict(spec['source']), seed,
                          tuple(entry['targets'][k] for k in sorted(entry['targets'])), strata))
  if not sources:
    raise UserError(f'no source checkpoint in {results_dir} ({len(found)} source(s) used by '
                    'transfer runs, none saved): re-run the sweep so its scratch runs save weights')
  return sorted(sources, key=lambda s: (s.task.name, s.seed, s.source_id)), notes


@dataclasses.dataclass(frozen=True)
class EstimateSettings:
  """Choices of :func:`score_sources` (all user-settable on the command line)."""
  max_examples: int = 1000      # target training examples scored (seeded subsample)
  source_examples: int = 1000   # source training examples for the per-layer source classifier
  max_dim: int = 4096           # feature maps above this many values are average-pooled
  batch_size: int = 256
  knn_k: int = 5
  folds: int = 3
  rcond: float = 1e-6
  seed: int = 0
  estimators: tuple[str, ...] | None = None  # None: every estimator of ESTIMATORS


def _check(settings: EstimateSettings) -> None:
  from analysis.estimators import ESTIMATORS
  checks = {'max_examples': settings.max_examples >= 10, 'source_examples': settings.source_examples >= 10,
            'max_dim': settings.max_dim >= 1, 'batch_size': settings.batch_size >= 1,
            'knn_k': settings.knn_k >= 1, 'folds': settings.folds >= 2}
  for name, ok in checks.items():
    if not ok:
      raise UserError(f'{name}={getattr(settings, name)} is too small: see `transferbench estimate --help`')
  unknown = set(settings.estimators or ()) - set(ESTIMATORS)
  if unknown:
    raise UserError(f"unknown estimator(s) {sorted(unknown)}: choose from {', '.join(ESTIMATORS)}")


def _load_source(source: Source):
  from harness import models, runs
  variables, meta = runs.load_checkpoint(source.checkpoint)
  model = models.build_model(meta['model'], meta['num_classes'], **meta['model_kwargs'])
  return model, variables


def score_source(source: Source, settings: EstimateSettings, data_dir: str | None,
                 progress=None) -> list[dict]:
  """Every estimator at every layer of one source network, for each of its targets.

  Args:
    source: the source network.
    settings: subsample sizes and estimator settings.
    data_dir: TFDS data directory.
    progress: a tqdm bar advanced once per (target, layer), or None.

  Returns:
    Rows with :data:`SCORE_COLUMNS` plus the source's strata columns.
  """
  from analysis import estimators as est
  from analysis.features import layer_features, task_sample
  model, variables = _load_source(source)
  x_src, y_src = task_sample(source.task, data_dir, settings.source_examples, settings.seed)
  src_features = layer_features(model, variables, x_src, settings.batch_size, settings.max_dim)
  names = settings.estimators or tuple(est.ESTIMATORS)
  options = {'knn_k': settings.knn_k, 'folds': settings.folds, 'rcond': settings.rcond,
             'seed': settings.seed}
  rows = []
  for target in source.targets:
    x, y = task_sample(target, data_dir, settings.max_examples, settings.seed)
    features = layer_features(model, variables, x, settings.batch_size, settings.max_dim)
    for n, layer in enumerate(features, start=1):
      classifier = est.fit_source_classifier(src_features[layer], y_src, seed=settings.seed)
      inputs = est.LayerInputs(features[layer], np.asarray(y), len(target.classes),
                               classifier.predict_proba(np.asarray(features[layer], np.float64)))
      for name, score in est.score_layer(inputs, names, options).items():
        rows.append({'source_run': source.source_id, 'source': source.task.name,
                     'target': target.name, 'seed': source.seed, 'n_layers': n, 'estimator': name,
                     'score': score, **dict(source.strata)})
      if progress is not None:
        progress.update(1)
  return rows


def score_sources(sources: Iterable[Source], settings: EstimateSettings, data_dir: str | None,
                  show_progress: bool = True) -> pd.DataFrame:
  """:func:`score_source` for every source, as one tidy DataFrame (one row per score)."""
  from tqdm.auto import tqdm
  from harness import models, runs
  _check(settings)
  sources = list(sources)
  total = 0
  for source in sources:
    meta = runs.load_checkpoint_meta(source.checkpoint)
    model = models.build_model(meta['model'], meta['num_classes'], **meta['model_kwargs'])
    total += len(source.targets) * (model.num_layers - 1)
  rows = []
  with tqdm(total=total, desc='estimators', unit='layer', disable=not show_progress) as bar:
    for source in sources:
      bar.set_postfix_str(f'{source.task.name} seed {source.seed}')
      rows.extend(score_source(source, settings, data_dir, bar))
  return pd.DataFrame(rows)


# ------------------------------------------------------------------------- join and correlate

def measured_accuracy(results_dir: str | pathlib.Path, rule: str = 'last', k: int = 10) -> pd.DataFrame:
  """Final accuracy of AnB and AnB+ per (source, target, n): seed mean, CI, count.

  Uses :func:`analysis.final_accuracy_table` on the directory's complete runs.

  Returns:
    Columns: strata (if several), source, target, n_layers, measure ('AnB' / 'AnB+'), accuracy,
    accuracy_ci, accuracy_seeds.
  """
  from analysis import final_accuracy_table
  from harness.results import load_curves
  table = final_accuracy_table(load_curves(results_dir), rule=rule, k=k)
  table = table[table['condition'] == 'transfer'].copy()
  table['measure'] = table['fine_tuned'].map(MEASURES)
  return (table.drop(columns=['condition', 'fine_tuned'])
          .rename(columns={'mean': 'accuracy', 'ci': 'accuracy_ci', 'count': 'accuracy_seeds'}))


def run_accuracy(results_dir: str | pathlib.Path, rule: str = 'last', k: int = 10) -> pd.DataFrame:
  """Final accuracy of every complete AnB / AnB+ run, with the id of the run it copies from.

  Returns:
    Columns: run_id, source_run, target, n_layers, seed, measure, accuracy.
  """
  from analysis import measures as measures_lib
  from analysis.curves import keep_complete, validate_curves
  from harness.results import load_curves
  curves, _ = keep_complete(validate_curves(load_curves(results_dir)))
  curves = curves[curves['condition'] == 'transfer']
  runs = measures_lib.run_measures(curves, measures_lib.curve_arrays(curves), k)
  store = ResultsStore(results_dir)
  source_of = {run_id: (lambda spec: spec.get('source_run') or spec.get('source_checkpoint'))(
      store.read_record(run_id)['spec']) for run_id in runs['run_id']}
  return pd.DataFrame({'run_id': runs['run_id'], 'source_run': runs['run_id'].map(source_of),
                       'target': runs['target'], 'n_layers': runs['n_layers'], 'seed': runs['seed'],
                       'measure': runs['fine_tuned'].map(MEASURES),
                       'accuracy': runs[f'final_{rule}']})


def join_runs(scores: pd.DataFrame, accuracy: pd.DataFrame) -> pd.DataFrame:
  """Each source seed's score joined with the accuracy of the runs that copy from that source.

  Args:
    scores: rows of :func:`score_sources`.
    accuracy: :func:`run_accuracy`.

  Returns:
    One row per (estimator, transfer run): estimator, measure, source, target, n_layers,
    source_run, run_id, seed (of the transfer run), score, accuracy.
  """
  merged = scores.drop(columns='seed').merge(accuracy, on=['source_run', 'target', 'n_layers'])
  columns = ['estimator', 'measure', 'source', 'target', 'n_layers', 'source_run', 'run_id', 'seed',
             'score', 'accuracy']
  return merged[columns].sort_values(columns[:8]).reset_index(drop=True)


def join_scores(scores: pd.DataFrame, accuracy: pd.DataFrame) -> pd.DataFrame:
  """Seed-mean scores joined with measured accuracy at the same (source, target, n).

  Args:
    scores: rows of :func:`score_sources`.
    accuracy: :func:`measured_accuracy`.

  Returns:
    One row per (estimator, measure, source, target, n) with score (mean over source seeds),
    score_sd, score_seeds, accuracy, accuracy_ci, accuracy_seeds.
  """
  keys = [c for c in ('model', 'examples_per_class') if c in accuracy.columns and c in scores.columns]
  keys += ['source', 'target', 'n_layers']
  mean = (scores.groupby(keys + ['estimator'], dropna=False)['score']
          .agg(score='mean', score_sd='std', score_seeds='count').reset_index())
  joined = mean.merge(accuracy, on=keys, how='inner')
  order = keys + ['estimator', 'measure']
  return joined[['estimator', 'measure'] + keys + ['score', 'score_sd', 'score_seeds', 'accuracy',
                                                   'accuracy_ci', 'accuracy_seeds']].sort_values(order).reset_index(drop=True)


def correlation(score: np.ndarray, accuracy: np.ndarray) -> dict[str, float]:
  """Kendall tau-b (and p), weighted tau (scipy.stats.weightedtau) and Pearson r (and p).

  NaN with fewer than :data:`MIN_POINTS` points or a constant input (no ranking to compare).
  """
  from scipy import stats
  score, accuracy = np.asarray(score, float), np.asarray(accuracy, float)
  ok = ~(np.isnan(score) | np.isnan(accuracy))
  score, accuracy = score[ok], accuracy[ok]
  out = dict(points=int(len(score)), kendall_tau=np.nan, kendall_p=np.nan, weighted_tau=np.nan,
             pearson_r=np.nan, pearson_p=np.nan)
  if len(score) < MIN_POINTS or np.ptp(score) == 0 or np.ptp(accuracy) == 0:
    return out
  with warnings.catch_warnings():
    warnings.simplefilter('ignore')
    tau = stats.kendalltau(score, accuracy)
    pearson = stats.pearsonr(score, accuracy)
    out.update(kendall_tau=float(tau.statistic), kendall_p=float(tau.pvalue),
               weighted_tau=float(stats.weightedtau(score, accuracy).statistic),
               pearson_r=float(pearson.statistic), pearson_p=float(pearson.pvalue))
  return out


SCOPES = {
    # scope -> (points: seed means or single runs, grouping columns besides estimator/measure,
    #           group label, needs several pairs)
    'layers': ('means', ['source', 'target'], lambda key: f'{key[0]} -> {key[1]}', False),
    'runs': ('runs', ['source', 'target'], lambda key: f'{key[0]} -> {key[1]}', False),
    'pairs': ('means', ['n_layers'], lambda key: f'n={key[0]}', True),
    'all': ('means', [], lambda key: 'all', True),
}


def correlations(joined: pd.DataFrame, per_run: pd.DataFrame | None = None) -> pd.DataFrame:
  """Correlation of each estimator with AnB / AnB+ accuracy, per scope (see module docstring).

  Args:
    joined: seed means, :func:`join_scores`.
    per_run: single runs, :func:`join_runs` (None: no ``runs`` scope).

  Returns:
    Columns: estimator, measure, scope, group, points, kendall_tau, kendall_p, weighted_tau,
    pearson_r, pearson_p.
  """
  strata = [c for c in ('model', 'examples_per_class') if c in joined.columns]
  pairs = joined[strata + ['source', 'target']].drop_duplicates()
  tables = {'means': joined, 'runs': per_run}
  rows = []
  for scope, (points, columns, name, several) in SCOPES.items():
    table = tables[points]
    if table is None or table.empty or (several and len(pairs) < 2):
      continue
    group_by = ['estimator', 'measure'] + [c for c in strata if c in table.columns] + columns
    for key, group in table.groupby(group_by, sort=True, dropna=False):
      key = key if isinstance(key, tuple) else (key,)
      n_strata = len(group_by) - 2 - len(columns)
      label = name(key[2 + n_strata:])
      if n_strata and pairs[strata].drop_duplicates().shape[0] > 1:
        label = ' '.join(str(v) for v in key[2:2 + n_strata]) + ' ' + label
      rows.append({'estimator': key[0], 'measure': key[1], 'scope': scope, 'group': label,
                   **correlation(group['score'], group['accuracy'])})
  return pd.DataFrame(rows)


def summary_table(corr: pd.DataFrame) -> str:
  """Compact text table: per estimator and measure, each scope's correlations.

  Per-pair ``layers`` rows are averaged over pairs (with their count) when there are several.
  """
  if corr.empty:
    return '(no correlations)'
  stats_cols = ['kendall_tau', 'weighted_tau', 'pearson_r']
  table = (corr.groupby(['scope', 'estimator', 'measure'], sort=False)
           .agg(groups=('group', 'count'), points=('points', 'median'),
                **{c: (c, 'mean') for c in stats_cols}).reset_index())
  lines = [f"{'scope':<7} {'estimator':<14} {'measure':<5} {'groups':>6} {'points':>6} "
           f"{'Kendall':>8} {'w. tau':>8} {'Pearson':>8}"]
  fmt = lambda v: f'{v:>8.3f}' if v == v else f"{'n/a':>8}"
  for row in table.itertuples(index=False):
    lines.append(f'{row.scope:<7} {row.estimator:<14} {row.measure:<5} {row.groups:>6} '
                 f'{row.points:>6.0f} {fmt(row.kendall_tau)} {fmt(row.weighted_tau)} {fmt(row.pearson_r)}')
  return '\n'.join(lines)


# --------------------------------------------------------------------------------------- figures

def figure_scatter(joined: pd.DataFrame):
  """Per estimator: seed-mean score vs measured accuracy, AnB and AnB+, points labelled by n.

  Returns:
    A matplotlib Figure, or None without data.
  """
  from analysis import figures
  if joined.empty:
    return None
  matplotlib, _, _ = figures._plotting()
  names = list(dict.fromkeys(joined['estimator']))
  fig, axes = figures._new_figure(len(names), 4, 1.7, share=False)
  with matplotlib.rc_context(figures.RC):
    for ax, name in zip(axes, names):
      rows = joined[joined['estimator'] == name]
      for measure in MEASURES.values():
        colour, marker, _ = figures.STYLE[measure]
        for _, line in rows[rows['measure'] == measure].groupby(['source', 'target']):
          line = line.sort_values('n_layers')
          ax.plot(line['score'], line['accuracy'], color=figures.colour(measure), marker=marker,
                  lw=0.6, label=measure)
          for r in line.itertuples(index=False):
            ax.annotate(str(r.n_layers), (r.score, r.accuracy), textcoords='offset points',
                        xytext=(3, 2), fontsize=6)
      ax.set_title(name)
      ax.set_xlabel('score')
      ax.set_ylabel('final accuracy')
      ax.grid(alpha=0.3)
    fig.suptitle('Estimator score vs measured transfer accuracy (means over seeds; labels: n)')
    handles, labels = axes[0].get_legend_handles_labels()
    unique = dict(zip(labels, handles))
    figures._legend(fig, list(unique.values()), ncol=len(unique))
  return fig


def figure_correlations(corr: pd.DataFrame):
  """Heat map: estimators x (measure, statistic), per-pair across-layer correlations averaged.

  Returns:
    A matplotlib Figure, or None without correlations.
  """
  from analysis import figures
  corr = corr[corr['scope'] == 'layers']
  stats_cols = {'kendall_tau': 'Kendall τ', 'weighted_tau': 'weighted τ', 'pearson_r': 'Pearson r'}
  if corr.empty or corr[list(stats_cols)].isna().all().all():
    return None
  matplotlib, sns, Figure = figures._plotting()
  mean = corr.groupby(['estimator', 'measure'], sort=False)[list(stats_cols)].mean()
  grid = mean.unstack('measure')
  order = sorted(grid.columns, key=lambda c: (c[1], list(stats_cols).index(c[0])))
  grid = grid[order]
  grid.columns = [f'{measure}\n{stats_cols[stat]}' for stat, measure in order]
  with matplotlib.rc_context(figures.RC):
    fig = Figure(figsize=(figures.COLUMN_WIDTH * 1.4, 0.3 * len(grid) + 1.2), layout='constrained')
    ax = fig.subplots()
    sns.heatmap(grid, ax=ax, vmin=-1, vmax=1, center=0, cmap='vlag', annot=True, fmt='.2f',
                annot_kws={'fontsize': 6}, cbar_kws={'label': 'correlation with accuracy'})
    pairs = corr['group'].nunique()
    ax.set_title('across layers n' + (f' (mean over {pairs} pairs)' if pairs > 1 else f': {corr["group"].iloc[0]}'))
    ax.set_ylabel('')
    ax.tick_params(axis='x', labelsize=6)
  return fig


def write_outputs(out: pathlib.Path, scores: pd.DataFrame, joined: pd.DataFrame,
                  per_run: pd.DataFrame, corr: pd.DataFrame,
                  figures_too: bool = True) -> list[pathlib.Path]:
  """Writes scores.csv, joined.csv, joined_runs.csv, correlations.csv and figures under ``out``."""
  from analysis import figures
  out.mkdir(parents=True, exist_ok=True)
  written = []
  for name, table in (('scores', scores), ('joined', joined), ('joined_runs', per_run),
                      ('correlations', corr)):
    path = out / f'{name}.csv'
    table.to_csv(path, index=False)
    written.append(path)
  if figures_too:
    for name, builder, data in (('estimators_vs_accuracy', figure_scatter, joined),
                                ('estimator_correlations', figure_correlations, corr)):
      fig = builder(data)
      if fig is not None:
        written.extend(figures.save(fig, out / 'figures', name))
  return written
