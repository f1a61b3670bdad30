"""What a run is, written once: keys, batch order, starting state, curve, record, bookkeeping.

Every execution strategy (``harness.engine.strategies``) and the per-run path
(``harness.runs.train_and_evaluate``) call these functions, so there is one definition of each
per-run semantic and nothing to keep equal between two implementations. The functions that build
a state are pure and traceable: a compiled program calls them with traced arguments, the per-run
path with concrete ones.
"""

from __future__ import annotations

import contextlib
import time
import zlib
from typing import Any, Sequence

import jax
import jax.numpy as jnp
import numpy as np
from jax import lax

from harness import conditions, models, training, transfer
from harness.results import ResultsStore

# fold_in tags of the keys derived from a run's seed.
_TRANSFERRED_INIT, _DROPOUT, _FRESH = 1, 2, 3


def plan_of(spec, num_layers: int) -> transfer.Plan:
  """A run's per-layer plan: the one place the engine turns a spec into per-layer data."""
  return conditions.make_plan(spec.condition, spec.n_layers, spec.fine_tuned, num_layers)


def is_base(plan: transfer.Plan) -> bool:
  """Whether a plan trains a whole network from its own initialisation (a base net: the source
  networks of transfers start from the seed's and pair's key and have their weights saved)."""
  fresh = plan.fresh is not None and np.any(plan.fresh)
  return not (np.any(plan.copy) or fresh or plan.phases or np.any(plan.train != 1))


def pair_tag(pair: str) -> np.uint32:
  """A task pair's label as the 32-bit number folded into its runs' initial-weights key (CRC-32:
  stable across processes and machines, unlike Python's ``hash``)."""
  return np.uint32(zlib.crc32(pair.encode()))


def init_key(seed, pair, base) -> jax.Array:
  """Initial-weights key: ``fold_in(key(seed), pair)`` for base nets, an independent draw for the
  others.

  The pair is folded in so that the splits of a study are independent replicates: the same seed
  on two task pairs starts from different weights (one rule for every pair, a sweep with one
  pair included). A source network shared by several pairs (a sweep's ``shared_sources``) has
  its task's name as its ``pair``, so its key depends on the source task and the seed only, and
  it is one run whatever target it serves. Every other network of seed ``s`` and pair ``p``
  starts from one draw, ``fold_in(fold_in(key(s), p), 1)``, before its layers are copied, so
  the conditions of one (seed, pair) differ only in their copied layers and in what trains,
  while their re-initialised upper layers do not restart at the values the copied layers
  co-adapted with during the base net's training (as Yosinski et al. re-initialise them).

  Args:
    seed: the run's seed (int, or a traced int32).
    pair: :func:`pair_tag` of its task pair (uint32, or a traced uint32).
    base: :func:`is_base` of its plan (bool, or a traced bool).
  """
  key = jax.random.fold_in(jax.random.key(seed), pair)
  return lax.cond(base, _base_key, _transferred_key, key)


# Module-level branches, not lambdas: outside jit (the per-run path) a cond of new function
# objects is traced and compiled again on every call.
def _base_key(key: jax.Array) -> jax.Array:
  return key


def _transferred_key(key: jax.Array) -> jax.Array:
  return jax.random.fold_in(key, _TRANSFERRED_INIT)


def fresh_key(key: jax.Array) -> jax.Array:
  """Key of a run's re-initialised (``plan.fresh``) layers: folded from its initial-weights key,
  so they differ from the layers' own initialisation and are the same in every execution."""
  return jax.random.fold_in(key, _FRESH)


def dropout_key(seed) -> jax.Array:
  """Key of a run's dropout masks (folded with the step inside the train step)."""
  return jax.random.fold_in(jax.random.key(seed), _DROPOUT)


def data_rng(seed: int, target_name: str) -> np.random.Generator:
  """The batch order's generator: the same for every condition of a (seed, target task)."""
  return np.random.default_rng([seed, zlib.crc32(target_name.encode())])


def batch_order(seed: int, target_name: str, num_train: int, steps: int,
                batch_size: int) -> np.ndarray:
  """A run's batch indices, (max(1, steps), batch): a 0-step run has one row, never read."""
  batches = training.batch_indices(num_train, batch_size, data_rng(seed, target_name))
  return np.stack([next(batches) for _ in range(max(1, steps))]).astype(np.int32)


def own_init(model, seed, pair, base, fresh, input_shape: tuple) -> dict:
  """A run's own initial variables (:func:`init_key` of its seed, pair tag and base-or-not), with
  its ``fresh`` layers (per-layer 0/1) re-drawn.

  The fresh draw is made only when a layer asks for it (a ``lax.cond``), so plans without fresh
  layers compute what they always did.
  """
  key = init_key(seed, pair, base)
  init = models.init_variables(model, key, input_shape)
  if isinstance(fresh, np.ndarray) and not fresh.any():
    return init  # the per-run path's usual case: the cond's identity branch, without compiling it
  names = models.layer_names(model.num_layers)

  def redraw(init):
    other = models.init_variables(model, fresh_key(key), input_shape)
    return {c: jax.tree.map(lambda m, o, i: jnp.where(m > 0, o, i),
                            transfer.leaf_mask(init[c], names, fresh), other[c], init[c])
            for c in init}

  return lax.cond(jnp.any(fresh > 0), redraw, lambda init: init, init)


def start_state(init: dict, copied: dict, copy, schedule: training.TrainSchedule, names,
                tx, rng) -> training.TrainState:
  """A run's state at step 0: ``init`` where ``copy`` is 0, ``copied`` (the source's layers laid
  out as the whole network) where it is 1; masks and multipliers from ``schedule``.

  Args:
    init: the run's own initial ``{'params', 'batch_stats'}`` (:func:`own_init`).
    copied: the source network's layers (zeros where nothing is copied).
    copy: per-layer 0/1 vector.
    schedule: the per-layer learning-rate multipliers and their phases.
    names: the model's layer names.
    tx: the optimizer.
    rng: the dropout key (:func:`dropout_key`).
  """
  return training.initial_state(with_copied(init, copied, copy, names), schedule, names, tx, rng)


def with_copied(init: dict, copied: dict, copy, names) -> dict:
  """``init`` with the layers where ``copy`` (per layer, 0/1) taken from ``copied`` (the source
  network's layers laid out as the whole network: ``transfer.combine`` onto zeros)."""
  return {c: jax.tree.map(lambda m, s, i: jnp.where(m > 0, s, i),
                          transfer.leaf_mask(init[c], names, copy), copied[c], init[c])
          for c in ('params', 'batch_stats')}


def curve(schedule: Sequence[int], points) -> tuple[list[dict], int | None]:
  """A run's curve from its evaluations, cut at the first non-finite loss.

  Args:
    schedule: the evaluation steps (``training.eval_steps``).
    points: per step ``(accuracy, test loss, training loss of the step before)``.

  Returns:
    ``(curve, step at which the loss was first not finite, or None)``.
  """
  out = []
  for step, (accuracy, loss, train_loss) in zip(schedule, points):
    if training.diverged(step, loss, train_loss):
      return out, step
    out.append(training.curve_point(step, accuracy, loss, train_loss))
  return out, None


def outcome(curve: list[dict], diverged_at: int | None) -> dict:
  """The record fields of a run's result: complete, or failed at its divergence step."""
  if diverged_at is None:
    return dict(status='complete', curve=curve)
  return dict(status='failed', error=f'loss is not finite at step {diverged_at}',
              diverged_at_step=diverged_at, curve=curve)


def claim(claims: contextlib.ExitStack, store: ResultsStore, run_id: str) -> bool:
  """Takes a run's claim into ``claims`` if it is free and the run has no complete record yet
  (logging the attempt's start)."""
  return claims.enter_context(store.claim(run_id)) and store.start_attempt(run_id)


def finish(spec, store: ResultsStore, record: dict, variables: Any, task, keep_weights: bool,
           started_at: float | None = None) -> None:
  """Writes a run's record, and, for a complete run that keeps them, its final weights first
  (a transfer reads them once the record says complete).

  Args:
    spec, store: the run and its results store.
    record: the record so far (its outcome included).
    variables: the final ``{'params', 'batch_stats'}``.
    task: the target's ``tasks.TaskData`` (the weights' metadata).
    keep_weights: save the weights (base nets: :func:`is_base`).
    started_at: when given, ``finished_at`` and ``wall_time_s`` are set from it.
  """
  from harness import runs  # checkpoint writing; runs imports this module
  if record['status'] == 'complete' and keep_weights:
    runs.save_weights(spec, store, variables, task)
  if started_at is not None:
    record['finished_at'] = time.time()
    record['wall_time_s'] = round(record['finished_at'] - started_at, 3)
  store.write_record(record)


def log_end(store: ResultsStore, run_id: str, record: dict) -> None:
  """Logs the end of a run's attempt with its status (see :func:`claim`)."""
  store.log_attempt(run_id, 'end', status=record['status'])
