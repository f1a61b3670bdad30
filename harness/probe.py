"""Evaluate a recorded run's network with given variables: the harness side of evaluation-only
studies (layer criticality, loss barriers, feature similarity). Nothing here trains.

:func:`open_run` rebuilds a run's model, its trained variables, its own initial variables (the
engine's semantics: :func:`harness.runs.starting_variables`, so "reset to init" means the values
the run really started from) and its target's test set; :func:`evaluator` scores any variables
of that model on it. The measurements themselves (barriers, distances, CKA) are pure functions of
:mod:`analysis.similarity`, which reads through here.
"""

from __future__ import annotations

import dataclasses
import functools
import pathlib
import types
from typing import Any, Callable

import jax
import numpy as np

from harness import models, runs, tasks, training
from harness.engine.data import device_task
from harness.errors import UserError
from harness.results import ResultsStore, load_run
from harness.specs import RunSpec


def spec_of(record: dict) -> RunSpec:
  """The :class:`RunSpec` written in a run's record."""
  s = dict(record['spec'])
  kwargs = tuple(sorted((k, tuple(v) if isinstance(v, list) else v)
                        for k, v in s['model_kwargs'].items()))
  return RunSpec(**{**s, 'model_kwargs': kwargs, 'train': tuple(sorted(s['train'].items())),
                    'target': tasks.TaskSpec.from_dict(s['target']),
                    'source': tasks.TaskSpec.from_dict(s['source']) if s['source'] else None})


@dataclasses.dataclass(frozen=True)
class RunProbe:
  """A recorded run, ready to evaluate: its model, trained variables and test set."""
  spec: RunSpec
  model: Any
  trained: dict
  test: tuple
  input_shape: tuple[int, ...]
  store: ResultsStore

  @property
  def names(self) -> tuple[str, ...]:
    return models.layer_names(self.model.num_layers)

  def initial(self) -> dict:
    """The variables the run started from (its seed's init, copied layers from its source)."""
    return runs.starting_variables(self.spec, self.model, self.input_shape, self.store)

  def redrawn(self, draw: int) -> dict:
    """A fresh initialisation of the same model from ``key(draw)`` (a re-randomisation)."""
    return models.init_variables(self.model, jax.random.fold_in(jax.random.key(self.spec.seed),
                                                                1000 + draw), self.input_shape)


def open_run(run_dir: str | pathlib.Path, data_dir: str | None = None) -> RunProbe:
  """Loads a run that saved its weights (base nets do) with its model and test set.

  Raises:
    UserError: no record, or a run without saved weights.
  """
  run_dir = pathlib.Path(run_dir)
  record, variables = load_run(run_dir)
  if variables is None:
    raise UserError(f'run {run_dir.name} saved no weights: evaluation-only measures read base '
                    'nets (condition scratch), which keep theirs')
  spec = spec_of(record)
  data, _, test = device_task(spec.target, data_dir)
  model = models.build_model(spec.model, data.num_classes, **dict(spec.model_kwargs))
  return RunProbe(spec, model, jax.tree.map(np.asarray, variables), test, data.input_shape,
                  ResultsStore(run_dir.parent.parent))


def evaluator(probe: RunProbe) -> Callable[[dict], tuple[float, float]]:
  """variables -> (accuracy, mean cross-entropy) of the run's model on its test set."""
  def evaluate(variables: dict) -> tuple[float, float]:
    state = types.SimpleNamespace(params=variables['params'], batch_stats=variables['batch_stats'])
    return training.evaluate(probe.model, state, probe.test)
  return evaluate


def with_layer(variables: dict, other: dict, layer: str) -> dict:
  """``variables`` with one layer's parameters and statistics taken from ``other``."""
  return {c: {k: (other[c][k] if k == layer else v) for k, v in variables[c].items()}
          for c in variables}


def layer_features(probe: RunProbe, variables: dict, examples: int = 500) -> dict[str, np.ndarray]:
  """Every transferable layer's output on the first ``examples`` test examples."""
  fn = jax.jit(functools.partial(models.layer_outputs, probe.model))
  return {k: np.asarray(v) for k, v in fn(variables, probe.test[0][:examples]).items()}


def toward(trained: dict, initial: dict, layer: str, alpha: float) -> dict:
  """``trained`` with one layer moved to ``(1 - alpha) trained + alpha initial`` (alpha 1: reset)."""
  moved = jax.tree.map(lambda t, i: (1.0 - alpha) * t + alpha * i,
                       {c: trained[c].get(layer, {}) for c in trained},
                       {c: initial[c].get(layer, {}) for c in initial})
  return {c: {**trained[c], **({layer: moved[c]} if layer in trained[c] else {})} for c in trained}


def reset_measurements(probe: RunProbe, alphas=(0.25, 0.5, 0.75, 1.0)) -> list[dict]:
  """Per layer, test accuracy and loss after resetting it (Zhang, Bengio & Singer 2022).

  Rows (one per measurement): ``layer``, ``measure`` (``trained``; ``reinit``: the layer back at
  the values the run started from; ``rerandom``: a fresh draw; ``line``: ``alpha`` of the way
  from trained to initial), ``alpha``, ``accuracy``, ``loss``.
  """
  evaluate, initial, fresh = evaluator(probe), probe.initial(), probe.redrawn(0)
  acc, loss = evaluate(probe.trained)
  rows = [dict(layer='', measure='trained', alpha=0.0, accuracy=acc, loss=loss)]
  for layer in probe.names:
    for measure, alpha, variables in (
        [('reinit', 1.0, with_layer(probe.trained, initial, layer)),
         ('rerandom', 1.0, with_layer(probe.trained, fresh, layer))]
        + [('line', a, toward(probe.trained, initial, layer, a)) for a in alphas]):
      acc, loss = evaluate(variables)
      rows.append(dict(layer=layer, measure=measure, alpha=float(alpha), accuracy=acc, loss=loss))
  return rows
