"""A family's data as its compiled programs see it: device-resident, padded to shared shapes.

Training sets are padded to a bucketed length (the padding rows are never drawn) and test sets to
equal chunks, so the two tasks of a pair share one shape and one compiled program.
"""

from __future__ import annotations

import dataclasses
import functools
import math
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from harness import tasks


@functools.lru_cache(maxsize=8)
def device_task(spec: tasks.TaskSpec, data_dir: str | None) -> tuple[tasks.TaskData, Any, Any]:
  """A task's data, in-memory splits placed on the default device once per process.

  Streamed splits (data sets too big for memory) stay random-access sources read batch by batch.
  """
  data = tasks.load_task(spec, data_dir)
  place = lambda split: tuple(map(jnp.asarray, split)) if isinstance(split, tuple) else split
  return data, place(data.train), place(data.test)


def bucket(n: int) -> int:
  """``n`` rounded up to a multiple of 1/16 of the next power of two (at most 12.5% padding).

  Tasks of similar size (the two halves of a data set) then share one shape, one compilation.
  """
  if n <= 16:
    return n
  step = 2 ** max(0, math.ceil(math.log2(n)) - 4)
  return -(-n // step) * step


@dataclasses.dataclass(frozen=True)
class FamilyData:
  """A task's splits as the compiled programs see them."""
  x_train: jax.Array   # (bucket(N), ...) ; rows >= num_train are zeros, never drawn
  y_train: jax.Array
  num_train: int
  x_test: jax.Array    # (chunks, chunk, ...)
  y_test: jax.Array    # (chunks, chunk)
  valid: jax.Array     # (chunks, chunk) bool
  num_test: int


def _padded(a: np.ndarray, rows: int, shape: tuple = ()) -> jax.Array:
  """``a`` with zero rows appended to ``rows``, reshaped to ``shape`` (if given), on the device:
  built on the host from the task's host arrays (no device program per shape, no copy back)."""
  out = np.zeros((rows, *a.shape[1:]), a.dtype)
  out[:a.shape[0]] = a
  return jax.device_put(out.reshape(shape or out.shape))


@functools.lru_cache(maxsize=8)
def family_shapes(target, data_dir: str | None, eval_chunk: int = 2048) -> FamilyData | None:
  """:func:`family_data`'s shapes (``jax.ShapeDtypeStruct`` arrays) and sizes, without building
  it, or None for streamed (too big) data: enough to group runs into families and compile their
  programs while the data is still being padded."""
  data, train, test = device_task(target, data_dir)
  if not (isinstance(train, tuple) and isinstance(test, tuple)):
    return None
  (x_train, y_train), (x_test, y_test) = data.train, data.test  # host arrays
  n_train, n_test = x_train.shape[0], x_test.shape[0]
  # Equal chunks of at most eval_chunk rows covering bucket(n_test), a multiple of 16 each: both
  # tasks of a pair share the shape, and padding is a few % rather than up to a whole chunk.
  chunks = -(-bucket(n_test) // eval_chunk)
  chunk = -(-bucket(n_test) // chunks // 16) * 16 if n_test > 16 else n_test
  shape = lambda rows, a: jax.ShapeDtypeStruct((*rows, *a.shape[1:]),
                                                jax.dtypes.canonicalize_dtype(a.dtype))
  return FamilyData(shape((bucket(n_train),), x_train), shape((bucket(n_train),), y_train), n_train,
                    shape((chunks, chunk), x_test), shape((chunks, chunk), y_test),
                    jax.ShapeDtypeStruct((chunks, chunk), np.bool_), n_test)


@functools.lru_cache(maxsize=8)
def family_data(target, data_dir: str | None, eval_chunk: int = 2048) -> FamilyData | None:
  """The padded device-resident splits of a task (shaped as :func:`family_shapes`), or None for
  streamed (too big) data."""
  shapes = family_shapes(target, data_dir, eval_chunk)
  if shapes is None:
    return None
  data = device_task(target, data_dir)[0]
  (x_train, y_train), (x_test, y_test) = data.train, data.test  # host arrays
  rows = math.prod(shapes.valid.shape)
  valid = (np.arange(rows) < shapes.num_test).reshape(shapes.valid.shape)
  return FamilyData(_padded(x_train, shapes.x_train.shape[0]),
                    _padded(y_train, shapes.y_train.shape[0]), shapes.num_train,
                    _padded(x_test, rows, shapes.x_test.shape),
                    _padded(y_test, rows, shapes.y_test.shape), jax.device_put(valid),
                    shapes.num_test)

