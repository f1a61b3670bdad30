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
from harness.errors import UserError


@dataclasses.dataclass
class AnalysisResult:
  """Everything :func:`analyze` computes.

  Attributes:
    runs: one row per run with every measure and its gap against scratch.
    summary: one row per (cell, measure): location, CI, gap, gap CI, test, p, verdict.
    decomposition: Yosinski's effects per (source, target, n) with CIs.
    curves: the validated curves of the analysed (complete) runs.
    settings: the choices made (threshold, k, rule, n_boot, seed, alpha, test).
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


def _notes(runs: pd.DataFrame, summary: pd.DataFrame, excluded: dict, settings: Settings) -> list:
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
  no_scratch = sorted(set(runs['target']) - set(runs.loc[runs['condition'] == 'scratch', 'target']))
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
  singles = summary[(summary['verdict'] == 'single run') & (summary['measure'] == 'start')]
  if len(singles):
    notes.append(f'{len(singles)} cell(s) have a single run (or a single scratch run): they get '
                 'no CI and no test (verdict "single run").')
  return notes


def analyze(curves: pd.DataFrame, *, threshold: float = 0.9, k: int = 10, rule: str = 'best_k',
            n_boot: int = 10000, seed: int = 0, alpha: float = stats.ALPHA,
            test: str = 't') -> AnalysisResult:
  """Start, slope, asymptote, negative transfer and Yosinski's decomposition of a curves table.

  Args:
    curves: long-format curves (any source; validated here). Runs whose ``status`` is not
      ``complete`` are excluded and counted.
    threshold: time to threshold is the first step reaching threshold x the mean scratch
      asymptote on the target.
    k: evaluations averaged by the best_k and last_k asymptote rules (Yosinski 2014: 10).
    rule: the asymptote rule used for the threshold, the decomposition and the figures.
    n_boot: bootstrap resamples per comparison.
    seed: seed of the bootstrap (and Monte Carlo permutations).
    alpha: significance level of the verdicts.
    test: 't' (paired/Welch t-test) or 'permutation' (exact sign-flip / two-sample permutation).

  Returns:
    An :class:`AnalysisResult`.

  Raises:
    UserError: invalid curves or settings.
  """
  settings = Settings(threshold=threshold, k=k, rule=rule, n_boot=n_boot, seed=seed, alpha=alpha,
                      test=test)
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
                        notes=_notes(runs, summary, excluded, settings), pooled=pooled)


def final_accuracy_table(curves: pd.DataFrame, rule: str = 'last', k: int = 10) -> pd.DataFrame:
  """Final target accuracy per cell: mean, 95% CI half-width over seeds, count.

  Args:
    curves: long-format curves (validated here; non-complete runs excluded).
    rule: 'last', 'best', 'best_k' or 'last_k' (see :mod:`analysis.measures`).
    k: evaluations for the k rules.

  Returns:
    One row per (stratum, condition, fine_tuned, n_layers, source, target) with mean, ci
    (t_{0.975, n-1} s / sqrt(n); NaN with one seed) and count (runs with a score).
  """
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


def _fmt_start(row: pd.Series) -> str:
  """Start accuracy, with its step when the first evaluation is not at step 0 for every run."""
  lo, hi = row['step_lo'], row['step_hi']
  if not np.isfinite(lo) or (lo == 0 and hi == 0):
    return _fmt_mean_ci(row)
  return _fmt_mean_ci(row) + (f' (step {lo:g})' if lo == hi else f' (steps {lo:g}-{hi:g})')


def _fmt_gap(row: pd.Series) -> str:
  fmt = _fmt_steps if row['stat'] == 'median' else (lambda v: _fmt(v, sign=True))
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
  out['Source → target'] = (row['target'] if row['condition'] == 'scratch'
                            else f'{row["source"]} → {row["target"]}')
  out.update({'Cond.': row['label'], 'n': str(row['n_layers'])})
  return out


def main_table(result: AnalysisResult) -> pd.DataFrame:
  """The paper table: per cell, start, AUC, time to threshold, asymptote and its gap, verdict."""
  s = result.settings
  final = f'final_{s.rule}'
  rows = []
  for _, cell in result.summary.groupby(cell_keys(result.summary), sort=False, dropna=False):
    by = cell.set_index('measure')
    f = by.loc[final]
    rows.append({**_cell_header(f, strata(result.summary)), 'Runs': str(f['n']),
                 'Start': _fmt_start(by.loc['start']), 'AUC': _fmt_mean_ci(by.loc['auc']),
                 'Steps to thr. (median)': _fmt_mean_ci(by.loc['time_to_threshold']),
                 f'Final ({measures_lib.rule_name(s.rule, s.k)})': _fmt_mean_ci(f),
                 'Gap (final) [95% CI]': _fmt_gap(f), 'p': _fmt_p(f['p_value']),
                 'Verdict': f['verdict']})
  return pd.DataFrame(rows)


_MEASURE_HEADERS = {'start': 'Start', 'auc': 'AUC', 'time_to_threshold': 'Steps to thr.',
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


def _settings_line(result: AnalysisResult) -> str:
  s = result.settings
  return (f'Final accuracy = {measures_lib.rule_name(s.rule, s.k)}; mean ± 95% CI half-width '
          f'(t over seeds); gap = error(condition) - error(scratch) on the same target, > 0 = '
          f'negative transfer, with {s.n_boot} bootstrap resamples (percentile 95% CI, seed '
          f'{s.seed}) and a {"t" if s.test == "t" else "permutation"} test; verdict negative/'
          f'positive only if the CI excludes 0 and p < {s.alpha}. Time to threshold: lower median '
          f'of the first step reaching {s.threshold:g} x scratch asymptote (never = inf), '
          f'sign / Mann-Whitney test.')


def report_markdown(result: AnalysisResult) -> str:
  """The markdown report: main table, verdicts per measure, decomposition and notes."""
  parts = ['# Transfer analysis', '', _settings_line(result), '', '## Summary', '',
           markdown(main_table(result)), '', '## Negative-transfer verdict per measure', '',
           markdown(verdict_table(result)), '',
           "## Yosinski's decomposition (final accuracy; estimate [95% CI])", '',
           markdown(decomposition_table(result)), '']
  if len(result.pooled):
    parts += ['## Pooled over replicate pairs (mean gap over independent units [95% bootstrap '
              'CI]; verdicts Holm-controlled per pair kind and measure)',
              '', markdown(pooling.pooled_table(result.pooled)), '']
  notes = result.notes + ['p-values are per cell, not adjusted for the number of cells; '
                          'summary.csv has Holm-adjusted p_holm per measure.']
  return '\n'.join(parts + ['## Notes', ''] + [f'- {n}' for n in notes]) + '\n'


def report_latex(result: AnalysisResult) -> str:
  """The LaTeX tables (booktabs): summary, verdicts, decomposition."""
  line = _settings_line(result)
  return '\n'.join([
      '% Generated by transferbench analyze; needs \\usepackage{booktabs}.',
      latex(main_table(result), f'Transfer summary. {line}', 'tab:transfer-summary'),
      latex(verdict_table(result), 'Negative-transfer verdict per measure (negative: transfer '
            'significantly worse than scratch; positive: significantly better).',
            'tab:transfer-verdicts'),
      latex(decomposition_table(result), "Yosinski et al. (2014)'s decomposition of the final "
            'accuracy; estimate [95% bootstrap CI].', 'tab:transfer-decomposition')])


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
