"""A family: runs that share one model, optimizer, budget and data shapes, hence one set of
compiled programs; and what each run of it passes to them.
"""

from __future__ import annotations

import dataclasses
import threading
from typing import Any, Sequence

import jax
import numpy as np
import optax

from harness import models, training, transfer
from harness.engine import semantics
from harness.engine.data import FamilyData, device_task, family_data, family_shapes
from harness.engine.prefix import PrefixCache, depth_index, family_depths, prefix_keys
from harness.engine.programs import Depths
from harness.results import ResultsStore


def family_key(spec, data: FamilyData, num_classes: int) -> tuple:
  """What runs must share to share programs."""
  return (spec.model, spec.model_kwargs, spec.train, num_classes, data.x_train.shape,
          data.x_test.shape)


@dataclasses.dataclass
class Family:
  """What the runs of one group share (runs of a family may train in concurrent threads).

  ``depths``: the frozen depths the programs branch on; ``zeros``: the network's variables as
  zeros (:meth:`copied` of runs that copy nothing); ``shapes``: :func:`family_shapes` of the
  target (:attr:`data` is built on first use, or ahead while programs compile); ``sources``:
  source networks' weights read so far; ``prefix``: the frozen-prefix cache.
  """
  model: Any
  tx: optax.GradientTransformation
  shapes: FamilyData
  input_shape: tuple
  hyper: dict
  zeros: dict
  depths: Depths
  task: Any      # the target's tasks.TaskData (for the weights' metadata)
  target: Any    # the target's tasks.TaskSpec (to build ``data``)
  data_dir: str | None
  prefix: PrefixCache
  built: FamilyData | None = None
  sources: dict = dataclasses.field(default_factory=dict)
  lock: Any = dataclasses.field(default_factory=threading.Lock)
  data_lock: Any = dataclasses.field(default_factory=threading.Lock)

  @property
  def data(self) -> FamilyData:
    """The target's padded device-resident splits (:func:`family_data`), built once."""
    with self.data_lock:
      if self.built is None:
        self.built = family_data(self.target, self.data_dir)
      return self.built

  @property
  def names(self) -> tuple[str, ...]:
    return models.layer_names(self.model.num_layers)

  def schedule(self) -> list[int]:
    """The steps at which the family's runs are evaluated."""
    return training.eval_steps(self.hyper['steps'], self.hyper['eval_every'])

  def copied(self, source: dict | None, plan: transfer.Plan) -> dict:
    """The layers a run copies from ``source``, laid out as the whole network (zeros elsewhere:
    the program takes the run's own initial weights there). Checks the layers' shapes."""
    if not np.any(plan.copy):
      return self.zeros
    return transfer.combine(self.zeros, source, plan, self.names)

  def source(self, spec, store: ResultsStore) -> dict:
    """A run's source network, read once per family (not once per run)."""
    from harness import runs  # checkpoint reading; runs imports the engine
    with self.lock:
      if spec.source_id not in self.sources:
        self.sources[spec.source_id] = jax.tree.map(np.asarray, runs.source_variables(
            spec, store, spec.model, dict(spec.model_kwargs)))
      return self.sources[spec.source_id]


def make_family(spec0, data_dir: str | None, switch: bool | None) -> Family:
  """The programs' static parts and the data of one family's runs on ``spec0``'s target.

  Args:
    spec0: any run of the family.
    data_dir: TFDS data directory.
    switch: the strategy's frozen depths (:func:`family_depths`).
  """
  target = spec0.target
  task = device_task(target, data_dir)[0]
  shapes = family_shapes(target, data_dir)
  model = models.build_model(spec0.model, task.num_classes, **dict(spec0.model_kwargs))
  hyper = spec0.hyper
  tx = training.make_optimizer(hyper['lr'], hyper['momentum'], hyper['weight_decay'],
                               hyper['lr_decay_every'], hyper['lr_decay_factor'])
  input_shape = tuple(task.input_shape)
  shapes_only = jax.eval_shape(lambda: models.init_variables(model, jax.random.key(0), input_shape))
  depths = family_depths(model, shapes_only, input_shape, shapes, switch)
  zeros = jax.tree.map(lambda a: np.zeros(a.shape, a.dtype), shapes_only)
  return Family(model, tx, shapes, input_shape, hyper, zeros, depths, task, target, data_dir,
                PrefixCache(shapes, depths))


# ----------------------------------------------------------------------------------------------
# Runs' inputs.

def index_shape(hyper: dict) -> tuple[int, int]:
  """(rows, batch size) of a run's batch indices: a 0-step run still has a (never read) row."""
  return max(1, hyper['steps']), hyper['batch_size']


@dataclasses.dataclass
class RunInputs:
  """What a pack's programs take per run (stacked on a first axis if packed), and the first
  run's frozen depth index and :func:`prefix_keys`."""
  start: tuple
  idx: np.ndarray
  depth_index: int
  keys: tuple


def start_args(seed: int, pair: str, plan: transfer.Plan, copied: dict, steps: int) -> tuple:
  """A run's arguments of ``programs.start_program``, with the dtypes its programs take."""
  schedule = training.TrainSchedule.of(plan, steps)
  fresh = plan.fresh if plan.fresh is not None else np.zeros_like(plan.copy)
  return (np.int32(seed), semantics.pair_tag(pair), np.bool_(semantics.is_base(plan)), copied,
          np.asarray(plan.copy, np.float32), np.asarray(fresh, np.float32),
          schedule.multipliers, schedule.starts)


def stacked(trees: Sequence) -> Any:
  """Equal trees stacked leaf by leaf on a new first (run) axis."""
  return jax.tree.map(lambda *xs: np.stack(xs), *trees)


def run_inputs(specs, family: Family, store: ResultsStore, packed: bool) -> RunInputs:
  """The inputs of a pack's runs (packs have only depth 0: :func:`family_depths`)."""
  starts, idx, plans = [], [], []
  steps, batch_size = family.hyper['steps'], family.hyper['batch_size']
  for spec in specs:
    plan = semantics.plan_of(spec, family.model.num_layers)
    source = family.source(spec, store) if np.any(plan.copy) else None
    starts.append(start_args(spec.seed, spec.pair, plan, family.copied(source, plan), steps))
    idx.append(semantics.batch_order(spec.seed, spec.target.name, family.shapes.num_train,
                                     steps, batch_size))
    plans.append(plan)
  if packed:
    return RunInputs(stacked(starts), np.stack(idx), 0, ())
  index = depth_index(family.depths, training.TrainSchedule.of(plans[0], steps))
  keys = prefix_keys(specs[0], plans[0]) if index else ()
  return RunInputs(starts[0], idx[0], index, keys)


def frozen_layers(spec, num_layers: int, steps: int) -> int:
  """A run's number of leading layers frozen throughout (trained only after them)."""
  plan = semantics.plan_of(spec, num_layers)
  return training.leading_frozen(training.TrainSchedule.of(plan, steps))
