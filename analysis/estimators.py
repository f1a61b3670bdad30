"""Transferability estimators: how well features (or a source model's outputs) suit a target task.

Every estimator scores a target *training* set, seen through a source network, without training
anything on the target beyond cheap closed-form or linear fits. Higher is better for all of them.
Inputs are NumPy arrays: ``features`` (N, D), ``labels`` (N,) integers in ``0..C-1`` and, for
LEEP/NCE, the source model's class probabilities ``source_probs`` (N, Z) over its own classes.

* :func:`logme` - You et al. 2021: log marginal likelihood of a Bayesian linear model.
* :func:`leep` - Nguyen et al. 2020: log expected empirical prediction.
* :func:`nce` - Tran et al. 2019: negative conditional entropy of target given source labels.
* :func:`h_score` - Bao et al. 2019 (pseudo-inverse), and its shrinkage-regularised variant
  (Ibrahim et al. 2022, Ledoit-Wolf covariance).
* :func:`knn_accuracy` - leave-one-out k-nearest-neighbour accuracy (a baseline).
* :func:`linear_probe_accuracy` - cross-validated logistic-regression accuracy (a baseline).

Everything is vectorised (no Python loop over examples or classes); float64 throughout. The
per-layer use (features after layer n; how LEEP/NCE get source outputs at an intermediate layer)
is in :mod:`analysis.estimate`.
"""

from __future__ import annotations

import dataclasses
import warnings
from typing import Callable

import numpy as np

# Numerical guards of the LogME fixed point: floors for ||m||^2 and ||Fm - y||^2, so that a
# degenerate case (a class orthogonal to the features, an exact fit with D >= N) gives a large
# finite alpha or beta instead of 0/0. They never bind on well-posed data.
_LOGME_FLOOR = 1e-250


def one_hot(labels: np.ndarray, num_classes: int | None = None) -> np.ndarray:
  """(N,) integer labels -> (N, C) float64 indicator matrix."""
  labels = np.asarray(labels, int)
  num_classes = int(labels.max()) + 1 if num_classes is None else num_classes
  return (labels[:, None] == np.arange(num_classes)).astype(np.float64)


def _svd(features: np.ndarray, rcond: float) -> tuple[np.ndarray, np.ndarray]:
  """Left singular vectors and singular values of ``features``, dropping those <= rcond * max."""
  u, sigma, _ = np.linalg.svd(np.asarray(features, np.float64), full_matrices=False)
  keep = sigma > rcond * (sigma[0] if len(sigma) else 0.0)
  return u[:, keep], sigma[keep]


# ------------------------------------------------------------------------------------------ LogME

def logme_evidence(features: np.ndarray, targets: np.ndarray, alpha, beta) -> np.ndarray:
  """Log evidence per example of Bayesian linear regression, for given alpha and beta.

  Model (You et al. 2021, Eq. 2-4): ``y = F w + e``, ``w ~ N(0, alpha^-1 I_D)``,
  ``e ~ N(0, beta^-1 I_N)``, so ``y ~ N(0, alpha^-1 F F^T + beta^-1 I)`` and::

    log p(y | F, alpha, beta) = D/2 log alpha + N/2 log beta - N/2 log 2 pi
                                - beta/2 ||F m - y||^2 - alpha/2 ||m||^2 - 1/2 log |A|,
    A = alpha I + beta F^T F,   m = beta A^-1 F^T y.

  Computed from the thin SVD ``F = U diag(sigma) V^T`` (k = rank): with ``s = sigma^2`` and
  ``u = U^T y``, ``||m||^2 = sum (beta sigma u / (alpha + beta s))^2``, ``||F m - y||^2 =
  ||y||^2 - ||u||^2 + sum (alpha u / (alpha + beta s))^2`` and ``D/2 log alpha - 1/2 log|A| =
  -1/2 sum log(1 + beta s / alpha)`` (the D - k zero eigenvalues cancel), which stays finite for
  a huge alpha.

  Args:
    features: F, (N, D).
    targets: y, (N,) or (N, C) for C independent regressions.
    alpha: prior precision, scalar or (C,).
    beta: noise precision, scalar or (C,).

  Returns:
    The log evidence divided by N, shape () or (C,).
  """
  u_mat, sigma = _svd(features, 1e-12)
  return _evidence(u_mat, sigma, np.asarray(targets, np.float64), alpha, beta)


def _evidence(u_mat, sigma, y, alpha, beta):
  n = y.shape[0]
  u = u_mat.T @ y
  s = (sigma ** 2).reshape((-1,) + (1,) * (y.ndim - 1))
  sigma = sigma.reshape(s.shape)
  denom = alpha + beta * s
  m2 = np.sum((beta * sigma * u / denom) ** 2, axis=0)
  r2 = np.sum(y ** 2, axis=0) - np.sum(u ** 2, axis=0) + np.sum((alpha * u / denom) ** 2, axis=0)
  r2 = np.maximum(r2, 0.0)  # ||y||^2 - ||u||^2 >= 0 up to rounding.
  log_det_ratio = np.sum(np.log1p(beta * s / alpha), axis=0)
  evidence = (n / 2 * np.log(beta) - n / 2 * np.log(2 * np.pi) - beta / 2 * r2 - alpha / 2 * m2
              - log_det_ratio / 2)
  return evidence / n


def logme_fixed_point(features: np.ndarray, targets: np.ndarray, tol: float = 1e-6,
                      max_iter: int = 1000) -> tuple[np.ndarray, np.ndarray]:
  """alpha and beta maximising the evidence, by MacKay's fixed point (You et al. 2021, Alg. 1).

  Iterates, for every target column at once::

    gamma = sum_i beta s_i / (alpha + beta s_i),
    alpha <- gamma / ||m||^2,   beta <- (N - gamma) / ||F m - y||^2

  until ``lambda = alpha / beta`` changes by less than ``tol`` (relative) for every column.
  (The authors' reference code stops at 1% or 11 iterations; the tighter default here lands
  closer to the maximum, the difference is in the third decimal at most.)

  Args:
    features: F, (N, D).
    targets: (N, C).
    tol: relative tolerance on alpha / beta.
    max_iter: iteration cap (reached only in degenerate cases, e.g. an exact fit with D >= N).

  Returns:
    ``(alpha, beta)``, each (C,).
  """
  u_mat, sigma = _svd(features, 1e-12)
  return _fixed_point(u_mat, sigma, np.asarray(targets, np.float64), tol, max_iter)


def _fixed_point(u_mat, sigma, y, tol, max_iter):
  n, c = y.shape
  u = u_mat.T @ y
  s = (sigma ** 2)[:, None]
  yy_minus_uu = np.maximum(np.sum(y ** 2, 0) - np.sum(u ** 2, 0), 0.0)
  alpha, beta = np.ones(c), np.ones(c)
  for _ in range(max_iter):
    denom = alpha + beta * s
    gamma = np.sum(beta * s / denom, axis=0)
    m2 = np.sum((beta * sigma[:, None] * u / denom) ** 2, axis=0)
    r2 = yy_minus_uu + np.sum((alpha * u / denom) ** 2, axis=0)
    new_alpha = gamma / np.maximum(m2, _LOGME_FLOOR)
    new_beta = np.maximum(n - gamma, 0.0) / np.maximum(r2, _LOGME_FLOOR)
    # gamma = 0 (no usable feature direction): alpha does not enter the evidence; keep it.
    new_alpha = np.where(gamma > 0, new_alpha, alpha)
    new_beta = np.where(new_beta > 0, new_beta, beta)
    change = np.abs(new_alpha / new_beta - alpha / beta) / (alpha / beta)
    alpha, beta = new_alpha, new_beta
    if np.all(change < tol):
      break
  return alpha, beta


def logme(features: np.ndarray, labels: np.ndarray, num_classes: int | None = None,
          tol: float = 1e-6, max_iter: int = 1000) -> float:
  """LogME (You et al. 2021, ICML, "LogME: Practical Assessment of Pre-trained Models for
  Transfer Learning"): the maximised log evidence of linear models from features to labels.

  Each class c gets its one-vs-rest target ``y_c = 1[label == c]`` and its own alpha_c, beta_c
  maximising ``log p(y_c | F, alpha_c, beta_c)`` (:func:`logme_fixed_point`); the score is
  ``1/C' sum_c log p(y_c | F, alpha_c*, beta_c*) / N`` (:func:`logme_evidence`) over the C'
  classes *present* in ``labels``. (The authors' code loops over ``0..max label``: a class absent
  from a subsample has the target y_c = 0, which any F fits exactly, so its evidence grows without
  bound and swamps the mean.) One SVD of F serves every class. Raw features, no bias column, as
  in the paper. Not invariant to feature scaling; in practice it lies in about [-1, 2] per
  example and is comparable across feature sets for one target only.

  Args:
    features: (N, D).
    labels: (N,) integers in ``0..C-1``.
    num_classes: C (default: max label + 1); classes without examples are left out.
    tol: relative tolerance of the fixed point.
    max_iter: iteration cap of the fixed point.

  Returns:
    LogME, higher is better.
  """
  y = one_hot(labels, num_classes)
  y = y[:, y.sum(axis=0) > 0]  # An absent class's all-zero target is fitted exactly: no evidence.
  u_mat, sigma = _svd(features, 1e-12)
  alpha, beta = _fixed_point(u_mat, sigma, y, tol, max_iter)
  return float(np.mean(_evidence(u_mat, sigma, y, alpha, beta)))


# -------------------------------------------------------------------------------- LEEP and NCE

def leep(source_probs: np.ndarray, labels: np.ndarray, num_classes: int | None = None) -> float:
  """LEEP (Nguyen et al. 2020, ICML, "LEEP: A New Measure to Evaluate Transferability of
  Learned Representations").

  With theta(x_i) the source model's distribution over its classes Z::

    P(y, z) = 1/N sum_i theta(x_i)_z 1[y_i = y],   P(y | z) = P(y, z) / sum_y' P(y', z),
    LEEP = 1/N sum_i log( sum_z P(y_i | z) theta(x_i)_z ).

  At most 0, reached iff every "expected empirical predictor" puts probability 1 on the true
  label (e.g. one-hot theta and a deterministic source-to-target label map). Invariant to a
  permutation of the source classes. Source classes no example puts mass on are skipped.

  Args:
    source_probs: theta, (N, Z), rows summing to 1.
    labels: (N,) target labels.
    num_classes: C (default: max label + 1).

  Returns:
    LEEP, in (-inf, 0]; higher is better.
  """
  theta = np.asarray(source_probs, np.float64)
  y = one_hot(labels, num_classes)
  joint = y.T @ theta / len(theta)                       # (C, Z)
  p_z = joint.sum(axis=0)
  conditional = np.divide(joint, p_z, out=np.zeros_like(joint), where=p_z > 0)
  eep = np.sum(theta * conditional[np.asarray(labels, int)], axis=1)
  return float(np.mean(np.log(eep)))


def nce(source_labels: np.ndarray, labels: np.ndarray) -> float:
  """NCE (Tran et al. 2019, ICCV, "Transferability and Hardness of Supervised Classification
  Tasks"): the negative conditional entropy of target labels Y given source labels Z.

  With the empirical joint ``P(y, z) = 1/N #{i: y_i = y, z_i = z}``::

    NCE = -H(Y | Z) = sum_{y, z} P(y, z) log( P(y, z) / P(z) ).

  At most 0, reached iff Z determines Y; ``-log C`` at worst for a balanced target and Z
  independent of Y. Invariant to relabelling of either label set.

  Args:
    source_labels: (N,) the source model's hard labels z_i (argmax of its output).
    labels: (N,) target labels.

  Returns:
    NCE, in [-log C, 0]; higher is better.
  """
  z = np.asarray(source_labels, int)
  y = np.asarray(labels, int)
  joint = np.zeros((z.max() + 1, y.max() + 1))
  np.add.at(joint, (z, y), 1.0)
  joint /= len(y)
  p_z = joint.sum(axis=1, keepdims=True)
  nz = joint > 0
  return float(np.sum(joint[nz] * np.log((joint / np.maximum(p_z, 1e-300))[nz])))


# ------------------------------------------------------------------------------------- H-score

def h_score(features: np.ndarray, labels: np.ndarray, shrinkage: float | str | None = None,
            rcond: float = 1e-6) -> float:
  """H-score (Bao et al. 2019, ICIP, "An Information-Theoretic Approach to Transferability in
  Task Transfer Learning"): ``tr( cov(f)^-1 cov(E[f | y]) )``, or its shrunk form.

  Covariances are over the N examples (1/N normalisation; the plain ratio does not depend on it);
  ``E[f | y]`` replaces each example's features by its class mean. From the thin SVD of the
  centred features ``f = U diag(sigma) V^T`` and the class-averaging projector P (``P f`` =
  class means), with ``s = sigma^2 / N`` the eigenvalues of cov(f) and ``c_i = ||P u_i||^2``::

    pseudo-inverse (shrinkage None):  H = sum_{i: sigma_i > rcond sigma_1} c_i,
    shrunk (Ibrahim et al. 2022):     H_a = tr( cov_a(f)^-1 (1 - a) cov(E[f | y]) )
                                          = sum_i (1 - a) s_i c_i / ((1 - a) s_i + a mu),
    cov_a(f) = (1 - a) cov(f) + a mu I,  mu = tr cov(f) / D.

  Why shrink (Ibrahim, Ponomareva & Mazumder 2022, "Newer is not always better: rethinking
  transferability metrics, their peculiarities, stability and performance"): with the
  pseudo-inverse every retained direction counts fully however little variance it has, so noise
  directions inflate the score and with D >= N - 1 any features reach the maximum C - 1. The
  pseudo-inverse therefore drops directions below ``rcond`` times the largest singular value;
  ``shrinkage='auto'`` uses the Ledoit-Wolf shrinkage a (scikit-learn, as the authors' code), which
  shrinks both covariances by the same (1 - a), so each direction counts with the weight
  ``(1 - a) s_i / ((1 - a) s_i + a mu) < 1``. Both forms lie in [0, C - 1]; the pseudo-inverse form
  is invariant to any invertible affine map of the features, the shrunk form only to rotations,
  translations and global scaling. tllib's ``regularized_h_score`` takes cov(E[f | y]) with
  1/(N - 1) and cov_a(f) with 1/N: its value is this one times N / (N - 1).

  Args:
    features: (N, D).
    labels: (N,) integers.
    shrinkage: None (pseudo-inverse), 'auto' (Ledoit-Wolf) or a float a in [0, 1].
    rcond: relative singular-value cut-off of the pseudo-inverse.

  Returns:
    The H-score; higher is better.
  """
  f = np.asarray(features, np.float64)
  f = f - f.mean(axis=0)
  n, d = f.shape
  u_mat, sigma = _svd(f, rcond if shrinkage is None else 1e-12)
  y = one_hot(labels)
  counts = y.sum(axis=0)
  y = y[:, counts > 0] / np.sqrt(counts[counts > 0])  # Orthonormal basis of P's range.
  c = np.sum((y.T @ u_mat) ** 2, axis=0)               # ||P u_i||^2
  if shrinkage is None:
    return float(np.sum(c))
  if shrinkage == 'auto':
    from sklearn.covariance import ledoit_wolf_shrinkage
    a = float(ledoit_wolf_shrinkage(f, assume_centered=True))
  else:
    a = float(shrinkage)
  s = sigma ** 2 / n
  mu = np.sum(s) / d
  return float(np.sum((1 - a) * s * c / ((1 - a) * s + a * mu)))


# ------------------------------------------------------------------------------------ baselines

def knn_accuracy(features: np.ndarray, labels: np.ndarray, k: int = 5) -> float:
  """Leave-one-out k-nearest-neighbour accuracy (Euclidean), a non-parametric baseline.

  Each example is classified by the majority label among its k nearest *other* examples
  (scikit-learn's neighbour search, which excludes the query point itself); a tie goes to the
  tied class with the nearest neighbour. Invariant to rotations, translations and global scaling.

  Args:
    features: (N, D).
    labels: (N,) integers.
    k: neighbours (at most N - 1).

  Returns:
    Fraction of examples classified correctly.
  """
  from sklearn.neighbors import NearestNeighbors
  labels = np.asarray(labels, int)
  k = min(k, len(labels) - 1)
  index = NearestNeighbors(n_neighbors=k).fit(np.asarray(features, np.float64))
  _, neighbours = index.kneighbors()                   # (N, k), nearest first, self excluded.
  votes = one_hot(labels[neighbours].ravel(), labels.max() + 1).reshape(len(labels), k, -1)
  # Each vote counts 1, plus a tie-breaker < 1 in total that favours nearer neighbours.
  weights = 1.0 + (k - np.arange(k)) / (k * (k + 1))
  predicted = np.argmax(np.einsum('nkc,k->nc', votes, weights), axis=1)
  return float(np.mean(predicted == labels))


def _logistic_regression(seed: int, c: float, max_iter: int):
  """Standardise, then multinomial logistic regression (L2, lbfgs)."""
  from sklearn.linear_model import LogisticRegression
  from sklearn.pipeline import make_pipeline
  from sklearn.preprocessing import StandardScaler
  return make_pipeline(StandardScaler(), LogisticRegression(C=c, max_iter=max_iter, random_state=seed))


def linear_probe_accuracy(features: np.ndarray, labels: np.ndarray, folds: int = 3, c: float = 1.0,
                          max_iter: int = 500, seed: int = 0) -> float:
  """Cross-validated accuracy of a linear probe, a supervised baseline.

  Standardised features, L2-regularised multinomial logistic regression (scikit-learn, inverse
  regularisation ``c``), stratified ``folds``-fold cross-validation (shuffled with ``seed``);
  the score is the mean held-out accuracy. Folds are reduced to the smallest class size.

  Args:
    features: (N, D).
    labels: (N,) integers, every class with at least 2 examples.
    folds: cross-validation folds.
    c: inverse L2 strength.
    max_iter: lbfgs iterations.
    seed: shuffling seed of the folds.

  Returns:
    Mean held-out accuracy.
  """
  from sklearn.exceptions import ConvergenceWarning
  from sklearn.model_selection import StratifiedKFold, cross_val_score
  labels = np.asarray(labels, int)
  folds = int(min(folds, np.bincount(labels)[np.bincount(labels) > 0].min()))
  if folds < 2:
    raise ValueError('linear_probe_accuracy needs at least 2 examples of every class')
  split = StratifiedKFold(folds, shuffle=True, random_state=seed)
  with warnings.catch_warnings():
    warnings.simplefilter('ignore', ConvergenceWarning)
    scores = cross_val_score(_logistic_regression(seed, c, max_iter),
                             np.asarray(features, np.float64), labels, cv=split)
  return float(np.mean(scores))


def fit_source_classifier(features: np.ndarray, labels: np.ndarray, c: float = 1.0,
                          max_iter: int = 500, seed: int = 0):
  """The per-layer stand-in for a source head: a linear classifier of the source task.

  Same model as :func:`linear_probe_accuracy`, fitted on all given source examples. Its
  ``predict_proba`` on target features is theta(x) for :func:`leep`, its argmax z for :func:`nce`.

  Args:
    features: source-task features (N_s, D) at one layer.
    labels: source-task labels.
    c: inverse L2 strength.
    max_iter: lbfgs iterations.
    seed: random state.

  Returns:
    A fitted scikit-learn pipeline.
  """
  from sklearn.exceptions import ConvergenceWarning
  with warnings.catch_warnings():
    warnings.simplefilter('ignore', ConvergenceWarning)
    return _logistic_regression(seed, c, max_iter).fit(np.asarray(features, np.float64), labels)


# ------------------------------------------------------------------------------------ registry

@dataclasses.dataclass(frozen=True)
class LayerInputs:
  """What the estimators see at one layer: target features and labels, and source outputs."""
  features: np.ndarray       # (N, D) target training features after layer n
  labels: np.ndarray         # (N,) target labels
  num_classes: int           # C of the target task
  source_probs: np.ndarray | None  # (N, Z) source-task class probabilities of the target
  #                                  examples; None when no estimator asked for needs them


@dataclasses.dataclass(frozen=True)
class Estimator:
  """A named estimator: ``score(inputs, settings) -> float``, a one-line description, and whether
  it reads ``LayerInputs.source_probs`` (then the source task's training data must be at hand)."""
  score: Callable[[LayerInputs, dict], float]
  description: str
  needs_source: bool = False


ESTIMATORS: dict[str, Estimator] = {
    'logme': Estimator(lambda x, s: logme(x.features, x.labels, x.num_classes),
                       'LogME, You et al. 2021'),
    'leep': Estimator(lambda x, s: leep(x.source_probs, x.labels, x.num_classes),
                      'LEEP, Nguyen et al. 2020 (source probe at layer n)', needs_source=True),
    'nce': Estimator(lambda x, s: nce(np.argmax(x.source_probs, axis=1), x.labels),
                     'NCE, Tran et al. 2019 (source probe at layer n)', needs_source=True),
    'hscore': Estimator(lambda x, s: h_score(x.features, x.labels, rcond=s.get('rcond', 1e-6)),
                        'H-score, Bao et al. 2019 (pseudo-inverse)'),
    'hscore_shrunk': Estimator(lambda x, s: h_score(x.features, x.labels, shrinkage='auto'),
                               'H-score with Ledoit-Wolf shrinkage, Ibrahim et al. 2022'),
    'knn': Estimator(lambda x, s: knn_accuracy(x.features, x.labels, k=s.get('knn_k', 5)),
                     'leave-one-out kNN accuracy'),
    'linear_probe': Estimator(
        lambda x, s: linear_probe_accuracy(x.features, x.labels, folds=s.get('folds', 3),
                                           seed=s.get('seed', 0)),
        'cross-validated logistic-regression accuracy'),
}


def score_layer(inputs: LayerInputs, names: tuple[str, ...] | None = None,
                settings: dict | None = None) -> dict[str, float]:
  """Every (or the named) estimator of :data:`ESTIMATORS` on one layer's inputs."""
  names = tuple(ESTIMATORS) if names is None else names
  return {name: ESTIMATORS[name].score(inputs, settings or {}) for name in names}
