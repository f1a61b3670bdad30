"""The house style and plumbing of transferbench's figures: sizes, fonts, colours, panels, captions.

Every figure builder (:mod:`analysis.figures`, :mod:`analysis.estimate`) draws through these: one
rc context (:data:`RC`), one colour, marker and line style per condition label (:data:`STYLE`),
one panel per transfer direction (:func:`directions`), and one caption per figure that states the
final-score rule, the CI method and the unit of replication (:func:`caption`), printed under the
title and saved by :func:`save` as ``<name>.caption.txt`` next to the PNG and PDF.
"""

from __future__ import annotations

import pathlib
import sys
import textwrap

import numpy as np
import pandas as pd

from analysis import measures as measures_lib
from analysis import stats
from analysis.curves import strata
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
RULE_SHORT = {'last': 'last evaluation', 'best': 'best evaluation', 'best_k': 'mean of {k} best',
              'last_k': 'mean of last {k}'}
MEASURE_SHORT = {'start': 'start', 'auc': 'normalised AUC',
                 **{f'final_{rule}': name for rule, name in RULE_SHORT.items()}}

# CI methods: (on the figure, in the caption file); docs/analysis/figures.md has the formulas.
CI_T = ('95% t CI over seeds', '95% t interval of the mean over seeds, t(0.975, m - 1) s / sqrt(m)')
CI_BOOTSTRAP = ('95% bootstrap CI over seeds',
                '95% percentile bootstrap of the mean difference, resampling seeds')
PAPER_DEPTH = 8  # Yosinski et al. 2014: 7 transferable layers + the classifier.
CAPTION_SUFFIX = '.caption.txt'


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
    fig = Figure(figsize=(width, row_height * nrows + 0.9), layout='constrained')
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
  transfer = table[table['condition'] == conditions_lib.TRANSFER]
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
  return table[mask & ((table['condition'] != conditions_lib.TRANSFER) | (table['source'] == key['source']))]


# ---------------------------------------------------------------------------------- captions

def caption(rule: str | None, k: int, ci_method: str, unit: str, what: str = '') -> str:
  """A figure's caption: what it draws, its final-score rule, its CI method and its unit.

  Args:
    rule: the final-score rule (a key of :data:`analysis.measures.FINAL_RULES`), or None for a
      figure whose measure uses no final score (start, AUC).
    k: k of the k rules.
    ci_method: how the intervals were computed (e.g. :data:`CI_T`).
    unit: the unit of replication, e.g. 'seed (one run per seed; 5 per point)'.
    what: what the figure draws (sentences), put first.

  Returns:
    The caption text, one paragraph.
  """
  score = (f'Final score: {measures_lib.rule_name(rule, k)}.' if rule
           else 'Final score: not used by this measure.')
  return ' '.join(p for p in (what.strip(), score, f'CI: {ci_method}.',
                              f'Unit of replication: {unit}.') if p)


def _set_caption(fig, title: str, rule: str | None, k: int, ci: tuple[str, str], unit: str,
                 what: str = '') -> None:
  """Title plus rule, CI and unit (short) as the suptitle; the full caption kept for :func:`save`.

  The caption travels with the Figure as the attribute ``transferbench_caption`` (a plain
  attribute: matplotlib figures carry no caption of their own).

  Args:
    fig: the figure.
    title: its title.
    rule: final-score rule, or None.
    k: k of the k rules.
    ci: (short, long) name of the CI method, e.g. :data:`CI_T`.
    unit: unit of replication.
    what: what the figure draws (caption file only).
  """
  score = _rule_label(rule, k) if rule else 'none'
  facts = f'Final score: {score}; {ci[0]}; unit: {unit}'
  width = int(fig.get_figwidth() * 17)  # Characters per line at 8 pt.
  fig.suptitle('\n'.join([title] + textwrap.wrap(facts, width)))
  fig.transferbench_caption = f'{title}. {caption(rule, k, ci[1], unit, what)}'


def caption_of(fig) -> str | None:
  """The caption a builder attached to ``fig`` (None for a figure built elsewhere)."""
  return getattr(fig, 'transferbench_caption', None)


def _unit_of_seeds(runs: pd.DataFrame, column: str) -> str:
  """'seed (m = 5 runs per point)', with the range of m over the plotted cells."""
  keys = [c for c in strata(runs) + ['condition', 'fine_tuned', 'n_layers', 'source', 'target']
          if c in runs.columns]
  counts = runs.dropna(subset=[column]).groupby(keys, dropna=False).size()
  if counts.empty:
    return 'seed'
  lo, hi = int(counts.min()), int(counts.max())
  return f'seed (m = {lo if lo == hi else f"{lo}-{hi}"} runs per point)'


def _unit_of_cells(table: pd.DataFrame) -> str:
  """The unit of a summary-type table: seeds, with the range of its ``n`` column (runs per cell)."""
  counts = table['n'].dropna() if 'n' in table.columns else pd.Series(dtype=float)
  if counts.empty:
    return 'seed'
  lo, hi = int(counts.min()), int(counts.max())
  return f'seed (m = {lo if lo == hi else f"{lo}-{hi}"} runs per cell)'


def save(fig, out_dir: str | pathlib.Path, name: str) -> list[pathlib.Path]:
  """Saves ``fig`` as ``name.png`` (300 dpi), ``name.pdf`` and its caption; returns the paths.

  The caption (:func:`caption_of`) goes to ``name.caption.txt``; a figure without one is saved as
  PNG and PDF only.
  """
  out = pathlib.Path(out_dir)
  out.mkdir(parents=True, exist_ok=True)
  paths = [out / f'{name}.png', out / f'{name}.pdf']
  for path in paths:
    fig.savefig(path, dpi=DPI)
  text = caption_of(fig)
  if text:
    paths.append(out / f'{name}{CAPTION_SUFFIX}')
    paths[-1].write_text(text + '\n')
  return paths


def _legend(fig, handles, ncol: int):
  """One figure legend below the panels."""
  import matplotlib
  with matplotlib.rc_context(RC):
    fig.legend(handles=handles, loc='outside lower center', ncol=ncol, frameon=False,
               columnspacing=1.0, handlelength=2.0)


def _rule_label(rule: str, k: int) -> str:
  return RULE_SHORT[rule].format(k=k)


def mean_ci(values) -> tuple[float, float, int]:
  """(mean, 95% t half-width, count) of values over seeds, NaN dropped (half-width NaN if < 2)."""
  values = np.asarray(values, float)
  values = values[~np.isnan(values)]
  if not len(values):
    return np.nan, np.nan, 0
  return float(values.mean()), stats.t_halfwidth(values), len(values)


def depth_of(n_layers, depth: int | None = None) -> tuple[int, str]:
  """L, the model's number of layers (head included), and how it was found, for n / L.

  Args:
    n_layers: the n values of the runs.
    depth: L when the caller knows it (the model's ``num_layers``).

  Returns:
    (L, note): the given depth ('given'), or the deepest n + 1 ('deepest n + 1'), which is L
    when the sweep copied every transferable layer (the default n = 1 .. L - 1).
  """
  if depth is not None:
    return int(depth), 'given'
  return int(np.max(np.asarray(n_layers, int))) + 1, 'deepest n + 1'
