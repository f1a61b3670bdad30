"""Paper figures (seaborn + matplotlib, Agg): each saved as PNG (300 dpi), PDF and a caption.

Sizes are for a two-column paper: 3.3 in (one column) for a single panel, 6.9 in (both columns)
for several; fonts are 7-8 pt; colours come from seaborn's colour-blind-safe palette and every
series also has its own marker and line style, so the figures survive greyscale printing. Every
builder returns a ``matplotlib.figure.Figure`` (no pyplot state), or None when the data hold
nothing to draw. Every figure carries its caption (:func:`caption_of`): the final-score rule, the
CI method and the unit of replication are printed under its title and written by :func:`save`
next to the image as ``<name>.caption.txt`` (style, panels and captions: :mod:`analysis.plotting`).
docs/analysis/figures.md describes each figure.

* :func:`fig2_accuracy_vs_n` - Yosinski et al. 2014 Fig. 2: final accuracy vs n layers copied,
  means with 95% t CIs at integer n, base at n = 0.
* :func:`learning_curves` - mean curve with 95% t CI band over seeds per n, on a log2 step axis.
* :func:`negative_transfer_heatmap` - the gap (n x condition, or source x target per n).
* :func:`decomposition_figure` - co-adaptation, specificity and fine-tuning boost vs n with CIs.
* :func:`reference_overlay` - reproduced vs published relative accuracy, by relative depth n / L.
"""

from __future__ import annotations

import pathlib
import re
import warnings

import numpy as np
import pandas as pd
from scipy import stats as sps

from analysis.curves import LABEL_ORDER, strata
from analysis.decomposition import EFFECT_LABELS
from analysis.measures import DEFAULT_K, DEFAULT_RULE
# The shared style and plumbing; save, caption, caption_of, directions and the sizes are part of
# this module's interface too (callers use figures.save, figures.COLUMN_WIDTH, ...).
from analysis.plotting import (  # pylint: disable=unused-import
    CI_BOOTSTRAP, CI_T, COLUMN_WIDTH, MEASURE_SHORT, PAGE_WIDTH, PAPER_DEPTH, RC, STYLE, _legend,
    _new_figure, _panel_title, _plotting, _rule_label, _set_caption, _unit_of_cells,
    _unit_of_seeds, caption, caption_of, colour, depth_of, directions, mean_ci, panel_rows, same,
    save)
from harness import conditions as conditions_lib

EFFECT_STYLE = {'fragile_coadaptation': (0, 'o'), 'specificity': (3, 'D'),
                'fine_tuning_boost': (1, '^')}


# ------------------------------------------------------------------- Fig. 2 of Yosinski et al.

def _draw_runs(ax, x, y, name: str) -> None:
  """One faint dot per run at its exact x (no jitter: runs of a cell share their n)."""
  ax.scatter(x, y, s=6, color=colour(name), marker=STYLE[name][1], alpha=0.35, linewidths=0,
             zorder=2, gid=f'runs:{name}')


def _draw_means(ax, x, y, ci, name: str, start: tuple[float, float] | None) -> None:
  """Means with 95% CI bars at exactly ``x``; a line joins ``start`` (base's mean) to them."""
  _, marker, style = STYLE[name]
  x, y = np.asarray(x, float), np.asarray(y, float)
  if start is not None:
    ax.plot(np.r_[start[0], x], np.r_[start[1], y], color=colour(name), linestyle=style,
            linewidth=1.0, zorder=3, gid=f'line:{name}')
  bars = ax.errorbar(x, y, yerr=np.nan_to_num(np.asarray(ci, float), nan=0.0), color=colour(name),
                     marker=marker, markersize=3.5, linestyle='none', capsize=2,
                     elinewidth=0.8, capthick=0.8, zorder=4)
  bars.lines[0].set_gid(f'mean:{name}')
  for collection in bars.lines[2]:
    collection.set_gid(f'ci:{name}')


def _draw_fig2_panel(ax, rows: pd.DataFrame, column: str, scale: float, x_of) -> list[str]:
  """Runs as dots, each label's means +/- 95% t CI at x_of(n); base at n = 0; returns labels."""
  base = rows.loc[rows['label'] == 'base', column].dropna() / scale
  labels = [l for l in LABEL_ORDER[1:] if l in set(rows['label'])]
  base_mean, base_ci, _ = mean_ci(base)
  start = (0.0, base_mean) if len(base) else None
  if len(base):
    _draw_runs(ax, np.zeros(len(base)), base, 'base')
    _draw_means(ax, [0.0], [base_mean], [base_ci], 'base', None)
  for name in labels:
    cells = rows[rows['label'] == name].dropna(subset=[column])
    if cells.empty:
      continue
    _draw_runs(ax, x_of(cells['n_layers'].to_numpy(float)), cells[column] / scale, name)
    ns = np.array(sorted(set(cells['n_layers'])), float)
    summary = [mean_ci(cells.loc[cells['n_layers'] == n, column] / scale) for n in ns]
    _draw_means(ax, x_of(ns), [s[0] for s in summary], [s[1] for s in summary], name, start)
  return ['base'] + labels if len(base) else labels


def _draw_reference(ax, points: pd.DataFrame, labels: list[str]) -> None:
  """Published means relative to their base at relative depth n / 8: dotted, open markers."""
  for name in labels:
    p = points[points['label'] == name].sort_values('n_layers')
    if p.empty or name == 'base':
      continue
    base = points[(points['label'] == ('netbase' if name.startswith('random') else 'base'))]
    p = pd.concat([base, p])
    _, marker, _ = STYLE[name]
    ax.plot(p['n_layers'] / PAPER_DEPTH, p['relative'], color=colour(name), marker=marker,
            linestyle=':', linewidth=0.9, markersize=3.5, markerfacecolor='white', alpha=0.9,
            zorder=2, gid=f'published:{name}')


def _fig2_texts(reference: bool, depth: int, how: str) -> tuple[str, str, str]:
  """(x label, y label, what the figure draws) of Fig. 2, with or without the published means."""
  what = ('Dots: runs. Markers with bars: the mean of each condition and its 95% CI, at its '
          'exact n (no jitter); lines join each condition to base (scratch on the target) at '
          'n = 0.')
  if not reference:
    return 'Layers copied from source, n (0 = base)', 'Target accuracy (fraction)', what
  how = '' if how == 'given' else f' ({how})'
  what += (f' y: accuracy / mean base accuracy of the panel (the base mean is treated as fixed). '
           f'x: relative depth n / L, L = {depth}{how} here and L = {PAPER_DEPTH} in the paper. '
           'Dotted, open markers: published means of Yosinski et al. 2014 over their networks, '
           'each divided by its own base (random frozen by netbase), no CI.')
  return (f'Relative depth n / L (L = {depth} here, {PAPER_DEPTH} in the paper)',
          'Accuracy / base accuracy (ratio)', what)


def fig2_accuracy_vs_n(runs: pd.DataFrame, rule: str = DEFAULT_RULE, k: int = DEFAULT_K,
                       reference: pd.DataFrame | None = None, depth: int | None = None):
  """Yosinski et al. 2014 Fig. 2: final target accuracy vs number of layers copied.

  Every run is a faint dot; each condition's mean over seeds is a marker with its 95% t CI
  (:func:`analysis.stats.t_halfwidth`) at exactly its integer n, so no mean is moved sideways;
  n = 0 is base (scratch on the target) and every condition's line starts from its mean. With
  ``reference`` (see :func:`analysis.reference.yosinski2014_points`) the y axis becomes accuracy /
  mean base accuracy of the same panel, the x axis relative depth n / L, and the published means
  (each divided by its own base) are overlaid at n / 8: networks of different depth compare at
  the same fraction of their layers.

  Args:
    runs: the runs table of an analysis.
    rule: asymptote rule (column final_<rule>).
    k: k of the k rules (for the caption).
    reference: published points, or None.
    depth: L of the runs' model (head included) for n / L; None: the deepest n + 1.

  Returns:
    The Figure (one panel per transfer direction), or None without any scored run.
  """
  matplotlib, _, _ = _plotting()
  from matplotlib.lines import Line2D
  column = f'final_{rule}'
  if runs[column].notna().sum() == 0:
    return None
  L, how = depth_of(runs['n_layers'], depth)
  x_of = (lambda n: np.asarray(n, float) / L) if reference is not None else (
      lambda n: np.asarray(n, float))
  xlabel, ylabel, what = _fig2_texts(reference is not None, L, how)
  keys = directions(runs)
  fig, axes = _new_figure(len(keys), 2, 2.3)
  drawn = []
  with matplotlib.rc_context(RC):
    for ax, key in zip(axes, keys):
      rows = panel_rows(runs, key)
      base = rows.loc[rows['label'] == 'base', column].mean()
      scale = base if reference is not None else 1.0
      labels = _draw_fig2_panel(ax, rows, column, scale if np.isfinite(scale) else np.nan, x_of)
      drawn += [l for l in labels if l not in drawn]
      if reference is not None:
        _draw_reference(ax, reference, labels)
        ax.axhline(1.0, color='0.6', linewidth=0.5, zorder=1)
        ax.xaxis.set_major_locator(matplotlib.ticker.MultipleLocator(0.25))
      else:
        ax.xaxis.set_major_locator(matplotlib.ticker.MaxNLocator(integer=True))
      ax.set_title(_panel_title(key))
      ax.set_xlabel(xlabel)
      ax.set_ylabel(ylabel)
      ax.label_outer()
    handles = [Line2D([], [], color=colour(l), marker=STYLE[l][1], linestyle=STYLE[l][2],
                      label=l) for l in LABEL_ORDER if l in drawn]
    if reference is not None:
      handles.append(Line2D([], [], color='0.3', marker='o', markerfacecolor='white',
                            linestyle=':', label='Yosinski et al. 2014 (published)'))
    _legend(fig, handles, ncol=3 if len(axes) == 1 else 4)
    _set_caption(fig, 'Final accuracy vs layers copied' + (
        ', relative to base' if reference is not None else ''), rule, k, CI_T,
        _unit_of_seeds(runs, column), what)
  return fig


# ------------------------------------------------------------------------- learning curves

def _mean_curve(curves: pd.DataFrame, run_ids) -> pd.DataFrame:
  """Mean, 95% t half-width and count over runs at each evaluated step (no resampling).

  NaN evaluations are dropped; the half-width is NaN where fewer than two runs were evaluated.
  """
  rows = curves[curves['run_id'].isin(run_ids)].dropna(subset=['accuracy'])
  out = rows.groupby('step')['accuracy'].agg(['mean', 'std', 'count']).reset_index()
  with np.errstate(invalid='ignore', divide='ignore'):
    t = sps.t.ppf(0.975, out['count'] - 1)
    out['ci'] = np.where(out['count'] >= 2, t * out['std'] / np.sqrt(out['count']), np.nan)
  return out


def _draw_curve(ax, curve: pd.DataFrame, name: str, final: float) -> None:
  """Mean curve with its 95% CI band, start marker and asymptote line."""
  if curve.empty:
    return
  c = colour(name)
  ax.plot(curve['step'], curve['mean'], color=c, linestyle=STYLE[name][2], linewidth=1.0,
          gid=f'curve:{name}')
  half = curve['ci'].fillna(0)
  ax.fill_between(curve['step'], curve['mean'] - half, curve['mean'] + half, color=c, alpha=0.15,
                  linewidth=0, gid=f'band:{name}')
  ax.plot(curve['step'].iloc[0], curve['mean'].iloc[0], marker=STYLE[name][1], color=c,
          markersize=4, markeredgecolor='white', markeredgewidth=0.5, zorder=5)
  if np.isfinite(final):
    x0, x1 = curve['step'].iloc[0], curve['step'].iloc[-1]
    ax.plot([x0 + 0.7 * (x1 - x0), x1], [final, final], color=c, linestyle=(0, (2, 1)),
            linewidth=0.9)


def _draw_auc_difference(ax, curve: pd.DataFrame, scratch: pd.DataFrame, name: str,
                         auc_range) -> None:
  """Shades the area between a condition's mean curve and scratch's over the AUC step range.

  Shared steps only (no resampling); the range ends are drawn as thin vertical lines when they
  cut the curves short.
  """
  lo, hi = auc_range
  if curve.empty or scratch.empty or not (np.isfinite(lo) and np.isfinite(hi) and hi > lo):
    return
  both = curve.merge(scratch, on='step', suffixes=('', '_scratch'))
  both = both[(both['step'] >= lo) & (both['step'] <= hi)]
  ax.fill_between(both['step'], both['mean_scratch'], both['mean'], color=colour(name),
                  alpha=0.2, linewidth=0)
  for end, edge in ((lo, curve['step'].iloc[0]), (hi, curve['step'].iloc[-1])):
    if end != edge:
      ax.axvline(end, color='0.5', linewidth=0.5, linestyle=':')


def log2_step_axis(ax, first: float, last: float) -> None:
  """Step axis: linear from 0 to ``first`` (the first evaluated step > 0), log2 above.

  The linear part [0, first] gets the width of one doubling, the same as [first, 2 first], so
  step 0 is drawn where it is and the first steps do not take a decade of the axis. Major ticks
  at 0 and every second power of two from ``first``, minor ticks at every power of two.
  """
  matplotlib, _, _ = _plotting()
  ax.set_xscale('symlog', base=2, linthresh=first, linscale=0.5)
  doublings = int(np.ceil(np.log2(max(last, first) / first))) + 1
  powers = first * 2.0 ** np.arange(doublings)
  ax.xaxis.set_major_locator(matplotlib.ticker.FixedLocator(np.r_[0.0, powers[::2]]))
  ax.xaxis.set_minor_locator(matplotlib.ticker.FixedLocator(powers))
  ax.xaxis.set_major_formatter(matplotlib.ticker.FuncFormatter(lambda v, _: f'{v:g}'))
  ax.set_xlim(-0.1 * first, max(last, first))  # Room for the start marker at step 0.


STEP_AXES = ('log2', 'linear')


def learning_curves(curves: pd.DataFrame, runs: pd.DataFrame, key: dict,
                    rule: str = DEFAULT_RULE, k: int = DEFAULT_K, xscale: str = 'log2'):
  """Learning curves of one transfer direction: one facet per n, scratch in every facet.

  Each facet shows, per condition at that n and for scratch (base): the mean accuracy over seeds
  at each evaluated step with its 95% t CI band (the t interval of :func:`analysis.stats.t_halfwidth`
  at every step; none where one run was evaluated); the start (first evaluation, marker); the
  asymptote (dashed, mean of final_<rule>); and the area between the condition's and scratch's
  mean curves over the step range of their AUC comparison (the slope effect: its signed area
  divided by the range length is the AUC difference when all runs share their steps).

  Args:
    curves: validated curves.
    runs: runs table of the analysis (labels, AUC ranges, asymptotes).
    key: the panel (see :func:`directions`).
    rule: asymptote rule.
    k: k of the k rules.
    xscale: 'log2' (default: linear from 0 to the first evaluated step > 0, which gets the width
      of one doubling, log2 above, so that the dense early evaluations where start and slope are
      decided stay visible next to the asymptote; see :func:`log2_step_axis`) or 'linear'.

  Returns:
    The Figure, or None if the direction has no runs.
  """
  if xscale not in STEP_AXES:
    raise ValueError(f'xscale {xscale!r}: expected one of {STEP_AXES}')
  matplotlib, _, _ = _plotting()
  from matplotlib.lines import Line2D
  from matplotlib.patches import Patch
  rows = panel_rows(runs, key)
  if rows.empty:
    return None
  column = f'final_{rule}'
  base = rows[rows['label'] == 'base']
  ns = sorted(set(rows.loc[rows['label'] != 'base', 'n_layers'])) or [0]
  fig, axes = _new_figure(len(ns), 4, 1.7)
  steps = curves.loc[curves['run_id'].isin(rows['run_id']), 'step']
  positive = steps[steps > 0]
  drawn = []
  with matplotlib.rc_context(RC):
    scratch = _mean_curve(curves, base['run_id'])
    for ax, n in zip(axes, ns):
      if len(base):
        _draw_curve(ax, scratch, 'base', base[column].mean())
        drawn += [] if 'base' in drawn else ['base']
      cells = rows[(rows['n_layers'] == n) & (rows['label'] != 'base')]
      for name in [l for l in LABEL_ORDER if l in set(cells['label'])]:
        cell = cells[cells['label'] == name]
        curve = _mean_curve(curves, cell['run_id'])
        _draw_curve(ax, curve, name, cell[column].mean())
        _draw_auc_difference(ax, curve, scratch, name,
                             (cell['auc_step_lo'].iloc[0], cell['auc_step_hi'].iloc[0]))
        drawn += [] if name in drawn else [name]
      ax.set_title(f'n = {n}')
      if xscale == 'log2' and len(positive):
        log2_step_axis(ax, float(positive.min()), float(positive.max()))
        ax.set_xlabel(f'Step on target (log2, 0-{positive.min():g} linear)')
      else:
        ax.set_xlabel('Step on target')
      ax.set_ylabel('Target accuracy (fraction)')
      ax.label_outer()
    handles = [Line2D([], [], color=colour(l), linestyle=STYLE[l][2], label=l)
               for l in LABEL_ORDER if l in drawn]
    handles += [
        Line2D([], [], color='0.3', marker='o', linestyle='none', label='start (first evaluation)'),
        Patch(color='0.3', alpha=0.15, label='mean, 95% CI over seeds'),
        Patch(color='0.3', alpha=0.3, label='AUC difference from base'),
        Line2D([], [], color='0.3', linestyle=(0, (2, 1)),
               label=f'asymptote ({_rule_label(rule, k)})')]
    _legend(fig, handles, ncol=3 if len(axes) == 1 else 5)
    what = ('Lines: mean accuracy over seeds at each evaluated step (no resampling); bands: '
            '95% CI of that mean (none where one run was evaluated); marker: start (first '
            'evaluation); dashed: asymptote (mean final score); shaded between a condition and '
            'base: the AUC difference over the step range of their comparison.')
    _set_caption(fig, f'Learning curves, {_panel_title(key)}', rule, k, (CI_T[0], CI_T[1] + ', at each step'),
                 _unit_of_seeds(rows, column), what)
  return fig


# ------------------------------------------------------------------------------- heat map

def _annotation(gap: float, verdict: str) -> str:
  if not np.isfinite(gap):
    return ''
  mark = {'negative': '*', 'positive': '*', 'single run': '†'}.get(verdict, '')
  return f'{100 * gap:+.1f}{mark}'


def _grid(cells: pd.DataFrame, index: str, columns: str, rows=None, cols=None):
  """(gap, annotation) matrices; ``pivot`` raises rather than silently merging duplicates."""
  gap = cells.pivot(index=index, columns=columns, values='gap')
  rows = gap.index if rows is None else rows
  cols = gap.columns if cols is None else cols
  text = cells.pivot(index=index, columns=columns, values='annotation')
  return gap.reindex(index=rows, columns=cols), text.reindex(index=rows, columns=cols).fillna('')


def _heatmap_grids(summary: pd.DataFrame) -> list[tuple[str, pd.DataFrame, pd.DataFrame]]:
  """(title, gap matrix, annotation matrix) per facet.

  Several transfer directions (and no strata): one facet per (fine_tuned, n), rows source,
  columns target (selffers on the diagonal, random_frozen as source 'random'). Otherwise one
  facet per direction (and stratum), rows n, columns condition label.
  """
  cells = summary[summary['verdict'] != 'reference'].copy()
  cells['annotation'] = [_annotation(g, v) for g, v in zip(cells['gap'], cells['verdict'])]
  keys = directions(summary)
  if len(keys) <= 1 or strata(summary):
    grids = []
    for key in keys:
      rows = panel_rows(cells, key)
      labels = [l for l in LABEL_ORDER if l in set(rows['label'])]
      if labels:
        gap, text = _grid(rows, 'n_layers', 'label', cols=labels)
        grids.append(('' if len(keys) == 1 else _panel_title(key), gap, text))
    return grids
  sources, targets = sorted(set(cells['source'])), sorted(set(cells['target']))
  grids = []
  for (fine_tuned, n), g in cells.groupby(['fine_tuned', 'n_layers'], sort=True):
    gap, text = _grid(g, 'source', 'target', sources, targets)
    grids.append((f'n = {n}' + (', fine-tuned' if fine_tuned else ''), gap, text))
  return grids


def negative_transfer_heatmap(summary: pd.DataFrame, measure: str = f'final_{DEFAULT_RULE}',
                              alpha: float = 0.05, k: int = DEFAULT_K):
  """Heat map of the negative-transfer gap of one accuracy-type measure, centred at 0.

  Cells are annotated with the gap in percentage points; '*' marks a verdict of the summary
  (red = negative, blue = positive transfer), '†' a single run (no CI). Annotations
  are left out when the cells are too small to read them (many tasks); the colours remain.

  Args:
    summary: summary table of an analysis.
    measure: an accuracy-type measure (start, auc, final_*).
    alpha: the significance level used for the verdicts (for the caption).
    k: k of the k rules (for the caption).

  Returns:
    The Figure, or None without any non-scratch cell.
  """
  matplotlib, sns, _ = _plotting()
  rows = summary[summary['measure'] == measure]
  if measure == 'time_to_threshold':
    raise ValueError('the heat map shows accuracy-type gaps; time to threshold is in steps')
  if rows.empty or (rows['verdict'] == 'reference').all():
    return None
  grids = _heatmap_grids(rows)
  if not grids:
    return None
  finite = np.concatenate([g.to_numpy(float).ravel() for _, g, _ in grids])
  finite = finite[np.isfinite(finite)]
  limit = 100 * max(np.abs(finite).max() if len(finite) else 0.0, 1e-4)
  n_rows, n_cols = grids[0][1].shape
  ncols = max(1, min(4, 16 // (n_cols + 1), len(grids)))
  fig, axes = _new_figure(len(grids), ncols, 0.3 * n_rows + 0.9, share=False)
  # Annotate only when a cell is wide enough for '+12.3*' at 7 pt.
  width = (COLUMN_WIDTH if ncols == 1 else PAGE_WIDTH) / ncols * 0.75 / n_cols
  with matplotlib.rc_context(RC):
    for i, (ax, (title, gap, text)) in enumerate(zip(axes, grids)):
      with warnings.catch_warnings():  # seaborn 0.13 calls the deprecated Colormap.set_bad.
        warnings.simplefilter('ignore', PendingDeprecationWarning)
        sns.heatmap(100 * gap, ax=ax, cmap='RdBu_r', center=0, vmin=-limit, vmax=limit,
                    annot=text.to_numpy() if width >= 0.38 else False, fmt='',
                    annot_kws={'fontsize': 7}, linewidths=0.5,
                    linecolor='white', cbar=i == len(grids) - 1,
                    cbar_kws={'label': 'Gap (pp): error − scratch error'})
      ax.set_title(title)
      several = gap.index.name == 'source'
      ax.set_xlabel('Target task' if several else 'Condition')
      ax.set_ylabel('Source task' if several else 'Layers copied, n')
      ax.tick_params(axis='y', rotation=0)
    what = ('Cells: the negative-transfer gap in percentage points, error of the condition - '
            'error of scratch on the same target (> 0: worse than scratch; red negative, blue '
            f'positive transfer). *: verdict negative or positive in summary.csv (alpha = '
            f'{alpha:g}; its rule is stated in summary.md); †: a single run (no CI).')
    rule = measure[len('final_'):] if measure.startswith('final_') else None
    title = 'Negative-transfer gap (pp)' + ('' if rule else f', {MEASURE_SHORT[measure]}')
    _set_caption(fig, title, rule, k, CI_BOOTSTRAP, _unit_of_cells(rows), what)
  return fig


# ------------------------------------------------------------------------- decomposition

def decomposition_figure(decomposition: pd.DataFrame, k: int = DEFAULT_K):
  """Fragile co-adaptation, specificity and fine-tuning boost vs n, with 95% bootstrap CIs.

  Every estimate sits at its integer n (no dodge): the three effects differ by colour and marker.

  Args:
    decomposition: the decomposition table of an analysis.
    k: k of the k rules (for the caption).

  Returns:
    The Figure (one panel per direction), or None if the table is empty.
  """
  matplotlib, sns, _ = _plotting()
  from matplotlib.lines import Line2D
  if decomposition.empty:
    return None
  keys = directions(decomposition.assign(condition=np.where(
      decomposition['source'] != decomposition['target'], conditions_lib.TRANSFER, conditions_lib.SELFFER)))
  fig, axes = _new_figure(len(keys), 2, 2.2)
  palette = sns.color_palette('colorblind')
  drawn = []
  with matplotlib.rc_context(RC):
    for ax, key in zip(axes, keys):
      rows = decomposition[(decomposition['target'] == key['target'])
                           & decomposition['source'].isin([key['source'], key['target']])]
      for c in strata(decomposition):
        rows = rows[same(rows[c], key[c])]
      for name, (color_index, marker) in EFFECT_STYLE.items():
        e = rows[rows['effect'] == name].sort_values('n_layers')
        if e.empty:
          continue
        err = np.vstack([e['estimate'] - e['ci_low'], e['ci_high'] - e['estimate']])
        bars = ax.errorbar(e['n_layers'], e['estimate'], yerr=np.nan_to_num(err, nan=0.0),
                           color=palette[color_index], marker=marker, markersize=3.5, capsize=2,
                           linewidth=1.0, elinewidth=0.8)
        bars.lines[0].set_gid(f'effect:{name}')
        drawn += [] if name in drawn else [name]
      ax.axhline(0, color='0.5', linewidth=0.6, zorder=1)
      ax.set_title(_panel_title(key))
      ax.set_xlabel('Layers copied, n')
      ax.set_ylabel('Accuracy difference (fraction)')
      ax.xaxis.set_major_locator(matplotlib.ticker.MaxNLocator(integer=True))
      ax.label_outer()
    handles = [Line2D([], [], color=palette[EFFECT_STYLE[e][0]], marker=EFFECT_STYLE[e][1],
                      label=EFFECT_LABELS[e]) for e in EFFECT_STYLE if e in drawn]
    _legend(fig, handles, ncol=1 if len(axes) == 1 else len(handles))
    measure = decomposition['measure'].iloc[0]
    what = ('Markers: each effect, a difference of two cells\' mean final scores, at its integer '
            'n (no dodge); bars: its 95% CI. Effects are those of Yosinski et al. 2014: fragile '
            'co-adaptation = base - BnB, specificity = BnB - AnB, fine-tuning boost = AnB+ - base.')
    unit = _unit_of_cells(decomposition.rename(columns={'n_minuend': 'n'}))
    _set_caption(fig, 'Yosinski decomposition', measure[len('final_'):], k, CI_BOOTSTRAP, unit,
                 what)
  return fig


# ---------------------------------------------------------------------- published overlay

OVERLAY_LABELS = ('BnB', 'BnB+', 'AnB', 'AnB+', 'random')
# Colour-blind palette index per group of task pairs (other groups take the unused colours).
GROUP_COLOUR = {'random halves': 0, 'dissimilar': 3}


def _overlay_panel(ax, curves: pd.DataFrame, reference: pd.DataFrame | None, name: str,
                   depth: int, group_colour: dict) -> None:
  """One label: reproduced mean +/- 95% CI per group at n / depth, published at n / 8."""
  for group, g in curves[curves['label'] == name].groupby('group'):
    g = g.sort_values('n_layers')
    c = group_colour.get(group, 'k')
    x = np.r_[0, g['n_layers']] / depth
    ax.plot(x, np.r_[1.0, g['rel_mean']], color=c, linewidth=1.0, zorder=3)
    bars = ax.errorbar(x[1:], g['rel_mean'], yerr=g['rel_ci95'].fillna(0), color=c, marker='o',
                       markersize=3, linestyle='none', capsize=2, elinewidth=0.8, zorder=4,
                       label=f'reproduced: {group}')
    bars.lines[0].set_gid(f'reproduced:{name}:{group}')
  if reference is not None:
    p = reference[reference['label'] == name].sort_values('n_layers')
    if len(p):
      ax.plot(np.r_[0, p['n_layers']] / PAPER_DEPTH, np.r_[1.0, p['relative']], color='0.2',
              ls=':', marker='o', markersize=3, markerfacecolor='white',
              label='Yosinski et al. 2014 (ImageNet)', gid=f'published:{name}')


def reference_overlay(curves: pd.DataFrame, reference: pd.DataFrame | None,
                      depth: int | None = None, rule: str = DEFAULT_RULE, k: int = DEFAULT_K,
                      unit: str | None = None):
  """One panel per Yosinski label: reproduced mean +/- 95% CI per group vs published, by n / L.

  Everything is relative to its own base: reproduced runs to the base net of the same target and
  seed, published BnB/AnB(+) to the mean random-split base, published random frozen to netbase.
  The x axis is relative depth: n / L for the reproduction (L = ``depth``), n / 8 for the paper's
  8-layer network, so networks of different depth compare at the same fraction of their layers;
  both depths are printed on the figure.

  Args:
    curves: :func:`analysis.reproduce.curve_table` output (group, label, n_layers, rel_mean,
      rel_ci95 and count).
    reference: :func:`analysis.reference.yosinski2014_points`, or None (reproduction only).
    depth: L of the reproduced model (head included); None: the deepest n + 1.
    rule: final-score rule of the scores (the paper's: best_k).
    k: k of the k rules.
    unit: the unit of replication for the caption; None: one (target, seed) observation.

  Returns:
    The Figure, or None without any of the labels.
  """
  matplotlib, sns, Figure = _plotting()
  names = [n for n in OVERLAY_LABELS if n in set(curves['label'])]
  if not names:
    return None
  L, how = depth_of(curves['n_layers'], depth)
  if unit is None:
    lo, hi = int(curves['count'].min()), int(curves['count'].max())
    unit = (f'(target, seed) observation (m = {lo if lo == hi else f"{lo}-{hi}"} per point), '
            'score / base of the same target and seed')
  with matplotlib.rc_context(RC):
    fig = Figure(figsize=(PAGE_WIDTH, 2.6), layout='constrained')
    axes = fig.subplots(1, len(names), sharey=True, squeeze=False)[0]
    palette = sns.color_palette('colorblind')
    others = iter(i for i in range(len(palette)) if i not in GROUP_COLOUR.values())
    group_colour = {g: palette[GROUP_COLOUR[g] if g in GROUP_COLOUR else next(others)]
                    for g in sorted(set(curves['group']))}
    for ax, name in zip(axes, names):
      _overlay_panel(ax, curves, reference, name, L, group_colour)
      ax.axhline(1.0, color='0.6', lw=0.5)
      ax.set_title(name)
      ax.set_xlabel('n / L')
      ax.xaxis.set_major_locator(matplotlib.ticker.MultipleLocator(0.5))
      ax.xaxis.set_minor_locator(matplotlib.ticker.MultipleLocator(0.25))
    axes[0].set_ylabel('accuracy / base accuracy')
    legend = {}
    for ax in axes:
      legend.update({l: h for h, l in zip(*ax.get_legend_handles_labels()) if l not in legend})
    order = sorted(legend, key=lambda l: (not l.startswith('reproduced'), l))
    fig.legend([legend[l] for l in order], order, loc='outside lower center', ncol=3, frameon=False)
    how = '' if how == 'given' else f' ({how})'
    depths = f'L = {L} here{how}, {PAPER_DEPTH} in the paper'
    what = ('Solid: reproduced mean score / base per group of task pairs, with 95% CI bars; '
            'dotted, open markers: published means over the paper\'s networks (no CI); '
            'n / L = 0 is base (1 by definition).')
    _set_caption(fig, f'Reproduced vs published by relative depth n / L ({depths})', rule, k,
                 tuple(c.replace('seeds', 'observations') for c in CI_T), unit, what)
  return fig


# ---------------------------------------------------------------------------- everything

def _slug(text: str) -> str:
  return re.sub(r'[^A-Za-z0-9]+', '_', str(text)).strip('_')


def make_figures(result, out_dir: str | pathlib.Path,
                 reference: str | None = 'yosinski2014') -> list[pathlib.Path]:
  """Draws and saves every figure of an analysis; returns the written files.

  Args:
    result: an :class:`analysis.AnalysisResult`.
    out_dir: directory for the PNG, PDF and caption files.
    reference: 'yosinski2014' adds ``fig2_relative_yosinski2014`` (published means overlaid,
      by relative depth n / L).

  Returns:
    Paths of the PNG, PDF and ``.caption.txt`` files.
  """
  s = result.settings
  figures = {'fig2_accuracy_vs_n': fig2_accuracy_vs_n(result.runs, s.rule, s.k)}
  if reference == 'yosinski2014':
    from analysis import reference as reference_lib
    figures['fig2_relative_yosinski2014'] = fig2_accuracy_vs_n(
        result.runs, s.rule, s.k, reference=reference_lib.yosinski2014_points())
  keys = directions(result.runs)
  for key in keys:
    name = 'learning_curves' if len(keys) == 1 else 'learning_curves_' + _slug(
        '_'.join(str(key[c]) for c in strata(result.runs)) + f'_{key["source"]}_to_{key["target"]}')
    figures[name] = learning_curves(result.curves, result.runs, key, s.rule, s.k)
  figures['negative_transfer_heatmap'] = negative_transfer_heatmap(
      result.summary, f'final_{s.rule}', s.alpha, s.k)
  figures['decomposition'] = decomposition_figure(result.decomposition, s.k)
  written = []
  for name, fig in figures.items():
    if fig is not None:
      written += save(fig, out_dir, name)
  return written
