"""A source network's features after every transferable layer, for a (subsampled) task.

:func:`layer_features` runs the network once per batch in eval mode (batch norm with its running
statistics, no dropout) and keeps the output of ``layer1 .. layer{L-1}`` (see
:func:`harness.models.layer_outputs`), flattened per example. Feature maps larger than
``max_dim`` values per example are first average-pooled over space onto the finest grid that
fits (:func:`pool_to_dim`), so a conv layer of a big network stays tractable; flat (dense)
features are never changed.
"""

from __future__ import annotations

import functools
import math
from typing import Callable

import jax
import numpy as np

from harness import data, models, tasks


def pool_grid(height: int, width: int, channels: int, max_dim: int) -> tuple[int, int]:
  """The finest grid (h, w) = (ceil(H / t), ceil(W / t)), t = 1, 2, ... with h w C <= max_dim.

  Args:
    height: H of the feature map.
    width: W.
    channels: C.
    max_dim: largest allowed h * w * C (if C alone exceeds it, the grid is 1 x 1).

  Returns:
    ``(h, w)``.
  """
  for t in range(1, max(height, width) + 1):
    h, w = math.ceil(height / t), math.ceil(width / t)
    if h * w * channels <= max_dim:
      return h, w
  return 1, 1


def _bin_means(x: np.ndarray, axis: int, parts: int) -> np.ndarray:
  """Means over ``parts`` near-equal contiguous bins along ``axis`` (adaptive average pooling)."""
  counts = np.array([len(b) for b in np.array_split(np.arange(x.shape[axis]), parts)])
  starts = np.cumsum(counts) - counts
  shape = [-1 if a == axis else 1 for a in range(x.ndim)]
  return np.add.reduceat(x, starts, axis=axis) / counts.reshape(shape)


def pool_to_dim(x: np.ndarray, max_dim: int) -> np.ndarray:
  """Flattens a batch of features, average-pooling (B, H, W, C) maps down to <= max_dim values.

  Args:
    x: (B, D) or (B, H, W, C) features.
    max_dim: most values per example kept from a feature map.

  Returns:
    (B, D') float32 features; D' = D for flat inputs and for maps that already fit.
  """
  x = np.asarray(x, np.float32)
  if x.ndim == 4 and math.prod(x.shape[1:]) > max_dim:
    h, w = pool_grid(*x.shape[1:], max_dim)
    x = _bin_means(_bin_means(x, 1, h), 2, w)
  return x.reshape(len(x), -1)


@functools.lru_cache(maxsize=16)
def _jitted_outputs(model) -> Callable:
  return jax.jit(functools.partial(models.layer_outputs, model))


def layer_features(model, variables: dict, images: np.ndarray, batch_size: int = 256,
                   max_dim: int = 4096) -> dict[str, np.ndarray]:
  """Features after every transferable layer, for all ``images``, batched and jitted.

  The last batch is padded to ``batch_size`` (one compilation) and the padding dropped.

  Args:
    model: a module from :func:`harness.models.build_model`.
    variables: its ``{'params', 'batch_stats'}``.
    images: (N, ...) inputs.
    batch_size: examples per forward pass.
    max_dim: see :func:`pool_to_dim`.

  Returns:
    ``{'layer1': (N, D1), ..., 'layer{L-1}': (N, D_{L-1})}``, float32.
  """
  apply = _jitted_outputs(model)
  chunks: dict[str, list[np.ndarray]] = {}
  for start in range(0, len(images), batch_size):
    batch = np.asarray(images[start:start + batch_size])
    size = len(batch)
    if size < batch_size:
      batch = np.concatenate([batch, np.zeros((batch_size - size, *batch.shape[1:]), batch.dtype)])
    for name, value in apply(variables, batch).items():
      chunks.setdefault(name, []).append(pool_to_dim(np.asarray(value)[:size], max_dim))
  return {name: np.concatenate(parts) for name, parts in chunks.items()}


def stratified_indices(labels: np.ndarray, size: int, seed) -> np.ndarray:
  """A seeded subset of ``size`` example indices, stratified by class.

  Every class present gets one example first (while ``size`` allows), the rest are allocated in
  proportion to the class sizes: an example's key is its rank among its class's examples (in a
  seeded random order) divided by the class size, rank 0 before everything, and the ``size``
  smallest keys are kept (ties in the random order). A plain random subset of 1000 examples of
  a 500-class task would miss ~68 classes, which LEEP, NCE, H-score and LogME then score as if
  the target had fewer classes.

  Args:
    labels: (N,) integer class labels.
    size: subset size (all N indices if N <= size).
    seed: anything :func:`numpy.random.default_rng` accepts.

  Returns:
    Sorted indices into ``labels``.
  """
  labels = np.asarray(labels)
  if size >= len(labels):
    return np.arange(len(labels))
  order = np.random.default_rng(seed).permutation(len(labels))
  _, label, counts = np.unique(labels[order], return_inverse=True, return_counts=True)
  by_class = np.argsort(label, kind='stable')          # class by class, each in random order
  rank = np.empty(len(order))
  rank[by_class] = np.arange(len(order)) - np.repeat(np.cumsum(counts) - counts, counts)
  key = np.where(rank == 0, -1.0, rank / counts[label])
  return np.sort(order[np.argsort(key, kind='stable')[:size]])


def _train_labels(spec: tasks.TaskSpec, train, data_dir: str | None) -> np.ndarray:
  """Task labels of a task's training examples, without decoding streamed images."""
  if isinstance(train, tuple):
    return np.asarray(train[1])
  labels = data.split_labels(spec.dataset, 'train', data_dir)
  return tasks.remap(labels[tasks.task_indices(spec, labels, spec.examples_per_class,
                                               spec.sample_seed)], spec.classes)


def task_sample(spec: tasks.TaskSpec, data_dir: str | None, max_examples: int,
                seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
  """A seeded subset of at most ``max_examples`` of a task's training examples, stratified by class.

  See :func:`stratified_indices`: every class is represented whenever ``max_examples`` is at
  least the number of classes, and the class proportions are kept otherwise.

  Args:
    spec: the task.
    data_dir: TFDS data directory (None: the default).
    max_examples: subset size (all examples if the task has fewer).
    seed: subset seed (combined with the task name, so tasks get independent subsets).

  Returns:
    ``(x, y)`` with task labels, in the training set's order.
  """
  train = tasks.load_task(spec, data_dir).train
  idx = stratified_indices(_train_labels(spec, train, data_dir), max_examples,
                           [seed, *spec.name.encode()])
  if isinstance(train, tuple):
    return np.asarray(train[0][idx]), np.asarray(train[1][idx])
  return train.get_batch(idx)
