"""Paper figures (seaborn + matplotlib, Agg): each saved as PNG (300 dpi) and PDF.

Sizes are for a two-column paper: 3.3 in (one column) for a single panel, 6.9 in (both columns)
for several; fonts are 7-8 pt; colours come from seaborn's colour-blind-safe palette and every
series also has its own marker, so the figures survive greyscale printing. Every builder returns a
``matplotlib.figure.Figure`` (no pyplot state), or None when the data hold nothing to draw.

* :func:`fig2_accuracy_vs_n` - Yosinski et al. 2014 Fig. 2: final accuracy vs n layers copied.
* :func:`learning_curves` - mean curve +/- s.d. over seeds per n, with start, AUC range, asymptote.
* :func:`negative_transfer_heatmap` - the gap (n x condition, or source x target per n).
* :func:`decomposition_figure` - co-adaptation, specificity and fine-tuning boost vs n with CIs.
"""

from __future__ import annotations

import pathlib
import re
import sys
import warnings

import numpy as np
import pandas as pd

from analysis.curves import LABEL_ORDER, strata
from analysis.decomposition import EFFECT_LABELS
from harness import conditions as conditions_lib

COLUMN_WIDTH = 3.3  # inches
PAGE_WIDTH = 6.9
DPI = 300
RC = {
    'font.size': 8, 'axes.titlesize': 8, 'axes.labelsize': 8, 'xtick.labelsize': 7,
    'ytick.labelsize': 7, 'legend.fontsize': 7, 'legend.title_fontsize': 7,
    'figure.titlesize': 8, 'axes.spines.top': False, 'axes.spines.right': False,
    'pdf.fonttype': 42, 'ps.fonttype': 42, 'savefig.dpi': DPI, 'lines.linewidth': 1.2,
    'lines.markersize': 4, 'axes.linewidth': 0.6, 'grid.linewidth': 0.4,
}
# Colour-blind palette index (seaborn 'colorblind'), marker and line style per label (registry).
STYLE = {name: (s.colour, s.marker, s.linestyle) for name, s in conditions_lib.styles().items()}
EFFECT_STYLE = {'fragile_coadaptation': (0, 'o'), 'specificity': (3, 'D'),
                'fine_tuning_boost': (1, '^')}
RULE_SHORT = {'last': 'last evaluation', 'best': 'best evaluation', 'best_k': 'mean of {k} best',
              'last_k': 'mean of last {k}'}
MEASURE_SHORT = {'start': 'start', 'auc': 'normalised AUC',
                 **{f'final_{rule}': name for rule, name in RULE_SHORT.items()}}


def _plotting():
  """matplotlib (Agg unless pyplot is already set up by the user) and seaborn, imported late."""
  import matplotlib
  if 'matplotlib.pyplot' not in sys.modules:
    matplotlib.use('Agg')
  import seaborn as sns
  from matplotlib.figure import Figure
  return matplotlib, sns, Figure


def colour(name: str):
  """The colour of a label (base is black)."""
  _, sns, _ = _plotting()
  index = STYLE[name][0]
  return (0.1, 0.1, 0.1) if index is None else sns.color_palette('colorblind')[index]


def _new_figure(n_panels: int, ncols_max: int, row_height: float, share: bool = True):
  """A constrained-layout Figure with a grid of axes, sized for one or two columns."""
  matplotlib, _, Figure = _plotting()
  ncols = min(n_panels, ncols_max)
  nrows = int(np.ceil(n_panels / ncols))
  width = COLUMN_WIDTH if ncols == 1 else PAGE_WIDTH
  with matplotlib.rc_context(RC):
    fig = Figure(figsize=(width, row_height * nrows + 0.6), layout='constrained')
    axes = fig.subplots(nrows, ncols, squeeze=False, sharex=share, sharey=share).ravel()
  for ax in axes[n_panels:]:
    ax.set_visible(False)
  return fig, list(axes[:n_panels])


def _panel_title(key: dict) -> str:
  where = ', '.join(str(key[c]) for c in key if c not in ('source', 'target'))
  source, target = key['source'], key['target']
  arrow = target if source == target else f'{source} → {target}'
  return f'{arrow} ({where})' if where else arrow


def directions(table: pd.DataFrame) -> list[dict]:
  """One panel key per transfer direction (stratum, source, target); per target without transfers.

  Args:
    table: runs or summary table (needs condition, source, target and stratum columns).

  Returns:
    Dicts with the stratum columns, source and target; source == target for a target panel.
  """
  keys = strata(table)
  transfer = table[table['condition'] == 'transfer']
  if len(transfer):
    pairs = transfer[keys + ['source', 'target']].drop_duplicates()
  else:
    pairs = table[keys + ['target']].drop_duplicates().assign(source=lambda d: d['target'])
  pairs = pairs[keys + ['source', 'target']].sort_values(keys + ['target', 'source'])
  return pairs.to_dict('records')


def same(values: pd.Series, value) -> pd.Series:
  """values == value, where a missing value equals a missing value (a stratum may be NaN)."""
  return (values == value) | (values.isna() & pd.isna(value))


def panel_rows(table: pd.DataFrame, key: dict) -> pd.DataFrame:
  """Rows of a panel: everything on its target (and stratum), transfers only from its source."""
  mask = table['target'] == key['target']
  for c in strata(table):
    mask &= same(table[c], key[c])
  return table[mask & ((table['condition'] != 'transfer') | (table['source'] == key['source']))]


def save(fig, out_dir: str | pathlib.Path, name: str) -> list[pathlib.Path]:
  """Saves ``fig`` as ``name.png`` (300 dpi) and ``name.pdf``; returns both paths."""
  out = pathlib.Path(out_dir)
  out.mkdir(parents=True, exist_ok=True)
  paths = [out / f'{name}.png', out / f'{name}.pdf']
  for path in paths:
    fig.savefig(path, dpi=DPI)
  return paths


def _legend(fig, handles, ncol: int):
  """One figure legend below the panels."""
  import matplotlib
  with matplotlib.rc_context(RC):
    fig.legend(handles=handles, loc='outside lower center', ncol=ncol, frameon=False,
               columnspacing=1.0, handlelength=2.0)


def _rule_label(rule: str, k: int) -> str:
  return RULE_SHORT[rule].format(k=k)


# ------------------------------------------------------------------- Fig. 2 of Yosinski et al.

def _series_offsets(labels: list[str]) -> dict[str, float]:
  """Horizontal dodge of each label's dots, so that conditions at one n do not overlap."""
  spread = np.linspace(-0.24, 0.24, len(labels)) if len(labels) > 1 else [0.0]
  return dict(zip(labels, spread))


def _draw_fig2_panel(ax, rows: pd.DataFrame, column: str, scale: float, rng) -> list[str]:
  """Dots per run and mean lines per label (through the base mean at n = 0)."""
  base = rows.loc[rows['label'] == 'base', column].dropna() / scale
  labels = [l for l in LABEL_ORDER[1:] if l in set(rows['label'])]
  offsets = _series_offsets(labels)
  ax.scatter(rng.uniform(-0.06, 0.06, len(base)), base, s=7, color=colour('base'),
             marker='o', alpha=0.7, linewidths=0, zorder=3)
  if len(base):
    ax.plot([0], [base.mean()], marker='_', markersize=12, color=colour('base'), zorder=4)
  for name in labels:
    cells = rows[rows['label'] == name].dropna(subset=[column])
    _, marker, style = STYLE[name]
    x = cells['n_layers'] + offsets[name] + rng.uniform(-0.04, 0.04, len(cells))
    ax.scatter(x, cells[column] / scale, s=7, color=colour(name), marker=marker, alpha=0.6,
               linewidths=0, zorder=3)
    means = cells.groupby('n_layers')[column].mean() / scale
    xs = ([0] if len(base) else []) + list(means.index + offsets[name])
    ys = ([base.mean()] if len(base) else []) + list(means.values)
    ax.plot(xs, ys, color=colour(name), marker=marker, linestyle=style, markersize=3.5, zorder=4)
  return ['base'] + labels if len(base) else labels


def _draw_reference(ax, points: pd.DataFrame, labels: list[str]) -> None:
  """Published means relative to their base: thin lines with open markers."""
  for name in labels:
    p = points[points['label'] == name].sort_values('n_layers')
    if p.empty or name == 'base':
      continue
    base = points[(points['label'] == ('netbase' if name.startswith('random') else 'base'))]
    p = pd.concat([base, p])
    _, marker, _ = STYLE[name]
    ax.plot(p['n_layers'], p['relative'], color=colour(name), marker=marker, linestyle=':',
            linewidth=0.9, markersize=3.5, markerfacecolor='white', alpha=0.9, zorder=2)


def fig2_accuracy_vs_n(runs: pd.DataFrame, rule: str = 'best_k', k: int = 10,
                       reference: pd.DataFrame | None = None, seed: int = 0):
  """Yosinski et al. 2014 Fig. 2: final target accuracy vs number of layers copied.

  Every run is a dot (dodged per condition and jittered), means are lines; n = 0 is base (scratch
  on the target) and every line starts from its mean. With ``reference`` (see
  :func:`analysis.reference.yosinski2014_points`) the y axis becomes accuracy / mean base accuracy
  of the same panel, and the published means (each divided by its own base) are overlaid.

  Args:
    runs: the runs table of an analysis.
    rule: asymptote rule (column final_<rule>).
    k: k of the k rules (for the label).
    reference: published points, or None.
    seed: seed of the jitter.

  Returns:
    The Figure (one panel per transfer direction), or None without any scored run.
  """
  matplotlib, _, _ = _plotting()
  from matplotlib.lines import Line2D
  column = f'final_{rule}'
  if runs[column].notna().sum() == 0:
    return None
  keys = directions(runs)
  fig, axes = _new_figure(len(keys), 2, 2.3)
  rng = np.random.default_rng(seed)
  drawn = []
  with matplotlib.rc_context(RC):
    for ax, key in zip(axes, keys):
      rows = panel_rows(runs, key)
      base = rows.loc[rows['label'] == 'base', column].mean()
      scale = base if reference is not None else 1.0
      labels = _draw_fig2_panel(ax, rows, column, scale if np.isfinite(scale) else np.nan, rng)
      drawn += [l for l in labels if l not in drawn]
      if reference is not None:
        _draw_reference(ax, reference, labels)
        ax.axhline(1.0, color='0.6', linewidth=0.5, zorder=1)
      ax.set_title(_panel_title(key))
      ax.set_xlabel('Layers copied from source, n (0 = base)')
      ax.set_ylabel('Accuracy / base accuracy (ratio)' if reference is not None
                    else 'Target accuracy (fraction)')
      ax.xaxis.set_major_locator(matplotlib.ticker.MaxNLocator(integer=True))
      ax.label_outer()
    handles = [Line2D([], [], color=colour(l), marker=STYLE[l][1], linestyle=STYLE[l][2],
                      label=l) for l in LABEL_ORDER if l in drawn]
    if reference is not None:
      handles.append(Line2D([], [], color='0.3', marker='o', markerfacecolor='white',
                            linestyle=':', label='Yosinski et al. 2014 (published)'))
    _legend(fig, handles, ncol=3 if len(axes) == 1 else 4)
    fig.suptitle(f'Final accuracy ({_rule_label(rule, k)}): dots runs, lines means')
  return fig


# ------------------------------------------------------------------------- learning curves

def _mean_curve(curves: pd.DataFrame, run_ids) -> pd.DataFrame:
  """Mean and s.d. over runs at each evaluated step (NaN evaluations dropped; no resampling)."""
  rows = curves[curves['run_id'].isin(run_ids)].dropna(subset=['accuracy'])
  return rows.groupby('step')['accuracy'].agg(['mean', 'std', 'count']).reset_index()


def _draw_curve(ax, curve: pd.DataFrame, name: str, final: float) -> None:
  """Mean curve with s.d. band, start marker and asymptote line."""
  if curve.empty:
    return
  c = colour(name)
  ax.plot(curve['step'], curve['mean'], color=c, linestyle=STYLE[name][2], linewidth=1.0)
  ax.fill_between(curve['step'], curve['mean'] - curve['std'].fillna(0),
                  curve['mean'] + curve['std'].fillna(0), color=c, alpha=0.15, linewidth=0)
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


def learning_curves(curves: pd.DataFrame, runs: pd.DataFrame, key: dict, rule: str = 'best_k',
                    k: int = 10, xscale: str = 'symlog'):
  """Learning curves of one transfer direction: one facet per n, scratch in every facet.

  Each facet shows, per condition at that n and for scratch (base): the mean accuracy over seeds
  at each evaluated step with a +/- 1 s.d. band; the start (first evaluation, marker); the area
  used for the normalised AUC (shaded under the mean, over the comparison's step range); and the
  asymptote (dashed, mean of final_<rule>); the area between the condition's and scratch's mean
  curves over the step range of their AUC comparison is shaded (the slope effect: its signed
  area divided by the range length is the AUC difference when all runs share their steps).

  Args:
    curves: validated curves.
    runs: runs table of the analysis (labels, AUC ranges, asymptotes).
    key: the panel (see :func:`directions`).
    rule: asymptote rule.
    k: k of the k rules.
    xscale: 'symlog' (default: linear up to the first evaluated step > 0, logarithmic above, so
      that the dense early evaluations where start and slope are decided stay visible next to the
      asymptote) or 'linear'.

  Returns:
    The Figure, or None if the direction has no runs.
  """
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
      if xscale == 'symlog':
        positive = curves.loc[curves['step'] > 0, 'step']
        ax.set_xscale('symlog', linthresh=float(positive.min()) if len(positive) else 1.0)
      ax.set_xlabel('Training step on target' + (' (symlog)' if xscale == 'symlog' else ''))
      ax.set_ylabel('Target accuracy (fraction)')
      ax.label_outer()
    handles = [Line2D([], [], color=colour(l), linestyle=STYLE[l][2], label=l)
               for l in LABEL_ORDER if l in drawn]
    handles += [
        Line2D([], [], color='0.3', marker='o', linestyle='none', label='start (first evaluation)'),
        Patch(color='0.3', alpha=0.15, label='mean ± s.d. over seeds'),
        Patch(color='0.3', alpha=0.3, label='AUC difference from base'),
        Line2D([], [], color='0.3', linestyle=(0, (2, 1)),
               label=f'asymptote ({_rule_label(rule, k)})')]
    _legend(fig, handles, ncol=3 if len(axes) == 1 else 5)
    fig.suptitle(f'Learning curves, {_panel_title(key)}')
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


def negative_transfer_heatmap(summary: pd.DataFrame, measure: str = 'final_best_k',
                              alpha: float = 0.05, k: int = 10):
  """Heat map of the negative-transfer gap of one accuracy-type measure, centred at 0.

  Cells are annotated with the gap in percentage points; '*' marks a verdict (CI excludes 0 and
  p < alpha; red = negative, blue = positive transfer), '†' a single run (no CI). Annotations
  are left out when the cells are too small to read them (many tasks); the colours remain.

  Args:
    summary: summary table of an analysis.
    measure: an accuracy-type measure (start, auc, final_*).
    alpha: the significance level used for the verdicts (for the caption).
    k: k of the k rules (for the title).

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
    fig.suptitle(f'Negative-transfer gap (pp), {MEASURE_SHORT[measure].format(k=k)}\n'
                 f'> 0: worse than scratch; * 95% CI excludes 0\nand p < {alpha:g}; '
                 '† single run (no CI)')
  return fig


# ------------------------------------------------------------------------- decomposition

def decomposition_figure(decomposition: pd.DataFrame, k: int = 10):
  """Fragile co-adaptation, specificity and fine-tuning boost vs n, with 95% bootstrap CIs.

  Args:
    decomposition: the decomposition table of an analysis.
    k: k of the k rules (for the title).

  Returns:
    The Figure (one panel per direction), or None if the table is empty.
  """
  matplotlib, sns, _ = _plotting()
  from matplotlib.lines import Line2D
  if decomposition.empty:
    return None
  keys = directions(decomposition.assign(condition=np.where(
      decomposition['source'] != decomposition['target'], 'transfer', 'selffer')))
  fig, axes = _new_figure(len(keys), 2, 2.2)
  palette = sns.color_palette('colorblind')
  drawn = []
  with matplotlib.rc_context(RC):
    for ax, key in zip(axes, keys):
      rows = decomposition[(decomposition['target'] == key['target'])
                           & decomposition['source'].isin([key['source'], key['target']])]
      for c in strata(decomposition):
        rows = rows[same(rows[c], key[c])]
      for i, (name, (color_index, marker)) in enumerate(EFFECT_STYLE.items()):
        e = rows[rows['effect'] == name].sort_values('n_layers')
        if e.empty:
          continue
        x = e['n_layers'] + (i - 1) * 0.08
        err = np.vstack([e['estimate'] - e['ci_low'], e['ci_high'] - e['estimate']])
        ax.errorbar(x, e['estimate'], yerr=np.nan_to_num(err, nan=0.0), color=palette[color_index],
                    marker=marker, markersize=3.5, capsize=2, linewidth=1.0, elinewidth=0.8)
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
    measure = MEASURE_SHORT[decomposition['measure'].iloc[0]].format(k=k)
    fig.suptitle(f'Yosinski decomposition, {measure}\n(error bars: 95% bootstrap CI)')
  return fig


# ---------------------------------------------------------------------------- everything

def _slug(text: str) -> str:
  return re.sub(r'[^A-Za-z0-9]+', '_', str(text)).strip('_')


def make_figures(result, out_dir: str | pathlib.Path,
                 reference: str | None = 'yosinski2014') -> list[pathlib.Path]:
  """Draws and saves every figure of an analysis; returns the written files.

  Args:
    result: an :class:`analysis.AnalysisResult`.
    out_dir: directory for the PNG and PDF files.
    reference: 'yosinski2014' adds ``fig2_relative_yosinski2014`` (published means overlaid).

  Returns:
    Paths of the PNG and PDF files.
  """
  s = result.settings
  figures = {'fig2_accuracy_vs_n': fig2_accuracy_vs_n(result.runs, s.rule, s.k, seed=s.seed)}
  if reference == 'yosinski2014':
    from analysis import reference as reference_lib
    figures['fig2_relative_yosinski2014'] = fig2_accuracy_vs_n(
        result.runs, s.rule, s.k, reference=reference_lib.yosinski2014_points(), seed=s.seed)
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
