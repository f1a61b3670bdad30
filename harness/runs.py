"""One run of a study: its resolved spec, its deterministic id, and ``train_and_evaluate``.

A run is a target network trained on a target task under one condition (scratch, selffer,
transfer, random_frozen) for one n, fine-tuned or not, and one seed. Its id is a hash of its
resolved spec, which includes the id of its source run, so equal specs give equal ids on every
machine, and a re-run of a sweep finds the runs already done.

Shared initialisation. Base nets (scratch runs, the sources of transfers) of seed ``s`` start
from ``init_variables(key(s))``. Every *transferred* network of seed ``s`` (selffer, transfer,
random_frozen, fine-tuned or not, every n) starts from one other draw,
``init_variables(fold_in(key(s), 1))``, before its first n layers are copied. So BnB, AnB and the
random-features control of one seed differ only in their first n layers (and in what is frozen),
and every network sees its target's training batches in the order drawn from ``(s, target)``.

Why not reuse the base net's own initial weights for the re-initialised layers: BnB's upper
layers would then restart at exactly the values that its copied lower layers co-adapted with
during baseB's training. We measured this: with a shared draw a BnB MLP on MNIST halves scored
0.98 at step 0 with an *untrained* head, which hides the fragile co-adaptation that BnB exists
to measure. Yosinski et al. re-initialise the upper layers randomly; so do we.
"""

from __future__ import annotations

import dataclasses
import functools
import hashlib
import json
import os
import pathlib
import platform
import shutil
import subprocess
import sys
import threading
import time
import zlib
from typing import Any, Callable

import jax
import jax.numpy as jnp
import numpy as np

from harness import models, tasks, training, transfer
from harness.errors import UserError
from harness.results import ResultsStore, atomic_write_json, read_json, worker_identity

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
  source: tasks.TaskSpec | None = None     # task of the source network (selffer/transfer)
  source_run: str | None = None            # run id of the source network, in the same store
  source_checkpoint: str | None = None     # or a saved checkpoint (Pre-trained-Model approach)
  pair: str = ''                           # label of the task pair this run belongs to

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

  def labels(self) -> dict:
    """The long-format columns that describe this run (see ``harness.results``)."""
    source = {'scratch': 'none', 'random_frozen': 'random'}.get(self.condition, self.source and self.source.name)
    return {'condition': self.condition, 'n_layers': self.n_layers, 'fine_tuned': self.fine_tuned,
            'source': source, 'target': self.target.name, 'seed': self.seed, 'pair': self.pair,
            'examples_per_class': self.target.examples_per_class}

  def describe(self) -> str:
    """Short label for progress bars: e.g. ``transfer+ n=3 mnist_A0->mnist_B0 s1``."""
    name = self.condition + ('+' if self.fine_tuned else '')
    n = f' n={self.n_layers}' if self.n_layers else ''
    src = f"{self.labels()['source']}->" if self.condition in ('selffer', 'transfer') else ''
    return f'{name}{n} {src}{self.target.name} s{self.seed}'


# ----------------------------------------------------------------------------------------------
# Checkpoints: RUN/checkpoint/state (orbax) + RUN/checkpoint/meta.json (architecture, task).

# Orbax saves of two runs at once from threads of one process collide (both threads created the
# same '.orbax-checkpoint-tmp' directory): one checkpoint save or restore at a time.
_ORBAX_LOCK = threading.Lock()


def save_checkpoint(path: pathlib.Path, variables: dict, meta: dict) -> None:
  """Saves final weights with orbax, plus the metadata needed to reuse them as a source."""
  import orbax.checkpoint as ocp  # Imported lazily: slow to import, only needed here.
  path = pathlib.Path(path).absolute()
  state_dir = path / 'state'
  if state_dir.exists():  # A crashed earlier attempt: orbax refuses to overwrite.
    shutil.rmtree(state_dir)
  with _ORBAX_LOCK:
    checkpointer = ocp.StandardCheckpointer()
    checkpointer.save(state_dir, {'params': variables['params'], 'batch_stats': variables['batch_stats']})
    checkpointer.wait_until_finished()
  atomic_write_json(path / 'meta.json', meta)


def load_checkpoint_meta(path: str | os.PathLike) -> dict:
  """The metadata of a checkpoint saved by :func:`save_checkpoint` (cheap: no weights read).

  Raises:
    UserError: no checkpoint at ``path``.
  """
  path = pathlib.Path(path).absolute()
  if not (path / 'meta.json').is_file() or not (path / 'state').is_dir():
    raise UserError(f'no transferbench checkpoint at {path} (expected meta.json and state/): '
                    "point source_checkpoint at a run's checkpoint/ directory")
  return read_json(path / 'meta.json')


def load_checkpoint(path: str | os.PathLike) -> tuple[dict, dict]:
  """Loads ``(variables, meta)`` saved by :func:`save_checkpoint`."""
  import orbax.checkpoint as ocp
  meta = load_checkpoint_meta(path)
  path = pathlib.Path(path).absolute()
  with _ORBAX_LOCK:
    restored = ocp.StandardCheckpointer().restore(path / 'state')
  return {'params': restored['params'], 'batch_stats': restored.get('batch_stats', {})}, meta


# ----------------------------------------------------------------------------------------------
# Progress checkpoints of unfinished runs: RUN/progress/<step>/ (orbax CheckpointManager, the
# latest one kept). Orbax finalises a step directory only when it is complete, so a crash during a
# save leaves the previous checkpoint as the latest.

def _progress_manager(path: pathlib.Path):
  import orbax.checkpoint as ocp
  options = ocp.CheckpointManagerOptions(max_to_keep=1, enable_async_checkpointing=False)
  return ocp.CheckpointManager(pathlib.Path(path).absolute(), options=options)


def _state_tree(state: training.TrainState) -> dict:
  """The parts of a train state that change during training, as a serialisable tree (the masks
  derive from the run's spec, and typed PRNG keys are stored as their raw key data)."""
  return {'step': state.step, 'params': state.params, 'batch_stats': state.batch_stats,
          'opt_state': state.opt_state, 'rng': jax.random.key_data(state.rng)}


def save_progress(path: pathlib.Path, progress: training.Progress) -> None:
  """Checkpoints an unfinished run (weights, optimizer state, step, curve so far)."""
  import orbax.checkpoint as ocp
  meta = {'curve': progress.curve, 'train_loss': progress.train_loss}
  with _progress_manager(path) as manager:
    manager.save(progress.step, args=ocp.args.Composite(
        state=ocp.args.StandardSave(_state_tree(progress.state)), progress=ocp.args.JsonSave(meta)))


def load_progress(path: pathlib.Path, like: training.TrainState) -> training.Progress | None:
  """The latest progress checkpoint under ``path``, restored into the structure of ``like``.

  Returns:
    The progress, or None when there is no checkpoint.
  """
  import orbax.checkpoint as ocp
  path = pathlib.Path(path)
  if not path.is_dir():
    return None
  try:
    with _progress_manager(path) as manager:
      step = manager.latest_step()
      if step is None:
        return None
      abstract = jax.tree.map(ocp.utils.to_shape_dtype_struct, _state_tree(like))
      restored = manager.restore(step, args=ocp.args.Composite(
          state=ocp.args.StandardRestore(abstract), progress=ocp.args.JsonRestore()))
  except Exception as e:  # Unreadable or of another shape: keep it for inspection, start over.
    aside = path.with_name(f'{path.name}.unreadable-{time.strftime("%Y%m%d-%H%M%S")}')
    os.replace(path, aside)
    print(f'transferbench: warning: progress checkpoint {path} is unreadable '
          f'({type(e).__name__}); moved to {aside}, the run starts from step 0', file=sys.stderr)
    return None
  tree = restored.state
  state = like.replace(step=tree['step'], params=tree['params'], batch_stats=tree['batch_stats'],
                       opt_state=tree['opt_state'], rng=jax.random.wrap_key_data(tree['rng']))
  return training.Progress(state=state, curve=restored.progress['curve'],
                           train_loss=restored.progress['train_loss'])


# ----------------------------------------------------------------------------------------------
# Execution.

@functools.lru_cache(maxsize=8)
def device_task(spec: tasks.TaskSpec, data_dir: str | None) -> tuple[tasks.TaskData, Any, Any]:
  """A task's data, in-memory splits placed on the default device once per process.

  Streamed splits (data sets too big for memory) stay random-access sources read batch by batch.
  """
  data = tasks.load_task(spec, data_dir)
  place = lambda split: tuple(map(jnp.asarray, split)) if isinstance(split, tuple) else split
  return data, place(data.train), place(data.test)


@functools.lru_cache(maxsize=1)
def environment() -> dict:
  """Versions, git commit and device: enough to tell where a number came from."""
  import flax
  import optax
  git = lambda *args: subprocess.run(['git', *args], capture_output=True, text=True, timeout=10,
                                    cwd=pathlib.Path(__file__).parent).stdout.strip()
  try:
    commit = git('rev-parse', 'HEAD') or None
    # Uncommitted changes to the code mean the commit alone does not identify what ran.
    dirty = bool(commit) and bool(git('status', '--porcelain', '--untracked-files=no'))
  except (OSError, subprocess.SubprocessError):
    commit, dirty = None, False
  device = jax.devices()[0]
  return {'python': sys.version.split()[0], 'platform': platform.platform(),
          'jax': jax.__version__, 'flax': flax.__version__, 'optax': optax.__version__,
          'numpy': np.__version__, 'backend': jax.default_backend(),
          'device': getattr(device, 'device_kind', str(device)), 'device_count': jax.device_count(),
          'git_commit': commit, 'git_dirty': dirty}


def check_architecture(path, meta: dict, model: str, model_kwargs: dict) -> None:
  """Raises a UserError if checkpoint metadata names another architecture than ``model``."""
  if meta.get('model') != model or meta.get('model_kwargs') != json.loads(json.dumps(model_kwargs)):
    raise UserError(f"checkpoint {path} is of model '{meta.get('model')}' {meta.get('model_kwargs')}, "
                    f"but the sweep uses '{model}' {model_kwargs}: transfer needs the same architecture")


def _source_variables(spec: RunSpec, store: ResultsStore, model_name: str, kwargs: dict) -> dict:
  """Loads the trained source network of a selffer/transfer run and checks its architecture."""
  path = spec.source_checkpoint or store.checkpoint_dir(spec.source_run)
  variables, meta = load_checkpoint(path)
  check_architecture(path, meta, model_name, kwargs)
  return variables


def init_key(seed: int, condition: str) -> jax.Array:
  """Initial-weights key: base nets use ``key(seed)``, transferred networks an independent draw."""
  key = jax.random.key(seed)
  return key if condition == 'scratch' else jax.random.fold_in(key, 1)


def starting_variables(spec: RunSpec, model, input_shape, store: ResultsStore) -> dict:
  """A run's variables at step 0: its seed's initialisation with the first n layers copied.

  Args:
    spec: the run.
    model: its flax module.
    input_shape: one example's shape.
    store: where the source run's checkpoint is (unless ``spec.source_checkpoint``).

  Returns:
    ``{'params': ..., 'batch_stats': ...}``.
  """
  names = models.layer_names(model.num_layers)
  plan = transfer.make_plan(spec.condition, spec.n_layers, spec.fine_tuned, model.num_layers)
  init = models.init_variables(model, init_key(spec.seed, spec.condition), input_shape)
  source = (_source_variables(spec, store, spec.model, dict(spec.model_kwargs))
            if spec.condition in ('selffer', 'transfer') else None)
  return transfer.combine(init, source, plan, names)


def run_record(spec: RunSpec, started_at: float, **fields: Any) -> dict:
  """A run's record: its id, spec, labels, environment and worker, then ``fields``."""
  return {'run_id': spec.run_id, 'spec': spec.to_dict(), 'labels': spec.labels(),
          'environment': environment(), 'executor': worker_identity(), 'started_at': started_at,
          **fields}


def save_weights(spec: RunSpec, store: ResultsStore, variables: dict, task: tasks.TaskData) -> None:
  """Saves a run's final weights as the checkpoint transfers copy from (see :func:`save_checkpoint`)."""
  meta = {'model': spec.model, 'model_kwargs': dict(spec.model_kwargs),
          'num_classes': task.num_classes, 'input_shape': list(task.input_shape),
          'task': spec.target.to_dict(), 'run_id': spec.run_id}
  save_checkpoint(store.checkpoint_dir(spec.run_id),
                  {'params': variables['params'], 'batch_stats': variables['batch_stats']}, meta)


def train_and_evaluate(spec: RunSpec, store: ResultsStore, data_dir: str | None = None,
                       on_eval: Callable[[dict], None] | None = None,
                       keep_weights: bool | None = None, checkpoint_every: int = 0) -> dict:
  """Trains one run and writes its record (and, for scratch runs, its checkpoint).

  A run killed before its record was written continues from its last progress checkpoint, if
  any, with the same result as an uninterrupted run.

  Args:
    spec: the run.
    store: where records and checkpoints live; a selffer/transfer run reads its source's
      checkpoint from here (or from ``spec.source_checkpoint``).
    data_dir: TFDS data directory (None: the default).
    on_eval: called with each curve point as it is measured.
    keep_weights: save the final weights as a checkpoint; default: scratch runs only (they are
      the base nets and the source networks of transfers).
    checkpoint_every: save a progress checkpoint every so many steps (0: never). It does not
      change the result, so it is not part of the run's spec.

  Returns:
    The record written (``status`` is ``'complete'`` or ``'failed'``), with ``started_at`` and
    ``finished_at`` (unix times) and ``executor`` (see :func:`harness.results.worker_identity`).
  """
  start = time.time()
  hyper = spec.hyper
  data, train_data, test_data = device_task(spec.target, data_dir)
  kwargs = dict(spec.model_kwargs)
  model = models.build_model(spec.model, data.num_classes, **kwargs)
  names = models.layer_names(model.num_layers)
  plan = transfer.make_plan(spec.condition, spec.n_layers, spec.fine_tuned, model.num_layers)
  variables = starting_variables(spec, model, data.input_shape, store)
  tx = training.make_optimizer(hyper['lr'], hyper['momentum'], hyper['weight_decay'],
                               hyper['lr_decay_every'], hyper['lr_decay_factor'])
  dropout_key = jax.random.fold_in(jax.random.key(spec.seed), 2)
  state = training.create_state(variables, plan, names, tx, dropout_key)
  data_rng = np.random.default_rng([spec.seed, zlib.crc32(spec.target.name.encode())])
  record = run_record(spec, start, num_layers=model.num_layers, layer_names=names)
  progress_dir = store.progress_dir(spec.run_id)
  resume = load_progress(progress_dir, state)
  if resume is not None:
    record['resumed_from_step'] = resume.step
  try:
    state, curve = training.train_loop(
        model, tx, state, train_data, test_data, steps=hyper['steps'],
        batch_size=hyper['batch_size'], eval_every=hyper['eval_every'], data_rng=data_rng,
        on_eval=on_eval, resume=resume, save_every=checkpoint_every,
        save=functools.partial(save_progress, progress_dir))
    record.update(status='complete', curve=curve)
  except training.Diverged as e:
    record.update(status='failed', error=str(e), diverged_at_step=e.step, curve=e.curve)
  if keep_weights is None:
    keep_weights = spec.condition == 'scratch'
  if record['status'] == 'complete' and keep_weights:
    save_weights(spec, store, {'params': state.params, 'batch_stats': state.batch_stats}, data)
  record['finished_at'] = time.time()
  record['wall_time_s'] = round(record['finished_at'] - start, 3)
  store.write_record(record)
  shutil.rmtree(progress_dir, ignore_errors=True)  # Only once the record is safely written.
  return record
