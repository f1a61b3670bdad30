"""Checkpoint files of public networks -> the harness's Flax variables (``harness.zoo.nets``).

Every supported ``--arch`` is a row of :data:`ZOO`: the model variant it becomes, the function
naming the original parameter of each Flax variable, and where its PyTorch definition lives (for
``harness.zoo.verify``). The conversion is driven by the Flax side: every variable of the
architecture must find its parameter in the file with the right shape, and the file may hold
nothing else, so a file of another architecture is refused at its first mismatching parameter.
"""

from __future__ import annotations

import dataclasses
import pathlib
import re
from typing import Callable, Mapping

import jax
import numpy as np

from harness import models
from harness.errors import UserError
from harness.zoo import bit, nets
from harness.zoo.nets import IMAGENET_MEAN, IMAGENET_STD

# Parameters a PyTorch state_dict holds that have no Flax counterpart and change no output.
IGNORED = re.compile(r'.*\.num_batches_tracked$')

_BN = {'scale': 'weight', 'bias': 'bias', 'mean': 'running_mean', 'var': 'running_var'}


def _resnet_key(path: tuple[str, ...]) -> str:
  """torchvision/timm ResNet key of a Flax variable path (layer, [block], module, leaf)."""
  layer, *inner, leaf = path
  if layer == models.HEAD:
    return f'fc.{"weight" if leaf == "kernel" else "bias"}'
  module = inner[-1]
  torch_leaf = 'weight' if leaf == 'kernel' else _BN[leaf]
  module = {'downsample_conv': 'downsample.0', 'downsample_bn': 'downsample.1'}.get(module, module)
  if layer == 'layer1':  # the stem
    return f'{module}.{torch_leaf}'
  stage, block = int(layer[len('layer'):]) - 1, int(inner[0][len('block'):])
  return f'layer{stage}.{block}.{module}.{torch_leaf}'


def _vgg_key(blocks) -> Callable[[tuple[str, ...]], str]:
  """torchvision VGG key of a Flax variable path: ``features.i`` counts convs, ReLUs and pools."""
  index, position = {}, 0
  for b, widths in enumerate(blocks):
    for c in range(len(widths)):
      index[(f'layer{b + 1}', f'conv{c}')] = position
      position += 2  # the conv and its ReLU
    position += 1    # the max pool
  dense = {f'layer{len(blocks) + 1}': 0, f'layer{len(blocks) + 2}': 3, models.HEAD: 6}

  def key(path):
    layer, *inner, leaf = path
    torch_leaf = 'weight' if leaf == 'kernel' else 'bias'
    if layer in dense:
      return f'classifier.{dense[layer]}.{torch_leaf}'
    return f'features.{index[(layer, inner[0])]}.{torch_leaf}'

  return key


def _torch_shape(shape: tuple[int, ...], leaf: str) -> tuple[int, ...]:
  """PyTorch's shape of a Flax variable: kernels (out, in, kh, kw) and (out, in)."""
  if leaf != 'kernel':
    return shape
  return shape[::-1] if len(shape) == 2 else (shape[3], shape[2], shape[0], shape[1])


def _from_torch(value: np.ndarray, flax_shape: tuple[int, ...]) -> np.ndarray:
  del flax_shape  # implied by the transposition
  if value.ndim == 4:
    return value.transpose(2, 3, 1, 0)
  return value.T if value.ndim == 2 else value


def _big_vision_shape(shape: tuple[int, ...], leaf: str) -> tuple[int, ...]:
  """big_vision's (TF's) shape of a Flax variable: the same, but the head is a 1x1 conv."""
  return (1, 1, *shape) if leaf == 'kernel' and len(shape) == 2 else shape


def _from_big_vision(value: np.ndarray, flax_shape: tuple[int, ...]) -> np.ndarray:
  return value.reshape(flax_shape)  # kernels are HWIO as in Flax; the head drops its 1x1


# Layout of an original file: (Flax shape, leaf name) -> original shape, and
# (original value, Flax shape) -> Flax value.
LAYOUTS = {'torch': (_torch_shape, _from_torch),
           'big_vision': (_big_vision_shape, _from_big_vision)}


@dataclasses.dataclass(frozen=True)
class ZooArch:
  """One importable network: model variant, key naming, PyTorch definition, input transform."""
  model: str
  key: Callable[[tuple[str, ...]], str]
  library: str            # 'torchvision' or 'timm': where verify builds the original
  constructor: str        # its model function in that library
  source: str             # the data set it was trained on (the checkpoint's source task)
  mean: tuple = IMAGENET_MEAN
  std: tuple = IMAGENET_STD
  image_size: int = 224
  layout: str = 'torch'   # a key of LAYOUTS


_VGG11 = nets.VARIANTS['zoo/vgg11'][1]['blocks']
_VGG16 = nets.VARIANTS['zoo/vgg16'][1]['blocks']

ZOO: dict[str, ZooArch] = {
    'tv_resnet18': ZooArch('zoo/resnet18', _resnet_key, 'torchvision', 'resnet18', 'imagenet2012'),
    'tv_resnet50': ZooArch('zoo/resnet50', _resnet_key, 'torchvision', 'resnet50', 'imagenet2012'),
    'tv_vgg11': ZooArch('zoo/vgg11', _vgg_key(_VGG11), 'torchvision', 'vgg11', 'imagenet2012'),
    'tv_vgg16': ZooArch('zoo/vgg16', _vgg_key(_VGG16), 'torchvision', 'vgg16', 'imagenet2012'),
    'timm_resnet50': ZooArch('zoo/resnet50', _resnet_key, 'timm', 'resnet50', 'imagenet2012'),
    # The released BiT-M-R50x1.npz (ImageNet-21k); timm's loader of that file is the reference.
    'bit_m_r50x1': ZooArch('zoo/bit_r50x1', bit.npz_key, 'timm', 'resnetv2_50x1_bit',
                           'imagenet21k', bit.BIT_MEAN, bit.BIT_STD, layout='big_vision'),
}


def get_arch(name: str) -> ZooArch:
  """The row of ``--arch NAME``.

  Raises:
    UserError: unknown name.
  """
  if name not in ZOO:
    raise UserError(f"unknown --arch '{name}': choose one of {', '.join(ZOO)}")
  return ZOO[name]


def read_state_dict(path: str | pathlib.Path) -> dict[str, np.ndarray]:
  """A checkpoint file's parameters as NumPy arrays: ``.safetensors`` (no torch needed) or a
  PyTorch ``.pth``/``.pt`` state_dict (read with ``torch.load(weights_only=True)``).

  Raises:
    UserError: no such file, an unknown suffix, or a file that is not a flat state_dict.
  """
  path = pathlib.Path(path)
  if not path.is_file():
    raise UserError(f'no checkpoint file {path}: give the path of a .pth or .safetensors file')
  if path.suffix == '.safetensors':
    from safetensors.numpy import load_file  # pylint: disable=import-outside-toplevel
    try:
      return dict(load_file(str(path)))
    except Exception as e:  # safetensors raises its own error types for a corrupt header
      raise UserError(f'{path} is not a readable .safetensors file ({e}); download it '
                      'again') from None
  if path.suffix == '.npz':
    try:
      with np.load(path, allow_pickle=False) as arrays:
        return {k: arrays[k] for k in arrays.files}
    except (OSError, ValueError) as e:
      raise UserError(f'{path} is not a readable .npz file ({e}); download it again') from None
  if path.suffix not in ('.pth', '.pt'):
    raise UserError(f"{path}: unknown checkpoint suffix '{path.suffix}'; give a .pth, .pt or "
                    '.safetensors state_dict, or a BiT .npz')
  torch = torch_module('reading a .pth file')
  try:
    loaded = torch.load(path, map_location='cpu', weights_only=True)
  except Exception as e:  # pickle errors of many kinds
    raise UserError(f'{path} is not a PyTorch state_dict torch.load can read ({type(e).__name__}); '
                    'save it with torch.save(model.state_dict(), PATH)') from None
  if not isinstance(loaded, Mapping) or not all(hasattr(v, 'numpy') for v in loaded.values()):
    keys = ', '.join(list(loaded)[:3]) if isinstance(loaded, Mapping) else type(loaded).__name__
    raise UserError(f'{path} is not a flat state_dict of tensors (found {keys}): save '
                    "model.state_dict() itself, e.g. torch.save(checkpoint['state_dict'], PATH)")
  return {k: v.detach().cpu().numpy() for k, v in loaded.items()}


def torch_module(purpose: str):
  """``torch``, or a UserError saying that ``purpose`` needs the ``zoo`` extra."""
  try:
    import torch  # pylint: disable=import-outside-toplevel
  except ImportError:
    raise UserError(f'{purpose} needs PyTorch: pip install "transferbench[zoo]"') from None
  return torch


def _flat(tree: Mapping) -> dict[tuple[str, ...], jax.ShapeDtypeStruct]:
  return {tuple(k.key for k in path): leaf
          for path, leaf in jax.tree_util.tree_flatten_with_path(tree)[0]}


def expected_shapes(arch: ZooArch, num_classes: int) -> dict[str, tuple[tuple, tuple, tuple]]:
  """Original key -> (its Flax path, original shape, Flax shape) for every variable of ``arch``,
  in the network's order (numbered modules in turn, the head last)."""
  model = models.build_model(arch.model, num_classes)
  size = arch.image_size
  shapes = jax.eval_shape(lambda: models.init_variables(model, jax.random.key(0), (size, size, 3)))
  out = {}
  for collection in ('params', 'batch_stats'):
    for path, leaf in _flat(shapes[collection]).items():
      shape = LAYOUTS[arch.layout][0](tuple(leaf.shape), path[-1])
      out[arch.key(path)] = ((collection, *path), shape, tuple(leaf.shape))
  head = {arch.key((models.HEAD, leaf)) for leaf in ('kernel', 'bias')}
  return dict(sorted(out.items(), key=lambda item: (item[0] in head, _natural(item[0]))))


def _head_classes(arch_name: str, arch: ZooArch, state: Mapping[str, np.ndarray]) -> int:
  head_key = arch.key((models.HEAD, 'bias'))
  if head_key not in state:
    raise UserError(f"the file is not a {arch_name} checkpoint: it has no parameter '{head_key}' "
                    f'(the classifier); {_fix(state)}')
  return int(state[head_key].shape[0])


def _fix(state: Mapping[str, np.ndarray]) -> str:
  """The fix for a file that does not fit its --arch: the arch it does fit, if any."""
  keys = {k for k in state if not IGNORED.match(k)}
  fits = []
  for name, arch in ZOO.items():
    head = arch.key((models.HEAD, 'bias'))
    if head in state:
      expected = expected_shapes(arch, int(state[head].shape[0]))
      shapes_fit = all(tuple(state[k].shape) == s for k, (_, s, _) in expected.items()
                       if k in state)
      if set(expected) == keys and shapes_fit:
        fits.append(name)
  if fits:
    return f"it is a {ZOO[fits[0]].constructor} state_dict: use --arch {' or '.join(fits)}"
  return f"it is none of {', '.join(ZOO)}: check the file and --arch"


def _natural(key: str) -> list:
  """Sort key putting 'layer2.10' after 'layer2.9' (the network's order for numbered modules)."""
  return [int(part) if part.isdigit() else part for part in re.split(r'(\d+)', key)]


def convert(arch_name: str, state: Mapping[str, np.ndarray]) -> dict:
  """The Flax ``{'params', 'batch_stats'}`` of a state_dict, checked parameter by parameter.

  Args:
    arch_name: a key of :data:`ZOO`.
    state: original parameter name -> array.

  Returns:
    The variables of ``models.build_model(ZOO[arch_name].model, num_classes)``.

  Raises:
    UserError: a missing, unexpected or mis-shaped parameter, named, with the fix.
  """
  arch = get_arch(arch_name)
  expected = expected_shapes(arch, _head_classes(arch_name, arch, state))
  for key, value in state.items():  # in the file's (the network's) order
    if key not in expected and not IGNORED.match(key):
      more = sum(k not in expected and not IGNORED.match(k) for k in state) - 1
      raise UserError(f"unexpected parameter '{key}' (and {more} more) for a {arch_name} "
                      f'state_dict: {_fix(state)}')
    if key in expected and tuple(value.shape) != expected[key][1]:
      raise UserError(f"parameter '{key}' has shape {tuple(value.shape)}, a {arch_name} has "
                      f'{expected[key][1]}: {_fix(state)}')
  missing = sorted((k for k in expected if k not in state), key=_natural)
  if missing:
    raise UserError(f"missing parameter '{missing[0]}' (and {len(missing) - 1} more) of a "
                    f'{arch_name} state_dict: {_fix(state)}')
  variables = {'params': {}, 'batch_stats': {}}
  to_flax = LAYOUTS[arch.layout][1]
  for key, ((collection, *path), _, flax_shape) in expected.items():
    node = variables[collection]
    for part in path[:-1]:
      node = node.setdefault(part, {})
    node[path[-1]] = np.ascontiguousarray(to_flax(np.asarray(state[key]), flax_shape), np.float32)
  return variables
