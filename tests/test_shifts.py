"""Deterministic shifts (harness/shifts.py): names, each transform's defining property, TFDS path."""

import numpy as np
import pytest

from harness import data, shifts
from harness.errors import UserError


def _images(n=6, side=8, seed=0):
  return np.random.default_rng(seed).integers(0, 256, (n, side, side, 1)).astype(np.uint8)


def test_names_parse_and_bad_names_say_how_to_write_them():
  assert shifts.parse('mnist@block4') == shifts.ShiftName('mnist', 'block', 4.0, 0)
  assert shifts.parse('mnist@noise0.3-s2') == shifts.ShiftName('mnist', 'noise', 0.3, 2)
  assert shifts.parse('mnist@noise0.3-s2').tfds_name == 'tb_shift_mnist_noise0p3_s2'
  assert shifts.parse('digits@labelperm').param is None
  for bad, words in [('mnist@', 'malformed'), ('cifar10@block4', 'unknown base'),
                     ('mnist@swirl3', 'unknown shift'), ('mnist@block', 'needs a parameter'),
                     ('mnist@labelperm2', 'takes none'), ('mnist@noise1.2.3', 'bad parameter')]:
    with pytest.raises(UserError, match=words):
      shifts.parse(bad)


def test_block_shuffle_keeps_the_multiset_of_blocks_and_the_histogram():
  x = _images()
  out = shifts.block_shuffle(x, 4, np.random.default_rng(0))
  assert not np.array_equal(out, x)
  for a, b in zip(x, out):
    blocks = lambda im: sorted(im[i:i + 4, j:j + 4].tobytes() for i in (0, 4) for j in (0, 4))
    assert blocks(a) == blocks(b)
    assert np.array_equal(np.bincount(a.ravel(), minlength=256), np.bincount(b.ravel(), minlength=256))
  # The whole image as one block, and 1-D signals.
  assert np.array_equal(shifts.block_shuffle(x, 8, np.random.default_rng(0)), x)
  sig = np.arange(2 * 8, dtype=float).reshape(2, 8, 1)
  out1 = shifts.block_shuffle(sig, 2, np.random.default_rng(1))
  assert sorted(map(tuple, out1[0, :, 0].reshape(4, 2))) == sorted(map(tuple, sig[0, :, 0].reshape(4, 2)))
  with pytest.raises(UserError, match='must divide'):
    shifts.block_shuffle(x, 3, np.random.default_rng(0))


def test_each_shift_has_its_defining_property_and_is_deterministic():
  x, y = _images(20), np.arange(20) % 10
  name = lambda s: shifts.parse(f'mnist@{s}')
  noisy, _ = shifts.apply(name('noise0.1'), 'train', x, y)
  d = noisy.astype(float) - x
  inside = (x > 60) & (x < 195)  # away from clipping: sd 0.1 x 255
  assert abs(d[inside].std() - 25.5) < 2.0 and abs(d[inside].mean()) < 1.5
  assert np.array_equal(noisy, shifts.apply(name('noise0.1'), 'train', x, y)[0])
  assert not np.array_equal(noisy, shifts.apply(name('noise0.1'), 'test', x, y)[0])
  assert not np.array_equal(noisy, shifts.apply(name('noise0.1-s1'), 'train', x, y)[0])
  blurred, _ = shifts.apply(name('blur1'), 'train', x, y)
  assert blurred.astype(float).std() < 0.7 * x.astype(float).std()
  low, _ = shifts.apply(name('contrast0.5'), 'train', x, y)
  per = lambda a: a.reshape(len(a), -1).astype(float)
  assert np.allclose(per(low).std(1), 0.5 * per(x).std(1), atol=0.6)
  assert np.allclose(per(low).mean(1), per(x).mean(1), atol=0.6)
  turned, _ = shifts.apply(name('rot90'), 'train', x, y)
  assert np.array_equal(turned[:, :, :, 0], np.rot90(x[:, :, :, 0], 1, axes=(1, 2)))
  same, relabelled = shifts.apply(name('labelperm'), 'train', x, y)
  assert np.array_equal(same, x) and sorted(set(relabelled)) == list(range(10))
  perm = {a: b for a, b in zip(y, relabelled)}
  assert len(perm) == 10 and all(relabelled[i] == perm[y[i]] for i in range(20))
  assert np.array_equal(shifts.apply(name('labelperm'), 'test', x, y)[1], relabelled)


def test_a_shifted_set_is_built_and_read_through_tfds(data_dir):
  x, y = data.load_split('digits', 'train', data_dir)
  xs, ys = data.load_split('digits@block2', 'train', data_dir)
  assert xs.shape == x.shape and np.array_equal(ys, y)
  assert np.array_equal(np.sort(xs.reshape(len(xs), -1), 1), np.sort(x.reshape(len(x), -1), 1))
  assert not np.array_equal(xs, x)
  info = data.dataset_info('digits@block2', data_dir)
  assert info.num_classes == 10 and info.input_shape == (8, 8, 1)
  with pytest.raises(UserError, match='rotates 2-D images'):
    data.load_split('mnist1d@rot10', 'train', data_dir)


def test_subpopulations_share_super_classes_and_split_the_sub_classes():
  x, y = _images(20), np.arange(20) % 10
  first, first_y = shifts.apply(shifts.parse('mnist@subpop0'), 'train', x, y)
  second, second_y = shifts.apply(shifts.parse('mnist@subpop1'), 'train', x, y)
  # Digits 0..4 (member 0) and 5..9 (member 1), each labelled by its super-class {i, i + 5}.
  assert np.array_equal(first, x[y < 5]) and np.array_equal(first_y, y[y < 5])
  assert np.array_equal(second, x[y >= 5]) and np.array_equal(second_y, y[y >= 5] - 5)
  assert shifts._superclass_names(tuple('0123456789'), 1) == ('0|5', '1|6', '2|7', '3|8', '4|9')
  with pytest.raises(UserError, match='member of each super-class is 0 or 1'):
    shifts.apply(shifts.parse('mnist@subpop2'), 'train', x, y)


def test_a_subpopulation_set_has_the_super_classes_through_tfds(data_dir):
  x, y = data.load_split('digits', 'test', data_dir)
  xs, ys = data.load_split('digits@subpop1', 'test', data_dir)
  assert np.array_equal(xs, x[y >= 5]) and np.array_equal(ys, y[y >= 5] - 5)
  info = data.dataset_info('digits@subpop1', data_dir)
  assert info.num_classes == 5 and info.class_names[0] == '0|5'
