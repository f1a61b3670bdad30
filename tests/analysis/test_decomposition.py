"""Yosinski's decomposition: base - BnB, BnB - AnB, AnB+ - base, with CIs."""

import pandas as pd
import pytest

import analysis
from analysis import measures
from tests.analysis.builders import yosinski_like


@pytest.fixture(scope='module')
def result():
  return analysis.analyze(yosinski_like(), n_boot=500)


def _mean(runs, label, n=None):
  rows = runs[(runs['label'] == label) & (runs['target'] == 'B')]
  rows = rows if n is None else rows[rows['n_layers'] == n]
  return rows[f'final_{measures.DEFAULT_RULE}'].mean()  # the analysis' default final score


@pytest.mark.parametrize('effect, minuend, subtrahend', [
    ('fragile_coadaptation', 'base', 'BnB'), ('specificity', 'BnB', 'AnB'),
    ('fine_tuning_boost', 'AnB+', 'base')])
def test_effects_are_differences_of_cell_means(result, effect, minuend, subtrahend):
  for n in (1, 2):
    row = result.decomposition[(result.decomposition['effect'] == effect)
                               & (result.decomposition['n_layers'] == n)].iloc[0]
    expected = (_mean(result.runs, minuend, None if minuend == 'base' else n)
                - _mean(result.runs, subtrahend, None if subtrahend == 'base' else n))
    assert row['estimate'] == pytest.approx(expected)  # same seeds: paired mean = mean difference
    assert row['pairing'] == 'seed' and row['n_minuend'] == row['n_subtrahend'] == 3
    assert row['ci_low'] <= row['estimate'] <= row['ci_high']


def test_clear_specificity_is_supported(result):
  row = result.decomposition[(result.decomposition['effect'] == 'specificity')
                             & (result.decomposition['n_layers'] == 2)].iloc[0]
  assert row['evidence'] == '> 0' and row['ci_low'] > 0


def test_unshared_seeds_are_compared_unpaired():
  curves = yosinski_like(seeds=(0, 1, 2))
  transfer = curves['condition'] == 'transfer'
  curves.loc[transfer, 'seed'] += 10
  d = analysis.analyze(curves, n_boot=500).decomposition
  row = d[(d['effect'] == 'specificity') & (d['n_layers'] == 1)].iloc[0]
  assert row['pairing'] == 'pooled' and row['test'] == 'Welch t'


def test_no_transfer_gives_coadaptation_only():
  curves = yosinski_like()
  curves = curves[curves['condition'].isin(['scratch', 'selffer'])]
  d = analysis.analyze(curves, n_boot=500).decomposition
  assert set(d['effect']) == {'fragile_coadaptation'}
  assert isinstance(d, pd.DataFrame) and (d['source'] == d['target']).all()
