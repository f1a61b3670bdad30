"""BiT (Kolesnikov et al. 2020): ResNet-v2 with group norm and weight standardisation, in Flax.

The computation is that of the released ``BiT-M-R50x1.npz`` as big_vision and timm
(``resnetv2_50x1_bit``) run it: pre-activation bottleneck units (group norm with 32 groups and
ReLU before each conv, the projection shortcut taken from the pre-activated input, the stride on
the 3x3 conv), every conv weight-standardised, a stem of a 7x7/2 conv then a 3x3/2 max pool over
a zero padding of one pixel.

Layers: ``layer1`` = the stem (conv, padding, max pool; no normalisation in a pre-activation
net); ``layer2 .. layer5`` = the four stages; the last stage ends with the network's final group
norm and ReLU (they have parameters, and with them ``layer1 .. layer5`` is the whole feature
extractor BiT fine-tunes from); ``head`` = global average pool + the linear classifier. L = 6.
The outputs of ``layer1 .. layer4`` are the un-normalised residual stream between stages.
"""

from __future__ import annotations

from typing import Sequence

import flax.linen as nn
import jax
import jax.numpy as jnp

from harness.models import HEAD, _emit
from harness.zoo.nets import source_transform

BIT_MEAN = (0.5, 0.5, 0.5)  # BiT's inputs are in [-1, 1]
BIT_STD = (0.5, 0.5, 0.5)


class StdConv(nn.Conv):
  """A conv whose kernel is standardised per output channel (mean 0, variance 1 over kh, kw, in)."""

  def param(self, name, *args, **kwargs):
    value = super().param(name, *args, **kwargs)
    if name == 'kernel':
      mean = jnp.mean(value, axis=(0, 1, 2), keepdims=True)
      var = jnp.mean(jnp.square(value - mean), axis=(0, 1, 2), keepdims=True)
      value = (value - mean) * jax.lax.rsqrt(var + 1e-8)
    return value


def _std_conv(features: int, kernel: int, stride: int = 1, name: str = '') -> StdConv:
  pad = (kernel - 1) // 2
  return StdConv(features, (kernel, kernel), stride, padding=((pad, pad),) * 2, use_bias=False,
                 name=name)


def _group_norm(name: str) -> nn.GroupNorm:
  return nn.GroupNorm(num_groups=32, epsilon=1e-5, use_fast_variance=False, name=name)


class PreActBottleneck(nn.Module):
  """BiT's unit: norm-ReLU-conv 1x1, norm-ReLU-conv 3x3 (stride), norm-ReLU-conv 1x1 (x4)."""
  features: int
  stride: int
  project: bool

  @nn.compact
  def __call__(self, x):
    pre = nn.relu(_group_norm('norm1')(x))
    shortcut = _std_conv(self.features * 4, 1, self.stride, 'proj')(pre) if self.project else x
    y = _std_conv(self.features, 1, name='conv1')(pre)
    y = _std_conv(self.features, 3, self.stride, 'conv2')(nn.relu(_group_norm('norm2')(y)))
    y = _std_conv(self.features * 4, 1, name='conv3')(nn.relu(_group_norm('norm3')(y)))
    return y + shortcut


class BiTStage(nn.Module):
  """One stage of units; the last stage also applies the final group norm and ReLU."""
  features: int
  depth: int
  stride: int
  final_norm: bool

  @nn.compact
  def __call__(self, x):
    for i in range(self.depth):
      x = PreActBottleneck(self.features, self.stride if i == 0 else 1, i == 0,
                           name=f'unit{i}')(x)
    if self.final_norm:
      x = nn.relu(_group_norm('final_norm')(x))
    return x


class BiTStem(nn.Module):
  """7x7/2 weight-standardised conv, zero padding of 1, 3x3/2 max pool."""
  features: int

  @nn.compact
  def __call__(self, x):
    x = _std_conv(self.features, 7, 2, 'conv')(x)
    x = jnp.pad(x, ((0, 0), (1, 1), (1, 1), (0, 0)))
    return nn.max_pool(x, (3, 3), strides=(2, 2))


class BiTResNet(nn.Module):
  """BiT ResNet-v2 (R50x1 by default).

  Attributes:
    num_classes: output classes of the head.
    stage_sizes: units per stage.
    width: width factor (x1, x3...).
    image_size, mean, std: the source network's input transform.
  """
  num_classes: int
  stage_sizes: Sequence[int] = (3, 4, 6, 3)
  width: int = 1
  image_size: int = 224
  mean: Sequence[float] = BIT_MEAN
  std: Sequence[float] = BIT_STD

  @property
  def num_layers(self) -> int:
    return len(self.stage_sizes) + 2

  @nn.compact
  def __call__(self, x, train: bool = False, frozen: jax.Array | None = None, start: int = 0,
               stop: int | None = None):
    del train, frozen  # Group norm has no running statistics; no dropout.
    if start < 1:
      x = source_transform(x, self.image_size, self.mean, self.std)
      x = _emit(self, 1, BiTStem(64 * self.width, name='layer1')(x))
    if stop == 1:
      return x
    last = len(self.stage_sizes) - 1
    for i, depth in enumerate(self.stage_sizes):
      if i + 2 > start:
        stage = BiTStage(64 * self.width * 2 ** i, depth, 1 if i == 0 else 2, i == last,
                         name=f'layer{i + 2}')
        x = _emit(self, i + 2, stage(x))
      if stop == i + 2:
        return x
    x = jnp.mean(x, axis=(1, 2))
    return nn.Dense(self.num_classes, name=HEAD)(x)


ARCHITECTURES = {'bit': BiTResNet}
VARIANTS = {'zoo/bit_r50x1': ('bit', dict(stage_sizes=(3, 4, 6, 3), width=1))}


def npz_key(path: tuple[str, ...]) -> str:
  """The key of the released BiT ``.npz`` of a Flax variable path."""
  layer, *inner, leaf = path
  if layer == HEAD:
    return f'resnet/head/conv2d/{leaf}'
  if layer == 'layer1':
    return 'resnet/root_block/standardized_conv2d/kernel'
  if inner[0] == 'final_norm':
    return f"resnet/group_norm/{'gamma' if leaf == 'scale' else 'beta'}"
  stage, unit, module = int(layer[len('layer'):]) - 1, int(inner[0][len('unit'):]) + 1, inner[1]
  where = f'resnet/block{stage}/unit{unit:02d}'
  if module == 'proj':
    return f'{where}/a/proj/standardized_conv2d/kernel'
  letter = 'abc'[int(module[-1]) - 1]
  if module.startswith('conv'):
    return f'{where}/{letter}/standardized_conv2d/kernel'
  return f"{where}/{letter}/group_norm/{'gamma' if leaf == 'scale' else 'beta'}"
