"""Uncertainty over seeds: t intervals, a seeded vectorised bootstrap, tests and verdicts.

A *comparison* contrasts the values ``x`` of one cell (runs that differ only by seed) with
reference values ``ref`` (scratch runs on the same target, or another cell). Its estimate is
``better * (location(ref) - location(x))`` for unpaired values and ``location(better * (ref - x))``
for values paired by seed; with ``better = +1`` for higher-is-better measures (accuracy, AUC) this
is the negative-transfer gap of Wang et al. 2019, error(x) - error(ref) = acc(ref) - acc(x), and
with ``better = -1`` for time to threshold it is steps(x) - steps(ref). Positive = x is worse.

* location 'mean' (accuracy-type measures): 95% CI = percentile bootstrap of the mean gap
  (resampling the pairs, or the two groups independently when unpaired); test (``test='t'``,
  the default) = one-sample t-test of the paired gaps or Welch's t-test of the two groups.
  Why t: seed-to-seed variation of a final accuracy is close to normal, and with the 3-8 seeds of
  typical studies exact permutation tests cannot reach p < 0.05 (a sign-flip test over 5 pairs
  has a smallest p of 2/32), while the percentile bootstrap alone is known to undercover at such
  small n. A verdict needs both the bootstrap CI and the test. ``test='permutation'`` swaps in
  exact sign-flip / two-sample permutation tests (Monte Carlo above 2**16 or 20000
  arrangements) for users who want no normality assumption.
* location 'median' (time to threshold, where "never" is +inf): the lower median (an order
  statistic, so inf is never averaged), CI = bootstrap percentiles taken as order statistics
  (``inverted_cdf``), test = exact sign test on paired gaps (ties dropped) or Mann-Whitney U
  (two-sided) on unpaired groups. inf - inf (both never reach) counts as a tie, 0.

Verdict (:func:`verdict`): with fewer than two values on a side that is resampled (one run, or
one reference run when unpaired) there is no CI and no test, the verdict is 'single run';
otherwise 'negative' iff CI low > 0 and p < alpha, 'positive' iff CI high < 0 and p < alpha, else
'inconclusive'. Without values in the cell: 'no data'; without reference values: 'no scratch'.
"""

from __future__ import annotations

import itertools
import math
import zlib

import numpy as np
from scipy import stats as sps

ALPHA = 0.05
_SIGN_FLIP_EXACT = 16  # Enumerate all 2**n sign patterns up to this n.
_PERM_EXACT = 20000  # Enumerate all two-sample arrangements up to this many.
_N_MONTE_CARLO = 20000


def t_halfwidth(x: np.ndarray, level: float = 0.95) -> float:
  """Half-width of the t confidence interval of the mean: t_{(1+level)/2, n-1} * s / sqrt(n).

  Args:
    x: values over seeds (NaN dropped).
    level: confidence level.

  Returns:
    The half-width; NaN with fewer than two values.
  """
  x = np.asarray(x, float)
  x = x[~np.isnan(x)]
  if len(x) < 2:
    return np.nan
  return float(sps.t.ppf(0.5 + level / 2, len(x) - 1) * x.std(ddof=1) / np.sqrt(len(x)))


def lower_median(x: np.ndarray, axis: int = -1) -> np.ndarray | float:
  """The lower median (the ceil(n/2)-th smallest value): an order statistic, exact with inf."""
  return np.quantile(x, 0.5, axis=axis, method='inverted_cdf')


LOCATIONS = {'mean': lambda x, axis=-1: np.mean(x, axis=axis), 'median': lower_median}
_PERCENTILE_METHOD = {'mean': 'linear', 'median': 'inverted_cdf'}


def rng_for(seed: int, *key) -> np.random.Generator:
  """A generator seeded by ``seed`` and a key, so results do not depend on processing order."""
  return np.random.default_rng([seed, zlib.crc32(repr(key).encode())])


def differences(ref: np.ndarray, x: np.ndarray, better: int) -> np.ndarray:
  """better * (ref - x), with inf - inf (both never reach a threshold) counted as a tie, 0."""
  with np.errstate(invalid='ignore'):
    d = better * (np.asarray(ref, float) - np.asarray(x, float))
  both_inf = np.isinf(ref) & np.isinf(x) & (np.sign(ref) == np.sign(x))
  return np.where(both_inf, 0.0, d)


def bootstrap_ci(x: np.ndarray, ref: np.ndarray, paired: bool, location: str, better: int,
                 n_boot: int, rng: np.random.Generator, level: float = 0.95) -> tuple[float, float]:
  """Percentile bootstrap CI of the gap, resampling runs within each group (vectorised).

  Args:
    x: values of the cell (aligned with ``ref`` when paired).
    ref: reference values.
    paired: resample (x, ref) pairs together; else resample each group independently.
    location: 'mean' or 'median'.
    better: +1 if higher values are better, -1 if lower are.
    n_boot: number of bootstrap resamples.
    rng: random generator.
    level: confidence level.

  Returns:
    (low, high) percentiles of the bootstrap distribution of the gap.
  """
  loc = LOCATIONS[location]
  if paired:
    d = differences(ref, x, better)
    boot = loc(d[rng.integers(0, len(d), (n_boot, len(d)))], axis=1)
  else:
    bx = loc(x[rng.integers(0, len(x), (n_boot, len(x)))], axis=1)
    br = loc(ref[rng.integers(0, len(ref), (n_boot, len(ref)))], axis=1)
    boot = differences(br, bx, better)
  tail = 100 * (1 - level) / 2
  low, high = np.percentile(boot, [tail, 100 - tail], method=_PERCENTILE_METHOD[location])
  return float(low), float(high)


def _constant(a: np.ndarray) -> bool:
  """All values equal up to float rounding (where a t statistic is 0/0 or rounding noise)."""
  return bool(np.ptp(a) <= 1e-12 * max(1.0, float(np.max(np.abs(a)))))


def _degenerate_p(estimate: float) -> float:
  """p-value when every value is identical: no evidence if the gap is 0, certainty otherwise."""
  return 1.0 if abs(estimate) <= 1e-12 else 0.0


def p_paired_t(d: np.ndarray, rng=None) -> float:
  """Two-sided one-sample t-test of the paired gaps against 0."""
  if _constant(d):
    return _degenerate_p(d.mean())
  return float(sps.ttest_1samp(d, 0.0).pvalue)


def p_welch(x: np.ndarray, ref: np.ndarray, rng=None) -> float:
  """Two-sided Welch t-test of the two groups' means."""
  if _constant(x) and _constant(ref):
    return _degenerate_p(ref.mean() - x.mean())
  return float(sps.ttest_ind(ref, x, equal_var=False).pvalue)


def p_sign_flip(d: np.ndarray, rng: np.random.Generator) -> float:
  """Two-sided sign-flip permutation test of mean(d) = 0; exact for n <= 16, else Monte Carlo."""
  n = len(d)
  if n <= _SIGN_FLIP_EXACT:
    signs = np.array(list(itertools.product((1.0, -1.0), repeat=n)))
  else:
    signs = np.vstack([np.ones(n), rng.choice((1.0, -1.0), (_N_MONTE_CARLO, n))])
  null = np.abs(signs @ d) / n
  return float(np.mean(null >= abs(d.mean()) - 1e-12 * max(1.0, abs(d.mean()))))


def p_two_sample_permutation(x: np.ndarray, ref: np.ndarray, rng: np.random.Generator) -> float:
  """Two-sided permutation test of the difference of means; exact up to 20000 arrangements."""
  pooled = np.concatenate([ref, x])
  n_all, n_ref = len(pooled), len(ref)
  if math.comb(n_all, n_ref) <= _PERM_EXACT:
    masks = np.zeros((math.comb(n_all, n_ref), n_all), bool)
    for i, chosen in enumerate(itertools.combinations(range(n_all), n_ref)):
      masks[i, list(chosen)] = True
  else:
    masks = np.argsort(rng.random((_N_MONTE_CARLO, n_all)), axis=1) < n_ref
    masks = np.vstack([np.arange(n_all) < n_ref, masks])
  total = pooled.sum()
  ref_sum = masks @ pooled
  null = np.abs(ref_sum / n_ref - (total - ref_sum) / (n_all - n_ref))
  observed = abs(ref.mean() - x.mean())
  return float(np.mean(null >= observed - 1e-12 * max(1.0, observed)))


def p_sign_test(d: np.ndarray, rng=None) -> float:
  """Exact two-sided sign test (binomial, p = 1/2) of the paired gaps; zeros are dropped."""
  positive, negative = int(np.sum(d > 0)), int(np.sum(d < 0))
  if positive + negative == 0:
    return 1.0
  return float(sps.binomtest(positive, positive + negative, 0.5).pvalue)


def p_mann_whitney(x: np.ndarray, ref: np.ndarray, rng=None) -> float:
  """Two-sided Mann-Whitney U test (handles +inf = never as the largest rank)."""
  both = np.concatenate([x, ref])
  if np.all(both == both[0]):
    return 1.0
  return float(sps.mannwhitneyu(x, ref, alternative='two-sided').pvalue)


# (test, paired) -> (name, p-value function); paired functions take the gaps.
TESTS = {
    ('t', True): ('paired t', p_paired_t),
    ('t', False): ('Welch t', p_welch),
    ('permutation', True): ('sign-flip permutation', p_sign_flip),
    ('permutation', False): ('two-sample permutation', p_two_sample_permutation),
    ('rank', True): ('sign test', p_sign_test),
    ('rank', False): ('Mann-Whitney U', p_mann_whitney),
}
TEST_CHOICES = ('t', 'permutation')


def p_value(x: np.ndarray, ref: np.ndarray, paired: bool, location: str, better: int, test: str,
            rng: np.random.Generator) -> tuple[str, float]:
  """(test name, two-sided p-value) of the gap; medians always use the rank tests."""
  name, fn = TESTS[('rank' if location == 'median' else test, paired)]
  if paired:
    return name, fn(differences(ref, x, better), rng)
  return name, fn(x, ref, rng)


def compare(x: np.ndarray, ref: np.ndarray, paired: bool, location: str = 'mean', better: int = 1,
            test: str = 't', n_boot: int = 10000, rng: np.random.Generator | None = None,
            alpha: float = ALPHA) -> dict:
  """The gap between a cell and its reference, with bootstrap CI, test and direction.

  Args:
    x: the cell's values (NaN = missing measure, dropped; pairs with a NaN are dropped).
    ref: reference values, aligned with ``x`` when paired.
    paired: values are matched by seed.
    location: 'mean' or 'median' (see the module docstring).
    better: +1 if higher is better, -1 if lower is better.
    test: 't' or 'permutation' (used for 'mean'; 'median' uses rank tests).
    n_boot: bootstrap resamples.
    rng: random generator (seeded by the caller).
    alpha: significance level.

  Returns:
    dict with gap (estimate), gap_ci_low, gap_ci_high, p_value, test, n, n_ref and direction
    (+1 gap > 0 supported, -1 gap < 0 supported, 0 not supported, None not testable).
  """
  x, ref = np.asarray(x, float), np.asarray(ref, float)
  if paired:
    keep = ~np.isnan(x) & ~np.isnan(ref)
    x, ref = x[keep], ref[keep]
  else:
    x, ref = x[~np.isnan(x)], ref[~np.isnan(ref)]
  out = {'gap': np.nan, 'gap_ci_low': np.nan, 'gap_ci_high': np.nan, 'p_value': np.nan,
         'test': '', 'n': len(x), 'n_ref': len(ref), 'direction': None}
  if len(x) == 0 or len(ref) == 0:
    return out
  loc = LOCATIONS[location]
  out['gap'] = float(loc(differences(ref, x, better)) if paired
                     else differences(loc(ref), loc(x), better))
  if len(x) < 2 or (not paired and len(ref) < 2):
    return out
  rng = rng if rng is not None else np.random.default_rng(0)
  low, high = bootstrap_ci(x, ref, paired, location, better, n_boot, rng)
  name, p = p_value(x, ref, paired, location, better, test, rng)
  significant = p < alpha
  out.update(gap_ci_low=low, gap_ci_high=high, p_value=p, test=name,
             direction=int(significant and low > 0) - int(significant and high < 0))
  return out


VERDICTS = {1: 'negative', -1: 'positive', 0: 'inconclusive'}


def verdict(comparison: dict) -> str:
  """Negative-transfer verdict of a :func:`compare` result (gap > 0 = transfer is worse)."""
  if comparison['n'] == 0:
    return 'no data'
  if comparison['n_ref'] == 0:
    return 'no scratch'  # No scratch run on the target, or none with this measure.
  if comparison['direction'] is None:
    return 'single run'
  return VERDICTS[comparison['direction']]


def holm(p: np.ndarray) -> np.ndarray:
  """Holm-Bonferroni adjusted p-values (NaN entries are ignored and stay NaN)."""
  p = np.asarray(p, float)
  out = np.full_like(p, np.nan)
  valid = np.flatnonzero(~np.isnan(p))
  order = valid[np.argsort(p[valid], kind='stable')]
  m = len(order)
  adjusted = np.maximum.accumulate((m - np.arange(m)) * p[order]) if m else np.array([])
  out[order] = np.minimum(adjusted, 1.0)
  return out


def match_seeds(seeds_x: np.ndarray, seeds_ref: np.ndarray) -> np.ndarray | None:
  """Index into ``seeds_ref`` of each x's seed, if the cell can be matched by seed.

  Matching requires unique seeds on both sides and every seed of x among the reference's.

  Args:
    seeds_x: seeds of the cell's runs.
    seeds_ref: seeds of the reference runs.

  Returns:
    Integer indices (one per x) into the reference, or None (compare with the pooled reference).
  """
  seeds_x, seeds_ref = list(seeds_x), list(seeds_ref)
  if (len(set(seeds_x)) != len(seeds_x) or len(set(seeds_ref)) != len(seeds_ref)
      or not set(seeds_x) <= set(seeds_ref)):
    return None
  where = {s: i for i, s in enumerate(seeds_ref)}
  return np.array([where[s] for s in seeds_x], int)
