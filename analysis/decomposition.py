"""Yosinski et al. 2014's decomposition of the transfer curve, per n, with bootstrap CIs.

For target task B, source task A and n layers copied, with every network scored by the final
accuracy rule of the analysis (``final_<rule>``):

* fragile co-adaptation(n) = base - BnB(n): what re-training the upper layers on top of frozen
  lower layers of the *same* task loses (base = scratch on B);
* specificity(n) = BnB(n) - AnB(n): what features of another task lose beyond that;
* fine-tuning boost(n) = AnB+(n) - base: what copying n layers and fine-tuning them all gains.

Each effect is minuend - subtrahend of two cells, estimated and tested with
:func:`analysis.stats.compare` (mean difference, percentile bootstrap CI, t-test by default).
The cells are paired by seed when both have unique seeds and one cell's seeds are a subset of the
other's (pairs on the shared seeds); otherwise the two groups are compared unpaired.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from analysis import stats
from analysis.curves import strata, target_keys
from analysis.transfer import Settings

# name -> (minuend, subtrahend, formula); cells as (condition, fine_tuned, source role).
EFFECTS = {
    'fragile_coadaptation': (('scratch', False, 'none'), ('selffer', False, 'target'),
                             'base - BnB'),
    'specificity': (('selffer', False, 'target'), ('transfer', False, 'source'), 'BnB - AnB'),
    'fine_tuning_boost': (('transfer', True, 'source'), ('scratch', False, 'none'), 'AnB+ - base'),
}
EFFECT_LABELS = {
    'fragile_coadaptation': 'fragile co-adaptation (base - BnB)',
    'specificity': 'specificity (BnB - AnB)',
    'fine_tuning_boost': 'fine-tuning boost (AnB+ - base)',
}
EVIDENCE = {1: '> 0', -1: '< 0', 0: 'inconclusive', None: 'single run'}


def _cell(group: pd.DataFrame, spec: tuple, n: int, source: str, target: str) -> pd.DataFrame:
  """Runs of one cell of a target group; scratch ignores n and source."""
  condition, fine_tuned, role = spec
  mask = (group['condition'] == condition) & (group['fine_tuned'] == fine_tuned)
  if condition != 'scratch':
    mask &= (group['n_layers'] == n) & (group['source'] == {'target': target,
                                                             'source': source}[role])
  return group[mask]


def paired_values(a: pd.DataFrame, b: pd.DataFrame, column: str):
  """(a values, b values, paired): aligned by seed if one cell's seeds are among the other's."""
  va, vb = a[column].to_numpy(float), b[column].to_numpy(float)
  match = stats.match_seeds(a['seed'], b['seed'])
  if match is not None:
    return va, vb[match], True
  match = stats.match_seeds(b['seed'], a['seed'])
  if match is not None:
    return va[match], vb, True
  return va, vb, False


def _effect_row(name: str, minuend: pd.DataFrame, subtrahend: pd.DataFrame, column: str,
                settings: Settings, key: dict) -> dict:
  ref, x, paired = paired_values(minuend, subtrahend, column)
  rng = stats.rng_for(settings.seed, 'decomposition', tuple(key.values()), name)
  result = stats.compare(x, ref, paired, 'mean', 1, settings.test, settings.n_boot, rng,
                         settings.alpha)
  direction = result.pop('direction')
  formula = EFFECTS[name][2]
  return {**key, 'effect': name, 'formula': formula, 'measure': column,
          'estimate': result['gap'], 'ci_low': result['gap_ci_low'],
          'ci_high': result['gap_ci_high'], 'p_value': result['p_value'], 'test': result['test'],
          'pairing': 'seed' if paired else 'pooled',
          'n_minuend': result['n_ref'], 'n_subtrahend': result['n'],
          'evidence': 'no data' if result['n'] == 0 or result['n_ref'] == 0
                      else EVIDENCE[direction]}


def decompose(runs: pd.DataFrame, settings: Settings) -> pd.DataFrame:
  """Fragile co-adaptation, specificity and fine-tuning boost per target, source and n.

  Args:
    runs: the runs table of the analysis (needs final_<settings.rule>).
    settings: analysis choices (rule, bootstrap, test, alpha).

  Returns:
    One row per (stratum, source, target, n_layers, effect) whose two cells exist: estimate,
    ci_low, ci_high, p_value, test, pairing, n_minuend and n_subtrahend (the values compared:
    the shared seeds when paired) and evidence ('> 0', '< 0', 'inconclusive', 'single run').
    Co-adaptation rows have source = target (they involve B only).
  """
  column = f'final_{settings.rule}'
  rows = []
  for keys, group in runs.groupby(target_keys(runs), sort=True, dropna=False):
    keys = keys if isinstance(keys, tuple) else (keys,)
    base = dict(zip(strata(runs), keys[:-1]))
    target = keys[-1]
    sources = sorted(set(group.loc[group['condition'] == 'transfer', 'source']))
    n_values = sorted(set(group.loc[group['condition'] != 'scratch', 'n_layers']))
    for n in n_values:
      for name, (minuend_spec, subtrahend_spec, _) in EFFECTS.items():
        roles = {minuend_spec[2], subtrahend_spec[2]}
        for source in (sources if 'source' in roles else [target]):
          minuend = _cell(group, minuend_spec, n, source, target)
          subtrahend = _cell(group, subtrahend_spec, n, source, target)
          if len(minuend) and len(subtrahend):
            key = {**base, 'source': source, 'target': target, 'n_layers': int(n)}
            rows.append(_effect_row(name, minuend, subtrahend, column, settings, key))
  columns = strata(runs) + ['source', 'target', 'n_layers', 'effect', 'formula', 'measure',
                            'estimate', 'ci_low', 'ci_high', 'p_value', 'test', 'pairing',
                            'n_minuend', 'n_subtrahend', 'evidence']
  return pd.DataFrame(rows, columns=columns)
