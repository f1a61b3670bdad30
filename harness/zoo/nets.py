"""Flax versions of public ImageNet networks (torchvision/timm ResNets, torchvision VGGs).

Each computes what its PyTorch original computes in eval mode (``harness.zoo.verify`` checks it
on every import), with the harness's layer naming, so "the first n layers" is a cut of the real
network:

* **ResNet-18/50** (torchvision, timm): ``layer1`` = the stem (7x7/2 conv, batch norm, ReLU,
  3x3/2 max pool); ``layer2 .. layer5`` = the four residual stages (torchvision's ``layer1 ..
  layer4``: 2/2/2/2 basic blocks for ResNet-18, 3/4/6/3 bottleneck blocks for ResNet-50, each
  stage with its own batch norms); ``head`` = global average pool + ``fc``. L = 6.
* **VGG-11/16** (torchvision, no batch norm): ``layer1 .. layer5`` = the five conv blocks (their
  3x3 convs with ReLUs, then the 2x2 max pool); ``layer6`` = fc6 (adaptive average pool to 7x7,
  flatten, ``classifier.0``, ReLU, dropout), ``layer7`` = fc7 (``classifier.3``, ReLU, dropout);
  ``head`` = ``classifier.6``. L = 8.

A stage rather than a block is one layer of a ResNet: a stage ends where the resolution and
width change, as a VGG block does, so n counts the same kind of unit in both families.

The input transform of the source network comes first, outside every layer (it has no
parameters): grayscale images are repeated to three channels, images are resized (bilinear) to
``image_size`` when they have another size (0: never), then normalised with ``mean`` and
``std`` (inputs are in [0, 1], as the harness's data sets give them).
"""

from __future__ import annotations

from typing import Sequence

import flax.linen as nn
import jax
import jax.numpy as jnp

from harness.models import HEAD, _emit, _frozen_at, batch_norm

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


def source_transform(x: jax.Array, image_size: int, mean: Sequence[float],
                     std: Sequence[float]) -> jax.Array:
  """The pretrained network's input transform (see the module docstring).

  Args:
    x: images ``(batch, height, width, channels)`` in [0, 1], 1 or 3 channels.
    image_size: the side the images are resized to (0: keep their size).
    mean: per-channel mean subtracted.
    std: per-channel standard deviation divided by.

  Returns:
    ``(batch, size, size, 3)`` normalised images.
  """
  if x.shape[-1] == 1:
    x = jnp.repeat(x, 3, axis=-1)
  if image_size and x.shape[1:3] != (image_size, image_size):
    x = jax.image.resize(x, (x.shape[0], image_size, image_size, x.shape[-1]), 'bilinear')
  return (x - jnp.asarray(mean, x.dtype)) / jnp.asarray(std, x.dtype)


def _conv(features: int, kernel: int, stride: int = 1, padding: int = 0, name: str = '',
          bias: bool = False) -> nn.Conv:
  """A conv padded as PyTorch pads (explicitly, symmetric): 'SAME' differs for strided convs."""
  return nn.Conv(features, (kernel, kernel), stride, padding=((padding, padding),) * 2,
                 use_bias=bias, name=name)


class ResNetStem(nn.Module):
  """7x7/2 conv, batch norm, ReLU, 3x3/2 max pool (padding 1): torchvision's conv1..maxpool."""
  features: int = 64

  @nn.compact
  def __call__(self, x, train: bool, frozen: jax.Array):
    x = _conv(self.features, 7, 2, 3, name='conv1')(x)
    x = nn.relu(batch_norm(x, train=train, frozen=frozen, name='bn1'))
    return nn.max_pool(x, (3, 3), strides=(2, 2), padding=((1, 1), (1, 1)))


class BasicBlock(nn.Module):
  """torchvision's BasicBlock: two 3x3 convs, projection shortcut when the shape changes."""
  features: int
  stride: int
  project: bool

  @nn.compact
  def __call__(self, x, train: bool, frozen: jax.Array):
    bn = lambda y, name: batch_norm(y, train=train, frozen=frozen, name=name)
    y = nn.relu(bn(_conv(self.features, 3, self.stride, 1, name='conv1')(x), 'bn1'))
    y = bn(_conv(self.features, 3, 1, 1, name='conv2')(y), 'bn2')
    if self.project:
      x = bn(_conv(self.features, 1, self.stride, name='downsample_conv')(x), 'downsample_bn')
    return nn.relu(x + y)


class Bottleneck(nn.Module):
  """torchvision's Bottleneck (ResNet v1.5: the stride is on the 3x3 conv), expansion 4."""
  features: int
  stride: int
  project: bool

  @nn.compact
  def __call__(self, x, train: bool, frozen: jax.Array):
    bn = lambda y, name: batch_norm(y, train=train, frozen=frozen, name=name)
    y = nn.relu(bn(_conv(self.features, 1, name='conv1')(x), 'bn1'))
    y = nn.relu(bn(_conv(self.features, 3, self.stride, 1, name='conv2')(y), 'bn2'))
    y = bn(_conv(self.features * 4, 1, name='conv3')(y), 'bn3')
    if self.project:
      x = bn(_conv(self.features * 4, 1, self.stride, name='downsample_conv')(x), 'downsample_bn')
    return nn.relu(x + y)


BLOCKS = {'basic': (BasicBlock, 1), 'bottleneck': (Bottleneck, 4)}  # class, expansion


class ResNetStage(nn.Module):
  """One residual stage: ``depth`` blocks, the first with ``stride`` (one transferable layer)."""
  block: str
  features: int
  depth: int
  stride: int

  @nn.compact
  def __call__(self, x, train: bool, frozen: jax.Array):
    cls, expansion = BLOCKS[self.block]
    for i in range(self.depth):
      stride = self.stride if i == 0 else 1
      project = i == 0 and (stride != 1 or x.shape[-1] != self.features * expansion)
      x = cls(self.features, stride, project, name=f'block{i}')(x, train, frozen)
    return x


class ZooResNet(nn.Module):
  """ImageNet ResNet (He et al. 2016) as torchvision/timm define it: stem, four stages, head.

  Attributes:
    num_classes: output classes of the head.
    block: 'basic' (ResNet-18/34) or 'bottleneck' (ResNet-50 and deeper).
    stage_sizes: blocks per stage.
    image_size, mean, std: the source network's input transform (:func:`source_transform`).
  """
  num_classes: int
  block: str = 'basic'
  stage_sizes: Sequence[int] = (2, 2, 2, 2)
  image_size: int = 224
  mean: Sequence[float] = IMAGENET_MEAN
  std: Sequence[float] = IMAGENET_STD

  @property
  def num_layers(self) -> int:
    return len(self.stage_sizes) + 2

  @nn.compact
  def __call__(self, x, train: bool = False, frozen: jax.Array | None = None, start: int = 0,
               stop: int | None = None):
    if start < 1:
      x = source_transform(x, self.image_size, self.mean, self.std)
      x = _emit(self, 1, ResNetStem(name='layer1')(x, train, _frozen_at(frozen, 0)))
    if stop == 1:
      return x
    for i, depth in enumerate(self.stage_sizes):
      if i + 2 > start:
        stage = ResNetStage(self.block, 64 * 2 ** i, depth, 1 if i == 0 else 2,
                            name=f'layer{i + 2}')
        x = _emit(self, i + 2, stage(x, train, _frozen_at(frozen, i + 1)))
      if stop == i + 2:
        return x
    x = jnp.mean(x, axis=(1, 2))  # Global average pool (parameter-free).
    return nn.Dense(self.num_classes, name=HEAD)(x)


def adaptive_avg_pool(x: jax.Array, size: int) -> jax.Array:
  """PyTorch's ``AdaptiveAvgPool2d(size)``: bin i covers floor(i*H/size) .. ceil((i+1)*H/size)."""
  def bins(length):
    return [(i * length // size, -(-(i + 1) * length // size)) for i in range(size)]
  rows = [jnp.mean(x[:, a:b], axis=1) for a, b in bins(x.shape[1])]
  x = jnp.stack(rows, axis=1)
  cols = [jnp.mean(x[:, :, a:b], axis=2) for a, b in bins(x.shape[2])]
  return jnp.stack(cols, axis=2)


class VGGBlock(nn.Module):
  """3x3 convs (padding 1) with ReLUs, then a 2x2 max pool: one conv block of a VGG."""
  widths: Sequence[int]

  @nn.compact
  def __call__(self, x):
    for i, width in enumerate(self.widths):
      x = nn.relu(_conv(width, 3, 1, 1, name=f'conv{i}', bias=True)(x))
    return nn.max_pool(x, (2, 2), strides=(2, 2))


class ZooVGG(nn.Module):
  """ImageNet VGG (Simonyan & Zisserman 2015) as torchvision defines it (no batch norm).

  Attributes:
    num_classes: output classes of the head.
    blocks: conv widths of each of the five blocks.
    dense: widths of fc6 and fc7.
    dropout: dropout rate after fc6 and fc7 (torchvision: 0.5).
    image_size, mean, std: the source network's input transform (:func:`source_transform`).
  """
  num_classes: int
  blocks: Sequence[Sequence[int]] = ((64,), (128,), (256, 256), (512, 512), (512, 512))
  dense: Sequence[int] = (4096, 4096)
  dropout: float = 0.5
  image_size: int = 224
  mean: Sequence[float] = IMAGENET_MEAN
  std: Sequence[float] = IMAGENET_STD

  @property
  def num_layers(self) -> int:
    return len(self.blocks) + len(self.dense) + 1

  @nn.compact
  def __call__(self, x, train: bool = False, frozen: jax.Array | None = None, start: int = 0,
               stop: int | None = None):
    del frozen  # No batch norm.
    if start < 1:
      x = source_transform(x, self.image_size, self.mean, self.std)
    for i, widths in enumerate(self.blocks):
      if i + 1 > start:
        x = _emit(self, i + 1, VGGBlock(widths, name=f'layer{i + 1}')(x))
      if stop == i + 1:
        return x
    for j, width in enumerate(self.dense):
      index = len(self.blocks) + j + 1
      if index > start:
        if j == 0:  # PyTorch flattens (channels, 7, 7): channels first keeps fc6's weight order.
          x = adaptive_avg_pool(x, 7).transpose(0, 3, 1, 2).reshape(x.shape[0], -1)
        x = _emit(self, index, nn.relu(nn.Dense(width, name=f'layer{index}')(x)))
      if stop == index:
        return x
      if index > start and self.dropout:
        x = nn.Dropout(self.dropout, deterministic=not train)(x)
    return nn.Dense(self.num_classes, name=HEAD)(x)


ARCHITECTURES = {'zoo_resnet': ZooResNet, 'zoo_vgg': ZooVGG}

_VGG11 = ((64,), (128,), (256, 256), (512, 512), (512, 512))
_VGG16 = ((64, 64), (128, 128), (256, 256, 256), (512, 512, 512), (512, 512, 512))

# Model variants (``config.model``) of imported networks; ``image_size`` may be overridden.
VARIANTS = {
    'zoo/resnet18': ('zoo_resnet', dict(block='basic', stage_sizes=(2, 2, 2, 2))),
    'zoo/resnet50': ('zoo_resnet', dict(block='bottleneck', stage_sizes=(3, 4, 6, 3))),
    'zoo/vgg11': ('zoo_vgg', dict(blocks=_VGG11)),
    'zoo/vgg16': ('zoo_vgg', dict(blocks=_VGG16)),
}

# Keyword arguments that change only the input transform, not any parameter's shape: a checkpoint
# imported at one image size serves a sweep at another.
INPUT_KWARGS = frozenset({'image_size'})
