"""The frozen-prefix cache: outputs of a run's leading frozen layers, computed once per run and
reused by later runs whose leading layers start equal.

A run whose first n layers are frozen in every phase trains on their outputs, computed once on
its training and test sets, instead of running them at every step. With a switched program the
n = 2 run of a source continues from the n = 1 run's outputs (the same frozen layer 1,
recognised by :func:`prefix_keys`).
"""

from __future__ import annotations

import collections
import dataclasses
import hashlib
import math
import threading
from typing import Any

import jax.numpy as jnp
import numpy as np

from harness import models, training, transfer
from harness.engine import programs, semantics
from harness.engine.data import FamilyData
from harness.engine.programs import Depths

MAX_FEATURE_BYTES = 1 << 30  # one family's cached frozen-prefix outputs (train + test) at most


def prefix_keys(spec, plan: transfer.Plan) -> tuple[str, ...]:
  """Keys of a run's leading layers: ``keys[d - 1]`` is equal for two runs of a family exactly
  when their layers 1..d start equal. A copied layer is named by its source network, a
  re-initialised one by its fresh key, another by the run's initial-weights key
  (:func:`semantics.init_key`: the seed, the task pair, and base net or not)."""
  base = semantics.is_base(plan)
  fresh = plan.fresh if plan.fresh is not None else np.zeros_like(plan.copy)
  digest, keys = hashlib.blake2b(digest_size=16), []
  for layer, (copied, redrawn) in enumerate(zip(plan.copy[:-1], fresh[:-1])):
    if copied:
      name = ('copy', spec.source_id, layer)
    else:
      name = ('fresh' if redrawn else 'init', spec.seed, spec.pair, not base, layer)
    digest.update(repr(name).encode())
    keys.append(digest.hexdigest())
  return tuple(keys)


def family_depths(model, variables, input_shape: tuple, data: FamilyData, switch: bool | None
                  ) -> Depths:
  """A branch per frozen depth 0..L-1, if the strategy has them (``switch`` not None) and the
  model's frozen layers are a fixed function of the input (no dropout) whose outputs fit in
  :data:`MAX_FEATURE_BYTES`."""
  if switch is None or not models.frozen_prefix_cacheable(model):
    return Depths()
  shapes = models.feature_shapes(model, variables, input_shape)
  width = max(math.prod(shape) for shape in shapes[1:])
  rows = data.x_train.shape[0] + data.x_test.shape[0] * data.x_test.shape[1]
  if rows * width * 4 > MAX_FEATURE_BYTES:
    return Depths()
  return Depths(tuple(range(len(shapes))), tuple(shapes), width, switch=switch)


def depth_index(depths: Depths, schedule: training.TrainSchedule) -> int:
  """The branch for a run: its number of leading layers frozen in every phase, if the programs
  have a branch for it (else 0: trained through from the inputs)."""
  frozen = training.leading_frozen(schedule)
  return depths.depths.index(frozen) if frozen in depths.depths else 0


def unused_features(data: FamilyData) -> tuple:
  """(train, test) frozen-prefix outputs for programs that never read them: one column, as
  many test chunks as the test set (the per-chunk evaluation indexes them)."""
  return jnp.zeros((1, 1)), jnp.zeros((data.x_test.shape[0], 1, 1))


@dataclasses.dataclass
class PrefixCache:
  """Frozen layers' outputs of a family's runs, by :func:`prefix_keys` (least recently used
  first); shared by the family's concurrent threads."""
  shapes: FamilyData
  depths: Depths
  kept: collections.OrderedDict = dataclasses.field(default_factory=collections.OrderedDict)
  placeholder: tuple | None = None
  inputs: Any = None
  lock: Any = dataclasses.field(default_factory=threading.Lock)

  def unused(self) -> tuple:
    """Outputs of runs that read none: full size in a switched program (every run passes the
    same shapes), else :func:`unused_features`."""
    if not (self.depths.switch and len(self.depths.depths) > 1):
      return unused_features(self.shapes)
    with self.lock:
      if self.placeholder is None:
        self.placeholder = (jnp.zeros((self.shapes.x_train.shape[0], self.depths.width)),
                            jnp.zeros((*self.shapes.y_test.shape, self.depths.width)))
      return self.placeholder

  def lookup(self, depth_index: int, keys: tuple) -> tuple[int, tuple, int]:
    """``(branch, (f_train, f_test), start)`` for a switched run program
    (:func:`programs.frozen_outputs`): the deepest outputs kept of a run whose layers
    1..``depths[start]`` equal this run's (``start`` 0: none), and the branch that continues
    from them (0 if they are this run's)."""
    start, base = 0, self.unused()
    with self.lock:
      for d in range(depth_index, 0, -1):
        if keys[d - 1] in self.kept:
          self.kept.move_to_end(keys[d - 1])
          start, base = d, self.kept[keys[d - 1]]
          break
    if start == depth_index:
      return 0, base, start
    return 1 + programs.prefix_pairs(self.depths).index((start, depth_index)), base, start

  def keep(self, key: str, features: tuple) -> None:
    """Keeps a run's frozen outputs for later runs (at most :meth:`size`)."""
    with self.lock:
      self.kept[key] = features
      while len(self.kept) > self.size():
        self.kept.popitem(last=False)

  def size(self) -> int:
    """Outputs kept for later runs: 16 at most, within :data:`MAX_FEATURE_BYTES`."""
    rows = self.shapes.x_train.shape[0] + math.prod(self.shapes.y_test.shape)
    return max(1, min(16, MAX_FEATURE_BYTES // max(1, rows * self.depths.width * 4)))

  def stepwise(self, model, data: FamilyData, variables, depth_index: int) -> tuple:
    """A run's frozen outputs for a program-per-depth family (computed chunk by chunk, since
    convolutions inside ``lax.map`` are slow on CPU)."""
    if not depth_index:
      return unused_features(data)
    with self.lock:
      if self.inputs is None:  # training rows then test rows, one input
        x_test = data.x_test.reshape(-1, *data.x_test.shape[2:])
        self.inputs = jnp.concatenate([data.x_train, x_test])
    chunk = programs.divisor_at_most(self.inputs.shape[0], 1024)
    fn = programs.program(programs.prefix_program, model, self.depths)
    rows = jnp.concatenate([fn(variables, depth_index, self.inputs[i:i + chunk])
                            for i in range(0, self.inputs.shape[0], chunk)])
    num_train = data.x_train.shape[0]
    return rows[:num_train], rows[num_train:].reshape(*data.y_test.shape, -1)
