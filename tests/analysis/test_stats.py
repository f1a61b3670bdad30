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


def test_permutation_test_is_exact_and_untestable_with_few_seeds():
  # 3 pairs, all gaps positive: the exact two-sided sign-flip p is 2/8, its smallest possible.
  result = analysis.analyze(final_values_study([0.9, 0.91, 0.92], [0.5, 0.52, 0.49]),
                            n_boot=1000, test='permutation')
  row = _cell(result)
  assert row['test'] == 'sign-flip permutation'
  assert row['p_value'] == pytest.approx(0.25)
  assert row['verdict'] == 'untestable' and 'smallest p 0.25' in row['reason']
  assert np.isnan(row['p_holm']) and any('untestable' in n for n in result.notes)


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


# Freireich et al. (1963) remission times (weeks), 6-MP vs placebo; '+' = censored. The log-rank
# test of these data is the textbook's (Kleinbaum & Klein, Survival Analysis, ch. 2; R's
# survdiff): O = 9 and E = 19.25 for 6-MP, chi2 = 16.79.
MP6 = [6, 6, 6, 7, 10, 13, 16, 22, 23, '6+', '9+', '10+', '11+', '17+', '19+', '20+', '25+',
       '32+', '32+', '34+', '35+']
PLACEBO = [1, 1, 2, 2, 3, 4, 4, 5, 5, 8, 8, 8, 8, 11, 11, 12, 12, 15, 17, 22, 23]


def _survival(times):
  return (np.array([float(str(t).rstrip('+')) for t in times]),
          np.array([not str(t).endswith('+') for t in times]))


def test_logrank_textbook_example():
  result = stats.logrank(*_survival(MP6), *_survival(PLACEBO))
  assert result['observed'] == 9 and result['expected'] == pytest.approx(19.25, abs=0.005)
  assert result['z'] ** 2 == pytest.approx(16.79, abs=0.01)
  assert result['p_value'] == pytest.approx(sps.chi2.sf(16.79, 1), rel=0.01)


def test_logrank_by_hand_with_ties_and_censoring():
  # x: events at 1 and 2; ref: events at 2 and 3, one run censored at 1 (at risk at 1 only).
  # t=1: n=5, n1=2, d=1: E=2/5, V=(2/5)(3/5)=6/25. t=2: n=3, n1=1, d=2 (a tie, one per group):
  # E=2/3, V=2 (1/3)(2/3)(3-2)/(3-1)=2/9. t=3: no x at risk: E=0, V=0.
  result = stats.logrank(np.array([1., 2.]), np.array([True, True]),
                         np.array([2., 1., 3.]), np.array([True, False, True]))
  assert result['observed'] == 2 and result['expected'] == pytest.approx(2 / 5 + 2 / 3)
  assert result['variance'] == pytest.approx(6 / 25 + 2 / 9)
  assert result['z'] == pytest.approx((2 - 16 / 15) / np.sqrt(104 / 225))


def test_logrank_never_is_censored_and_no_events_is_no_evidence():
  p, sign = stats.p_logrank(np.array([np.inf] * 3), np.array([10., 20., 30.]))
  assert sign == 1 and p < 0.05  # x never reaches: later than scratch, gap > 0
  assert stats.p_logrank(np.array([np.inf] * 3), np.array([np.inf] * 3)) == (1.0, 0)


def test_smallest_p_of_each_test():
  assert stats.smallest_p('paired t', 2, 2) == 0
  assert stats.smallest_p('sign-flip permutation', 5, 5) == pytest.approx(2 / 32)
  assert stats.smallest_p('two-sample permutation', 3, 3) == pytest.approx(2 / 20)
  # Log-rank with 5 vs 5 runs, completely separated: O=5, E=sum (5-j)/(10-j), V=sum of the
  # binomial variances n1/n (1 - n1/n) over j = 0..4.
  n1, n = np.arange(5, 0, -1), np.arange(10, 5, -1)
  z = (5 - np.sum(n1 / n)) / np.sqrt(np.sum(n1 / n * (1 - n1 / n)))
  assert stats.smallest_p('log-rank', 5, 5) == pytest.approx(sps.chi2.sf(z * z, 1))
  assert stats.smallest_p('log-rank', 2, 2) > 0.05  # two seeds can never reach 0.05


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
