"""Transfer against scratch: per-run gaps and per-cell summaries with CIs, tests and verdicts.

Every non-scratch run is compared with the scratch runs on the same target (and stratum):

* **Pairing.** If the cell's seeds are unique and a subset of the (unique) scratch seeds on that
  target, each run is matched with the scratch run of its seed ('seed'); otherwise with the pooled
  scratch runs ('pooled': the per-run reference is their mean, or lower median for time to
  threshold, and the two groups are resampled independently).
* **AUC range.** Normalised AUCs of a cell and of its scratch reference are taken over one step
  range of exactly those runs, [min of first steps, min of last steps]
  (:func:`analysis.measures.auc_range`); scratch rows use the range of the scratch runs.
  ``auc_step_lo``/``auc_step_hi`` report it. A run missing its first evaluations has no AUC.
* **Start and early skill.** One start step and one early step per target (and stratum): start =
  accuracy at the group's first evaluation step (step 0), early = accuracy at
  :func:`analysis.measures.early_step` (or ``Settings.early_step``). A run not evaluated at that
  step has no value for that measure only.
* **Threshold.** Time to threshold uses one level per target: ``threshold`` x the mean scratch
  asymptote (rule ``rule``) on that target; every run on the target, scratch included, is timed
  against it. A run that never reaches it is right-censored at its last evaluation step in the
  log-rank test.
* **Verdicts** (:func:`_finish_summary`): one family per measure, all non-scratch cells of the
  summary; Holm over the family (:func:`analysis.stats.family_verdicts`), and the minimum
  detectable effect at 80% power for each cell's seeds at Holm's strictest level alpha / m.
* **Gap** (Wang et al. 2019; > 0 = negative transfer): acc_scratch - acc_run for start, AUC and
  the asymptotes (= error_run - error_scratch), and steps_run - steps_scratch for time to threshold
  (inf - finite = inf; inf - inf = 0: both never reach it).
* **Transfer ratio** = (AUC_run - AUC_scratch) / AUC_scratch, against the matched or pooled mean
  scratch AUC (NaN if that is 0).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

from analysis import measures as measures_lib
from analysis import stats
from analysis.curves import LABEL_ORDER, cell_keys, label, strata, target_keys
from harness import conditions as conditions_lib


@dataclass(frozen=True)
class Measure:
  """A per-run measure: its runs-table column, direction and location statistic."""
  column: str
  better: int  # +1: higher is better; -1: lower is better.
  location: str  # 'mean' or 'median'.
  description: str


MEASURES = {
    'start': Measure('start', 1, 'mean', 'accuracy at the first evaluation step (chance)'),
    'early': Measure('early', 1, 'mean', 'accuracy at the declared early step'),
    'auc': Measure('auc', 1, 'mean', 'normalised area under the learning curve'),
    'time_to_threshold': Measure('time_to_threshold', -1, 'median',
                                 'first step reaching threshold x scratch asymptote'),
    'final_last': Measure('final_last', 1, 'mean', 'last evaluation'),
    'final_best': Measure('final_best', 1, 'mean', 'best evaluation'),
    'final_best_k': Measure('final_best_k', 1, 'mean', 'mean of the k best evaluations'),
    'final_last_k': Measure('final_last_k', 1, 'mean', 'mean of the last k evaluations'),
}


@dataclass(frozen=True)
class Settings:
  """Choices of one analysis (see :func:`analysis.analyze`)."""
  threshold: float = 0.9
  k: int = measures_lib.DEFAULT_K
  rule: str = measures_lib.DEFAULT_RULE
  n_boot: int = 10000
  seed: int = 0
  alpha: float = stats.ALPHA
  test: str = 't'
  early_step: float | None = None  # None: measures_lib.early_step of each target's runs.
  early_fraction: float = measures_lib.EARLY_FRACTION
  power: float = 0.8  # of the minimum detectable effect.


def _aucs(run_ids, arrays, lo: float, hi: float) -> np.ndarray:
  return np.array([measures_lib.normalised_auc(*arrays[r], lo, hi) for r in run_ids])


def _reference_values(cell: pd.DataFrame, match: np.ndarray | None, values: np.ndarray,
                      location: str) -> np.ndarray:
  """Per-run reference: the matched scratch value, or the pooled scratch location."""
  if match is not None:
    return values[match]
  valid = values[~np.isnan(values)]
  pooled = stats.LOCATIONS[location](valid) if len(valid) else np.nan
  return np.full(len(cell), float(pooled))


def _compare_cell(cell: pd.DataFrame, scratch: pd.DataFrame,
                  arrays: dict) -> tuple[pd.DataFrame, dict]:
  """Per-run AUC, gaps and ratio of one non-scratch cell, and the inputs of its comparisons.

  Returns:
    (the cell's runs with auc, gap_* and transfer_ratio columns; measure -> (x, ref, paired,
    limits) where ref holds the matched scratch values or all scratch values when pooled, and
    limits the last steps of x's and ref's runs, where "never" is censored).
  """
  match = stats.match_seeds(cell['seed'], scratch['seed'])
  lo, hi = measures_lib.auc_range([arrays[r] for r in (*cell['run_id'], *scratch['run_id'])])
  values = {m.column: cell[m.column].to_numpy(float) for m in MEASURES.values()
            if m.column != 'auc'}
  values['auc'] = _aucs(cell['run_id'], arrays, lo, hi)
  new = {'auc': values['auc'], 'auc_step_lo': lo, 'auc_step_hi': hi}
  scratch_values = {m.column: scratch[m.column].to_numpy(float) for m in MEASURES.values()
                    if m.column != 'auc'}
  scratch_values['auc'] = _aucs(scratch['run_id'], arrays, lo, hi)
  last, scratch_last = cell['last_step'].to_numpy(float), scratch['last_step'].to_numpy(float)
  inputs = {}
  for name, m in MEASURES.items():
    x = values[m.column]
    ref = _reference_values(cell, match, scratch_values[m.column], m.location)
    new[f'gap_{name}'] = stats.differences(ref, x, m.better)
    inputs[name] = ((x, ref, True, (last, scratch_last[match])) if match is not None
                    else (x, scratch_values[m.column], False, (last, scratch_last)))
  ref_auc = _reference_values(cell, match, scratch_values['auc'], 'mean')
  with np.errstate(divide='ignore', invalid='ignore'):
    new['transfer_ratio'] = np.where(ref_auc > 0, (values['auc'] - ref_auc) / ref_auc, np.nan)
  new['pairing'] = 'seed' if match is not None else ('pooled' if len(scratch) else 'no scratch')
  cell = cell.assign(**new)
  return cell, inputs


_REASONS = {
    'single run': 'one run in the cell or one pooled scratch run: no CI, no test',
    'no data': 'no run of the cell has this measure',
    'no scratch': 'no scratch run on the target has this measure',
}


def _group_steps(group: pd.DataFrame, arrays: dict, settings: Settings) -> pd.DataFrame:
  """Start and early skill of a target group's runs, each taken at one step for the group."""
  curves = [arrays[r] for r in group['run_id']]
  first = group['first_step'].min()
  early = (measures_lib.early_step(curves, settings.early_fraction)
           if settings.early_step is None else float(settings.early_step))
  return group.assign(
      start_step=first, start=[measures_lib.accuracy_at(*c, first) for c in curves],
      early_step=early, early=[measures_lib.accuracy_at(*c, early) for c in curves])


def _threshold_level(scratch: pd.DataFrame, settings: Settings) -> float:
  values = scratch[f'final_{settings.rule}'].dropna()
  return settings.threshold * values.mean() if len(values) else np.nan


def _summary_row(key: dict, cell: pd.DataFrame, name: str, inputs, settings: Settings) -> dict:
  """One summary row: the measure's location over the cell, and its gap comparison."""
  m = MEASURES[name]
  values = cell[m.column].to_numpy(float)
  values = values[~np.isnan(values)]
  row = {**key, 'label': label(key['condition'], key['fine_tuned']), 'measure': name,
         'stat': m.location, 'n': len(values),
         'value': float(stats.LOCATIONS[m.location](values)) if len(values) else np.nan,
         'value_ci95': stats.t_halfwidth(values) if m.location == 'mean' else np.nan}
  if name in ('start', 'early'):
    row.update(step_lo=cell[f'{name}_step'].min(), step_hi=cell[f'{name}_step'].max())
  if name == 'auc':
    row.update(step_lo=cell['auc_step_lo'].iloc[0], step_hi=cell['auc_step_hi'].iloc[0],
               transfer_ratio=cell['transfer_ratio'].mean() if 'transfer_ratio' in cell else np.nan)
  if inputs is None:
    return {**row, 'verdict': 'reference', 'pairing': 'reference'}
  x, ref, paired, limits = inputs[name]
  rng = stats.rng_for(settings.seed, tuple(key.values()), name)
  result = stats.compare(x, ref, paired, m.location, m.better, settings.test, settings.n_boot,
                         rng, settings.alpha, limits)
  verdict = stats.verdict(result)  # Final for cells without a test; else set per family.
  result.pop('direction')
  return {**row, **result, 'n': row['n'], 'n_compared': result['n'],
          'pairing': cell['pairing'].iloc[0], 'verdict': verdict,
          'reason': _REASONS.get(verdict, '')}


def compare_with_scratch(runs: pd.DataFrame, arrays: dict,
                         settings: Settings) -> tuple[pd.DataFrame, pd.DataFrame]:
  """Adds AUC, time to threshold and gaps to the runs table, and summarises every cell.

  Args:
    runs: :func:`analysis.measures.run_measures` output.
    arrays: run_id -> (steps, accuracy).
    settings: analysis choices.

  Returns:
    (runs with label, start/start_step and early/early_step at the group's steps, auc,
    auc_step_lo/hi, threshold_level, time_to_threshold, reached, pairing, gap_<measure>,
    transfer_ratio; summary with one row per cell and measure, verdicts per family).
  """
  cell_cols, group_cols = cell_keys(runs), target_keys(runs)
  out_runs, summary = [], []
  for _, group in runs.groupby(group_cols, sort=True, dropna=False):
    level = _threshold_level(group[group['condition'] == conditions_lib.BASE], settings)
    group = _group_steps(group, arrays, settings).assign(
        threshold_level=level, time_to_threshold=[
            measures_lib.time_to_threshold(*arrays[r], level) for r in group['run_id']])
    scratch = group[group['condition'] == conditions_lib.BASE]
    lo, hi = measures_lib.auc_range([arrays[r] for r in scratch['run_id']])
    scratch = scratch.assign(auc=_aucs(scratch['run_id'], arrays, lo, hi), auc_step_lo=lo,
                             auc_step_hi=hi, pairing='reference')
    for key_values, cell in group.groupby(cell_cols, sort=True, dropna=False):
      key = dict(zip(cell_cols, key_values))
      if key['condition'] == conditions_lib.BASE:
        cell, inputs = scratch[scratch['run_id'].isin(cell['run_id'])], None
      else:
        cell, inputs = _compare_cell(cell, scratch, arrays)
      out_runs.append(cell)
      summary.extend(_summary_row(key, cell, name, inputs, settings) for name in MEASURES)
  runs = pd.concat(out_runs, ignore_index=True)
  runs.insert(runs.columns.get_loc('condition') + 1, 'label',
              [label(c, f) for c, f in zip(runs['condition'], runs['fine_tuned'])])
  ttt = runs['time_to_threshold']
  runs['reached'] = pd.array(np.where(ttt.isna(), None, np.isfinite(ttt)), dtype='boolean')
  return _order_runs(runs), _finish_summary(pd.DataFrame(summary), settings)


def _order_runs(runs: pd.DataFrame) -> pd.DataFrame:
  """Runs sorted by cell, then seed; measure columns in a fixed order."""
  first = ['run_id'] + [c for c in runs.columns if c in cell_keys(runs) or c in ('label', 'seed')]
  measure_cols = ['n_evals', 'first_step', 'last_step', 'start_step', 'start', 'early_step',
                  'early', 'auc',
                  'auc_step_lo', 'auc_step_hi', 'transfer_ratio', 'threshold_level',
                  'time_to_threshold', 'reached'] + [f'final_{r}' for r in measures_lib.FINAL_RULES]
  gaps = ['pairing'] + [f'gap_{name}' for name in MEASURES]
  rest = [c for c in runs.columns if c not in first + measure_cols + gaps]
  order = [c for c in first + measure_cols + gaps if c in runs.columns] + rest
  runs = runs[order].assign(_order=runs['label'].map({l: i for i, l in enumerate(LABEL_ORDER)}))
  sort = strata(runs) + ['target', '_order', 'source', 'n_layers', 'seed']
  return runs.sort_values(sort, kind='stable').drop(columns='_order').reset_index(drop=True)


def _label_family(family: pd.DataFrame, settings: Settings) -> pd.DataFrame:
  """Holm verdicts, minimum detectable effect and seeds needed for one family (one measure)."""
  family = family.copy()
  tested = family['p_value'].notna().to_numpy()
  labels = stats.family_verdicts(family['p_value'], family['p_min'], family['sign'],
                                 family['gap_ci_low'], family['gap_ci_high'], settings.alpha)
  family['p_holm'], family['family_size'] = labels['p_holm'], labels['family_size']
  family.loc[tested, 'verdict'] = labels['verdict'][tested]
  untestable = (family['verdict'] == 'untestable').to_numpy()
  family.loc[untestable, 'reason'] = [
      f'{r.test} over {r.n_compared:.0f} vs {r.n_ref:.0f} runs cannot give p < {settings.alpha:g} '
      f'(smallest p {r.p_min:.3g}): add seeds' for r in family[untestable].itertuples()]
  # Each cell's own seed s.d. of the gap (what its test uses), at Holm's strictest level.
  level = settings.alpha / max(int(labels['family_size'][0]) if len(family) else 1, 1)
  t_rows = family['test'].isin(['paired t', 'Welch t']).to_numpy()
  columns = zip(t_rows, *(family[c].to_numpy() for c in ('sd', 'n_compared', 'n_ref', 'pairing',
                                                           'gap')))
  power = [(stats.minimum_detectable_effect(sd, n, n_ref, pairing == 'seed', level,
                                            settings.power),
            stats.seeds_needed(gap, sd, pairing == 'seed', level, settings.power))
           if t else (np.nan, np.nan) for t, sd, n, n_ref, pairing, gap in columns]
  family['mde'], family['seeds_for_gap'] = [p[0] for p in power], [p[1] for p in power]
  return family


def _finish_summary(summary: pd.DataFrame, settings: Settings) -> pd.DataFrame:
  """Verdicts per family (one measure, every cell), and a fixed column order."""
  compared = summary['verdict'] != 'reference'
  families = [_label_family(f, settings) for _, f in summary[compared].groupby('measure', sort=False)]
  summary = pd.concat([summary[~compared], *families]).sort_index()
  columns = (cell_keys(summary) + ['label', 'measure', 'stat', 'n', 'value', 'value_ci95',
             'ref_value', 'n_ref', 'n_compared', 'pairing', 'gap', 'gap_ci_low', 'gap_ci_high',
             'test', 'p_value', 'p_holm', 'family_size', 'verdict', 'reason', 'gap_sd', 'mde',
             'seeds_for_gap', 'transfer_ratio', 'step_lo', 'step_hi'])
  summary = summary.rename(columns={'sd': 'gap_sd'})
  for column in columns:
    if column not in summary.columns:
      summary[column] = np.nan
  return summary[columns]
