"""Rank correlations over few points: Kendall tau-b, weighted tau, Pearson r, with bootstrap CIs.

A transferability estimator is judged by how well its scores rank measured accuracies, often over
3-7 points (the copyable layers of one network). Such a correlation needs its number of points,
a CI and the smallest p its points allow: with n untied points Kendall's exact null distribution
gives at best p = 2 / n!, so with n <= 4 no tau is significant at 0.05. The CIs are percentile
bootstraps over the independent units: the points themselves when they are runs or task pairs
(:func:`bootstrap_ci`), the seeds behind seed means when the points are layers of one network
(:func:`seed_bootstrap_ci`). Fixed seed, :data:`BOOTSTRAP` resamples.
"""

from __future__ import annotations

import functools
import warnings

import numpy as np
import pandas as pd

MIN_POINTS = 3      # Fewer points than this give no correlation (NaN).
BOOTSTRAP = 2000    # Resamples of the CIs.
BOOTSTRAP_SEED = 0
ALPHA = 0.05        # Significance level that the minimum attainable p is compared with.


@functools.lru_cache(maxsize=64)
def kendall_min_p(points: int) -> float:
  """The smallest two-sided p of Kendall's tau with ``points`` untied points: 2 / n! (n >= 2).

  It is the exact null probability of a perfect (or perfectly reversed) ordering, from scipy's
  exact distribution; with 4 points it is 0.083, so no tau over 4 points is significant at 0.05.
  """
  from scipy import stats
  if points < 2:
    return 1.0
  return float(stats.kendalltau(np.arange(points), np.arange(points), method='exact').pvalue)


def _kendall_tau_b(x: np.ndarray, y: np.ndarray) -> np.ndarray:
  """Kendall tau-b of each row pair of x, y (B, n): sum sx sy / sqrt(sum sx^2 sum sy^2), with
  sx, sy the signs of all pairwise differences (ties: 0). NaN for a constant row."""
  sx = np.sign(x[:, :, None] - x[:, None, :])
  sy = np.sign(y[:, :, None] - y[:, None, :])
  with np.errstate(invalid='ignore', divide='ignore'):
    return (np.einsum('bij,bij->b', sx, sy)
            / np.sqrt(np.einsum('bij,bij->b', sx, sx) * np.einsum('bij,bij->b', sy, sy)))


def _pearson(x: np.ndarray, y: np.ndarray) -> np.ndarray:
  """Pearson r of each row pair of x, y (B, n); NaN for a constant row."""
  x = x - x.mean(axis=1, keepdims=True)
  y = y - y.mean(axis=1, keepdims=True)
  with np.errstate(invalid='ignore', divide='ignore'):
    return np.sum(x * y, axis=1) / np.sqrt(np.sum(x * x, axis=1) * np.sum(y * y, axis=1))


def _percentile_cis(tau: np.ndarray, r: np.ndarray, level: float) -> dict[str, float]:
  """Percentile intervals of bootstrap replicates of tau and r; NaN replicates (no ranking) dropped."""
  q = [(1 - level) / 2, (1 + level) / 2]
  out = {'ci_resamples': int(np.sum(~np.isnan(tau)))}
  for name, values in (('kendall_tau', tau), ('pearson_r', np.clip(r, -1, 1))):
    values = values[~np.isnan(values)]
    low, high = np.quantile(values, q) if len(values) else (np.nan, np.nan)
    out.update({f'{name}_low': float(low), f'{name}_high': float(high)})
  return out


def _taus(x: np.ndarray, y: np.ndarray) -> np.ndarray:
  """:func:`_kendall_tau_b` in chunks that bound the (B, n, n) sign arrays."""
  chunks = max(1, len(x) * x.shape[1] ** 2 // 2_000_000)
  return np.concatenate([_kendall_tau_b(a, b) for a, b in zip(np.array_split(x, chunks),
                                                              np.array_split(y, chunks))])


def bootstrap_ci(score: np.ndarray, accuracy: np.ndarray, resamples: int = BOOTSTRAP,
                 seed: int = BOOTSTRAP_SEED, level: float = 0.95) -> dict[str, float]:
  """Percentile bootstrap CIs of Kendall tau-b and Pearson r, the points resampled in pairs.

  For points that are independent units (single runs; source-target pairs). Each resample draws
  n (score, accuracy) points with replacement and recomputes both statistics; resamples in
  which either variable is constant (no ranking) are dropped, and the number kept is reported.

  Args:
    score: (n,) estimator scores.
    accuracy: (n,) measured accuracies.
    resamples: bootstrap resamples.
    seed: their seed.
    level: coverage.

  Returns:
    kendall_tau_low/high, pearson_r_low/high, and ci_resamples (resamples with a tau).
  """
  score, accuracy = np.asarray(score, float), np.asarray(accuracy, float)
  idx = np.random.default_rng(seed).integers(0, len(score), size=(resamples, len(score)))
  return _percentile_cis(_taus(score[idx], accuracy[idx]), _pearson(score[idx], accuracy[idx]), level)


def seed_bootstrap_ci(runs: pd.DataFrame, resamples: int = BOOTSTRAP, seed: int = BOOTSTRAP_SEED,
                      level: float = 0.95) -> dict[str, float]:
  """CIs of the across-layer correlation of seed means, the seeds (runs) resampled.

  The layers of one network are not a sample, its seeds are: each resample draws the seeds with
  replacement, recomputes the seed-mean score and accuracy at every n from the drawn runs (a
  seed drawn twice counts twice) and the correlation across n. Fewer than 2 seeds: NaN.

  Args:
    runs: single transfer runs of one estimator, measure and pair: n_layers, seed, score, accuracy.
    resamples: bootstrap resamples.
    seed: their seed.
    level: coverage.

  Returns:
    As :func:`bootstrap_ci`.
  """
  score = runs.pivot_table(index='n_layers', columns='seed', values='score', aggfunc='mean')
  accuracy = runs.pivot_table(index='n_layers', columns='seed', values='accuracy', aggfunc='mean')
  units = score.shape[1]
  if units < 2:
    return _percentile_cis(np.full(1, np.nan), np.full(1, np.nan), level)
  draws = np.random.default_rng(seed).integers(0, units, size=(resamples, units))
  weights = np.stack([np.bincount(d, minlength=units) for d in draws]).astype(float)  # (B, U)

  def means(table: pd.DataFrame) -> np.ndarray:  # (B, L) weighted means over the drawn seeds
    values = table.to_numpy(float)
    with np.errstate(invalid='ignore', divide='ignore'):
      return (weights @ np.nan_to_num(values).T) / (weights @ (~np.isnan(values)).T)

  x, y = means(score), means(accuracy)
  return _percentile_cis(_taus(x, y), _pearson(x, y), level)


CORRELATION_COLUMNS = ('points', 'kendall_tau', 'kendall_tau_low', 'kendall_tau_high', 'kendall_p',
                       'kendall_min_p', 'too_few_points', 'weighted_tau', 'pearson_r',
                       'pearson_r_low', 'pearson_r_high', 'pearson_p', 'ci_resamples')


def correlation(score: np.ndarray, accuracy: np.ndarray, runs: pd.DataFrame | None = None,
                ci: bool = True) -> dict[str, float]:
  """Kendall tau-b (p, bootstrap CI), weighted tau (scipy.stats.weightedtau), Pearson r (p, CI).

  Also the number of points, the smallest p Kendall's tau can reach with them
  (:func:`kendall_min_p`) and ``too_few_points`` when that p is not below :data:`ALPHA`.
  Statistics are NaN with fewer than :data:`MIN_POINTS` points or a constant input (no ranking
  to compare).

  Args:
    score: (n,) scores, one per point.
    accuracy: (n,) accuracies.
    runs: when the points are seed means, the single runs behind them: the CI then resamples
      seeds (:func:`seed_bootstrap_ci`) instead of points (:func:`bootstrap_ci`).
    ci: False: no CI (points that are seed means, without their runs).

  Returns:
    A dict with :data:`CORRELATION_COLUMNS`.
  """
  from scipy import stats
  score, accuracy = np.asarray(score, float), np.asarray(accuracy, float)
  ok = ~(np.isnan(score) | np.isnan(accuracy))
  score, accuracy = score[ok], accuracy[ok]
  points = int(len(score))
  out = dict.fromkeys(CORRELATION_COLUMNS, np.nan)
  out.update(points=points, kendall_min_p=kendall_min_p(points),
             too_few_points=kendall_min_p(points) >= ALPHA, ci_resamples=0)
  if points < MIN_POINTS or np.ptp(score) == 0 or np.ptp(accuracy) == 0:
    return out
  with warnings.catch_warnings():
    warnings.simplefilter('ignore')
    tau = stats.kendalltau(score, accuracy)
    pearson = stats.pearsonr(score, accuracy)
    out.update(kendall_tau=float(tau.statistic), kendall_p=float(tau.pvalue),
               weighted_tau=float(stats.weightedtau(score, accuracy).statistic),
               pearson_r=float(pearson.statistic), pearson_p=float(pearson.pvalue))
  if runs is not None:
    out.update(seed_bootstrap_ci(runs))
  elif ci:
    out.update(bootstrap_ci(score, accuracy))
  return out


def mean_ci(values: np.ndarray, seed: int = BOOTSTRAP_SEED, level: float = 0.95) -> tuple[float, float]:
  """Percentile bootstrap CI of a mean over groups (the groups resampled); NaN for one group."""
  values = values[~np.isnan(values)]
  if len(values) < 2:
    return np.nan, np.nan
  means = values[np.random.default_rng(seed).integers(0, len(values), (BOOTSTRAP, len(values)))].mean(1)
  return tuple(float(q) for q in np.quantile(means, [(1 - level) / 2, (1 + level) / 2]))
