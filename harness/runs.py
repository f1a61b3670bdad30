"""One run: ``train_and_evaluate`` (the per-run path), its checkpoints and progress checkpoints.

The per-run semantics (keys, batch order, starting state, curve, record) are those of
``harness.engine.semantics``, which the fast strategies share; this path adds what only it
does: streamed data sets too big for memory, and progress checkpoints a run resumes from.
"""

from __future__ import annotations

import contextlib
import errno
import functools
import json
import os
import pathlib
import platform
import shutil
import subprocess
import sys
import threading
import time
from typing import Any, Callable

import jax
import jax.numpy as jnp
import numpy as np

from harness import models, tasks, training, transfer
from harness.engine import semantics
from harness.engine.data import device_task
from harness.errors import UserError
from harness.results import ResultsStore, atomic_write_json, read_json, worker_identity
from harness.specs import TRAIN_DEFAULTS, RunSpec  # noqa: F401  (re-exported: harness.sweeps)

# ----------------------------------------------------------------------------------------------
# Checkpoints: RUN/checkpoint/state (orbax) + RUN/checkpoint/meta.json (architecture, task).

# Orbax saves of two runs at once from threads of one process collide (both threads created the
# same '.orbax-checkpoint-tmp' directory): one checkpoint save or restore at a time.
_ORBAX_LOCK = threading.Lock()


# Room a checkpoint needs beyond its arrays' bytes (orbax's metadata and manifest files).
CHECKPOINT_OVERHEAD_BYTES = 256 * 1024


def save_checkpoint(path: pathlib.Path, variables: dict, meta: dict) -> None:
  """Saves final weights with orbax, plus the metadata needed to reuse them as a source.

  Raises:
    OSError: ``errno.ENOSPC`` naming ``path`` when the disk has no room for the checkpoint,
      checked before orbax starts (a full disk inside orbax's writer threads ends in their
      tracebacks), or reported by orbax meanwhile.
  """
  import orbax.checkpoint as ocp  # Imported lazily: slow to import, only needed here.
  path = pathlib.Path(path).absolute()
  state_dir = path / 'state'
  if state_dir.exists():  # A crashed earlier attempt: orbax refuses to overwrite.
    shutil.rmtree(state_dir)
  tree = {'params': variables['params'], 'batch_stats': variables['batch_stats']}
  path.mkdir(parents=True, exist_ok=True)
  need = sum(np.asarray(leaf).nbytes for leaf in jax.tree.leaves(tree)) + CHECKPOINT_OVERHEAD_BYTES
  if shutil.disk_usage(path).free < need:
    raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), str(state_dir))
  with _ORBAX_LOCK, disk_full_as_oserror(state_dir):
    checkpointer = ocp.StandardCheckpointer()
    checkpointer.save(state_dir, tree)
    checkpointer.wait_until_finished()
  atomic_write_json(path / 'meta.json', meta)


@contextlib.contextmanager
def disk_full_as_oserror(where: pathlib.Path):
  """Re-raises orbax's report of a full disk (a ValueError carrying the OS error code) as
  ``OSError(ENOSPC)`` naming ``where``, which the CLI turns into one line."""
  try:
    yield
  except Exception as e:
    if f"os_error_code='{errno.ENOSPC}'" in str(e) or os.strerror(errno.ENOSPC) in str(e):
      raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), str(where)) from e
    raise


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
  with disk_full_as_oserror(path), _progress_manager(path) as manager:
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
  """Raises a UserError if checkpoint metadata names another architecture than ``model``.

  Keyword arguments of the input transform only (``models.INPUT_KWARGS``, e.g. the image size an
  imported ImageNet network resizes to) may differ: they change no parameter.
  """
  same_kwargs = (models.architecture_kwargs(meta.get('model_kwargs') or {})
                 == models.architecture_kwargs(json.loads(json.dumps(model_kwargs))))
  if meta.get('model') != model or not same_kwargs:
    raise UserError(f"checkpoint {path} is of model '{meta.get('model')}' {meta.get('model_kwargs')}, "
                    f"but the sweep uses '{model}' {model_kwargs}: transfer needs the same architecture")


def source_variables(spec: RunSpec, store: ResultsStore, model_name: str, kwargs: dict) -> dict:
  """Loads a run's trained source network and checks its architecture."""
  path = spec.source_checkpoint or store.checkpoint_dir(spec.source_run)
  variables, meta = load_checkpoint(path)
  check_architecture(path, meta, model_name, kwargs)
  return variables


def starting_variables(spec: RunSpec, model, input_shape, store: ResultsStore) -> dict:
  """A run's variables at step 0: its own initialisation (fresh layers re-drawn), copied layers
  taken from its source network (as the engine's programs do: :func:`semantics.with_copied`).

  Args:
    spec: the run.
    model: its flax module.
    input_shape: one example's shape.
    store: where the source run's checkpoint is (unless ``spec.source_checkpoint``).

  Returns:
    ``{'params': ..., 'batch_stats': ...}``.
  """
  names = models.layer_names(model.num_layers)
  plan = semantics.plan_of(spec, model.num_layers)
  fresh = plan.fresh if plan.fresh is not None else np.zeros_like(plan.copy)
  init = semantics.own_init(model, spec.seed, semantics.pair_tag(spec.pair),
                            semantics.is_base(plan), fresh, input_shape)
  if not np.any(plan.copy):
    return init
  source = source_variables(spec, store, spec.model, dict(spec.model_kwargs))
  copied = transfer.combine(jax.tree.map(jnp.zeros_like, init), source, plan, names)
  return semantics.with_copied(init, copied, plan.copy, names)


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


def network_with_weights(spec: RunSpec, store: ResultsStore, data_dir: str | None,
                         train: bool) -> pathlib.Path:
  """A run's directory with its weights, trained (weights kept) if it has none yet.

  The studies that measure networks rather than curves (basins, LP-FT) need the weights of
  runs a sweep does not keep; this trains each such run once and reuses it afterwards.

  Args:
    spec: the run.
    store: the results store.
    data_dir: TFDS data directory.
    train: False (``--analyze-only``) refuses to train a missing network.

  Raises:
    UserError: the network is missing and ``train`` is False.
  """
  if not (store.status(spec.run_id) == 'complete'
          and (store.checkpoint_dir(spec.run_id) / 'meta.json').is_file()):
    if not train:
      raise UserError(f'the network {spec.describe()} is not in {store.root}: run without '
                      '--analyze-only to train it')
    train_and_evaluate(spec, store, data_dir, keep_weights=True)
  return store.run_dir(spec.run_id)


def train_and_evaluate(spec: RunSpec, store: ResultsStore, data_dir: str | None = None,
                       on_eval: Callable[[dict], None] | None = None,
                       keep_weights: bool | None = None, checkpoint_every: int = 0) -> dict:
  """Trains one run and writes its record (and, for scratch runs, its checkpoint).

  A run killed before its record was written continues from its last progress checkpoint, if
  any, with the same result as an uninterrupted run.

  Args:
    spec: the run.
    store: where records and checkpoints live; a run that copies layers reads its source's
      checkpoint from here (or from ``spec.source_checkpoint``).
    data_dir: TFDS data directory (None: the default).
    on_eval: called with each curve point as it is measured.
    keep_weights: save the final weights as a checkpoint; default: base nets only (they are
      the source networks of transfers).
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
  plan = semantics.plan_of(spec, model.num_layers)
  variables = starting_variables(spec, model, data.input_shape, store)
  tx = training.make_optimizer(hyper['lr'], hyper['momentum'], hyper['weight_decay'],
                               hyper['lr_decay_every'], hyper['lr_decay_factor'])
  state = training.create_state(variables, plan, names, tx, semantics.dropout_key(spec.seed),
                                hyper['steps'])
  record = run_record(spec, start, num_layers=model.num_layers, layer_names=names)
  progress_dir = store.progress_dir(spec.run_id)
  resume = load_progress(progress_dir, state)
  if resume is not None:
    record['resumed_from_step'] = resume.step
  try:
    state, curve = training.train_loop(
        model, tx, state, train_data, test_data, steps=hyper['steps'],
        batch_size=hyper['batch_size'], eval_every=hyper['eval_every'],
        data_rng=semantics.data_rng(spec.seed, spec.target.name), on_eval=on_eval, resume=resume,
        save_every=checkpoint_every, save=functools.partial(save_progress, progress_dir))
    record.update(semantics.outcome(curve, None))
  except training.Diverged as e:
    record.update(semantics.outcome(e.curve, e.step))
  keep = semantics.is_base(plan) if keep_weights is None else keep_weights
  semantics.finish(spec, store, record, {'params': state.params, 'batch_stats': state.batch_stats},
                   data, keep, started_at=start)
  shutil.rmtree(progress_dir, ignore_errors=True)  # Only once the record is safely written.
  return record
