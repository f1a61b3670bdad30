"""Transfer mechanics: a condition's plan applied to a network's variables.

What each condition copies and trains is data in :mod:`harness.conditions` (the registry), whose
``make_plan`` builds it. :func:`leaf_mask` turns a per-layer vector into a per-parameter mask,
so the compiled step never depends on the condition, and :func:`combine` builds a run's
starting variables from its own initialisation and the source network.
"""

from __future__ import annotations

from typing import Any, Mapping, Sequence

import flax
import jax
import jax.numpy as jnp
import numpy as np

from harness.conditions import CONDITIONS, Phase, Plan  # noqa: F401  (the engine's names for them)
from harness.errors import UserError
from harness.models import HEAD


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
  if t_shapes != s_shapes and layer == HEAD:
    raise UserError(
        f"the source network's head has other shapes than the target's ({s_shapes} vs "
        f'{t_shapes}): a condition that copies the head needs a target with the source\'s number '
        'of classes; use a target with the same classes, or a condition that re-initialises the head')
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
    names: layer names in order; the head (last) is copied only when ``plan.copy_head`` declares
      it (source and target share the label space).

  Returns:
    ``{'params': ..., 'batch_stats': ...}`` for the target network.

  Raises:
    ValueError: the plan copies the head without declaring it, or copies without a source.
    UserError: a copied layer's shapes differ between source and target (for the head: another
      number of classes).
  """
  copied = [name for name, c in zip(names, plan.copy) if c > 0]
  if HEAD in copied and not plan.copy_head:
    raise ValueError('the head is copied only by plans that declare it (Plan.copy_head)')
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
