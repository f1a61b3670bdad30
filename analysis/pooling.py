"""Pooling over replicate task pairs, analysed at the level of the independent unit.

A study's replicates are often task pairs (Yosinski et al. 2014: 4 random splits x 2 directions,
one network per cell) as well as seeds. A curves table says so with a ``pair`` column (the
replicate pair, e.g. split0) and a ``pair_kind`` column (``random_halves``, ``dissimilar`` or
``none``; see :mod:`analysis.curves`).

Observation. One (pair, target, seed) unit: a run scored against the scratch run of its own pair
and target, matched by seed where the seeds match and against the mean of that target's scratch
runs otherwise (the per-run ``gap_<measure>`` of :func:`analysis.transfer.compare_with_scratch`).
A replicate without any scratch run on its (pair, target) is an error, not a silent gap.

Unit of replication. Observations that share initial weights are not independent: results
trained before the harness folded the task pair into the initial-weights key start seed s from
the same weights in every pair (and its random-frozen layers are identical across pairs). So when the observations span two or more seeds, the *unit is the seed*: the observations
of one seed are averaged over (pair, target) and the seeds are the replicates of every test and
CI. With a single seed (e.g. the published networks, each trained once from its own
initialisation) the unit is the (pair, target) observation. Every pooled row, claim part and
caption states the unit and how many there are.

Pooled rows (:func:`pooled_summary`): per (stratum, condition, fine_tuned, n, pair_kind), for the
kinds ``random_halves`` and ``dissimilar`` when two or more pairs share the kind (``none`` marks a
single task with its own base and is never pooled), and for every mean-type measure: the mean gap
over units (> 0 = negative transfer, as in the per-target rows), its percentile-bootstrap 95% CI
and t-test over units (:func:`analysis.stats.compare`), and a verdict from Holm-adjusted p-values
over the family of pooled rows of one (pair_kind, measure).
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from analysis import stats
from analysis.curves import label, strata
from harness import conditions as conditions_lib
from harness.errors import UserError

POOLED_KINDS = ('random_halves', 'dissimilar')
OBSERVATION = ('pair', 'target', 'seed')


def unit_values(values: pd.Series) -> tuple[pd.Series, str]:
  """Values per independent unit from values per (pair, target, seed) observation.

  Args:
    values: one value per observation, indexed by (pair, target, seed); NaN = missing.

  Returns:
    (values per unit, the unit in words). Seeds are the units when the observations span two or
    more seeds (the mean over each seed's observations); otherwise the observations are.
  """
  values = values.dropna()
  seeds = values.index.get_level_values('seed')
  if seeds.nunique() >= 2:
    per_seed = values.groupby(level='seed').mean()
    per = values.groupby(level='seed').size()
    return per_seed, (f'seed ({len(per_seed)} seeds, mean over {per.min()}-{per.max()} '
                      'pair x target each)' if per.min() != per.max() else
                      f'seed ({len(per_seed)} seeds, mean over {per.min()} pair x target each)')
  return values, f'pair x target ({len(values)} observations, one seed)'


def unit_table(table: pd.DataFrame) -> tuple[pd.DataFrame, str]:
  """An (observation x n) table as a (unit x n) table (see :func:`unit_values`)."""
  if table.empty:
    return table, 'no observations'
  seeds = table.index.get_level_values('seed')
  if seeds.nunique() >= 2:
    return (table.groupby(level='seed').mean(),
            f'seed ({seeds.nunique()} seeds, mean over pair x target)')
  return table, f'pair x target ({len(table)} observations, one seed)'


def _check_scratch(runs: pd.DataFrame, kind: str) -> None:
  """Every replicate of a pooled kind has a scratch run on its own (pair, target)."""
  lonely = runs[runs['pairing'] == 'no scratch']
  if len(lonely):
    row = lonely.iloc[0]
    raise UserError(
        f'run {row["run_id"]!r} (pair {row["pair"]!r}, target {row["target"]!r}) has no scratch '
        f'run on its target in its pair: pooling the {kind} pairs scores each replicate against '
        f'the scratch run of its own pair and target; add that base net (condition scratch, pair '
        f'{row["pair"]}, target {row["target"]}) or drop the run')


def _pooled_row(key: dict, cell: pd.DataFrame, measure: str, settings) -> dict:
  """One pooled row: mean gap over units, bootstrap CI and t-test (unadjusted)."""
  gaps = cell.set_index(list(OBSERVATION))[f'gap_{measure}']
  units, unit = unit_values(gaps)
  d = units.to_numpy(float)
  rng = stats.rng_for(settings.seed, 'pooled', tuple(key.values()), measure)
  result = stats.compare(np.zeros_like(d), d, True, 'mean', 1, settings.test, settings.n_boot,
                         rng, settings.alpha)
  return {**key, 'label': label(key['condition'], key['fine_tuned']), 'measure': measure,
          'unit': unit, 'n_units': len(d), 'n_obs': int(gaps.notna().sum()),
          'n_pairs': cell['pair'].nunique(), 'gap': result['gap'],
          'gap_ci_low': result['gap_ci_low'], 'gap_ci_high': result['gap_ci_high'],
          'test': result['test'], 'p_value': result['p_value']}


def _verdicts(pooled: pd.DataFrame, alpha: float) -> pd.DataFrame:
  """Holm over each (pair_kind, measure) family; the verdict needs the adjusted p and the CI."""
  pooled['p_holm'] = np.nan
  for _, idx in pooled.groupby(['pair_kind', 'measure'], sort=False).groups.items():
    pooled.loc[idx, 'p_holm'] = stats.holm(pooled.loc[idx, 'p_value'].to_numpy(float))
  significant = pooled['p_holm'] < alpha
  direction = ((significant & (pooled['gap_ci_low'] > 0)).astype(int)
               - (significant & (pooled['gap_ci_high'] < 0)).astype(int))
  pooled['verdict'] = np.where(pooled['n_units'] < 2, 'single unit',
                               direction.map(stats.VERDICTS))
  pooled['family'] = 'Holm over the pooled rows of one pair_kind and measure'
  return pooled


def pooled_summary(runs: pd.DataFrame, settings, measures) -> pd.DataFrame:
  """Pooled rows over the replicate pairs of each kind (see the module docstring).

  Args:
    runs: the runs table of :func:`analysis.transfer.compare_with_scratch` (with ``pair``,
      ``pair_kind``, ``pairing`` and ``gap_<measure>`` columns).
    settings: the analysis settings (seed, n_boot, test, alpha).
    measures: names of the mean-type measures to pool (their ``gap_<name>`` columns).

  Returns:
    One row per (stratum, condition, fine_tuned, n_layers, pair_kind, measure); empty when no
    kind has two or more pairs.

  Raises:
    UserError: a replicate of a pooled kind has no scratch run on its (pair, target).
  """
  if 'pair_kind' not in runs.columns:
    return pd.DataFrame()
  keys = ([c for c in strata(runs) if c != 'pair']
          + ['condition', 'fine_tuned', 'n_layers', 'pair_kind'])
  rows = []
  for kind in POOLED_KINDS:
    of_kind = runs[runs['pair_kind'] == kind]
    if of_kind['pair'].nunique() < 2:
      continue
    transferred = of_kind[of_kind['condition'] != conditions_lib.BASE]
    _check_scratch(transferred, kind)
    for values, cell in transferred.groupby(keys, sort=True):
      key = dict(zip(keys, values))
      rows.extend(_pooled_row(key, cell, m, settings) for m in measures
                  if f'gap_{m}' in cell.columns)
  if not rows:
    return pd.DataFrame()
  return _verdicts(pd.DataFrame(rows), settings.alpha)


def pooled_table(pooled: pd.DataFrame) -> pd.DataFrame:
  """The pooled rows as strings for the markdown report: gap [CI], units, Holm p, verdict."""
  def ci(r):
    if np.isnan(r['gap_ci_low']):
      return f'{r["gap"]:+.4f}'
    return f'{r["gap"]:+.4f} [{r["gap_ci_low"]:+.4f}, {r["gap_ci_high"]:+.4f}]'
  return pd.DataFrame([{'Kind': r['pair_kind'], 'Cond.': r['label'], 'n': str(r['n_layers']),
                        'Measure': r['measure'], 'Gap [95% CI]': ci(r), 'Unit': r['unit'],
                        'Pairs': str(r['n_pairs']), 'p (Holm)': f'{r["p_holm"]:.3g}',
                        'Verdict': r['verdict']} for _, r in pooled.iterrows()])
