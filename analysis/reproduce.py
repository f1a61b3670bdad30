"""Check a published study's claims on long-format curves with replicate pairs (pure functions).

``transferbench reproduce STUDY`` (:mod:`transferbench.reproduce_command`) trains the study's
sweep or reads any curves file with ``pair``/``pair_kind`` (``--curves``), then calls
:func:`reproduce_curves` here: score every run, divide by its base, check each claim, write
``claims.json``, ``claims.md``, ``runs_relative.csv``, ``curves_relative.csv`` and the figures.
Nothing here trains. The method is written out in docs/analysis/pooling_and_claims.md.

Units. A run's score (rule ``--rule``, default the paper's mean of the 10 best evaluations) is
divided by the score of the scratch run of the same pair, target and seed (the mean of that
(pair, target)'s scratch runs when the seed has none): ``rel = score / base``. An *observation*
is one (pair, target, seed); pairs are grouped by ``pair_kind``. The *unit of replication* is the
seed when the observations span two or more seeds (observations of one seed share initial
weights, so they are averaged), else the (pair, target) observation
(:func:`analysis.pooling.unit_values`). Every part states its unit.

Decision rule of a part (a directional claim "effect > 0"): estimate = mean over units, 90% t CI
(the two one-sided 5% tests), one-sided t-test in the claimed direction and one in the opposite
direction. Within a claim, both sets of p-values are Holm-adjusted over the claim's parts; a part
is **reproduced** iff its adjusted p < alpha, **not reproduced** iff its adjusted opposite p <
alpha, else **inconclusive**. A claim is reproduced iff every part is, not reproduced iff some
part is, else inconclusive. One-sided tests because every part states a direction in advance;
each wrong verdict (reproduced when the effect is <= 0, or the reverse) has error <= alpha.

The claims of Yosinski et al. 2014 (N = the deepest n measured; n_dip fixed in advance: the
paper's n = 5 of 7, scaled by relative depth, round(5 N / 7), or ``Settings.dip_n``):

1. ``fragile_coadaptation``: *dip*: 1 - BnB/base at n_dip > 0; *recovery*: BnB/base(N) -
   BnB/base(n_dip) > 0 (random halves).
2. ``specificity``: *falls*: minus the slope of AnB/base over n > 0 (random halves); *steeper for
   dissimilar*: slope(random halves) - slope(dissimilar) > 0.
3. ``fine_tuning_boost``: *boost*: mean over n of AnB+/base - 1 > 0; *nowhere below base*:
   non-inferiority at every n, AnB+/base > 1 - margin (default margin 0.01, 1% of base), an
   intersection-union test (p = the largest per-n p), per-n SEs from the variance pooled over n.
4. ``random_features``: *falls*: minus the slope of random/base over n > 0 (random-frozen runs of
   the random halves, or of a ``none`` pair with its own base such as the paper's nets on all
   1000 classes; mixing both is an error); *faster than AnB*: slope(AnB) - slope(random) > 0.

A slope is the least-squares slope of rel over n per observation, averaged per unit; its SE is
between units, or with a single unit (one network per n) the residual SE of that regression.

Convergence. Claim 1 compares BnB with its base net, which means something only if the base was
trained to convergence (else BnB's upper layers gain from a second training budget). Every base
net's convergence is checked (:mod:`analysis.convergence`: the test accuracy's gain over the last
20% of training below 0.2 points); if a base net of the random halves did not converge, claim 1
is **inconclusive: base not converged**, whatever its parts say.
"""

from __future__ import annotations

import dataclasses
import pathlib
from typing import TYPE_CHECKING, Callable, Mapping, Sequence

import numpy as np
import pandas as pd
from scipy import stats as sps

from analysis import convergence as convergence_lib
from analysis import measures as measures_lib
from analysis import stats
from analysis.curves import keep_complete, label, validate_curves
from analysis.pooling import OBSERVATION, unit_table, unit_values
from harness import conditions as conditions_lib
from harness.errors import UserError

if TYPE_CHECKING:
  from analysis.studies import Study

REPRODUCED, NOT_REPRODUCED, INCONCLUSIVE = 'reproduced', 'not reproduced', 'inconclusive'
RANDOM_HALVES, DISSIMILAR_KIND, NONE = 'random_halves', 'dissimilar', 'none'
# pair_kind -> the group name printed in tables and figures.
RANDOM, DISSIMILAR = 'random halves', 'dissimilar'  # group names in tables and figures
GROUP_NAMES = {RANDOM_HALVES: RANDOM, DISSIMILAR_KIND: DISSIMILAR, NONE: 'own base (none)'}
PAPER_DIP_N, PAPER_DEPTH = 5, 7  # Yosinski et al. 2014: deepest BnB dip at n = 5 of 7 layers.


@dataclasses.dataclass(frozen=True)
class Settings:
  """Statistical choices of a reproduction check (see the module docstring)."""
  rule: str = measures_lib.DEFAULT_RULE  # score of a run; the paper's own is best_k, k = 10
  k: int = measures_lib.DEFAULT_K
  alpha: float = stats.ALPHA
  margin: float = 0.01     # non-inferiority margin on score / base
  dip_n: int | None = None  # None: round(5 N / 7)
  convergence_tolerance: float = convergence_lib.TOLERANCE  # accuracy gain over the last 20%

  def describe(self) -> str:
    return (f'score = {measures_lib.rule_name(self.rule, self.k)}, relative to base; one-sided '
            f't-tests at alpha={self.alpha}, Holm over each claim\'s parts; 90% t CIs; '
            f'non-inferiority margin {self.margin:g} x base; unit: the seed (mean over its '
            'pairs) with two or more seeds, else the (pair, target); '
            f'{self.convergence_rule().describe()}')

  def convergence_rule(self) -> convergence_lib.Rule:
    return convergence_lib.Rule(tolerance=self.convergence_tolerance)


@dataclasses.dataclass
class Part:
  """One directional test of a claim: an effect whose claimed sign is positive."""
  name: str
  formula: str
  estimate: float = np.nan
  ci_low: float = np.nan
  ci_high: float = np.nan
  p_value: float = np.nan      # one-sided, claimed direction (before Holm)
  p_opposite: float = np.nan   # one-sided, opposite direction (before Holm)
  p_holm: float = np.nan
  p_opposite_holm: float = np.nan
  n: int = 0                   # units
  unit: str = ''
  verdict: str = INCONCLUSIVE
  note: str = ''

  def text(self) -> str:
    if not self.n or np.isnan(self.estimate):
      return f'{self.name}: {self.note or "no data"}'
    ci = '' if np.isnan(self.ci_low) else f' [{self.ci_low:+.4f}, {self.ci_high:+.4f}]'
    p = ('' if np.isnan(self.p_holm) else
         f', p={self.p_holm:.3g} (Holm; opposite {self.p_opposite_holm:.3g})')
    note = f'; {self.note}' if self.note else ''
    return (f'{self.name}: {self.formula} = {self.estimate:+.4f}{ci}{p}, {self.n} unit(s): '
            f'{self.unit} -> {self.verdict}{note}')


@dataclasses.dataclass
class ClaimResult:
  """The verdict of one claim with its parts."""
  claim: str
  statement: str
  verdict: str
  parts: list[Part]
  note: str = ''  # why the verdict is not its parts' (e.g. base not converged)

  def evidence(self) -> str:
    return '; '.join([p.text() for p in self.parts] + ([self.note] if self.note else []))

  def heading(self) -> str:
    """The verdict with its reason when one overrides the parts: 'inconclusive: base not
    converged'."""
    return f'{self.verdict}: {self.note.split(":")[0]}' if self.note else self.verdict

  def to_dict(self) -> dict:
    clean = lambda v: None if isinstance(v, float) and np.isnan(v) else v
    return {'claim': self.claim, 'statement': self.statement, 'verdict': self.verdict,
            'verdict_reason': self.note or None,
            'family': 'Holm over the parts of this claim',
            'parts': [{k: clean(v) for k, v in dataclasses.asdict(p).items()} for p in self.parts]}


# ------------------------------------------------------------------------------- observations

def score_runs(curves: pd.DataFrame, rule: str = 'best_k', k: int = 10) -> pd.DataFrame:
  """One row per complete run with its ``score`` under ``rule``.

  Raises:
    UserError: invalid curves, or runs without a score under the rule (too few evaluations).
  """
  curves, _ = keep_complete(validate_curves(curves))
  runs = measures_lib.run_measures(curves, measures_lib.curve_arrays(curves), k)
  runs['score'] = runs[f'final_{rule}'].astype(float)
  missing = runs.loc[runs['score'].isna(), 'run_id'].tolist()
  if missing:
    fewest = int(runs['n_evals'].min())
    raise UserError(f'{len(missing)} run(s) have no {measures_lib.rule_name(rule, k)} (e.g. '
                    f'{missing[0]!r}; fewest evaluations: {fewest}): pass --rule last (e.g. for '
                    'published scores, one evaluation per run) or a smaller --k')
  return runs


def relative_scores(runs: pd.DataFrame) -> pd.DataFrame:
  """Per run: score relative to the scratch run of its pair, target and seed.

  Args:
    runs: one row per run with condition, fine_tuned, n_layers, target, seed, pair, pair_kind
      and ``score``.

  Returns:
    Columns kind, group, pair, target, seed, label, n_layers, score, base, rel.

  Raises:
    UserError: no pair/pair_kind columns, or a run without a scratch run on its (pair, target).
  """
  if 'pair' not in runs.columns or 'pair_kind' not in runs.columns:
    raise UserError('checking claims needs the columns pair and pair_kind: name each run\'s '
                    'replicate task pair (e.g. split0) and its kind (random_halves, dissimilar '
                    'or none)')
  runs = runs.assign(kind=runs['pair_kind'], group=runs['pair_kind'].map(GROUP_NAMES),
                     label=[label(c, f) for c, f in zip(runs['condition'], runs['fine_tuned'])])
  scratch = runs[runs['condition'] == conditions_lib.BASE]
  by_seed = scratch.groupby(list(OBSERVATION))['score'].mean()
  by_target = scratch.groupby(['pair', 'target'])['score'].mean()
  keys = list(zip(runs['pair'], runs['target'], runs['seed']))
  base = pd.Series([by_seed.get(key, by_target.get(key[:2], np.nan)) for key in keys],
                   index=runs.index)
  lonely = runs[base.isna()]
  if len(lonely):
    row = lonely.iloc[0]
    raise UserError(f'run {row["run_id"]!r} (pair {row["pair"]!r}, target {row["target"]!r}) has '
                    'no scratch run on its target in its pair: each replicate is scored against '
                    'the base net of its own pair and target; add it (condition scratch, pair '
                    f'{row["pair"]}, target {row["target"]}) or drop the run')
  out = runs.assign(base=base, rel=runs['score'] / base)
  return out[['kind', 'group', 'pair', 'target', 'seed', 'label', 'n_layers', 'score', 'base',
              'rel']].reset_index(drop=True)


def matrix(rel: pd.DataFrame, kind: str, name: str) -> pd.DataFrame:
  """rel of one pair kind and label as an (pair, target, seed) x n table (NaN: missing run)."""
  rows = rel[(rel['kind'] == kind) & (rel['label'] == name)]
  if rows.empty:
    return pd.DataFrame()
  return rows.pivot_table(index=list(OBSERVATION), columns='n_layers', values='rel',
                          aggfunc='mean').sort_index(axis=1)


def slopes(table: pd.DataFrame) -> pd.Series:
  """Least-squares slope of each row of an (observation x n) table over n (complete rows only)."""
  table = table.dropna()
  if table.shape[1] < 2 or table.empty:
    return pd.Series(dtype=float)
  n = table.columns.to_numpy(float)
  return pd.Series(np.polyfit(n, table.to_numpy(float).T, 1)[0], index=table.index)


# ------------------------------------------------------------------------------------- tests

@dataclasses.dataclass(frozen=True)
class Effect:
  """An estimate over units with its standard error and degrees of freedom (0: untestable)."""
  estimate: float
  se: float
  df: float
  n: int
  unit: str

  def __neg__(self) -> 'Effect':
    return dataclasses.replace(self, estimate=-self.estimate)


def t_effect(values, unit: str) -> Effect:
  """Mean of one value per independent unit, with its t standard error (untestable below two).

  Args:
    values: the units' values (array-like).
    unit: what a unit is, for the report (e.g. 'seed (10)').
  """
  d = np.asarray(values, float)
  if len(d) < 2:
    return Effect(float(d.mean()) if len(d) else np.nan, np.nan, 0, len(d), unit)
  return Effect(float(d.mean()), float(d.std(ddof=1) / np.sqrt(len(d))), len(d) - 1, len(d), unit)


def mean_effect(values: pd.Series) -> Effect:
  """Mean over units of values per (pair, target, seed) observation, with its t standard error."""
  units, unit = unit_values(values)
  return t_effect(units.to_numpy(float), unit)


def _unit_slopes(table: pd.DataFrame) -> tuple[pd.Series, str]:
  return unit_values(slopes(table)) if not table.empty else (pd.Series(dtype=float), '')


def slope_effect(table: pd.DataFrame) -> Effect:
  """Mean slope over units; with a single unit, the residual SE of its regression over n."""
  units, unit = _unit_slopes(table)
  if len(units) != 1:
    return mean_effect(slopes(table)) if len(units) else Effect(np.nan, np.nan, 0, 0, '')
  n = table.columns.to_numpy(float)
  y = table.dropna().iloc[0].to_numpy(float)
  fit = np.polyfit(n, y, 1)
  df = len(n) - 2
  if df < 1:
    return Effect(float(fit[0]), np.nan, 0, 1, unit)
  residual = np.sum((y - np.polyval(fit, n)) ** 2) / df
  se = float(np.sqrt(residual / np.sum((n - n.mean()) ** 2)))
  return Effect(float(fit[0]), se, df, 1, unit + f'; SE from the residuals over {len(n)} n')


def slope_difference(a: pd.DataFrame, b: pd.DataFrame) -> Effect:
  """slope(a) - slope(b): paired by seed when both have the same seeds as units, else Welch."""
  ua, unit_a = _unit_slopes(a)
  ub, unit_b = _unit_slopes(b)
  if ua.index.name == 'seed' and ub.index.name == 'seed' and set(ua.index) == set(ub.index):
    d = (ua - ub.reindex(ua.index)).to_numpy(float)
    return Effect(float(d.mean()), float(d.std(ddof=1) / np.sqrt(len(d))), len(d) - 1, len(d),
                  unit_a + '; paired by seed')
  ea, eb = slope_effect(a), slope_effect(b)
  if not (ea.df > 0 and eb.df > 0):
    return Effect(ea.estimate - eb.estimate, np.nan, 0, min(ea.n, eb.n), f'{unit_a} vs {unit_b}')
  var = ea.se ** 2 + eb.se ** 2
  df = var ** 2 / (ea.se ** 4 / ea.df + eb.se ** 4 / eb.df) if var > 0 else ea.df + eb.df
  return Effect(ea.estimate - eb.estimate, float(np.sqrt(var)), float(df), min(ea.n, eb.n),
                f'{unit_a} vs {unit_b} (Welch)')


def _one_sided(estimate: float, se: float, df: float) -> tuple[float, float]:
  """(p that the effect is > 0, p that it is < 0), one-sided t; exact when se is 0."""
  if se == 0:
    return (0.0, 1.0) if estimate > 0 else (1.0, 0.0) if estimate < 0 else (1.0, 1.0)
  t = estimate / se
  return float(sps.t.sf(t, df)), float(sps.t.cdf(t, df))


def make_part(name: str, formula: str, effect: Effect, settings: Settings, note: str = '') -> Part:
  """A part with its estimate, 90% t CI and one-sided p-values (verdict set by :func:`decide`)."""
  part = Part(name, formula, estimate=effect.estimate, n=effect.n, unit=effect.unit, note=note)
  if not (effect.df > 0 and np.isfinite(effect.se)):
    part.note = '; '.join(filter(None, ['too few units for a test', note]))
    return part
  part.p_value, part.p_opposite = _one_sided(effect.estimate, effect.se, effect.df)
  half = float(sps.t.ppf(1 - settings.alpha, effect.df) * effect.se)
  part.ci_low, part.ci_high = effect.estimate - half, effect.estimate + half
  return part


def non_inferiority(table: pd.DataFrame, unit: str, settings: Settings) -> Part:
  """'Nowhere below base': at every n, mean of (rel - 1) > -margin (intersection-union).

  Args:
    table: (unit x n) values of rel - 1.
    unit: the unit in words.
    settings: alpha and margin.

  Returns:
    A part whose p is the largest per-n one-sided p (the claim needs every n) and whose opposite
    p is the smallest Holm-adjusted per-n p of being below 1 - margin. Per-n SEs use the
    variance within n pooled over n (so that an n with one unit is still tested).
  """
  columns = {n: table[n].dropna().to_numpy(float) for n in table.columns}
  columns = {n: v for n, v in columns.items() if len(v)}
  df = sum(len(v) for v in columns.values()) - len(columns)
  means = {n: float(v.mean()) for n, v in columns.items()}
  per_n = ', '.join(f'{n}: {m:+.4f}' for n, m in means.items())
  formula = f'min over n of AnB+/base - 1 (margin {settings.margin:g})'
  if not columns or df < 1:
    return Part('nowhere below base', formula, n=len(table), unit=unit,
                note=f'no variance within n to test (per n: {per_n})')
  sd = np.sqrt(sum(np.sum((v - v.mean()) ** 2) for v in columns.values()) / df)
  se = {n: sd / np.sqrt(len(v)) for n, v in columns.items()}
  p = {n: _one_sided(means[n] + settings.margin, se[n], df) for n in columns}
  worst = min(means, key=means.get)
  half = float(sps.t.ppf(1 - settings.alpha, df) * se[worst])
  below = stats.holm(np.array([p[n][1] for n in columns]))
  return Part('nowhere below base', formula, estimate=means[worst], ci_low=means[worst] - half,
              ci_high=means[worst] + half, p_value=max(p[n][0] for n in columns),
              p_opposite=float(np.min(below)), n=len(table), unit=unit,
              note=f'worst n={worst}; per n: {per_n}; SD pooled over n ({df} df)')


def decide(parts: Sequence[Part], alpha: float) -> list[Part]:
  """Holm over the claim's parts, for each direction; sets every part's verdict."""
  claimed = stats.holm(np.array([p.p_value for p in parts], float))
  opposite = stats.holm(np.array([p.p_opposite for p in parts], float))
  for part, a, b in zip(parts, claimed, opposite):
    part.p_holm, part.p_opposite_holm = float(a), float(b)
    part.verdict = REPRODUCED if a < alpha else NOT_REPRODUCED if b < alpha else INCONCLUSIVE
  return list(parts)


def combine(parts: Sequence[Part]) -> str:
  """A claim's verdict: reproduced iff every part is; not reproduced iff one part is."""
  verdicts = [p.verdict for p in parts]
  if verdicts and all(v == REPRODUCED for v in verdicts):
    return REPRODUCED
  if NOT_REPRODUCED in verdicts:
    return NOT_REPRODUCED
  return INCONCLUSIVE


def _no_data(name: str, why: str) -> Part:
  return Part(name, '', note=why)


# ------------------------------------------------------------------- the claims of the paper

def dip_n(ns: Sequence[int], settings: Settings) -> int:
  """The n of the dip, fixed in advance: the paper's 5 of 7 scaled to the deepest n measured."""
  if settings.dip_n is not None:
    return int(settings.dip_n)
  return int(np.floor(PAPER_DIP_N * max(ns) / PAPER_DEPTH + 0.5))


def claim_fragile_coadaptation(rel: pd.DataFrame, settings: Settings) -> list[Part]:
  """BnB drops below base at the fixed middle n and recovers at the top (module docstring)."""
  bnb = matrix(rel, RANDOM_HALVES, 'BnB')
  if bnb.empty:
    return [_no_data('dip', 'no BnB runs on random halves')]
  ns = list(bnb.columns)
  top, n = ns[-1], dip_n(ns, settings)
  if not 1 < n < top or n not in bnb:
    return [_no_data('dip', f'needs n = 1..N with N >= 3 and the dip n={n} measured (have n = '
                     f'{ns}): no middle layers')]
  per_n = 'per n (1 - BnB/base): ' + ', '.join(f'{c}: {1 - m:+.4f}' for c, m in bnb.mean().items())
  dip = make_part(f'dip n={n}', f'1 - BnB/base at n={n} (fixed in advance)',
                  mean_effect(1.0 - bnb[n]), settings, per_n)
  recovery = make_part('recovery', f'BnB/base(n={top}) - BnB/base(n={n})',
                       mean_effect(bnb[top] - bnb[n]), settings)
  return [dip, recovery]


def claim_specificity(rel: pd.DataFrame, settings: Settings) -> list[Part]:
  """AnB falls as n grows, more steeply for the dissimilar pair."""
  anb = matrix(rel, RANDOM_HALVES, 'AnB')
  if anb.empty:
    return [_no_data('falls', 'no AnB runs on random halves')]
  falls = make_part('falls', '-slope(AnB/base over n)', -slope_effect(anb), settings)
  dissimilar = matrix(rel, DISSIMILAR_KIND, 'AnB')
  if dissimilar.empty:
    return [falls, _no_data('steeper for dissimilar', 'no dissimilar pair in the results')]
  steeper = make_part('steeper for dissimilar', 'slope(random halves) - slope(dissimilar)',
                      slope_difference(anb, dissimilar), settings)
  return [falls, steeper]


def claim_fine_tuning_boost(rel: pd.DataFrame, settings: Settings) -> list[Part]:
  """AnB+ >= base: a boost on average over n, and non-inferior to base at every n."""
  ft = matrix(rel, RANDOM_HALVES, 'AnB+')
  if ft.empty:
    return [_no_data('boost', 'no AnB+ runs on random halves')]
  boost = make_part('boost', 'AnB+/base - 1, mean over n', mean_effect(ft.mean(axis=1) - 1.0),
                    settings)
  table, unit = unit_table(ft - 1.0)
  return [boost, non_inferiority(table, unit, settings)]


def _random_frozen(rel: pd.DataFrame) -> pd.DataFrame:
  """The random-frozen runs of one kind: random halves, or a 'none' pair with its own base."""
  kinds = sorted(set(rel.loc[rel['label'] == 'random', 'kind']) & {RANDOM_HALVES, NONE})
  if len(kinds) > 1:
    raise UserError(f'random-frozen runs come from pairs of kinds {" and ".join(kinds)}: the '
                    'random_features claim compares one set with AnB; keep the random_frozen '
                    'rows of one kind (drop the others) and check the other in a second run')
  return matrix(rel, kinds[0], 'random') if kinds else pd.DataFrame()


def claim_random_features(rel: pd.DataFrame, settings: Settings) -> list[Part]:
  """Random frozen features fall off fast with n: they fall, and faster than AnB."""
  random = _random_frozen(rel)
  if random.empty:
    return [_no_data('falls', 'no random-frozen runs on random halves or a none pair')]
  falls = make_part('falls', '-slope(random/base over n)', -slope_effect(random), settings)
  anb = matrix(rel, RANDOM_HALVES, 'AnB')
  if anb.empty:
    return [falls, _no_data('faster than AnB', 'no AnB runs on random halves')]
  faster = make_part('faster than AnB', 'slope(AnB) - slope(random)',
                     slope_difference(anb, random), settings)
  return [falls, faster]


@dataclasses.dataclass(frozen=True)
class Claim:
  """A published claim and the function that checks it (returns its parts)."""
  statement: str
  check: Callable[[pd.DataFrame, Settings], list[Part]]
  converged_kinds: tuple[str, ...] = ()  # pair kinds whose base nets must have converged
  converged_sources: bool = False  # the source networks (pre-training) must have converged


YOSINSKI2014_CLAIMS: dict[str, Claim] = {
    'fragile_coadaptation': Claim(
        'BnB drops below base in the middle layers (fragile co-adaptation) and recovers at the top',
        claim_fragile_coadaptation, converged_kinds=(RANDOM_HALVES,)),
    'specificity': Claim('AnB falls as n grows (specificity), more steeply for the dissimilar pair',
                         claim_specificity),
    'fine_tuning_boost': Claim('AnB+ >= base (fine-tuning boost)', claim_fine_tuning_boost),
    'random_features': Claim('random frozen features fall off fast with n', claim_random_features),
}


def check_claims(rel: pd.DataFrame, claims: Mapping[str, Claim],
                 settings: Settings = Settings(),
                 convergence: pd.DataFrame | None = None) -> list[ClaimResult]:
  """Checks every claim of a registry on a relative-scores table (:func:`relative_scores`).

  Args:
    rel: relative scores.
    claims: the study's claims.
    settings: statistical choices.
    convergence: :func:`analysis.convergence.base_convergence` of the runs (None: not checked);
      a claim with ``converged_kinds`` whose base nets did not all converge, or with
      ``converged_sources`` whose source networks did not, is inconclusive.
  """
  results = []
  for name, claim in claims.items():
    parts = decide(claim.check(rel, settings), settings.alpha)
    verdict, note = combine(parts), ''
    if convergence is not None:
      note = '; '.join(filter(None, (
          claim.converged_kinds and convergence_lib.summary(convergence, claim.converged_kinds),
          claim.converged_sources and convergence_lib.summary(convergence,
                                                              role=convergence_lib.SOURCE))))
      verdict = INCONCLUSIVE if note else verdict
    results.append(ClaimResult(name, claim.statement, verdict, parts, note))
  return results


# ----------------------------------------------------------------------------------- outputs

def claims_markdown(results: Sequence[ClaimResult]) -> str:
  """A markdown table claim | verdict | evidence."""
  lines = ['| Claim | Verdict | Evidence (estimate [90% CI], Holm p, units) |', '|---|---|---|']
  for r in results:
    lines.append(f'| {r.claim}: {r.statement} | **{r.heading()}** | '
                 + r.evidence().replace('|', r'\|') + ' |')
  return '\n'.join(lines)


def curve_table(rel: pd.DataFrame) -> pd.DataFrame:
  """Mean relative score and 95% t CI half-width over units per (group, label, n)."""
  rows = []
  for (group, name, n), g in rel.groupby(['group', 'label', 'n_layers'], sort=True):
    units, unit = unit_values(g.set_index(list(OBSERVATION))['rel'])
    if not len(units):
      continue
    rows.append({'group': group, 'label': name, 'n_layers': int(n), 'rel_mean': units.mean(),
                 'rel_ci95': stats.t_halfwidth(units.to_numpy(float)), 'count': len(units),
                 'unit': unit, 'score_mean': g['score'].mean()})
  return pd.DataFrame(rows)


def write_claims(results: Sequence[ClaimResult], out: pathlib.Path, settings: Settings,
                 method: str, convergence: pd.DataFrame | None = None,
                 markdown_tail: str = '') -> list[pathlib.Path]:
  """Writes a study's ``claims.json`` and ``claims.md`` into ``out`` (which exists).

  Args:
    results: the checked claims.
    out: the output directory.
    settings: the rules they were checked with.
    method: one line on the unit, the tests and the margins (the head of claims.md).
    convergence: the base or source nets' convergence table, recorded in claims.json (None: the
      study checks none).
    markdown_tail: text after the claims in claims.md.

  Returns:
    The two paths, JSON first.
  """
  from harness.results import atomic_write_json
  written = [out / 'claims.json', out / 'claims.md']
  record = {'settings': dataclasses.asdict(settings), 'method': method,
            'claims': [r.to_dict() for r in results]}
  if convergence is not None:
    record['convergence'] = {'rule': settings.convergence_rule().describe(),
                             'base_nets': convergence_lib.to_records(convergence)}
  atomic_write_json(written[0], record)
  written[1].write_text(f'{method}.\n\n' + claims_markdown(results) + markdown_tail + '\n')
  return written


def write_outputs(results: Sequence[ClaimResult], rel: pd.DataFrame, runs: pd.DataFrame,
                  out: pathlib.Path, reference: str | None, settings: Settings = Settings(),
                  draw: bool = True, convergence: pd.DataFrame | None = None
                  ) -> list[pathlib.Path]:
  """claims.json (with the base nets' convergence), claims.md, runs_relative.csv,
  curves_relative.csv and (``draw``) the figures."""
  out.mkdir(parents=True, exist_ok=True)
  bases_line = ('' if convergence is None or convergence.empty else
                f'\n\nBase nets {convergence_lib.counts(convergence)} (gain over the last 20% of '
                f'training below {settings.convergence_tolerance:g}).')
  written = write_claims(results, out, settings, settings.describe(),
                         pd.DataFrame() if convergence is None else convergence,
                         markdown_tail=bases_line)
  written += [out / 'runs_relative.csv', out / 'curves_relative.csv']
  rel.to_csv(written[2], index=False)
  curves = curve_table(rel)
  curves.to_csv(written[3], index=False)
  if not draw:
    return written
  from analysis import figures
  points = None
  if reference == 'yosinski2014':
    from analysis.reference import yosinski2014_points
    points = yosinski2014_points()
  # The subtitle names the unit of the random halves (the claims' group), else the first group's.
  halves = curves['group'] == RANDOM if 'group' in curves else pd.Series(False, curves.index)
  named = curves[halves] if halves.any() else curves
  unit = named['unit'].iloc[0] if 'unit' in named and len(named) else None
  fig = figures.reference_overlay(curves, points, rule=settings.rule, k=settings.k, unit=unit)
  if fig is not None:
    written += figures.save(fig, out, 'reproduced_vs_published')
  labelled = runs.assign(label=[label(c, f) for c, f in zip(runs['condition'], runs['fine_tuned'])])
  fig2 = figures.fig2_accuracy_vs_n(labelled, settings.rule, settings.k, reference=points)
  if fig2 is not None:
    written += figures.save(fig2, out, 'fig2_relative_per_pair')
  return written


def reproduce_curves(curves: pd.DataFrame, study: 'Study', settings: Settings,
                     out: pathlib.Path, draw: bool = True):
  """Scores the curves, checks the study's claims and writes the outputs.

  Args:
    curves: long-format curves with ``pair`` and ``pair_kind`` (any source).
    study: the study whose claims are checked.
    settings: scoring rule and statistical choices.
    out: output directory.
    draw: also draw the figures.

  Returns:
    (claim results, scored runs, relative scores, base nets' convergence
    (:func:`analysis.convergence.base_convergence`), written paths).

  Raises:
    UserError: invalid curves, no pair/pair_kind, a replicate without its scratch run, runs
      without a score under the rule, or a claim fed by more than one pair kind.
  """
  runs = score_runs(curves, settings.rule, settings.k)
  rel = relative_scores(runs)
  complete, _ = keep_complete(validate_curves(curves))
  convergence = convergence_lib.base_convergence(complete, settings.convergence_rule())
  results = check_claims(rel, study.claims, settings, convergence)
  written = write_outputs(results, rel, runs, out, study.reference, settings, draw, convergence)
  return results, runs, rel, convergence, written


def claims_text(results: Sequence[ClaimResult]) -> str:
  """The printed verdicts: one line per claim, then each part's effect, CI, p and units."""
  lines = []
  for r in results:
    lines.append(f'\n[{r.heading().upper()}] {r.claim}: {r.statement}')
    lines += [f'    {part.text()}' for part in r.parts] + ([f'    {r.note}'] if r.note else [])
  return '\n'.join(lines)
