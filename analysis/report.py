"""The analysis pipeline (:func:`analyze`), the core's results table, and the written report."""

from __future__ import annotations

import dataclasses
import os
import pathlib

import numpy as np
import pandas as pd

from analysis import measures as measures_lib
from analysis import pooling
from analysis import stats
from analysis.curves import LABEL_ORDER, cell_keys, keep_complete, label, strata, validate_curves
from analysis.decomposition import EFFECTS, decompose
from analysis.transfer import MEASURES, Settings, compare_with_scratch
from harness import conditions as conditions_lib
from harness.errors import UserError


@dataclasses.dataclass
class AnalysisResult:
  """Everything :func:`analyze` computes.

  Attributes:
    runs: one row per run with every measure and its gap against scratch.
    summary: one row per (cell, measure): location, CI, gap, gap CI, test, p, verdict.
    decomposition: Yosinski's effects per (source, target, n) with CIs.
    curves: the validated curves of the analysed (complete) runs.
    settings: the choices made (threshold, k, rule, n_boot, seed, alpha, test, early step).
    excluded: runs left out, per status (failed, diverged, ...).
    notes: plain-language caveats about this data set (pooled cells, runs without evaluations...).
    pooled: rows pooled over the replicate pairs of one pair_kind, at the level of the
      independent unit (:mod:`analysis.pooling`); empty without two pairs of a kind.
  """
  runs: pd.DataFrame
  summary: pd.DataFrame
  decomposition: pd.DataFrame
  curves: pd.DataFrame
  settings: Settings
  excluded: dict[str, int]
  notes: list[str]
  pooled: pd.DataFrame = dataclasses.field(default_factory=pd.DataFrame)


# name -> (check, message): the user-facing constraints on the analysis settings.
_SETTING_CHECKS = {
    'threshold': (lambda v: 0 < v <= 1, 'must be a fraction in (0, 1] of scratch\'s asymptote'),
    'k': (lambda v: int(v) == v and v >= 1, 'must be a positive integer'),
    'rule': (lambda v: v in measures_lib.FINAL_RULES,
             f'must be one of {", ".join(measures_lib.FINAL_RULES)}'),
    'n_boot': (lambda v: int(v) == v and v >= 100, 'must be an integer >= 100'),
    'alpha': (lambda v: 0 < v < 1, 'must be in (0, 1)'),
    'test': (lambda v: v in stats.TEST_CHOICES, f'must be one of {", ".join(stats.TEST_CHOICES)}'),
    'early_step': (lambda v: v is None or (np.isfinite(v) and v >= 0),
                   'must be a non-negative training step (or None: from the schedule)'),
    'early_fraction': (lambda v: 0 <= v < 1, 'must be a fraction of the budget in [0, 1)'),
}


def _check_settings(settings: Settings) -> None:
  """Raises a UserError naming the first setting outside its allowed values."""
  for name, (ok, message) in _SETTING_CHECKS.items():
    value = getattr(settings, name)
    try:
      valid = ok(value)
    except (TypeError, ValueError):
      valid = False
    if not valid:
      raise UserError(f'{name}={value!r} {message}')


def _sort_cells(table: pd.DataFrame) -> pd.DataFrame:
  """Rows ordered by stratum, target, source, Yosinski label (base, BnB, ...), n."""
  order = [LABEL_ORDER.index(name) for name in table['label']]
  sort = strata(table) + ['target', '_label', 'source', 'n_layers']
  return (table.assign(_label=order).sort_values(sort, kind='stable')
          .drop(columns='_label').reset_index(drop=True))


def _notes(runs: pd.DataFrame, summary: pd.DataFrame, excluded: dict, settings: Settings,
           arrays: dict) -> list:
  """Caveats a reader of the tables must know about this particular data set."""
  notes = []
  if excluded:
    notes.append(f'{sum(excluded.values())} run(s) excluded by status: ' +
                 ', '.join(f'{v} {k}' for k, v in excluded.items()) + '.')
  empty = runs.loc[runs['n_evals'] == 0, 'run_id'].tolist()
  if empty:
    notes.append(f'{len(empty)} run(s) have no non-missing evaluation (all measures NaN): '
                 f'{", ".join(empty[:5])}.')
  short = runs.loc[(runs['n_evals'] > 0) & (runs['n_evals'] < settings.k), 'run_id'].tolist()
  if short:
    notes.append(f'{len(short)} run(s) have fewer than k={settings.k} evaluations, so no '
                 f'best_k / last_k score (NaN; left out of those cells): lower --k, or use '
                 f'--rule last or best (e.g. {", ".join(short[:3])}).')
  notes += _missing_notes(runs, settings, arrays)
  no_scratch = sorted(set(runs['target']) - set(runs.loc[runs['condition'] == conditions_lib.BASE, 'target']))
  if no_scratch:
    notes.append(f'No scratch run on target(s) {", ".join(no_scratch)}: no gap is computed there.')
  pooled = summary[(summary['pairing'] == 'pooled') & (summary['measure'] == 'start')]
  if len(pooled):
    notes.append(f'{len(pooled)} cell(s) are compared with pooled scratch runs (seeds not a '
                 'subset of scratch seeds on the target); the others are matched by seed.')
  headline = summary[summary['measure'] == f'final_{settings.rule}']
  few = headline[(headline['n_compared'] >= 2) & (headline['n_compared'] < 5)]
  if len(few):
    notes.append(f'{len(few)} cell(s) compare fewer than 5 seeds: percentile-bootstrap CIs are '
                 'too narrow at such n (with 2 seeds the interval only spans the two gaps); read '
                 'them with the p-value, as the verdict does.')
  untestable = summary[summary['verdict'] == 'untestable']
  if len(untestable):
    notes.append(f'{len(untestable)} (cell, measure) pair(s) are untestable, in '
                 f'{", ".join(untestable["measure"].unique())}: their test cannot reach alpha with '
                 f'so few runs (e.g. {untestable["reason"].iloc[0]}); see reason in summary.csv.')
  singles = summary[(summary['verdict'] == 'single run') & (summary['measure'] == 'start')]
  if len(singles):
    notes.append(f'{len(singles)} cell(s) have a single run (or a single scratch run): they get '
                 'no CI and no test (verdict "single run").')
  return notes


def _missing_notes(runs: pd.DataFrame, settings: Settings, arrays: dict) -> list[str]:
  """Runs left out of one measure (start, early skill, AUC), and k rules reaching back."""
  notes = []
  has_evals = runs['n_evals'] > 0
  for column, what in (('start', 'the first evaluation step of their target'),
                       ('early', 'the early step'), ('auc', 'the start of the AUC range')):
    missing = runs.loc[has_evals & runs[column].isna(), 'run_id'].tolist()
    if missing:
      notes.append(f'{len(missing)} run(s) have no evaluation at {what}, so no {column} value '
                   f'(left out of that measure only): {", ".join(missing[:3])}.')
  if settings.rule == 'last_k':
    reach = [r for r, (steps, _) in arrays.items()
             if len(steps) >= settings.k and steps[-settings.k] < steps[-1] / 2]
    if reach:
      notes.append(f'For {len(reach)} run(s) the last k={settings.k} evaluations reach into the '
                   'first half of training (the score mixes slope and asymptote): lower --k or '
                   'evaluate more often late in training.')
  return notes


def analyze(curves: pd.DataFrame, *, threshold: float = 0.9, k: int | None = None,
            rule: str = measures_lib.DEFAULT_RULE, n_boot: int = 10000, seed: int = 0,
            alpha: float = stats.ALPHA, test: str = 't', early_step: float | None = None,
            early_fraction: float = measures_lib.EARLY_FRACTION) -> AnalysisResult:
  """Start, slope, asymptote, negative transfer and Yosinski's decomposition of a curves table.

  Args:
    curves: long-format curves (any source; validated here). Runs whose ``status`` is not
      ``complete`` are excluded and counted.
    threshold: time to threshold is the first step reaching threshold x the mean scratch
      asymptote on the target.
    k: evaluations averaged by the best_k and last_k asymptote rules; None: the rule's default
      (:func:`analysis.measures.default_k`: 3 for last_k, Yosinski 2014's 10 for best_k).
    rule: the asymptote rule used for the headline table, the threshold, the decomposition and
      the figures (default :data:`analysis.measures.DEFAULT_RULE`).
    n_boot: bootstrap resamples per comparison.
    seed: seed of the bootstrap (and Monte Carlo permutations).
    alpha: significance level of the verdicts.
    test: 't' (paired/Welch t-test) or 'permutation' (exact sign-flip / two-sample permutation).
    early_step: the step of the early-skill measure; None: per target, the first scheduled
      evaluation at or after ``early_fraction`` of the budget (:func:`analysis.measures.early_step`).
    early_fraction: see ``early_step``.

  Returns:
    An :class:`AnalysisResult`.

  Raises:
    UserError: invalid curves or settings.
  """
  k = measures_lib.default_k(rule) if k is None else k
  settings = Settings(threshold=threshold, k=k, rule=rule, n_boot=n_boot, seed=seed, alpha=alpha,
                      test=test, early_step=early_step, early_fraction=early_fraction)
  _check_settings(settings)
  curves, excluded = keep_complete(validate_curves(curves))
  arrays = measures_lib.curve_arrays(curves)
  runs = measures_lib.run_measures(curves, arrays, k)
  runs, summary = compare_with_scratch(runs, arrays, settings)
  summary = _sort_cells(summary)
  decomposition = decompose(runs, settings)
  pooled = pooling.pooled_summary(runs, settings,
                                  [n for n, m in MEASURES.items() if m.location == 'mean'])
  return AnalysisResult(runs=runs, summary=summary, decomposition=decomposition, curves=curves,
                        settings=settings, excluded=excluded,
                        notes=_notes(runs, summary, excluded, settings, arrays), pooled=pooled)


def final_accuracy_table(curves: pd.DataFrame, rule: str = measures_lib.DEFAULT_RULE,
                         k: int | None = None) -> pd.DataFrame:
  """Final target accuracy per cell: mean, 95% CI half-width over seeds, count.

  Args:
    curves: long-format curves (validated here; non-complete runs excluded).
    rule: 'last', 'best', 'best_k' or 'last_k' (see :mod:`analysis.measures`); the default is
      the analysis' (:data:`analysis.measures.DEFAULT_RULE`).
    k: evaluations for the k rules; None: :func:`analysis.measures.default_k`.

  Returns:
    One row per (stratum, condition, fine_tuned, n_layers, source, target) with mean, ci
    (t_{0.975, n-1} s / sqrt(n); NaN with one seed) and count (runs with a score).
  """
  k = measures_lib.default_k(rule) if k is None else k
  _check_settings(Settings(rule=rule, k=k))
  curves, _ = keep_complete(validate_curves(curves))
  runs = measures_lib.run_measures(curves, measures_lib.curve_arrays(curves), k)
  column = f'final_{rule}'
  rows = [{**dict(zip(cell_keys(runs), key)),
           'mean': cell[column].mean(), 'ci': stats.t_halfwidth(cell[column].to_numpy(float)),
           'count': int(cell[column].notna().sum())}
          for key, cell in runs.groupby(cell_keys(runs), sort=True, dropna=False)]
  table = pd.DataFrame(rows)
  table['label'] = [label(c, f) for c, f in zip(table['condition'], table['fine_tuned'])]
  return _sort_cells(table).drop(columns='label')


# ---------------------------------------------------------------------------- tables for papers

def _fmt(value: float, digits: int = 3, sign: bool = False) -> str:
  if value is None or (isinstance(value, float) and np.isnan(value)):
    return 'n/a'
  return f'{value:+.{digits}f}' if sign else f'{value:.{digits}f}'


def _fmt_steps(value: float) -> str:
  if np.isnan(value):
    return 'n/a'
  return 'never' if np.isinf(value) else f'{value:g}'


def _fmt_mean_ci(row: pd.Series) -> str:
  if row['stat'] == 'median':
    return _fmt_steps(row['value'])
  ci = row['value_ci95']
  return _fmt(row['value']) + ('' if np.isnan(ci) else f' ± {ci:.3f}')


def _fmt_at_step(row: pd.Series, common: float) -> str:
  """Start or early accuracy, with its step when it differs from the table's common step."""
  lo, hi = row['step_lo'], row['step_hi']
  if not np.isfinite(lo) or (lo == common and hi == common):
    return _fmt_mean_ci(row)
  return _fmt_mean_ci(row) + (f' (step {lo:g})' if lo == hi else f' (steps {lo:g}-{hi:g})')


def _common_step(summary: pd.DataFrame, measure: str) -> float:
  """The step of a start/early row shared by the whole table, or NaN if they differ."""
  steps = summary.loc[summary['measure'] == measure, ['step_lo', 'step_hi']].stack().dropna()
  return float(steps.iloc[0]) if len(steps) and steps.nunique() == 1 else np.nan


def _fmt_ref(row: pd.Series) -> str:
  """The scratch value the gap was computed from ('' for scratch's own rows)."""
  return '' if row['verdict'] == 'reference' else _fmt(row['ref_value'])


def _fmt_gap(row: pd.Series, points: bool = False) -> str:
  """Gap [CI]; in percentage points (x 100, 2 decimals) with ``points``."""
  fmt = (_fmt_steps if row['stat'] == 'median' else
         (lambda v: _fmt(100 * v, 2, sign=True)) if points else (lambda v: _fmt(v, sign=True)))
  if row['verdict'] == 'reference':
    return ''
  if np.isnan(row['gap_ci_low']):
    return fmt(row['gap'])
  return f'{fmt(row["gap"])} [{fmt(row["gap_ci_low"])}, {fmt(row["gap_ci_high"])}]'


def _fmt_p(p: float) -> str:
  if np.isnan(p):
    return ''
  return '<0.001' if p < 0.001 else f'{p:.3f}'


def _cell_header(row: pd.Series, strata_cols: list[str]) -> dict:
  out = {c: str(row[c]) for c in strata_cols}
  out['Source → target'] = (row['target'] if row['condition'] == conditions_lib.BASE
                            else f'{row["source"]} → {row["target"]}')
  out.update({'Cond.': row['label'], 'n': str(row['n_layers'])})
  return out


def _fmt_points(value: float) -> str:
  return _fmt(100 * value, 2)


def _fmt_seeds(value: float) -> str:
  if np.isnan(value):
    return ''
  return '> 1000' if np.isinf(value) else f'{value:.0f}'


def main_table(result: AnalysisResult) -> pd.DataFrame:
  """The paper table: per cell, start, early skill, AUC, time to threshold, asymptote, its gap
  against the scratch value it was computed from, Holm p, minimum detectable effect, verdict."""
  s, summary = result.settings, result.summary
  final = f'final_{s.rule}'
  start_step, early_step = _common_step(summary, 'start'), _common_step(summary, 'early')
  at = lambda step: '' if np.isnan(step) else f' (step {step:g})'
  rows = []
  for _, cell in summary.groupby(cell_keys(summary), sort=False, dropna=False):
    by = cell.set_index('measure')
    f, auc = by.loc[final], by.loc['auc']
    rows.append({**_cell_header(f, strata(summary)), 'Runs': str(f['n']),
                 f'Start{at(start_step)}': _fmt_at_step(by.loc['start'], start_step),
                 f'Early{at(early_step)}': _fmt_at_step(by.loc['early'], early_step),
                 'AUC': _fmt_mean_ci(auc) + ('' if auc['verdict'] == 'reference'
                                             else f' (scratch {_fmt(auc["ref_value"])})'),
                 'Steps to thr. (median)': _fmt_mean_ci(by.loc['time_to_threshold']),
                 f'Final ({measures_lib.rule_name(s.rule, s.k)})': _fmt_mean_ci(f),
                 'Scratch final': _fmt_ref(f),
                 'Gap (pts) [95% CI]': _fmt_gap(f, points=True), 'p (Holm)': _fmt_p(f['p_holm']),
                 'MDE (pts)': '' if np.isnan(f['mde']) else _fmt_points(f['mde']),
                 'Seeds for gap': _fmt_seeds(f['seeds_for_gap']), 'Verdict': f['verdict']})
  return pd.DataFrame(rows)


_MEASURE_HEADERS = {'start': 'Start', 'early': 'Early', 'auc': 'AUC',
                    'time_to_threshold': 'Steps to thr.',
                    'final_last': 'Last', 'final_best': 'Best', 'final_best_k': 'Best-k mean',
                    'final_last_k': 'Last-k mean'}


def verdict_table(result: AnalysisResult) -> pd.DataFrame:
  """Negative-transfer verdict of every measure, per non-scratch cell."""
  rows = []
  summary = result.summary[result.summary['verdict'] != 'reference']
  for _, cell in summary.groupby(cell_keys(summary), sort=False, dropna=False):
    by = cell.set_index('measure')
    rows.append({**_cell_header(by.iloc[0], strata(result.summary)),
                 **{header: by.loc[m, 'verdict'] for m, header in _MEASURE_HEADERS.items()}})
  return pd.DataFrame(rows)


def decomposition_table(result: AnalysisResult) -> pd.DataFrame:
  """Effects per (stratum, source, target, n) as 'estimate [CI]' strings.

  Co-adaptation (which involves target B only) is repeated on the row of every source into B.
  """
  d = result.decomposition
  if d.empty:
    return pd.DataFrame()
  keys = strata(d)
  text = {tuple(r[c] for c in keys + ['source', 'target', 'n_layers', 'effect']): (
      _fmt(r['estimate'], sign=True) + ('' if np.isnan(r['ci_low']) else
                                        f' [{_fmt(r["ci_low"], sign=True)}, '
                                        f'{_fmt(r["ci_high"], sign=True)}]'))
          for _, r in d.iterrows()}
  rows = []
  for key, g in d.groupby(keys + ['target', 'n_layers'], sort=True, dropna=False):
    *stratum, target, n = key
    sources = sorted(set(g['source']) - {target}) or [target]
    for source in sources:
      row = {**{c: str(v) for c, v in zip(keys, stratum)},
             'Source → target': target if source == target else f'{source} → {target}',
             'n': str(n)}
      for name, (_, _, formula) in EFFECTS.items():
        own = source if name != 'fragile_coadaptation' else target
        row[formula] = text.get((*stratum, own, target, n, name), '')
      rows.append(row)
  return pd.DataFrame(rows)


def markdown(table: pd.DataFrame) -> str:
  """A GitHub-flavoured markdown table."""
  if table.empty:
    return '(none)'
  cells = [[str(v).replace('|', r'\|') for v in row] for row in table.itertuples(index=False)]
  lines = ['| ' + ' | '.join(table.columns) + ' |', '|' + '---|' * len(table.columns)]
  return '\n'.join(lines + ['| ' + ' | '.join(row) + ' |' for row in cells])


_LATEX = {'\\': r'\textbackslash{}', '&': r'\&', '%': r'\%', '$': r'\$', '#': r'\#', '_': r'\_',
          '{': r'\{', '}': r'\}', '~': r'\textasciitilde{}', '^': r'\textasciicircum{}',
          '±': r'$\pm$', '→': r'$\rightarrow$', '<': r'$<$', '>': r'$>$'}


def latex_escape(text: str) -> str:
  """Escapes LaTeX's special characters and writes ±, → and < in math mode."""
  return ''.join(_LATEX.get(ch, ch) for ch in str(text))


def latex(table: pd.DataFrame, caption: str, label: str) -> str:
  """A booktabs table (needs \\usepackage{booktabs})."""
  if table.empty:
    return f'% {caption}: (none)\n'
  head = ' & '.join(latex_escape(c) for c in table.columns) + r' \\'
  body = [' & '.join(latex_escape(v) for v in row) + r' \\'
          for row in table.itertuples(index=False)]
  return '\n'.join([r'\begin{table*}[t]', r'\centering', r'\small',
                    rf'\caption{{{latex_escape(caption)}}}', rf'\label{{{label}}}',
                    r'\begin{tabular}{' + 'l' * len(table.columns) + '}', r'\toprule', head,
                    r'\midrule', *body, r'\bottomrule', r'\end{tabular}', r'\end{table*}', ''])


def family_line(result: AnalysisResult) -> str:
  """The verdict rule: its family, Holm's adjustment and the headline's minimum detectable gap."""
  s, summary = result.settings, result.summary
  final = summary[(summary['measure'] == f'final_{s.rule}') & (summary['verdict'] != 'reference')]
  m = int(final['family_size'].max()) if final['family_size'].notna().any() else 0
  mde = final['mde'].dropna()
  test = {'t': 'paired / Welch t', 'permutation': 'sign-flip / two-sample permutation'}[s.test]
  line = (f'Verdicts: one family per measure = every cell of this table for that measure (m = {m} '
          f'for the final score); Holm-adjusted p-values of the {test} test (log-rank for time to '
          f'threshold); negative / positive iff the adjusted p < {s.alpha:g} and the gap\'s CI lies '
          f'on that side of 0, so the chance of any false label per measure is at most '
          f'{s.alpha:g}; untestable = the test cannot reach {s.alpha:g} with these seeds.')
  if len(mde):
    line += (f' MDE = smallest true gap detected with {s.power:.0%} power at Holm\'s strictest '
             f'level {s.alpha:g}/{m}, for each cell\'s seeds and seed s.d. (final score: median '
             f'{100 * mde.median():.2f} pts, range {100 * mde.min():.2f}-{100 * mde.max():.2f}); '
             f'"Seeds for gap" = seeds per arm that would detect the observed gap with that '
             f'power, were it the true gap.')
  return line


def _settings_line(result: AnalysisResult) -> str:
  s, summary = result.settings, result.summary
  early = _common_step(summary, 'early')
  early_text = (f'step {early:g}' if not np.isnan(early) else 'one step per target') + (
      '' if s.early_step is not None else f', the first evaluation at or after '
      f'{s.early_fraction:g} of the budget')
  return (f'Final accuracy = {measures_lib.rule_name(s.rule, s.k)}; mean ± 95% CI half-width '
          f'(t over seeds). Gap = error(condition) - error(scratch) on the same target, > 0 = '
          f'negative transfer, in points, with its percentile-bootstrap 95% CI ({s.n_boot} '
          f'resamples, seed {s.seed}) and the scratch value it was computed from. '
          f'{family_line(result)} Start = accuracy at the first evaluation step (step 0: chance, '
          f'the head is new); Early = accuracy at {early_text}. Time to threshold: lower median '
          f'of the first step reaching {s.threshold:g} x scratch asymptote; never reached = '
          f'censored at the run\'s last step.')


VERDICT_CAPTION = ('Each column is one family: every cell of this table for that measure; '
                   'labels from Holm-adjusted p-values, so each column has at most alpha '
                   'chance of any false label.')


def _decomposition_caption(result: AnalysisResult) -> str:
  s = result.settings
  return (f'Final accuracy = {measures_lib.rule_name(s.rule, s.k)}. Evidence (decomposition.csv) '
          f'is Holm-adjusted over each effect\'s rows (one family per effect) at {s.alpha:g}.')


def report_markdown(result: AnalysisResult) -> str:
  """The markdown report: main table, verdicts per measure, decomposition and notes."""
  parts = ['# Transfer analysis', '', _settings_line(result), '', '## Summary', '',
           markdown(main_table(result)), '', '## Negative-transfer verdict per measure', '',
           VERDICT_CAPTION, '', markdown(verdict_table(result)), '',
           "## Yosinski's decomposition (final accuracy; estimate [95% CI])", '',
           _decomposition_caption(result), '', markdown(decomposition_table(result)), '']
  if len(result.pooled):
    parts += ['## Pooled over replicate pairs (mean gap over independent units [95% bootstrap '
              'CI]; verdicts Holm-controlled per pair kind and measure)',
              '', markdown(pooling.pooled_table(result.pooled)), '']
  notes = [f'- {n}' for n in result.notes] or ['(none)']
  return '\n'.join(parts + ['## Notes', ''] + notes) + '\n'


def report_latex(result: AnalysisResult) -> str:
  """The LaTeX tables (booktabs): summary, verdicts, decomposition."""
  line = _settings_line(result)
  return '\n'.join([
      '% Generated by transferbench analyze; needs \\usepackage{booktabs}.',
      latex(main_table(result), f'Transfer summary. {line}', 'tab:transfer-summary'),
      latex(verdict_table(result), 'Negative-transfer verdict per measure (negative: transfer '
            'significantly worse than scratch; positive: significantly better). '
            + VERDICT_CAPTION, 'tab:transfer-verdicts'),
      latex(decomposition_table(result), "Yosinski et al. (2014)'s decomposition of the final "
            'accuracy; estimate [95% bootstrap CI]. ' + _decomposition_caption(result),
            'tab:transfer-decomposition')])


def write_report(result: AnalysisResult, out_dir: str | os.PathLike, *,
                 reference: str | None = 'yosinski2014',
                 figures: bool = True) -> list[pathlib.Path]:
  """Writes runs.csv, summary.csv, decomposition.csv, summary.md, summary.tex and figures.

  Args:
    result: an :func:`analyze` result.
    out_dir: directory to write into (created).
    reference: 'yosinski2014' adds the figure normalised to base with the published scores
      overlaid; None or 'none' leaves it out.
    figures: also draw the figures (PNG 300 dpi + PDF) under ``out_dir/figures``.

  Returns:
    The written paths.
  """
  out = pathlib.Path(out_dir)
  out.mkdir(parents=True, exist_ok=True)
  written = []
  tables = [('runs.csv', result.runs), ('summary.csv', result.summary),
            ('decomposition.csv', result.decomposition)]
  tables += [('pooled.csv', result.pooled)] if len(result.pooled) else []
  for name, table in tables:
    table.to_csv(out / name, index=False)
    written.append(out / name)
  for name, text in (('summary.md', report_markdown(result)),
                     ('summary.tex', report_latex(result))):
    (out / name).write_text(text)
    written.append(out / name)
  if figures:
    from analysis import figures as figures_lib  # Lazy: matplotlib and seaborn are slow to import.
    written += figures_lib.make_figures(result, out / 'figures',
                                        reference=None if reference == 'none' else reference)
  return written
