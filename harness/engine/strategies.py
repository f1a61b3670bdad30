"""Execution strategies: schedules of a family's runs over the same per-run functions.

A strategy is a small object whose one method, :meth:`Strategy.train`, trains a pack of runs
(one run unless it packs) and returns each run's curve and final variables. Which one a family
uses is a table per (backend, architecture), :data:`AUTO`, overridden by
``config.execution.strategy``. Adding a strategy is one class and one row of :data:`STRATEGIES`.

* ``vmap``: runs packed with ``jax.vmap`` of the whole run (steps in ``lax.fori_loop``, every
  evaluation on the whole test set), one host sync per pack; the run axis sharded across
  devices. Default on GPU/TPU.
* ``fused``: one run at a time, the whole run in one program, frozen depths as ``lax.switch``
  branches. Default for MLPs on CPU (compute-bound: packs are no faster per run, and each pack
  size compiles its own program).
* ``sequential``: one run at a time, a Python loop over one compiled step, a program per frozen
  depth. Default for conv nets on CPU, where vmapped weights become a slow grouped convolution
  and convolutions inside loops and conditionals are slow (jax-ml/jax#12868).
* ``per_run``: ``harness.runs.train_and_evaluate`` one run at a time (also used for streamed
  data sets too big for memory and for runs that save progress checkpoints).
"""

from __future__ import annotations

import abc
import dataclasses
from typing import Any, ClassVar, Sequence

import jax
import jax.numpy as jnp
import numpy as np
from jax.sharding import Mesh, NamedSharding, PartitionSpec

from harness import models, training
from harness.engine import programs, semantics
from harness.engine.data import FamilyData
from harness.engine.family import Family, RunInputs, index_shape, stacked
from harness.errors import UserError


@dataclasses.dataclass
class RunResult:
  """One run's outcome: its curve, the step it diverged at (None), its final variables, and how
  many leading frozen layers' outputs it took from an earlier run (0: computed from the inputs)."""
  curve: list
  diverged_at: int | None
  variables: Any
  reused: int = 0


class Strategy(abc.ABC):
  """How the runs of a family are trained.

  Attributes:
    name: the key in :data:`STRATEGIES` and in records.
    summary: one line for documentation.
    packs: trains several runs per call (their pack size is chosen by the executor).
    depths: frozen-prefix branches of its programs: True = ``lax.switch`` branches of one
      program, False = a program per depth, None = none.
    in_engine: False for the per-run path (its runs are left to ``harness.runner``).
  """
  name: ClassVar[str]
  summary: ClassVar[str]
  packs: ClassVar[bool] = False
  depths: ClassVar[bool | None] = None
  in_engine: ClassVar[bool] = True

  @abc.abstractmethod
  def train(self, family: Family, inputs: RunInputs) -> list[RunResult]:
    """Trains a pack's runs from their inputs; one result per run of the pack."""

  def compile_ahead(self, family: Family, size: int) -> Any:
    """Compiles the family's programs from shapes alone (overlapping with building the data);
    None where programs compile on their first call."""
    return None


def run_sharding(num_runs: int) -> tuple[NamedSharding, NamedSharding] | None:
  """(run-axis sharding, replicated) over all devices, or None on a single device."""
  devices = jax.devices()
  if len(devices) == 1 or num_runs % len(devices):
    return None
  mesh = Mesh(np.array(devices), ('runs',))
  return NamedSharding(mesh, PartitionSpec('runs')), NamedSharding(mesh, PartitionSpec())


def program_args(data: FamilyData, inputs: RunInputs, branch: int, features: tuple,
                 schedule: Sequence[int], packed: bool) -> tuple:
  """The arguments of a pack's ``programs.run_program`` call (``data``'s arrays may be shapes
  only: :meth:`InProgram.compile_ahead`)."""
  points = np.array([[0, schedule[0]], *zip(schedule[:-1], schedule[1:])], np.int32)
  arrays = (data.x_train, data.y_train, data.x_test, data.y_test, data.valid)
  start, idx = inputs.start, inputs.idx
  shardings = run_sharding(idx.shape[0]) if packed else None
  if shardings:
    by_run, replicated = shardings
    start, idx = jax.device_put(start, by_run), jax.device_put(idx, by_run)
    arrays = jax.device_put(arrays, replicated)
  return start, (np.int32(branch), *features), idx, arrays, points, np.int32(inputs.depth_index)


def placeholder_inputs(family: Family, size: int, packed: bool) -> RunInputs:
  """Inputs shaped as a pack's (zeros), for compiling from shapes."""
  layers = np.zeros(family.model.num_layers, np.float32)
  one = (np.int32(0), np.uint32(0), np.bool_(False), family.zeros, layers, layers,
         np.zeros((training.MAX_PHASES, len(layers)), np.float32),
         np.zeros(training.MAX_PHASES, np.int32))
  idx = np.zeros(index_shape(family.hyper), np.int32)
  if packed:
    return RunInputs(stacked([one] * size), stacked([idx] * size), 0, ())
  return RunInputs(one, idx, 0, ())


class InProgram(Strategy):
  """The whole run in one program call (``programs.run_program``)."""

  def program(self, family: Family):
    return programs.program(programs.run_program, family.model, family.input_shape, family.tx,
                            self.packs, family.depths)

  def call(self, family: Family, inputs: RunInputs):
    """One call of the family's run program: (variables, metrics on host, layers reused)."""
    branch, features, reused = 0, family.prefix.unused(), 0
    if inputs.depth_index and family.depths.switch:
      branch, features, reused = family.prefix.lookup(inputs.depth_index, inputs.keys)
    args = program_args(family.data, inputs, branch, features, family.schedule(), self.packs)
    variables, metrics, computed = self.program(family)(*args)
    if branch:
      family.prefix.keep(inputs.keys[inputs.depth_index - 1], computed)
    return variables, np.asarray(metrics), family.depths.depths[reused]

  def compile_ahead(self, family: Family, size: int) -> Any:
    if self.packs and run_sharding(size):  # sharded packs compile on their call
      return None
    args = program_args(family.shapes, placeholder_inputs(family, size, self.packs), 0,
                        family.prefix.unused(), family.schedule(), self.packs)
    avals = jax.tree.map(lambda a: jax.ShapeDtypeStruct(a.shape, a.dtype), args)
    return self.program(family).trace(*avals).lower().compile()


class Fused(InProgram):
  name, summary = 'fused', 'one run at a time, steps and evaluation inside the program'
  depths = True

  def train(self, family: Family, inputs: RunInputs) -> list[RunResult]:
    variables, metrics, reused = self.call(family, inputs)
    return [RunResult(*semantics.curve(family.schedule(), metrics), variables, reused)]


class Vmap(InProgram):
  name, summary = 'vmap', 'runs packed with vmap, steps and evaluation inside the program'
  packs = True

  def train(self, family: Family, inputs: RunInputs) -> list[RunResult]:
    variables, metrics, _ = self.call(family, inputs)
    finals = jax.tree.map(np.asarray, variables)
    return [RunResult(*semantics.curve(family.schedule(), metrics[r]),
                      jax.tree.map(lambda a, r=r: a[r], finals))
            for r in range(metrics.shape[0])]


class Sequential(Strategy):
  """A Python loop over one compiled step, evaluation a test chunk per call."""
  name, summary = 'sequential', 'one run at a time, Python loop over one compiled step'
  depths = False

  def train(self, family: Family, inputs: RunInputs) -> list[RunResult]:
    data, depth_index, schedule = family.data, inputs.depth_index, family.schedule()
    start = programs.program(programs.start_program, family.model, family.input_shape, family.tx)
    state = start(*inputs.start)
    f_train, f_test = family.prefix.stepwise(family.model, data, programs.variables_of(state),
                                             depth_index)
    step_fn = programs.program(programs.step_program, family.model, family.tx, family.depths)
    evaluate = programs.program(programs.eval_program, family.model, family.depths)
    eval_fn = lambda variables, *chunk: evaluate(variables, depth_index, *chunk)
    idx, points = jnp.asarray(inputs.idx), []
    loss, at = jnp.float32(jnp.nan), set(schedule)
    for t in range(family.hyper['steps'] + 1):
      if t in at:
        points.append(_evaluate(eval_fn, state, data, f_test, loss))
      if t == family.hyper['steps']:
        break
      state, loss = step_fn(state, depth_index, idx, data.x_train, f_train, data.y_train,
                            np.int32(t))
    curve, diverged_at = semantics.curve(schedule, np.stack(points))
    return [RunResult(curve, diverged_at, programs.variables_of(state))]


def _evaluate(eval_fn, state, data: FamilyData, f_test, train_loss) -> np.ndarray:
  """[accuracy, loss, train loss] on the whole test set, one host sync."""
  variables = programs.variables_of(state)
  total = sum(eval_fn(variables, data.x_test[c], f_test[c], data.y_test[c], data.valid[c])
              for c in range(data.x_test.shape[0]))
  loss_sum, correct = np.asarray(total)
  return np.array([correct / data.num_test, loss_sum / data.num_test, float(train_loss)])


class PerRun(Strategy):
  """``harness.runs.train_and_evaluate``, run by ``harness.runner`` one run at a time."""
  name, summary = 'per_run', 'the per-run path (runs.train_and_evaluate)'
  in_engine = False

  def train(self, family: Family, inputs: RunInputs) -> list[RunResult]:
    # The engine hands in_engine=False families to harness.runner, which trains them spec by spec.
    raise TypeError('per_run families are trained by harness.runner, not inside the engine')


STRATEGIES: dict[str, Strategy] = {s.name: s for s in (Vmap(), Sequential(), Fused(), PerRun())}

# Measured choice per (backend, architecture); '*' is any architecture (docs/performance.md).
AUTO: dict[tuple[str, str], str] = {
    ('cpu', 'mlp'): 'fused', ('cpu', '*'): 'sequential',
    ('gpu', '*'): 'vmap', ('tpu', '*'): 'vmap',
}


def choose_strategy(requested: str, backend: str, model_name: str) -> Strategy:
  """The strategy for a family: ``requested``, or the measured default when it is 'auto'.

  Raises:
    UserError: unknown strategy name.
  """
  if requested in ('', 'auto', None):
    arch = models.VARIANTS[model_name][0] if model_name in models.VARIANTS else '*'
    requested = AUTO.get((backend, arch)) or AUTO.get((backend, '*'), 'vmap')
  if requested not in STRATEGIES:
    raise UserError(f"unknown execution strategy '{requested}': choose auto or one of "
                    f"{', '.join(STRATEGIES)}")
  return STRATEGIES[requested]
