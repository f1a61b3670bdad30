"""Whether a study's base nets were trained to convergence (pure functions on long-format curves).

Yosinski et al. 2014 trained their base nets to convergence; a BnB net whose base was still
improving gets a second training budget for its upper layers, so "BnB vs base" then measures
the budget, not co-adaptation. ``reproduce`` therefore reports, per base net, the gain of its
test accuracy over the last part of training:

  gain = accuracy at the last evaluation - accuracy at the last evaluation at or before
         ``fraction`` x the last step (default 0.8: the last 20% of training)

and calls the net *converged* iff ``gain < tolerance`` (default 0.002, i.e. 0.2 accuracy
points; a falling accuracy counts as converged: it has stopped improving). A net with a single
evaluation (published tables) cannot be checked: ``converged`` is then missing and no verdict
depends on it. Single evaluations are noisy (a test set of 5,000 images moves by ~0.1-0.2
points between evaluations), so the tolerance is of that order: a net still gaining more than
the evaluation noise over its last 20% is not at its plateau.
"""

from __future__ import annotations

import dataclasses

import numpy as np
import pandas as pd

from harness import conditions as conditions_lib

FRACTION, TOLERANCE = 0.8, 0.002
COLUMNS = ['pair', 'pair_kind', 'target', 'seed', 'run_id', 'role', 'step_at_fraction',
           'final_step', 'accuracy_at_fraction', 'accuracy_final', 'gain', 'converged']
# role: 'source' for a base net that some run of the curves copies from (its task and seed are
# that run's source and seed), else 'baseline' (a base net scored only as its target's scratch
# reference).
SOURCE, BASELINE = 'source', 'baseline'


@dataclasses.dataclass(frozen=True)
class Rule:
  """The convergence rule (module docstring)."""
  fraction: float = FRACTION
  tolerance: float = TOLERANCE

  def describe(self) -> str:
    return (f'a base net converged iff its test accuracy at the last evaluation minus that at '
            f'{self.fraction:g} x the last step (the last evaluation at or before it) is below '
            f'{self.tolerance:g}')


def _one(curve: pd.DataFrame, rule: Rule) -> dict:
  """The gain of one run's curve (rows sorted by step)."""
  steps, accuracy = curve['step'].to_numpy(), curve['accuracy'].to_numpy(float)
  final = steps[-1]
  before = np.flatnonzero(steps <= rule.fraction * final)
  if len(steps) < 2 or not len(before) or steps[before[-1]] == final:
    return dict(step_at_fraction=None, final_step=int(final), accuracy_at_fraction=np.nan,
                accuracy_final=float(accuracy[-1]), gain=np.nan, converged=None)
  at = before[-1]
  gain = float(accuracy[-1] - accuracy[at])
  return dict(step_at_fraction=int(steps[at]), final_step=int(final),
              accuracy_at_fraction=float(accuracy[at]), accuracy_final=float(accuracy[-1]),
              gain=gain, converged=bool(gain < rule.tolerance))


def _sources(curves: pd.DataFrame) -> set[tuple[str, int]]:
  """(task, seed) of the source networks of the curves' runs that copy from another network."""
  copying = curves[(curves['condition'] != conditions_lib.BASE)
                   & ~curves['source'].isin(('none', 'random')) & curves['source'].notna()]
  return set(zip(copying['source'], copying['seed'].astype(int)))


def base_convergence(curves: pd.DataFrame, rule: Rule = Rule()) -> pd.DataFrame:
  """One row per base (scratch) net: its role, its gain over the last part of training and the
  verdict.

  Args:
    curves: long-format curves of complete runs with ``pair`` and ``pair_kind``.
    rule: the convergence rule.

  Returns:
    Columns :data:`COLUMNS`; ``converged`` is None for a net with one evaluation.
  """
  scratch = curves[curves['condition'] == conditions_lib.BASE].sort_values(['run_id', 'step'])
  sources, rows = _sources(curves), []
  for run_id, curve in scratch.groupby('run_id', sort=True):
    first = curve.iloc[0]
    role = SOURCE if (first['target'], int(first['seed'])) in sources else BASELINE
    rows.append(dict(pair=first['pair'], pair_kind=first['pair_kind'], target=first['target'],
                     seed=int(first['seed']), run_id=run_id, role=role, **_one(curve, rule)))
  table = pd.DataFrame(rows, columns=COLUMNS)
  return table.sort_values(['pair_kind', 'pair', 'target', 'seed']).reset_index(drop=True)


def _select(table: pd.DataFrame, kinds: tuple[str, ...] | None, role: str | None) -> pd.DataFrame:
  keep = np.ones(len(table), bool)
  if kinds is not None:
    keep &= table['pair_kind'].isin(kinds).to_numpy()
  if role is not None:
    keep &= (table['role'] == role).to_numpy()
  return table[keep]


def unconverged(table: pd.DataFrame, kinds: tuple[str, ...] | None = None,
                role: str | None = None) -> pd.DataFrame:
  """The base nets of these pair kinds (None: all) and role (None: both) that were checked and
  did not converge."""
  rows = _select(table, kinds, role)
  return rows[rows['converged'].map(lambda c: c is False)]


def summary(table: pd.DataFrame, kinds: tuple[str, ...] | None = None,
            role: str | None = None) -> str:
  """'base not converged: k of m base nets ... (largest gain g)' for these pair kinds and role
  ('source not converged: k of m source networks ...' for role 'source'), '' if none."""
  bad = unconverged(table, kinds, role)
  if bad.empty:
    return ''
  checked = _select(table, kinds, role)
  checked = checked[checked['converged'].notna()]
  what, nets = ('source', 'source networks') if role == SOURCE else ('base', 'base nets')
  return (f'{what} not converged: {len(bad)} of {len(checked)} {nets} still gained '
          f'>= tolerance over their last training (largest gain {bad["gain"].max():+.4f})')


def counts(table: pd.DataFrame) -> str:
  """'converged: random_halves 40 of 40, dissimilar 9 of 10' (nets that could be checked)."""
  checked = table[table['converged'].notna()]
  if checked.empty:
    return 'converged: no base net could be checked'
  return 'converged: ' + ', '.join(f'{kind} {int(group["converged"].astype(bool).sum())} of '
                                   f'{len(group)}' for kind, group in checked.groupby('pair_kind'))


def text(table: pd.DataFrame, rule: Rule) -> str:
  """The printed table: the counts per pair kind, then one line per base net."""
  if table.empty:
    return 'Convergence of the base nets: no base nets.'
  lines = [f'Convergence of the base nets ({rule.describe()}); {counts(table)}:',
           f'  {"pair":<24} {"target":<16} {"role":<7} {"seed":>4} {"acc@frac":>9} '
           f'{"acc end":>8} {"gain":>8}  converged']
  for row in table.itertuples():
    verdict = {True: 'yes', False: 'NO', None: 'not checked (one evaluation)'}[row.converged]
    lines.append(f'  {row.pair:<24} {row.target:<16} {row.role:<7} {row.seed:>4} '
                 f'{row.accuracy_at_fraction:>9.4f} {row.accuracy_final:>8.4f} '
                 f'{row.gain:>+8.4f}  {verdict}')
  return '\n'.join(lines)


def to_records(table: pd.DataFrame) -> list[dict]:
  """JSON-ready rows (NaN -> None)."""
  clean = lambda v: None if isinstance(v, float) and np.isnan(v) else v
  return [{k: clean(v) for k, v in row.items()} for row in table.to_dict('records')]
