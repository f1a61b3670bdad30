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

Such correlations rest on 3-7 points, so each comes with its number of points, a 95% percentile
bootstrap CI (:mod:`analysis.rank_correlation`; fixed seed) and the smallest two-sided p that
Kendall's exact null distribution allows with that many points (2 / n!: 0.083 with 4 points, so
with n <= 4 no tau can be significant at 0.05; such rows are flagged). The bootstrap resamples
the independent units: for ``layers`` the seeds (runs) behind the seed means, for ``runs`` the
runs, for ``pairs`` and ``all`` the pairs' points. Measured accuracy is the final score
under :data:`ACCURACY_RULE` unless a rule is given.

Results are read only through :mod:`harness.results` (``load_records``, ``load_run``,
``load_curves``).
"""

from __future__ import annotations

import dataclasses
import pathlib
from typing import Iterable

import numpy as np
import pandas as pd

from analysis.rank_correlation import (ALPHA, BOOTSTRAP, BOOTSTRAP_SEED, correlation, kendall_min_p,
                                      mean_ci)
from analysis import measures
from harness import conditions as conditions_lib
from harness import results as results_api
from harness.errors import UserError

MEASURES = {False: 'AnB', True: 'AnB+'}  # fine_tuned -> Yosinski's label of the transfer runs.
SCORE_COLUMNS = ('source_run', 'source', 'target', 'seed', 'n_layers', 'estimator', 'score')
# The measured accuracy is scored by the project-wide final-score rule (analysis.measures).
ACCURACY_RULE = measures.DEFAULT_RULE
ACCURACY_K = measures.DEFAULT_K


@dataclasses.dataclass(frozen=True, eq=False)
class Source:
  """A trained source network and the target tasks it was transferred to.

  Attributes:
    source_id: run id of the source (scratch) run, or the ``source_checkpoint`` path.
    record: the source run's record (:func:`harness.results.load_run`).
    variables: its final weights.
    task: its training task (the source task A).
    seed: its seed (-1 for an external checkpoint shared by every seed).
    targets: target tasks of the transfer runs that copy from it.
    strata: model / examples_per_class of those runs, for joining with their accuracies.
  """
  source_id: str
  record: dict
  variables: dict
  task: object
  seed: int
  targets: tuple
  strata: tuple[tuple[str, object], ...] = ()

  def build_model(self):
    """The source network's flax module, from its record's spec."""
    from harness import models
    spec = self.record['spec']
    return models.build_model(spec['model'], len(spec['target']['classes']), **spec['model_kwargs'])


def _source_of(spec: dict) -> str:
  """The id of what a transfer run copies from: its source run, else its checkpoint path."""
  return spec.get('source_run') or spec.get('source_checkpoint')


def _transfer_targets(records: list[dict]) -> dict[str, dict]:
  """Per source id: the spec of one transfer run copying from it and the tasks it targets."""
  from harness import tasks
  found: dict[str, dict] = {}
  for record in records:
    spec = record['spec']
    if record.get('status') != 'complete' or spec['condition'] != conditions_lib.TRANSFER:
      continue
    entry = found.setdefault(_source_of(spec), {'targets': {}, 'spec': spec})
    entry['targets'][spec['target']['name']] = tasks.TaskSpec.from_dict(spec['target'])
  return found


def find_sources(results_dir: str | pathlib.Path) -> tuple[list[Source], list[str]]:
  """The transfer sources of a results directory whose weights were saved, loaded.

  Args:
    results_dir: a directory written by ``transferbench run``.

  Returns:
    ``(sources, notes)``: the sources, sorted by source task, seed and id; notes name sources
    skipped because their checkpoint (or, for a ``source_checkpoint``, the record beside it)
    is missing.

  Raises:
    UserError: no results, no complete transfer (AnB) run, or no source checkpoint.
  """
  from harness import tasks
  found = _transfer_targets(results_api.load_records(results_dir))
  if not found:
    raise UserError(f'no complete transfer (AnB) runs in {results_dir}: estimators need a sweep '
                    f"whose conditions include '{conditions_lib.TRANSFER}'")
  store = results_api.ResultsStore(results_dir)
  sources, notes = [], []
  for source_id, entry in found.items():
    spec = entry['spec']
    external = not spec.get('source_run')
    run_dir = pathlib.Path(source_id).parent if external else store.run_dir(source_id)
    if external and pathlib.Path(source_id).name != 'checkpoint':
      notes.append(f"source {source_id}: not a run's checkpoint/ directory (estimate reads the "
                   'run record beside it), skipped')
      continue
    try:
      record, variables = results_api.load_run(run_dir)
    except UserError as e:
      notes.append(f'source {source_id}: {e}, skipped')
      continue
    if variables is None:
      notes.append(f'source {source_id}: no checkpoint in {run_dir}, skipped')
      continue
    seed = -1 if external else int(record['labels']['seed'])
    strata = (('model', spec['model']), ('examples_per_class', spec['target'].get('examples_per_class')))
    sources.append(Source(source_id, record, variables, tasks.TaskSpec.from_dict(spec['source']),
                          seed, tuple(entry['targets'][k] for k in sorted(entry['targets'])), strata))
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


def check_settings(settings: EstimateSettings) -> None:
  """Raises a UserError naming the first setting out of range, or unknown estimators."""
  from analysis.estimators import ESTIMATORS
  checks = {'max_examples': settings.max_examples >= 10, 'source_examples': settings.source_examples >= 10,
            'max_dim': settings.max_dim >= 1, 'batch_size': settings.batch_size >= 1,
            'knn_k': settings.knn_k >= 1, 'folds': settings.folds >= 2}
  for name, ok in checks.items():
    if not ok:
      raise UserError(f'{name}={getattr(settings, name)} is too small: see `transferbench estimate --help`')
  unknown = sorted(set(settings.estimators or ()) - set(ESTIMATORS))
  if unknown:
    raise UserError(f"unknown estimator(s) {', '.join(unknown)}: choose from {', '.join(ESTIMATORS)} "
                    '(--estimators)')


def layer_scores(model, variables: dict, target: tuple[np.ndarray, np.ndarray], num_classes: int,
                 settings: EstimateSettings, source: tuple[dict, np.ndarray] | None = None,
                 progress=None) -> list[tuple[int, str, float]]:
  """Every estimator of ``settings`` at every transferable layer of one network, on one target.

  Args:
    model: the network's flax module (its input transform, if any, is part of it).
    variables: its weights.
    target: ``(x, y)``, the target examples scored (a :func:`analysis.features.task_sample`).
    num_classes: classes of the target task.
    settings: estimators and their settings.
    source: ``(features per layer, labels)`` of source-task examples, for the per-layer source
      classifier of the estimators that need one (LEEP, NCE); None when none of them is asked for.
    progress: a tqdm bar advanced once per layer, or None.

  Returns:
    ``(n, estimator, score)`` triples, n = 1 .. L-1.
  """
  from analysis import estimators as est
  from analysis.features import layer_features
  names = settings.estimators or tuple(est.ESTIMATORS)
  options = {'knn_k': settings.knn_k, 'folds': settings.folds, 'rcond': settings.rcond,
             'seed': settings.seed}
  x, y = target
  features = layer_features(model, variables, x, settings.batch_size, settings.max_dim)
  rows = []
  for n, layer in enumerate(features, start=1):
    probs = None
    if source is not None:
      classifier = est.fit_source_classifier(source[0][layer], source[1], seed=settings.seed)
      probs = classifier.predict_proba(np.asarray(features[layer], np.float64))
    inputs = est.LayerInputs(features[layer], np.asarray(y), num_classes, probs)
    rows.extend((n, name, score) for name, score in est.score_layer(inputs, names, options).items())
    if progress is not None:
      progress.update(1)
  return rows


def needs_source(settings: EstimateSettings) -> bool:
  """Whether an estimator of ``settings`` reads the source task's predictions (LEEP, NCE)."""
  from analysis import estimators as est
  return any(est.ESTIMATORS[name].needs_source for name in settings.estimators or est.ESTIMATORS)


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
  from analysis.features import layer_features, task_sample
  model, variables = source.build_model(), source.variables
  source_sample = None
  if needs_source(settings):
    x_src, y_src = task_sample(source.task, data_dir, settings.source_examples, settings.seed)
    source_sample = (layer_features(model, variables, x_src, settings.batch_size, settings.max_dim),
                     y_src)
  rows = []
  for target in source.targets:
    sample = task_sample(target, data_dir, settings.max_examples, settings.seed)
    for n, name, score in layer_scores(model, variables, sample, len(target.classes), settings,
                                       source_sample, progress):
      rows.append({'source_run': source.source_id, 'source': source.task.name,
                   'target': target.name, 'seed': source.seed, 'n_layers': n, 'estimator': name,
                   'score': score, **dict(source.strata)})
  return rows


def score_sources(sources: Iterable[Source], settings: EstimateSettings, data_dir: str | None,
                  show_progress: bool = True) -> pd.DataFrame:
  """:func:`score_source` for every source, as one tidy DataFrame (one row per score)."""
  from tqdm.auto import tqdm
  check_settings(settings)
  sources = list(sources)
  total = sum(len(source.targets) * (source.build_model().num_layers - 1) for source in sources)
  rows = []
  with tqdm(total=total, desc='estimators', unit='layer', disable=not show_progress) as bar:
    for source in sources:
      bar.set_postfix_str(f'{source.task.name} seed {source.seed}')
      rows.extend(score_source(source, settings, data_dir, bar))
  return pd.DataFrame(rows)


# ------------------------------------------------------------------------- join and correlate

def measured_accuracy(results_dir: str | pathlib.Path, rule: str = ACCURACY_RULE,
                      k: int = ACCURACY_K) -> pd.DataFrame:
  """Final accuracy of AnB and AnB+ per (source, target, n): seed mean, CI, count.

  Uses :func:`analysis.final_accuracy_table` on the directory's complete runs.

  Returns:
    Columns: strata (if several), source, target, n_layers, measure ('AnB' / 'AnB+'), accuracy,
    accuracy_ci, accuracy_seeds.
  """
  from analysis import final_accuracy_table
  table = final_accuracy_table(results_api.load_curves(results_dir), rule=rule, k=k)
  table = table[table['condition'] == conditions_lib.TRANSFER].copy()
  table['measure'] = table['fine_tuned'].map(MEASURES)
  return (table.drop(columns=['condition', 'fine_tuned'])
          .rename(columns={'mean': 'accuracy', 'ci': 'accuracy_ci', 'count': 'accuracy_seeds'}))


def run_accuracy(results_dir: str | pathlib.Path, rule: str = ACCURACY_RULE,
                 k: int = ACCURACY_K) -> pd.DataFrame:
  """Final accuracy of every complete AnB / AnB+ run, with the id of the run it copies from.

  Returns:
    Columns: run_id, source_run, target, n_layers, seed, measure, accuracy.
  """
  from analysis import measures as measures_lib
  from analysis.curves import keep_complete, validate_curves
  curves, _ = keep_complete(validate_curves(results_api.load_curves(results_dir)))
  curves = curves[curves['condition'] == conditions_lib.TRANSFER]
  runs = measures_lib.run_measures(curves, measures_lib.curve_arrays(curves), k)
  source_of = {r['run_id']: _source_of(r['spec']) for r in results_api.load_records(results_dir)}
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
  strata = [c for c in ('model', 'examples_per_class') if c in merged.columns]
  columns = ['estimator', 'measure', *strata, 'source', 'target', 'n_layers', 'source_run', 'run_id',
             'seed', 'score', 'accuracy']
  return merged[columns].sort_values(columns[:-2]).reset_index(drop=True)


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


SCOPES = {
    # scope -> (points: seed means or single runs, grouping columns besides estimator/measure,
    #           group label, needs several pairs, CI by resampling seeds rather than points)
    'layers': ('means', ['source', 'target'], lambda key: f'{key[0]} -> {key[1]}', False, True),
    'runs': ('runs', ['source', 'target'], lambda key: f'{key[0]} -> {key[1]}', False, False),
    'pairs': ('means', ['n_layers'], lambda key: f'n={key[0]}', True, False),
    'all': ('means', [], lambda key: 'all', True, False),
}


def _key(key) -> tuple:
  """A groupby key that compares equal across groupbys (NaN, e.g. no examples_per_class, as None)."""
  return tuple(None if pd.isna(v) else v for v in (key if isinstance(key, tuple) else (key,)))


def correlations(joined: pd.DataFrame, per_run: pd.DataFrame | None = None) -> pd.DataFrame:
  """Correlation of each estimator with AnB / AnB+ accuracy, per scope (see module docstring).

  CIs: ``layers`` resamples the seeds of a pair (:func:`seed_bootstrap_ci`; without ``per_run``
  no CI), the other scopes their points, which are independent units (runs, pairs).

  Args:
    joined: seed means, :func:`join_scores`.
    per_run: single runs, :func:`join_runs` (None: no ``runs`` scope, no ``layers`` CI).

  Returns:
    Columns: estimator, measure, scope, group and :data:`CORRELATION_COLUMNS`.
  """
  strata = [c for c in ('model', 'examples_per_class') if c in joined.columns]
  pairs = joined[strata + ['source', 'target']].drop_duplicates()
  tables = {'means': joined, 'runs': per_run}
  rows = []
  for scope, (points, columns, name, several, by_seed) in SCOPES.items():
    table = tables[points]
    if table is None or table.empty or (several and len(pairs) < 2):
      continue
    group_by = ['estimator', 'measure'] + [c for c in strata if c in table.columns] + columns
    runs_of = {}
    if by_seed and per_run is not None:
      runs_of = {_key(key): group for key, group in per_run.groupby(group_by, dropna=False)}
    for key, group in table.groupby(group_by, sort=True, dropna=False):
      key = key if isinstance(key, tuple) else (key,)
      n_strata = len(group_by) - 2 - len(columns)
      label = name(key[2 + n_strata:])
      if n_strata and pairs[strata].drop_duplicates().shape[0] > 1:
        label = ' '.join(str(v) for v in key[2:2 + n_strata]) + ' ' + label
      runs = runs_of.get(_key(key))
      rows.append({'estimator': key[0], 'measure': key[1], 'scope': scope, 'group': label,
                   **correlation(group['score'], group['accuracy'], runs, ci=not by_seed)})
  return pd.DataFrame(rows)


def summary_rows(corr: pd.DataFrame) -> pd.DataFrame:
  """Per scope, estimator and measure: the correlations over its groups (pairs or n).

  One group: its statistics and CIs (as :func:`correlations` computed them). Several groups:
  the mean over groups, with a CI from resampling the groups (the source-target pairs, or the
  n), and the median number of points per group.

  Returns:
    Columns: scope, estimator, measure, groups, points, kendall_tau (+ _low, _high),
    kendall_min_p, too_few_points, weighted_tau, pearson_r (+ _low, _high).
  """
  rows = []
  for (scope, name, measure), group in corr.groupby(['scope', 'estimator', 'measure'], sort=False):
    row = {'scope': scope, 'estimator': name, 'measure': measure, 'groups': len(group),
           'points': float(group['points'].median())}
    for stat in ('kendall_tau', 'weighted_tau', 'pearson_r'):
      row[stat] = float(group[stat].mean())
    for stat in ('kendall_tau', 'pearson_r'):
      low, high = ((group[f'{stat}_low'].item(), group[f'{stat}_high'].item()) if len(group) == 1
                   else mean_ci(group[stat].to_numpy(float)))
      row.update({f'{stat}_low': low, f'{stat}_high': high})
    row['kendall_min_p'] = kendall_min_p(int(row['points']))
    row['too_few_points'] = row['kendall_min_p'] >= ALPHA
    rows.append(row)
  return pd.DataFrame(rows)


def caption(rule: str = ACCURACY_RULE, k: int = ACCURACY_K) -> str:
  """What every estimate table and figure states: the accuracy rule, the CI method, the flag."""
  from analysis import measures as measures_lib
  return (f'Accuracy: final score = {measures_lib.rule_name(rule, k)}, mean over seeds. '
          f'95% CIs: percentile bootstrap ({BOOTSTRAP} resamples, seed {BOOTSTRAP_SEED}) of the '
          "seeds ('layers'), runs ('runs') or pairs ('pairs', 'all'); a mean over several groups "
          'resamples the groups. '
          f"'*': too few points for Kendall's tau to reach p < {ALPHA} (its minimum p is shown).")


def summary_table(corr: pd.DataFrame, rule: str = ACCURACY_RULE, k: int = ACCURACY_K) -> str:
  """Text table of :func:`summary_rows`, with the :func:`caption`."""
  if corr.empty:
    return '(no correlations)'
  table = summary_rows(corr)
  fmt = lambda v: f'{v:+.2f}' if v == v else ' n/a'
  interval = lambda lo, hi: f'[{fmt(lo)}, {fmt(hi)}]' if lo == lo else f"{'':>14}"
  lines = [f"{'scope':<7} {'estimator':<14} {'measure':<5} {'groups':>6} {'points':>6}  "
           f"{'Kendall tau [95% CI]':<22} {'min p':>6}  {'w. tau':>6}  {'Pearson r [95% CI]':<22}"]
  for row in table.itertuples(index=False):
    flag = '*' if row.too_few_points else ' '
    tau_ci = interval(row.kendall_tau_low, row.kendall_tau_high)
    r_ci = interval(row.pearson_r_low, row.pearson_r_high)
    lines.append(f'{row.scope:<7} {row.estimator:<14} {row.measure:<5} {row.groups:>6} '
                 f'{row.points:>6.0f}  {fmt(row.kendall_tau)} {tau_ci} {row.kendall_min_p:>6.3f}{flag} '
                 f'{fmt(row.weighted_tau):>6}  {fmt(row.pearson_r)} {r_ci}')
  return '\n'.join(lines + [caption(rule, k)])


# --------------------------------------------------------------------------------------- figures

def _figure_note(rule: str, k: int, width: int) -> str:
  """The short caption printed with each estimate figure, wrapped to ``width`` characters."""
  import textwrap
  from analysis import measures as measures_lib
  return textwrap.fill(
      f'Accuracy: {measures_lib.rule_name(rule, k)}, mean over seeds. τ: Kendall tau-b across the '
      f'layers of a pair, 95% CI by bootstrap over seeds ({BOOTSTRAP} resamples). *: too few '
      f'points for any τ to reach p < {ALPHA} (min p shown).', width)


def _panel_statistic(corr: pd.DataFrame | None, name: str) -> str:
  """'AnB τ +0.80 [+0.00, +1.00]' per measure, then '5 pts, min p 0.02' (layers scope)."""
  if corr is None or corr.empty:
    return ''
  rows = summary_rows(corr[(corr['scope'] == 'layers') & (corr['estimator'] == name)])
  if rows.empty:
    return ''
  fmt = lambda v: f'{v:+.2f}' if v == v else 'n/a'
  lines = [f'{r.measure} τ {fmt(r.kendall_tau)} [{fmt(r.kendall_tau_low)}, {fmt(r.kendall_tau_high)}]'
           for r in rows.itertuples(index=False)]
  first = rows.iloc[0]
  return '\n'.join(lines + [f'{first.points:.0f} pts, min p {first.kendall_min_p:.2f}'
                             + ('*' if first.too_few_points else '')])


def figure_scatter(joined: pd.DataFrame, corr: pd.DataFrame | None = None,
                   rule: str = ACCURACY_RULE, k: int = ACCURACY_K):
  """Per estimator: seed-mean score vs measured accuracy, AnB and AnB+, points labelled by n.

  Each panel states Kendall's tau across layers with its CI, number of points and minimum p.

  Returns:
    A matplotlib Figure, or None without data.
  """
  from analysis import figures
  if joined.empty:
    return None
  matplotlib, _, _ = figures._plotting()
  names = list(dict.fromkeys(joined['estimator']))
  fig, axes = figures._new_figure(len(names), 4, 1.9, share=False)
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
      statistic = _panel_statistic(corr, name)
      ax.set_title(f'{name}\n{statistic}' if statistic else name, fontsize=6 if statistic else None)
      ax.set_xlabel('score')
      ax.set_ylabel('final accuracy')
      ax.grid(alpha=0.3)
    fig.suptitle('Estimator score vs measured transfer accuracy (means over seeds; labels: n)\n'
                 + _figure_note(rule, k, 130), fontsize=7)
    handles, labels = axes[0].get_legend_handles_labels()
    unique = dict(zip(labels, handles))
    figures._legend(fig, list(unique.values()), ncol=len(unique))
  return fig


def figure_correlations(corr: pd.DataFrame, rule: str = ACCURACY_RULE, k: int = ACCURACY_K):
  """Heat map: estimators x (measure, statistic), per-pair across-layer correlations averaged.

  The title gives the number of points (layers) per pair and the smallest p they allow.

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
  points = int(corr['points'].median())
  min_p = kendall_min_p(points)
  with matplotlib.rc_context(figures.RC):
    fig = Figure(figsize=(figures.COLUMN_WIDTH * 1.4, 0.3 * len(grid) + 1.6), layout='constrained')
    ax = fig.subplots()
    sns.heatmap(grid, ax=ax, vmin=-1, vmax=1, center=0, cmap='vlag', annot=True, fmt='.2f',
                annot_kws={'fontsize': 6}, cbar_kws={'label': 'correlation with accuracy'})
    pairs = corr['group'].nunique()
    where = f'mean over {pairs} pairs' if pairs > 1 else corr['group'].iloc[0]
    warning = (f': too few for p < {ALPHA}' if min_p >= ALPHA else '')
    ax.set_title(f'across layers n ({where}); {points} points per pair, '
                 f'min p {min_p:.3f}{warning}', fontsize=6)
    ax.set_ylabel('')
    ax.tick_params(axis='x', labelsize=6)
    fig.supxlabel(_figure_note(rule, k, 90), fontsize=5)
  return fig


def write_outputs(out: pathlib.Path, scores: pd.DataFrame, joined: pd.DataFrame,
                  per_run: pd.DataFrame, corr: pd.DataFrame, figures_too: bool = True,
                  rule: str = ACCURACY_RULE, k: int = ACCURACY_K) -> list[pathlib.Path]:
  """Writes scores.csv, joined.csv, joined_runs.csv, correlations.csv and figures under ``out``.

  The figures state the accuracy ``rule`` (and ``k``) that ``joined`` was measured with.
  """
  from analysis import figures
  out.mkdir(parents=True, exist_ok=True)
  written = []
  for name, table in (('scores', scores), ('joined', joined), ('joined_runs', per_run),
                      ('correlations', corr)):
    path = out / f'{name}.csv'
    table.to_csv(path, index=False)
    written.append(path)
  if figures_too:
    for name, fig in (('estimators_vs_accuracy', figure_scatter(joined, corr, rule, k)),
                      ('estimator_correlations', figure_correlations(corr, rule, k))):
      if fig is not None:
        written.extend(figures.save(fig, out / 'figures', name))
  return written
