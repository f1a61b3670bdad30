"""CKA, parameter distance and the interpolation barrier against hand-computed values."""

import numpy as np
import pytest

from analysis import similarity
from harness.errors import UserError


def test_cka_hand_computed_examples():
  # 1-D: centred x = (-1, 0, 1), y = (0, -1, 1): (x.y)^2 / (|x|^2 |y|^2) = 1 / 4.
  assert similarity.linear_cka([[1], [2], [3]], [[1], [0], [2]]) == pytest.approx(0.25)
  # X centred, Y its first column: ||Y^T X||^2 = |(2, 1)|^2 = 5; ||X^T X|| = sqrt(10); Y^T Y = 2.
  x = np.array([[1., 0], [0, 1], [-1, -1]])
  assert similarity.linear_cka(x, x[:, :1]) == pytest.approx(5 / (2 * np.sqrt(10)))


def test_cka_invariances_and_what_breaks_them():
  rng = np.random.default_rng(0)
  x, y = rng.normal(size=(50, 6)), rng.normal(size=(50, 4))
  q, _ = np.linalg.qr(rng.normal(size=(6, 6)))
  base = similarity.linear_cka(x, y)
  assert 0 < base < 1
  assert similarity.linear_cka(x @ q, y) == pytest.approx(base)
  assert similarity.linear_cka(3.7 * x, y) == pytest.approx(base)
  assert similarity.linear_cka(x + 5.0, y) == pytest.approx(base)  # centring
  assert similarity.linear_cka(x, x @ q * 2) == pytest.approx(1.0)
  stretch = np.diag([10., 1, 1, 1, 1, 1])  # not isotropic: changes the value
  assert similarity.linear_cka(x @ stretch, y) != pytest.approx(base)
  with pytest.raises(UserError, match='same examples'):
    similarity.linear_cka(x, y[:10])
  with pytest.raises(UserError, match='constant'):
    similarity.linear_cka(np.ones((5, 2)), y[:5])


def _net(w1, b1, w2):
  return {'params': {'layer1': {'kernel': np.array(w1, float), 'bias': np.array(b1, float)},
                     'head': {'kernel': np.array(w2, float)}},
          'batch_stats': {}}


def test_parameter_distance_per_layer_by_hand():
  a, b = _net([[3., 0]], [4.], [[1.]]), _net([[3., 1]], [4.], [[1.]])
  rows = similarity.parameter_distance(a, b).set_index('layer')
  assert rows.loc['layer1', 'distance'] == pytest.approx(1.0)
  assert rows.loc['layer1', 'norm_a'] == pytest.approx(5.0)     # sqrt(9 + 16)
  assert rows.loc['layer1', 'relative'] == pytest.approx(0.2)
  assert rows.loc['head', 'distance'] == 0.0
  with pytest.raises(UserError, match='different architectures'):
    similarity.parameter_distance(a, _net([[3., 1, 0]], [4.], [[1.]]))


def test_interpolation_and_barrier():
  a, b = _net([[0., 0]], [0.], [[2.]]), _net([[2., 4]], [2.], [[0.]])
  mid = similarity.interpolate(a, b, 0.25)
  assert np.allclose(mid['params']['layer1']['kernel'], [[0.5, 1.0]])
  assert np.allclose(mid['params']['head']['kernel'], [[1.5]])
  assert mid['batch_stats'] == {}  # an empty collection stays (the model expects it)
  t = np.linspace(0, 1, 5)
  assert similarity.interpolation_barrier(t, 1 + 2 * t) == pytest.approx(0.0)  # a straight line
  # loss(t) = 1 + t + 4 t (1 - t): the bump over the chord peaks at t = 0.5 with height 1.
  assert similarity.interpolation_barrier(t, 1 + t + 4 * t * (1 - t)) == pytest.approx(1.0)
  with pytest.raises(UserError, match='from 0 to 1'):
    similarity.interpolation_barrier([0, 0.5], [1, 2])
  # The curve evaluates the interpolated variables: here "loss" = the head weight.
  curve = similarity.interpolation_curve(lambda v: (0.0, float(v['params']['head']['kernel'][0, 0])),
                                         a, b, t)
  assert np.allclose(curve['loss'], 2 - 2 * t) and list(curve['t']) == list(t)
