"""The estimators against NumPy ports of their authors' code (tests/analysis/reference_ports.py).

Four data sets per estimator: random and class-structured features, with N > D and N < D. The
ports run with the authors' arithmetic; where the authors stop an iteration early (LogME: 11
iterations), the port is also run to convergence, and that is what must agree to 1e-6.
"""

import warnings

import numpy as np
import pytest

from analysis import estimators as est
from tests.analysis import reference_ports as ref

CLASSES = 5
SHAPES = {'N>D': (200, 20), 'N<D': (30, 80)}


def _features(n, d, structured, seed):
  """Balanced labels in shuffled order; features pure noise, or class centres plus noise whose
  scale falls from 2 to 0.01 across dimensions (an ill-conditioned covariance)."""
  rng = np.random.default_rng(seed)
  y = rng.permutation(np.arange(n) % CLASSES)
  if not structured:
    return rng.normal(size=(n, d)), y
  centres = 2 * rng.normal(size=(CLASSES, d))
  return centres[y] + rng.normal(size=(n, d)) * np.linspace(2, 0.01, d), y


CASES = [pytest.param(shape, structured, id=f'{kind}-{shape_name}')
         for shape_name, shape in SHAPES.items()
         for structured, kind in ((False, 'random'), (True, 'structured'))]


def _converged_port(port, *args, **kwargs):
  """A LogME port run to the fixed point: 300 iterations, no early stop (boundary maxima, alpha
  -> infinity, overflow harmlessly on the way)."""
  with warnings.catch_warnings(), np.errstate(all='ignore'):
    warnings.simplefilter('ignore')
    return port(*args, max_iter=300, tol=0.0, **kwargs)


@pytest.mark.parametrize('shape,structured', CASES)
def test_logme_equals_tllib_at_convergence(shape, structured):
  f, y = _features(*shape, structured, seed=0)
  ours = est.logme(f, y, tol=1e-12, max_iter=10_000)
  assert ours == pytest.approx(_converged_port(ref.logme_tllib, f, y), rel=1e-6)


@pytest.mark.parametrize('structured', [False, True], ids=['random', 'structured'])
def test_logme_equals_thuml_logme_at_convergence_when_n_exceeds_d(structured):
  f, y = _features(*SHAPES['N>D'], structured, seed=1)
  ours = est.logme(f, y, tol=1e-12, max_iter=10_000)
  port = _converged_port(ref.logme_fixed_point_thuml, f, y, epsilon=0.0)
  assert ours == pytest.approx(port, rel=1e-6)


def test_thuml_logme_adds_d_minus_n_log_alpha_when_n_below_d():
  # LogME.py's default (fixed-point) fit takes the thin SVD (k = N values) but keeps the prior's
  # D/2 log alpha: for N < D its evidence exceeds the true one by (D - N)/(2N) log alpha per
  # class. tllib (the ICML algorithm, D eigenvalues) and we have the D - N zero eigenvalues
  # cancel it. Structured features keep alpha finite.
  n, d = SHAPES['N<D']
  f, y = _features(n, d, True, seed=2)
  alpha, _ = est.logme_fixed_point(f, est.one_hot(y), tol=1e-12, max_iter=10_000)
  port = _converged_port(ref.logme_fixed_point_thuml, f, y, epsilon=0.0)
  expected = est.logme(f, y, tol=1e-12, max_iter=10_000) + np.mean((d - n) / (2 * n) * np.log(alpha))
  assert port == pytest.approx(expected, rel=1e-6)
  assert port > est.logme(f, y) + 1  # Not a rounding matter.


@pytest.mark.parametrize('shape,structured', CASES)
def test_logme_default_is_at_least_the_authors_early_stop(shape, structured):
  # The authors stop after 11 iterations (tllib: at a 1% change of alpha / beta); we iterate to
  # a 1e-6 change. Nearer the maximum, our evidence is never lower. The gap is what the early
  # stop costs: < 1e-3 with class structure, up to ~0.05 on noise with N < D, where the maximum
  # lies at alpha -> infinity and 11 iterations are far from it.
  f, y = _features(*shape, structured, seed=3)
  with warnings.catch_warnings():
    warnings.simplefilter('ignore')
    authors = ref.logme_tllib(f, y)
  gap = est.logme(f, y) - authors
  assert 0 <= gap < (1e-3 if structured else 0.05)


def test_logme_keeps_only_classes_present():
  f, y = _features(*SHAPES['N>D'], True, seed=4)
  y = np.where(y == 2, 5, y)  # Classes 0, 1, 3, 4, 5: class 2 absent.
  with warnings.catch_warnings(), np.errstate(all='ignore'):
    warnings.simplefilter('ignore')
    garbage = ref.logme_fixed_point_thuml(f, y)  # The authors' code scores the absent class too.
  present = np.searchsorted(np.unique(y), y)   # Relabelled 0..4: every class present.
  ours = est.logme(f, y, num_classes=6)
  assert ours == pytest.approx(est.logme(f, present), rel=1e-12)
  assert ours == pytest.approx(_converged_port(ref.logme_tllib, f, present), rel=1e-6)
  # The absent class's own evidence, 6 x mean - 5 x the others', is far above any real class's.
  assert 6 * garbage - 5 * ours > ours + 3


@pytest.mark.parametrize('shape,structured', CASES)
def test_h_score_equals_tllib(shape, structured):
  # np.cov's 1/(N - 1) is on both sides of tllib's ratio: no convention to undo. With N < D
  # both hit the maximum C - 1 (every direction of the N - 1 dimensional span counts).
  f, y = _features(*shape, structured, seed=5)
  assert est.h_score(f, y) == pytest.approx(ref.h_score_tllib(f, y), rel=1e-6)


@pytest.mark.parametrize('shape,structured', CASES)
def test_shrunk_h_score_equals_tllib_up_to_the_covariance_convention(shape, structured):
  # tllib divides the class-mean covariance by N - 1 and Ledoit-Wolf's by N: a factor N/(N - 1).
  f, y = _features(*shape, structured, seed=6)
  n = len(y)
  assert est.h_score(f, y, shrinkage='auto') * n / (n - 1) == pytest.approx(
      ref.regularized_h_score_tllib(f, y), rel=1e-6)


@pytest.mark.parametrize('shape,structured', CASES)
def test_leep_and_nce_equal_tllib(shape, structured):
  # theta: a source classifier's probabilities over 7 source classes, informative when
  # structured (its logits are a linear map of the features), random otherwise.
  f, y = _features(*shape, structured, seed=7)
  rng = np.random.default_rng(8)
  logits = f @ rng.normal(size=(f.shape[1], 7)) if structured else rng.normal(size=(len(y), 7))
  theta = np.exp(logits - logits.max(1, keepdims=True))
  theta /= theta.sum(1, keepdims=True)
  assert est.leep(theta, y) == pytest.approx(ref.leep_tllib(theta, y), rel=1e-6)
  z = theta.argmax(1)
  assert est.nce(z, y) == pytest.approx(ref.nce_tllib(z, y), rel=1e-6)
