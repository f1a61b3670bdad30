"""Rank correlations over few points: values, the minimum attainable p, bootstrap CIs."""

import math

import numpy as np
import pytest
from scipy import stats

from analysis import rank_correlation as rc


def test_correlation_values_and_too_few_points():
  # Same order: every statistic is 1. One swapped pair of 4: tau = (5 - 1) / 6 = 2/3.
  assert rc.correlation([1, 2, 3, 4], [0.1, 0.2, 0.3, 0.5])['kendall_tau'] == pytest.approx(1)
  out = rc.correlation([1, 2, 3, 4], [0.1, 0.3, 0.2, 0.4])
  assert out['kendall_tau'] == pytest.approx(2 / 3)
  assert out['pearson_r'] == pytest.approx(np.corrcoef([1, 2, 3, 4], [0.1, 0.3, 0.2, 0.4])[0, 1])
  assert -1 <= out['weighted_tau'] <= 1
  assert out['points'] == 4 and out['too_few_points']
  assert np.isnan(rc.correlation([1, 2], [1, 2])['kendall_tau'])
  assert np.isnan(rc.correlation([1, 1, 1], [1, 2, 3])['pearson_r'])


def test_kendall_min_p_is_two_over_n_factorial():
  # The exact null: each of the n! orderings equally likely; perfect agreement or reversal is
  # the most extreme, two-sided p = 2 / n!. Below 0.05 only from n = 5 (0.0167).
  for n in range(2, 9):
    assert rc.kendall_min_p(n) == pytest.approx(min(1.0, 2 / math.factorial(n)), rel=1e-9)
  assert rc.kendall_min_p(4) > 0.05 > rc.kendall_min_p(5)
  flags = [rc.correlation(np.arange(n), np.arange(n) ** 2)['too_few_points'] for n in (3, 4, 5, 7)]
  assert flags == [True, True, False, False]


def test_vectorised_tau_and_r_equal_scipy():
  rng = np.random.default_rng(0)
  x = rng.integers(0, 4, size=(50, 7)).astype(float)   # with ties
  y = rng.normal(size=(50, 7))
  tau = rc._kendall_tau_b(x, y)
  r = rc._pearson(x, y)
  for i in range(50):
    if np.ptp(x[i]) > 0:
      assert tau[i] == pytest.approx(stats.kendalltau(x[i], y[i]).statistic, abs=1e-12)
      assert r[i] == pytest.approx(stats.pearsonr(x[i], y[i]).statistic, abs=1e-12)
    else:
      assert np.isnan(tau[i])


def test_bootstrap_ci_resamples_the_points():
  # Seeded: same CI twice. It contains the estimate, and narrows with more points of the same
  # relation (the CI says how much 5 points can tell).
  rng = np.random.default_rng(1)
  x = rng.normal(size=40)
  y = x + rng.normal(size=40)
  few = rc.bootstrap_ci(x[:5], y[:5])
  assert few == rc.bootstrap_ci(x[:5], y[:5])
  many = rc.bootstrap_ci(x, y)
  tau = stats.kendalltau(x, y).statistic
  assert many['kendall_tau_low'] < tau < many['kendall_tau_high']
  assert (many['kendall_tau_high'] - many['kendall_tau_low']
          < (few['kendall_tau_high'] - few['kendall_tau_low']) / 2)
  assert many['ci_resamples'] == rc.BOOTSTRAP and few['ci_resamples'] <= rc.BOOTSTRAP
  # By hand: with a perfect order every resample with two distinct points has tau = 1.
  perfect = rc.bootstrap_ci([1, 2, 3], [1, 2, 3])
  assert perfect['kendall_tau_low'] == perfect['kendall_tau_high'] == 1
  assert perfect['ci_resamples'] < rc.BOOTSTRAP  # 3 of 27 resamples are one point thrice
