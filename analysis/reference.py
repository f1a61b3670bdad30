"""Published reference numbers: Yosinski et al. 2014, parsed from the authors' public logs.

``results/reference/yosinski2014_summary.csv`` has one row per network of the paper's ImageNet
experiments (see ``results/reference/PROVENANCE.md``); its score is the mean of the network's 10
best validation top-1 evaluations, the rule of the authors' plotting notebook.
"""

from __future__ import annotations

import os
import pathlib

import numpy as np
import pandas as pd

from harness import conditions as conditions_lib
from harness.errors import UserError

REFERENCE_DIR = pathlib.Path(__file__).resolve().parents[1] / 'results' / 'reference'
YOSINSKI2014_CSV = REFERENCE_DIR / 'yosinski2014_summary.csv'

# family -> (condition, fine_tuned, study). Studies: random_split = the A/B halves of the 1000
# classes (pairs 0A/0B ... 3A/3B); natman = natural vs man-made halves; all1000 = networks on all
# 1000 classes (netbase and the random-frozen "nolearn" nets); reduced_data = all 1000 classes
# with fewer images per class.
FAMILIES = {
    'base': (conditions_lib.BASE, False, 'random_split'),
    'selffer': (conditions_lib.SELFFER, False, 'random_split'),
    'transfer': (conditions_lib.TRANSFER, False, 'random_split'),
    'selffer_ft': (conditions_lib.SELFFER, True, 'random_split'),
    'transfer_ft': (conditions_lib.TRANSFER, True, 'random_split'),
    'natman_base': (conditions_lib.BASE, False, 'natman'),
    'natman_transfer': (conditions_lib.TRANSFER, False, 'natman'),
    'netbase': (conditions_lib.BASE, False, 'all1000'),
    'random_frozen': (conditions_lib.RANDOM_FROZEN, False, 'all1000'),
    'reduced': (conditions_lib.BASE, False, 'reduced_data'),
}

# The base each study's scores are normalised by in a Fig.-2-style overlay.
_BASE_FAMILY = {'random_split': 'base', 'all1000': 'netbase'}


def load_yosinski2014(path: str | os.PathLike | None = None,
                      drop_missing: bool = True) -> pd.DataFrame:
  """Yosinski et al. 2014's per-network scores as a tidy table.

  Args:
    path: the summary CSV (default: the copy shipped in ``results/reference/``).
    drop_missing: drop the networks whose logs are missing (no score).

  Returns:
    One row per network: network, family, study, condition, fine_tuned, n_layers (0 for
    networks trained from scratch), source, target, score (mean of the 10 best top-1),
    final_top1, first_top1, n_evals, max_iteration, images_per_class (reduced_data only).

  Raises:
    UserError: the file is missing or has an unknown family.
  """
  path = pathlib.Path(path or YOSINSKI2014_CSV)
  if not path.exists():
    raise UserError(f'reference file {path} not found: run from a source checkout of '
                    'transferbench (it ships results/reference/), or pass --reference none')
  raw = pd.read_csv(path)
  unknown = sorted(set(raw['family']) - set(FAMILIES))
  if unknown:
    raise UserError(f'unknown family {unknown} in {path}: expected one of {", ".join(FAMILIES)}')
  mapped = pd.DataFrame([FAMILIES[f] for f in raw['family']],
                        columns=['condition', 'fine_tuned', 'study'])
  df = pd.concat([raw.drop(columns=['fine_tuned']), mapped], axis=1)
  df['n_layers'] = df['n_layers'].fillna(0).astype(int)
  df['source'] = df['source'].fillna('none').astype(str)
  df['target'] = df['target'].astype(str)
  df['score'] = df.pop('score_top10mean')
  reduced = df['family'] == 'reduced'
  df['images_per_class'] = np.where(
      reduced, df['network'].str.extract(r'reduced-(\d+)', expand=False).astype(float), np.nan)
  if drop_missing:
    df = df[df['score'].notna()]
  columns = ['network', 'family', 'study', 'condition', 'fine_tuned', 'n_layers', 'source',
             'target', 'score', 'final_top1', 'first_top1', 'n_evals', 'max_iteration',
             'images_per_class']
  return df[columns].reset_index(drop=True)


def yosinski2014_points(ref: pd.DataFrame | None = None) -> pd.DataFrame:
  """Published mean score per (label, n), absolute and relative to its study's base.

  BnB, BnB+, AnB and AnB+ pool the random-split networks (all pairs) and are divided by the mean
  of the 8 random-split base networks (baseB); random-frozen networks are divided by netbase
  (they were trained on all 1000 classes). n = 0 is the base itself (relative 1).

  Args:
    ref: :func:`load_yosinski2014` output (loaded if None).

  Returns:
    Columns label, n_layers, score (mean), count, base (the divisor), relative.
  """
  from analysis.curves import label  # Local: keeps this module importable on its own.
  ref = load_yosinski2014() if ref is None else ref
  rows = []
  for study, base_family in _BASE_FAMILY.items():
    in_study = ref[ref['study'] == study]
    base = in_study.loc[in_study['family'] == base_family, 'score']
    rows.append({'label': 'base' if study == 'random_split' else 'netbase', 'n_layers': 0,
                 'score': base.mean(), 'count': len(base), 'base': base.mean()})
    others = in_study[in_study['family'] != base_family]
    for (condition, fine_tuned, n), g in others.groupby(['condition', 'fine_tuned', 'n_layers']):
      rows.append({'label': label(condition, fine_tuned), 'n_layers': int(n),
                   'score': g['score'].mean(), 'count': len(g), 'base': base.mean()})
  points = pd.DataFrame(rows)
  points['relative'] = points['score'] / points['base']
  return points


# study -> pair_kind of the converted curves; reduced_data (fewer images per class) has no pair.
_PAIR_KIND = {'random_split': 'random_halves', 'natman': 'dissimilar', 'all1000': 'none'}


def _pair_name(study: str, target: str) -> str:
  """split0..split3 for the random splits (target 0A -> split0), else the study's name."""
  return f'split{target[0]}' if study == 'random_split' else study


def yosinski2014_curves(ref: pd.DataFrame | None = None) -> pd.DataFrame:
  """The published networks as long-format curves, one evaluation per network.

  Each network becomes one run (``run_id`` = its name, seed 0) with a single evaluation at its
  last iteration whose accuracy is its published score (mean of the 10 best top-1), so score it
  with the rule ``last``. ``pair`` is the replicate pair: split0..split3 (pair_kind
  ``random_halves``) for the random A/B splits, ``natman`` (``dissimilar``) for natural vs
  man-made, and ``all1000`` (``none``) for netbase with the random-frozen nets, which were
  trained on all 1000 classes and are scored against netbase. The reduced-data nets are left out
  (another study, no transfer).

  Args:
    ref: :func:`load_yosinski2014` output (loaded if None).

  Returns:
    Columns run_id, condition, n_layers, fine_tuned, source, target, seed, step, accuracy, pair,
    pair_kind (valid for :func:`analysis.curves.validate_curves`).
  """
  ref = load_yosinski2014() if ref is None else ref
  ref = ref[ref['study'].isin(_PAIR_KIND)]
  return pd.DataFrame({
      'run_id': ref['network'], 'condition': ref['condition'], 'n_layers': ref['n_layers'],
      'fine_tuned': ref['fine_tuned'], 'source': ref['source'], 'target': ref['target'],
      'seed': 0, 'step': ref['max_iteration'].astype(float), 'accuracy': ref['score'],
      'pair': [_pair_name(s, t) for s, t in zip(ref['study'], ref['target'])],
      'pair_kind': ref['study'].map(_PAIR_KIND)}).reset_index(drop=True)
