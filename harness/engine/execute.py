"""Executes a sweep's pending runs: family by family, in packs, in threads, one record per run.

A sweep is hundreds of small trainings that differ only in data (copied layers, per-layer
multipliers, seed), so every run of a *family* (same model, optimizer, budget and data shapes)
goes through the same compiled programs. :func:`execute` groups the runs whose sources are
complete (``harness.engine.scheduler``) into families and packs, trains each pack under its
runs' claims with the family's strategy, and writes each run's record as the per-run path does.
"""

from __future__ import annotations

import concurrent.futures
import contextlib
import dataclasses
import importlib
import os
import threading
import time
from typing import Any, Callable, Iterator, Sequence

import jax

from harness import compilation
from harness.engine import programs, semantics
from harness.engine.data import device_task, family_shapes
from harness.engine.family import (Family, family_key, frozen_layers, index_shape, make_family,
                                   run_inputs)
from harness.engine.scheduler import Ready
from harness.engine.strategies import Strategy, choose_strategy
from harness.results import ResultsStore

PACK_SIZE = {'cpu': 8, '*': 64}  # runs per pack when config.execution.pack_size is 0
MAX_INDEX_BYTES = 256 << 20      # batch indices of a pack beyond this: left to the per-run path
MAX_CONCURRENT_RUNS = 8          # auto concurrency's cap (each concurrent run holds its features)


def default_pack_size(backend: str) -> int:
  return PACK_SIZE.get(backend, PACK_SIZE['*'])


def balanced_pack_size(num_runs: int, cap: int, devices: int = 1) -> int:
  """Runs per pack for a group of ``num_runs``: the fewest packs of at most ``cap``, equal sizes.

  A fixed size pads small groups (a lone base net padded to 8 is 8x the work); instead the size
  is ``ceil(num_runs / packs)`` rounded up to a multiple of ``devices``, so at most
  ``packs * devices - 1`` slots are padding.
  """
  packs = -(-num_runs // max(1, cap))
  size = -(-num_runs // packs)
  return -(-size // devices) * devices


def cpu_cores() -> list[int]:
  """The CPU cores this process may run on (its affinity mask, e.g. a SLURM allocation)."""
  if hasattr(os, 'sched_getaffinity'):
    return sorted(os.sched_getaffinity(0))
  return list(range(os.cpu_count() or 1))


def concurrent_runs(requested: int, backend: str, strategy: Strategy) -> int:
  """How many packs (runs, for one-run strategies) train at once, in threads of this process.

  ``requested`` > 0 is used as given. Auto (0): on CPU, one run per usable core (at most
  :data:`MAX_CONCURRENT_RUNS`) for the one-run strategies, since XLA's CPU convolutions use one
  core and a small MLP's step does not fill two; elsewhere 1, as packs already fill the device.
  """
  if requested and requested > 0:
    return int(requested)
  if backend != 'cpu' or strategy.packs:
    return 1
  return max(1, min(len(cpu_cores()), MAX_CONCURRENT_RUNS))


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


@dataclasses.dataclass
class _Settings:
  """How :func:`execute` runs a sweep's levels, and what it did so far."""
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
class Pack:
  """Runs trained together (one run for one-run strategies), and how."""
  specs: list
  family: Family
  strategy: Strategy
  size: int
  concurrent: int = 1

  def frozen(self) -> int:
    """Leading layers frozen throughout in the pack's first run."""
    return frozen_layers(self.specs[0], self.family.model.num_layers, self.family.hyper['steps'])


def execute(specs: Sequence, store: ResultsStore, data_dir: str | None = None, *,
            strategy: str = 'auto', pack_size: int = 0, concurrency: int = 0,
            checkpoint_every: int = 0,
            on_record: Callable[[Any, dict], None] | None = None) -> ExecutionReport:
  """Trains pending runs family by family, writing one record per run (as the per-run path).

  Runs go as their sources complete (:class:`scheduler.Ready`). A run whose source is missing or
  failed is left in ``remaining`` (the per-run path records why), and so is a run longer than
  ``checkpoint_every`` steps (the per-run path saves its progress). Each pack is trained while
  its runs' claims are held: runs another worker holds, or has finished, are left out.

  Args:
    specs: runs to do, in the sweep's order.
    store: the results store.
    data_dir: TFDS data directory.
    strategy: a key of ``STRATEGIES`` or 'auto' (see ``choose_strategy``).
    pack_size: runs per pack for packed strategies; 0 = the backend's default.
    concurrency: packs trained at once in threads (see :func:`concurrent_runs`); 0 = auto.
    checkpoint_every: the sweep's progress-checkpoint interval (0: none).
    on_record: called with each spec and its record once written (one call at a time).

  Returns:
    An :class:`ExecutionReport`.
  """
  start = time.time()
  programs_before = programs.programs_compiled()
  remaining: list = []
  settings = _Settings(strategy, pack_size, concurrency, jax.default_backend(), on_record)
  with compilation.CompileCounter() as counter:
    long_runs = [s for s in specs if 0 < checkpoint_every < s.hyper['steps']]
    remaining += long_runs
    ready = Ready([s for s in specs if s not in long_runs], store)
    for group in ready:
      remaining += _execute_level(group, store, data_dir, settings)
    remaining += ready.left
  order = {s.run_id: i for i, s in enumerate(specs)}
  remaining.sort(key=lambda s: order[s.run_id])
  return ExecutionReport(remaining=remaining, strategies=settings.used,
                         families=len(settings.families),
                         programs_compiled=programs.programs_compiled() - programs_before,
                         xla_compiles=counter.xla, cache_hits=counter.cache_hits,
                         concurrent_runs=settings.most_concurrent, seconds=time.time() - start)


def _packs(specs, data_dir, settings: _Settings) -> tuple[list[Pack], list]:
  """The packs of runs the engine trains, and the runs it leaves to the per-run path."""
  groups: dict[tuple, list] = {}
  left = []
  for spec in specs:
    strategy = choose_strategy(settings.strategy, settings.backend, spec.model)
    data = family_shapes(spec.target, data_dir) if strategy.in_engine else None
    if data is None:
      left.append(spec)
      continue
    key = family_key(spec, data, device_task(spec.target, data_dir)[0].num_classes)
    groups.setdefault((key, spec.target, strategy), []).append(spec)
  packs: list[Pack] = []
  for (key, target, strategy), group in groups.items():
    settings.families.add(key)
    settings.used[f'{key[0]} {target.name}'] = strategy.name
    cap = settings.pack_size or default_pack_size(settings.backend)
    size = balanced_pack_size(len(group), cap, jax.device_count()) if strategy.packs else 1
    hyper = group[0].hyper
    if strategy.packs and hyper['steps'] * hyper['batch_size'] * 4 * size > MAX_INDEX_BYTES:
      left += group
      continue
    family = make_family(group[0], data_dir, strategy.depths)
    packs += [Pack(group[i:i + size], family, strategy, size) for i in range(0, len(group), size)]
  return packs, left


def _execute_level(specs, store, data_dir, settings: _Settings) -> list:
  """Trains a group of ready runs (packs of every family at once, up to the concurrency);
  returns the specs left to the per-run path."""
  packs, left = _packs(specs, data_dir, settings)
  threads = min(len(packs), max([concurrent_runs(settings.concurrency, settings.backend,
                                                 p.strategy) for p in packs] or [1]))
  settings.most_concurrent = max(settings.most_concurrent, threads)
  for pack in packs:
    pack.concurrent = threads
  items = _work_items(packs)
  with _prepared(items):
    _train_items(items, lambda item: _train_and_record(item, store, settings), threads)
  return left


def _train_items(items: list[list[Pack]], train: Callable, threads: int) -> None:
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
        future.result()  # the first error (e.g. a bad source checkpoint) stops the level
    except BaseException:
      for future in futures:
        future.cancel()
      raise


def _work_items(packs: list[Pack]) -> list[list[Pack]]:
  """Packs in the order threads take them, one item (a list of packs) at a time.

  An item holds the one-run packs of a source network (or of a seed's own initial layers) with
  frozen layers, shallowest first: the n = 2 run then continues from the n = 1 run's outputs
  (``PrefixCache.lookup``), kept by the same thread. Items with the most training go first
  (runs' steps times the share of layers they train), so the threads finish together.
  """
  items: dict = {}
  for i, pack in enumerate(packs):
    spec = pack.specs[0]
    if pack.strategy.packs or not pack.frozen():
      items[i] = [pack]
    else:
      owner = spec.source_id or ('init', spec.seed, spec.pair)
      items.setdefault((id(pack.family), owner), []).append(pack)
  work = lambda p: sum(s.hyper['steps'] * (1 - p.frozen() / p.family.model.num_layers)
                       for s in p.specs)
  ordered = [sorted(item, key=Pack.frozen) for item in items.values()]
  return sorted(ordered, key=lambda item: -sum(map(work, item)))


def _train_and_record(item: list[Pack], store: ResultsStore, settings: _Settings) -> None:
  """Trains an item's packs, each under its runs' claims, and writes their records (and base
  nets' weights)."""
  for pack in item:
    family, size = pack.family, pack.size
    with contextlib.ExitStack() as claims:
      chunk = [spec for spec in pack.specs if semantics.claim(claims, store, spec.run_id)]
      if not chunk:
        continue
      t0 = time.time()
      padded = chunk + [chunk[-1]] * (size - len(chunk))  # one shape per family: pad the last pack
      inputs = run_inputs(padded, family, store, pack.strategy.packs)
      results = pack.strategy.train(family, inputs)
      wall = (time.time() - t0) / len(chunk)
      for spec, result in zip(chunk, results):
        record = _record(spec, result, pack, wall, t0, family.depths.depths[inputs.depth_index])
        keep = semantics.is_base(semantics.plan_of(spec, family.model.num_layers))
        semantics.finish(spec, store, record, result.variables, family.task, keep)
        semantics.log_end(store, spec.run_id, record)
        if settings.on_record:
          with settings.record_lock:
            settings.on_record(spec, record)


def _record(spec, result, pack: Pack, wall: float, started_at: float, start_layer: int) -> dict:
  """The run's record, in the per-run path's format plus how it was executed: ``start_layer``
  is the number of frozen layers computed once instead of every step, ``frozen_prefix_reused``
  how many of them another run had computed, ``concurrent_runs`` how many packs trained at once;
  ``started_at`` and ``finished_at`` bound the training of its whole pack."""
  from harness import runs  # the record's common fields; runs imports the engine
  model = pack.family.model
  record = runs.run_record(spec, started_at, finished_at=time.time(), num_layers=model.num_layers,
                           layer_names=list(pack.family.names),
                           execution={'strategy': pack.strategy.name, 'pack_size': pack.size,
                                      'frozen_prefix_computed_once': start_layer,
                                      'frozen_prefix_reused': result.reused,
                                      'concurrent_runs': pack.concurrent})
  record.update(semantics.outcome(result.curve, result.diverged_at))
  record['wall_time_s'] = round(wall, 3)
  return record


@contextlib.contextmanager
def _prepared(items: list[list[Pack]]) -> Iterator[None]:
  """Gets a level's work ready in the background while its first runs wait for it: one thread
  compiles the families' programs (``Strategy.compile_ahead``), another imports orbax (if base
  nets' weights will be saved) and builds the families' data, both in the order the runs need
  them. Errors here are ignored: the runs' own calls raise them.
  """
  packs = [pack for item in items for pack in item]
  ahead = {}  # one per compiled program: the two tasks of a pair share one
  for pack in packs:
    family, hyper = pack.family, pack.family.hyper
    key = (pack.strategy.name, family.model, family.input_shape, family.tx, family.depths,
           family.shapes.x_train.shape, family.shapes.x_test.shape, index_shape(hyper),
           tuple(family.schedule()), pack.size)
    ahead.setdefault(key, lambda p=pack: p.strategy.compile_ahead(p.family, p.size))
  families = list({id(pack.family): pack.family for pack in packs}.values())
  saves = any(semantics.is_base(semantics.plan_of(spec, pack.family.model.num_layers))
              for pack in packs for spec in pack.specs)

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
             for name, fns in (('compile', list(ahead.values())), ('data', [data]))]
  for thread in threads:
    thread.start()
  try:
    yield
  finally:
    for thread in threads:
      thread.join()
