"""CIs, tests and verdicts: negative only when the seeds support it."""

import numpy as np
import pytest
from scipy import stats as sps

import analysis
from analysis import stats
from tests.analysis.builders import final_values_study

SCRATCH = [0.90, 0.91, 0.89, 0.905, 0.895, 0.90, 0.912, 0.888]


def _cell(result, measure='final_last', label='AnB'):
  s = result.summary
  return s[(s['label'] == label) & (s['measure'] == measure)].iloc[0]


def test_t_halfwidth_by_hand():
  assert stats.t_halfwidth([1.0, 2.0, 3.0]) == pytest.approx(4.302653 / np.sqrt(3), rel=1e-6)
  assert np.isnan(stats.t_halfwidth([0.5]))


def test_significantly_worse_transfer_is_negative():
  transfer = [0.80, 0.815, 0.79, 0.80, 0.795, 0.805, 0.81, 0.785]
  row = _cell(analysis.analyze(final_values_study(SCRATCH, transfer), n_boot=1000))
  assert row['verdict'] == 'negative'
  assert row['gap'] == pytest.approx(np.mean(SCRATCH) - np.mean(transfer))
  assert 0 < row['gap_ci_low'] <= row['gap'] <= row['gap_ci_high']
  assert row['p_value'] < 1e-6 and row['pairing'] == 'seed' and row['test'] == 'paired t'


def test_significantly_better_transfer_is_positive():
  transfer = [v + 0.03 + 0.002 * (i % 3) for i, v in enumerate(SCRATCH)]
  row = _cell(analysis.analyze(final_values_study(SCRATCH, transfer), n_boot=1000))
  assert row['verdict'] == 'positive' and row['gap_ci_high'] < 0


def test_overlapping_seeds_are_inconclusive():
  scratch = [0.80, 0.85, 0.90, 0.82, 0.88]
  transfer = [0.83, 0.86, 0.81, 0.89, 0.84]
  row = _cell(analysis.analyze(final_values_study(scratch, transfer), n_boot=1000))
  assert row['verdict'] == 'inconclusive'
  assert row['gap_ci_low'] < 0 < row['gap_ci_high']


def test_one_run_per_cell_says_single_run():
  result = analysis.analyze(final_values_study([0.9], [0.5]), n_boot=1000)
  row = _cell(result)
  assert row['verdict'] == 'single run'
  assert row['gap'] == pytest.approx(0.4)
  assert np.isnan(row['gap_ci_low']) and np.isnan(row['gap_ci_high']) and np.isnan(row['p_value'])


def test_pooled_reference_with_one_scratch_run_is_single_run():
  # Cell seeds {5, 6, 7} are not among the scratch seeds: pooled, and one scratch run.
  result = analysis.analyze(final_values_study([0.9], [0.5, 0.52, 0.51], transfer_seeds=[5, 6, 7]),
                            n_boot=1000)
  row = _cell(result)
  assert row['pairing'] == 'pooled' and row['verdict'] == 'single run'


def test_unmatched_seeds_use_the_pooled_scratch_and_welch():
  transfer = [0.80, 0.81, 0.79, 0.805]
  result = analysis.analyze(final_values_study(SCRATCH, transfer, transfer_seeds=[10, 11, 12, 13]),
                            n_boot=1000)
  row = _cell(result)
  assert row['pairing'] == 'pooled' and row['test'] == 'Welch t'
  assert row['gap'] == pytest.approx(np.mean(SCRATCH) - np.mean(transfer))
  assert row['p_value'] == pytest.approx(sps.ttest_ind(SCRATCH, transfer, equal_var=False).pvalue)
  assert row['verdict'] == 'negative'
  runs = result.runs[result.runs['condition'] == 'transfer']
  assert runs['gap_final_last'].to_numpy() == pytest.approx(np.mean(SCRATCH) - np.array(transfer))


def test_paired_p_value_equals_paired_t_test():
  transfer = [0.88, 0.90, 0.87, 0.90, 0.89, 0.905, 0.90, 0.88]
  row = _cell(analysis.analyze(final_values_study(SCRATCH, transfer), n_boot=1000))
  assert row['p_value'] == pytest.approx(sps.ttest_rel(SCRATCH, transfer).pvalue)


def test_permutation_test_is_exact_and_conservative_with_few_seeds():
  # 3 pairs, all gaps positive: the exact two-sided sign-flip p is 2/8.
  result = analysis.analyze(final_values_study([0.9, 0.91, 0.92], [0.5, 0.52, 0.49]),
                            n_boot=1000, test='permutation')
  row = _cell(result)
  assert row['test'] == 'sign-flip permutation'
  assert row['p_value'] == pytest.approx(0.25)
  assert row['verdict'] == 'inconclusive'


def test_two_sample_permutation_p_by_enumeration():
  x, ref = np.array([0.5, 0.6]), np.array([0.9, 0.95, 0.92])
  # Of the C(5, 3) = 10 ways to pick the 'reference' group, only the observed one has a mean
  # difference as large as observed (0.923 - 0.55): p = 1/10.
  p = stats.p_two_sample_permutation(x, ref, np.random.default_rng(0))
  assert p == pytest.approx(1 / 10)


def test_bootstrap_is_seeded_and_order_independent():
  a = analysis.analyze(final_values_study(SCRATCH, [0.85] * 8), n_boot=500, seed=3).summary
  b = analysis.analyze(final_values_study(SCRATCH, [0.85] * 8), n_boot=500, seed=3).summary
  assert a['gap_ci_low'].equals(b['gap_ci_low'])
  rng1, rng2 = stats.rng_for(0, ('x',), 'm'), stats.rng_for(0, ('x',), 'm')
  assert rng1.random() == rng2.random()


def test_bootstrap_ci_matches_a_plain_loop():
  d = np.array([0.1, 0.3, 0.2, 0.5, 0.05])
  low, high = stats.bootstrap_ci(d, np.zeros(5), True, 'mean', -1, 2000,
                                 np.random.default_rng(7))
  rng = np.random.default_rng(7)
  idx = rng.integers(0, 5, (2000, 5))
  means = np.array([d[i].mean() for i in idx])  # better=-1: gap = x - ref = d
  assert (low, high) == pytest.approx(tuple(np.percentile(means, [2.5, 97.5])))


def test_lower_median_and_infinite_differences():
  assert stats.lower_median(np.array([3.0, 1.0, np.inf, 2.0])) == 2.0
  assert stats.lower_median(np.array([np.inf, 5.0])) == 5.0
  d = stats.differences(np.array([np.inf, 10.0, np.inf]), np.array([np.inf, np.inf, 5.0]), -1)
  np.testing.assert_array_equal(d, [0.0, np.inf, -np.inf])


def test_sign_and_rank_tests():
  assert stats.p_sign_test(np.array([1.0, 2.0, np.inf, 0.0])) == pytest.approx(0.25)
  assert stats.p_sign_test(np.zeros(3)) == 1.0
  assert stats.p_mann_whitney(np.array([np.inf] * 4), np.array([1.0, 2.0, 3.0, 4.0])) < 0.05


def test_constant_shift_up_to_rounding_is_not_noise():
  # Gaps all 0.1 up to float rounding: the t statistic must not be computed on rounding noise.
  transfer = [v - 0.1 for v in SCRATCH]
  row = _cell(analysis.analyze(final_values_study(SCRATCH, transfer), n_boot=500))
  assert row['p_value'] == 0.0 and row['verdict'] == 'negative'


def test_degenerate_identical_values():
  # Every run stuck at chance, scratch too: no evidence of anything.
  row = _cell(analysis.analyze(final_values_study([0.1, 0.1, 0.1], [0.1, 0.1, 0.1]), n_boot=500))
  assert row['gap'] == 0 and row['p_value'] == 1.0 and row['verdict'] == 'inconclusive'


def test_no_scratch_on_target():
  curves = final_values_study([0.9, 0.9], [0.8, 0.8])
  curves = curves[curves['condition'] != 'scratch']
  row = _cell(analysis.analyze(curves, n_boot=500))
  assert row['verdict'] == 'no scratch' and np.isnan(row['gap'])
  assert any('No scratch' in n for n in analysis.analyze(curves, n_boot=500).notes)


def test_holm():
  np.testing.assert_allclose(stats.holm(np.array([0.01, 0.04, np.nan, 0.03])),
                             [0.03, 0.06, np.nan, 0.06])


def test_match_seeds():
  np.testing.assert_array_equal(stats.match_seeds([2, 0], [0, 1, 2]), [2, 0])
  assert stats.match_seeds([0, 3], [0, 1, 2]) is None
  assert stats.match_seeds([0, 0], [0, 1]) is None
  assert stats.match_seeds([0], [0, 0]) is None


def test_settings_are_validated():
  from harness.errors import UserError
  curves = final_values_study([0.9], [0.8])
  for bad in ({'threshold': 0}, {'k': 0}, {'rule': 'median'}, {'n_boot': 5}, {'alpha': 1.5},
              {'test': 'z'}):
    with pytest.raises(UserError):
      analysis.analyze(curves, **bad)
