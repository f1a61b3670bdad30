"""Fast execution of a sweep: one compiled program per family, runs packed to fill the device.

A sweep is hundreds of small trainings that differ only in data: which layers are copied, which
are frozen, the seed. Here every such difference enters the compiled program as an array (the
seed, from which the run's own initial weights are drawn inside the program; the copied layers
and a per-layer ``copy`` vector; per-leaf ``trainable`` masks and the per-layer ``frozen``
vector; the run's batch indices), so one compilation serves every condition, n and seed of a
*family*: runs with the same model, optimizer, budget and data shapes. With the in-program
strategies a run is one call of that one program (:func:`run_program`): starting state, frozen
layers' outputs, every training step and evaluation, one host sync per run. Training sets are
padded to a bucketed length (the padding rows are never drawn), so the two tasks of a pair share
a family.

A run whose first n layers are frozen computes their outputs on its training and test sets once
and trains and evaluates only the layers after them (:class:`Depths`: a ``lax.switch`` branch
per n in the program for MLPs, a program per n for conv nets on CPU). With the switch, the
n = 2 run of a source continues from the n = 1 run's outputs (the same frozen layer 1,
recognised by :func:`prefix_keys`; the runs of a source go one after the other in one thread,
:func:`_work_items`) instead of starting from the inputs.

On CPU the one-run strategies train one run per core at once, in threads of this process
(:func:`concurrent_runs`): XLA's CPU convolutions use one core, and a small MLP's step does not
fill two. The runs' records are the same, to the bit, as one at a time (tested).

Strategies (:data:`STRATEGIES`; chosen per backend and architecture by :func:`choose_strategy`,
``config.execution.strategy`` overrides):

* ``vmap``: ``pack_size`` runs trained side by side with ``jax.vmap`` of :func:`run_program`:
  the whole runs, steps (``lax.fori_loop``) and evaluations on the whole test set, inside the
  program, so the host syncs once per pack. With several devices the run axis is sharded
  across them (``jax.sharding``). Default on GPU/TPU. Packs are as equal as
  possible (:func:`balanced_pack_size`), so small groups (base nets) are not padded to full packs.
* ``sequential``: one run at a time, a Python loop over steps calling one compiled step (batch
  indices gathered on the device), evaluation in one program per chunk of the test set with one
  host sync per evaluation point, the starting state from :func:`start_program` (3 programs per
  family, and a step, an evaluation and a frozen-output program per frozen depth used). Default
  for conv nets on CPU, where ``vmap`` turns batched
  weights into a slow grouped convolution (~3x slower, measured) and convolutions inside
  ``lax.scan``/``fori_loop`` are ~15x slower than a Python loop (jax-ml/jax#12868).
* ``fused``: one run at a time, the whole run inside :func:`run_program`. Default for MLPs on CPU:
  on 2 cores the sweep is compute-bound (a pack's batched matmuls are no faster per run than one
  run's), and ``vmap`` compiles one large program per pack size (measured in README "Speed").
* ``per_run``: the original path, ``harness.runs.train_and_evaluate`` (also always used for
  streamed data sets too big for memory).

The batch order of every run is the one of the per-run path (``training.batch_indices`` with the
run's ``(seed, target)`` generator), drawn on the host up front; curves equal the per-run path's
to float tolerance (tested).
"""

from __future__ import annotations

import collections
import concurrent.futures
import contextlib
import dataclasses
import functools
import hashlib
import importlib
import itertools
import math
import os
import threading
import time
import zlib
from typing import Any, Callable, Iterator, Sequence

import jax
import jax.numpy as jnp
import numpy as np
import optax
from jax import lax
from jax.sharding import Mesh, NamedSharding, PartitionSpec

from harness import compilation, models, runs, training, transfer
from harness.results import ResultsStore


@dataclasses.dataclass(frozen=True)
class Strategy:
  """How the runs of a family are executed.

  Attributes:
    name: registry key.
    pack: train several runs at once with ``jax.vmap`` (sharded across devices).
    device_loop: the training steps between two evaluations run inside one program.
    summary: one line for the documentation and ``--help``.
  """
  name: str
  pack: bool
  device_loop: bool
  summary: str


STRATEGIES: dict[str, Strategy] = {s.name: s for s in (
    Strategy('vmap', True, True, 'runs packed with vmap, steps and evaluation inside the program'),
    Strategy('sequential', False, False, 'one run at a time, Python loop over one compiled step'),
    Strategy('fused', False, True, 'one run at a time, steps and evaluation inside the program'),
    Strategy('per_run', False, False, 'the per-run path (runs.train_and_evaluate)'),
)}

# Measured choice per (backend, architecture); '*' is any architecture. See the module docstring
# and README ("Speed") for the measurements behind the CPU rows.
AUTO: dict[tuple[str, str], str] = {
    ('cpu', 'mlp'): 'fused', ('cpu', '*'): 'sequential',
    ('gpu', '*'): 'vmap', ('tpu', '*'): 'vmap',
}
PACK_SIZE = {'cpu': 8, '*': 64}  # runs per pack when config.execution.pack_size is 0
MAX_INDEX_BYTES = 256 << 20      # batch indices of a pack beyond this: fall back to per_run
SOURCE_POLL_S = 0.05             # how often a worker looks whether another worker's source is done


def choose_strategy(requested: str, backend: str, model_name: str) -> Strategy:
  """The strategy for a family: ``requested``, or the measured default when it is 'auto'.

  Raises:
    UserError: unknown strategy name.
  """
  from harness.errors import UserError
  if requested in ('', 'auto', None):
    arch = models.VARIANTS[model_name][0] if model_name in models.VARIANTS else '*'
    requested = AUTO.get((backend, arch)) or AUTO.get((backend, '*'), 'vmap')
  if requested not in STRATEGIES:
    raise UserError(f"unknown execution strategy '{requested}': choose auto or one of "
                    f"{', '.join(STRATEGIES)}")
  return STRATEGIES[requested]


def default_pack_size(backend: str) -> int:
  return PACK_SIZE.get(backend, PACK_SIZE['*'])


def balanced_pack_size(num_runs: int, cap: int, devices: int = 1) -> int:
  """Runs per pack for a group of ``num_runs``: the fewest packs of at most ``cap``, equal sizes.

  A fixed size pads small groups (a base net per task: 1 run padded to 8 is 8x the work); the
  size is instead ``ceil(num_runs / packs)`` rounded up to a multiple of ``devices``, so at most
  ``packs * devices - 1`` slots are padding. Groups of different sizes then compile their own
  program (a few seconds each), far less than the padded work they save.
  """
  packs = -(-num_runs // max(1, cap))
  size = -(-num_runs // packs)
  return -(-size // devices) * devices


# ----------------------------------------------------------------------------------------------
# Data of a family: training set padded to a bucketed length, test set padded to whole chunks.

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
  data, train, test = runs.device_task(target, data_dir)
  if not (isinstance(train, tuple) and isinstance(test, tuple)):
    return None
  (x_train, y_train), (x_test, y_test) = data.train, data.test  # host arrays
  n_train, n_test = x_train.shape[0], x_test.shape[0]
  # Equal chunks of at most eval_chunk rows covering bucket(n_test), a multiple of 16 each: both
  # tasks of a pair share the shape, and padding is a few % (not up to a whole chunk: 4990 test
  # images in chunks of 2048 were 6144 rows, 23% of the evaluation, which dominates short runs).
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
  data = runs.device_task(target, data_dir)[0]
  (x_train, y_train), (x_test, y_test) = data.train, data.test  # host arrays
  rows = math.prod(shapes.valid.shape)
  valid = (np.arange(rows) < shapes.num_test).reshape(shapes.valid.shape)
  return FamilyData(_padded(x_train, shapes.x_train.shape[0]),
                    _padded(y_train, shapes.y_train.shape[0]), shapes.num_train,
                    _padded(x_test, rows, shapes.x_test.shape),
                    _padded(y_test, rows, shapes.y_test.shape), jax.device_put(valid),
                    shapes.num_test)


# ----------------------------------------------------------------------------------------------
# The compiled programs. All differences between runs are arguments; model and optimizer static.

def _eval_chunk(model, variables, x, y, valid, start: int = 0) -> jax.Array:
  """``[sum of losses, number correct]`` over the valid rows of one chunk (``x``: the output of
  ``layer{start}``)."""
  logits = model.apply(variables, x, train=False, start=start)
  losses = optax.softmax_cross_entropy_with_integer_labels(logits, y)
  correct = jnp.argmax(logits, -1) == y
  return jnp.stack([jnp.sum(jnp.where(valid, losses, 0.0)),
                    jnp.sum(jnp.where(valid, correct, 0)).astype(jnp.float32)])


def _variables(state: training.TrainState) -> dict:
  return {'params': state.params, 'batch_stats': state.batch_stats}


@dataclasses.dataclass(frozen=True)
class Depths:
  """The frozen depths a family's programs have a branch for (static, hashable).

  ``depths[i]`` is a number of leading frozen layers whose output a run computes once
  (:func:`_frozen_outputs`, :func:`prefix_program`) and trains on; branch i of every program
  starts at ``layer{depths[i]}`` (``depths[0] == 0``: the input). ``shapes[i]`` is that
  layer's per-example output shape, stored flat and zero-padded to ``width`` columns in one
  features buffer per family.

  ``switch``: the branches are a ``lax.switch`` inside one program (the ``fused`` strategy), or
  each depth used compiles its own program (``sequential``, conv nets on CPU): XLA's CPU backend
  runs convolutions inside a conditional ~12x slower (a cnn/small train step: 82 ms plain, 968 ms
  as a branch of a two-way ``lax.switch``), as inside loops (jax-ml/jax#12868).
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
    variables = _variables(state)
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


def _frozen_outputs(variables, branch, x_train, x_test, f_train, f_test, *, model,
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
  chunk = _divisor_at_most(num_train, 1024)

  def through(a, b, rows):
    return _frozen_output(variables, rows if a == 0 else depths.rows(rows, a), a, b, model=model,
                          depths=depths)

  def compute(a, b, _):
    # Training rows are read in place, a chunk at a time: joining them with the test rows, or
    # mapping over them reshaped, made XLA copy them (263 MB of scratch memory for MNIST against
    # 11 MB, and the program's first call, which writes it to fresh pages, took 1.52 s, not 0.87).
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


def _divisor_at_most(n: int, cap: int) -> int:
  return max(d for d in range(1, min(n, cap) + 1) if n % d == 0)


# ----------------------------------------------------------------------------------------------
# A run's starting state, inside its program.

def _init_one(seed, transferred, *, model, input_shape):
  """``runs.init_key`` + ``models.init_variables``, as data: one program for every seed."""
  key = jax.random.key(seed)
  key = lax.cond(transferred, lambda k: jax.random.fold_in(k, 1), lambda k: k, key)
  return models.init_variables(model, key, input_shape)


def _start_one(seed, transferred, copied, copy, train, *, model, input_shape, tx):
  """``training.create_state`` of one run, from data: its own initial weights (as
  ``runs.init_key``), the layers where ``copy`` (per layer, 0/1) taken from ``copied`` (the
  source network's layers, laid out as the whole network: :meth:`_Family.copied`), trained
  where ``train``."""
  names = models.layer_names(model.num_layers)
  init = _init_one(seed, transferred, model=model, input_shape=input_shape)
  variables = {c: jax.tree.map(lambda m, s, i: jnp.where(m > 0, s, i),
                               transfer.leaf_mask(init[c], names, copy), copied[c], init[c])
               for c in ('params', 'batch_stats')}
  return training.TrainState(
      step=jnp.zeros((), jnp.int32), params=variables['params'],
      batch_stats=variables['batch_stats'], opt_state=tx.init(variables['params']),
      trainable=transfer.leaf_mask(variables['params'], names, train),
      stats_trainable=transfer.leaf_mask(variables['batch_stats'], names, train),
      frozen=1.0 - train, rng=jax.random.fold_in(jax.random.key(seed), 2))


@functools.lru_cache(maxsize=None)
def start_program(model, input_shape: tuple, tx) -> Callable:
  """``(seed, transferred, copied, copy, train) -> TrainState`` of one run (see
  :func:`_start_one`), for the strategies that call a step program."""
  return jax.jit(functools.partial(_start_one, model=model, input_shape=input_shape, tx=tx))


# ----------------------------------------------------------------------------------------------
# The whole run as one program (the in-program strategies: fused, vmap).

def _whole_run(start, prefix, idx, data, points, depth_index, *, model, input_shape, tx,
               depths: Depths):
  """One run from its starting state to its last evaluation.

  Args:
    start: ``(seed, transferred, copied, copy, train)`` (:func:`_start_one`).
    prefix: ``(branch, f_train, f_test)`` (:func:`_frozen_outputs`; not read without a switch).
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
    f_train, f_test = _frozen_outputs(_variables(state), branch, x_train, x_test, f_train,
                                      f_test, model=model, depths=depths)
    features = (f_train, f_test)

  def point(state, bounds):
    return _segment(state, depth_index, idx, x_train, f_train, y_train, x_test, f_test, y_test,
                    valid, bounds[0], bounds[1], model=model, tx=tx, depths=depths)

  state, metrics = lax.scan(point, state, points)
  return _variables(state), metrics, features


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


def _program(factory: Callable, *key) -> Callable:
  with _PROGRAMS_LOCK:
    fn = factory(*key)
    _USED[id(fn)] = fn
  return fn


def programs_compiled() -> int:
  """Compiled specialisations of every program of this module so far (this process)."""
  return compilation.program_count(_USED.values())


# ----------------------------------------------------------------------------------------------
# Runs' inputs.

def _index_shape(hyper: dict) -> tuple[int, int]:
  """(rows, batch size) of a run's batch indices: a 0-step run still has a (never read) row."""
  return max(1, hyper['steps']), hyper['batch_size']


def _batch_order(spec: runs.RunSpec, num_train: int) -> np.ndarray:
  """The run's batch indices, :func:`_index_shape`: exactly the order of the per-run path."""
  steps, batch_size = _index_shape(spec.hyper)
  data_rng = np.random.default_rng([spec.seed, zlib.crc32(spec.target.name.encode())])
  batches = training.batch_indices(num_train, batch_size, data_rng)
  return np.stack(list(itertools.islice(batches, steps))).astype(np.int32)


def _host(tree):
  return jax.tree.map(np.asarray, tree)


@dataclasses.dataclass
class _RunInputs:
  """What a pack's programs take per run (stacked on a first axis if packed), and the first
  run's frozen depth index and :func:`prefix_keys`."""
  start: tuple
  idx: np.ndarray
  depth_index: int
  keys: tuple


def _run_inputs(specs, family, store: ResultsStore, packed: bool) -> _RunInputs:
  names = models.layer_names(family.model.num_layers)
  starts, idx, plans = [], [], []
  for spec in specs:
    plan = transfer.make_plan(spec.condition, spec.n_layers, spec.fine_tuned,
                              family.model.num_layers)
    source = family.source(spec, store) if spec.condition in ('selffer', 'transfer') else None
    starts.append(_start_args(spec.seed, spec.condition != 'scratch',
                              family.copied(source, plan, names), plan.copy, plan.train))
    idx.append(_batch_order(spec, family.shapes.num_train))
    plans.append(plan)
  if packed:  # packs have only depth 0 (family_depths)
    return _RunInputs(_stacked(starts), np.stack(idx), 0, ())
  depth_index = family.depth_index(plans[0])
  keys = prefix_keys(specs[0], plans[0]) if depth_index else ()
  return _RunInputs(starts[0], idx[0], depth_index, keys)


def _start_args(seed: int, transferred: bool, copied: dict, copy, train) -> tuple:
  """A run's arguments of :func:`_start_one`, with the dtypes its compiled programs take."""
  return (np.int32(seed), np.bool_(transferred), copied, np.asarray(copy, np.float32),
          np.asarray(train, np.float32))


def _stacked(trees: Sequence) -> Any:
  """Equal trees stacked leaf by leaf on a new first (run) axis."""
  return jax.tree.map(lambda *xs: np.stack(xs), *trees)


def _source_id(spec: runs.RunSpec) -> str | None:
  """Where a run's source network comes from (a checkpoint path or a run id), None if none."""
  return spec.source_checkpoint or spec.source_run


def prefix_keys(spec: runs.RunSpec, plan: transfer.Plan) -> tuple[str, ...]:
  """Keys of a run's leading layers: ``keys[d - 1]`` is equal for two runs of a family exactly
  when their layers 1..d start equal. A copied layer is named by its source network, another by
  the run's initial-weights key (``runs.init_key``: the seed, and scratch or not)."""
  where = _source_id(spec)
  digest, keys = hashlib.blake2b(digest_size=16), []
  for layer, copied in enumerate(plan.copy[:-1]):
    name = ('copy', where, layer) if copied else ('init', spec.seed, spec.condition != 'scratch',
                                                  layer)
    digest.update(repr(name).encode())
    keys.append(digest.hexdigest())
  return tuple(keys)


def _run_sharding(num_runs: int) -> tuple[NamedSharding, NamedSharding] | None:
  """(run-axis sharding, replicated) over all devices, or None on a single device."""
  devices = jax.devices()
  if len(devices) == 1 or num_runs % len(devices):
    return None
  mesh = Mesh(np.array(devices), ('runs',))
  return NamedSharding(mesh, PartitionSpec('runs')), NamedSharding(mesh, PartitionSpec())


# ----------------------------------------------------------------------------------------------
# Execution of one pack.

@dataclasses.dataclass
class _Family:
  """What the runs of one group share (runs of a family may train in concurrent threads).

  ``depths``: the frozen depths the programs branch on (only depth 0 for packs, models with
  dropout, or features too big for ``MAX_FEATURE_BYTES``); ``zeros``: the network's variables
  as zeros (:meth:`copied` of runs that copy nothing); ``shapes``: :func:`family_shapes` of the
  target (:attr:`data` is built on first use, or ahead by :func:`_prepared`); ``inputs``:
  training then test inputs (frozen outputs of program-per-depth families); ``sources``:
  source networks' weights read so far; ``prefix_cache``: frozen layers' outputs by
  :func:`prefix_keys` (least recently used first).
  """
  model: Any
  tx: optax.GradientTransformation
  shapes: FamilyData
  num_classes: int
  input_shape: tuple
  hyper: dict
  zeros: dict
  depths: Depths = Depths()
  task: Any = None  # the target's tasks.TaskData (for the weights' metadata)
  target: Any = None  # the target's tasks.TaskSpec and data directory (to build ``data``)
  data_dir: str | None = None
  built: FamilyData | None = None
  inputs: jax.Array | None = None
  placeholder: tuple | None = None
  sources: dict = dataclasses.field(default_factory=dict)
  prefix_cache: collections.OrderedDict = dataclasses.field(default_factory=collections.OrderedDict)
  lock: Any = dataclasses.field(default_factory=threading.Lock)
  data_lock: Any = dataclasses.field(default_factory=threading.Lock)

  @property
  def data(self) -> FamilyData:
    """The target's padded device-resident splits (:func:`family_data`), built once."""
    with self.data_lock:
      if self.built is None:
        self.built = family_data(self.target, self.data_dir)
      return self.built

  def schedule(self) -> list[int]:
    """The steps at which the family's runs are evaluated."""
    return training.eval_steps(self.hyper['steps'], self.hyper['eval_every'])

  def depth_index(self, plan: transfer.Plan) -> int:
    """The branch for a run: its number of leading frozen layers if the programs have one."""
    frozen = int(np.argmax(plan.train > 0)) if np.any(plan.train > 0) else len(plan.train)
    return self.depths.depths.index(frozen) if frozen in self.depths.depths else 0

  def copied(self, source: dict | None, plan: transfer.Plan, names) -> dict:
    """The layers a run copies from ``source``, laid out as the whole network (zeros elsewhere:
    the program takes the run's own initial weights there). Checks the layers' shapes."""
    return transfer.combine(self.zeros, source, plan, names) if np.any(plan.copy) else self.zeros

  def unused_features(self) -> tuple:
    """Frozen-prefix outputs of runs that read none: full size in a switched program (every run
    passes the same shapes), else :func:`_unused_features`."""
    if not (self.depths.switch and len(self.depths.depths) > 1):
      return _unused_features(self.shapes)
    with self.lock:
      if self.placeholder is None:
        self.placeholder = (jnp.zeros((self.shapes.x_train.shape[0], self.depths.width)),
                            jnp.zeros((*self.shapes.y_test.shape, self.depths.width)))
      return self.placeholder

  def cached_prefix(self, depth_index: int, keys: tuple) -> tuple[int, tuple, int]:
    """``(branch, (f_train, f_test), start)`` for a switched run program (:func:`_frozen_outputs`):
    the deepest outputs kept of a run whose layers 1..``depths[start]`` equal this run's
    (``start`` 0: none), and the branch that continues from them (0 if they are this run's)."""
    start, base = 0, self.unused_features()
    with self.lock:
      for d in range(depth_index, 0, -1):
        if keys[d - 1] in self.prefix_cache:
          self.prefix_cache.move_to_end(keys[d - 1])
          start, base = d, self.prefix_cache[keys[d - 1]]
          break
    if start == depth_index:
      return 0, base, start
    return 1 + prefix_pairs(self.depths).index((start, depth_index)), base, start

  def keep_prefix(self, key: str, features: tuple) -> None:
    """Keeps a run's frozen outputs for later runs (at most :meth:`prefix_cache_size`)."""
    with self.lock:
      self.prefix_cache[key] = features
      while len(self.prefix_cache) > self.prefix_cache_size():
        self.prefix_cache.popitem(last=False)

  def prefix_cache_size(self) -> int:
    """Frozen-prefix outputs kept for later runs: 16 at most, within ``MAX_FEATURE_BYTES``."""
    rows = self.shapes.x_train.shape[0] + math.prod(self.shapes.y_test.shape)
    return max(1, min(16, MAX_FEATURE_BYTES // max(1, rows * self.depths.width * 4)))

  def stepwise_features(self, variables, depth_index: int) -> tuple:
    """A run's frozen outputs for a program-per-depth family (computed chunk by chunk)."""
    data = self.data
    if not depth_index:
      return _unused_features(data)
    with self.lock:
      if self.inputs is None:  # training rows then test rows, one input
        x_test = data.x_test.reshape(-1, *data.x_test.shape[2:])
        self.inputs = jnp.concatenate([data.x_train, x_test])
    chunk = _divisor_at_most(self.inputs.shape[0], 1024)
    fn = _program(prefix_program, self.model, self.depths)
    rows = jnp.concatenate([fn(variables, depth_index, self.inputs[i:i + chunk])
                            for i in range(0, self.inputs.shape[0], chunk)])
    num_train = data.x_train.shape[0]
    return rows[:num_train], rows[num_train:].reshape(*data.y_test.shape, -1)

  def source(self, spec: runs.RunSpec, store: ResultsStore) -> dict:
    """A transfer's source network, read once per family (not once per run)."""
    where = _source_id(spec)
    with self.lock:
      if where not in self.sources:
        self.sources[where] = _host(runs._source_variables(  # pylint: disable=protected-access
            spec, store, spec.model, dict(spec.model_kwargs)))
      return self.sources[where]


def _unused_features(data: FamilyData) -> tuple:
  """(train, test) frozen-prefix outputs for programs that never read them: one column, as
  many test chunks as the test set (the per-chunk evaluation indexes them)."""
  return jnp.zeros((1, 1)), jnp.zeros((data.x_test.shape[0], 1, 1))


MAX_FEATURE_BYTES = 1 << 30  # one family's cached frozen-prefix outputs (train + test) at most


def family_depths(model, variables, input_shape: tuple, data: FamilyData,
                  strategy: Strategy) -> Depths:
  """A branch per frozen depth 0..L-1 for one-run-at-a-time strategies, if allowed (see _Family)."""
  if strategy.pack or not models.frozen_prefix_cacheable(model):
    return Depths()
  shapes = models.feature_shapes(model, variables, input_shape)
  width = max(math.prod(shape) for shape in shapes[1:])
  rows = data.x_train.shape[0] + data.x_test.shape[0] * data.x_test.shape[1]
  if rows * width * 4 > MAX_FEATURE_BYTES:
    return Depths()
  return Depths(tuple(range(len(shapes))), tuple(shapes), width, switch=strategy.device_loop)


def _train_pack(family: _Family, inputs: _RunInputs,
                strategy: Strategy) -> list[tuple[list[dict], int | None, Any, int]]:
  """Trains the runs of a pack side by side (or the one run of an unpacked strategy).

  Returns:
    Per run: (curve, step at which it diverged or None, final variables, the number of frozen
    layers whose outputs it took from an earlier run: 0 = computed from the inputs).
  """
  schedule = family.schedule()
  if strategy.device_loop:
    variables, metrics, reused = _train_in_program(family, inputs, strategy.pack, schedule)
  else:
    variables, metrics, reused = _train_stepwise(family, inputs, schedule)
  if not strategy.pack:
    return [_curve(schedule, metrics) + (variables, reused)]
  finals = _host(variables)
  return [_curve(schedule, metrics[r]) + (jax.tree.map(lambda a, r=r: a[r], finals), 0)
          for r in range(metrics.shape[0])]


def _program_args(data: FamilyData, inputs: _RunInputs, branch: int, features: tuple,
                  schedule: Sequence[int], packed: bool) -> tuple:
  """The arguments of a pack's :func:`run_program` call (``data``'s arrays may be shapes only:
  :func:`_compile_ahead`)."""
  points = np.array([[0, schedule[0]], *zip(schedule[:-1], schedule[1:])], np.int32)
  arrays = (data.x_train, data.y_train, data.x_test, data.y_test, data.valid)
  start, idx = inputs.start, inputs.idx
  shardings = _run_sharding(idx.shape[0]) if packed else None
  if shardings:
    by_run, replicated = shardings
    start, idx = jax.device_put(start, by_run), jax.device_put(idx, by_run)
    arrays = jax.device_put(arrays, replicated)
  return start, (np.int32(branch), *features), idx, arrays, points, np.int32(inputs.depth_index)


def _family_run_program(family: _Family, packed: bool) -> Callable:
  return _program(run_program, family.model, family.input_shape, family.tx, packed, family.depths)


def _train_in_program(family: _Family, inputs: _RunInputs, packed: bool, schedule):
  """One call of the family's :func:`run_program`: (variables, metrics on host, layers reused)."""
  branch, features, reused = 0, family.unused_features(), 0
  if inputs.depth_index and family.depths.switch:
    branch, features, reused = family.cached_prefix(inputs.depth_index, inputs.keys)
  args = _program_args(family.data, inputs, branch, features, schedule, packed)
  variables, metrics, computed = _family_run_program(family, packed)(*args)
  if branch:
    family.keep_prefix(inputs.keys[inputs.depth_index - 1], computed)
  return variables, np.asarray(metrics), family.depths.depths[reused]


def _compile_ahead(family: _Family, strategy: Strategy, size: int) -> jax.stages.Compiled | None:
  """Compiles a family's :func:`run_program` for packs of ``size`` from shapes alone, so that
  compiling overlaps with building the data; the packs' calls then find it compiled (one
  compilation, as before). Packs sharded over several devices are compiled by their call
  (returns None)."""
  if not strategy.device_loop or (strategy.pack and _run_sharding(size)):
    return None
  layers = np.zeros(family.model.num_layers)
  one = _start_args(0, False, family.zeros, layers, layers)
  idx = np.zeros(_index_shape(family.hyper), np.int32)
  inputs = (_RunInputs(_stacked([one] * size), _stacked([idx] * size), 0, ()) if strategy.pack
            else _RunInputs(one, idx, 0, ()))
  args = _program_args(family.shapes, inputs, 0, family.unused_features(), family.schedule(),
                       strategy.pack)
  avals = jax.tree.map(lambda a: jax.ShapeDtypeStruct(a.shape, a.dtype), args)
  return _family_run_program(family, strategy.pack).trace(*avals).lower().compile()


@contextlib.contextmanager
def _prepared(items: list[list[_Pack]]) -> Iterator[None]:
  """Gets a phase's work ready in the background while its first runs wait for it: one thread
  compiles the families' programs (:func:`_compile_ahead`), another imports orbax (if base nets'
  weights will be saved) and builds the families' data, both in the order the runs need them.

  On a 2-core CPU (the mlp/3x256 benchmark sweep) the one compilation now starts before the
  0.4 s of data padding instead of after it, and ended 0.22-0.26 s earlier in each of 3
  interleaved pairs of runs (2.22-2.64 s against 2.48-2.87 s into the sweep; the compiler already
  keeps ~1.7 cores busy, so the overlap is partial); importing orbax (0.2 s) no longer stops both
  training threads when the first base net is saved. Errors here are ignored: the runs' own
  calls raise them.
  """
  packs = [pack for item in items for pack in item]
  programs = {}  # one per compiled program: the two tasks of a pair share one
  for pack in packs:
    if pack.strategy.device_loop:
      family, hyper = pack.family, pack.family.hyper
      key = (_family_run_program(family, pack.strategy.pack), family.shapes.x_train.shape,
             family.shapes.x_test.shape, _index_shape(hyper), tuple(family.schedule()), pack.size)
      programs.setdefault(key, functools.partial(_compile_ahead, family, pack.strategy, pack.size))
  families = list({id(pack.family): pack.family for pack in packs}.values())
  saves = any(spec.condition == 'scratch' for pack in packs for spec in pack.specs)

  def data():
    if saves:  # runs.save_checkpoint imports it when the first base net is saved
      importlib.import_module('orbax.checkpoint')
    for family in families:
      family.data  # pylint: disable=pointless-statement

  def quietly(fns):
    for fn in fns:
      try:
        fn()
      except Exception:  # pylint: disable=broad-except
        pass

  threads = [threading.Thread(target=quietly, args=(fns,), daemon=True,
                              name=f'transferbench-{name}')
             for name, fns in (('compile', list(programs.values())), ('data', [data]))]
  for thread in threads:
    thread.start()
  try:
    yield
  finally:
    for thread in threads:
      thread.join()


def _train_stepwise(family: _Family, inputs: _RunInputs, schedule):
  """A Python loop over one compiled step (``sequential``): (variables, metrics, 0)."""
  data, depth_index = family.data, inputs.depth_index
  state = _program(start_program, family.model, family.input_shape, family.tx)(*inputs.start)
  f_train, f_test = family.stepwise_features(_variables(state), depth_index)
  step_fn = _program(step_program, family.model, family.tx, family.depths)
  program = _program(eval_program, family.model, family.depths)
  eval_fn = lambda variables, *chunk: program(variables, depth_index, *chunk)
  idx, points = jnp.asarray(inputs.idx), []
  loss, schedule_set = jnp.float32(jnp.nan), set(schedule)
  for t in range(family.hyper['steps'] + 1):
    if t in schedule_set:
      points.append(_evaluate(eval_fn, state, data, f_test, loss))
    if t == family.hyper['steps']:
      break
    state, loss = step_fn(state, depth_index, idx, data.x_train, f_train, data.y_train,
                          np.int32(t))
  return _variables(state), np.stack(points), 0


def _evaluate(eval_fn, state, data: FamilyData, f_test, train_loss) -> np.ndarray:
  """[accuracy, loss, train loss] on the whole test set, one host sync."""
  variables = _variables(state)
  total = sum(eval_fn(variables, data.x_test[c], f_test[c],
                      data.y_test[c], data.valid[c])
              for c in range(data.x_test.shape[0]))
  loss_sum, correct = np.asarray(total)
  return np.array([correct / data.num_test, loss_sum / data.num_test, float(train_loss)])


def _curve(schedule: Sequence[int], points: Sequence[np.ndarray]) -> tuple[list[dict], int | None]:
  """The curve as ``train_loop`` records it, cut at the first non-finite loss."""
  curve = []
  for step, (accuracy, loss, train_loss) in zip(schedule, points):
    if not (math.isfinite(loss) and (step == 0 or math.isfinite(train_loss))):
      return curve, step
    curve.append({'step': step, 'accuracy': float(accuracy), 'loss': float(loss),
                  'train_loss': float(train_loss)})
  return curve, None


# ----------------------------------------------------------------------------------------------
# A sweep's pending runs: grouped by family and phase, packed, one record per run.

@dataclasses.dataclass
class ExecutionReport:
  """What :func:`execute` did.

  Attributes:
    remaining: specs it did not run (streamed data, ``per_run``, or a source not complete):
      the caller runs them one by one.
    strategies: strategy used per family label.
    families: number of distinct program families (model, optimizer, data shapes).
    programs_compiled: compiled training/evaluation programs (this process; a program loaded from
      the persistent cache counts too).
    xla_compiles: every XLA compilation in the call, eager ops' included (cache hits excluded).
    cache_hits: programs loaded from the persistent cache.
    concurrent_runs: the most packs trained at once in threads (:func:`concurrent_runs`).
    seconds: wall time.
  """
  remaining: list
  strategies: dict
  families: int
  programs_compiled: int
  xla_compiles: int
  cache_hits: int
  concurrent_runs: int
  seconds: float

  def to_dict(self) -> dict:
    d = dataclasses.asdict(self)
    d['remaining'] = len(self.remaining)
    return d


def _family_key(spec: runs.RunSpec, data: FamilyData, num_classes: int) -> tuple:
  return (spec.model, spec.model_kwargs, spec.train, num_classes, data.x_train.shape,
          data.x_test.shape)


def cpu_cores() -> list[int]:
  """The CPU cores this process may run on (its affinity mask, e.g. a SLURM allocation)."""
  if hasattr(os, 'sched_getaffinity'):
    return sorted(os.sched_getaffinity(0))
  return list(range(os.cpu_count() or 1))


def concurrent_runs(requested: int, backend: str, strategy: Strategy) -> int:
  """How many packs (runs, for one-run strategies) train at once, in threads of this process.

  ``requested`` > 0 is used as given. Auto (0): on CPU, one run per usable core (at most
  :data:`MAX_CONCURRENT_RUNS`) for the one-run strategies: XLA's CPU convolutions run on one
  core, and a small MLP's step gains 1.24x from a second core (0.99 against 1.23 ms, 3x256, batch
  64), while two runs side by side trained at 0.66 ms a step each (README "Speed"). Elsewhere 1:
  ``vmap`` packs already fill the device.
  """
  if requested and requested > 0:
    return int(requested)
  if backend != 'cpu' or strategy.pack:
    return 1
  return max(1, min(len(cpu_cores()), MAX_CONCURRENT_RUNS))


MAX_CONCURRENT_RUNS = 8  # auto concurrency's cap (each concurrent run holds its own features)


def execute(specs: Sequence[runs.RunSpec], store: ResultsStore, data_dir: str | None = None, *,
            strategy: str = 'auto', pack_size: int = 0, concurrency: int = 0,
            checkpoint_every: int = 0,
            on_record: Callable[[runs.RunSpec, dict], None] | None = None) -> ExecutionReport:
  """Trains pending runs family by family, writing one record per run (as the per-run path).

  Runs without a source network (base nets, random features, transfers from a checkpoint) go
  first; then the runs whose source run is complete, and, as they complete, those whose source
  another worker is training. A run whose source is missing or failed is left in ``remaining``
  (the per-run path records why), and so is a run longer than ``checkpoint_every`` steps (the
  per-run path saves its progress). Each pack is trained while its runs' claims are held
  (:meth:`ResultsStore.claim`): runs another worker holds, or has finished, are left out.

  Args:
    specs: runs to do, in the sweep's order.
    store: the results store.
    data_dir: TFDS data directory.
    strategy: a key of :data:`STRATEGIES` or 'auto' (see :func:`choose_strategy`).
    pack_size: runs per pack for packed strategies; 0 = the backend's default.
    concurrency: packs trained at once in threads (see :func:`concurrent_runs`); 0 = auto.
    checkpoint_every: the sweep's progress-checkpoint interval (0: none).
    on_record: called with each spec and its record once written (one call at a time).

  Returns:
    An :class:`ExecutionReport`.
  """
  start = time.time()
  programs_before = programs_compiled()
  backend = jax.default_backend()
  remaining: list = []
  settings = _Settings(strategy, pack_size, concurrency, backend, on_record)
  with compilation.CompileCounter() as counter:
    long_runs = [s for s in specs if 0 < checkpoint_every < s.hyper['steps']]
    remaining += long_runs
    specs_here = [s for s in specs if s not in long_runs]
    first = [s for s in specs_here if not s.source_run]
    later = [s for s in specs_here if s.source_run]
    for phase in (first, later):
      pending = list(phase)
      while pending:
        ready = [s for s in pending if not s.source_run or store.status(s.source_run) == 'complete']
        if not ready:  # sources another worker is training: wait for them, then pack their runs
          if not any(store.status(s.source_run) is None and store.is_claimed(s.source_run)
                     for s in pending):
            break
          time.sleep(SOURCE_POLL_S)
          continue
        pending = [s for s in pending if s not in ready]
        remaining += _execute_phase(ready, store, data_dir, settings)
      remaining += pending
  order = {s.run_id: i for i, s in enumerate(specs)}
  remaining.sort(key=lambda s: order[s.run_id])
  return ExecutionReport(remaining=remaining, strategies=settings.used,
                         families=len(settings.families),
                         programs_compiled=programs_compiled() - programs_before,
                         xla_compiles=counter.xla, cache_hits=counter.cache_hits,
                         concurrent_runs=settings.most_concurrent, seconds=time.time() - start)


@dataclasses.dataclass
class _Settings:
  """How :func:`execute` runs a sweep's phases, and what it did so far."""
  strategy: str
  pack_size: int
  concurrency: int
  backend: str
  on_record: Callable | None
  used: dict = dataclasses.field(default_factory=dict)
  families: set = dataclasses.field(default_factory=set)
  most_concurrent: int = 1
  record_lock: Any = dataclasses.field(default_factory=threading.Lock)


@dataclasses.dataclass
class _Pack:
  """Runs trained together (one run for one-run strategies), and how."""
  specs: list
  family: _Family
  strategy: Strategy
  size: int
  concurrent: int = 1


def _execute_phase(specs, store, data_dir, settings: _Settings) -> list:
  """Runs one dependency phase (packs of every family at once, up to the concurrency);
  returns the specs left to the per-run path."""
  groups: dict[tuple, list] = {}
  left = []
  for spec in specs:
    strategy = choose_strategy(settings.strategy, settings.backend, spec.model)
    data = family_shapes(spec.target, data_dir) if strategy.name != 'per_run' else None
    if data is None:
      left.append(spec)
      continue
    task = runs.device_task(spec.target, data_dir)[0]
    key = _family_key(spec, data, task.num_classes)
    groups.setdefault((key, spec.target, strategy), []).append(spec)
  packs: list[_Pack] = []
  for (key, target, strategy), group in groups.items():
    settings.families.add(key)
    settings.used[f'{key[0]} {target.name}'] = strategy.name
    cap = settings.pack_size or default_pack_size(settings.backend)
    size = balanced_pack_size(len(group), cap, jax.device_count()) if strategy.pack else 1
    if strategy.pack and group[0].hyper['steps'] * group[0].hyper['batch_size'] * 4 * size > MAX_INDEX_BYTES:
      left += group
      continue
    family = _make_family(group[0], target, data_dir, strategy)
    packs += [_Pack(group[i:i + size], family, strategy, size)
              for i in range(0, len(group), size)]
  threads = min(len(packs), max([concurrent_runs(settings.concurrency, settings.backend, p.strategy)
                                 for p in packs] or [1]))
  settings.most_concurrent = max(settings.most_concurrent, threads)
  for pack in packs:
    pack.concurrent = threads
  train = functools.partial(_train_and_record, store=store, settings=settings)
  items = _work_items(packs)
  with _prepared(items):
    _train_items(items, train, threads)
  return left


def _train_items(items: list[list[_Pack]], train: Callable, threads: int) -> None:
  """Calls ``train`` on every item, in ``threads`` threads at once."""
  if threads <= 1:
    for item in items:
      train(item)
    return
  # Threads: JAX releases the GIL while a program runs, and compiles a program once when several
  # threads call it first; each thread trains an item's packs, writes their records, takes the next.
  with concurrent.futures.ThreadPoolExecutor(threads, thread_name_prefix='transferbench-run') as pool:
    futures = [pool.submit(train, item) for item in items]
    try:
      for future in concurrent.futures.as_completed(futures):
        future.result()  # the first error (e.g. a bad source checkpoint) stops the phase
    except BaseException:
      for future in futures:
        future.cancel()
      raise


def _frozen_layers(spec: runs.RunSpec) -> int:
  return 0 if spec.fine_tuned or spec.condition == 'scratch' else spec.n_layers


def _work_items(packs: list[_Pack]) -> list[list[_Pack]]:
  """Packs in the order threads take them, one item (a list of packs) at a time.

  An item holds the one-run packs of a source network (or of a seed's random frozen layers) with
  frozen layers, shallowest first: the n = 2 run then continues from the n = 1 run's outputs
  (:meth:`_Family.cached_prefix`), kept by the same thread. Items with the most training go
  first (runs' steps times the share of layers they train), so the threads finish together.
  """
  items: dict = {}
  for i, pack in enumerate(packs):
    spec = pack.specs[0]
    if pack.strategy.pack or not _frozen_layers(spec):
      items[i] = [pack]
    else:
      owner = _source_id(spec) or ('init', spec.seed)
      items.setdefault((id(pack.family), owner), []).append(pack)
  work = lambda p: sum(s.hyper['steps'] * (1 - _frozen_layers(s) / p.family.model.num_layers)
                       for s in p.specs)
  ordered = [sorted(item, key=lambda p: _frozen_layers(p.specs[0])) for item in items.values()]
  return sorted(ordered, key=lambda item: -sum(map(work, item)))


def _make_family(spec0, target, data_dir, strategy: Strategy) -> _Family:
  """The programs' static parts and the data of one family's runs on one target task."""
  task = runs.device_task(target, data_dir)[0]
  data = family_shapes(target, data_dir)
  model = models.build_model(spec0.model, task.num_classes, **dict(spec0.model_kwargs))
  hyper = spec0.hyper
  tx = training.make_optimizer(hyper['lr'], hyper['momentum'], hyper['weight_decay'],
                               hyper['lr_decay_every'], hyper['lr_decay_factor'])
  input_shape = tuple(task.input_shape)
  shapes_only = jax.eval_shape(lambda: models.init_variables(model, jax.random.key(0), input_shape))
  depths = family_depths(model, shapes_only, input_shape, data, strategy)
  zeros = jax.tree.map(lambda a: np.zeros(a.shape, a.dtype), shapes_only)
  return _Family(model, tx, data, task.num_classes, input_shape, hyper, zeros, depths, task,
                 target, data_dir)


def _train_and_record(item: list[_Pack], *, store: ResultsStore, settings: _Settings) -> None:
  """Trains an item's packs, each under its runs' claims, and writes their records (and base
  nets' weights)."""
  for pack in item:
    family, strategy, size = pack.family, pack.strategy, pack.size
    names = models.layer_names(family.model.num_layers)
    with contextlib.ExitStack() as claims:
      chunk = [spec for spec in pack.specs if _claim(claims, store, spec)]
      if not chunk:
        continue
      t0 = time.time()
      padded = chunk + [chunk[-1]] * (size - len(chunk))  # one shape per family: pad the last pack
      inputs = _run_inputs(padded, family, store, strategy.pack)
      results = _train_pack(family, inputs, strategy)
      wall = (time.time() - t0) / len(chunk)
      for spec, (curve, diverged_at, variables, reused) in zip(chunk, results):
        record = _record(spec, curve, diverged_at, family.model, names, strategy, size, wall, t0,
                         family.depths.depths[inputs.depth_index], reused, pack.concurrent)
        if record['status'] == 'complete' and spec.condition == 'scratch':
          runs.save_weights(spec, store, variables, family.task)
        store.write_record(record)
        store.log_attempt(spec.run_id, 'end', status=record['status'])
        if settings.on_record:
          with settings.record_lock:
            settings.on_record(spec, record)


def _claim(claims: contextlib.ExitStack, store: ResultsStore, spec: runs.RunSpec) -> bool:
  """Takes a run's claim into ``claims`` if it is free and the run still has no complete record."""
  return claims.enter_context(store.claim(spec.run_id)) and store.start_attempt(spec.run_id)


def _record(spec, curve, diverged_at, model, names, strategy, size, wall, started_at,
            start_layer: int, reused: int, concurrent: int) -> dict:
  """The run's record, in the per-run path's format (plus how it was executed: ``start_layer``
  is the number of frozen layers computed once instead of every step, ``frozen_prefix_reused``
  how many of them another run with the same frozen layers had computed, ``concurrent_runs`` how many
  packs trained at once in threads); ``started_at`` and ``finished_at`` bound the training of its
  whole pack."""
  record = runs.run_record(spec, started_at, finished_at=time.time(), num_layers=model.num_layers,
                          layer_names=list(names),
                          execution={'strategy': strategy.name, 'pack_size': size,
                                     'frozen_prefix_computed_once': start_layer,
                                     'frozen_prefix_reused': reused,
                                     'concurrent_runs': concurrent})
  if diverged_at is None:
    record.update(status='complete', curve=curve)
  else:
    record.update(status='failed', error=f'loss is not finite at step {diverged_at}',
                  diverged_at_step=diverged_at, curve=curve)
  record['wall_time_s'] = round(wall, 3)
  return record
