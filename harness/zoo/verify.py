"""The import's self-check: the PyTorch original and its Flax conversion on the same inputs.

Both run in eval mode on a few seeded random images; the largest absolute logit difference is
what ``transferbench import-weights`` prints and refuses above :data:`TOLERANCE`. The tests also
compare the output of every transferable layer (:func:`torch_features`).
"""

from __future__ import annotations

import functools
import pathlib
import tempfile
from typing import Mapping

import jax
import numpy as np

from harness import models
from harness.errors import UserError
from harness.zoo.convert import ZooArch, get_arch, torch_module

TOLERANCE = 1e-3  # largest absolute logit difference an import may have


def _import_torchvision():
  """``torchvision``, also where its wheel cannot load its C++ ops.

  PyPI's torchvision wheels are built against CUDA PyTorch; next to a CPU-only torch their
  extension does not load and ``import torchvision`` stops at registering fake kernels for
  ``torchvision::nms``/``qnms`` ("operator ... does not exist"). The model definitions use none
  of those ops, so declaring the two schemas lets the pure-Python models import unchanged.
  """
  import torch  # pylint: disable=import-outside-toplevel
  try:
    import torchvision  # pylint: disable=import-outside-toplevel
    return torchvision
  except RuntimeError as e:
    if 'torchvision::nms' not in str(e):
      raise
  library = torch.library.Library('torchvision', 'DEF')  # pylint: disable=no-member
  for op in ('nms', 'qnms'):
    library.define(f'{op}(Tensor dets, Tensor scores, float iou_threshold) -> Tensor')
  _import_torchvision.library = library  # kept alive: the schemas live as long as the object
  import torchvision  # pylint: disable=import-outside-toplevel,reimported
  return torchvision


def torch_model(arch: ZooArch, num_classes: int):
  """A randomly initialised PyTorch original of ``arch`` (``weights=None``), in eval mode.

  Raises:
    UserError: torch (or the library) is not installed.
  """
  try:
    torchvision = _import_torchvision()  # timm imports it too
    if arch.library == 'timm':
      import timm  # pylint: disable=import-outside-toplevel
      model = timm.create_model(arch.constructor, pretrained=False, num_classes=num_classes)
    else:
      model = getattr(torchvision.models, arch.constructor)(
          weights=None, num_classes=num_classes)
  except ImportError as e:
    raise UserError(f'checking the import needs {e.name}: pip install "transferbench[zoo]" '
                    '(or pass --no-check)') from None
  return model.eval()


def load_torch_model(arch: ZooArch, state: Mapping[str, np.ndarray]):
  """The PyTorch original with ``state`` loaded strictly (every key, no other)."""
  torch = torch_module('checking the import (or pass --no-check)')
  num_classes = state[arch.key((models.HEAD, 'bias'))].shape[0]
  model = torch_model(arch, int(num_classes))
  if arch.layout == 'big_vision':  # timm reads the .npz itself, with its own key mapping
    from timm.models import resnetv2  # pylint: disable=import-outside-toplevel
    with tempfile.TemporaryDirectory() as tmp:
      np.savez(pathlib.Path(tmp, 'bit.npz'), **state)
      with torch.no_grad():
        load = resnetv2._load_weights  # pylint: disable=protected-access
        load(model, str(pathlib.Path(tmp, 'bit.npz')))
    return model
  model.load_state_dict({k: torch.from_numpy(np.asarray(v)) for k, v in state.items()}, strict=True)
  return model


def random_images(count: int, size: int, seed: int = 0) -> np.ndarray:
  """Seeded uniform images in [0, 1], ``(count, size, size, 3)`` (the harness's layout)."""
  return np.random.default_rng(seed).uniform(size=(count, size, size, 3)).astype(np.float32)


def torch_input(arch: ZooArch, images: np.ndarray):
  """What the PyTorch network receives for ``images``: normalised, channels first."""
  import torch  # pylint: disable=import-outside-toplevel
  x = (images - np.asarray(arch.mean, np.float32)) / np.asarray(arch.std, np.float32)
  return torch.from_numpy(np.ascontiguousarray(x.transpose(0, 3, 1, 2)))


def _feature_modules(arch: ZooArch, model) -> list:
  """The PyTorch modules whose outputs are the harness layers' outputs, in order."""
  if arch.model.startswith('zoo/resnet'):
    return [model.maxpool, model.layer1, model.layer2, model.layer3, model.layer4]
  if arch.model.startswith('zoo/bit'):  # the last stage ends with the final norm and ReLU
    return [model.stem, *list(model.stages)[:3], model.norm]
  pools = [m for m in model.features if type(m).__name__ == 'MaxPool2d']
  return pools + [model.classifier[1], model.classifier[4]]  # the ReLUs of fc6 and fc7


def torch_features(arch: ZooArch, model, images: np.ndarray) -> tuple[np.ndarray, dict]:
  """Logits and each transferable layer's output of the PyTorch original (channels last)."""
  import torch  # pylint: disable=import-outside-toplevel
  outputs = []
  hooks = [m.register_forward_hook(lambda _m, _i, out: outputs.append(out.detach().numpy()))
           for m in _feature_modules(arch, model)]
  try:
    with torch.no_grad():
      logits = model(torch_input(arch, images)).numpy()
  finally:
    for hook in hooks:
      hook.remove()
  names = models.layer_names(len(outputs) + 1)
  return logits, {n: o.transpose(0, 2, 3, 1) if o.ndim == 4 else o for n, o in zip(names, outputs)}


def flax_features(arch: ZooArch, variables: dict, images: np.ndarray) -> tuple[np.ndarray, dict]:
  """Logits and each transferable layer's output of the converted network (at the images' size)."""
  num_classes = variables['params'][models.HEAD]['bias'].shape[0]
  model = models.build_model(arch.model, int(num_classes), image_size=images.shape[1])
  logits = jax.jit(functools.partial(model.apply, train=False))(variables, images)
  features = jax.jit(functools.partial(models.layer_outputs, model))(variables, images)
  return np.asarray(logits), {k: np.asarray(v) for k, v in features.items()}


def max_logit_difference(arch_name: str, state: Mapping[str, np.ndarray], variables: dict,
                         count: int = 2, seed: int = 0) -> float:
  """The largest absolute difference between the original's and the conversion's logits.

  Args:
    arch_name: a key of ``harness.zoo.convert.ZOO``.
    state: the original parameters.
    variables: their conversion.
    count: how many random images (seeded) at the network's own image size.
    seed: their seed.
  """
  arch = get_arch(arch_name)
  images = random_images(count, arch.image_size, seed)
  expected, _ = torch_features(arch, load_torch_model(arch, state), images)
  num_classes = variables['params'][models.HEAD]['bias'].shape[0]
  model = models.build_model(arch.model, int(num_classes))
  logits = jax.jit(functools.partial(model.apply, train=False))(variables, images)
  return float(np.max(np.abs(np.asarray(logits) - expected)))
