"""How far two networks are apart: representation similarity, parameter distance, loss barrier.

Pure NumPy over arrays and nested dicts of arrays (the ``{'params', 'batch_stats'}`` trees that
:func:`harness.results.load_run` returns), used by the studies of what transfer keeps
(Neyshabur, Sedghi & Zhang 2020) and of which layers matter (Zhang, Bengio & Singer 2022).

* :func:`linear_cka`: linear centred kernel alignment (Kornblith et al. 2019, eq. for the linear
  kernel): ``||Yc^T Xc||_F^2 / (||Xc^T Xc||_F ||Yc^T Yc||_F)`` with column-centred features;
  1 for identical representations, invariant to orthogonal transforms and isotropic scaling.
* :func:`parameter_distance`: per layer, the L2 norm of the difference of all its parameters,
  and that norm relative to the first network's (how far fine-tuning moved a layer).
* :func:`interpolation_barrier`: the loss barrier on the straight line ``(1 - t) a + t b``
  (Neyshabur et al. 2020, Frankle et al. 2020): ``max_t loss(t) - ((1 - t) loss(0) + t loss(1))``;
  about 0 when a and b lie in one basin.
"""

from __future__ import annotations

from typing import Any, Callable, Mapping, Sequence

import numpy as np
import pandas as pd

from harness.errors import UserError


def linear_cka(x: np.ndarray, y: np.ndarray) -> float:
  """Linear CKA between two representations of the same examples.

  Args:
    x: (examples, features) activations of one network (other axes are flattened).
    y: (examples, features') activations of another on the same examples, in the same order.

  Returns:
    CKA in [0, 1].

  Raises:
    UserError: different numbers of examples, or a constant representation (CKA undefined).
  """
  x = np.asarray(x, np.float64).reshape(len(x), -1)
  y = np.asarray(y, np.float64).reshape(len(y), -1)
  if len(x) != len(y):
    raise UserError(f'CKA compares the same examples: got {len(x)} and {len(y)} rows')
  x, y = x - x.mean(0), y - y.mean(0)
  xx, yy = np.linalg.norm(x.T @ x), np.linalg.norm(y.T @ y)
  if xx == 0 or yy == 0:
    raise UserError('CKA is undefined for a constant representation (all examples equal)')
  return float(np.linalg.norm(y.T @ x) ** 2 / (xx * yy))


def _leaves(tree: Any, prefix: tuple = ()) -> dict[tuple, np.ndarray]:
  """Path -> array of every leaf of nested mappings."""
  if isinstance(tree, Mapping):
    out = {}
    for key in sorted(tree):
      out.update(_leaves(tree[key], prefix + (key,)))
    return out
  return {prefix: np.asarray(tree)}


def _unflatten(leaves: Mapping[tuple, np.ndarray]) -> dict:
  tree: dict = {}
  for path, value in leaves.items():
    node = tree
    for key in path[:-1]:
      node = node.setdefault(key, {})
    node[path[-1]] = value
  return tree


def _same_structure(a: Mapping[tuple, np.ndarray], b: Mapping[tuple, np.ndarray]) -> None:
  if a.keys() != b.keys() or any(a[k].shape != b[k].shape for k in a):
    raise UserError('the two networks have different architectures (parameter names or shapes '
                    'differ): compare runs of the same model')


def parameter_distance(a: Mapping, b: Mapping) -> pd.DataFrame:
  """Per layer, how far network b's parameters are from network a's.

  Args:
    a, b: ``{'params': {layer: {...}}, ...}`` trees of the same model (only ``params`` count:
      batch-norm statistics are not parameters).

  Returns:
    One row per layer (the top-level key under ``params``, in name order): ``layer``,
    ``distance`` (L2 norm of b - a over the layer's parameters), ``norm_a`` (L2 norm of a's) and
    ``relative`` (distance / norm_a).
  """
  la, lb = _leaves(a['params']), _leaves(b['params'])
  _same_structure(la, lb)
  rows = []
  for layer in sorted({path[0] for path in la}):
    keys = [k for k in la if k[0] == layer]
    d = np.sqrt(sum(np.sum((lb[k].astype(np.float64) - la[k]) ** 2) for k in keys))
    norm = np.sqrt(sum(np.sum(la[k].astype(np.float64) ** 2) for k in keys))
    rows.append({'layer': layer, 'distance': float(d), 'norm_a': float(norm),
                 'relative': float(d / norm) if norm else np.nan})
  return pd.DataFrame(rows)


def interpolate(a: Mapping, b: Mapping, t: float) -> dict:
  """The variables ``(1 - t) a + t b`` (every leaf, batch-norm statistics included)."""
  la, lb = _leaves(a), _leaves(b)
  _same_structure(la, lb)
  mixed = _unflatten({k: ((1.0 - t) * la[k] + t * lb[k]).astype(la[k].dtype) for k in la})
  return {c: mixed.get(c, {}) for c in a}  # keeps empty collections (no batch_stats: {})


def interpolation_curve(evaluate: Callable[[dict], tuple[float, float]], a: Mapping, b: Mapping,
                        ts: Sequence[float] = tuple(np.linspace(0, 1, 11))) -> pd.DataFrame:
  """Loss and accuracy along the straight line from a (t = 0) to b (t = 1).

  Args:
    evaluate: variables -> (accuracy, loss) on a fixed data set (e.g.
      :func:`harness.probe.evaluator`).
    a, b: the two networks' variables.
    ts: the points, including 0 and 1.

  Returns:
    Columns ``t``, ``accuracy``, ``loss``.
  """
  rows = [dict(zip(('t', 'accuracy', 'loss'), (float(t), *evaluate(interpolate(a, b, t)))))
          for t in ts]
  return pd.DataFrame(rows)


def interpolation_barrier(ts: Sequence[float], losses: Sequence[float]) -> float:
  """``max_t loss(t) - ((1 - t) loss(0) + t loss(1))`` over the points measured.

  Args:
    ts: increasing points from 0 to 1.
    losses: the loss at each point.

  Raises:
    UserError: the points do not start at 0 and end at 1, or are not increasing.
  """
  t, loss = np.asarray(ts, float), np.asarray(losses, float)
  if len(t) < 2 or t[0] != 0 or t[-1] != 1 or np.any(np.diff(t) <= 0) or len(loss) != len(t):
    raise UserError('the barrier needs increasing points t from 0 to 1, one loss per point')
  return float(np.max(loss - ((1 - t) * loss[0] + t * loss[-1])))
