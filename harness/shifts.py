"""Deterministic distribution shifts of the embedded data sets, named ``BASE@SHIFT``.

A shifted data set is built once into the TFDS data directory by the same kind of builder as the
embedded data (:class:`harness.data._EmbeddedBuilder`), from the base set's raw arrays, so it is
read, cached and split exactly like its base. Naming (docs/data.md, "Shifted data sets"):

    BASE@KINDPARAM[-sSEED]      e.g. mnist@block4, mnist@noise0.3-s1, digits@labelperm, mnist@subpop1

``BASE`` is an embedded set (mnist, animal_mnist, digits, mnist1d); ``SEED`` (default 0) seeds
every random draw. Kinds (:data:`SHIFTS`), with pixel values in units of the base's maximum:

* ``noise<sd>``: add Gaussian noise of standard deviation ``sd`` x maximum, clip to the range.
* ``blur<sigma>``: Gaussian blur of ``sigma`` pixels over the spatial axes (no randomness).
* ``contrast<c>``: per example, ``mean + c (x - mean)`` (``c < 1`` lowers the contrast).
* ``rot<deg>``: rotate 2-D images by ``deg`` degrees about the centre (bilinear, zeros outside).
* ``block<b>``: cut each example into ``b x b`` blocks (``b`` samples for 1-D signals) and put
  them back in an order drawn per example (Neyshabur et al. 2020's block-shuffled targets):
  the multiset of blocks, hence the pixel histogram, is kept; ``b`` must divide the side.
* ``labelperm``: relabel classes by one permutation of the class ids (inputs unchanged).
* ``subpop<m>``: a sub-population shift (Santurkar et al.'s BREEDS, in miniature): the C classes
  form C/2 super-classes, super-class i = classes {i, i + C/2} (MNIST: digits {0, 5}, {1, 6}...);
  keep the examples of member ``m`` (0: classes 0..C/2-1, 1: classes C/2..C-1) and label them by
  their super-class. ``subpop0`` and ``subpop1`` have the same labels and disjoint sub-classes:
  train on one, transfer to the other.

Both splits get the shift; the draws of a split come from ``default_rng([seed, crc32(kind),
crc32(split)])`` (the label permutation: one for both splits), so a shifted set is the same on every machine and in every process.
"""

from __future__ import annotations

import dataclasses
import functools
import re
import types
import zlib
from typing import Callable

import numpy as np
from scipy import ndimage

from harness.errors import UserError

_NAME = re.compile(r'^(?P<base>[a-z0-9_]+)@(?P<kind>[a-z]+)(?P<param>[0-9.]*)(?:-s(?P<seed>\d+))?$')
_BASES = ('mnist', 'animal_mnist', 'digits', 'mnist1d')
_RANGE = {'mnist': 255.0, 'animal_mnist': 255.0, 'digits': 16.0, 'mnist1d': None}  # None: no clip


@dataclasses.dataclass(frozen=True)
class Shift:
  """One kind of shift: ``apply(x, y, param, rng) -> (x, y)`` on float arrays (N, *shape)."""
  apply: Callable
  needs_param: bool
  summary: str
  per_split: bool = True  # False: one draw shared by both splits (a relabelling must agree)
  classes: Callable | None = None  # (base class names, param) -> the shifted set's; None: same


def _noise(x, y, sd, rng, scale):
  return x + rng.normal(0.0, sd * scale, x.shape), y


def _blur(x, y, sigma, rng, scale):
  spatial = (0,) + (sigma,) * (x.ndim - 2) + (0,)  # no blur across examples or channels
  return ndimage.gaussian_filter(x, spatial, mode='constant'), y


def _contrast(x, y, c, rng, scale):
  mean = x.mean(axis=tuple(range(1, x.ndim)), keepdims=True)
  return mean + c * (x - mean), y


def _rotate(x, y, degrees, rng, scale):
  if x.ndim != 4:
    raise UserError('rot<deg> rotates 2-D images: use another shift for 1-D signals (mnist1d)')
  return ndimage.rotate(x, degrees, axes=(1, 2), reshape=False, order=1, mode='constant'), y


def block_shuffle(x: np.ndarray, b: int, rng: np.random.Generator) -> np.ndarray:
  """Each example's ``b``-blocks in an order drawn per example.

  Args:
    x: (N, H, W, C) images or (N, L, C) signals; ``b`` divides H, W (or L).
    b: block side.
    rng: the generator of the per-example orders.
  """
  spatial = x.shape[1:-1]
  if b < 1 or any(s % b for s in spatial):
    raise UserError(f'block{b}: the block size must divide the example side(s) {spatial} '
                    f'(e.g. {", ".join(str(d) for d in range(1, spatial[0] + 1) if spatial[0] % d == 0)})')
  n, c, grid = len(x), x.shape[-1], [s // b for s in spatial]
  # (N, g1, b, g2, b, C) -> (N, g1*g2, b, b, C): one row per block, in reading order.
  shape = [n] + [v for g in grid for v in (g, b)] + [c]
  order = [0] + [1 + 2 * i for i in range(len(grid))] + [2 + 2 * i for i in range(len(grid))] + [len(shape) - 1]
  blocks = x.reshape(shape).transpose(order).reshape(n, -1, *([b] * len(grid)), c)
  perm = np.argsort(rng.random(blocks.shape[:2]), axis=1)
  blocks = np.take_along_axis(blocks, perm.reshape(perm.shape + (1,) * (blocks.ndim - 2)), axis=1)
  back = blocks.reshape([n] + grid + [b] * len(grid) + [c])
  inverse = [0] + [v for i in range(len(grid)) for v in (1 + i, 1 + len(grid) + i)] + [back.ndim - 1]
  return back.transpose(inverse).reshape(x.shape)


def _block(x, y, b, rng, scale):
  if b != int(b):
    raise UserError(f'block{b:g}: the block size is a whole number of pixels, e.g. block4')
  return block_shuffle(x, int(b), rng), y


def _labelperm(x, y, param, rng, scale):
  # Every split of the embedded bases holds every class, so both splits draw the same size.
  return x, rng.permutation(int(y.max()) + 1)[y]


def _members(param: float) -> int:
  if param not in (0, 1):
    raise UserError(f'subpop{param:g}: the member of each super-class is 0 or 1 (subpop0: '
                    'classes 0..C/2-1, subpop1: classes C/2..C-1)')
  return int(param)


def _subpop(x, y, member, rng, scale):
  half = (int(y.max()) + 1) // 2  # every split of the embedded bases holds every class
  keep = y // half == _members(member)
  return x[keep], y[keep] % half


def _superclass_names(names: tuple[str, ...], member: float) -> tuple[str, ...]:
  _members(member)
  if len(names) % 2:
    raise UserError(f'subpop needs an even number of classes to pair them (this base has '
                    f'{len(names)}): use mnist, animal_mnist, digits or mnist1d')
  half = len(names) // 2
  return tuple(f'{names[i]}|{names[i + half]}' for i in range(half))


SHIFTS: dict[str, Shift] = {
    'noise': Shift(_noise, True, 'Gaussian noise, sd x the maximum pixel value'),
    'blur': Shift(_blur, True, 'Gaussian blur, sigma in pixels'),
    'contrast': Shift(_contrast, True, 'contrast scaled by c about each example\'s mean'),
    'rot': Shift(_rotate, True, 'rotation by deg degrees'),
    'block': Shift(_block, True, 'per-example shuffle of b x b blocks'),
    'labelperm': Shift(_labelperm, False, 'one seeded permutation of the class labels',
                       per_split=False),
    'subpop': Shift(_subpop, True, 'member m of the super-classes {i, i + C/2}, labelled by '
                    'super-class', classes=_superclass_names),
}


@dataclasses.dataclass(frozen=True)
class ShiftName:
  """A parsed ``BASE@KINDPARAM[-sSEED]``."""
  base: str
  kind: str
  param: float | None
  seed: int

  @property
  def tfds_name(self) -> str:
    param = '' if self.param is None else f'{self.param:g}'.replace('.', 'p')
    return f'tb_shift_{self.base}_{self.kind}{param}_s{self.seed}'


def parse(name: str) -> ShiftName:
  """Parses a shifted data set name.

  Raises:
    UserError: a malformed name, an unknown base or kind, or a missing / extra parameter.
  """
  m = _NAME.match(name)
  help_ = ('name shifted data as BASE@KINDPARAM[-sSEED], e.g. mnist@block4 or digits@labelperm '
           f'(bases: {", ".join(_BASES)}; kinds: {", ".join(SHIFTS)}; docs/data.md)')
  if not m:
    raise UserError(f"malformed shifted data set name '{name}': {help_}")
  base, kind, param = m['base'], m['kind'], m['param']
  if base not in _BASES or kind not in SHIFTS:
    raise UserError(f"unknown {'base' if base not in _BASES else 'shift'} in '{name}': {help_}")
  if SHIFTS[kind].needs_param != bool(param):
    need = 'needs a parameter, e.g. ' + kind + '2' if SHIFTS[kind].needs_param else 'takes none'
    raise UserError(f"shift '{kind}' in '{name}' {need}: {help_}")
  try:
    value = float(param) if param else None
  except ValueError:
    raise UserError(f"bad parameter '{param}' in '{name}': {help_}") from None
  return ShiftName(base, kind, value, int(m['seed'] or 0))


def apply(shift: ShiftName, split: str, x: np.ndarray, y: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
  """The shifted arrays of one split, in the base's dtype (uint8 rounded and clipped)."""
  kind = SHIFTS[shift.kind]
  rng = np.random.default_rng([shift.seed, zlib.crc32(shift.kind.encode()),
                               zlib.crc32(split.encode()) if kind.per_split else 0])
  scale = _RANGE[shift.base]
  xs, ys = kind.apply(np.asarray(x, np.float64), np.asarray(y), shift.param, rng,
                                    scale if scale else 1.0)
  if scale:
    xs = np.clip(np.round(xs), 0, scale)
  return xs.astype(x.dtype), ys.astype(y.dtype)


@functools.lru_cache(maxsize=None)
def builder_class(name: str) -> type:
  """The TFDS builder class of a shifted data set: the base's builder with shifted raw arrays."""
  from harness import data
  shift = parse(name)
  base = data.DATASETS[shift.base].builder

  def raw() -> dict:
    return {split: apply(shift, split, x, y) for split, (x, y) in base.RAW().items()}

  body = {'name': shift.tfds_name, 'RAW': staticmethod(raw),
          '__doc__': f'{base.__doc__.splitlines()[0]} Shifted: {name} '
                     f'({SHIFTS[shift.kind].summary}).'}
  if SHIFTS[shift.kind].classes is not None:  # a shift that changes the label space
    body['CLASS_NAMES'] = SHIFTS[shift.kind].classes(tuple(base.CLASS_NAMES), shift.param)
  return types.new_class(shift.tfds_name, (base,), {'skip_registration': True},
                         lambda ns: ns.update(body))


def shift_spec(name: str):
  """The :class:`harness.data.DatasetSpec` of a shifted data set (its base's preprocessing)."""
  from harness import data
  base = data.DATASETS[parse(name).base]
  return dataclasses.replace(base, tfds_name=parse(name).tfds_name, builder=builder_class(name))
