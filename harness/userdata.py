"""Your own data as a data set: registered once, then ``dataset='NAME'`` in any sweep.

Two inputs are accepted (docs/data.md shows both with commands):

* **NumPy arrays**, an ``.npz`` file (``np.savez``) with the keys ``x_train, y_train, x_test,
  y_test``, or only ``x, y``: then a seeded per-class split (:func:`harness.data.stratified_split`,
  ``test_fraction``, ``split_seed``) makes the test set.
* **A folder of images per class**: ``ROOT/CLASS/*.png`` (split as above), or ``ROOT/train/CLASS/``
  and ``ROOT/test/CLASS/`` (TFDS's ImageFolder layout). The images are decoded with PIL, as TFDS
  decodes images, and must all have one size; grayscale stays one channel, anything else is RGB.

Why not TFDS's own ``ImageFolder``: it builds a ``tf.data`` pipeline (TensorFlow, ~600 MB) and
is read anew on every use. Registering instead builds the data once, with the same ``Tensor``
feature builder as the embedded data sets, into ``array_record`` files in the TFDS data
directory, and records it in the directory's :data:`harness.data.REGISTRY_FILE`. Every later
process reads it through the same path as the built-in data sets (:func:`harness.data.load_split`).

What is stored: uint8 inputs as uint8, read as ``x / 255``; any other numeric type as float32,
read as it is (scale it yourself). Inputs ``(N, H, W)`` get a channel axis, ``(N, H, W, 1)``, as
the convolutional models need. Labels may be any integers or strings: their sorted distinct
training values become classes ``0..C-1``, named by the values (``str``).

Every problem with the input is a :class:`UserError` raised before anything is written.
"""

from __future__ import annotations

import argparse
import json
import os
import pathlib
import re
import shutil
import tempfile
import types
import zipfile
from typing import Callable

import numpy as np
import tensorflow_datasets as tfds

from harness import data
from harness.errors import UserError

IMAGE_SUFFIXES = ('.png', '.jpg', '.jpeg', '.bmp', '.gif', '.tif', '.tiff', '.webp')
_NAME = re.compile(r'[a-z][a-z0-9_]*')
_FIX_NPZ = ('save them with np.savez(PATH, x_train=..., y_train=..., x_test=..., y_test=...) '
            'or np.savez(PATH, x=..., y=...)')

Splits = dict[str, tuple[np.ndarray, np.ndarray]]

# ----------------------------------------------------------------------------------------------
# Readers: a path -> {'train': (x, y), 'test': (x, y)} of raw arrays, or {'all': (x, y)}.


def _read_npz(path: pathlib.Path) -> dict[str, tuple[np.ndarray, np.ndarray]]:
  """The arrays of an ``.npz``, as ``{'train': ..., 'test': ...}`` or ``{'all': (x, y)}``."""
  if not zipfile.is_zipfile(path):  # np.load would read a .npy or a pickle as something else
    raise UserError(f'{path} is not an .npz file: {_FIX_NPZ}')
  try:
    with np.load(path, allow_pickle=False) as arrays:
      found = {key: arrays[key] for key in arrays.files}
  except ValueError as e:  # object arrays need pickle: refused, a data file should not run code
    raise UserError(f'{path}: cannot read it without pickle ({e}): store numbers and strings, '
                    f'not Python objects; {_FIX_NPZ}') from None
  except (OSError, EOFError) as e:
    raise UserError(f'{path} is not a readable .npz file ({e}): {_FIX_NPZ}') from None
  keys = set(found)
  if {'x_train', 'y_train', 'x_test', 'y_test'} <= keys:
    return {s: (found[f'x_{s}'], found[f'y_{s}']) for s in ('train', 'test')}
  if {'x', 'y'} <= keys and not keys & {'x_train', 'y_train', 'x_test', 'y_test'}:
    return {'all': (found['x'], found['y'])}
  missing = sorted({'x_train', 'y_train', 'x_test', 'y_test'} - keys)
  raise UserError(f'{path} has the arrays {sorted(keys)}, missing {missing}: {_FIX_NPZ}')


def _image_files(folder: pathlib.Path) -> list[pathlib.Path]:
  files = sorted(p for p in folder.iterdir() if p.is_file() and not p.name.startswith('.')
                 and p.suffix.lower() in IMAGE_SUFFIXES)
  if not files:
    raise UserError(f'class folder {folder} has no images ({", ".join(IMAGE_SUFFIXES)}): add '
                    'images to it or remove it')
  return files


def _class_folders(root: pathlib.Path) -> dict[str, list[pathlib.Path]]:
  folders = sorted(p for p in root.iterdir() if p.is_dir() and not p.name.startswith('.'))
  if len(folders) < 2:
    raise UserError(f'{root} has {len(folders)} class folder(s): put the images of each class in '
                    'a folder of its own, ROOT/CLASS/image.png, at least two classes')
  return {p.name: _image_files(p) for p in folders}


def _decode(files: list[pathlib.Path], mode: str) -> np.ndarray:
  """Decodes images with PIL (as TFDS does) into one ``(N, H, W, C)`` uint8 array."""
  from PIL import Image, UnidentifiedImageError
  images, first = [], None
  for f in files:
    try:
      with Image.open(f) as image:
        pixels = np.asarray(image.convert(mode))
    except (UnidentifiedImageError, OSError) as e:
      raise UserError(f'{f} is not a readable image ({e}): remove it or save it as PNG') from None
    if first is None:
      first = (f, pixels.shape)
    elif pixels.shape != first[1]:
      size = lambda shape: f'{shape[1]}x{shape[0]}'
      raise UserError(f'images must all have one size: {first[0]} is {size(first[1])}, {f} is '
                      f'{size(pixels.shape)}; resize them to one size first (PIL: Image.resize)')
    images.append(pixels.reshape(pixels.shape[:2] + (-1,)))
  return np.stack(images)


def _mode(files: list[pathlib.Path]) -> str:
  """'L' when every image is grayscale (one channel kept), else 'RGB'."""
  from PIL import Image
  for f in files:
    try:
      with Image.open(f) as image:
        if image.mode not in ('L', '1'):
          return 'RGB'
    except OSError:
      return 'RGB'  # _decode names the unreadable file
  return 'L'


def _read_folders(split_folders: dict[str, dict[str, list[pathlib.Path]]]) -> Splits:
  """Class folders per split -> arrays; labels are class folder names."""
  every = [f for classes in split_folders.values() for files in classes.values() for f in files]
  mode = _mode(every)
  splits = {}
  for split, classes in split_folders.items():
    files = [f for name in sorted(classes) for f in classes[name]]
    labels = np.array([name for name in sorted(classes) for _ in classes[name]])
    splits[split] = (_decode(files, mode), labels)
  first = {s: x.shape[1:] for s, (x, _) in splits.items()}
  if len(set(first.values())) > 1:
    raise UserError(f'images must all have one size: the splits have {first}; resize them to one '
                    'size first (PIL: Image.resize)')
  return splits


def _read_image_folder(root: pathlib.Path) -> Splits:
  subfolders = {p.name for p in root.iterdir() if p.is_dir() and not p.name.startswith('.')}
  if subfolders == {'train', 'test'}:
    folders = {s: _class_folders(root / s) for s in ('train', 'test')}
    unseen = sorted(set(folders['test']) - set(folders['train']))
    if unseen:
      raise UserError(f'{root / "test"} has class folders that {root / "train"} lacks ({unseen}): '
                      'give every class training images')
    return _read_folders(folders)
  return {'all': _read_folders({'all': _class_folders(root)})['all']}


def read_source(path: str | os.PathLike) -> tuple[str, Splits]:
  """The format (``'npz'`` or ``'image_folder'``) and raw arrays of a user's data path."""
  path = pathlib.Path(path).expanduser()
  if path.is_dir():
    return 'image_folder', _read_image_folder(path)
  if path.is_file():
    return 'npz', _read_npz(path)
  raise UserError(f'{path} does not exist: give an .npz file of arrays or a folder of images per '
                  'class (docs/data.md)')


# ----------------------------------------------------------------------------------------------
# Checks and the canonical form: uint8 or float32 inputs, int labels 0..C-1, a train and test split.


def _check_pair(split: str, x: np.ndarray, y: np.ndarray) -> np.ndarray:
  """The labels of one split as a 1-D array, after checking them against ``x``."""
  xs, ys = ('x', 'y') if split == 'all' else (f'x_{split}', f'y_{split}')
  if y.ndim == 2 and y.shape[1] == 1:
    y = y[:, 0]
  if y.ndim != 1:
    raise UserError(f'{ys} has shape {y.shape}: give one label per example, shape (N,) '
                    '(for one-hot labels: y.argmax(axis=1))')
  if x.ndim < 2:
    raise UserError(f'{xs} has shape {x.shape}: give one input per example, shape (N, ...)')
  if len(x) != len(y):
    raise UserError(f'{xs} has {len(x)} examples but {ys} has {len(y)} labels: give '
                    'one label per example, in the same order')
  if len(y) == 0:
    raise UserError(f'the {split} split is empty: give at least one example per class')
  if y.dtype.kind not in 'iubUS':
    raise UserError(f'{ys} has dtype {y.dtype}: labels must be integers or strings '
                    '(y.astype(int) for whole-number floats)')
  if x.dtype.kind not in 'iufb':
    raise UserError(f'{xs} has dtype {x.dtype}: inputs must be numbers')
  if x.dtype.kind == 'f' and not np.isfinite(x).all():
    raise UserError(f'{xs} has NaN or infinite values: replace them (e.g. np.nan_to_num)')
  return y


def _split_off_test(splits: Splits, test_fraction: float, split_seed: int) -> Splits:
  if 'all' not in splits:
    return splits
  if not 0 < test_fraction < 1:
    raise UserError(f'test_fraction {test_fraction} is not between 0 and 1: choose e.g. 0.2')
  x, y = splits['all']
  y = _check_pair('all', x, y)
  train, test = data.stratified_split(y, test_fraction, split_seed)
  if not len(test) or not len(train):
    raise UserError(f'a test fraction of {test_fraction} of {len(y)} examples leaves an empty '
                    'split: give more examples per class or another test_fraction')
  return {'train': (x[train], y[train]), 'test': (x[test], y[test])}


def canonical(splits: Splits) -> tuple[Splits, tuple[str, ...]]:
  """Checked arrays in the stored form, and the class names (label ``i`` is ``names[i]``).

  Raises:
    UserError: mismatched lengths or shapes, labels that are not integers or strings, test
      labels never seen in training, fewer than two classes, non-finite inputs.
  """
  ys = {s: _check_pair(s, x, y) for s, (x, y) in splits.items()}
  (x_train, _), (x_test, _) = splits['train'], splits['test']
  if x_train.shape[1:] != x_test.shape[1:]:
    raise UserError(f'x_train has examples of shape {x_train.shape[1:]}, x_test of shape '
                    f'{x_test.shape[1:]}: give both splits one input shape')
  if (ys['train'].dtype.kind in 'US') != (ys['test'].dtype.kind in 'US'):
    raise UserError('y_train and y_test mix strings and numbers: give both the same kind of labels')
  values = np.unique(ys['train'])
  if len(values) < 2:
    raise UserError(f'the training labels have {len(values)} class: give at least two classes')
  unseen = np.setdiff1d(ys['test'], values)
  if len(unseen):
    raise UserError(f'y_test has labels never seen in y_train ({unseen[:5].tolist()}): give every '
                    'class training examples')
  dtype = np.uint8 if x_train.dtype == x_test.dtype == np.uint8 else np.float32
  add_channel = x_train.ndim == 3  # (N, H, W) grayscale images -> (N, H, W, 1)
  out = {}
  for s, (x, _) in splits.items():
    x = np.asarray(x, dtype)
    out[s] = (x[..., None] if add_channel else x, np.searchsorted(values, ys[s]).astype(np.int64))
  return out, tuple(str(v) for v in values.tolist())


# ----------------------------------------------------------------------------------------------
# Registration.


def _check_name(name: str, data_dir: str, replace: bool) -> None:
  if not _NAME.fullmatch(name):
    raise UserError(f"data set name '{name}' is not allowed: use lowercase letters, digits and _, "
                    'starting with a letter (e.g. my_scans)')
  if name in data.DATASETS:
    raise UserError(f"'{name}' is a built-in data set: register yours under another name "
                    f'(built in: {", ".join(sorted(data.DATASETS))})')
  if name in data.registrations(data_dir) and not replace:
    raise UserError(f"data set '{name}' is already registered in {data_dir}: choose another name, "
                    'or replace it (replace=True, --replace)')


def _builder_class(name: str, splits: Splits, class_names: tuple[str, ...], source: str) -> type:
  """A builder of this data set: the embedded data's builder, with the user's arrays as RAW."""
  x = splits['train'][0]
  body = dict(name=data.user_tfds_name(name), SHAPE=tuple(x.shape[1:]), DTYPE=x.dtype.type,
              CLASS_NAMES=class_names, RAW=staticmethod(lambda: splits),
              VERSION=tfds.core.Version(data.USER_VERSION),
              __module__=__name__,
              __doc__=f"The user's data set '{name}', registered from {source}.")
  return types.new_class('TbUserData', (data._EmbeddedBuilder,), {'skip_registration': True},
                         lambda ns: ns.update(body))


def _build(builder_class: type, directory: pathlib.Path) -> None:
  """Builds into a fresh folder beside the data, then swaps it in (a failed build leaves none)."""
  final = directory / builder_class.name / data.USER_VERSION
  with tempfile.TemporaryDirectory(dir=directory, prefix='.transferbench-register-') as tmp:
    with data._quiet_tfds():
      builder = builder_class(data_dir=tmp, file_format='array_record')
      builder.download_and_prepare(
          download_config=tfds.download.DownloadConfig(try_download_gcs=False))
    if final.exists():
      shutil.rmtree(final)
    final.parent.mkdir(parents=True, exist_ok=True)
    os.replace(pathlib.Path(tmp, builder_class.name, data.USER_VERSION), final)


def _record(directory: pathlib.Path, name: str, entry: dict) -> None:
  """Adds the entry to the registry file, written atomically."""
  registry = {'datasets': {**data.registrations(str(directory)), name: entry}}
  path = directory / data.REGISTRY_FILE
  tmp = path.with_suffix(f'.{os.getpid()}.tmp')
  tmp.write_text(json.dumps(registry, indent=2, sort_keys=True) + '\n')
  os.replace(tmp, path)


def _forget_cached() -> None:
  """A replaced data set must not be served from this process' caches."""
  from harness import tasks  # pylint: disable=import-outside-toplevel
  for cached in (data._builder, data.load_split, data.split_labels, tasks.load_task):
    cached.cache_clear()


def register_dataset(name: str, path: str | os.PathLike, data_dir: str | None = None, *,
                     test_fraction: float = 0.2, split_seed: int = 0,
                     replace: bool = False) -> data.DatasetInfo:
  """Registers the user's own data under ``name``, for ``dataset='name'`` in any sweep.

  Args:
    name: the data set's name in configs (lowercase, not a built-in name).
    path: an ``.npz`` file of arrays or a folder of images per class (see the module docstring).
    data_dir: the TFDS data directory to build it into (None: ``$TRANSFERBENCH_DATA_DIR``, else
      ``~/tensorflow_datasets``); sweeps must use the same one.
    test_fraction: the share of each class held out as the test set, when the input has no
      test split of its own.
    split_seed: the seed of that split.
    replace: replace a data set registered under the same name.

  Returns:
    The registered data set's :class:`harness.data.DatasetInfo`.

  Raises:
    UserError: any problem with the name or the input; nothing is written then.
  """
  directory = pathlib.Path(data.resolve_data_dir(data_dir))
  _check_name(name, str(directory), replace)
  source = pathlib.Path(path).expanduser().absolute()
  kind, raw = read_source(source)
  splits, class_names = canonical(_split_off_test(raw, test_fraction, split_seed))
  directory.mkdir(parents=True, exist_ok=True)  # only TFDS's default (see resolve_data_dir)
  _build(_builder_class(name, splits, class_names, str(source)), directory)
  x = splits['train'][0]
  _record(directory, name, {
      'tfds_name': data.user_tfds_name(name), 'source': str(source), 'format': kind,
      'scale': 255.0 if x.dtype == np.uint8 else None, 'dtype': x.dtype.name,
      'input_shape': list(x.shape[1:]), 'class_names': list(class_names),
      'num_train': len(splits['train'][1]), 'num_test': len(splits['test'][1]),
      'split': ({'test_fraction': test_fraction, 'split_seed': split_seed} if 'all' in raw
                else None)})
  _forget_cached()
  return data.dataset_info(name, str(directory))


# ----------------------------------------------------------------------------------------------
# Command line: `transferbench data register NAME PATH [--data-dir DIR] ...` (wired by the CLI).


def add_arguments(parser: argparse.ArgumentParser) -> None:
  """The arguments of ``transferbench data register``."""
  parser.add_argument('name', help="the data set's name in configs: dataset='NAME'")
  parser.add_argument('path', help='an .npz file (x_train, y_train, x_test, y_test; or x, y) or a '
                      'folder of images per class (ROOT/CLASS/*.png, or ROOT/train|test/CLASS/)')
  parser.add_argument('--data-dir', default=None, help='TFDS data directory to build it into '
                      '(default: $TRANSFERBENCH_DATA_DIR, else ~/tensorflow_datasets)')
  parser.add_argument('--test-fraction', type=float, default=0.2,
                      help='share of each class held out for testing when PATH has no test split')
  parser.add_argument('--split-seed', type=int, default=0, help='seed of that split')
  parser.add_argument('--replace', action='store_true',
                      help='replace a data set registered under the same name')


def run(args: argparse.Namespace, print_fn: Callable[[str], None] = print) -> int:
  """Registers ``args.path`` as ``args.name`` and prints what was registered; exit status 0."""
  info = register_dataset(args.name, args.path, args.data_dir, test_fraction=args.test_fraction,
                          split_seed=args.split_seed, replace=args.replace)
  print_fn(f"registered '{info.name}': {info.num_classes} classes, input shape {info.input_shape}, "
           f'{info.num_train} train / {info.num_test} test examples in '
           f'{data.resolve_data_dir(args.data_dir)}; use it as dataset=\'{info.name}\'')
  return 0
