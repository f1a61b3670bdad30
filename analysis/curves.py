"""Long-format learning curves: reading, validation, run status, and the keys that group them.

The analysis accepts any table with one row per evaluation and the columns::

    run_id, condition, n_layers, fine_tuned, source, target, seed, step, accuracy[, loss]

``condition`` is a name of the condition registry (:mod:`harness.conditions`): e.g. ``scratch``
(n_layers 0), ``selffer`` (BnB: source task == target task), ``transfer`` (AnB: source != target),
``random_frozen``, ``reinit_head``; ``accuracy`` is a fraction in [0, 1]
(NaN marks a missing evaluation); ``step`` is the training step or iteration. Extra columns are
kept. The optional columns ``model``, ``examples_per_class`` and ``config`` are *strata*: when they
take more than one value, every comparison is made within one stratum (a transfer run is only ever
compared with scratch runs of the same model, data size and training config; ``config`` names the
config fields in which a results directory's runs differ, see ``harness.results.config_labels``).

Replicate task pairs: ``pair`` names the task pair a run belongs to (e.g. split0..split3 of a
random-halves study) and ``pair_kind`` its kind, one of :data:`PAIR_KINDS`. ``pair`` is a stratum
(a run is scored against the scratch runs of its own pair and target); ``analyze`` and
``reproduce`` pool the pairs of one kind (see :mod:`analysis.pooling`). A table with ``pair``
must have ``pair_kind``, one kind per pair.
"""

from __future__ import annotations

import os
import pathlib

import numpy as np
import pandas as pd

from harness import conditions as conditions_lib
from harness.errors import UserError

REQUIRED = ('run_id', 'condition', 'n_layers', 'fine_tuned', 'source', 'target', 'seed', 'step',
            'accuracy')
CONDITIONS = conditions_lib.CONDITIONS
STRATA = ('model', 'examples_per_class', 'config', 'pair')
# random_halves: A/B class splits of one data set; dissimilar: e.g. natural vs man-made, or two
# data sets; none: a single task with its own base (Yosinski's random-frozen nets on all classes).
PAIR_KINDS = ('random_halves', 'dissimilar', 'none')
CELL = ('condition', 'fine_tuned', 'n_layers', 'source', 'target')
RUN_CONSTANT = ('condition', 'n_layers', 'fine_tuned', 'source', 'target', 'seed')

# Yosinski et al.'s names for (condition, fine_tuned), from the registry; a scratch network on
# task B is "baseB".
LABELS = conditions_lib.labels()
LABEL_ORDER = tuple(LABELS.values())

_BOOLS = {'true': True, 'false': False, '1': True, '0': False, '1.0': True, '0.0': False,
          'yes': True, 'no': False, 't': True, 'f': False}

READERS = {
    '.csv': pd.read_csv,
    '.csv.gz': pd.read_csv,
    '.tsv': lambda p: pd.read_csv(p, sep='\t'),
    '.parquet': pd.read_parquet,
    '.pq': pd.read_parquet,
}


def strata(df: pd.DataFrame) -> list[str]:
  """The stratum columns present in ``df`` that take more than one value.

  Args:
    df: curves or a table derived from them.

  Returns:
    The subset of :data:`STRATA` to prepend to every grouping key.
  """
  return [c for c in STRATA if c in df.columns and df[c].nunique(dropna=False) > 1]


def cell_keys(df: pd.DataFrame) -> list[str]:
  """Columns that define a cell: the runs that differ only by seed."""
  return strata(df) + list(CELL)


def target_keys(df: pd.DataFrame) -> list[str]:
  """Columns that define a comparison group: everything trained on one target (and stratum)."""
  return strata(df) + ['target']


def label(condition: str, fine_tuned: bool) -> str:
  """Yosinski's name (base, BnB, BnB+, AnB, AnB+, random) of a condition."""
  return LABELS[(condition, bool(fine_tuned))]


def _fail(message: str) -> None:
  raise UserError(message)


def _as_bool(values: pd.Series) -> pd.Series:
  """Parses booleans written as bool, 0/1 or true/false/yes/no (any case)."""
  parsed = values.map(lambda v: v if isinstance(v, (bool, np.bool_)) else
                      _BOOLS.get(str(v).strip().lower()))
  bad = values[parsed.isna()].unique()
  if len(bad):
    _fail(f'column fine_tuned has non-boolean values {list(bad)[:5]}: write True/False (or 1/0)')
  return parsed.astype(bool)


def _as_number(df: pd.DataFrame, column: str) -> pd.Series:
  """The column as float64, with an error naming non-numeric entries."""
  values = pd.to_numeric(df[column], errors='coerce')
  bad = df[column][values.isna() & df[column].notna()].unique()
  if len(bad):
    _fail(f'column {column} has non-numeric values {list(bad)[:5]}: write plain numbers')
  return values.astype(float)


def _as_integer(df: pd.DataFrame, column: str) -> pd.Series:
  """The column as int64; missing or fractional values are an error."""
  values = _as_number(df, column)
  if values.isna().any():
    _fail(f'column {column} has {int(values.isna().sum())} missing values: give every row an '
          f'integer {column} (for a single seed per run, write 0)')
  if (values != np.round(values)).any() or (values < 0).any():
    _fail(f'column {column} must hold non-negative integers: found {sorted(values.unique())[:5]}')
  return values.astype(np.int64)


def _check_accuracy(accuracy: pd.Series) -> None:
  """Accuracy must be a fraction; values up to 100 are probably percentages."""
  finite = accuracy[np.isfinite(accuracy)]
  if (accuracy.abs() == np.inf).any():
    _fail('column accuracy holds infinite values: write NaN for a missing evaluation')
  if len(finite) and (finite.min() < 0 or finite.max() > 1):
    hint = ('it looks like percentages: divide by 100' if finite.min() >= 0 and finite.max() <= 100
            else 'write the fraction of correct predictions')
    _fail(f'column accuracy must be in [0, 1] but ranges over '
          f'[{finite.min():g}, {finite.max():g}]: {hint}')


def _check_run_constants(df: pd.DataFrame) -> None:
  """Every run has one condition, n, source, target, seed (and stratum)."""
  columns = list(RUN_CONSTANT) + [c for c in STRATA if c in df.columns]
  counts = df.groupby('run_id', sort=True)[columns].nunique(dropna=False)
  for column in columns:
    bad = counts.index[counts[column] > 1]
    if len(bad):
      _fail(f'run {bad[0]!r} has several values of {column}: give each run (run_id) a single '
            f'{column}, or distinct run_ids')


def _check_conditions(df: pd.DataFrame) -> None:
  """Condition values are known, and consistent with n_layers, source and target."""
  bad = sorted(set(df['condition']) - set(CONDITIONS))
  if bad:
    _fail(f'unknown condition(s) {bad}: condition must be one of {", ".join(CONDITIONS)}')
  rules = (
      ((df['condition'] == conditions_lib.BASE) & (df['n_layers'] != 0),
       'is scratch with n_layers != 0: scratch runs copy no layers, write n_layers 0'),
      ((df['condition'] == conditions_lib.SELFFER) & (df['source'] != df['target']),
       'is selffer with source != target: a selffer (BnB) copies from its own task; '
       'label it transfer or fix source'),
      ((df['condition'] == conditions_lib.TRANSFER) & (df['source'] == df['target']),
       'is transfer with source == target: that is a selffer (BnB); label it selffer'),
  )
  for mask, message in rules:
    if mask.any():
      _fail(f'run {df.loc[mask, "run_id"].iloc[0]!r} {message}')


def _check_pairs(df: pd.DataFrame) -> None:
  """``pair`` and ``pair_kind`` come together, without gaps, with one known kind per pair."""
  has_pair, has_kind = 'pair' in df.columns, 'pair_kind' in df.columns
  if has_pair != has_kind:
    _fail('the curves have a pair column but no pair_kind: add pair_kind (one of '
          f'{", ".join(PAIR_KINDS)}) to every row' if has_pair else
          'the curves have pair_kind but no pair column: add pair, naming the replicate task pair '
          'of every run (e.g. split0)')
  if not has_pair:
    return
  for column in ('pair', 'pair_kind'):
    if df[column].isna().any():
      _fail(f'column {column} has missing values: give every row a {column}')
    df[column] = df[column].astype(str).str.strip()
  bad = sorted(set(df['pair_kind']) - set(PAIR_KINDS))
  if bad:
    _fail(f'unknown pair_kind(s) {bad}: pair_kind must be one of {", ".join(PAIR_KINDS)}')
  kinds = df.groupby('pair')['pair_kind'].unique()
  mixed = kinds[kinds.map(len) > 1]
  if len(mixed):
    _fail(f'pair {mixed.index[0]!r} has several pair kinds {sorted(mixed.iloc[0])}: give each '
          'pair one pair_kind, or split it into pairs with distinct names')


def validate_curves(curves: pd.DataFrame) -> pd.DataFrame:
  """Checks and normalises a long-format curves table.

  Scratch runs get ``fine_tuned = False`` and ``source = 'none'`` (a network trained from scratch
  has nothing copied to fine-tune); a missing ``loss`` column is filled with NaN. Rows are sorted
  by run and step.

  Args:
    curves: one row per evaluation, with at least the columns of :data:`REQUIRED`.

  Returns:
    A validated copy with dtypes: run_id/condition/source/target str, n_layers/seed int64,
    fine_tuned bool, step/accuracy/loss float64.

  Raises:
    UserError: a missing column, a bad dtype or value, an accuracy outside [0, 1], an unknown
      condition, a run with inconsistent metadata, ``pair`` without ``pair_kind`` (or the
      reverse), an unknown or mixed pair kind, or a duplicated (run_id, step).
  """
  missing = [c for c in REQUIRED if c not in curves.columns]
  if missing:
    _fail(f'curves lack column(s) {", ".join(missing)}: the long format needs '
          f'{", ".join(REQUIRED)} (loss optional)')
  if curves.empty:
    _fail('the curves table has no rows: give at least one evaluation per run')
  df = curves.copy()
  if 'loss' not in df.columns:
    df['loss'] = np.nan
  for column in ('run_id', 'condition', 'source', 'target'):
    df[column] = df[column].astype(object).where(df[column].notna(), None)
  df['condition'] = df['condition'].map(lambda v: None if v is None else str(v).strip())
  for column in ('run_id', 'target'):
    if df[column].isna().any():
      _fail(f'column {column} has missing values: give every row a {column}')
  is_scratch = df['condition'] == conditions_lib.BASE
  df.loc[is_scratch, 'source'] = 'none'
  if df['source'].isna().any():
    _fail('column source has missing values for non-scratch runs: name the source task '
          "(or 'random' for random_frozen)")
  for column in ('run_id', 'condition', 'source', 'target'):
    df[column] = df[column].astype(str)
  df['fine_tuned'] = _as_bool(df['fine_tuned'])
  df.loc[is_scratch, 'fine_tuned'] = False
  df['n_layers'] = _as_integer(df, 'n_layers')
  df['seed'] = _as_integer(df, 'seed')
  df['step'] = _as_number(df, 'step')
  if not np.isfinite(df['step']).all() or (df['step'] < 0).any():
    _fail('column step must hold finite, non-negative numbers for every row')
  df['accuracy'] = _as_number(df, 'accuracy')
  df['loss'] = _as_number(df, 'loss')
  _check_accuracy(df['accuracy'])
  _check_pairs(df)
  _check_conditions(df)
  _check_run_constants(df)
  dup = df.duplicated(['run_id', 'step'])
  if dup.any():
    row = df[dup].iloc[0]
    _fail(f'run {row.run_id!r} has several rows at step {row.step:g}: keep one evaluation per '
          '(run_id, step), e.g. the latest of restarted logs')
  return df.sort_values(['run_id', 'step'], kind='stable').reset_index(drop=True)


def keep_complete(curves: pd.DataFrame) -> tuple[pd.DataFrame, dict[str, int]]:
  """Keeps the runs whose status is ``complete`` when a ``status`` column exists.

  A run's status is its last non-missing ``status`` value by step.

  Args:
    curves: validated curves.

  Returns:
    The curves of complete runs, and the number of excluded runs per status.

  Raises:
    UserError: no run is complete.
  """
  if 'status' not in curves.columns:
    return curves, {}
  status = curves.dropna(subset=['status']).groupby('run_id')['status'].last()
  status = status.reindex(curves['run_id'].unique()).fillna('unknown').astype(str)
  excluded = status[status != 'complete'].value_counts().sort_index().to_dict()
  kept = curves[curves['run_id'].isin(status.index[status == 'complete'])]
  if kept.empty:
    _fail(f'no complete runs among {len(status)} (statuses: {excluded}): finish or re-run the '
          'sweep, or drop the status column to analyse partial curves')
  return kept.reset_index(drop=True), {str(k): int(v) for k, v in excluded.items()}


def _suffix(path: pathlib.Path) -> str:
  return ''.join(path.suffixes[-2:]).lower() if path.name.lower().endswith('.csv.gz') \
      else path.suffix.lower()


def read_curves(path: str | os.PathLike) -> pd.DataFrame:
  """Reads curves from a CSV/Parquet file or a results directory written by the harness.

  Args:
    path: ``*.csv``, ``*.csv.gz``, ``*.tsv``, ``*.parquet``/``*.pq``, or a results directory
      (read with ``harness.load_curves``, failed runs included so that they can be counted).

  Returns:
    The validated curves (see :func:`validate_curves`); the ``status`` column is kept.

  Raises:
    UserError: the path does not exist, has an unknown suffix, or holds an invalid table.
  """
  path = pathlib.Path(path)
  if path.is_dir():
    from harness import load_curves  # Lazy: only results directories need the harness.
    return validate_curves(load_curves(path, include_failed=True))
  if not path.exists():
    _fail(f'no such file or directory {path}: give a curves CSV/Parquet file or a results '
          'directory')
  reader = READERS.get(_suffix(path))
  if reader is None:
    _fail(f'cannot read {path.name}: curves must be {", ".join(READERS)} or a results directory')
  try:
    df = reader(path)
  except (ValueError, OSError, pd.errors.ParserError) as e:
    _fail(f'cannot parse {path} ({type(e).__name__}: {str(e).splitlines()[0] if str(e) else ""}): '
          'check that it is a valid table')
  return validate_curves(df)
