"""``transferbench reproduce STUDY``: run a published study at small scale and check its claims.

A *study* (:data:`STUDIES`) names a sweep (``sweeps/<name>.py``), a registry of *claims* and the
published reference numbers. ``reproduce`` runs (or resumes) the sweep unless ``--analyze-only``,
scores every run with the paper's rule (mean of the k = 10 best evaluations), checks each claim
against the measured curves with CIs over seeds, prints a claim / verdict / evidence table, writes
``claims.json``, ``claims.md`` and ``runs_relative.csv``, and draws figures with the published
curves overlaid on the reproduced ones, each normalised to its own base.

Units. Every score is divided by the score of the base net (scratch) on the same target task and
seed: ``rel = score / base``. An *observation* is one (target, seed); for Yosinski et al. 2014
the random-halves observations of all splits are pooled (3 splits x 5 seeds = 15 by default),
and the dissimilar pair has its own (5). Pairs are grouped by kind (:data:`PAIR_GROUPS`).

Decision rules (one per claim; each claim is a conjunction of *parts*, each part one test):

* A part is a difference d per observation whose claimed sign is positive. Its estimate is
  mean(d), its 95% CI the percentile bootstrap and its p the t-test of :func:`analysis.stats.compare`
  (paired one-sample, or Welch when two groups of observations are compared). Part verdict:
  **reproduced** iff p < alpha and the CI excludes 0 above; **not reproduced** iff p < alpha and
  the CI excludes 0 below (the opposite is measured); **inconclusive** otherwise (or no data).
* A claim is reproduced iff every part is; not reproduced iff some part is not; else inconclusive.

The claims of Yosinski et al. 2014 (N = the deepest n, "middle" = 1 < n < N):

1. ``fragile_coadaptation``: BnB drops below base in the middle layers and recovers at the top.
   *Dip*: reproduced if, for some middle n, d = 1 - BnB_rel is > 0 with Holm-adjusted p < alpha
   (Holm over the middle n) and a CI above 0; not reproduced if the mean of d over the middle n is
   significantly < 0 (BnB above base there), else inconclusive. *Recovery* (tested only once the
   dip is reproduced): d = BnB_rel(N) - BnB_rel(n*) > 0, with n* the middle n of largest mean dip.
2. ``specificity``: AnB falls as n grows, more steeply for the dissimilar pair. *Falls*: d = minus
   the least-squares slope of AnB_rel over n (random halves). *Steeper*: d = slope(random halves)
   - slope(dissimilar), Welch (different observations).
3. ``fine_tuning_boost``: AnB+ >= base. *Boost*: d = mean over n of AnB+_rel - 1 (random halves).
   *Nowhere below*: not reproduced if some n has AnB+_rel significantly < 1 (Holm over n),
   reproduced otherwise.
4. ``random_features``: random frozen features fall off fast with n. *Falls*: d = minus the slope
   of random_rel over n; *faster than AnB*: d = slope(AnB_rel) - slope(random_rel), paired.

See README.md ("Reproducing Yosinski et al. 2014") for the measured verdicts.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import pathlib
from typing import Callable, Mapping, Sequence

import numpy as np
import pandas as pd

from analysis import stats
from analysis.curves import keep_complete, label, validate_curves
from analysis import measures as measures_lib
from harness.errors import UserError

REPRODUCED, NOT_REPRODUCED, INCONCLUSIVE = 'reproduced', 'not reproduced', 'inconclusive'
_PART_VERDICT = {1: REPRODUCED, -1: NOT_REPRODUCED, 0: INCONCLUSIVE, None: INCONCLUSIVE}

# Task-pair kind (harness.tasks.PAIR_KINDS) -> group of observations in the claims.
PAIR_GROUPS = {'random_halves': 'random halves', 'datasets': 'dissimilar', 'partition': 'dissimilar'}
RANDOM, DISSIMILAR = 'random halves', 'dissimilar'


@dataclasses.dataclass(frozen=True)
class Settings:
  """Statistical choices of a reproduction check."""
  k: int = 10             # best-k rule of the paper
  alpha: float = stats.ALPHA
  n_boot: int = 10000
  seed: int = 0


@dataclasses.dataclass
class Part:
  """One test of a claim: a difference whose claimed sign is positive."""
  name: str
  formula: str
  estimate: float = np.nan
  ci_low: float = np.nan
  ci_high: float = np.nan
  p_value: float = np.nan
  n: int = 0
  verdict: str = INCONCLUSIVE
  note: str = ''

  def text(self) -> str:
    if not self.n:
      return f'{self.name}: {self.note or "no data"}'
    ci = '' if np.isnan(self.ci_low) else f' [{self.ci_low:+.4f}, {self.ci_high:+.4f}]'
    p = '' if np.isnan(self.p_value) else f', p={self.p_value:.3g}'
    note = f'; {self.note}' if self.note else ''
    return f'{self.name}: {self.formula} = {self.estimate:+.4f}{ci}{p}, n={self.n} -> {self.verdict}{note}'


@dataclasses.dataclass
class ClaimResult:
  """The verdict of one claim with its parts."""
  claim: str
  statement: str
  verdict: str
  parts: list[Part]

  def evidence(self) -> str:
    return '; '.join(p.text() for p in self.parts)

  def to_dict(self) -> dict:
    clean = lambda v: None if isinstance(v, float) and np.isnan(v) else v
    return {'claim': self.claim, 'statement': self.statement, 'verdict': self.verdict,
            'parts': [{k: clean(v) for k, v in dataclasses.asdict(p).items()} for p in self.parts]}


# ------------------------------------------------------------------------------- observations

def relative_scores(runs: pd.DataFrame, groups: Mapping[str, str]) -> pd.DataFrame:
  """Per run: its group, Yosinski label and score relative to the base net of its (target, seed).

  Args:
    runs: one row per run with condition, fine_tuned, n_layers, target, seed, pair and
      ``final_best_k`` (see :func:`analysis.measures.run_measures`).
    groups: pair label -> group (``'random halves'`` or ``'dissimilar'``); pairs not listed are
      left out.

  Returns:
    Columns group, pair, target, seed, label, n_layers, score, base, rel.
  """
  runs = runs[runs['pair'].isin(groups)].copy()
  runs['group'] = runs['pair'].map(groups)
  runs['label'] = [label(c, f) for c, f in zip(runs['condition'], runs['fine_tuned'])]
  runs['score'] = runs['final_best_k'].astype(float)
  base = (runs[runs['condition'] == 'scratch'].groupby(['target', 'seed'])['score'].mean()
          .rename('base'))
  out = runs.join(base, on=['target', 'seed'])
  out['rel'] = out['score'] / out['base']
  return out[['group', 'pair', 'target', 'seed', 'label', 'n_layers', 'score', 'base',
              'rel']].reset_index(drop=True)


def matrix(rel: pd.DataFrame, group: str, name: str) -> pd.DataFrame:
  """rel of one group and label as a (target, seed) x n table (NaN where a run is missing)."""
  rows = rel[(rel['group'] == group) & (rel['label'] == name)]
  if rows.empty:
    return pd.DataFrame()
  return rows.pivot_table(index=['target', 'seed'], columns='n_layers', values='rel',
                          aggfunc='mean').sort_index(axis=1)


def slopes(table: pd.DataFrame) -> pd.Series:
  """Least-squares slope of each row of a (observation x n) table over n (complete rows only)."""
  table = table.dropna()
  if table.shape[1] < 2:
    return pd.Series(dtype=float)
  n = table.columns.to_numpy(float)
  return pd.Series(np.polyfit(n, table.to_numpy(float).T, 1)[0], index=table.index)


# ------------------------------------------------------------------------------------- tests

def _rng(settings: Settings, *key) -> np.random.Generator:
  return stats.rng_for(settings.seed, 'reproduce', *key)


def test_positive(name: str, formula: str, d, settings: Settings, *key) -> Part:
  """Part whose claim is mean(d) > 0, d one value per observation (paired t + bootstrap)."""
  d = np.asarray(d, float)
  d = d[~np.isnan(d)]
  part = Part(name, formula, n=len(d))
  if not len(d):
    return part
  result = stats.compare(np.zeros_like(d), d, True, 'mean', 1, 't', settings.n_boot,
                         _rng(settings, name, *key), settings.alpha)
  return _fill(part, result)


def test_greater(name: str, formula: str, a, b, settings: Settings, *key) -> Part:
  """Part whose claim is mean(a) > mean(b) for two independent groups (Welch + bootstrap)."""
  a, b = np.asarray(a, float), np.asarray(b, float)
  result = stats.compare(b[~np.isnan(b)], a[~np.isnan(a)], False, 'mean', 1, 't',
                         settings.n_boot, _rng(settings, name, *key), settings.alpha)
  part = Part(name, formula, n=min(result['n'], result['n_ref']))
  if not part.n:
    part.note = 'no data for one of the two groups'
    return part
  part = _fill(part, result)
  part.note = (part.note + f' ({result["n_ref"]} vs {result["n"]} observations)').strip()
  return part


def _fill(part: Part, result: dict) -> Part:
  part.estimate, part.ci_low, part.ci_high = result['gap'], result['gap_ci_low'], result['gap_ci_high']
  part.p_value = result['p_value']
  part.verdict = _PART_VERDICT[result['direction']]
  if result['direction'] is None:
    part.note = 'too few observations for a CI'
  return part


def per_n_tests(name: str, formula: str, table: pd.DataFrame, ns: Sequence[int],
                settings: Settings) -> list[Part]:
  """One positive-claim part per n (columns of ``table`` hold d), Holm-adjusted over ``ns``."""
  parts = [test_positive(f'{name} n={n}', formula, table[n] if n in table else [], settings, n)
           for n in ns]
  adjusted = stats.holm(np.array([p.p_value for p in parts], float))
  for part, p_holm in zip(parts, adjusted):
    if part.n >= 2 and not np.isnan(p_holm):
      part.p_value = float(p_holm)
      direction = int(p_holm < settings.alpha and part.ci_low > 0) - int(
          p_holm < settings.alpha and part.ci_high < 0)
      part.verdict = _PART_VERDICT[direction]
      part.note = 'Holm-adjusted p'
  return parts


def combine(parts: Sequence[Part]) -> str:
  """Claim verdict: every part reproduced -> reproduced; any not reproduced -> not; else inconclusive."""
  verdicts = [p.verdict for p in parts]
  if verdicts and all(v == REPRODUCED for v in verdicts):
    return REPRODUCED
  if NOT_REPRODUCED in verdicts:
    return NOT_REPRODUCED
  return INCONCLUSIVE


def _no_data(name: str, why: str) -> Part:
  return Part(name, '', note=why)


# ------------------------------------------------------------------- the claims of the paper

def claim_fragile_coadaptation(rel: pd.DataFrame, settings: Settings) -> list[Part]:
  """BnB drops below base in the middle layers and recovers at the top (see module docstring)."""
  bnb = matrix(rel, RANDOM, 'BnB')
  if bnb.empty:
    return [_no_data('dip', 'no BnB runs on random halves')]
  ns = list(bnb.columns)
  top, middle = ns[-1], ns[1:-1]
  if not middle:
    return [_no_data('dip', f'needs n = 1..N with N >= 3 (have n = {ns}): no middle layers')]
  dips = 1.0 - bnb
  per_n = per_n_tests('dip', '1 - BnB/base', dips, middle, settings)
  if any(p.verdict == REPRODUCED for p in per_n):
    dip = max((p for p in per_n if p.verdict == REPRODUCED), key=lambda p: p.estimate)
  else:
    dip = test_positive('mean dip over middle n', f'1 - BnB/base, mean over n={middle}',
                        dips[middle].mean(axis=1), settings, 'middle')
    per_n_text = 'per n: ' + ', '.join(f'{p.name.split("=")[1]}: {p.estimate:+.4f}' for p in per_n)
    if dip.verdict == REPRODUCED:  # Pooled dip without any single n: not the claimed pattern.
      dip.verdict, dip.note = INCONCLUSIVE, 'no single middle n dips significantly (Holm); ' + per_n_text
    else:
      dip.note = per_n_text
    return [dip]
  n_star = int(dip.name.split('=')[1])
  recovery = test_positive('recovery', f'BnB/base(n={top}) - BnB/base(n={n_star})',
                           bnb[top] - bnb[n_star], settings, 'recovery')
  return [dip, recovery]


def claim_specificity(rel: pd.DataFrame, settings: Settings) -> list[Part]:
  """AnB falls as n grows, more steeply for the dissimilar pair."""
  anb = matrix(rel, RANDOM, 'AnB')
  if anb.empty:
    return [_no_data('falls', 'no AnB runs on random halves')]
  s_random = slopes(anb)
  falls = test_positive('falls', '-slope(AnB/base over n)', -s_random, settings, 'falls')
  dissimilar = matrix(rel, DISSIMILAR, 'AnB')
  if dissimilar.empty:
    return [falls, _no_data('steeper for dissimilar', 'no dissimilar pair in the results')]
  steeper = test_greater('steeper for dissimilar', 'slope(random halves) - slope(dissimilar)',
                         s_random, slopes(dissimilar), settings, 'steeper')
  return [falls, steeper]


def claim_fine_tuning_boost(rel: pd.DataFrame, settings: Settings) -> list[Part]:
  """AnB+ >= base: a boost on average over n, and no n significantly below base."""
  ft = matrix(rel, RANDOM, 'AnB+')
  if ft.empty:
    return [_no_data('boost', 'no AnB+ runs on random halves')]
  ns = list(ft.columns)
  boost = test_positive('boost', 'AnB+/base - 1, mean over n', ft.mean(axis=1) - 1.0, settings,
                        'boost')
  below = per_n_tests('below base', 'AnB+/base - 1', ft - 1.0, ns, settings)
  worst = [p for p in below if p.verdict == NOT_REPRODUCED]
  nowhere = Part('nowhere below base', 'smallest per-n AnB+/base - 1 (Holm over n)', n=min(p.n for p in below),
                 verdict=NOT_REPRODUCED if worst else REPRODUCED,
                 note=(f'significantly below base at n={[p.name.split("=")[1] for p in worst]}'
                       if worst else 'no n significantly below base'))
  nowhere.estimate = min(p.estimate for p in below)
  return [boost, nowhere]


def claim_random_features(rel: pd.DataFrame, settings: Settings) -> list[Part]:
  """Random frozen features fall off fast with n: they fall, and faster than AnB."""
  random = matrix(rel, RANDOM, 'random')
  if random.empty:
    return [_no_data('falls', 'no random-frozen runs on random halves')]
  s_random = slopes(random)
  falls = test_positive('falls', '-slope(random/base over n)', -s_random, settings, 'rf-falls')
  anb = slopes(matrix(rel, RANDOM, 'AnB'))
  if anb.empty:
    return [falls, _no_data('faster than AnB', 'no AnB runs on random halves')]
  both = pd.concat([anb.rename('anb'), s_random.rename('random')], axis=1).dropna()
  faster = test_positive('faster than AnB', 'slope(AnB) - slope(random)',
                         both['anb'] - both['random'], settings, 'rf-faster')
  return [falls, faster]


@dataclasses.dataclass(frozen=True)
class Claim:
  """A published claim and the function that checks it (returns its parts)."""
  statement: str
  check: Callable[[pd.DataFrame, Settings], list[Part]]


YOSINSKI2014_CLAIMS: dict[str, Claim] = {
    'fragile_coadaptation': Claim(
        'BnB drops below base in the middle layers (fragile co-adaptation) and recovers at the top',
        claim_fragile_coadaptation),
    'specificity': Claim('AnB falls as n grows (specificity), more steeply for the dissimilar pair',
                         claim_specificity),
    'fine_tuning_boost': Claim('AnB+ >= base (fine-tuning boost)', claim_fine_tuning_boost),
    'random_features': Claim('random frozen features fall off fast with n', claim_random_features),
}


@dataclasses.dataclass(frozen=True)
class Study:
  """A reproducible study: its sweep, its claims and its published reference."""
  sweep: str
  claims: Mapping[str, Claim]
  reference: str


STUDIES: dict[str, Study] = {
    'yosinski2014': Study('yosinski2014_small', YOSINSKI2014_CLAIMS, 'yosinski2014'),
}


def check_claims(rel: pd.DataFrame, claims: Mapping[str, Claim],
                 settings: Settings = Settings()) -> list[ClaimResult]:
  """Checks every claim of a registry on a relative-scores table (:func:`relative_scores`)."""
  results = []
  for name, claim in claims.items():
    parts = claim.check(rel, settings)
    results.append(ClaimResult(name, claim.statement, combine(parts), parts))
  return results


# ----------------------------------------------------------------------------------- outputs

def claims_markdown(results: Sequence[ClaimResult]) -> str:
  """A markdown table claim | verdict | evidence."""
  lines = ['| Claim | Verdict | Evidence (mean [95% CI], p, observations) |', '|---|---|---|']
  for r in results:
    lines.append(f'| {r.claim}: {r.statement} | **{r.verdict}** | '
                 + r.evidence().replace('|', r'\|') + ' |')
  return '\n'.join(lines)


def curve_table(rel: pd.DataFrame) -> pd.DataFrame:
  """Mean relative score and 95% t CI half-width per (group, label, n); base is n = 0 at 1."""
  rows = []
  for (group, name, n), g in rel.groupby(['group', 'label', 'n_layers'], sort=True):
    values = g['rel'].dropna().to_numpy(float)
    if not len(values):
      continue
    rows.append({'group': group, 'label': name, 'n_layers': int(n), 'rel_mean': values.mean(),
                 'rel_ci95': stats.t_halfwidth(values), 'count': len(values),
                 'score_mean': g['score'].mean()})
  return pd.DataFrame(rows)


def write_outputs(results: Sequence[ClaimResult], rel: pd.DataFrame, runs: pd.DataFrame,
                  out: pathlib.Path, reference: str | None, k: int,
                  draw: bool = True) -> list[pathlib.Path]:
  """claims.json, claims.md, runs_relative.csv, curves_relative.csv and (``draw``) the figures."""
  from analysis import figures
  from harness.results import atomic_write_json
  out.mkdir(parents=True, exist_ok=True)
  written = [out / 'claims.json', out / 'claims.md', out / 'runs_relative.csv',
             out / 'curves_relative.csv']
  atomic_write_json(written[0], {'claims': [r.to_dict() for r in results]})
  written[1].write_text(claims_markdown(results) + '\n')
  rel.to_csv(written[2], index=False)
  curves = curve_table(rel)
  curves.to_csv(written[3], index=False)
  if not draw:
    return written
  points = None
  if reference == 'yosinski2014':
    from analysis.reference import yosinski2014_points
    points = yosinski2014_points()
  fig = figures.reference_overlay(curves, points, k=k)
  if fig is not None:
    written += figures.save(fig, out, 'reproduced_vs_published')
  labelled = runs.assign(label=[label(c, f) for c, f in zip(runs['condition'], runs['fine_tuned'])])
  fig2 = figures.fig2_accuracy_vs_n(labelled, 'best_k', k, reference=points)
  if fig2 is not None:
    written += figures.save(fig2, out, 'fig2_relative_per_pair')
  return written


# ---------------------------------------------------------------------------------- pipeline

def pair_groups(pairs: Sequence[Mapping], data_dir: str | None) -> dict[str, str]:
  """Pair label (``'A|B'``, as in the results' ``pair`` column) -> group, from a sweep's pairs."""
  from harness import tasks
  groups = {}
  for pair in pairs:
    a, b = tasks.make_task_pair(pair, data_dir)
    groups[f'{a.name}|{b.name}'] = PAIR_GROUPS.get(pair.get('kind'), DISSIMILAR)
  return groups


def scored_runs(results_dir: pathlib.Path, k: int) -> pd.DataFrame:
  """One row per complete run of a results directory with the paper's best-k score."""
  from harness.results import load_curves
  curves = load_curves(results_dir)
  if curves.empty:
    raise UserError(f'no complete runs in {results_dir}: run `transferbench reproduce` without '
                    '--analyze-only first')
  curves, _ = keep_complete(validate_curves(curves))
  return measures_lib.run_measures(curves, measures_lib.curve_arrays(curves), k)


def register(subparsers) -> argparse.ArgumentParser:
  """Adds the ``reproduce`` subcommand (``func=run``) to an argparse subparsers object."""
  p = subparsers.add_parser(
      'reproduce', help='run a published study at small scale and check its claims',
      description='Run (or resume) a study\'s sweep, then check the paper\'s qualitative claims '
      'against the measured curves with CIs over seeds (reproduced / not reproduced / '
      'inconclusive); dotted overrides like --config.seeds=3 follow. See analysis/reproduce.py.')
  p.add_argument('study', choices=sorted(STUDIES), help='the study to reproduce')
  p.add_argument('--results', help='results directory (default: results/<sweep name>)')
  p.add_argument('--analyze-only', action='store_true',
                 help='do not train: analyse the runs already in --results')
  p.add_argument('--out', help='output directory (default: <results>/reproduce)')
  p.add_argument('--arg', help="string argument of the sweep's get_config(arg), e.g. tiny")
  p.add_argument('--data-dir', help='TFDS data directory (default: $TRANSFERBENCH_DATA_DIR)')
  p.add_argument('--no-progress', action='store_true', help='no progress bar')
  p.add_argument('--no-figures', action='store_true', help='tables only')
  p.add_argument('--alpha', type=float, default=stats.ALPHA, help='significance level (0.05)')
  p.add_argument('--n-boot', type=int, default=10000, help='bootstrap resamples (10000)')
  p.add_argument('--seed', type=int, default=0, help='bootstrap seed (0)')
  p.set_defaults(func=run)
  return p


def _sweep_config(args: argparse.Namespace, study: Study):
  from harness import sweeps
  config = sweeps.apply_overrides(sweeps.load_sweep(study.sweep, args.arg),
                                  getattr(args, 'overrides', []))
  if args.data_dir:
    config.data_dir = args.data_dir
  return config


def run(args: argparse.Namespace) -> int:
  """Runs the sweep (unless --analyze-only), checks the claims, prints and writes them."""
  study = STUDIES[args.study]
  config = _sweep_config(args, study)
  results = pathlib.Path(args.results or pathlib.Path('results') / config.name)
  if args.analyze_only:
    if not results.is_dir():
      raise UserError(f'no results directory {results}: run `transferbench reproduce '
                      f'{args.study}` first, or pass --results DIR')
    sweep_file = results / 'sweep.json'
    pairs = json.loads(sweep_file.read_text())['config']['pairs'] if sweep_file.exists() else None
  else:
    from harness import runner
    report = runner.run_sweep(config, results, progress=not args.no_progress)
    print(f'{report.total} runs: {report.completed} trained, {report.skipped} already complete, '
          f'{len(report.failed)} failed ({report.seconds:.0f} s). Records in {results}/runs/')
    if getattr(report, 'busy', None):
      print(f'{len(report.busy)} run(s) are being run by another worker on {results}: the claims '
            'below leave them out; run the command again once it has finished')
    pairs = None
  if pairs is None:
    pairs = [dict(p) for p in config.pairs]
  settings = Settings(alpha=args.alpha, n_boot=args.n_boot, seed=args.seed)
  runs = scored_runs(results, settings.k)
  rel = relative_scores(runs, pair_groups(pairs, config.data_dir or None))
  claim_results = check_claims(rel, study.claims, settings)
  out = pathlib.Path(args.out) if args.out else results / 'reproduce'
  written = write_outputs(claim_results, rel, runs, out, study.reference, settings.k,
                          draw=not args.no_figures)
  print(f'\n{args.study}: claims of the paper vs {len(runs)} runs in {results} '
        f'(score = mean of the {settings.k} best evaluations, relative to base; alpha={settings.alpha})')
  for r in claim_results:
    print(f'\n[{r.verdict.upper()}] {r.claim}: {r.statement}')
    for part in r.parts:
      print(f'    {part.text()}')
  print(f'\nWrote {len(written)} files to {out}')
  return 0
