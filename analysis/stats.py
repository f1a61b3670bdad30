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
  small n. A label needs both the bootstrap CI and the test. ``test='permutation'`` swaps in
  exact sign-flip / two-sample permutation tests (Monte Carlo above 2**16 or 20000
  arrangements) for users who want no normality assumption.
* location 'median' (time to threshold, where "never" is +inf): the lower median (an order
  statistic, so inf is never averaged), CI = bootstrap percentiles taken as order statistics
  (``inverted_cdf``), test = the two-sample log-rank test (:func:`logrank`) with "never reached"
  right-censored at the run's last evaluation step. Why: with 5 paired seeds the sign test's
  smallest p is 2/32 = 0.0625, so it could never give a verdict; the log-rank test uses the
  ordering of every run's time (and the censoring) and can reach p ~ 0.002 with 5 vs 5 runs.
  inf - inf (both never reach) counts as a gap of 0.

Verdicts. :func:`verdict` labels one comparison on its own (unadjusted p, and CI excluding 0).
The analysis labels cells with :func:`family_verdicts` instead: 'negative' ('positive') iff the
Holm-adjusted p-value over a declared family (every cell of one summary table for one measure)
is below alpha, the test statistic points that way and the gap's bootstrap CI lies above (below)
0, so that the chance of one or more false labels in the family is at most alpha. A cell whose test cannot reach p < alpha with
its sample sizes (:func:`smallest_p`) is 'untestable' and leaves the family (it can never be
labelled, so excluding it keeps the family-wise guarantee and costs the others nothing). With
fewer than two values on a side that is resampled there is no CI and no test: 'single run';
without values in the cell: 'no data'; without reference values: 'no scratch'.

Power (:func:`t_power`, :func:`minimum_detectable_effect`, :func:`seeds_needed`): the power of
the two-sided t test is P(|T| > t_{1-a/2, df}) with T noncentral t(df, delta / se), evaluated with
scipy's ``nct``; paired: se = sd / sqrt(n), df = n - 1; unpaired (Welch, approximated by the
pooled t with the s.d. split equally between the groups): se = sd sqrt((1/n + 1/n_ref) / 2),
df = n + n_ref - 2, where sd is the seed-to-seed s.d. of one gap (:func:`gap_sd`).
"""

from __future__ import annotations

import functools
import itertools
import math
import zlib

import numpy as np
from scipy import optimize
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
  """Two-sided one-sample t-test of the paired gaps against 0 (= scipy's ``ttest_1samp``).

  Written out (t = mean / (s / sqrt(n)), n - 1 df) because scipy's wrapper costs ~1 ms a call,
  which the null-calibration test pays thousands of times.
  """
  if _constant(d):
    return _degenerate_p(d.mean())
  t = d.mean() / (d.std(ddof=1) / np.sqrt(len(d)))
  return float(2 * sps.t.sf(abs(t), len(d) - 1))


def p_welch(x: np.ndarray, ref: np.ndarray, rng=None) -> float:
  """Two-sided Welch t-test of the two groups' means (= scipy's ``ttest_ind(equal_var=False)``)."""
  if _constant(x) and _constant(ref):
    return _degenerate_p(ref.mean() - x.mean())
  vx, vr = x.var(ddof=1) / len(x), ref.var(ddof=1) / len(ref)
  df = (vx + vr) ** 2 / (vx ** 2 / (len(x) - 1) + vr ** 2 / (len(ref) - 1))
  return float(2 * sps.t.sf(abs(ref.mean() - x.mean()) / np.sqrt(vx + vr), df))


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


def logrank(time_x: np.ndarray, event_x: np.ndarray, time_ref: np.ndarray,
            event_ref: np.ndarray) -> dict:
  """Two-sample log-rank test (Mantel 1966) with the hypergeometric variance for tied times.

  At each distinct event time t_j, with n_j runs at risk (time >= t_j; a run censored at t_j is
  still at risk there), n1_j of them in x, d_j events, d1_j of them in x: E_j = d_j n1_j / n_j and
  V_j = d_j (n1_j / n_j) (1 - n1_j / n_j) (n_j - d_j) / (n_j - 1). Z = sum(d1_j - E_j) /
  sqrt(sum V_j), two-sided p from chi2(1) = Z**2.

  Args:
    time_x, event_x: x's times (event time, or censoring time when the event is False).
    time_ref, event_ref: the reference group's.

  Returns:
    dict with observed (sum d1_j), expected (sum E_j), variance, z and p_value; p = 1 and z = 0
    when the variance is 0 (no events, or every run at risk has its event at one time).
  """
  time = np.concatenate([time_x, time_ref]).astype(float)
  event = np.concatenate([event_x, event_ref]).astype(bool)
  in_x = np.arange(len(time)) < len(time_x)
  event_times = np.unique(time[event])
  at_risk = time[None, :] >= event_times[:, None]
  dies = event[None, :] & (time[None, :] == event_times[:, None])
  n, n1 = at_risk.sum(1).astype(float), (at_risk & in_x).sum(1).astype(float)
  d, d1 = dies.sum(1).astype(float), (dies & in_x).sum(1).astype(float)
  with np.errstate(divide='ignore', invalid='ignore'):
    variance = np.where(n > 1, d * (n1 / n) * (1 - n1 / n) * (n - d) / (n - 1), 0.0).sum()
  observed, expected = d1.sum(), (d * n1 / n).sum()
  if variance <= 1e-12:
    return {'observed': observed, 'expected': expected, 'variance': 0.0, 'z': 0.0, 'p_value': 1.0}
  z = (observed - expected) / np.sqrt(variance)
  return {'observed': observed, 'expected': expected, 'variance': float(variance), 'z': float(z),
          'p_value': float(sps.chi2.sf(z * z, 1))}


def censored(values: np.ndarray, limits: np.ndarray | None) -> tuple[np.ndarray, np.ndarray]:
  """(times, events) of times to an event where inf = never: censored at ``limits`` (or inf)."""
  values = np.asarray(values, float)
  event = np.isfinite(values)
  limits = np.full(len(values), np.inf) if limits is None else np.asarray(limits, float)
  return np.where(event, values, limits), event


def p_logrank(x: np.ndarray, ref: np.ndarray, limits=(None, None)) -> tuple[float, int]:
  """(two-sided log-rank p, sign of the gap it supports) for times where inf = never reached.

  The sign is in gap orientation (steps_x - steps_ref): +1 if x reaches later than expected
  under the null (fewer events than expected), -1 if earlier, 0 if neither.
  """
  result = logrank(*censored(x, limits[0]), *censored(ref, limits[1]))
  return result['p_value'], -int(np.sign(result['z']))


def _separated_logrank_p(n_x: int, n_ref: int) -> float:
  """Smallest log-rank p with these group sizes: every x event before any ref event."""
  if n_x == 0 or n_ref == 0:
    return 1.0
  distinct = np.arange(n_x + n_ref, dtype=float)
  tied = np.r_[np.zeros(n_x), np.ones(n_ref)]
  ones = np.ones(n_x + n_ref, bool)
  return min(logrank(t[:n_x], ones[:n_x], t[n_x:], ones[n_x:])['p_value'] for t in (distinct, tied))


# name -> smallest two-sided p the test can give with n values in x and n_ref in the reference
# (n pairs when paired); t tests can give any p.
_SMALLEST_P = {
    'paired t': lambda n, n_ref: 0.0,
    'Welch t': lambda n, n_ref: 0.0,
    'sign-flip permutation': lambda n, n_ref: (2.0 / 2 ** n if n <= _SIGN_FLIP_EXACT
                                               else 1.0 / (_N_MONTE_CARLO + 1)),
    'two-sample permutation': lambda n, n_ref: (
        (2.0 if n == n_ref else 1.0) / math.comb(n + n_ref, n_ref)
        if math.comb(n + n_ref, n_ref) <= _PERM_EXACT else 1.0 / (_N_MONTE_CARLO + 1)),
    'log-rank': _separated_logrank_p,
}


def smallest_p(test: str, n: int, n_ref: int) -> float:
  """The smallest p-value ``test`` can give with these sample sizes (see :data:`_SMALLEST_P`)."""
  return float(_SMALLEST_P[test](n, n_ref))


# (test, paired) -> (name, p-value function); paired functions take the gaps.
TESTS = {
    ('t', True): ('paired t', p_paired_t),
    ('t', False): ('Welch t', p_welch),
    ('permutation', True): ('sign-flip permutation', p_sign_flip),
    ('permutation', False): ('two-sample permutation', p_two_sample_permutation),
}
TEST_CHOICES = ('t', 'permutation')


def p_value(x: np.ndarray, ref: np.ndarray, paired: bool, location: str, better: int, test: str,
            rng: np.random.Generator, limits=(None, None)) -> tuple[str, float, int]:
  """(test name, two-sided p-value, sign of the gap the statistic supports) of one comparison.

  Means use ``test`` (t or permutation); medians (times to threshold) the log-rank test, with
  ``limits`` the censoring times of x's and ref's runs that never reach (None: never = inf).
  """
  if location == 'median':
    return ('log-rank', *p_logrank(x, ref, limits))
  name, fn = TESTS[(test, paired)]
  if paired:
    d = differences(ref, x, better)
    return name, fn(d, rng), int(np.sign(d.mean()))
  return name, fn(x, ref, rng), int(np.sign(better * (ref.mean() - x.mean())))


def gap_sd(x: np.ndarray, ref: np.ndarray, paired: bool) -> float:
  """Seed-to-seed s.d. of one gap: s.d. of the paired gaps, or sqrt(s_x^2 + s_ref^2) unpaired."""
  if paired:
    return float(np.std(ref - x, ddof=1)) if len(x) >= 2 else np.nan
  if len(x) < 2 or len(ref) < 2:
    return np.nan
  return float(np.sqrt(np.var(x, ddof=1) + np.var(ref, ddof=1)))


def compare(x: np.ndarray, ref: np.ndarray, paired: bool, location: str = 'mean', better: int = 1,
            test: str = 't', n_boot: int = 10000, rng: np.random.Generator | None = None,
            alpha: float = ALPHA, limits=(None, None)) -> dict:
  """The gap between a cell and its reference, with bootstrap CI, test and direction.

  Args:
    x: the cell's values (NaN = missing measure, dropped; pairs with a NaN are dropped).
    ref: reference values, aligned with ``x`` when paired.
    paired: values are matched by seed.
    location: 'mean' or 'median' (see the module docstring).
    better: +1 if higher is better, -1 if lower is better.
    test: 't' or 'permutation' (used for 'mean'; 'median' uses the log-rank test).
    n_boot: bootstrap resamples.
    rng: random generator (seeded by the caller).
    alpha: significance level of ``direction`` (unadjusted).
    limits: censoring times (e.g. last evaluation steps) aligned with x and ref, for the runs
      whose value is inf ("never"); None = censored at inf. Only used by the log-rank test.

  Returns:
    dict with gap (estimate), gap_ci_low, gap_ci_high, p_value, test, n, n_ref, ref_value (the
    reference's location over the values compared), p_min (:func:`smallest_p`), sign (of the gap
    the test statistic supports), sd (:func:`gap_sd`, mean location only) and direction (+1 gap
    > 0 supported at unadjusted alpha, -1 gap < 0, 0 neither, None not testable).
  """
  x, ref = np.asarray(x, float), np.asarray(ref, float)
  lim_x, lim_ref = (None if l is None else np.asarray(l, float) for l in limits)
  keep_x, keep_ref = ~np.isnan(x), ~np.isnan(ref)
  if paired:
    keep_x = keep_ref = keep_x & keep_ref
  x, ref = x[keep_x], ref[keep_ref]
  lim_x = None if lim_x is None else lim_x[keep_x]
  lim_ref = None if lim_ref is None else lim_ref[keep_ref]
  out = {'gap': np.nan, 'gap_ci_low': np.nan, 'gap_ci_high': np.nan, 'p_value': np.nan,
         'test': '', 'n': len(x), 'n_ref': len(ref), 'ref_value': np.nan, 'p_min': np.nan,
         'sign': 0, 'sd': np.nan, 'direction': None}
  if len(x) == 0 or len(ref) == 0:
    return out
  loc = LOCATIONS[location]
  out['ref_value'] = float(loc(ref))
  out['gap'] = float(loc(differences(ref, x, better)) if paired
                     else differences(loc(ref), loc(x), better))
  if len(x) < 2 or (not paired and len(ref) < 2):
    return out
  rng = rng if rng is not None else np.random.default_rng(0)
  low, high = bootstrap_ci(x, ref, paired, location, better, n_boot, rng)
  name, p, sign = p_value(x, ref, paired, location, better, test, rng, (lim_x, lim_ref))
  significant = p < alpha
  out.update(gap_ci_low=low, gap_ci_high=high, p_value=p, test=name, sign=sign,
             p_min=smallest_p(name, len(x), len(ref)),
             sd=gap_sd(x, ref, paired) if location == 'mean' else np.nan,
             direction=int(significant and low > 0) - int(significant and high < 0))
  return out


VERDICTS = {1: 'negative', -1: 'positive', 0: 'inconclusive'}


def verdict(comparison: dict) -> str:
  """Verdict of one :func:`compare` result on its own (gap > 0 = transfer is worse).

  Uses the unadjusted p; tables of cells use :func:`family_verdicts`, which also replaces the
  labels negative / positive / inconclusive given here. 'no data', 'no scratch' and 'single run'
  (no test) are final.
  """
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


def family_verdicts(p: np.ndarray, p_min: np.ndarray, sign: np.ndarray, ci_low: np.ndarray,
                    ci_high: np.ndarray, alpha: float = ALPHA) -> dict[str, np.ndarray]:
  """Labels of one family of comparisons, with Holm's family-wise error control.

  Cells with a p-value whose test can reach alpha (p_min < alpha) form the family; Holm adjusts
  their p-values. A cell is 'negative' (+1) or 'positive' (-1) iff its adjusted p < alpha, its
  test statistic points that way (``sign``) and its CI lies on that side of 0; else
  'inconclusive'. A cell whose test cannot reach alpha is 'untestable' (outside the family).

  Args:
    p: unadjusted p-values (NaN: no test, e.g. a single run; left without a label here).
    p_min: smallest p each cell's test can give (:func:`smallest_p`).
    sign: +1 / -1 / 0, the direction of the gap each test statistic supports.
    ci_low, ci_high: the gap's CI.
    alpha: family-wise error rate.

  Returns:
    dict of arrays: p_holm (NaN outside the family), verdict ('' where p is NaN) and
    family_size (number of cells in the family, on every row).
  """
  p, p_min = np.asarray(p, float), np.asarray(p_min, float)
  tested = ~np.isnan(p)
  testable = tested & (p_min < alpha)
  p_holm = holm(np.where(testable, p, np.nan))
  side = (np.asarray(ci_low, float) > 0).astype(int) - (np.asarray(ci_high, float) < 0).astype(int)
  direction = np.where((p_holm < alpha) & (side == np.asarray(sign)), side, 0)
  verdict = np.where(testable, [VERDICTS[int(d)] for d in direction], '')
  verdict = np.where(tested & ~testable, 'untestable', verdict).astype(object)
  return {'p_holm': p_holm, 'verdict': verdict,
          'family_size': np.full(len(p), int(testable.sum()))}


def t_design(n: int, n_ref: int, paired: bool, sd: float) -> tuple[float, int]:
  """(standard error, degrees of freedom) of a mean gap with per-gap s.d. ``sd``.

  Paired: sd / sqrt(n), n - 1. Unpaired: the s.d. split equally between the two groups,
  sd sqrt((1/n + 1/n_ref) / 2), n + n_ref - 2 (the pooled t, which Welch's equals for equal
  variances and sizes).
  """
  if paired:
    return sd / np.sqrt(n), n - 1
  return sd * np.sqrt((1 / n + 1 / n_ref) / 2), n + n_ref - 2


def t_power(delta, se, df, level: float):
  """Power of the two-sided t test at ``level`` for a true gap ``delta`` (noncentral t).

  P(|T| > t_{1-level/2, df}) with T ~ t(df, nc = delta / se); vectorised over the arguments.
  The lower tail P(T < -c) is written as P(T' > c) with T' ~ t(df, -nc): scipy's ``nct.cdf``
  returns NaN there for some large nc.
  """
  critical = sps.t.ppf(1 - np.asarray(level) / 2, df)
  nc = np.asarray(delta, float) / se
  return sps.nct.sf(critical, df, nc) + sps.nct.sf(critical, df, -nc)


@functools.lru_cache(maxsize=4096)
def _standard_mde(n: int, n_ref: int, paired: bool, level: float, power: float) -> float:
  """The minimum detectable effect in units of the gap's s.d. (power depends on delta / sd)."""
  se, df = t_design(n, n_ref, paired, 1.0)
  high = se * 10
  while t_power(high, se, df, level) < power:
    high *= 10
  return float(optimize.brentq(lambda d: t_power(d, se, df, level) - power, 0.0, high,
                               xtol=1e-10 * high))


def minimum_detectable_effect(sd: float, n: int, n_ref: int, paired: bool, level: float,
                              power: float = 0.8) -> float:
  """Smallest true gap the two-sided t test at ``level`` detects with probability ``power``.

  Args:
    sd: seed-to-seed s.d. of one gap (:func:`gap_sd`).
    n, n_ref: values in the cell and the reference (n pairs when paired).
    paired: paired t (else the pooled-t approximation of Welch, :func:`t_design`).
    level: the test's level (Holm's first step: alpha / family size).
    power: the detection probability.

  Returns:
    The gap, in the measure's units; NaN without a usable s.d. or with fewer than 2 values.
  """
  if not np.isfinite(sd) or sd <= 0 or n < 2 or (not paired and n_ref < 2):
    return np.nan
  return sd * _standard_mde(int(n), int(n if paired else n_ref), bool(paired), float(level),
                            float(power))


def seeds_needed(delta: float, sd: float, paired: bool, level: float, power: float = 0.8,
                 most: int = 1000) -> float:
  """Smallest number of seeds (per group when unpaired) that detects ``delta`` with ``power``.

  Bisection over n: the standardised minimum detectable effect falls as n grows.

  Returns:
    The number of seeds; NaN if delta or sd is not usable, inf if more than ``most`` are needed.
  """
  if not (np.isfinite(delta) and np.isfinite(sd)) or delta == 0 or sd <= 0:
    return np.nan
  target = abs(delta) / sd
  enough = lambda n: _standard_mde(n, n, bool(paired), float(level), float(power)) <= target
  if not enough(most):
    return np.inf
  low, high = 1, most  # enough(high) holds; n = 1 has no test.
  while high - low > 1:
    mid = (low + high) // 2
    low, high = (low, mid) if enough(mid) else (mid, high)
  return float(high)


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
