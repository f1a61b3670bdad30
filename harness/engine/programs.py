"""The compiled programs of a family. Every difference between runs is an argument; the model,
the optimizer and the frozen depths (:class:`Depths`) are static.

A run whose first n layers are frozen computes their outputs on its training and test sets once
and trains and evaluates only the layers after them: a ``lax.switch`` branch per depth in one
program (``Depths.switch``), or a program per depth where branches are slow (XLA's CPU
convolutions inside a conditional or a loop, jax-ml/jax#12868).
"""

from __future__ import annotations

import dataclasses
import functools
import math
import threading
from typing import Callable

import jax
import jax.numpy as jnp
from jax import lax

from harness import compilation, models, training
from harness.engine import semantics


def _eval_chunk(model, variables, x, y, valid, start: int = 0) -> jax.Array:
  """``[sum of losses, number correct]`` over the valid rows of one chunk (``x``: the output of
  ``layer{start}``)."""
  loss_sum, correct = training.eval_sums(model, variables, x, y, valid, start=start)
  return jnp.stack([loss_sum, correct.astype(jnp.float32)])


def variables_of(state: training.TrainState) -> dict:
  return {'params': state.params, 'batch_stats': state.batch_stats}


@dataclasses.dataclass(frozen=True)
class Depths:
  """The frozen depths a family's programs have a branch for (static, hashable).

  ``depths[i]`` is a number of leading frozen layers whose output a run computes once
  (:func:`frozen_outputs`, :func:`prefix_program`) and trains on; branch i of every program
  starts at ``layer{depths[i]}`` (``depths[0] == 0``: the input). ``shapes[i]`` is that
  layer's per-example output shape, stored flat and zero-padded to ``width`` columns in one
  features buffer per family.

  ``switch``: the branches are a ``lax.switch`` inside one program (the ``fused`` strategy), or
  each depth used compiles its own program (``sequential``, conv nets on CPU): XLA's CPU backend
  runs convolutions inside a conditional many times slower, as inside loops (jax-ml/jax#12868;
  docs/performance.md).
  """
  depths: tuple[int, ...] = (0,)
  shapes: tuple[tuple[int, ...], ...] = ((),)
  width: int = 1
  switch: bool = True  # one program with a lax.switch over depths, else one program per depth

  def rows(self, features: jax.Array, depth_index: int) -> jax.Array:
    """Rows of a flat features buffer as branch ``depth_index``'s layer outputs."""
    shape = self.shapes[depth_index]
    return features[..., :math.prod(shape)].reshape(*features.shape[:-1], *shape)


def _branch(depths: Depths, depth_index, branches: list[Callable], operand):
  """Branch ``depth_index`` of ``branches``: chosen when tracing if ``depth_index`` is static (a
  Python int: one program per depth), else by a ``lax.switch`` in the program."""
  if isinstance(depth_index, int) or len(branches) == 1:
    return branches[depth_index if isinstance(depth_index, int) else 0](operand)
  return lax.switch(depth_index, branches, operand)


def _segment(state, depth_index, idx, x_train, f_train, y_train, x_test, f_test, y_test, valid,
             start, stop, *, model, tx, depths: Depths):
  """Trains one run from step ``start`` to ``stop``, then evaluates it on the whole test set.

  The run starts at ``layer{depths.depths[depth_index]}``: on the inputs (depth 0) or on its
  frozen prefix's outputs ``f_train``/``f_test`` (one ``lax.switch`` branch per depth, so one
  program; the branches not taken are not executed).

  Returns:
    The new state and ``[accuracy, test loss, loss of the last training step (NaN if none)]``.
  """

  def segment(i, first, state):
    rows = (lambda a: a) if first == 0 else (lambda a: depths.rows(a, i))
    train_in, test_in = (x_train, x_test) if first == 0 else (f_train, f_test)

    def body(t, carry):
      state, _ = carry
      batch = lax.dynamic_index_in_dim(idx, t, keepdims=False)
      state, metrics = training.train_step(state, rows(train_in[batch]), y_train[batch],
                                           model=model, tx=tx, start=first)
      return state, metrics['loss']

    state, last_loss = lax.fori_loop(start, stop, body, (state, jnp.float32(jnp.nan)))
    variables = variables_of(state)
    sums = lax.map(lambda c: _eval_chunk(model, variables, rows(c[0]), c[1], c[2], start=first),
                   (test_in, y_test, valid))
    loss_sum, correct = jnp.sum(sums, axis=0)
    n = jnp.sum(valid).astype(jnp.float32)
    return state, jnp.stack([correct / n, loss_sum / n, last_loss])

  return _branch(depths, depth_index,
                 [functools.partial(segment, i, d) for i, d in enumerate(depths.depths)], state)


def _indexed_step(state, depth_index, idx, x_train, f_train, y_train, t, *, model, tx,
                  depths: Depths):
  batch = lax.dynamic_index_in_dim(idx, t, keepdims=False)

  def step(i, d, state):
    rows = x_train[batch] if d == 0 else depths.rows(f_train[batch], i)
    state, metrics = training.train_step(state, rows, y_train[batch], model=model, tx=tx, start=d)
    return state, metrics['loss']

  return _branch(depths, depth_index,
                 [functools.partial(step, i, d) for i, d in enumerate(depths.depths)], state)


@functools.lru_cache(maxsize=None)
def step_program(model, tx, depths: Depths = Depths()) -> Callable:
  """``(state, depth_index, idx, x_train, f_train, y_train, t) -> (state, loss)``: step t of one
  run, on device data (``depth_index`` static unless ``depths.switch``)."""
  return jax.jit(functools.partial(_indexed_step, model=model, tx=tx, depths=depths),
                 donate_argnums=0, static_argnums=() if depths.switch else (1,))


def _eval_from(variables, depth_index, x, f, y, valid, *, model, depths: Depths):
  branches = [functools.partial(
      lambda i, d, v: _eval_chunk(model, v, x if d == 0 else depths.rows(f, i), y, valid, start=d),
      i, d) for i, d in enumerate(depths.depths)]
  return _branch(depths, depth_index, branches, variables)


@functools.lru_cache(maxsize=None)
def eval_program(model, depths: Depths = Depths()) -> Callable:
  """``(variables, depth_index, x, f, y, valid) -> [loss sum, correct]`` of one test chunk."""
  return jax.jit(functools.partial(_eval_from, model=model, depths=depths),
                 static_argnums=() if depths.switch else (1,))


def _frozen_output(variables, rows, a: int, b: int, *, model, depths: Depths):
  """Output of layer ``depths.depths[b]`` from that of ``depths.depths[a]`` (0: the inputs),
  flat and zero-padded to ``depths.width`` columns. Evaluation mode, which is what training
  computes for a frozen layer too (frozen batch norm normalises with its running statistics;
  models with dropout are not given frozen depths)."""
  out = model.apply(variables, rows, train=False, start=depths.depths[a],
                    stop=depths.depths[b]).reshape(rows.shape[0], -1)
  return jnp.pad(out, ((0, 0), (0, depths.width - out.shape[1])))


@functools.lru_cache(maxsize=None)
def prefix_program(model, depths: Depths) -> Callable:
  """``(variables, depth_index, rows) -> outputs``: one chunk of rows through the frozen layers
  of a static depth (the one-program-per-depth families; the caller loops over chunks, since
  convolutions inside ``lax.map`` are slow on CPU)."""
  fn = lambda variables, b, rows: _frozen_output(variables, rows, 0, b, model=model, depths=depths)
  return jax.jit(fn, static_argnums=(1,))


def prefix_pairs(depths: Depths) -> list[tuple[int, int]]:
  """The (from, to) depth-index pairs a switched program computes frozen outputs for: every
  deeper frozen depth from the input (from = 0) or from a shallower one's outputs."""
  return [(a, b) for b in range(1, len(depths.depths)) for a in range(b)]


def frozen_outputs(variables, branch, x_train, x_test, f_train, f_test, *, model,
                    depths: Depths):
  """A run's frozen layers' outputs on its training rows and test rows, inside its program.

  ``branch`` 0 returns ``f_train``, ``f_test`` as given (no frozen layers, or another run with
  the same frozen layers computed them); branch k computes the outputs of layer
  ``depths.depths[b]`` (training rows at most 1024 at a time, test rows a test chunk at a time)
  from the inputs (a = 0) or from the given outputs of layer ``depths.depths[a]``, where
  ``(a, b) = prefix_pairs(depths)[k - 1]``.

  Returns:
    ``(training rows' outputs (num_train, width), test rows' (*test_chunks, width))``.
  """
  num_train = x_train.shape[0]
  chunk = divisor_at_most(num_train, 1024)

  def through(a, b, rows):
    return _frozen_output(variables, rows if a == 0 else depths.rows(rows, a), a, b, model=model,
                          depths=depths)

  def compute(a, b, _):
    # Training rows are read in place, a chunk at a time: joining them with the test rows made
    # XLA copy them into scratch memory (tests/test_packing.py checks it does not).
    train_in, test_in = (x_train, x_test) if a == 0 else (f_train, f_test)

    def train_chunk(i, out):
      rows = lax.dynamic_slice_in_dim(train_in, i * chunk, chunk)
      return lax.dynamic_update_slice_in_dim(out, through(a, b, rows), i * chunk, 0)

    out = lax.fori_loop(0, num_train // chunk, train_chunk,
                        jnp.zeros((num_train, depths.width), f_train.dtype))
    return out, lax.map(functools.partial(through, a, b), test_in)

  branches = [lambda _: (f_train, f_test)]
  branches += [functools.partial(compute, a, b) for a, b in prefix_pairs(depths)]
  return lax.switch(branch, branches, None)


def divisor_at_most(n: int, cap: int) -> int:
  return max(d for d in range(1, min(n, cap) + 1) if n % d == 0)

# ----------------------------------------------------------------------------------------------
# A run's starting state, inside its program.

def _start_one(seed, pair, base, copied, copy, fresh, multipliers, starts, *, model, input_shape, tx):
  """:func:`semantics.start_state` of one run from data: its own initial weights
  (:func:`semantics.own_init`), the layers where ``copy`` (per layer, 0/1) taken from ``copied``
  (the source network's layers, laid out as the whole network), its schedule of multipliers."""
  names = models.layer_names(model.num_layers)
  init = semantics.own_init(model, seed, pair, base, fresh, input_shape)
  schedule = training.TrainSchedule(multipliers, starts)
  return semantics.start_state(init, copied, copy, schedule, names, tx,
                               semantics.dropout_key(seed))


@functools.lru_cache(maxsize=None)
def start_program(model, input_shape: tuple, tx) -> Callable:
  """``(seed, pair, base, copied, copy, fresh, multipliers, starts) -> TrainState`` of one run (see
  :func:`_start_one`), for the strategies that call a step program."""
  return jax.jit(functools.partial(_start_one, model=model, input_shape=input_shape, tx=tx))


# ----------------------------------------------------------------------------------------------
# The whole run as one program (the in-program strategies: fused, vmap).

def _whole_run(start, prefix, idx, data, points, depth_index, *, model, input_shape, tx,
               depths: Depths):
  """One run from its starting state to its last evaluation.

  Args:
    start: ``(seed, pair, base, copied, copy, fresh, multipliers, starts)`` (:func:`_start_one`).
    prefix: ``(branch, f_train, f_test)`` (:func:`frozen_outputs`; not read without a switch).
    idx: the run's batch indices, (steps, batch).
    data: ``(x_train, y_train, x_test, y_test, valid)`` of the family.
    points: (P, 2) steps: train from ``points[p, 0]`` to ``points[p, 1]``, then evaluate.
    depth_index: the run's frozen depth (branch of :func:`_segment`).

  Returns:
    The final variables, metrics (P, 3) (:func:`_segment`), and with a switch the frozen
    outputs trained on (for later runs with the same frozen layers), else ``()``.
  """
  state = _start_one(*start, model=model, input_shape=input_shape, tx=tx)
  x_train, y_train, x_test, y_test, valid = data
  branch, f_train, f_test = prefix
  features = ()
  if depths.switch and len(depths.depths) > 1:
    f_train, f_test = frozen_outputs(variables_of(state), branch, x_train, x_test, f_train,
                                      f_test, model=model, depths=depths)
    features = (f_train, f_test)

  def point(state, bounds):
    return _segment(state, depth_index, idx, x_train, f_train, y_train, x_test, f_test, y_test,
                    valid, bounds[0], bounds[1], model=model, tx=tx, depths=depths)

  state, metrics = lax.scan(point, state, points)
  return variables_of(state), metrics, features


@functools.lru_cache(maxsize=None)
def run_program(model, input_shape: tuple, tx, packed: bool, depths: Depths = Depths()) -> Callable:
  """``(start, prefix, idx, data, points, depth_index) -> (variables, metrics, features)`` (see
  :func:`_whole_run`): a family's one program, with a run axis on ``start``, ``idx`` and the
  outputs if ``packed``."""
  fn = functools.partial(_whole_run, model=model, input_shape=input_shape, tx=tx, depths=depths)
  if packed:
    fn = jax.vmap(fn, in_axes=(0, None, 0, None, None, None), out_axes=(0, 0, None))
  return jax.jit(fn)


_USED: dict[int, Callable] = {}  # every program handed out, to count its compilations
_PROGRAMS_LOCK = threading.Lock()  # one jitted function per key, also from concurrent runs


def program(factory: Callable, *key) -> Callable:
  with _PROGRAMS_LOCK:
    fn = factory(*key)
    _USED[id(fn)] = fn
  return fn


def programs_compiled() -> int:
  """Compiled specialisations of every program of this module so far (this process)."""
  return compilation.program_count(_USED.values())

