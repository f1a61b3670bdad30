"""Models whose transferable layers form an ordered, named list.

Every model here names its layers ``layer1 .. layer{L-1}`` followed by ``head`` (the classifier,
never transferred), so "the first n layers" is well defined: the top-level entries
``layer1 .. layer{n}`` of the ``params`` (and, for batch norm, ``batch_stats``) collections.
A layer owns everything between two cut points: a conv layer includes its non-linearity, pooling
and normalisation; a residual block is one layer with its batch norms; global pooling belongs to
the head, which has no other job than to map features to classes.

Every model can run part of itself (``start``, ``stop``; static Python ints): ``start=d`` takes
the output of ``layer{d}`` instead of the input and runs the layers after it, ``stop=d`` returns the
output of ``layer{d}``. A run whose first d layers are frozen computes their output on its data
once and trains the rest on it (``harness.engine``); see :func:`frozen_prefix_cacheable`.

Every model takes ``frozen``, a float vector of length L (1 = the layer is frozen), at call time.
It only matters for batch norm: a frozen layer normalises with its (copied) running statistics,
in training as at evaluation, so the layer is the same fixed function as in its source network.
Because ``frozen`` is data, not program structure, one compiled step serves every condition.

Models are chosen by name from :data:`VARIANTS` (``'mlp/3x256'``, ``'cnn/small'``,
``'alexnet'``...), a table of architecture + keyword arguments; see :func:`build_model`.
"""

from __future__ import annotations

import dataclasses
import functools
from typing import Any, Callable, Sequence

import flax.linen as nn
import jax
import jax.numpy as jnp

from harness.errors import UserError

HEAD = 'head'
FEATURES = 'features'  # Collection where every model sows each layer's output (see layer_outputs).


def layer_names(num_layers: int) -> tuple[str, ...]:
  """Names of the layers of a model with ``num_layers`` layers, head included.

  Args:
    num_layers: L, the total number of layers (transferable layers + head).

  Returns:
    ``('layer1', ..., 'layer{L-1}', 'head')``.
  """
  return tuple(f'layer{i}' for i in range(1, num_layers)) + (HEAD,)


def _emit(module: nn.Module, index: int, x: jax.Array) -> jax.Array:
  """Sows ``x``, the output of ``layer{index}``, into :data:`FEATURES` (a no-op unless mutable).

  Outputs accumulate, in call order, in one tuple ``FEATURES/layers`` (a sown name may not
  repeat a submodule's name, so ``layer{index}`` itself cannot be used).
  """
  del index  # The position in the tuple: layers are called in order.
  module.sow(FEATURES, 'layers', x)
  return x


def layer_outputs(model: nn.Module, variables: dict, x: jax.Array) -> dict[str, jax.Array]:
  """Every transferable layer's output in eval mode (batch norm with running statistics).

  The output of ``layer{n}`` is what ``layer{n+1}`` (or the head) receives: after the layer's
  non-linearity, pooling and normalisation, before any global pooling of the head. Jit it with
  ``model`` static (e.g. ``jax.jit(functools.partial(layer_outputs, model))``).

  Args:
    model: a module from :func:`build_model`.
    variables: ``{'params': ..., 'batch_stats': ...}``.
    x: a batch of inputs.

  Returns:
    ``{'layer1': ..., 'layer{L-1}': ...}``, each with the batch as leading axis.
  """
  _, state = model.apply(variables, x, train=False, mutable=[FEATURES])
  outputs = state[FEATURES]['layers']
  return {name: value for name, value in zip(layer_names(len(outputs) + 1), outputs)}


def frozen_prefix_cacheable(model: nn.Module) -> bool:
  """Whether frozen leading layers are a fixed function of the input in training too.

  True unless a layer applies dropout (a frozen layer's output then changes every step). Frozen
  batch-norm layers normalise with their running statistics (see :func:`batch_norm`): fixed.
  """
  return not getattr(model, 'dropout', 0.0)


def feature_shapes(model: nn.Module, variables: dict, input_shape: Sequence[int]) -> list[tuple]:
  """Per-example shape of the input (index 0) and of each transferable layer's output (1..L-1)."""
  x = jax.ShapeDtypeStruct((1, *input_shape), jnp.float32)
  outputs = jax.eval_shape(functools.partial(layer_outputs, model), variables, x)
  names = layer_names(model.num_layers)[:-1]
  return [tuple(input_shape)] + [tuple(outputs[n].shape[1:]) for n in names]


def _frozen_at(frozen: jax.Array | None, index: int) -> jax.Array:
  return jnp.zeros(()) if frozen is None else frozen[index]


def batch_norm(x, *, train: bool, frozen: jax.Array, name: str):
  """Batch norm whose mode (batch vs running statistics) is chosen by the ``frozen`` flag.

  In training, a trainable layer normalises with batch statistics (and updates its running
  averages); a frozen one uses its running statistics. Both are computed and one is selected,
  so the choice is data and does not recompile. The running-average update of a frozen layer is
  discarded by the train step (see ``harness.training``).

  Args:
    x: activations, channels last.
    train: whether this is a training forward pass (Python bool).
    frozen: scalar, 1.0 if the owning layer is frozen.
    name: submodule name.

  Returns:
    The normalised activations.
  """
  bn = nn.BatchNorm(momentum=0.9, epsilon=1e-5, name=name)
  if not train:
    return bn(x, use_running_average=True)
  # Running statistics first: the batch-statistics call updates them (a frozen layer's update is
  # discarded later), and reading them after it mixed this batch into a frozen layer's function.
  y_running = bn(x, use_running_average=True)
  y_batch = bn(x, use_running_average=False)
  return jnp.where(frozen > 0, y_running, y_batch)


def local_response_norm(x, size: int = 5, alpha: float = 1e-4, beta: float = 0.75, k: float = 1.0):
  """Across-channel local response normalisation as in AlexNet / Caffe (``LRN``).

  ``y = x / (k + alpha / size * sum_{c' in window(c)} x_{c'}^2) ** beta``.
  """
  sq = jnp.square(x)
  half = size // 2
  summed = jax.lax.reduce_window(
      sq, 0.0, jax.lax.add, (1,) * (x.ndim - 1) + (size,), (1,) * x.ndim,
      [(0, 0)] * (x.ndim - 1) + [(half, size - 1 - half)])
  denominator = k + alpha / size * summed
  if beta == 0.75:  # d^-3/4 = rsqrt(d) * sqrt(rsqrt(d)): faster than pow on CPU, and its
    # float32 gradient matches float64 where pow's does not (tested)
    r = jax.lax.rsqrt(denominator)
    return x * r * jnp.sqrt(r)
  return x / jnp.power(denominator, beta)


def max_pool(x: jax.Array, window: int, stride: int) -> jax.Array:
  """Max pooling over square windows (windows of samples on 1-D signals), 'VALID' (rows/columns
  that do not fill a window dropped).

  The values are ``nn.max_pool``'s (XLA's reduce-window, which XLA fuses into the convolution
  before it). For non-overlapping windows (``window == stride``) the gradient is an elementwise
  mask over each window instead of XLA's select-and-scatter, which is slow on CPU (timings in
  docs/performance.md). The gradient splits a window's gradient between equal maxima instead of
  giving it to the first; after a ReLU that happens only for zeros, whose gradient the ReLU
  discards.
  """
  if window != stride or x.ndim != 4:  # overlapping windows, or 1-D signals (B, L, C)
    spatial = x.ndim - 2
    return nn.max_pool(x, (window,) * spatial, strides=(stride,) * spatial, padding='VALID')
  return _tiled_max_pool(x, window)


@functools.partial(jax.custom_vjp, nondiff_argnums=(1,))
def _tiled_max_pool(x: jax.Array, window: int) -> jax.Array:
  return nn.max_pool(x, (window, window), strides=(window, window), padding='VALID')


def _tiled_max_pool_fwd(x, window):
  y = _tiled_max_pool(x, window)
  return y, (x, y)


def _tiled_max_pool_bwd(window, residuals, g):
  x, y = residuals
  b, h, w, c = y.shape
  tiles = x[:, :h * window, :w * window].reshape(b, h, window, w, window, c)
  is_max = tiles == y[:, :, None, :, None, :]
  share = g / jnp.sum(is_max, axis=(2, 4))
  grad = jnp.where(is_max, share[:, :, None, :, None, :], 0.0).reshape(b, h * window, w * window, c)
  dropped = ((0, 0), (0, x.shape[1] - h * window), (0, x.shape[2] - w * window), (0, 0))
  return (jnp.pad(grad, dropped),)


_tiled_max_pool.defvjp(_tiled_max_pool_fwd, _tiled_max_pool_bwd)


class MLP(nn.Module):
  """Fully connected ReLU network: ``len(hidden)`` transferable layers and a linear head.

  Attributes:
    num_classes: output classes of the head.
    hidden: width of each hidden layer (each one is a transferable layer).
  """
  num_classes: int
  hidden: Sequence[int] = (256, 256, 256)

  @property
  def num_layers(self) -> int:
    return len(self.hidden) + 1

  @nn.compact
  def __call__(self, x, train: bool = False, frozen: jax.Array | None = None, start: int = 0,
               stop: int | None = None):
    del train, frozen  # No batch norm or dropout.
    x = x.reshape((x.shape[0], -1))
    for i, width in enumerate(self.hidden):
      if i + 1 > start:
        x = _emit(self, i + 1, nn.relu(nn.Dense(width, name=f'layer{i + 1}')(x)))
      if stop == i + 1:
        return x
    return nn.Dense(self.num_classes, name=HEAD)(x)


@dataclasses.dataclass(frozen=True)
class ConvSpec:
  """One conv layer: features, kernel (square on images, a window on 1-D signals), stride,
  max-pool window (0 = none), LRN after, and padding ('SAME'; 'VALID' as Caffe's unpadded
  conv1; or an int, zeros on each side, as PyTorch's ``Conv1d(padding=p)``)."""
  features: int
  kernel: int = 3
  stride: int = 1
  pool: int = 0
  pool_stride: int = 2
  lrn: bool = False
  padding: str | int = 'SAME'


class ConvLayer(nn.Module):
  """conv -> ReLU -> [max pool] -> [LRN], as one transferable layer (AlexNet ordering).

  The convolution has as many spatial dimensions as its input: (B, H, W, C) images or (B, L, C)
  signals such as MNIST-1D's.
  """
  spec: ConvSpec

  @nn.compact
  def __call__(self, x):
    s = self.spec
    x = nn.relu(nn.Conv(s.features, (s.kernel,) * (x.ndim - 2), strides=s.stride,
                        padding=s.padding, name='conv')(x))
    if s.pool:
      x = max_pool(x, s.pool, s.pool_stride)
    if s.lrn:
      x = local_response_norm(x)
    return x


class CNN(nn.Module):
  """AlexNet-style conv net (Yosinski et al. 2014 use Krizhevsky's 8-layer net), scaled by config.

  Layers: one per conv spec, then one per dense width (ReLU + dropout), then the head.

  Attributes:
    num_classes: output classes of the head.
    convs: conv layer specs, in order.
    dense: widths of the fully connected layers after the convs.
    dropout: dropout rate after each dense layer (AlexNet: 0.5).
  """
  num_classes: int
  convs: Sequence[ConvSpec] = (ConvSpec(32, 5, pool=2), ConvSpec(64, 5, pool=2))
  dense: Sequence[int] = (256,)
  dropout: float = 0.0

  @property
  def num_layers(self) -> int:
    return len(self.convs) + len(self.dense) + 1

  @nn.compact
  def __call__(self, x, train: bool = False, frozen: jax.Array | None = None, start: int = 0,
               stop: int | None = None):
    del frozen  # No batch norm.
    for i, spec in enumerate(self.convs):
      if i + 1 > start:
        x = _emit(self, i + 1, ConvLayer(spec, name=f'layer{i + 1}')(x))
      if stop == i + 1:
        return x
    x = x.reshape((x.shape[0], -1))
    for j, width in enumerate(self.dense):
      index = len(self.convs) + j + 1
      if index > start:
        x = _emit(self, index, nn.relu(nn.Dense(width, name=f'layer{index}')(x)))
      if stop == index:
        return x
      if index > start and self.dropout:
        x = nn.Dropout(self.dropout, deterministic=not train)(x)
    return nn.Dense(self.num_classes, name=HEAD)(x)


class ResidualBlock(nn.Module):
  """Basic ResNet block (two 3x3 convs with batch norm), one transferable layer."""
  features: int
  stride: int = 1

  @nn.compact
  def __call__(self, x, train: bool, frozen: jax.Array):
    y = nn.Conv(self.features, (3, 3), self.stride, padding='SAME', use_bias=False, name='conv1')(x)
    y = nn.relu(batch_norm(y, train=train, frozen=frozen, name='bn1'))
    y = nn.Conv(self.features, (3, 3), padding='SAME', use_bias=False, name='conv2')(y)
    y = batch_norm(y, train=train, frozen=frozen, name='bn2')
    if x.shape != y.shape:
      x = nn.Conv(self.features, (1, 1), self.stride, use_bias=False, name='proj')(x)
      x = batch_norm(x, train=train, frozen=frozen, name='proj_bn')
    return nn.relu(x + y)


class Stem(nn.Module):
  """conv 3x3 + batch norm + ReLU: the first layer of the ResNet."""
  features: int

  @nn.compact
  def __call__(self, x, train: bool, frozen: jax.Array):
    x = nn.Conv(self.features, (3, 3), padding='SAME', use_bias=False, name='conv')(x)
    return nn.relu(batch_norm(x, train=train, frozen=frozen, name='bn'))


class ResNet(nn.Module):
  """ResNet-style net with batch norm: stem, one layer per residual block, pooled linear head.

  Batch-norm statistics live in the ``batch_stats`` collection under their layer's name, so they
  are copied and frozen with their layer.

  Attributes:
    num_classes: output classes of the head.
    stem: features of the stem conv.
    blocks: (features, stride) of each residual block.
  """
  num_classes: int
  stem: int = 16
  blocks: Sequence[tuple[int, int]] = ((16, 1), (32, 2), (64, 2))

  @property
  def num_layers(self) -> int:
    return len(self.blocks) + 2

  @nn.compact
  def __call__(self, x, train: bool = False, frozen: jax.Array | None = None, start: int = 0,
               stop: int | None = None):
    if start < 1:
      x = _emit(self, 1, Stem(self.stem, name='layer1')(x, train, _frozen_at(frozen, 0)))
    if stop == 1:
      return x
    for i, (features, stride) in enumerate(self.blocks):
      if i + 2 > start:
        x = _emit(self, i + 2, ResidualBlock(features, stride, name=f'layer{i + 2}')(
            x, train, _frozen_at(frozen, i + 1)))
      if stop == i + 2:
        return x
    x = jnp.mean(x, axis=tuple(range(1, x.ndim - 1)))  # Global average pool (parameter-free).
    return nn.Dense(self.num_classes, name=HEAD)(x)


ARCHITECTURES: dict[str, Callable[..., nn.Module]] = {'mlp': MLP, 'cnn': CNN, 'resnet': ResNet}

# Caffe's reference net: conv1 unpadded (227 -> 55), conv2-5 padded to keep their size.
_ALEXNET_CONVS = (
    ConvSpec(96, 11, stride=4, pool=3, lrn=True, padding='VALID'), ConvSpec(256, 5, pool=3, lrn=True),
    ConvSpec(384, 3), ConvSpec(384, 3), ConvSpec(256, 3, pool=3))

# Named variants: architecture + keyword arguments. A config names a variant and may override
# any keyword argument (``config.model.kwargs``).
VARIANTS: dict[str, tuple[str, dict[str, Any]]] = {
    'mlp': ('mlp', {}),
    'mlp/3x256': ('mlp', dict(hidden=(256, 256, 256))),
    'mlp/4x128': ('mlp', dict(hidden=(128, 128, 128, 128))),
    'mlp/7x64': ('mlp', dict(hidden=(64,) * 7)),
    # Yosinski-style 8-layer net shrunk for 28x28 inputs: 5 convs + 2 dense + head, n = 1..7.
    'cnn/small': ('cnn', dict(
        convs=(ConvSpec(32, 5, pool=2, lrn=True), ConvSpec(64, 5, pool=2, lrn=True),
               ConvSpec(64, 3), ConvSpec(64, 3), ConvSpec(64, 3, pool=2)),
        dense=(256, 256), dropout=0.0)),
    'cnn/tiny': ('cnn', dict(convs=(ConvSpec(8, 3, pool=2), ConvSpec(16, 3, pool=2)), dense=(32,))),
    # MNIST-1D's reference conv net (Greydanus 2020, ``ConvBase``): 3 strided 1-D convs of 25
    # channels (40 -> 19 -> 10 -> 5 samples) and a linear head on the flattened 125 features.
    'cnn1d': ('cnn', dict(convs=(ConvSpec(25, 5, stride=2, padding=1),
                                 ConvSpec(25, 3, stride=2, padding=1),
                                 ConvSpec(25, 3, stride=2, padding=1)), dense=())),
    # cnn/small's shape for 40-sample signals: 5 convs + 2 dense + head, n = 1..7 like the paper.
    'cnn1d/small': ('cnn', dict(convs=(ConvSpec(32, 5, padding=2), ConvSpec(32, 3, stride=2, padding=1),
                                       ConvSpec(32, 3, padding=1), ConvSpec(32, 3, stride=2, padding=1),
                                       ConvSpec(32, 3, stride=2, padding=1)), dense=(128, 128))),
    # Krizhevsky et al. 2012 / Caffe reference net as used by Yosinski et al. 2014 (227x227 input).
    'alexnet': ('cnn', dict(convs=_ALEXNET_CONVS, dense=(4096, 4096), dropout=0.5)),
    'resnet/small': ('resnet', dict(stem=16, blocks=((16, 1), (32, 2), (64, 2)))),
    'resnet/tiny': ('resnet', dict(stem=8, blocks=((8, 1), (16, 2)))),
}


# Public ImageNet networks (harness/zoo): they build on the layers above, so they come last.
# pylint: disable-next=wrong-import-position
from harness.zoo import bit as _bit, nets as _zoo  # noqa: E402

ARCHITECTURES.update(_zoo.ARCHITECTURES, **_bit.ARCHITECTURES)
VARIANTS.update(_zoo.VARIANTS, **_bit.VARIANTS)
INPUT_KWARGS = _zoo.INPUT_KWARGS


def architecture_kwargs(kwargs: dict) -> dict:
  """A model's keyword arguments less those that change only its input transform
  (:data:`INPUT_KWARGS`): what a source checkpoint and the networks copying from it share."""
  return {k: v for k, v in kwargs.items() if k not in INPUT_KWARGS}


def _as_hashable(value):
  """Config values arrive as lists (JSON, ConfigDict); flax modules need hashable fields."""
  if isinstance(value, dict):
    return ConvSpec(**value)
  if isinstance(value, (list, tuple)):
    return tuple(_as_hashable(v) for v in value)
  return value


def build_model(name: str, num_classes: int, **overrides) -> nn.Module:
  """Builds a registered model variant.

  Args:
    name: a key of :data:`VARIANTS`.
    num_classes: classes of the head.
    **overrides: keyword arguments replacing the variant's defaults.

  Returns:
    The flax module; ``module.num_layers`` is L (head included).

  Raises:
    UserError: unknown name or keyword.
  """
  if name not in VARIANTS:
    raise UserError(f"unknown model '{name}': choose one of {', '.join(sorted(VARIANTS))}")
  arch, kwargs = VARIANTS[name]
  kwargs = {**kwargs, **{k: _as_hashable(v) for k, v in overrides.items()}}
  cls = ARCHITECTURES[arch]
  fields = {f.name for f in dataclasses.fields(cls)} - {'parent', 'name'}
  unknown = set(kwargs) - fields
  if unknown:
    raise UserError(f"model '{name}' has no option(s) {sorted(unknown)}: valid are {sorted(fields - {'num_classes'})}")
  return cls(num_classes=num_classes, **kwargs)


def init_variables(model: nn.Module, key: jax.Array, input_shape: Sequence[int]) -> dict:
  """Initialises ``{'params': ..., 'batch_stats': ...}`` (``batch_stats`` may be empty).

  Args:
    model: a module from :func:`build_model`.
    key: PRNG key; the same key gives the same weights for every condition of a seed.
    input_shape: one example's shape (no batch dimension).

  Returns:
    A dict with keys ``params`` and ``batch_stats``.
  """
  x = jnp.zeros((1, *input_shape), jnp.float32)
  variables = model.init({'params': key, 'dropout': key}, x, train=False)
  return {'params': variables['params'], 'batch_stats': variables.get('batch_stats', {})}
