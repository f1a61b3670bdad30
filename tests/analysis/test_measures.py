"""Every measure on hand-computed tables (see fixtures/README.md for hand_curves.csv)."""

import numpy as np
import pandas as pd
import pytest
from scipy import stats as sps

import analysis
from analysis import measures
from tests.analysis.builders import HAND


@pytest.fixture(scope='module')
def hand():
  return analysis.analyze(analysis.read_curves(HAND), k=2, threshold=0.9, rule='best_k',
                          n_boot=200, seed=0)


def _run(result, run_id):
  return result.runs.set_index('run_id').loc[run_id]


def _summary(result, label, measure):
  s = result.summary
  return s[(s['label'] == label) & (s['measure'] == measure)].iloc[0]


# ------------------------------------------------------------------- per-curve functions

def test_evaluations_drop_nan_and_sort():
  steps, acc = measures.evaluations([20, 0, 5], [0.7, 0.3, np.nan])
  np.testing.assert_array_equal(steps, [0, 20])
  np.testing.assert_array_equal(acc, [0.3, 0.7])


def test_start_is_first_non_missing_evaluation():
  steps, acc = measures.evaluations([0, 10, 20], [np.nan, 0.4, 0.6])
  assert measures.start(steps, acc) == (10.0, 0.4)
  assert all(np.isnan(measures.start(np.array([]), np.array([]))))


def test_final_rules_by_hand():
  acc = np.array([0.1, 0.6, 0.4, 0.8, 0.7])
  assert measures.final_accuracy(acc, 'last') == 0.7
  assert measures.final_accuracy(acc, 'best') == 0.8
  assert measures.final_accuracy(acc, 'best_k', k=2) == pytest.approx(0.75)  # 0.8, 0.7
  assert measures.final_accuracy(acc, 'last_k', k=3) == pytest.approx((0.4 + 0.8 + 0.7) / 3)


def test_k_rules_need_k_evaluations():
  acc = np.array([0.1, 0.6, 0.4])
  assert np.isnan(measures.final_accuracy(acc, 'best_k', k=10))
  assert np.isnan(measures.final_accuracy(acc, 'last_k', k=4))
  assert np.isnan(measures.final_accuracy(np.array([]), 'last'))


def test_auc_uneven_steps_with_interpolated_end_points():
  steps, acc = np.array([0., 20., 40.]), np.array([0.3, 0.7, 0.8])
  # [0, 30]: (0.3+0.7)/2*20 + (0.7+0.75)/2*10 = 17.25, / 30; 0.75 interpolated at step 30.
  assert measures.normalised_auc(steps, acc, 0, 30) == pytest.approx(17.25 / 30)
  # [10, 40]: start interpolated to 0.5: (0.5+0.7)/2*10 + (0.7+0.8)/2*20 = 21, / 30.
  assert measures.normalised_auc(steps, acc, 10, 40) == pytest.approx(21 / 30)


def test_auc_outside_range_or_empty_range_is_nan():
  steps, acc = np.array([0., 20.]), np.array([0.3, 0.7])
  assert np.isnan(measures.normalised_auc(steps, acc, 0, 30))
  assert np.isnan(measures.normalised_auc(steps, acc, 10, 10))


def test_auc_range_starts_with_the_schedule():
  # A run missing its early evaluations (first step 5) does not cut the range of the others.
  curves = [(np.array([0., 40.]), None), (np.array([5., 30.]), None), (np.array([]), None)]
  assert measures.auc_range(curves) == (0.0, 30.0)


def test_accuracy_at_is_exact_or_missing():
  steps, acc = np.array([0., 16., 32.]), np.array([0.1, 0.5, 0.7])
  assert measures.accuracy_at(steps, acc, 16) == 0.5
  assert np.isnan(measures.accuracy_at(steps, acc, 20))


def test_early_step_is_the_first_scheduled_step_after_the_fraction():
  # The harness's schedule for 600 steps, every 50: 5% of 600 = 30 -> step 32.
  schedule = np.array([0., 1, 2, 4, 8, 16, 32, 50, 100, 150, 200, 250, 300, 350, 400, 450, 500,
                       550, 600])
  curves = [(schedule, None)] * 3 + [(np.delete(schedule, 6), None)]  # one run lacks step 32
  assert measures.early_step(curves, 0.05) == 32
  assert measures.early_step(curves, 0.2) == 150
  # A step only one run of four evaluates is not a scheduled step.
  odd = [(schedule, None)] * 3 + [(np.sort(np.r_[schedule, 31.0]), None)]
  assert measures.early_step(odd, 0.05) == 32


def test_default_rule_and_caption():
  assert (measures.DEFAULT_RULE, measures.DEFAULT_K) == ('last_k', 3)
  assert measures.rule_name(measures.DEFAULT_RULE, measures.DEFAULT_K) == \
      'mean of the last 3 evaluations'
  assert measures.default_k('best_k') == 10 and measures.default_k('last_k') == 3


def test_time_to_threshold_and_never():
  steps, acc = np.array([0., 15., 30.]), np.array([0.2, 0.4, 0.5])
  assert measures.time_to_threshold(steps, acc, 0.4) == 15.0
  assert measures.time_to_threshold(steps, acc, 0.9) == np.inf
  assert np.isnan(measures.time_to_threshold(steps, acc, np.nan))


# -------------------------------------------------------------- hand-computed fixture

def test_hand_start_and_asymptotes(hand):
  anb0, anb1 = _run(hand, 'anb_s0'), _run(hand, 'anb_s1')
  assert (anb0['start'], anb0['start_step']) == (0.3, 0.0)
  assert anb0['n_evals'] == 3  # the NaN evaluation at step 5 is dropped
  assert anb0[['final_last', 'final_best', 'final_best_k', 'final_last_k']].tolist() == \
      pytest.approx([0.8, 0.8, 0.75, 0.75])
  assert anb1[['final_last', 'final_best', 'final_best_k', 'final_last_k']].tolist() == \
      pytest.approx([0.5, 0.5, 0.45, 0.45])


def test_hand_auc_over_the_comparison_range(hand):
  # The transfer cell and scratch share [0, 30] (anb_s1 stops at 30).
  assert _run(hand, 'anb_s0')['auc'] == pytest.approx(17.25 / 30)
  assert _run(hand, 'anb_s1')['auc'] == pytest.approx(11.25 / 30)
  assert (_run(hand, 'anb_s0')['auc_step_lo'], _run(hand, 'anb_s0')['auc_step_hi']) == (0, 30)
  # Scratch on [0, 30]: 17.75/30 and 19/30; gaps matched by seed.
  assert _run(hand, 'anb_s0')['gap_auc'] == pytest.approx(17.75 / 30 - 17.25 / 30)
  assert _run(hand, 'anb_s1')['gap_auc'] == pytest.approx(19 / 30 - 11.25 / 30)
  assert _run(hand, 'anb_s1')['transfer_ratio'] == pytest.approx((11.25 - 19) / 19)
  # Scratch rows: their own common range [0, 40].
  assert _run(hand, 'base_s0')['auc'] == pytest.approx(26.5 / 40)


def test_hand_time_to_threshold(hand):
  # Level = 0.9 x mean scratch best-2 = 0.9 x (0.85 + 0.9) / 2.
  assert _run(hand, 'anb_s0')['threshold_level'] == pytest.approx(0.7875)
  assert _run(hand, 'base_s0')['time_to_threshold'] == 20
  assert _run(hand, 'anb_s0')['time_to_threshold'] == 40
  assert _run(hand, 'anb_s1')['time_to_threshold'] == np.inf
  assert not _run(hand, 'anb_s1')['reached']
  assert _run(hand, 'anb_s1')['gap_time_to_threshold'] == np.inf
  assert _run(hand, 'anb_s0')['gap_time_to_threshold'] == 20


def test_hand_gaps_matched_by_seed(hand):
  anb1 = _run(hand, 'anb_s1')
  assert anb1['pairing'] == 'seed'
  assert anb1['gap_start'] == pytest.approx(0.1 - 0.2)
  assert anb1['gap_final_last'] == pytest.approx(1.0 - 0.5)
  assert anb1['gap_final_best_k'] == pytest.approx(0.9 - 0.45)
  row = _summary(hand, 'AnB', 'final_best_k')
  assert row['gap'] == pytest.approx(((0.85 - 0.75) + (0.9 - 0.45)) / 2)
  assert row['value'] == pytest.approx(0.6)
  assert row['value_ci95'] == pytest.approx(12.7062047 * np.std([0.75, 0.45], ddof=1) / np.sqrt(2))


def test_hand_median_time_to_threshold_handles_never(hand):
  row = _summary(hand, 'AnB', 'time_to_threshold')
  assert row['stat'] == 'median'
  assert row['gap'] == 20  # lower median of {20, inf}
  assert row['gap_ci_high'] == np.inf
  # Log-rank, anb_s1 censored at its last step 30. At step 20: 4 at risk (2 AnB), 2 base events:
  # E = 1, V = 2 (1/2)(1/2)(2/3) = 1/3; at step 40 only anb_s0 is at risk: E = 1, V = 0.
  # O - E = 1 - 2 = -1, chi2 = 1 / (1/3) = 3.
  assert row['test'] == 'log-rank'
  assert row['p_value'] == pytest.approx(sps.chi2.sf(3.0, 1))


def test_hand_single_run_cell_has_no_interval(hand):
  row = _summary(hand, 'BnB', 'final_best_k')
  assert row['verdict'] == 'single run'
  assert row['gap'] == pytest.approx(0.85 - 0.775)
  assert np.isnan(row['gap_ci_low']) and np.isnan(row['p_value']) and np.isnan(row['value_ci95'])


def test_hand_notes_warn_about_few_seeds(hand):
  assert any('fewer than 5 seeds' in note for note in hand.notes)
  assert any('single run' in note for note in hand.notes)


def test_hand_decomposition(hand):
  d = hand.decomposition.set_index('effect')
  assert d.loc['fragile_coadaptation', 'estimate'] == pytest.approx(0.85 - 0.775)
  assert d.loc['specificity', 'estimate'] == pytest.approx(0.775 - 0.75)
  assert d.loc['specificity', 'pairing'] == 'seed'
  assert (d['evidence'] == 'single run').all()


def test_every_run_has_every_measure_column(hand):
  for column in ['start', 'auc', 'transfer_ratio', 'time_to_threshold', 'final_last',
                 'final_best', 'final_best_k', 'final_last_k', 'gap_start', 'gap_auc',
                 'gap_time_to_threshold', 'gap_final_last', 'gap_final_best',
                 'gap_final_best_k', 'gap_final_last_k']:
    assert column in hand.runs.columns


def test_run_without_evaluations_is_reported():
  curves = pd.read_csv(HAND)
  curves.loc[curves['run_id'] == 'anb_s1', 'accuracy'] = np.nan
  result = analysis.analyze(curves, k=2, n_boot=200)
  assert _run(result, 'anb_s1')['n_evals'] == 0
  assert np.isnan(_run(result, 'anb_s1')['final_last'])
  assert any('no non-missing evaluation' in n for n in result.notes)


def test_runs_with_fewer_than_k_evaluations_are_noted():
  result = analysis.analyze(pd.read_csv(HAND), k=10, n_boot=200)
  assert result.runs['final_best_k'].isna().all()
  assert any('fewer than k=10' in n for n in result.notes)


def test_final_accuracy_table_by_hand():
  table = analysis.final_accuracy_table(pd.read_csv(HAND), rule='last')
  anb = table[table['condition'] == 'transfer'].iloc[0]
  assert anb['mean'] == pytest.approx(0.65)
  assert anb['ci'] == pytest.approx(12.7062047 * np.std([0.8, 0.5], ddof=1) / np.sqrt(2))
  assert anb['count'] == 2
  bnb = table[table['condition'] == 'selffer'].iloc[0]
  assert bnb['count'] == 1 and np.isnan(bnb['ci'])
  assert list(table.columns) == ['condition', 'fine_tuned', 'n_layers', 'source', 'target',
                                 'mean', 'ci', 'count']
