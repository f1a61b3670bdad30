"""Claims of "What is being transferred in transfer learning?" (Neyshabur, Sedghi & Zhang,
NeurIPS 2020), part (a): pre-training's benefit on block-shuffled targets.

Input: the relative scores of :func:`analysis.reproduce.relative_scores` for a sweep whose pairs
are one source (MNIST) and the same target shuffled in blocks of several sizes
(``animal_mnist@block<b>``, :mod:`harness.shifts`), with the fine-tuned transfer ``reinit_head``
(every layer below the head copied from the source, head re-initialised, all trained; label
``reinit-head``) scored against scratch on the same shuffled target and seed: ``rel = score /
base``. The *benefit* of pre-training at block size b is ``rel - 1``.

Claims (units: the seed, its pairs averaged; one-sided t-tests, Holm over each claim's parts):

1. ``benefit_survives_shuffling``: *whole image*: benefit at the largest block (the unshuffled
   image) > 0; *smallest block*: benefit at the smallest block > 0 (part of the benefit survives
   even when the image's layout is destroyed).
2. ``benefit_falls_with_smaller_blocks``: the least-squares slope of the benefit over log2(b) > 0.
"""

from __future__ import annotations

import re

import numpy as np
import pandas as pd

from analysis import reproduce
from analysis.criticality import per_seed
from harness.errors import UserError

LABEL = 'reinit-head'
_BLOCK = re.compile(r'@block(\d+)')  # in a target name such as animal_mnist@block4_k20


def benefits(rel: pd.DataFrame) -> pd.DataFrame:
  """seed x block size table of the benefit ``rel - 1`` of the fine-tuned transfer.

  Raises:
    UserError: no fine-tuned transfers, or targets not named ``BASE@block<b>``.
  """
  rows = rel[rel['label'] == LABEL]
  if rows.empty:
    raise UserError(f'no {LABEL} runs: this study needs the reinit_head condition on block-'
                    'shuffled targets (sweeps/what_transfers_small.py)')
  block = rows['target'].map(lambda t: (lambda m: int(m[1]) if m else None)(_BLOCK.search(t)))
  if block.isna().any():
    raise UserError(f"target {rows.loc[block.isna(), 'target'].iloc[0]!r} is not block-shuffled: "
                    'name every target BASE@block<b> (BASE@block28 for the whole MNIST-sized image)')
  return (rows.assign(block=block.astype(int), benefit=rows['rel'] - 1.0)
          .pivot_table(index='seed', columns='block', values='benefit', aggfunc='mean')
          .sort_index(axis=1))


def _note(table: pd.DataFrame) -> str:
  return 'mean benefit per block size: ' + ', '.join(
      f'{b}: {m:+.4f}' for b, m in table.mean().items())


def claim_survives(rel: pd.DataFrame, settings: reproduce.Settings) -> list[reproduce.Part]:
  """Pre-training helps on the whole image and still at the smallest block size."""
  table = benefits(rel)
  big, small = table.columns.max(), table.columns.min()
  return [reproduce.make_part(f'whole image (block {big})', f'score/base - 1 at block {big}',
                              per_seed(table[big]), settings, _note(table)),
          reproduce.make_part(f'smallest block ({small})', f'score/base - 1 at block {small}',
                              per_seed(table[small]), settings)]


def claim_falls(rel: pd.DataFrame, settings: reproduce.Settings) -> list[reproduce.Part]:
  """The benefit shrinks as the blocks get smaller."""
  table = benefits(rel).dropna()
  if table.shape[1] < 2:
    return [reproduce.Part('falls', '', note='needs two or more block sizes')]
  x = np.log2(table.columns.to_numpy(float))
  slopes = pd.Series(np.polyfit(x, table.to_numpy(float).T, 1)[0], index=table.index)
  return [reproduce.make_part('falls with smaller blocks', 'slope of the benefit over log2(block)',
                              per_seed(slopes), settings, _note(table))]


CLAIMS: dict[str, reproduce.Claim] = {
    'benefit_survives_shuffling': reproduce.Claim(
        'pre-training helps on block-shuffled targets, even at the smallest blocks', claim_survives),
    'benefit_falls_with_smaller_blocks': reproduce.Claim(
        'the benefit of pre-training falls as the blocks get smaller', claim_falls),
}


def figure(rel: pd.DataFrame):
  """Benefit of pre-training (score/base - 1) against block size, mean and 90% t CI over seeds."""
  from scipy import stats as sps
  from analysis.plotting import _plotting
  _, _, Figure = _plotting()
  table = benefits(rel)
  n = table.count()
  half = sps.t.ppf(0.95, np.maximum(n - 1, 1)) * table.std(ddof=1) / np.sqrt(n)
  fig = Figure(figsize=(4.6, 3.4), layout='constrained')
  ax = fig.add_subplot()
  ax.errorbar(table.columns, table.mean(), yerr=half, marker='o', capsize=3)
  ax.axhline(0, color='grey', lw=0.8)
  ax.set_xscale('log', base=2)
  ax.set(xlabel='block size (pixels; largest = whole image)',
         ylabel='fine-tuned / scratch - 1', title='Pre-training benefit on block-shuffled targets')
  return fig
