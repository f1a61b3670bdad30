"""Jit-compiled training of one run: optimizer, pure train step, evaluation schedule, loop.

A plan's per-layer learning-rate multipliers scale the optimizer's output, *after* weight decay
(as big_vision's masks), so a frozen layer (multiplier 0) gets neither a gradient update nor
weight decay and stays bit-identical; its optimizer state (momentum) is left as it is too. The multipliers and their phases, the learning rate
schedule's position and the PRNG key are data in :class:`TrainState`, never program structure:
the step compiles once per (model, optimizer, batch shape) and serves every plan and seed.
"""

from __future__ import annotations

import dataclasses
import functools
import math
from typing import Any, Callable, Iterator, Mapping, Sequence

import flax
import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import optax

from harness import models, transfer


class Diverged(Exception):
  """The loss became NaN or infinite; ``step`` is the first evaluation that saw it."""

  def __init__(self, step: int, curve: list[dict]):
    super().__init__(f'loss is not finite at step {step}')
    self.step = step
    self.curve = curve  # the evaluations before divergence


MAX_PHASES = 4  # rows of a schedule's multiplier table: one shape, one program, any plan
NEVER = np.iinfo(np.int32).max  # start step of an unused phase row


@dataclasses.dataclass(frozen=True)
class TrainSchedule:
  """A plan's per-layer learning-rate multipliers over a run, as fixed-shape arrays.

  Row p of ``multipliers`` applies from step ``starts[p]`` on (``starts[0] == 0``; unused rows
  start at :data:`NEVER`), so every plan of a model has one shape and one compiled step.
  """
  multipliers: np.ndarray  # float32 (MAX_PHASES, L); 0 = frozen
  starts: np.ndarray       # int32 (MAX_PHASES,)

  @classmethod
  def of(cls, plan: transfer.Plan, steps: int) -> 'TrainSchedule':
    """The schedule of ``plan`` for a run of ``steps`` steps: phase k starts at step
    ``round(start * steps)``."""
    rows = [plan.train, *(phase.train for phase in plan.phases)]
    if len(rows) > MAX_PHASES:
      raise ValueError(f'a plan has at most {MAX_PHASES - 1} later phases, not {len(rows) - 1}')
    starts = [0, *(round(phase.start * steps) for phase in plan.phases)]
    pad = MAX_PHASES - len(rows)
    return cls(np.asarray([*rows, *[rows[-1]] * pad], np.float32),
               np.asarray([*starts, *[NEVER] * pad], np.int32))

  def frozen_throughout(self) -> np.ndarray:
    """1 where a layer is frozen in every phase (its outputs can be computed once)."""
    return np.all(self.multipliers == 0, axis=0).astype(np.float32)


def leading_frozen(schedule: TrainSchedule) -> int:
  """The number of leading layers frozen in every phase of a run."""
  frozen = schedule.frozen_throughout()
  return int(np.argmin(frozen)) if not np.all(frozen) else len(frozen)


@flax.struct.dataclass
class TrainState:
  """Everything that changes during training (a pytree; donated to each step)."""
  step: jax.Array
  params: Any
  batch_stats: Any
  opt_state: Any
  multipliers: jax.Array  # (MAX_PHASES, L) per-layer learning-rate multipliers (TrainSchedule)
  starts: jax.Array       # (MAX_PHASES,) the step each row applies from
  rng: jax.Array          # dropout key; folded with the step inside the step

  def multiplier(self) -> jax.Array:
    """The per-layer learning-rate multipliers at the current step (L,)."""
    row = jnp.sum(self.step >= self.starts) - 1
    return self.multipliers[row]


@functools.lru_cache(maxsize=None)
def make_optimizer(lr: float, momentum: float, weight_decay: float, lr_decay_every: int = 0,
                   lr_decay_factor: float = 0.1) -> optax.GradientTransformation:
  """SGD with momentum, L2 weight decay on kernels only, optional step decay (Caffe's "step").

  Cached by its hyper-parameters so that equal configs share one object and one compilation.

  Args:
    lr: base learning rate.
    momentum: SGD momentum (0 for plain SGD).
    weight_decay: coefficient of the decay added to kernel gradients (biases and batch-norm
      scales are not decayed, as in Caffe's reference nets with ``decay_mult: 0`` for biases).
    lr_decay_every: multiply the learning rate by ``lr_decay_factor`` every so many steps
      (0 = constant).
    lr_decay_factor: the step-decay factor.

  Returns:
    The optax transformation.
  """
  schedule = (optax.exponential_decay(lr, lr_decay_every, lr_decay_factor, staircase=True)
              if lr_decay_every else lr)
  decay_mask = lambda params: jax.tree.map(lambda p: p.ndim > 1, params)
  return optax.chain(optax.add_decayed_weights(weight_decay, mask=decay_mask),
                     optax.sgd(schedule, momentum=momentum or None))


def create_state(variables: Mapping[str, Any], plan: transfer.Plan, names: Sequence[str],
                 tx: optax.GradientTransformation, rng: jax.Array, steps: int = 0) -> TrainState:
  """Starting state of a run (see :func:`initial_state`).

  Args:
    variables: the target network's starting ``{'params', 'batch_stats'}`` (after copying).
    plan: the condition's per-layer plan.
    names: the model's layer names.
    tx: the optimizer.
    rng: key for dropout.
    steps: the run's length (places the plan's later phases).

  Returns:
    The :class:`TrainState` at step 0, committed to the default device.
  """
  # Committed to one device, as the step's outputs are: jit keys its cache on whether arguments
  # are committed, so a mix (fresh init vs. restored checkpoint layers) recompiled per condition.
  return jax.device_put(initial_state(variables, TrainSchedule.of(plan, steps), names, tx, rng),
                        jax.devices()[0])


def initial_state(variables: Mapping[str, Any], schedule: TrainSchedule, names: Sequence[str],
                  tx: optax.GradientTransformation, rng: jax.Array) -> TrainState:
  """The state at step 0 from starting variables (traceable: the programs call it too).

  Args:
    variables: the starting ``{'params', 'batch_stats'}``.
    schedule: the per-layer multipliers and their phases.
    names: the model's layer names (the multipliers' order).
    tx: the optimizer.
    rng: key for dropout.
  """
  del names  # the multipliers are indexed by layer position, as models.layer_names orders them
  # Own copies: the state is donated to the step, and copied layers alias the source network's
  # arrays, which later runs of the sweep copy again.
  params = jax.tree.map(jnp.array, variables['params'])
  batch_stats = jax.tree.map(jnp.array, variables['batch_stats'])
  return TrainState(step=jnp.zeros((), jnp.int32), params=params, batch_stats=batch_stats,
                    opt_state=tx.init(params), multipliers=jnp.asarray(schedule.multipliers),
                    starts=jnp.asarray(schedule.starts), rng=rng)


def cross_entropy(logits: jax.Array, labels: jax.Array) -> jax.Array:
  return optax.softmax_cross_entropy_with_integer_labels(logits, labels).mean()


def train_step(state: TrainState, x: jax.Array, y: jax.Array, *, model: nn.Module,
               tx: optax.GradientTransformation, start: int = 0) -> tuple[TrainState, dict]:
  """One SGD step on a batch.

  Args:
    state: current state (donated).
    x, y: the batch.
    model: the flax module (static).
    tx: the optimizer (static).
    start: ``x`` is the output of ``layer{start}`` (static; 0 = the input): the first ``start``
      layers must be frozen, they are neither run, differentiated nor touched by the optimizer
      (their parameters and optimizer state are passed through as they are; ``harness.engine``).

  Returns:
    The new state and ``{'loss': ...}``.
  """
  rng = jax.random.fold_in(state.rng, state.step)
  names = models.layer_names(model.num_layers)
  skipped = frozenset(names[:start])
  multiplier = state.multiplier()
  frozen = (multiplier == 0).astype(jnp.float32)
  live = lambda tree: {name: sub for name, sub in tree.items() if name not in skipped}

  def loss_fn(live_params):
    logits, updated = model.apply(
        {'params': {**state.params, **live_params}, 'batch_stats': state.batch_stats}, x,
        train=True, frozen=frozen, start=start, mutable=['batch_stats'],
        rngs={'dropout': rng})
    return cross_entropy(logits, y), updated.get('batch_stats', {})

  params = live(state.params)
  (loss, new_stats), grads = jax.value_and_grad(loss_fn, has_aux=True)(params)
  old_opt_state = _layers_of_state(state.opt_state, state.params, live)
  updates, opt_state = tx.update(grads, old_opt_state, params)
  mask = transfer.leaf_mask(params, names, multiplier)
  # The multiplier scales the whole update, after the optimizer chain: frozen (0) = no update
  # and no weight decay; 1 multiplies by one, exactly.
  updates = jax.tree.map(lambda u, m: jnp.where(m > 0, u * m, jnp.zeros_like(u)), updates, mask)
  # A frozen layer's optimizer state (momentum) stays as it was, so a layer that a later phase
  # unfreezes (LP-FT) starts without the gradients of the steps it was frozen for.
  # (Its step counts advance: a learning-rate schedule counts every step.)
  keep = lambda new, old: jax.tree.map(lambda n, o, m: jnp.where(m > 0, n, o), new, old, mask)
  opt_state = _layers_of_state(opt_state, params, keep, old_opt_state, others_from_rest=False)
  params = {**state.params, **optax.apply_updates(params, updates)}
  opt_state = _layers_of_state(state.opt_state, state.params, lambda old, new: {**old, **new},
                               opt_state)
  # Batch-norm running statistics of frozen layers stay as copied.
  stats_mask = transfer.leaf_mask(state.batch_stats, names, multiplier)
  new_stats = jax.tree.map(lambda new, old, m: jnp.where(m > 0, new, old), new_stats,
                           state.batch_stats, stats_mask)
  return state.replace(step=state.step + 1, params=params, batch_stats=new_stats,
                       opt_state=opt_state), {'loss': loss}


def _layers_of_state(opt_state, params, fn: Callable, *rest, others_from_rest: bool = True):
  """``fn`` applied to every parameter-shaped part of an optimizer state (a dict keyed by the
  layer names of ``params``, e.g. momentum's trace), other leaves (step counts) taken from the
  first of ``rest`` if ``others_from_rest`` and there is one, else left as they are (``rest``:
  same structure below those dicts or not: it may hold fewer layers).

  With :func:`train_step`'s ``live`` it restricts the state to the layers a step updates; with a
  merge it puts the updated layers back beside the skipped ones.
  """
  names = set(params)
  is_layers = lambda node: isinstance(node, dict) and set(node) == names
  other = lambda node, *new: new[0] if new and others_from_rest else node
  return jax.tree.map(lambda node, *new: fn(node, *new) if is_layers(node) else other(node, *new),
                      opt_state, *rest, is_leaf=is_layers)


def gather_train_step(state: TrainState, x_all: jax.Array, y_all: jax.Array, idx: jax.Array, *,
                      model: nn.Module, tx: optax.GradientTransformation) -> tuple[TrainState, dict]:
  """:func:`train_step` on examples ``idx`` of a device-resident training set (no host copies)."""
  return train_step(state, x_all[idx], y_all[idx], model=model, tx=tx)


@functools.lru_cache(maxsize=None)
def compiled_train_step(model: nn.Module, tx: optax.GradientTransformation,
                        resident: bool = True) -> Callable:
  """The jitted step for a (model, optimizer) pair; cached so a sweep compiles it once.

  Args:
    model, tx: static parts of the step.
    resident: True: ``step(state, x_all, y_all, idx)`` gathers from device-resident data;
      False: ``step(state, x, y)`` takes a batch prepared on the host (data too big for memory).
  """
  fn = gather_train_step if resident else train_step
  return jax.jit(functools.partial(fn, model=model, tx=tx), donate_argnums=0)


def eval_sums(model: nn.Module, variables, x, y, valid, start: int = 0):
  """(sum of losses, number correct) over the valid rows of a padded batch: the one definition
  of evaluation (every strategy's programs call it).

  Args:
    model: the flax module.
    variables: ``{'params', 'batch_stats'}``.
    x, y, valid: the batch (``x``: the output of ``layer{start}``; 0 = the input) and its mask.
    start: static; the layer whose output ``x`` is.
  """
  logits = model.apply(variables, x, train=False, start=start)
  losses = optax.softmax_cross_entropy_with_integer_labels(logits, y)
  correct = (jnp.argmax(logits, -1) == y)
  return jnp.sum(jnp.where(valid, losses, 0.0)), jnp.sum(jnp.where(valid, correct, 0))


@functools.lru_cache(maxsize=None)
def compiled_eval(model: nn.Module) -> Callable:
  """Jitted :func:`eval_sums` of one padded batch."""
  return jax.jit(functools.partial(eval_sums, model))


def _num_examples(data) -> int:
  return data[0].shape[0] if isinstance(data, tuple) else len(data)


def _source_batch(source, idx: np.ndarray):
  """Examples ``idx`` of a random-access source (host data), placed on the device."""
  x, y = source.get_batch(idx)
  return jnp.asarray(x), jnp.asarray(y)


def _slice(data, start: int, stop: int):
  """Rows ``start:stop`` of device arrays ``(x, y)`` or of a random-access source."""
  if isinstance(data, tuple):
    return data[0][start:stop], data[1][start:stop]
  return _source_batch(data, np.arange(start, stop))


def evaluate(model: nn.Module, state: TrainState, data, batch_size: int = 1000) -> tuple[float, float]:
  """Accuracy and mean cross-entropy on a whole test set.

  Args:
    model: the flax module.
    state: the state to evaluate.
    data: the test set: device arrays ``(x, y)``, or a random-access source with ``len()`` and
      ``get_batch(indices) -> (x, y)`` for data too big for memory.
    batch_size: evaluation batch size (the last batch is padded and masked: one compilation).

  Returns:
    ``(accuracy, loss)`` as Python floats.
  """
  fn = compiled_eval(model)
  variables = {'params': state.params, 'batch_stats': state.batch_stats}
  n = _num_examples(data)
  batch_size = min(batch_size, n)
  total_loss, total_correct = 0.0, 0
  for start in range(0, n, batch_size):
    xb, yb = _slice(data, start, start + batch_size)
    valid = jnp.ones(xb.shape[0], bool)
    if xb.shape[0] < batch_size:  # Pad to one shape: one compilation.
      pad = batch_size - xb.shape[0]
      xb = jnp.concatenate([xb, jnp.zeros((pad, *xb.shape[1:]), xb.dtype)])
      yb = jnp.concatenate([yb, jnp.zeros((pad,), yb.dtype)])
      valid = jnp.concatenate([valid, jnp.zeros(pad, bool)])
    loss, correct = fn(variables, xb, yb, valid)
    total_loss += float(loss)
    total_correct += int(correct)
  return total_correct / n, total_loss / n


def eval_steps(total_steps: int, every: int) -> list[int]:
  """Evaluation schedule, dense early so that start and slope can be measured.

  Step 0 (before training), then powers of two below ``every``, then every ``every`` steps, and
  always the last step: e.g. ``eval_steps(1000, 100) == [0, 1, 2, 4, ..., 64, 100, 200, ..., 1000]``.

  Args:
    total_steps: number of training steps.
    every: spacing of the regular evaluations.

  Returns:
    Sorted, unique steps in ``[0, total_steps]``.
  """
  every = max(1, min(every, total_steps)) if total_steps else 1
  powers = [2 ** i for i in range(int(math.log2(every)) + 1) if 2 ** i < every]
  regular = list(range(every, total_steps + 1, every))
  return sorted({0, *powers, *regular, total_steps})


def batch_indices(num_examples: int, batch_size: int, rng: np.random.Generator) -> Iterator[np.ndarray]:
  """Endless minibatch indices: a fresh permutation each epoch, batches never straddle epochs."""
  if batch_size > num_examples:
    batch_size = num_examples
  while True:
    perm = rng.permutation(num_examples).astype(np.int32)
    for start in range(0, num_examples - batch_size + 1, batch_size):
      yield perm[start:start + batch_size]


def diverged(step: int, loss: float, train_loss: float) -> bool:
  """The divergence check: a non-finite test loss, or training loss after step 0."""
  return not (math.isfinite(loss) and (step == 0 or math.isfinite(train_loss)))


def curve_point(step: int, accuracy, loss, train_loss) -> dict:
  """One point of a run's curve, as records store it."""
  return {'step': step, 'accuracy': float(accuracy), 'loss': float(loss),
          'train_loss': float(train_loss)}


@dataclasses.dataclass(frozen=True)
class Progress:
  """Where an unfinished run stands: enough to continue it exactly (see :func:`train_loop`)."""
  state: TrainState    # after ``state.step`` training steps
  curve: list          # the evaluations made before step ``state.step``
  train_loss: float    # the last recorded training loss (the next curve point reports it)

  @property
  def step(self) -> int:
    return int(self.state.step)


def train_loop(model: nn.Module, tx: optax.GradientTransformation, state: TrainState,
               train_data, test_data, *,
               steps: int, batch_size: int, eval_every: int, data_rng: np.random.Generator,
               on_eval: Callable[[dict], None] | None = None,
               resume: Progress | None = None, save_every: int = 0,
               save: Callable[[Progress], None] | None = None) -> tuple[TrainState, list[dict]]:
  """Trains for ``steps`` steps, evaluating on the test set at :func:`eval_steps`.

  A run can be continued from a saved :class:`Progress`: the batch order is replayed from
  ``data_rng`` up to the saved step, so the continued curve equals an uninterrupted run's
  (bit for bit on CPU).

  Args:
    model, tx: the module and optimizer.
    state: the starting state (ignored when ``resume`` is given).
    train_data, test_data: ``(x, y)`` device arrays, or random-access sources (``len()``,
      ``get_batch(indices)``) whose batches are prepared on the host.
    steps, batch_size, eval_every: the budget and schedule.
    data_rng: numpy generator for the batch order (same for every condition of a seed/task), in
      its initial state also when resuming.
    on_eval: called with each curve point as it is measured (progress display).
    resume: continue from this progress instead of step 0.
    save_every: call ``save`` every so many steps (0: never).
    save: receives the progress (e.g. writes a checkpoint); it must finish reading the state
      before it returns, since the next step donates the state's buffers.

  Returns:
    The final state and the curve: a list of ``{'step', 'accuracy', 'loss', 'train_loss'}``.

  Raises:
    Diverged: a non-finite loss was seen at an evaluation.
  """
  resident = isinstance(train_data, tuple)
  step_fn = compiled_train_step(model, tx, resident)
  schedule = set(eval_steps(steps, eval_every))
  batches = batch_indices(_num_examples(train_data), batch_size, data_rng)
  curve, train_loss, start = [], float('nan'), 0
  if resume is not None:
    state, curve, train_loss, start = resume.state, list(resume.curve), resume.train_loss, resume.step
    for _ in range(start):  # Replays the batch order (cheap: one permutation per epoch).
      next(batches)
  for step in range(start, steps + 1):
    if save is not None and save_every and step % save_every == 0 and start < step < steps:
      save(Progress(state=state, curve=list(curve), train_loss=train_loss))
    if step in schedule:
      accuracy, loss = evaluate(model, state, test_data)
      if diverged(step, loss, train_loss):
        raise Diverged(step, curve)
      point = curve_point(step, accuracy, loss, train_loss)
      curve.append(point)
      if on_eval:
        on_eval(point)
    if step == steps:
      break
    idx = next(batches)
    batch = (*train_data, jnp.asarray(idx)) if resident else _source_batch(train_data, idx)
    state, metrics = step_fn(state, *batch)
    if step + 1 in schedule:
      train_loss = float(metrics['loss'])
  return state, curve
