"""Model selection at every layer: rank several source networks for one target.

You et al. (2021) rank pre-trained networks for a target by LogME on each network's penultimate
features and compare that ranking with the networks' fine-tuned accuracies. Here every network
is scored at each of its own transferable layers n = 1 .. L-1 (the harness's layers: for an
imported network, the cuts of docs/zoo.md), by the estimators of :mod:`analysis.estimators`, on
one class-stratified subsample of the target's training set shared by all networks. The networks
may be imported public networks or checkpoints trained by transferbench; each sees the target
images through its own input transform (an imported network resizes, repeats grayscale to three
channels and normalises as its source did: the transform is part of its model).

Rankings (rank 1 = highest score; every estimator here is "higher is better"), per estimator:

* ``n=K``: at layer K, over the networks that have a layer K (n counts the same unit in the
  ResNet and VGG families, docs/zoo.md; a network with fewer layers is absent);
* ``last``: at each network's last transferable layer (the authors' setting);
* ``best``: at each network's best layer (its highest score; ties to the shallower layer).

Layer counts differ between architectures, so the figure puts each layer at its relative depth
n / (L-1). When the user gives each network's fine-tuned accuracy on the target, each ranking is
correlated with it over the networks (:func:`analysis.rank_correlation.correlation`: Kendall
tau-b, weighted tau, Pearson r, bootstrap CIs over the networks, and the smallest p the number of
networks allows: with 4 networks no tau can reach p < 0.05, and such rows are flagged).

The scores come from one seeded subsample; no CI is drawn for them (a new subsample seed,
``--seed``, shows their sampling spread).
"""

from __future__ import annotations

import dataclasses
import pathlib

import numpy as np
import pandas as pd

from analysis.estimate import EstimateSettings, layer_scores, needs_source
from analysis.rank_correlation import CORRELATION_COLUMNS, correlation
from harness import data, models, runs, tasks
from harness.errors import UserError

SCORE_COLUMNS = ('network', 'model', 'source', 'target', 'n_layers', 'layers', 'relative_depth',
                 'estimator', 'score', 'rank', 'best_layer')
RANKING_COLUMNS = ('estimator', 'scope', 'rank', 'network', 'n_layers', 'relative_depth', 'score')
ACCURACY_COLUMNS = ('network', 'accuracy')


@dataclasses.dataclass(frozen=True)
class Network:
  """A source checkpoint to score: its directory, its name in the tables, and its metadata."""
  name: str
  path: pathlib.Path
  meta: dict

  def build_model(self, image_size: int | None = None):
    """Its flax module; ``image_size`` replaces the input size of a network that resizes."""
    kwargs = dict(self.meta.get('model_kwargs') or {})
    model = models.build_model(self.meta['model'], self.meta['num_classes'], **kwargs)
    if image_size and hasattr(model, 'image_size'):
      model = model.clone(image_size=image_size)
    return model


def load_networks(paths: list[str]) -> list[Network]:
  """The checkpoints' metadata (no weights yet), named by their directories.

  Raises:
    UserError: fewer than two, one given twice, not a checkpoint, or of an unknown model.
  """
  resolved = [pathlib.Path(p).resolve() for p in paths]
  if len(paths) < 2:
    raise UserError('model selection ranks several networks: give --source-checkpoint DIR at '
                    'least twice (one network per layer: `transferbench estimate RESULTS`)')
  twice = sorted({str(p) for p in resolved if resolved.count(p) > 1})
  if twice:
    raise UserError(f'--source-checkpoint {twice[0]} is given twice: give each network once')
  names = [p.name for p in resolved]
  networks = []
  for given, path in zip(paths, resolved):
    meta = runs.load_checkpoint_meta(path)
    if meta.get('model') not in models.VARIANTS:
      raise UserError(f"checkpoint {path} is of model '{meta.get('model')}', which this version "
                      'of transferbench does not know: use the transferbench that wrote it')
    name = path.name if names.count(path.name) == 1 else str(given)
    networks.append(Network(name, path, meta))
  return networks


def _source_task(network: Network) -> tasks.TaskSpec:
  return tasks.TaskSpec.from_dict(network.meta['task'])


def check_inputs(networks: list[Network], input_shape: tuple[int, ...], image_size: int | None) -> None:
  """Every network can read the target's examples.

  A network with an input transform (an imported one) takes any image of 1 or 3 channels; any
  other network takes inputs of the shape it was trained on.

  Raises:
    UserError: naming the first network that cannot.
  """
  for network in networks:
    model = network.build_model(image_size)
    if hasattr(model, 'image_size'):
      if len(input_shape) != 3 or input_shape[-1] not in (1, 3):
        raise UserError(f'network {network.name} takes images of 1 or 3 channels; the target has '
                        f'inputs of shape {tuple(input_shape)}: choose an image data set')
    elif tuple(network.meta.get('input_shape') or ()) != tuple(input_shape):
      raise UserError(f"network {network.name} was trained on inputs of shape "
                      f"{tuple(network.meta.get('input_shape') or ())}, the target's are "
                      f'{tuple(input_shape)}: score it on a data set of its input shape')


def check_source_data(networks: list[Network], settings: EstimateSettings,
                      data_dir: str | None) -> None:
  """LEEP and NCE fit a per-layer classifier of each network's source task: its data must load.

  Raises:
    UserError: naming the network whose source data set is not at hand, and the way out.
  """
  if not needs_source(settings):
    return
  for network in networks:
    task = _source_task(network)
    try:
      data.dataset_info(task.dataset, data_dir)
    except UserError as e:
      raise UserError(
          f"LEEP and NCE need each network's source-task data for their per-layer source "
          f"classifier; network {network.name}'s ({task.dataset}) is not at hand ({e}): "
          'leave them out (--estimators logme hscore ...)') from None


def score_networks(networks: list[Network], target: tasks.TaskSpec,
                   sample: tuple[np.ndarray, np.ndarray], settings: EstimateSettings,
                   data_dir: str | None, image_size: int | None = None,
                   show_progress: bool = True) -> pd.DataFrame:
  """Every estimator at every layer of every network, on one subsample of the target.

  Args:
    networks: from :func:`load_networks`.
    target: the target task.
    sample: ``(x, y)``, its examples scored (:func:`analysis.features.task_sample`), in [0, 1]
      as the data sets give them: each network applies its own input transform.
    settings: estimators and their settings (source examples for LEEP and NCE).
    data_dir: TFDS data directory (the source data of LEEP and NCE).
    image_size: input size of the networks that resize (None: each checkpoint's).
    show_progress: a progress bar over the layers.

  Returns:
    The scores with :data:`SCORE_COLUMNS` (rank and best layer from :func:`rank_layers`).
  """
  from tqdm.auto import tqdm
  from analysis.features import layer_features, task_sample
  models_of = {n.name: n.build_model(image_size) for n in networks}
  total = sum(m.num_layers - 1 for m in models_of.values())
  rows = []
  with tqdm(total=total, desc='networks', unit='layer', disable=not show_progress) as bar:
    for network in networks:
      bar.set_postfix_str(network.name)
      model = models_of[network.name]
      variables, _ = runs.load_checkpoint(network.path)
      source = None
      if needs_source(settings):
        x_src, y_src = task_sample(_source_task(network), data_dir, settings.source_examples,
                                   settings.seed)
        source = (layer_features(model, variables, x_src, settings.batch_size, settings.max_dim),
                  y_src)
      layers = model.num_layers - 1
      for n, name, score in layer_scores(model, variables, sample, len(target.classes), settings,
                                         source, bar):
        rows.append({'network': network.name, 'model': network.meta['model'],
                     'source': _source_task(network).name, 'target': target.name, 'n_layers': n,
                     'layers': layers, 'relative_depth': n / layers, 'estimator': name,
                     'score': score})
  return rank_layers(pd.DataFrame(rows))


def rank_layers(scores: pd.DataFrame) -> pd.DataFrame:
  """Adds ``rank`` (of the network among those with a layer n, per estimator) and ``best_layer``.

  Args:
    scores: network, n_layers, estimator, score (one row each).

  Returns:
    The same rows with :data:`SCORE_COLUMNS`; ``best_layer`` is True on each network's
    highest-scoring layer per estimator (the shallowest of ties; none when all its scores are NaN).
  """
  scores = scores.copy()
  scores['rank'] = (scores.groupby(['estimator', 'n_layers'])['score']
                    .rank(ascending=False, method='min'))
  ordered = scores.sort_values(['estimator', 'network', 'score', 'n_layers'],
                               ascending=[True, True, False, True], na_position='last')
  best = ordered.dropna(subset=['score']).groupby(['estimator', 'network']).head(1).index
  scores['best_layer'] = scores.index.isin(best)
  return scores[list(SCORE_COLUMNS)]


def rankings(scores: pd.DataFrame) -> pd.DataFrame:
  """The networks in rank order per estimator and scope (``n=K``, ``last``, ``best``).

  Returns:
    Rows with :data:`RANKING_COLUMNS`; ties share the lower rank.
  """
  scopes = {f'n={n}': scores[scores['n_layers'] == n] for n in sorted(scores['n_layers'].unique())}
  scopes['last'] = scores[scores['n_layers'] == scores['layers']]
  scopes['best'] = scores[scores['best_layer']]
  table = pd.concat([rows.assign(scope=scope) for scope, rows in scopes.items()], ignore_index=True)
  table['rank'] = table.groupby(['estimator', 'scope'])['score'].rank(ascending=False, method='min')
  table['scope'] = pd.Categorical(table['scope'], categories=list(scopes), ordered=True)
  table = table.sort_values(['estimator', 'scope', 'rank', 'network'])
  return table.astype({'scope': str})[list(RANKING_COLUMNS)].reset_index(drop=True)


def read_accuracy(path: str | pathlib.Path, networks: list[Network]) -> pd.Series:
  """The fine-tuned target accuracy of each network, from a CSV with columns network, accuracy.

  Raises:
    UserError: unreadable file, missing columns, a network named twice, unknown or missing, or
      a value that is not a number.
  """
  path = pathlib.Path(path)
  names = [n.name for n in networks]
  fix = f"give one row per network ({', '.join(names)}) with columns network, accuracy"
  try:
    table = pd.read_csv(path)
  except (OSError, ValueError) as e:
    raise UserError(f'cannot read --accuracy {path} ({e}): {fix}') from None
  missing = [c for c in ACCURACY_COLUMNS if c not in table.columns]
  if missing:
    raise UserError(f"--accuracy {path} has no column {', '.join(missing)}: {fix}")
  given = table['network'].astype(str)
  problems = {'names a network twice': sorted(set(given[given.duplicated()])),
              'names networks that are not scored': sorted(set(given) - set(names)),
              'has no accuracy for': sorted(set(names) - set(given))}
  for what, found in problems.items():
    if found:
      raise UserError(f"--accuracy {path} {what}: {', '.join(found)}: {fix}")
  accuracy = pd.to_numeric(table['accuracy'], errors='coerce')
  if accuracy.isna().any():
    raise UserError(f'--accuracy {path}: the accuracy of {given[accuracy.isna()].iloc[0]} is not a '
                    f'number: {fix}')
  return pd.Series(accuracy.to_numpy(float), index=given, name='accuracy')


def accuracy_correlations(ranked: pd.DataFrame, accuracy: pd.Series) -> pd.DataFrame:
  """Per estimator and ranking scope: the networks' scores against their fine-tuned accuracy.

  The networks are the points and the independent units (the CI resamples them); fewer than
  3 give NaN statistics (:data:`analysis.rank_correlation.MIN_POINTS`).

  Returns:
    Columns: estimator, scope and :data:`analysis.rank_correlation.CORRELATION_COLUMNS`.
  """
  rows = []
  for (name, scope), group in ranked.groupby(['estimator', 'scope'], sort=False):
    rows.append({'estimator': name, 'scope': scope,
                 **correlation(group['score'], group['network'].map(accuracy))})
  return pd.DataFrame(rows, columns=['estimator', 'scope', *CORRELATION_COLUMNS])


# ------------------------------------------------------------------------------------- outputs

def _fmt(value: float) -> str:
  return 'n/a' if value != value else f'{value:.4g}'


def _ranking_line(rows: pd.DataFrame) -> str:
  """'a > b = c' in rank order (ties as '=')."""
  parts, previous = [], None
  for row in rows.itertuples(index=False):
    if parts:
      parts.append('=' if row.rank == previous else '>')
    parts.append(row.network)
    previous = row.rank
  return ' '.join(parts)


def _score_table(scores: pd.DataFrame, ranked: pd.DataFrame) -> list[str]:
  """One estimator's markdown table: networks (in best-layer rank order) x layers."""
  layers = sorted(scores['n_layers'].unique())
  lines = ['| network | model | layers | ' + ' | '.join(f'n={n}' for n in layers)
           + ' | best layer (depth) | rank by best | rank at last |',
           '|---' * (len(layers) + 6) + '|']
  rank_of = {(r.scope, r.network): int(r.rank) for r in ranked.dropna(subset=['rank']).itertuples()}
  order = ranked[ranked['scope'] == 'best']['network'].tolist()
  order += sorted(set(scores['network']) - set(order))
  for name in order:
    rows = scores[scores['network'] == name].set_index('n_layers')
    cells = []
    for n in layers:
      if n not in rows.index:
        cells.append('–')
        continue
      row = rows.loc[n]
      cell = f"{_fmt(row['score'])} ({int(row['rank'])})" if row['rank'] == row['rank'] else 'n/a'
      cells.append(f'**{cell}**' if row['best_layer'] else cell)
    best = rows[rows['best_layer']]
    where = (f'n={best.index[0]} ({best["relative_depth"].iloc[0]:.2f})' if len(best) else 'n/a')
    first = rows.iloc[0]
    lines.append(f"| {name} | {first['model']} | {first['layers']} | " + ' | '.join(cells)
                 + f" | {where} | {rank_of.get(('best', name), 'n/a')} | "
                 f"{rank_of.get(('last', name), 'n/a')} |")
  return lines


def _correlation_table(corr: pd.DataFrame) -> list[str]:
  """Markdown rows of :func:`accuracy_correlations` for one estimator."""
  ci = lambda r, stat: (f'[{_fmt(getattr(r, stat + "_low"))}, {_fmt(getattr(r, stat + "_high"))}]'
                        if getattr(r, stat + '_low') == getattr(r, stat + '_low') else '')
  lines = ['| ranking | networks | Kendall τ [95% CI] | min p | weighted τ | Pearson r [95% CI] |',
           '|---|---|---|---|---|---|']
  for r in corr.itertuples(index=False):
    flag = '*' if r.too_few_points else ''
    tau, r_ci = f'{_fmt(r.kendall_tau)} {ci(r, "kendall_tau")}', f'{_fmt(r.pearson_r)} {ci(r, "pearson_r")}'
    lines.append(f'| {r.scope} | {r.points} | {tau.strip()} | {r.kendall_min_p:.3f}{flag} | '
                 f'{_fmt(r.weighted_tau)} | {r_ci.strip()} |')
  return lines


def markdown(scores: pd.DataFrame, ranked: pd.DataFrame, corr: pd.DataFrame | None,
             about: str) -> str:
  """The report: per estimator, the score table, the rankings, and (if given) the correlations.

  Args:
    scores: :func:`score_networks`.
    ranked: :func:`rankings`.
    corr: :func:`accuracy_correlations`, or None.
    about: a sentence on the target and the subsample, put first.
  """
  lines = [f"# Model selection for {scores['target'].iloc[0]}", '', about, '',
           'Cells: score (rank among the networks that have layer n; 1 = highest); bold: the '
           "network's best layer. Depth: n / (L-1). Scores come from one subsample: no CI.", '']
  for name in dict.fromkeys(scores['estimator']):
    mine = ranked[ranked['estimator'] == name]
    lines += [f'## {name}', ''] + _score_table(scores[scores['estimator'] == name], mine) + ['']
    lines += [f'- {scope}: {_ranking_line(rows)}' for scope, rows in mine.groupby('scope', sort=False)]
    if corr is not None:
      lines += ['', "Against the networks' fine-tuned accuracy (points: networks; CI: bootstrap over "
                "the networks; *: too few networks for Kendall's τ to reach p < 0.05):", '']
      lines += _correlation_table(corr[corr['estimator'] == name])
    lines.append('')
  return '\n'.join(lines)


def figure_depth(scores: pd.DataFrame, about: str):
  """Per estimator: score vs relative depth, one line per network, its best layer starred.

  Returns:
    A matplotlib Figure with its caption (``analysis.figures.caption_of``).
  """
  from analysis import figures
  matplotlib, sns, _ = figures._plotting()
  names = list(dict.fromkeys(scores['estimator']))
  networks = list(dict.fromkeys(scores['network']))
  palette = dict(zip(networks, sns.color_palette('colorblind', len(networks))))
  fig, axes = figures._new_figure(len(names), 3, 2.0, share=False)
  with matplotlib.rc_context(figures.RC):
    for ax, name in zip(axes, names):
      for network, rows in scores[scores['estimator'] == name].groupby('network', sort=False):
        rows = rows.sort_values('n_layers')
        ax.plot(rows['relative_depth'], rows['score'], marker='o', ms=3, lw=1,
                color=palette[network], label=network)
        best = rows[rows['best_layer']]
        ax.plot(best['relative_depth'], best['score'], marker='*', ms=9, ls='',
                color=palette[network])
      ax.set_title(name)
      ax.set_xlabel('relative depth n / (L-1)')
      ax.set_ylabel('score')
      ax.set_xlim(0, 1.05)
      ax.grid(alpha=0.3)
    title = f"Transferability of each network's layers to {scores['target'].iloc[0]}"
    fig.suptitle(title)
    figures._legend(fig, axes[0].get_legend_handles_labels()[0], ncol=min(len(networks), 4))
  fig.transferbench_caption = (
      f'{title}. Estimator score vs relative depth n / (L-1) of each network\'s own transferable '
      f'layers (L-1 of them; docs/zoo.md for imported networks); a star marks its best layer. '
      f'{about} One subsample: no CI is drawn.')
  return fig


def write_outputs(out: pathlib.Path, scores: pd.DataFrame, ranked: pd.DataFrame,
                  corr: pd.DataFrame | None, about: str, figures_too: bool = True) -> list[pathlib.Path]:
  """scores.csv, rankings.csv, model_selection.md, correlations.csv (with accuracy) and the
  figure score_vs_depth (PNG, PDF, caption) under ``out``; returns the paths written."""
  from analysis import figures
  out.mkdir(parents=True, exist_ok=True)
  tables = {'scores': scores, 'rankings': ranked}
  if corr is not None:
    tables['correlations'] = corr
  written = []
  for name, table in tables.items():
    written.append(out / f'{name}.csv')
    table.to_csv(written[-1], index=False)
  written.append(out / 'model_selection.md')
  written[-1].write_text(markdown(scores, ranked, corr, about) + '\n')
  if figures_too:
    written.extend(figures.save(figure_depth(scores, about), out / 'figures', 'score_vs_depth'))
  return written
