"""Conditions of a layer-wise transfer study, expressed as per-layer data.

A condition (Yosinski et al. 2014) says, for each of the model's L layers, whether it is *copied*
from a source network and whether it is *trained*:

=================  ======================  =========================================
condition          copied                  trained
=================  ======================  =========================================
scratch            none                    all (baseA / baseB, and source pretraining)
selffer  (BnB)     layers 1..n from baseB  n+1..L  (all L when fine-tuned: BnB+)
transfer (AnB)     layers 1..n from baseA  n+1..L  (all L when fine-tuned: AnB+)
random_frozen      none (random init)      n+1..L  (layers 1..n frozen at their init)
=================  ======================  =========================================

The head (layer L) is never copied. Layers that are not copied keep the target network's own
initialisation, which depends only on the seed, so conditions of one seed differ only in what
they are meant to differ in. The plan is a pair of float vectors over layers; :func:`leaf_mask`
turns a vector into a per-parameter mask, so the compiled step never depends on the condition.
"""

from __future__ import annotations

import dataclasses
from typing import Any, Mapping, Sequence

import flax
import jax
import jax.numpy as jnp
import numpy as np

from harness.errors import UserError
from harness.models import HEAD

CONDITIONS = ('scratch', 'selffer', 'transfer', 'random_frozen')


@dataclasses.dataclass(frozen=True)
class Phase:
  """From ``start`` (a fraction of the run's steps, 0 <= start < 1) on, ``train`` replaces the
  plan's learning-rate multipliers (e.g. LP-FT: head only, then every layer from 0.5)."""
  start: float
  train: np.ndarray  # float32 (L,), as Plan.train


@dataclasses.dataclass(frozen=True)
class Plan:
  """Per-layer data of one condition (index i is layer i+1; the last is the head).

  Where a layer starts: copied from the source (``copy``), re-drawn from a fresh key (``fresh``),
  or else the target network's own initialisation for the seed. How it trains: ``train`` is a
  learning-rate multiplier, 0 = frozen (no update, no weight decay, batch-norm statistics fixed),
  1 = trained as usual. ``phases`` switch the multipliers part-way through the run.
  """
  copy: np.ndarray   # float32 (L,), 1 = copied from the source network
  train: np.ndarray  # float32 (L,), learning-rate multiplier; 0 = frozen
  fresh: np.ndarray | None = None     # float32 (L,), 1 = re-initialised from a fresh key; None = none
  phases: tuple[Phase, ...] = ()      # later phases, in order of start

  @property
  def frozen(self) -> np.ndarray:
    """1 where a layer is frozen in the first phase."""
    return (self.train == 0).astype(np.float32)


def validate(condition: str, n_layers: int, fine_tuned: bool, num_layers: int) -> None:
  """Checks a condition against a model's depth.

  Args:
    condition: one of :data:`CONDITIONS`.
    n_layers: n, the number of layers copied (or frozen at random init).
    fine_tuned: whether the copied layers are trained too.
    num_layers: L of the model (head included).

  Raises:
    UserError: unknown condition, n out of range, or a combination that does not exist.
  """
  if condition not in CONDITIONS:
    raise UserError(f"unknown condition '{condition}': choose one of {', '.join(CONDITIONS)}")
  if condition == 'scratch':
    if n_layers != 0 or fine_tuned:
      raise UserError('condition scratch takes n_layers=0 and fine_tuned=False')
    return
  if not 1 <= n_layers <= num_layers - 1:
    raise UserError(
        f'n={n_layers} is out of range for {condition}: this model has {num_layers - 1} '
        f'transferable layers (the head is never copied), so use 1 <= n <= {num_layers - 1}')
  if condition == 'random_frozen' and fine_tuned:
    raise UserError('random_frozen has no fine-tuned version: its point is that layers 1..n stay at init')


def make_plan(condition: str, n_layers: int, fine_tuned: bool, num_layers: int) -> Plan:
  """Builds the per-layer copy/train flags of a condition (see the module docstring).

  Args:
    condition: one of :data:`CONDITIONS`.
    n_layers: n (0 for scratch).
    fine_tuned: train the copied layers too (BnB+, AnB+).
    num_layers: L of the model.

  Returns:
    The :class:`Plan`.
  """
  validate(condition, n_layers, fine_tuned, num_layers)
  first_n = (np.arange(num_layers) < n_layers).astype(np.float32)
  copied = first_n if condition in ('selffer', 'transfer') else np.zeros(num_layers, np.float32)
  train = np.ones(num_layers, np.float32) if fine_tuned else 1.0 - first_n
  return Plan(copy=copied, train=train)


def leaf_mask(tree: Any, names: Sequence[str], per_layer: np.ndarray | jax.Array) -> Any:
  """Broadcasts a per-layer vector to every leaf of a variables tree.

  Args:
    tree: ``params`` or ``batch_stats``, keyed by layer name at the top level.
    names: the model's layer names in order (``harness.models.layer_names``).
    per_layer: vector of length L.

  Returns:
    A tree with the structure of ``tree`` whose leaves are the scalar of their layer.
  """
  index = {name: i for i, name in enumerate(names)}
  unknown = set(tree) - set(index)
  if unknown:
    raise ValueError(f'top-level entries {sorted(unknown)} are not layers of the model {names}')
  return {k: jax.tree.map(lambda _, v=per_layer[index[k]]: jnp.asarray(v, jnp.float32), sub)
          for k, sub in tree.items()}


def _check_compatible(target: Mapping, source: Mapping, layer: str, what: str) -> None:
  t_shapes = jax.tree.map(jnp.shape, flax.core.unfreeze(target.get(layer, {})))
  s_shapes = jax.tree.map(jnp.shape, flax.core.unfreeze(source.get(layer, {})))
  if t_shapes != s_shapes:
    raise UserError(
        f"source network's {what} of '{layer}' do not match the target model ({s_shapes} vs "
        f'{t_shapes}): the checkpoint is of another architecture; use a checkpoint of the same model')


def combine(init: Mapping[str, Any], source: Mapping[str, Any] | None, plan: Plan,
            names: Sequence[str]) -> dict[str, Any]:
  """Target network's starting variables: copied layers from ``source``, the rest from ``init``.

  Args:
    init: the target network's own initial ``{'params', 'batch_stats'}``.
    source: the source network's trained variables (None when nothing is copied).
    plan: the condition's plan.
    names: layer names in order; the head (last) is never copied.

  Returns:
    ``{'params': ..., 'batch_stats': ...}`` for the target network.

  Raises:
    UserError: a copied layer's shapes differ between source and target.
  """
  copied = [name for name, c in zip(names, plan.copy) if c > 0]
  if HEAD in copied:
    raise ValueError('the head is never copied')
  if copied and source is None:
    raise ValueError('plan copies layers but no source network was given')
  out = {}
  for collection in ('params', 'batch_stats'):
    tree = dict(flax.core.unfreeze(init.get(collection, {})))
    for layer in copied:
      if layer in tree or layer in source.get(collection, {}):
        _check_compatible(tree, source[collection], layer, collection)
        tree[layer] = source[collection][layer]
    out[collection] = tree
  return out
