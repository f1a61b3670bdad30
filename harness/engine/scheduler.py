"""Sources before transfers: the one dependency scheduler of local and SLURM execution.

A run that copies from a source run can start once that run is complete. :func:`levels` groups
pending runs by dependency level (SLURM submits a job array per level); :class:`Ready` hands a
worker the runs it can start now, level by level, waiting while another worker trains a source;
:func:`source_status` is that wait for one run.
"""

from __future__ import annotations

import time
from typing import Iterator, Sequence

from harness.results import ResultsStore

SOURCE_POLL_S = 0.05  # how often a worker looks whether another worker's source is done


def levels(pending: Sequence) -> list[list]:
  """Groups pending runs by dependency level, keeping their order within a level.

  A run is in level 0 when it has no source run or its source is not pending (complete
  already, or missing), else in its source's level + 1.
  """
  level: dict[str, int] = {}
  for spec in pending:  # sweeps.expand puts sources first
    source_level = level.get(spec.source_run) if spec.source_run else None
    level[spec.run_id] = 0 if source_level is None else source_level + 1
  grouped: list[list] = [[] for _ in range(max(level.values(), default=-1) + 1)]
  for spec in pending:
    grouped[level[spec.run_id]].append(spec)
  return grouped


def source_status(store: ResultsStore, run_id: str) -> str | None:
  """The status of a source run, after waiting while another worker holds it."""
  status = store.status(run_id)
  if status != 'complete' and store.is_claimed(run_id):
    with store.claim(run_id, wait=True):  # Returns when its holder finishes (or dies).
      status = store.status(run_id)
  return status


class Ready:
  """Iterates over groups of runs whose sources are complete, level by level.

  Within a level, the runs whose sources are complete come first; then, while another worker
  trains some of the level's sources, those whose sources completed meanwhile. Runs whose source
  failed or is missing (and no worker holds it) end in :attr:`left`, for the per-run path to
  record why.
  """

  def __init__(self, specs: Sequence, store: ResultsStore, poll_s: float = SOURCE_POLL_S):
    self.specs, self.store, self.poll_s = list(specs), store, poll_s
    self.left: list = []

  def _complete(self, spec) -> bool:
    return not spec.source_run or self.store.status(spec.source_run) == 'complete'

  def _waiting(self, pending: list) -> bool:
    """Whether another worker is training a source of ``pending``."""
    return any(self.store.status(s.source_run) is None and self.store.is_claimed(s.source_run)
               for s in pending)

  def __iter__(self) -> Iterator[list]:
    for level in levels(self.specs):
      pending = list(level)
      while pending:
        ready = [s for s in pending if self._complete(s)]
        if not ready:
          if not self._waiting(pending):
            break
          time.sleep(self.poll_s)
          continue
        pending = [s for s in pending if s not in ready]
        yield ready
      self.left += pending
