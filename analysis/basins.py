"""Claims (b) and (c) of "What is being transferred in transfer learning?" (Neyshabur, Sedghi &
Zhang, NeurIPS 2020) on a table of per-replicate measurements.

Input: one row per replicate ``r`` (a source network, seed r), measured by
``transferbench reproduce what_transfers_basins`` with :mod:`analysis.similarity`:

* ``barrier_ft``: loss barrier on the straight line between two networks fine-tuned from source
  r (seeds 2r and 2r+1: different head initialisation and batch order);
* ``barrier_scratch``: the same between two networks trained from scratch (seeds 2r, 2r+1);
* ``distance_ft``: mean over the layers below the head of a fine-tuned network's relative
  distance from the source (``||theta_ft - theta_source|| / ||theta_source||``);
* ``distance_scratch``: the same for a scratch network from its own initialisation;
* ``cka_ft``, ``cka_scratch``: mean over the layers below the head of the linear CKA between the
  two fine-tuned (two scratch) networks' features on the target's test examples.

Claims (unit: the replicate; one-sided t-tests, Holm over each claim's parts):

1. ``one_basin``: *lower than scratch*: barrier_scratch - barrier_ft > 0; *no barrier*:
   ``BARRIER_MARGIN`` - barrier_ft > 0 (non-inferiority: the fine-tuned pair's barrier is below
   0.05 nats, a margin fixed in advance).
2. ``stay_close``: *parameters*: distance_scratch - distance_ft > 0; *features*: cka_ft -
   cka_scratch > 0.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from analysis import reproduce
from harness.errors import UserError

BARRIER_MARGIN = 0.05  # nats of test cross-entropy
COLUMNS = ('replicate', 'barrier_ft', 'barrier_scratch', 'distance_ft', 'distance_scratch',
           'cka_ft', 'cka_scratch')


def _effect(values: pd.Series) -> reproduce.Effect:
  return reproduce.t_effect(values, f'replicate (a source network; {len(values)})')
  return reproduce.Effect(float(d.mean()), float(d.std(ddof=1) / np.sqrt(len(d))), len(d) - 1,
                          len(d), unit)


def _check(table: pd.DataFrame) -> pd.DataFrame:
  missing = [c for c in COLUMNS if c not in table.columns]
  if missing:
    raise UserError(f'basin table lacks column(s) {missing}: measure it with '
                    '`transferbench reproduce what_transfers_basins`')
  return table


def claim_one_basin(table: pd.DataFrame, settings: reproduce.Settings) -> list[reproduce.Part]:
  """Two fine-tuned networks share a basin; two scratch networks do not."""
  t = _check(table)
  note = (f"barrier mean: fine-tuned {t['barrier_ft'].mean():.4f}, scratch "
          f"{t['barrier_scratch'].mean():.4f} nats")
  return [reproduce.make_part('lower than scratch', 'barrier(scratch pair) - barrier(fine-tuned pair)',
                              _effect(t['barrier_scratch'] - t['barrier_ft']), settings, note),
          reproduce.make_part('no barrier', f'{BARRIER_MARGIN:g} - barrier(fine-tuned pair)',
                              _effect(BARRIER_MARGIN - t['barrier_ft']), settings)]


def claim_stay_close(table: pd.DataFrame, settings: reproduce.Settings) -> list[reproduce.Part]:
  """Fine-tuned networks stay close to the source in parameters and features."""
  t = _check(table)
  return [reproduce.make_part(
              'parameters', 'relative distance(scratch, its init) - distance(fine-tuned, source)',
              _effect(t['distance_scratch'] - t['distance_ft']), settings,
              f"mean: fine-tuned {t['distance_ft'].mean():.3f}, scratch "
              f"{t['distance_scratch'].mean():.3f}"),
          reproduce.make_part(
              'features', 'CKA(fine-tuned pair) - CKA(scratch pair), mean over layers',
              _effect(t['cka_ft'] - t['cka_scratch']), settings,
              f"mean: fine-tuned {t['cka_ft'].mean():.3f}, scratch {t['cka_scratch'].mean():.3f}")]


CLAIMS: dict[str, reproduce.Claim] = {
    'one_basin': reproduce.Claim(
        'two networks fine-tuned from one source lie in one basin; two scratch networks do not',
        claim_one_basin),
    'stay_close': reproduce.Claim(
        'fine-tuned networks stay close to the source in parameter and feature space',
        claim_stay_close),
}
