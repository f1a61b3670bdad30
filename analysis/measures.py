"""Per-run measures of a learning curve: start, early skill, slope (AUC, time to threshold), asymptote.

Every function takes the evaluations of one run as two arrays, ``steps`` (increasing) and
``accuracy``, after :func:`evaluations` has dropped missing (NaN) evaluations. Nothing is resampled:
the measures use the steps at which the run was actually evaluated.

Formulas (a run evaluated at steps s_1 < ... < s_m with accuracies a_1, ..., a_m):

* start = a_1, the first evaluation (step 0 where present; ``start_step`` = s_1 says where). The
  analysis keeps a run's start only where s_1 is its comparison group's first step: starts taken
  at different steps are never compared. At step 0 the head is freshly initialised, so start is
  chance for every condition: a sanity check, not a measure of transfer.
* early skill = the accuracy at one declared early step common to the comparison group
  (:func:`early_step`: by default the first scheduled evaluation at or after
  :data:`EARLY_FRACTION` of the group's training budget); NaN for a run not evaluated there.
* asymptote, one column per scoring rule (:data:`FINAL_RULES`): last = a_m; best = max_i a_i;
  best_k = mean of the k largest a_i (Yosinski et al. 2014, k = 10); last_k = mean of
  a_{m-k+1}, ..., a_m. A run with fewer than k evaluations has no best_k / last_k score (NaN):
  averaging fewer values would report a different rule under the same name. The default is
  :data:`DEFAULT_RULE` with :data:`DEFAULT_K` (see there for why).
* normalised AUC over [lo, hi] = (1 / (hi - lo)) * trapezoid of a over the evaluations with
  lo < s_i < hi, plus the two end points, whose accuracy is linearly interpolated between the
  neighbouring evaluations when lo or hi is not an evaluation step (the only interpolation).
  NaN when hi <= lo or [lo, hi] is not inside [s_1, s_m]. The range is :func:`auc_range`.
* time to threshold for an accuracy level L = the first s_i with a_i >= L (no interpolation, so
  its resolution is the evaluation grid); +inf when the run never reaches L.
"""

from __future__ import annotations

from typing import Callable

import numpy as np
import pandas as pd

FINAL_RULES: dict[str, Callable[[np.ndarray, int], float]] = {
    'last': lambda acc, k: acc[-1],
    'best': lambda acc, k: acc.max(),
    'best_k': lambda acc, k: np.sort(acc)[-k:].mean(),
    'last_k': lambda acc, k: acc[-k:].mean(),
}

K_RULES = ('best_k', 'last_k')

# The default asymptote: the mean of the last 3 evaluations. Why: it scores every run at the same
# steps (the end of the common schedule), where the paper's mean of the 10 best evaluations lets
# each run pick its own steps (on the harness's log-spaced schedule those reach back into early
# training for slow runs, inflating fast-converging conditions) and is biased upwards by taking
# maxima of noise. Three evaluations damp evaluation noise while staying in the final phase
# (on eval_steps(600, 50): steps 500-600); more reach back to where scratch is still climbing.
# docs/analysis/verdicts.md gives the measurements behind the choice.
DEFAULT_RULE = 'last_k'
DEFAULT_K = 3
PAPER_K = 10  # Yosinski et al. 2014's k of the best_k rule, its default when chosen.

# Fraction of the training budget at which early skill is measured by default.
EARLY_FRACTION = 0.05

RULE_NAMES = {
    'last': 'last evaluation',
    'best': 'best evaluation',
    'best_k': 'mean of the {k} best evaluations',
    'last_k': 'mean of the last {k} evaluations',
}


def rule_name(rule: str, k: int) -> str:
  """Human-readable name of an asymptote scoring rule, e.g. 'mean of the last 3 evaluations'."""
  return RULE_NAMES[rule].format(k=k)


def default_k(rule: str) -> int:
  """k when the user gives none: the paper's 10 for best_k, :data:`DEFAULT_K` otherwise."""
  return PAPER_K if rule == 'best_k' else DEFAULT_K


def evaluations(steps: np.ndarray, accuracy: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
  """The non-missing evaluations of one run, sorted by step.

  Args:
    steps: evaluation steps.
    accuracy: accuracies at those steps; NaN marks a missing evaluation.

  Returns:
    (steps, accuracy) as float arrays without the NaN evaluations.
  """
  steps = np.asarray(steps, float)
  accuracy = np.asarray(accuracy, float)
  keep = ~np.isnan(accuracy)
  order = np.argsort(steps[keep], kind='stable')
  return steps[keep][order], accuracy[keep][order]


def start(steps: np.ndarray, accuracy: np.ndarray) -> tuple[float, float]:
  """(step, accuracy) of the first evaluation; (NaN, NaN) for a run without evaluations."""
  if len(steps) == 0:
    return np.nan, np.nan
  return float(steps[0]), float(accuracy[0])


def final_accuracy(accuracy: np.ndarray, rule: str, k: int = DEFAULT_K) -> float:
  """Asymptotic accuracy under a scoring rule of :data:`FINAL_RULES`.

  Args:
    accuracy: the run's evaluations in step order.
    rule: 'last', 'best', 'best_k' or 'last_k'.
    k: number of evaluations for the k rules.

  Returns:
    The score; NaN for a run without evaluations, or with fewer than k for the k rules.
  """
  if len(accuracy) == 0 or (rule in K_RULES and len(accuracy) < k):
    return np.nan
  return float(FINAL_RULES[rule](np.asarray(accuracy, float), k))


def normalised_auc(steps: np.ndarray, accuracy: np.ndarray, lo: float, hi: float) -> float:
  """Mean accuracy over [lo, hi]: trapezoid area on the actual steps divided by hi - lo.

  Args:
    steps: increasing evaluation steps of one run (no NaN evaluations).
    accuracy: accuracies at those steps.
    lo: start of the common step range.
    hi: end of the common step range.

  Returns:
    The normalised area in [0, 1]; NaN if hi <= lo or the run does not cover [lo, hi].
  """
  if not hi > lo or len(steps) == 0 or lo < steps[0] or hi > steps[-1]:
    return np.nan
  inside = (steps > lo) & (steps < hi)
  x = np.concatenate([[lo], steps[inside], [hi]])
  y = np.concatenate([[np.interp(lo, steps, accuracy)], accuracy[inside],
                      [np.interp(hi, steps, accuracy)]])
  return float(np.trapezoid(y, x) / (hi - lo))


def auc_range(curves: list[tuple[np.ndarray, np.ndarray]]) -> tuple[float, float]:
  """[min of first steps, min of last steps] over runs that have evaluations.

  The range starts where the schedule starts and ends at the budget every run reached. A run
  missing its first evaluations does not cover it and gets no AUC (NaN): its gap would otherwise
  cut the range of every run compared with it.

  Args:
    curves: (steps, accuracy) per run.

  Returns:
    (lo, hi); (NaN, NaN) if no run has evaluations. hi < lo means the runs do not overlap.
  """
  spans = [(s[0], s[-1]) for s, _ in curves if len(s)]
  if not spans:
    return np.nan, np.nan
  return min(a for a, _ in spans), min(b for _, b in spans)


def accuracy_at(steps: np.ndarray, accuracy: np.ndarray, step: float) -> float:
  """The accuracy evaluated at exactly ``step``; NaN if the run has no evaluation there."""
  hit = np.flatnonzero(steps == step)
  return float(accuracy[hit[0]]) if len(hit) else np.nan


def early_step(curves: list[tuple[np.ndarray, np.ndarray]], fraction: float = EARLY_FRACTION) -> float:
  """The declared early step of a comparison group: one step, common to all its runs.

  The first step scheduled for at least half of the runs that is at or after ``fraction`` of the
  group's budget (the smallest last step), so a run missing that evaluation does not move it.

  Args:
    curves: (steps, accuracy) per run of the group.
    fraction: fraction of the budget.

  Returns:
    The step; NaN if no run has evaluations.
  """
  curves = [s for s, _ in curves if len(s)]
  if not curves:
    return np.nan
  budget = min(s[-1] for s in curves)
  steps, counts = np.unique(np.concatenate(curves), return_counts=True)
  scheduled = steps[(2 * counts >= len(curves)) & (steps >= fraction * budget)]
  return float(scheduled[0]) if len(scheduled) else float(budget)


def time_to_threshold(steps: np.ndarray, accuracy: np.ndarray, level: float) -> float:
  """First evaluation step whose accuracy reaches ``level``.

  Args:
    steps: increasing evaluation steps (no NaN evaluations).
    accuracy: accuracies at those steps.
    level: accuracy to reach (e.g. 0.9 x scratch's asymptote).

  Returns:
    The step; +inf if the run never reaches ``level`` ("never" is an answer, not an error);
    NaN if ``level`` is NaN or the run has no evaluations.
  """
  if np.isnan(level) or len(steps) == 0:
    return np.nan
  hit = np.flatnonzero(accuracy >= level)
  return float(steps[hit[0]]) if len(hit) else np.inf


OUTPUT_COLUMNS = frozenset({
    'label', 'n_evals', 'first_step', 'last_step', 'start_step', 'start', 'early_step', 'early',
    'auc', 'auc_step_lo',
    'auc_step_hi', 'transfer_ratio', 'threshold_level', 'time_to_threshold', 'reached',
    'pairing', *(f'final_{rule}' for rule in FINAL_RULES)})


def curve_arrays(curves: pd.DataFrame) -> dict[str, tuple[np.ndarray, np.ndarray]]:
  """run_id -> (steps, accuracy) without NaN evaluations, for validated curves."""
  return {run_id: evaluations(g['step'].to_numpy(), g['accuracy'].to_numpy())
          for run_id, g in curves.groupby('run_id', sort=False)}


def run_measures(curves: pd.DataFrame, arrays: dict, k: int = DEFAULT_K) -> pd.DataFrame:
  """The measures of each run that need no comparison: evaluations, start and asymptotes.

  Args:
    curves: validated curves.
    arrays: :func:`curve_arrays` of ``curves``.
    k: number of evaluations for the best_k and last_k rules.

  Returns:
    One row per run: the run's metadata columns (every column constant within the run, except
    names the analysis writes), then n_evals, first_step, last_step, start_step, start and
    final_<rule> for each rule.
  """
  constant = curves.groupby('run_id', sort=True).nunique(dropna=False).max() <= 1
  meta_columns = [c for c in curves.columns if constant.get(c, False) or c == 'run_id']
  # Extra columns that would collide with an output column of the analysis are not carried.
  meta_columns = [c for c in meta_columns if c not in ('step', 'accuracy', 'loss')
                  and c not in OUTPUT_COLUMNS and not c.startswith('gap_')]
  meta = curves.groupby('run_id', sort=True)[meta_columns[1:]].first().reset_index()
  rows = []
  for run_id in meta['run_id']:
    steps, acc = arrays[run_id]
    start_step, start_acc = start(steps, acc)
    row = {'n_evals': len(steps), 'first_step': steps[0] if len(steps) else np.nan,
           'last_step': steps[-1] if len(steps) else np.nan,
           'start_step': start_step, 'start': start_acc}
    row.update({f'final_{rule}': final_accuracy(acc, rule, k) for rule in FINAL_RULES})
    rows.append(row)
  return pd.concat([meta, pd.DataFrame(rows)], axis=1)
