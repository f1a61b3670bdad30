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
other's (pairs on the shared seeds); otherwise the two groups are compared unpaired. The evidence
label is Holm-adjusted over one family per effect (every source, target and n of the table), as
the summary's verdicts are (:func:`analysis.stats.family_verdicts`).
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from analysis import stats
from analysis.curves import strata, target_keys
from analysis.transfer import Settings
from harness import conditions as conditions_lib

# name -> (minuend, subtrahend, formula); cells as (condition, fine_tuned, source role).
EFFECTS = {
    'fragile_coadaptation': ((conditions_lib.BASE, False, 'none'),
                             (conditions_lib.SELFFER, False, 'target'),
                             'base - BnB'),
    'specificity': ((conditions_lib.SELFFER, False, 'target'),
                    (conditions_lib.TRANSFER, False, 'source'), 'BnB - AnB'),
    'fine_tuning_boost': ((conditions_lib.TRANSFER, True, 'source'),
                          (conditions_lib.BASE, False, 'none'), 'AnB+ - base'),
}
EFFECT_LABELS = {
    'fragile_coadaptation': 'fragile co-adaptation (base - BnB)',
    'specificity': 'specificity (BnB - AnB)',
    'fine_tuning_boost': 'fine-tuning boost (AnB+ - base)',
}
EVIDENCE = {'negative': '> 0', 'positive': '< 0', 'inconclusive': 'inconclusive',
            'untestable': 'untestable', 'single run': 'single run', 'no data': 'no data',
            'no scratch': 'no data'}


def _cell(group: pd.DataFrame, spec: tuple, n: int, source: str, target: str) -> pd.DataFrame:
  """Runs of one cell of a target group; scratch ignores n and source."""
  condition, fine_tuned, role = spec
  mask = (group['condition'] == condition) & (group['fine_tuned'] == fine_tuned)
  if condition != conditions_lib.BASE:
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
  formula = EFFECTS[name][2]
  return {**key, 'effect': name, 'formula': formula, 'measure': column,
          'estimate': result['gap'], 'ci_low': result['gap_ci_low'],
          'ci_high': result['gap_ci_high'], 'p_value': result['p_value'], 'test': result['test'],
          'pairing': 'seed' if paired else 'pooled',
          'n_minuend': result['n_ref'], 'n_subtrahend': result['n'],
          'p_min': result['p_min'], 'sign': result['sign'],
          'evidence': EVIDENCE[stats.verdict(result)]}


def _holm_evidence(table: pd.DataFrame, alpha: float) -> pd.DataFrame:
  """p_holm and evidence per effect family (every row of one effect)."""
  table = table.assign(p_holm=np.nan)
  for _, rows in table.groupby('effect', sort=False):
    labels = stats.family_verdicts(rows['p_value'], rows['p_min'], rows['sign'], rows['ci_low'],
                                   rows['ci_high'], alpha)
    tested = rows['p_value'].notna().to_numpy()
    table.loc[rows.index, 'p_holm'] = labels['p_holm']
    table.loc[rows.index[tested], 'evidence'] = [EVIDENCE[v] for v in labels['verdict'][tested]]
  return table


def decompose(runs: pd.DataFrame, settings: Settings) -> pd.DataFrame:
  """Fragile co-adaptation, specificity and fine-tuning boost per target, source and n.

  Args:
    runs: the runs table of the analysis (needs final_<settings.rule>).
    settings: analysis choices (rule, bootstrap, test, alpha).

  Returns:
    One row per (stratum, source, target, n_layers, effect) whose two cells exist: estimate,
    ci_low, ci_high, p_value, p_holm (Holm over the effect's rows), test, pairing, n_minuend
    and n_subtrahend (the values compared: the shared seeds when paired) and evidence ('> 0',
    '< 0', 'inconclusive', 'untestable', 'single run', 'no data').
    Co-adaptation rows have source = target (they involve B only).
  """
  column = f'final_{settings.rule}'
  rows = []
  for keys, group in runs.groupby(target_keys(runs), sort=True, dropna=False):
    keys = keys if isinstance(keys, tuple) else (keys,)
    base = dict(zip(strata(runs), keys[:-1]))
    target = keys[-1]
    sources = sorted(set(group.loc[group['condition'] == conditions_lib.TRANSFER, 'source']))
    n_values = sorted(set(group.loc[group['condition'] != conditions_lib.BASE, 'n_layers']))
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
                            'estimate', 'ci_low', 'ci_high', 'p_value', 'p_holm', 'test',
                            'pairing', 'n_minuend', 'n_subtrahend', 'evidence']
  table = pd.DataFrame(rows, columns=columns + ['p_min', 'sign'])
  return _holm_evidence(table, settings.alpha)[columns]
