"""Claims of "Are All Layers Created Equal?" (Zhang, Bengio & Singer, JMLR 2022) on reset tables.

Input: the long table that ``transferbench reproduce criticality`` measures with
:func:`harness.probe.reset_measurements`, one row per (run, layer, measure): columns ``target``,
``seed``, ``layer``, ``measure`` (trained / reinit / rerandom / line), ``alpha``, ``accuracy``.

A layer's *drop* is the run's trained accuracy minus its accuracy after the reset. Thresholds,
fixed in advance as fractions of accuracy: a layer is **robust** when its re-initialisation drop
is below ``ROBUST`` (2 points), **critical** when it is at least ``CRITICAL`` (10 points; the
paper's critical layers fall to chance). The unit of replication is the seed (the networks of one
seed share nothing across tasks, but we average a seed's tasks so that each unit counts once);
each part is a one-sided t-test over units, Holm over the claim's parts
(:func:`analysis.reproduce.decide`).

Claims:

1. ``robust_and_critical``: *most layers robust*: per unit, the fraction of layers whose
   re-initialisation drop is < ROBUST, minus 1/2, > 0; *a critical layer*: per unit, the largest
   re-initialisation drop minus CRITICAL > 0.
2. ``rerandomisation_harsher``: per unit, mean over layers of (accuracy after re-initialisation -
   accuracy after re-randomisation) > 0.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from analysis import reproduce
from harness.errors import UserError

ROBUST, CRITICAL = 0.02, 0.10
COLUMNS = ('target', 'seed', 'layer', 'measure', 'alpha', 'accuracy')


def drops(table: pd.DataFrame) -> pd.DataFrame:
  """Per (target, seed, layer): trained accuracy and the drops after reinit and rerandom.

  Raises:
    UserError: a missing column, or a run without its trained row.
  """
  missing = [c for c in COLUMNS if c not in table.columns]
  if missing:
    raise UserError(f'reset table lacks column(s) {missing}: measure it with '
                    '`transferbench reproduce criticality`')
  run = ['target', 'seed']
  trained = table[table['measure'] == 'trained'].groupby(run)['accuracy'].first()
  resets = table[table['measure'].isin(['reinit', 'rerandom'])].pivot_table(
      index=run + ['layer'], columns='measure', values='accuracy').reset_index()
  resets['trained'] = [trained.get(tuple(k), np.nan) for k in resets[run].to_numpy()]
  if resets['trained'].isna().any():
    raise UserError('a run of the reset table has no trained row: measure it again')
  order = lambda layer: (layer == 'head', int(layer[5:]) if layer[5:].isdigit() else 0, layer)
  resets = resets.sort_values('layer', key=lambda c: c.map(order), kind='stable')
  resets = resets.sort_values(run, kind='stable').reset_index(drop=True)
  resets['drop_reinit'] = resets['trained'] - resets['reinit']
  resets['drop_rerandom'] = resets['trained'] - resets['rerandom']
  return resets


def per_seed(values: pd.Series) -> reproduce.Effect:
  """Mean over seeds (each seed's targets averaged) with its t standard error."""
  units = values.groupby(level='seed').mean().to_numpy(float)
  return reproduce.t_effect(units, f'seed ({len(units)}; mean over its targets)')


def _layers_note(d: pd.DataFrame, column: str) -> str:
  means = d.groupby('layer', sort=False)[column].mean()
  return 'mean drop per layer: ' + ', '.join(f'{k} {v:+.3f}' for k, v in means.items())


def claim_robust_and_critical(d: pd.DataFrame, settings: reproduce.Settings) -> list[reproduce.Part]:
  """Most layers are robust to re-initialisation and at least one is critical."""
  per_run = d.groupby(['target', 'seed'])
  robust = per_run['drop_reinit'].apply(lambda x: np.mean(x < ROBUST)) - 0.5
  worst = per_run['drop_reinit'].max() - CRITICAL
  note = _layers_note(d, 'drop_reinit')
  return [reproduce.make_part('most layers robust',
                              f'fraction of layers with reinit drop < {ROBUST:g}, minus 1/2',
                              per_seed(robust), settings, note),
          reproduce.make_part('a critical layer', f'largest reinit drop - {CRITICAL:g}',
                              per_seed(worst), settings)]


def claim_rerandomisation_harsher(d: pd.DataFrame,
                                  settings: reproduce.Settings) -> list[reproduce.Part]:
  """Re-randomising a layer costs more accuracy than re-initialising it."""
  gap = d.groupby(['target', 'seed']).apply(
      lambda g: float(np.mean(g['reinit'] - g['rerandom'])), include_groups=False)
  return [reproduce.make_part('harsher', 'accuracy(reinit) - accuracy(rerandom), mean over layers',
                              per_seed(gap), settings, _layers_note(d, 'drop_rerandom'))]


CLAIMS: dict[str, reproduce.Claim] = {
    'robust_and_critical': reproduce.Claim(
        'most layers are robust to re-initialisation, a few are critical',
        claim_robust_and_critical),
    'rerandomisation_harsher': reproduce.Claim(
        're-randomisation is harsher than re-initialisation', claim_rerandomisation_harsher),
}


def line_table(table: pd.DataFrame) -> pd.DataFrame:
  """Mean accuracy per (target, layer, alpha) along the line from trained (0) to initial (1)."""
  line = table[table['measure'] == 'line']
  trained = table[table['measure'] == 'trained'].assign(alpha=0.0)
  rows = [line] + [trained.assign(layer=layer) for layer in line['layer'].unique()]
  table = (pd.concat(rows).groupby(['target', 'layer', 'alpha'], sort=False)['accuracy']
           .agg(['mean', 'count']).reset_index())
  return table.sort_values(['target', 'alpha'], kind='stable').reset_index(drop=True)


def line_figure(line: pd.DataFrame):
  """Accuracy vs alpha (0 trained, 1 reset to init), one line per layer, a panel per target."""
  from analysis.plotting import _plotting
  _, _, Figure = _plotting()
  targets = list(dict.fromkeys(line['target']))
  fig = Figure(figsize=(4.2 * len(targets), 3.4), layout='constrained')
  for i, target in enumerate(targets):
    ax = fig.add_subplot(1, len(targets), i + 1)
    rows = line[line['target'] == target]
    for layer, g in rows.groupby('layer', sort=False):
      ax.plot(g['alpha'], g['mean'], marker='o', label=layer)
    ax.set(title=target, xlabel='alpha: trained (0) -> initial (1), one layer', ylabel='test accuracy')
    ax.legend(fontsize=7)
  fig.suptitle('Layer criticality: accuracy as one layer moves back to its initial values '
               f'(mean over seeds)', fontsize=9)
  return fig
