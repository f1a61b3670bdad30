"""Reading and validating curves from anywhere; status filtering; strata."""

import sys
import types

import numpy as np
import pandas as pd
import pytest

import analysis
from analysis import curves as curves_lib
from harness.errors import UserError
from tests.analysis.builders import HAND, final_values_study, yosinski_like


def test_csv_without_loss_is_read_and_typed():
  df = analysis.read_curves(HAND)
  assert df['loss'].isna().all()
  assert df['fine_tuned'].dtype == bool and df['seed'].dtype == np.int64
  assert df['accuracy'].isna().sum() == 1


def test_parquet_and_gzip_round_trip(tmp_path):
  df = pd.read_csv(HAND)
  df.to_parquet(tmp_path / 'c.parquet')
  df.to_csv(tmp_path / 'c.csv.gz', index=False)
  a = analysis.read_curves(tmp_path / 'c.parquet')
  b = analysis.read_curves(tmp_path / 'c.csv.gz')
  pd.testing.assert_frame_equal(a, b)


@pytest.mark.parametrize('mutate, message', [
    (lambda d: d.drop(columns='seed'), 'lack column(s) seed'),
    (lambda d: d.assign(accuracy=d['accuracy'] * 100), 'divide by 100'),
    (lambda d: d.assign(accuracy=d['accuracy'] - 2), 'must be in [0, 1]'),
    (lambda d: d.assign(condition='finetune'), 'unknown condition'),
    (lambda d: d.assign(fine_tuned='maybe'), 'fine_tuned has non-boolean'),
    (lambda d: d.assign(seed=np.where(d.index == 0, np.nan, d['seed'])), 'seed has 1 missing'),
    (lambda d: d.assign(step='x'), 'step has non-numeric'),
    (lambda d: d.assign(n_layers=1.5), 'non-negative integers'),
    (lambda d: pd.concat([d, d.iloc[:1]]), 'several rows at step'),
    (lambda d: d.assign(seed=np.arange(len(d))), 'several values of seed'),
    (lambda d: d.assign(source=np.where(d['condition'] == 'selffer', 'A', d['source'])),
     'selffer with source != target'),
    (lambda d: d.assign(source=np.where(d['condition'] == 'transfer', 'B', d['source'])),
     'transfer with source == target'),
    (lambda d: d.assign(n_layers=np.where(d['condition'] == 'scratch', 2, d['n_layers'])),
     'scratch with n_layers != 0'),
    (lambda d: d.iloc[:0], 'no rows'),
])
def test_invalid_tables_give_one_line_errors(mutate, message):
  with pytest.raises(UserError) as error:
    curves_lib.validate_curves(mutate(pd.read_csv(HAND)))
  assert message in str(error.value)
  assert '\n' not in str(error.value)


def test_booleans_in_many_spellings():
  df = pd.read_csv(HAND)
  df['fine_tuned'] = np.where(df.index % 2, 'FALSE', '0')
  assert not curves_lib.validate_curves(df)['fine_tuned'].any()


def test_missing_file_and_unknown_suffix(tmp_path):
  with pytest.raises(UserError, match='no such file'):
    analysis.read_curves(tmp_path / 'none.csv')
  (tmp_path / 'c.xlsx').write_text('x')
  with pytest.raises(UserError, match='cannot read c.xlsx'):
    analysis.read_curves(tmp_path / 'c.xlsx')


def test_status_keeps_complete_runs_and_counts_the_rest():
  df = pd.read_csv(HAND)
  df['status'] = np.where(df['run_id'] == 'anb_s1', 'failed', 'complete')
  df.loc[df['run_id'] == 'bnb_s0', 'status'] = 'diverged'
  result = analysis.analyze(df, k=2, n_boot=200)
  assert set(result.runs['run_id']) == {'base_s0', 'base_s1', 'anb_s0'}
  assert result.excluded == {'diverged': 1, 'failed': 1}
  assert result.notes[0] == '2 run(s) excluded by status: 1 diverged, 1 failed.'
  with pytest.raises(UserError, match='no complete runs'):
    analysis.analyze(df.assign(status='failed'))


def test_results_directory_uses_harness_load_curves(tmp_path, monkeypatch):
  calls = []

  def load_curves(path, include_failed=False):
    calls.append((path, include_failed))
    return pd.read_csv(HAND)

  fake = types.ModuleType('harness')
  fake.load_curves = load_curves
  monkeypatch.setitem(sys.modules, 'harness', fake)
  df = analysis.read_curves(tmp_path)
  assert calls == [(tmp_path, True)] and len(df) == len(pd.read_csv(HAND))


def test_scratch_is_canonicalised():
  df = pd.read_csv(HAND)
  df.loc[df['condition'] == 'scratch', ['source', 'fine_tuned']] = [np.nan, True]
  out = curves_lib.validate_curves(df)
  scratch = out[out['condition'] == 'scratch']
  assert (scratch['source'] == 'none').all() and not scratch['fine_tuned'].any()


def test_strata_keep_models_apart():
  a = final_values_study([0.9, 0.91], [0.5, 0.52]).assign(model='mlp')
  b = final_values_study([0.6, 0.61], [0.6, 0.61]).assign(model='cnn')
  b['run_id'] = 'cnn_' + b['run_id']
  result = analysis.analyze(pd.concat([a, b]), n_boot=500)
  s = result.summary[(result.summary['measure'] == 'final_last')
                     & (result.summary['label'] == 'AnB')].set_index('model')
  assert s.loc['mlp', 'gap'] == pytest.approx(0.395)
  assert s.loc['cnn', 'gap'] == pytest.approx(0.0)
  assert 'model' in result.runs.columns and 'model' in result.decomposition.columns


def test_yosinski_like_study_runs_end_to_end():
  result = analysis.analyze(yosinski_like(pairs=(('A', 'B'), ('B', 'A'))), n_boot=200)
  assert set(result.runs['label']) == {'base', 'BnB', 'BnB+', 'AnB', 'AnB+', 'random'}
  assert set(result.decomposition['effect']) == {'fragile_coadaptation', 'specificity',
                                                 'fine_tuning_boost'}
  assert len(result.runs) == 2 * 3 + 2 * 2 * 3 * 5
