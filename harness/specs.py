"""A run's resolved spec: everything that determines its result, and its deterministic id.

The id is a hash of the spec, which includes the id of its source run, so equal specs give equal
ids on every machine and a re-run of a sweep finds the runs already done. This module holds no
training code and imports no JAX: specs are built, hashed and grouped before anything trains.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
from typing import Any

from harness import tasks

TRAIN_DEFAULTS = dict(steps=500, batch_size=128, lr=0.01, momentum=0.9, weight_decay=5e-4,
                      lr_decay_every=0, lr_decay_factor=0.1, eval_every=50)


@dataclasses.dataclass(frozen=True)
class RunSpec:
  """Everything that determines a run's result (and nothing that does not, e.g. paths)."""
  model: str
  model_kwargs: tuple[tuple[str, Any], ...]
  condition: str
  n_layers: int
  fine_tuned: bool
  seed: int
  target: tasks.TaskSpec
  train: tuple[tuple[str, Any], ...]
  source: tasks.TaskSpec | None = None     # task of the source network (copying conditions)
  source_run: str | None = None            # run id of the source network, in the same store
  source_checkpoint: str | None = None     # or a saved checkpoint (Pre-trained-Model approach)
  pair: str = ''  # label of the run's task pair; a shared source network's: its task's name

  def to_dict(self) -> dict:
    d = dataclasses.asdict(self)
    d['target'] = self.target.to_dict()
    d['source'] = self.source.to_dict() if self.source else None
    d['model_kwargs'] = dict(self.model_kwargs)
    d['train'] = dict(self.train)
    return d

  @property
  def run_id(self) -> str:
    """First 16 hex digits of the SHA-256 of the canonical JSON of the spec."""
    canonical = json.dumps(self.to_dict(), sort_keys=True, separators=(',', ':'), default=list)
    return hashlib.sha256(canonical.encode()).hexdigest()[:16]

  @property
  def hyper(self) -> dict:
    return {**TRAIN_DEFAULTS, **dict(self.train)}

  @property
  def source_id(self) -> str | None:
    """Where the source network comes from (a checkpoint path or a run id), None if none."""
    return self.source_checkpoint or self.source_run

  def source_label(self) -> str | None:
    """The ``source`` column: the source task, else 'none' (n = 0: nothing taken from another
    network) or 'random' (layers kept at a random initialisation)."""
    if self.source:
      return self.source.name
    return 'random' if self.n_layers else 'none'

  def labels(self) -> dict:
    """The long-format columns that describe this run (see ``harness.results``)."""
    return {'condition': self.condition, 'n_layers': self.n_layers, 'fine_tuned': self.fine_tuned,
            'source': self.source_label(), 'target': self.target.name, 'seed': self.seed,
            'pair': self.pair, 'examples_per_class': self.target.examples_per_class}

  def describe(self) -> str:
    """Short label for progress bars: e.g. ``transfer+ n=3 mnist_A0->mnist_B0 s1``."""
    name = self.condition + ('+' if self.fine_tuned else '')
    n = f' n={self.n_layers}' if self.n_layers else ''
    src = f'{self.source.name}->' if self.source else ''
    return f'{name}{n} {src}{self.target.name} s{self.seed}'
