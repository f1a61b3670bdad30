"""Your own data: an .npz and a folder of images, registered once and then swept by name."""

import argparse
import json
import os

import numpy as np
import pytest
from PIL import Image

from harness import data, load_curves, runner, userdata
from harness.errors import UserError
from tests.test_sweeps import tiny_config

CLASSES = ('cat', 'dog', 'emu', 'fox')


@pytest.fixture(autouse=True)
def own_cache(tmp_path, monkeypatch):
  """Decoded splits go to this test's own cache, not the user's ~/.cache."""
  monkeypatch.setenv('TRANSFERBENCH_CACHE_DIR', str(tmp_path / 'cache'))


def images(n_per_class, shape, seed=0):
  """Class c: noise plus a bright band in row c (learnable), uint8; labels are CLASSES[c]."""
  rng = np.random.default_rng(seed)
  x = rng.integers(0, 80, size=(n_per_class * len(CLASSES), *shape), dtype=np.uint8)
  y = np.repeat(np.arange(len(CLASSES)), n_per_class)
  x[np.arange(len(y)), y] = 250
  return x, np.array(CLASSES)[y]


def write_folder(root, n_per_class, shape=(6, 6, 3), seed=0):
  x, y = images(n_per_class, shape, seed)
  for i, (pixels, label) in enumerate(zip(x, y)):
    (root / label).mkdir(parents=True, exist_ok=True)
    Image.fromarray(pixels).save(root / label / f'{i:03d}.png')
  return x, y


def tiny_sweep(name, data_dir, results):
  config = tiny_config(data_dir, seeds=1)
  config.pairs = [dict(kind='random_halves', dataset=name, split_seed=0)]
  report = runner.run_sweep(config, results, progress=False)
  assert report.failed == [] and report.completed == report.total == 12
  curves = load_curves(results)
  assert curves.run_id.nunique() == 12 and curves.accuracy.between(0, 1).all()
  assert all(task.startswith(f'{name}_') for task in curves.target)  # tasks of the user's data
  return curves


def test_own_npz_registers_reads_back_exactly_and_runs_a_sweep(tmp_path):
  data_dir = tmp_path / 'tfds'
  data_dir.mkdir()
  x_train, y_train = images(12, (8, 8))
  x_test, y_test = images(3, (8, 8), seed=1)
  np.savez(tmp_path / 'mine.npz', x_train=x_train, y_train=y_train, x_test=x_test, y_test=y_test)
  info = userdata.register_dataset('mine', tmp_path / 'mine.npz', str(data_dir))
  assert (info.num_classes, info.input_shape, info.class_names) == (4, (8, 8, 1), CLASSES)
  assert (info.num_train, info.num_test) == (48, 12)
  # Read back through the TFDS path: uint8 scaled to [0, 1], string labels -> sorted classes.
  x, y = data.load_split('mine', 'train', str(data_dir))
  np.testing.assert_array_equal(x, x_train[..., None] / np.float32(255))
  np.testing.assert_array_equal(y, np.searchsorted(CLASSES, y_train))
  # Another process finds it through the registry file of the data directory.
  entry = json.loads((data_dir / data.REGISTRY_FILE).read_text())['datasets']['mine']
  assert entry['source'] == str(tmp_path / 'mine.npz') and entry['split'] is None
  assert data.dataset_spec('mine', str(data_dir)).registered
  with pytest.raises(UserError, match="unknown data set 'mine'"):
    data.dataset_spec('mine', str(tmp_path))  # another data directory does not have it
  curves = tiny_sweep('mine', str(data_dir), tmp_path / 'results')
  final = curves[(curves.step == curves.step.max()) & (curves.condition == 'scratch')]
  assert final.accuracy.mean() > 0.9  # row c is bright in class c: 2 classes per task, chance 0.5


def test_single_x_y_gets_a_seeded_stratified_test_split_and_integer_labels_are_remapped(tmp_path):
  rng = np.random.default_rng(0)
  x = rng.normal(size=(60, 5)).astype(np.float64)
  y = np.repeat([3, 7, 11], 20)
  np.savez(tmp_path / 'xy.npz', x=x, y=y)
  info = userdata.register_dataset('xy', tmp_path / 'xy.npz', str(tmp_path), test_fraction=0.25,
                                   split_seed=4)
  assert (info.class_names, info.input_shape) == (('3', '7', '11'), (5,))
  train, test = data.stratified_split(y, 0.25, 4)
  x_test, y_test = data.load_split('xy', 'test', str(tmp_path))
  np.testing.assert_array_equal(x_test, x[test].astype(np.float32))  # floats are read as given
  np.testing.assert_array_equal(y_test, np.searchsorted([3, 7, 11], y[test]))
  assert len(data.load_split('xy', 'train', str(tmp_path))[1]) == len(train) == 45


def test_image_folder_registers_reads_back_exactly_and_runs_a_sweep(tmp_path):
  root, data_dir = tmp_path / 'photos', tmp_path / 'tfds'
  data_dir.mkdir()
  x_all, y_all = write_folder(root, 15)
  (root / 'cat' / 'notes.txt').write_text('not an image: ignored')
  info = userdata.register_dataset('photos', root, str(data_dir))
  assert (info.num_classes, info.input_shape, info.class_names) == (4, (6, 6, 3), CLASSES)
  assert (info.num_train, info.num_test) == (48, 12)
  train, _ = data.stratified_split(np.searchsorted(CLASSES, y_all), 0.2, 0)
  x, y = data.load_split('photos', 'train', str(data_dir))
  np.testing.assert_array_equal(x, x_all[train] / np.float32(255))  # files sorted per class
  np.testing.assert_array_equal(y, np.searchsorted(CLASSES, y_all[train]))
  tiny_sweep('photos', str(data_dir), tmp_path / 'results')


def test_image_folder_with_train_and_test_folders_and_grayscale_images(tmp_path):
  root = tmp_path / 'scans'
  write_folder(root / 'train', 5, shape=(7, 9))
  x_test, y_test = write_folder(root / 'test', 2, shape=(7, 9), seed=1)
  info = userdata.register_dataset('scans', root, str(tmp_path))
  assert (info.input_shape, info.num_train, info.num_test) == ((7, 9, 1), 20, 8)
  x, y = data.load_split('scans', 'test', str(tmp_path))
  np.testing.assert_array_equal(x, x_test[..., None] / np.float32(255))
  np.testing.assert_array_equal(y, np.searchsorted(CLASSES, y_test))


def npz(**arrays):
  return lambda path: np.savez(path / 'bad.npz', **arrays) or path / 'bad.npz'


def folder(make):
  def write(path):
    make(path / 'imgs')
    return path / 'imgs'
  return write


def _empty_class(root):
  write_folder(root, 3)
  (root / 'gnu').mkdir()


def _two_sizes(root):
  write_folder(root, 3)
  Image.fromarray(np.zeros((5, 6, 3), np.uint8)).save(root / 'dog' / 'odd.png')


def _not_an_image(root):
  write_folder(root, 3)
  (root / 'dog' / 'broken.png').write_bytes(b'not a png')


def _test_class_not_in_train(root):
  write_folder(root / 'train', 2)
  write_folder(root / 'test', 1)
  (root / 'test' / 'cat').rename(root / 'test' / 'gnu')


X, Y = images(4, (8, 8))
BAD = [
    (npz(x_train=X, y_train=Y[:-1], x_test=X, y_test=Y),
     'x_train has 16 examples but y_train has 15 labels'),
    (npz(x=X, y=Y[:-2]), 'x has 16 examples but y has 14 labels'),
    (npz(x_train=X, y_train=Y, x_test=X), r"missing \['y_test'\]: save them with np.savez"),
    (npz(images=X), r"missing \['x_test', 'x_train', 'y_test', 'y_train'\]"),
    (npz(x=X, y=np.linspace(0, 3, 16)), 'y has dtype float64: labels must be integers or strings'),
    (npz(x=X, y=np.eye(4)[np.arange(16) % 4]), r'y has shape \(16, 4\).*y.argmax'),
    (npz(x=X, y=np.zeros(16, int)), 'the training labels have 1 class: give at least two'),
    (npz(x_train=X, y_train=Y, x_test=X, y_test=np.full(16, 'gnu')),
     r"y_test has labels never seen in y_train \(\['gnu'\]\)"),
    (npz(x_train=X, y_train=Y, x_test=X, y_test=np.arange(16) % 4),
     'y_train and y_test mix strings and numbers'),
    (npz(x_train=X, y_train=Y, x_test=X[:, :4], y_test=Y),
     r'x_train has examples of shape \(8, 8\), x_test of shape \(4, 8\)'),
    (npz(x=np.full((16, 3), np.nan), y=Y), 'x has NaN or infinite values'),
    (npz(x=np.array([{}] * 16), y=Y), 'cannot read it without pickle'),
    (lambda path: np.save(path / 'x.npy', X) or path / 'x.npy', r'x.npy is not an .npz file: save'),
    (folder(_empty_class), r'class folder .*gnu has no images .*: add images to it or remove it'),
    (folder(_two_sizes),
     r'images must all have one size: .* is 6x6, .*odd.png is 6x5; resize them'),
    (folder(_not_an_image), r'broken.png is not a readable image'),
    (folder(lambda root: root.mkdir()), r'has 0 class folder\(s\)'),
    (folder(lambda root: write_folder(root / 'cat', 2)), r'has 1 class folder\(s\)'),
    (folder(_test_class_not_in_train), r"test has class folders that .*train lacks \(\['gnu'\]\)"),
    (lambda path: path / 'nowhere.npz', r'nowhere.npz does not exist: give an .npz file'),
]


@pytest.mark.parametrize('make, message', BAD)
def test_bad_input_is_a_one_line_error_and_nothing_is_written(make, message, tmp_path):
  data_dir = tmp_path / 'tfds'
  data_dir.mkdir()
  source = make(tmp_path)
  with pytest.raises(UserError, match=message) as e:
    userdata.register_dataset('mine', source, str(data_dir))
  assert '\n' not in str(e.value)
  assert list(data_dir.iterdir()) == []


@pytest.mark.parametrize('name, message', [
    ('mnist', "'mnist' is a built-in data set: register yours under another name"),
    ('My-Data', "data set name 'My-Data' is not allowed: use lowercase letters"),
    ('tfds:foo', "data set name 'tfds:foo' is not allowed"),
    ('taken', "'taken' is already registered in .*: choose another name, or replace it"),
])
def test_bad_or_clashing_names_are_refused(name, message, tmp_path):
  np.savez(tmp_path / 'ok.npz', x=X, y=Y)
  userdata.register_dataset('taken', tmp_path / 'ok.npz', str(tmp_path))
  registry = (tmp_path / data.REGISTRY_FILE).read_text()
  with pytest.raises(UserError, match=message):
    userdata.register_dataset(name, tmp_path / 'ok.npz', str(tmp_path))
  assert (tmp_path / data.REGISTRY_FILE).read_text() == registry


def test_replace_rebuilds_and_this_process_reads_the_new_data(tmp_path):
  np.savez(tmp_path / 'one.npz', x=X, y=Y)
  userdata.register_dataset('mine', tmp_path / 'one.npz', str(tmp_path))
  assert data.load_split('mine', 'train', str(tmp_path))[0].shape[1:] == (8, 8, 1)
  np.savez(tmp_path / 'two.npz', x=X[:, :2, :3], y=Y)
  info = userdata.register_dataset('mine', tmp_path / 'two.npz', str(tmp_path), replace=True)
  assert info.input_shape == (2, 3, 1)
  assert data.load_split('mine', 'train', str(tmp_path))[0].shape[1:] == (2, 3, 1)


def test_registered_data_whose_files_were_deleted_says_register_again(tmp_path):
  np.savez(tmp_path / 'ok.npz', x=X, y=Y)
  userdata.register_dataset('gone', tmp_path / 'ok.npz', str(tmp_path))
  import shutil
  shutil.rmtree(tmp_path / data.user_tfds_name('gone'))
  data._builder.cache_clear()
  with pytest.raises(UserError, match="'gone' is registered in .* but its files .* are missing: "
                                      'register it again'):
    data.dataset_info('gone', str(tmp_path))


def test_unknown_data_set_lists_registered_ones_and_how_to_register(tmp_path):
  np.savez(tmp_path / 'ok.npz', x=X, y=Y)
  userdata.register_dataset('mine', tmp_path / 'ok.npz', str(tmp_path))
  with pytest.raises(UserError, match=r"unknown data set 'mien': choose one of .*mnist1d, mine, "
                                      r'.*register your own data .*docs/data.md'):
    data.dataset_spec('mien', str(tmp_path))


@pytest.mark.parametrize('fraction', [0.0, 1.0, 1.5])
def test_a_test_fraction_outside_0_1_is_refused(fraction, tmp_path):
  np.savez(tmp_path / 'ok.npz', x=X, y=Y)
  with pytest.raises(UserError, match=f'test_fraction {fraction} is not between 0 and 1'):
    userdata.register_dataset('mine', tmp_path / 'ok.npz', str(tmp_path), test_fraction=fraction)
  assert not (tmp_path / data.REGISTRY_FILE).exists()


def test_command_line_arguments_register_and_print_one_line(tmp_path):
  np.savez(tmp_path / 'ok.npz', x=X, y=Y)
  parser = argparse.ArgumentParser()
  userdata.add_arguments(parser)
  args = parser.parse_args(['mine', str(tmp_path / 'ok.npz'), '--data-dir', str(tmp_path),
                            '--test-fraction', '0.5', '--split-seed', '1'])
  printed = []
  assert userdata.run(args, printed.append) == 0
  assert printed == [f"registered 'mine': 4 classes, input shape (8, 8, 1), 8 train / 8 test "
                     f"examples in {tmp_path}; use it as dataset='mine'"]
  assert json.loads((tmp_path / data.REGISTRY_FILE).read_text())['datasets']['mine']['split'] == {
      'test_fraction': 0.5, 'split_seed': 1}


def test_a_named_data_directory_that_does_not_exist_is_refused(tmp_path):
  np.savez(tmp_path / 'ok.npz', x=X, y=Y)
  with pytest.raises(UserError, match='does not exist: create it'):
    userdata.register_dataset('mine', tmp_path / 'ok.npz', str(tmp_path / 'typo'))
  assert not os.path.exists(tmp_path / 'typo')


def test_transferbench_data_register_through_the_cli(tmp_path, capsys):
  from transferbench.cli import main
  np.savez(tmp_path / 'ok.npz', x=X, y=Y)
  assert main(['data', 'register', 'mine', str(tmp_path / 'ok.npz'), '--data-dir', str(tmp_path)]) == 0
  assert "use it as dataset='mine'" in capsys.readouterr().out
  assert main(['data', 'register', 'digits', str(tmp_path / 'ok.npz'), '--data-dir', str(tmp_path)]) == 2
  err = capsys.readouterr().err
  assert err.startswith("transferbench: error: 'digits' is a built-in data set") and err.count('\n') == 1
