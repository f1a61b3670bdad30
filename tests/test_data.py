"""The data layer: the embedded data built into TFDS (array_record) and read back with NumPy."""

import gzip
import pickle

import numpy as np
import pytest
import tensorflow_datasets as tfds

from harness import data
from harness.errors import UserError


@pytest.mark.parametrize('name, shape, n_train, n_test', [
    ('mnist', (28, 28, 1), 60000, 10000),
    ('animal_mnist', (28, 28, 1), 8000, 2000),
    ('digits', (8, 8, 1), 1438, 359),
    ('mnist1d', (40, 1), 4000, 1000),
])
def test_embedded_data_sets(name, shape, n_train, n_test, data_dir):
  info = data.dataset_info(name, data_dir)
  assert (info.num_classes, info.input_shape, info.num_train, info.num_test) == (10, shape, n_train, n_test)
  x, y = data.load_split(name, 'train', data_dir)
  assert x.shape == (n_train, *shape) and x.dtype == np.float32 and y.dtype == np.int32
  assert set(np.unique(y)) == set(range(10))
  if name != 'mnist1d':  # images scaled to [0, 1]
    assert x.min() == 0.0 and x.max() == 1.0


def test_mnist_matches_the_raw_pickle_exactly(data_dir):
  """What TFDS gives back is MNIST itself: same pixels (to 1/255) and labels, standard split."""
  with gzip.open(data._package_file('mnist', 'data', 'mnist.pkl.gz'), 'rb') as f:
    u = pickle._Unpickler(f)
    u.encoding = 'latin1'
    _, _, (x_test, y_test) = u.load()
  x, y = data.load_split('mnist', 'test', data_dir)
  np.testing.assert_array_equal(y, y_test)
  np.testing.assert_allclose(x.reshape(-1, 784) * 255, x_test * 256, atol=1e-3)


def test_read_through_tfds_data_source(data_dir):
  """The prepared files are a regular TFDS data set: tfds.data_source reads them by name."""
  data.dataset_info('digits', data_dir)
  source = tfds.data_source('tb_digits', split='test', data_dir=data_dir)
  assert len(source) == 359
  example = source[0]
  assert example['image'].shape == (8, 8, 1) and 0 <= example['label'] < 10


def test_decoded_splits_are_kept_on_disk_and_a_bad_file_is_decoded_again(data_dir, tmp_path,
                                                                         monkeypatch):
  monkeypatch.setenv('TRANSFERBENCH_CACHE_DIR', str(tmp_path))
  data.load_split.cache_clear()
  x, y = data.load_split('digits', 'test', data_dir)
  [cached] = (tmp_path / 'decoded').glob('digits-test-*.npz')
  np.savez(cached, x=x, y=y + 1)  # the next process reads this file, not the TFDS records
  data.load_split.cache_clear()
  np.testing.assert_array_equal(data.load_split('digits', 'test', data_dir)[1], y + 1)
  cached.write_bytes(b'truncated')
  data.load_split.cache_clear()
  x2, y2 = data.load_split('digits', 'test', data_dir)
  np.testing.assert_array_equal(x2, x)
  np.testing.assert_array_equal(y2, y)
  with np.load(cached) as rewritten:
    np.testing.assert_array_equal(rewritten['y'], y)
  data.load_split.cache_clear()


def test_second_load_reuses_the_build(data_dir, capsys):
  data.dataset_info('digits', data_dir)
  data._builder.cache_clear()
  data.dataset_info('digits', data_dir)
  assert 'building' not in capsys.readouterr().err


def test_animal_split_is_stratified_and_disjoint():
  labels = np.repeat(np.arange(10), 1000)
  train, test = data.stratified_split(labels, 0.2, seed=0)
  assert not set(train) & set(test) and len(train) + len(test) == 10000
  assert np.all(np.bincount(labels[test]) == 200)


def test_unknown_data_set_is_a_one_line_user_error(data_dir):
  with pytest.raises(UserError, match="unknown data set 'imagenet'") as e:
    data.dataset_info('imagenet', data_dir)
  assert '\n' not in str(e.value)


def test_standard_tfds_data_set_missing_from_data_dir(tmp_path):
  with pytest.raises(UserError, match="'cifar10' is not prepared in .*tfds build cifar10"):
    data.dataset_info('cifar10', str(tmp_path))


class TinyImages(tfds.core.GeneratorBasedBuilder):
  """A standard-style TFDS data set with an *Image* feature (PNG-encoded), like cifar10."""
  VERSION = tfds.core.Version('1.0.0')

  def _info(self):
    return tfds.core.DatasetInfo(builder=self, features=tfds.features.FeaturesDict({
        'image': tfds.features.Image(shape=(6, 6, 3)), 'label': tfds.features.ClassLabel(num_classes=4)}))

  def _split_generators(self, dl_manager):
    return {'train': self._generate_examples(40, 0), 'test': self._generate_examples(12, 1)}

  def _generate_examples(self, n, seed):
    import io
    from PIL import Image
    rng = np.random.default_rng(seed)
    for i in range(n):
      buffer = io.BytesIO()  # Encoded with PIL: encoding numpy arrays would need TensorFlow.
      Image.fromarray(np.full((6, 6, 3), 60 * (i % 4), np.uint8)).save(buffer, format='PNG')
      yield i, {'image': buffer.getvalue(), 'label': i % 4}


def test_standard_tfds_image_data_set_is_read_without_tensorflow(tmp_path):
  import sys
  TinyImages(data_dir=str(tmp_path), file_format='array_record').download_and_prepare()
  info = data.dataset_info('tfds:tiny_images', str(tmp_path))
  assert (info.num_classes, info.input_shape) == (4, (6, 6, 3))
  x, y = data.load_split('tfds:tiny_images', 'train', str(tmp_path))
  assert x.shape == (40, 6, 6, 3) and x.dtype == np.float32
  np.testing.assert_allclose(x[:, 0, 0, 0], 60 * (y % 4) / 255.0, rtol=1e-6)
  # The streamed path (used for imagenet2012) gives the same examples, labels read undecoded.
  np.testing.assert_array_equal(data.split_labels('tfds:tiny_images', 'train', str(tmp_path)), y)
  assert 'tensorflow' not in sys.modules


def test_imagenet_preprocessing_gives_caffe_sized_crops():
  image = np.random.default_rng(0).integers(0, 255, (300, 451, 3), dtype=np.uint8)
  crop = data.center_crop_resize(227, 256)(image)
  assert crop.shape == (227, 227, 3) and crop.dtype == np.float32 and 0 <= crop.min() <= crop.max() <= 1
