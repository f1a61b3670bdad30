"""Claims of "Surgical Fine-Tuning Improves Adaptation to Distribution Shifts" (Lee et al., ICLR
2023): tuning one layer can match full fine-tuning, and the best layer follows the shift.

Input: the relative scores of :func:`analysis.reproduce.relative_scores` for a sweep whose
targets are shifted copies of the source's task (``BASE@KIND``, :mod:`harness.shifts`), with the
conditions ``surgical`` (every layer copied, the head included; only layer k = n trained) and
``full_finetune`` (every layer copied and trained), each scored against scratch on the same
target and seed: ``rel = score / base``. A shift's level comes from its kind (:data:`LEVELS`):
input-level (corruptions), feature-level (sub-populations, ``subpop``), output-level (labels,
``labelperm``); the paper's best layer per level (:data:`PREDICTED`) is fixed in advance.

Claims (unit: the seed; one-sided t-tests; Holm over each claim's parts, one part per shift):

1. ``best_layer_matches_full_ft``: per shift, the best single tuned layer is non-inferior to full
   fine-tuning: rel(best k) - rel(full) > -margin (``Settings.margin``, 0.01 x base). The best k
   of seed s is chosen on the *other* seeds (leave-one-seed-out: the k with the highest mean rel
   over them), so that the layer is not picked on the data it is tested on.
2. ``best_layer_follows_the_shift``: per shift, the predicted layer beats every other layer:
   rel(k*) - rel(k) > 0 for every k outside the prediction, an intersection-union test (p = the
   largest per-k p; the opposite, some other layer beats k*, Holm over the other layers). k* is
   the first layer (input-level), the last (output-level: the head), and for feature-level the
   middle layers 2..L-1, of which the best is chosen leave-one-seed-out as in claim 1.

Both claims are about fine-tuning a network pre-trained to convergence (as in the paper): if a
source network still gained over its last 20% of training (:mod:`analysis.convergence`), they are
**inconclusive: source not converged**, whatever their parts say.
"""

from __future__ import annotations

import re

import numpy as np
import pandas as pd
from scipy import stats as sps

from analysis import reproduce, stats
from analysis.criticality import per_seed
from harness import conditions as conditions_lib
from harness.errors import UserError

INPUT, FEATURE, OUTPUT = 'input-level', 'feature-level', 'output-level'
# The level of a shift kind (harness/shifts.py), as the paper classifies its data sets: image
# corruptions are input-level (CIFAR-C, ImageNet-C), sub-populations feature-level (Living-17,
# Entity-30), label changes output-level (CIFAR-Flip, Waterbirds, CelebA).
LEVELS = {'noise': INPUT, 'blur': INPUT, 'contrast': INPUT, 'rot': INPUT, 'block': INPUT,
          'subpop': FEATURE, 'labelperm': OUTPUT}
# The layers the paper finds best per level, for a model of L layers (the head is layer L).
PREDICTED = {INPUT: lambda L: (1,), FEATURE: lambda L: tuple(range(2, L)), OUTPUT: lambda L: (L,)}
_KIND = re.compile(r'@([a-z]+)')  # in a target name such as mnist@noise0.5_k20


def _label(name: str) -> str:
  return conditions_lib.label(name, False)


def level(target: str) -> str:
  """The shift level of a target task name.

  Raises:
    UserError: the target is not a shifted set of a kind in :data:`LEVELS`.
  """
  m = _KIND.search(target)
  if not m or m[1] not in LEVELS:
    raise UserError(f'target {target!r} is not a shifted data set of a known level: name targets '
                    f'BASE@KIND with KIND in {", ".join(LEVELS)} (docs/shifts.md)')
  return LEVELS[m[1]]


def tables(rel: pd.DataFrame) -> dict[str, tuple[pd.DataFrame, pd.Series]]:
  """Per target, input- then feature- then output-level: (seed x tuned layer k table of rel of
  the surgical runs, full fine-tuning's rel per seed).

  Raises:
    UserError: no surgical or no full fine-tuning runs, or an unshifted target.
  """
  surgical, full = _label(conditions_lib.SURGICAL), _label(conditions_lib.FULL_FINETUNE)
  out = {}
  for target, rows in rel.groupby('target', sort=True):
    layers, whole = rows[rows['label'] == surgical], rows[rows['label'] == full]
    if layers.empty or whole.empty:
      continue
    level(target)
    out[target] = (layers.pivot_table(index='seed', columns='n_layers', values='rel',
                                      aggfunc='mean').sort_index(axis=1),
                   whole.groupby('seed')['rel'].mean())
  order = list(PREDICTED)  # input-, feature-, output-level, then by name
  out = dict(sorted(out.items(), key=lambda item: (order.index(level(item[0])), item[0])))
  if not out:
    raise UserError('no target has both surgical and full fine-tuning runs: this study needs the '
                    'conditions surgical and full_finetune on shifted targets '
                    '(sweeps/surgical_finetuning_small.py)')
  return out


def loso_best(table: pd.DataFrame, layers) -> pd.Series:
  """Per seed, the layer of ``layers`` with the highest mean rel over the *other* seeds."""
  table = table[list(layers)].dropna()
  total, count = table.sum(), len(table)
  if count < 2:
    return pd.Series(dtype=float)
  return pd.Series({s: ((total - table.loc[s]) / (count - 1)).idxmax() for s in table.index},
                   name='layer').rename_axis('seed')


def _note(table: pd.DataFrame, full: pd.Series) -> str:
  return ('mean rel per tuned layer: ' + ', '.join(f'{k}: {m:.3f}' for k, m in table.mean().items())
          + f'; full fine-tuning: {full.mean():.3f}')


def _shifted_part(name: str, formula: str, values: pd.Series, shift: float,
                  settings: reproduce.Settings, note: str) -> reproduce.Part:
  """A part testing mean(values) > -shift, reported on the scale of ``values``."""
  part = reproduce.make_part(name, formula, per_seed(values + shift), settings, note)
  part.estimate, part.ci_low, part.ci_high = (v - shift for v in
                                              (part.estimate, part.ci_low, part.ci_high))
  return part


def claim_matches(rel: pd.DataFrame, settings: reproduce.Settings) -> list[reproduce.Part]:
  """Per shift: the best single layer (chosen on the other seeds) is non-inferior to full FT."""
  parts = []
  for target, (table, full) in tables(rel).items():
    best = loso_best(table, table.columns)
    name = f'{target} ({level(target)})'
    if best.empty:
      parts.append(reproduce.Part(name, '', note='needs two or more seeds to choose the layer'))
      continue
    d = pd.Series({s: table.loc[s, k] - full.get(s, np.nan) for s, k in best.items()},
                  dtype=float).rename_axis('seed').dropna()
    chosen = ', '.join(f'{k}' for k in sorted(set(best)))
    parts.append(_shifted_part(
        name, f'rel(best layer) - rel(full FT) (margin {settings.margin:g})', d, settings.margin,
        settings, f'layer chosen on the other seeds: {chosen}; ' + _note(table, full)))
  return parts


def beats_every_other(table: pd.DataFrame, predicted, name: str,
                      settings: reproduce.Settings) -> reproduce.Part:
  """The predicted layer (the best of ``predicted`` on the other seeds) beats every other layer.

  Returns:
    A part whose estimate is the smallest mean difference rel(k*) - rel(k) over the other k, with
    that k's paired 90% t CI; p is the largest per-k one-sided p (intersection-union), the
    opposite p the smallest Holm-adjusted per-k p of k beating k*.
  """
  others = [k for k in table.columns if k not in predicted]
  formula = f'min over k not in {list(predicted)} of rel(k*) - rel(k)'
  if not predicted or not others or not set(predicted) <= set(table.columns):
    return reproduce.Part(name, formula, note=f'needs the layers {list(predicted)} and another '
                          f'(have {list(table.columns)})')
  best = (pd.Series(predicted[0], index=table.dropna().index) if len(predicted) == 1
          else loso_best(table, predicted))
  if len(best) < 2:
    return reproduce.Part(name, formula, n=len(best), note='too few seeds for a test')
  star = pd.Series({s: table.loc[s, k] for s, k in best.items()})
  diffs = {k: (star - table.loc[best.index, k]).to_numpy(float) for k in others}
  means = {k: float(d.mean()) for k, d in diffs.items()}
  se = {k: float(d.std(ddof=1) / np.sqrt(len(d))) for k, d in diffs.items()}
  df = len(best) - 1
  p = {k: reproduce._one_sided(means[k], se[k], df) for k in others}
  worst = min(means, key=means.get)
  half = float(sps.t.ppf(1 - settings.alpha, df) * se[worst])
  per_k = ', '.join(f'{k}: {m:+.4f}' for k, m in means.items())
  return reproduce.Part(
      name, formula, estimate=means[worst], ci_low=means[worst] - half,
      ci_high=means[worst] + half, p_value=max(p[k][0] for k in others),
      p_opposite=float(np.min(stats.holm(np.array([p[k][1] for k in others])))), n=len(best),
      unit=f'seed ({len(best)}; paired)',
      note=f'k* = {sorted(set(best))}; worst k={worst}; rel(k*) - rel(k) per k: {per_k}')


def claim_follows(rel: pd.DataFrame, settings: reproduce.Settings) -> list[reproduce.Part]:
  """Per shift: the layer the paper predicts for its level beats every other single layer."""
  parts = []
  for target, (table, _) in tables(rel).items():
    depth = int(max(table.columns))
    predicted = PREDICTED[level(target)](depth)
    parts.append(beats_every_other(table, predicted, f'{target} ({level(target)}: layer '
                                   f'{"/".join(map(str, predicted)) or "none"})', settings))
  return parts


CLAIMS: dict[str, reproduce.Claim] = {
    'best_layer_matches_full_ft': reproduce.Claim(
        'for each shift, tuning the best single layer is at least as good as full fine-tuning',
        claim_matches, converged_sources=True),
    'best_layer_follows_the_shift': reproduce.Claim(
        'the best layer follows the shift: input-level -> first, feature-level -> middle, '
        'output-level -> last', claim_follows, converged_sources=True),
}


def figure(rel: pd.DataFrame):
  """Test accuracy against the one tuned layer, a panel per shift: mean and 90% t CI over seeds,
  with full fine-tuning and scratch on the target as horizontal bands and lines."""
  from analysis.plotting import _plotting
  _, _, Figure = _plotting()
  per = tables(rel)
  fig = Figure(figsize=(3.0 * len(per), 3.2), layout='constrained')
  axes = fig.subplots(1, len(per), sharey=False, squeeze=False)[0]
  surgical, full = _label(conditions_lib.SURGICAL), _label(conditions_lib.FULL_FINETUNE)
  for ax, target in zip(axes, per):
    rows = rel[rel['target'] == target]
    acc = rows[rows['label'] == surgical].pivot_table(index='seed', columns='n_layers',
                                                      values='score', aggfunc='mean')
    whole = rows[rows['label'] == full].groupby('seed')['score'].mean()
    ax.errorbar(acc.columns, acc.mean(), yerr=_half(acc), marker='o', capsize=3,
                label='tune only layer k')
    band = float(_half(whole.to_frame()).iloc[0])
    ax.axhspan(whole.mean() - band, whole.mean() + band, color='C1', alpha=0.25, lw=0)
    ax.axhline(whole.mean(), color='C1', ls='--', label='full fine-tuning')
    ax.axhline(rows.groupby('seed')['base'].mean().mean(), color='grey', ls=':',
               label='scratch on the target')
    ax.set(title=f'{target}\n{level(target)}', xlabel='tuned layer k (L = head)',
           xticks=list(acc.columns))
  axes[0].set_ylabel('test accuracy')
  fig.legend(*axes[0].get_legend_handles_labels(), loc='outside lower center', ncol=3, fontsize=8)
  fig.transferbench_caption = (
      'Surgical fine-tuning (Lee et al. 2023) at small scale: test accuracy on each shifted '
      'target after tuning only layer k of the copied source network (every layer copied, the '
      'head included), against full fine-tuning (dashed, band: its 90% t CI) and scratch on the '
      'target (dotted). Points: mean over seeds, bars: 90% t CI over seeds (the unit).')
  return fig


def _half(table: pd.DataFrame) -> pd.Series:
  n = table.count()
  return sps.t.ppf(0.95, np.maximum(n - 1, 1)) * table.std(ddof=1) / np.sqrt(n)
