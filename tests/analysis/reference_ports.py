"""NumPy ports of the estimator authors' reference code: test oracles, not product code.

Each function re-states, step by step and in the same order, one published implementation, so
that :mod:`analysis.estimators` can be checked against what the authors ran:

* :func:`logme_fixed_point_thuml` - ``LogME.py``, ``LogME._fit_fixed_point`` (the default
  ``LogME.fit``), repository thuml/LogME (You et al. 2021 and the 2021 arXiv "Ranking and
  Tuning Pre-trained Models"): per class, a fixed-point loop on ``t = alpha / beta`` over the
  thin SVD of F, at most 11 iterations, stop when ``|t' - t| / t <= 1e-3``, ``1e-5`` added to
  ``||m||^2`` and ``||Fm - y||^2`` in the updates.
* :func:`logme_tllib` - ``tllib/ranking/logme.py``, ``log_maximum_evidence`` and its
  ``each_evidence`` (the ICML 2021 algorithm), repository thuml/Transfer-Learning-Library: per
  class, the same fixed point written with the eigendecomposition of ``F^T F`` (D x D), stop at
  a 1% change of ``lambda = alpha / beta`` or 11 iterations, no epsilon.
* :func:`leep_tllib` - ``tllib/ranking/leep.py``, ``log_expected_empirical_prediction``.
* :func:`nce_tllib` - ``tllib/ranking/nce.py``, ``negative_conditional_entropy``.
* :func:`h_score_tllib` and :func:`regularized_h_score_tllib` - ``tllib/ranking/hscore.py``,
  ``h_score`` (``np.cov`` on both sides, ``pinv`` with ``rcond=1e-15``) and
  ``regularized_h_score`` (scikit-learn ``LedoitWolf`` on centred features, ``(1 - alpha)``
  times ``np.cov`` of the class means).

Kept as the authors wrote them: Python loops over classes (and, for NCE, over examples), their
iteration caps and stopping rules (as keyword defaults, so a test can also run them to
convergence), their epsilons and their class count ``max label + 1``. Only numba's ``@njit`` and
torch are gone; the arithmetic is the same, in float64.
"""

from __future__ import annotations

import numpy as np


# ------------------------------------------------------------------------------ thuml/LogME

def _truncated_svd_thuml(x):
  """LogME.py ``truncated_svd``: the SVD of F from that of F^T F, ranks with s > 1e-10 kept."""
  u, s, vh = np.linalg.svd(x.transpose() @ x)
  s = np.sqrt(s)
  u_times_sigma = x @ vh.transpose()
  k = np.sum((s > 1e-10) * 1)
  s = s.reshape(-1, 1)[:k]
  vh = vh[:k]
  u = u_times_sigma[:, :k] / s.reshape(1, -1)
  return u, s, vh


def logme_fixed_point_thuml(f, y, max_iter=11, tol=1e-3, epsilon=1e-5):
  """thuml/LogME ``LogME.fit`` (``_fit_fixed_point``) for classification labels ``y``.

  Args:
    f: (N, D) features.
    y: (N,) labels; classes are ``0 .. max(y)``.
    max_iter: the authors' 11.
    tol: the authors' 1e-3 on the relative change of ``t = alpha / beta``.
    epsilon: the authors' 1e-5 added to ||m||^2 and ||Fm - y||^2.

  Returns:
    The mean over classes of the per-example evidence.
  """
  f = np.asarray(f, np.float64)
  n, d = f.shape
  if n > d:
    u, s, vh = _truncated_svd_thuml(f)
  else:
    u, s, vh = np.linalg.svd(f, full_matrices=False)
  s = s.reshape(-1, 1)
  sigma = s ** 2
  evidences = []
  for i in range(int(y.max() + 1)):
    y_ = (y == i).astype(np.float64).reshape(-1, 1)
    x = u.T @ y_
    x2 = x ** 2
    res_x2 = (y_ ** 2).sum() - x2.sum()
    alpha, beta = 1.0, 1.0
    for _ in range(max_iter):
      t = alpha / beta
      gamma = (sigma / (sigma + t)).sum()
      m2 = (sigma * x2 / ((t + sigma) ** 2)).sum()
      res2 = (x2 / ((1 + sigma / t) ** 2)).sum() + res_x2
      alpha = gamma / (m2 + epsilon)
      beta = (n - gamma) / (res2 + epsilon)
      t_ = alpha / beta
      if abs(t_ - t) / t <= tol:
        break
    evidence = (d / 2.0 * np.log(alpha) + n / 2.0 * np.log(beta)
                - 0.5 * np.sum(np.log(alpha + beta * sigma)) - beta / 2.0 * res2
                - alpha / 2.0 * m2 - n / 2.0 * np.log(2 * np.pi))
    evidences.append(evidence / n)
  return np.mean(evidences)


# ---------------------------------------------------------- thuml/Transfer-Learning-Library

def _each_evidence_tllib(y_, f, fh, v, s, vh, n, d, max_iter, tol):
  """tllib ``each_evidence``: the fixed point of one class, from the eigenvectors v of F^T F."""
  alpha, beta = 1.0, 1.0
  lam = alpha / beta
  tmp = vh @ (f @ y_)
  for _ in range(max_iter):
    gamma = (s / (s + lam)).sum()
    m = v @ (tmp * beta / (alpha + beta * s))
    alpha_de = (m * m).sum()
    alpha = gamma / alpha_de
    beta_de = ((y_ - fh @ m) ** 2).sum()
    beta = (n - gamma) / beta_de
    new_lam = alpha / beta
    if np.abs(new_lam - lam) / lam < tol:
      break
    lam = new_lam
  evidence = (d / 2.0 * np.log(alpha) + n / 2.0 * np.log(beta)
              - 0.5 * np.sum(np.log(alpha + beta * s)) - beta / 2.0 * beta_de
              - alpha / 2.0 * alpha_de - n / 2.0 * np.log(2 * np.pi))
  return evidence / n


def logme_tllib(features, targets, max_iter=11, tol=0.01):
  """tllib ``log_maximum_evidence`` (classification): mean per-class evidence, classes 0..max."""
  f = np.asarray(features, np.float64)
  fh = f
  f = f.transpose()
  d, n = f.shape
  v, s, vh = np.linalg.svd(f @ fh, full_matrices=True)
  evidences = []
  for i in range(int(targets.max() + 1)):
    y_ = (targets == i).astype(np.float64)
    evidences.append(_each_evidence_tllib(y_, f, fh, v, s, vh, n, d, max_iter, tol))
  return np.mean(evidences)


def leep_tllib(source_pred, target_label):
  """tllib ``log_expected_empirical_prediction``."""
  n, c_s = source_pred.shape
  target_label = target_label.reshape(-1)
  c_t = int(np.max(target_label) + 1)
  normalized_prob = source_pred / float(n)
  joint = np.zeros((c_t, c_s), dtype=float)
  for i in range(c_t):
    joint[i] = np.sum(normalized_prob[target_label == i], axis=0)
  p_target_given_source = (joint / joint.sum(axis=0, keepdims=True)).T
  empirical_prediction = source_pred @ p_target_given_source
  empirical_prob = np.array([p[label] for p, label in zip(empirical_prediction, target_label)])
  return np.mean(np.log(empirical_prob))


def nce_tllib(source_labels, target_labels):
  """tllib ``negative_conditional_entropy``."""
  c_t = int(np.max(target_labels) + 1)
  c_s = int(np.max(source_labels) + 1)
  n = len(source_labels)
  joint = np.zeros((c_t, c_s), dtype=float)
  for s, t in zip(source_labels, target_labels):
    joint[int(t), int(s)] += 1.0 / n
  p_z = joint.sum(axis=0, keepdims=True)
  with np.errstate(invalid='ignore', divide='ignore'):
    p_target_given_source = (joint / p_z).T
  mask = p_z.reshape(-1) != 0
  p_target_given_source = p_target_given_source[mask] + 1e-20
  entropy_y_given_z = np.sum(-p_target_given_source * np.log(p_target_given_source), axis=1,
                             keepdims=True)
  conditional_entropy = np.sum(entropy_y_given_z * p_z.reshape((-1, 1))[mask])
  return -conditional_entropy


def _class_means_tllib(f, y):
  """The loop both tllib H-scores share: every example replaced by its class mean."""
  g = np.zeros_like(f)
  for i in range(int(y.max() + 1)):
    g[y == i] = np.mean(f[y == i, :], axis=0)
  return g


def h_score_tllib(features, labels):
  """tllib ``h_score``: ``tr(pinv(cov f) cov g)``, ``np.cov`` (1/(N-1)), ``rcond=1e-15``."""
  f, y = features, labels
  covf = np.cov(f, rowvar=False)
  covg = np.cov(_class_means_tllib(f, y), rowvar=False)
  return np.trace(np.dot(np.linalg.pinv(covf, rcond=1e-15), covg))


def regularized_h_score_tllib(features, labels):
  """tllib ``regularized_h_score``: Ledoit-Wolf cov_a(f) (1/N) and (1 - a) np.cov of the means."""
  from sklearn.covariance import LedoitWolf
  f = features.astype('float64')
  f = f - np.mean(f, axis=0, keepdims=True)
  y = labels
  cov = LedoitWolf(assume_centered=False).fit(f)
  alpha = cov.shrinkage_
  covf_alpha = cov.covariance_
  covg = np.cov(_class_means_tllib(f, y), rowvar=False)
  return np.trace(np.dot(np.linalg.pinv(covf_alpha, rcond=1e-15), (1 - alpha) * covg))
