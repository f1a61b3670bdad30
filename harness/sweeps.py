"""Sweep files: a Python file whose ``get_config(arg=None)`` returns a locked ConfigDict.

A sweep config says which model, task pairs, conditions, n, seeds and training budget to run;
:func:`expand` turns it into the list of :class:`harness.runs.RunSpec`, sources before the
runs that copy from them. Fields (see ``sweeps/quickstart.py`` for a documented example):

  name, model, model_kwargs, pairs (list of task-pair dicts, see ``harness.tasks``),
  directions ('AB': A is the source and B the target; 'BA' the reverse), seeds (how many) and
  first_seed, conditions (names of ``harness.conditions``; base nets are always trained),
  fine_tune (subset of (False, True); a condition without a fine-tuned variant skips True),
  n_layers (empty: every n = 1..L-1; applies to the conditions whose n is free, not to those with
  one n such as reinit_head),
  train (steps, batch_size, lr, momentum, weight_decay, lr_decay_every, lr_decay_factor,
  eval_every), source_train (the same keys, None: as in ``train``; the budget of the source
  networks' own training, i.e. the pre-training), source_checkpoint ('' or a saved checkpoint
  used as the source network of every transfer run instead of pretraining one), shared_sources
  (True: one source network per source task and seed, shared by every pair with that source),
  data_dir, checkpoint_every (progress checkpoints of long runs; execution only, not part of the
  runs' specs), executor ('local' or 'slurm') and slurm (submission parameters, see
  :func:`slurm_defaults` and ``harness/executors.py``).

:data:`FIELDS` gives every field's meaning and the values it accepts (``transferbench config
SWEEP`` prints them with the resolved values); :func:`validate` checks them before a sweep runs.
"""

from __future__ import annotations

import ast
import importlib.util
import math
import pathlib
import traceback
from typing import Any, Callable, Sequence

import ml_collections

from harness import conditions, models, runs, tasks
from harness.errors import UserError

SWEEPS_DIR = pathlib.Path(__file__).resolve().parent.parent / 'sweeps'


def resolve_sweep_path(sweep: str) -> pathlib.Path:
  """A sweep given by path, or by name (``quickstart`` -> ``sweeps/quickstart.py``)."""
  path = pathlib.Path(sweep)
  candidates = [path, pathlib.Path.cwd() / 'sweeps' / f'{sweep}.py', SWEEPS_DIR / f'{sweep}.py']
  for candidate in candidates:
    if candidate.is_file():
      return candidate
  known = sorted(p.stem for p in SWEEPS_DIR.glob('*.py') if not p.stem.startswith('_'))
  raise UserError(f"sweep '{sweep}' not found: give a path to a sweep file or one of {', '.join(known)}")


def shipped() -> dict[str, str]:
  """The sweeps in ``sweeps/``: name -> the first line of the file's docstring (read, not run)."""
  out = {}
  for path in sorted(SWEEPS_DIR.glob('*.py')):
    if not path.stem.startswith('_'):
      doc = ast.get_docstring(ast.parse(path.read_text())) or ''
      out[path.stem] = doc.split('\n')[0]
  return out


def load_sweep(sweep: str, arg: str | None = None) -> ml_collections.ConfigDict:
  """Imports a sweep file as a module and returns its locked ``get_config(arg)``.

  Raises:
    UserError: missing file, syntax error, or no ``get_config``.
  """
  path = resolve_sweep_path(sweep)
  module_name = f'transferbench_sweep_{path.stem}'
  spec = importlib.util.spec_from_file_location(module_name, path)
  module = importlib.util.module_from_spec(spec)
  try:
    spec.loader.exec_module(module)
  except SyntaxError as e:
    raise UserError(f'sweep file {path} has a syntax error at line {e.lineno}: {e.msg}; fix the file') from None
  except Exception as e:  # An import or a name error in the user's file: point at its line.
    line = next((f.lineno for f in reversed(traceback.extract_tb(e.__traceback__))
                 if f.filename == str(path)), '?')
    raise UserError(f'sweep file {path} failed at line {line}: {type(e).__name__}: {e}; fix the file') from None
  if not hasattr(module, 'get_config'):
    raise UserError(f'sweep file {path} defines no get_config(): add one that returns a ConfigDict')
  config = module.get_config(arg) if arg is not None else module.get_config()
  config.lock()
  return config


def _parse_value(text: str) -> Any:
  """An override's value as a Python literal, or the bare string."""
  try:
    return ast.literal_eval(text)
  except (ValueError, SyntaxError):
    return text  # A bare string, e.g. --config.model=cnn/small


def apply_overrides(config: ml_collections.ConfigDict, overrides: Sequence[str]) -> ml_collections.ConfigDict:
  """Applies ``--config.a.b=value`` overrides (values parsed as Python literals where possible).

  Raises:
    UserError: malformed override, unknown field (the config is locked), or a wrong type.
  """
  config = config.copy_and_resolve_references()
  for item in overrides:
    if not item.startswith('--config.') or '=' not in item:
      raise UserError(f"bad override '{item}': write --config.FIELD=VALUE, e.g. --config.seeds=5")
    key, value = item[len('--config.'):].split('=', 1)
    parent, _, leaf = key.rpartition('.')
    try:
      node = config
      for part in filter(None, parent.split('.')):
        node = node[part]
      old = node[leaf]
      new = _parse_value(value)
      if isinstance(old, tuple) and isinstance(new, list):
        new = tuple(new)
      if isinstance(old, float) and isinstance(new, int) and not isinstance(new, bool):
        new = float(new)
      node[leaf] = new
    except (KeyError, AttributeError):
      raise UserError(f"unknown config field '{key}' in sweep '{config.get('name', '?')}': "
                      f"fields are {', '.join(sorted(config.keys()))}") from None
    except TypeError as e:
      raise UserError(f"bad value for --config.{key}: {e}") from None
  return config


def _to_plain(value):
  """ConfigDicts and tuples as plain dicts and lists (what run specs hold)."""
  if isinstance(value, ml_collections.ConfigDict):
    return {k: _to_plain(v) for k, v in value.items()}
  if isinstance(value, (list, tuple)):
    return [_to_plain(v) for v in value]
  return value


def _freeze(d: dict) -> tuple:
  """A dict as a sorted tuple of pairs: hashable, so a spec's fields can be."""
  return tuple(sorted((k, tuple(v) if isinstance(v, list) else v) for k, v in d.items()))


def _num_layers(model: str, model_kwargs: dict) -> int:
  # Depth does not depend on the number of classes: build with a placeholder head.
  return models.build_model(model, 2, **model_kwargs).num_layers


def expand(config: ml_collections.ConfigDict) -> list[runs.RunSpec]:
  """All runs of a sweep, each once, every source run before the runs that copy from it.

  Args:
    config: a sweep config (after overrides).

  Each condition's source role (``harness.conditions``) says which base net it copies from: the
  target task's (same task), the source task's or ``source_checkpoint`` (other task), or none.

  Returns:
    The run specs; scratch runs (base nets, which are also the source networks) come first.

  Raises:
    UserError: a bad value (:func:`validate`), unknown condition, n out of range, bad task pair,
      a missing checkpoint...
  """
  validate(config)
  _check_sources(config)
  model_kwargs = _to_plain(config.model_kwargs)
  head_classes = model_kwargs.pop('num_classes', None)  # The head is sized from the task.
  num_layers = _num_layers(config.model, model_kwargs)
  ns = {name: conditions.sweep_n(name, num_layers, tuple(config.n_layers))
        for name in config.conditions}
  same_task = [c for c in config.conditions if conditions.get(c).source == conditions.SAME_TASK]
  if config.source_checkpoint and same_task:
    raise UserError(f'{same_task[0]} needs base nets trained by the sweep: drop it from conditions '
                    'when source_checkpoint is set (transfer runs then copy from the checkpoint)')
  checkpoint_task = None
  if config.source_checkpoint:  # Pre-trained-Model approach; checked before training anything.
    meta = runs.load_checkpoint_meta(config.source_checkpoint)
    runs.check_architecture(config.source_checkpoint, meta, config.model, model_kwargs)
    checkpoint_task = tasks.TaskSpec.from_dict(meta['task'])
  common = dict(model=config.model, model_kwargs=_freeze(model_kwargs),
                train=_freeze(_to_plain(config.train)))
  source_common = dict(common, train=_freeze(source_train(config)))
  other_task = any(conditions.get(c).source == conditions.OTHER_TASK for c in config.conditions)
  scratch_runs, transfer_runs = {}, {}
  for pair in _to_plain(config.pairs):
    if pair.get('target_examples_per_class') and 'BA' in config.directions:
      raise UserError("target_examples_per_class makes task B scarce, so B must be the target: "
                      "use directions=('AB',) with a k-shot pair")
    if pair.get('kind') == 'target' and other_task and not config.source_checkpoint:
      raise UserError("a pair of kind 'target' has no source task: set --config.source_checkpoint"
                      '=DIR (e.g. a network imported with `transferbench import-weights`)')
    task_a, task_b = tasks.make_task_pair(pair, config.data_dir or None)
    label = tasks.pair_label(task_a, task_b)
    for task in (task_a, task_b):
      if head_classes is not None and head_classes != len(task.classes):
        raise UserError(
            f'class count mismatch: model_kwargs.num_classes={head_classes} but task {task.name} has '
            f'{len(task.classes)} classes; remove num_classes (the head is sized from each task)')
    for direction in config.directions:
      if direction not in ('AB', 'BA'):
        raise UserError(f"unknown direction '{direction}': use 'AB' (A -> B) or 'BA' (B -> A)")
      source_task, target_task = (task_a, task_b) if direction == 'AB' else (task_b, task_a)
      _check_head_copies(config.conditions, checkpoint_task or source_task, target_task)
      for seed in range(config.first_seed, config.first_seed + config.seeds):
        base = lambda task, group, fields=common: runs.RunSpec(
            condition=conditions.BASE, n_layers=0, fine_tuned=False, seed=seed, target=task,
            pair=group, **fields)
        base_target = base(target_task, label)
        scratch_runs[base_target.run_id] = base_target
        sources = {conditions.SAME_TASK: (target_task, base_target)}
        if checkpoint_task:
          sources[conditions.OTHER_TASK] = (checkpoint_task, None)
        elif other_task:
          base_source = base(source_task, _source_group(config, label, source_task), source_common)
          scratch_runs[base_source.run_id] = base_source
          sources[conditions.OTHER_TASK] = (source_task, base_source)
        for spec in _condition_runs(config, ns, seed, target_task, sources, label, common):
          transfer_runs[spec.run_id] = spec
  return list(scratch_runs.values()) + list(transfer_runs.values())


def source_train(config) -> dict:
  """The training settings of the sweep's source networks: ``train`` with the values that
  ``source_train`` sets (its None values keep ``train``'s), so a short tuning budget can start
  from a network pre-trained to convergence. Equal to ``train`` when ``source_train`` is empty,
  and then a source network's spec (and run id) is the one it had before the field existed."""
  overrides = _to_plain(config.get('source_train') or {})
  return {**_to_plain(config.train), **{k: v for k, v in overrides.items() if v is not None}}


def _check_sources(config) -> None:
  """Refuses sweeps whose source networks would be ambiguous: a source that is also a scored
  target (directions 'BA') with ``shared_sources`` or ``source_train``, or ``source_train`` with a
  ``source_checkpoint`` (the checkpoint is the source: nothing is pre-trained)."""
  overridden = source_train(config) != _to_plain(config.train)
  if config.shared_sources and 'BA' in config.directions:
    raise UserError("shared_sources=True trains each source task's network once for every pair, "
                    "so a source must not also be a pair's scored target: use directions=('AB',)")
  if overridden and 'BA' in config.directions:
    raise UserError("source_train gives the source networks their own budget, so a source must "
                    "not also be a pair's scored target (trained with train): use "
                    "directions=('AB',)")
  if overridden and config.source_checkpoint:
    raise UserError('source_train sets how source networks are pre-trained, but source_checkpoint '
                    'gives them ready-made: drop one of the two')


def _check_head_copies(names: Sequence[str], source_task: tasks.TaskSpec,
                       target_task: tasks.TaskSpec) -> None:
  """Refuses, before anything trains, a condition that copies the head onto a target with
  another number of classes than its source (the head's shapes would differ)."""
  copying = [c for c in names if conditions.get(c).copies_head]
  if copying and len(source_task.classes) != len(target_task.classes):
    raise UserError(
        f'{copying[0]} copies the head, but the source task {source_task.name} has '
        f'{len(source_task.classes)} classes and the target {target_task.name} '
        f'{len(target_task.classes)}: give the pair a target with the source\'s classes (e.g. a '
        'shifted copy of the source data, docs/shifts.md), or drop the condition')


def _source_group(config, label: str, source_task: tasks.TaskSpec) -> str:
  """The ``pair`` of a pair's source network: the pair's label (each pair trains its own source,
  so pairs are independent replicates), or with ``shared_sources`` the source task's name (one
  network per source task and seed serves every pair, and its initial weights depend on its task
  alone: ``harness.engine.semantics.init_key`` folds in a run's ``pair``)."""
  return source_task.name if config.shared_sources else label


def _condition_runs(config, ns, seed, target_task, sources, label, common):
  """The runs of every condition of the sweep for one (direction, seed), in the config's order.

  Args:
    config: the sweep config.
    ns: condition -> the n it runs at (:func:`harness.conditions.sweep_n`).
    seed: the seed.
    target_task: the task trained on.
    sources: source role -> (task, base-net spec or None for a checkpoint) of this seed.
    label: the task pair's label.
    common: the spec fields shared by the sweep's runs.
  """
  checkpoint = (str(pathlib.Path(config.source_checkpoint).absolute())
                if config.source_checkpoint else None)
  for condition in config.conditions:
    row = conditions.get(condition)
    if row.source == conditions.NO_SOURCE:
      continue  # base nets: already made for every target
    for n in ns[condition]:
      for fine_tuned in config.fine_tune:
        if fine_tuned and not row.fine_tunable:
          continue  # e.g. fine-tuning random frozen layers is just scratch
        source_task, source_run = sources.get(row.source, (None, None))
        from_checkpoint = row.source == conditions.OTHER_TASK and checkpoint is not None
        yield runs.RunSpec(
            condition=condition, n_layers=n, fine_tuned=fine_tuned, seed=seed, target=target_task,
            source=source_task, source_run=source_run.run_id if source_run else None,
            source_checkpoint=checkpoint if from_checkpoint else None, pair=label, **common)


def base_config() -> ml_collections.ConfigDict:
  """Defaults shared by sweep files; a sweep file starts from this and changes what it needs."""
  c = ml_collections.ConfigDict()
  c.name = 'sweep'
  c.model = 'mlp/3x256'
  c.model_kwargs = ml_collections.ConfigDict()
  c.pairs = [dict(kind='random_halves', dataset='mnist', split_seed=0)]
  c.directions = ('AB',)
  c.seeds = 3       # how many seeds: first_seed, first_seed + 1, ...
  c.first_seed = 0
  c.conditions = (conditions.SELFFER, conditions.TRANSFER, conditions.RANDOM_FROZEN)
  c.fine_tune = (False, True)
  c.n_layers = ()
  c.train = ml_collections.ConfigDict(dict(runs.TRAIN_DEFAULTS))
  # The source networks' own training (the pre-training); None: the value of train.
  c.source_train = ml_collections.ConfigDict({key: None for key in runs.TRAIN_DEFAULTS})
  c.source_checkpoint = ''
  c.shared_sources = False  # True: one source network per (source task, seed) for every pair
  c.data_dir = ''
  # Execution settings (not part of any run's spec: they never change a result).
  c.checkpoint_every = 1000  # progress checkpoint of a run every so many steps (0: never)
  # harness/engine (strategy, pack_size, concurrent_runs: runs trained at once in threads,
  # 0 = one per CPU core on CPU) and harness/runner.py (workers: processes of the local
  # executor, each pinned to a CPU core)
  c.execution = ml_collections.ConfigDict(dict(strategy='auto', pack_size=0, concurrent_runs=0,
                                               workers=1))
  c.executor = 'local'  # or 'slurm': see harness/executors.py
  c.slurm = slurm_defaults()
  return c


def slurm_defaults() -> ml_collections.ConfigDict:
  """``config.slurm``: how ``--executor slurm`` submits (0 or '' leaves a value to the cluster)."""
  return ml_collections.ConfigDict(dict(
      partition='',           # sbatch --partition
      time_min=60,            # time limit of one array task, minutes
      gpus_per_node=0,        # GPUs per array task
      cpus_per_task=1,
      mem_gb=0.0,             # memory per array task; 0: the cluster's default
      array_parallelism=0,    # at most this many tasks of an array at once; 0: no limit
      runs_per_task=1,        # runs done one after the other by one array task
      sbatch=(),              # more sbatch options, 'KEY=VALUE' strings, e.g. ('qos=high',)
      setup=(),               # shell lines run before the task, e.g. ('module load cuda',)
      job_name='transferbench',
      dependency='afterany',  # how a phase waits for the one before: afterany or afterok
  ))


# ----------------------------------------------------------------------------------------------
# Every field of a sweep config: its meaning and the values it accepts. `transferbench config`
# prints these next to the resolved values; :func:`validate` checks them before anything runs.

def _is_int(value) -> bool:
  return isinstance(value, int) and not isinstance(value, bool)


def _is_number(value) -> bool:
  return (isinstance(value, (int, float)) and not isinstance(value, bool)
          and math.isfinite(value))


# Rule name -> (test, what it requires, a value that passes).
RULES: dict[str, tuple[Callable[[Any], bool], str, Any]] = {
    'int>=1': (lambda v: _is_int(v) and v >= 1, 'an integer >= 1', 1),
    'int>=0': (lambda v: _is_int(v) and v >= 0, 'an integer >= 0', 0),
    '>0': (lambda v: _is_number(v) and v > 0, 'a number > 0', 0.01),
    '>=0': (lambda v: _is_number(v) and v >= 0, 'a number >= 0', 0),
    '[0,1)': (lambda v: _is_number(v) and 0 <= v < 1, 'a number in [0, 1)', 0.9),
    'bool': (lambda v: isinstance(v, bool), 'True or False', False),
}

# Field (dotted) -> (meaning, rule name or None). A field without a row fails
# tests/test_app.py: a new field needs its meaning here.
FIELDS: dict[str, tuple[str, str | None]] = {
    'name': ('name of the sweep; the default results directory is results/NAME', None),
    'model': ("architecture: mlp/3x256, cnn/small, resnet/tiny, ... (harness/models.py)", None),
    'model_kwargs': ('keyword arguments of the model, e.g. {hidden: (32, 32)}; the head is sized '
                     'from each task', None),
    'pairs': ('task pairs, each a dict: kind (random_halves, partition, datasets) and its fields, '
              'optional target_examples_per_class k for a k-shot target (harness/tasks.py)', None),
    'directions': ("'AB': A is the source task and B the target; 'BA' the reverse", None),
    'seeds': ('how many seeds: first_seed, first_seed + 1, ...', 'int>=1'),
    'first_seed': ('the first seed', 'int>=0'),
    'conditions': ('conditions to run (harness/conditions.py); base nets are always trained', None),
    'fine_tune': ('False: copied layers frozen; True: fine-tuned (the + conditions)', None),
    'n_layers': ('n (layers copied or kept) to run; empty: every n = 1..L-1', None),
    'train.steps': ('SGD steps of a run', 'int>=1'),
    'train.batch_size': ('examples per step', 'int>=1'),
    'train.lr': ('learning rate', '>0'),
    'train.momentum': ('SGD momentum (0: plain SGD)', '[0,1)'),
    'train.weight_decay': ('L2 weight decay of the kernels', '>=0'),
    'train.lr_decay_every': ('multiply the learning rate by lr_decay_factor every so many steps '
                             '(0: constant)', 'int>=0'),
    'train.lr_decay_factor': ('the step-decay factor', '>0'),
    'train.eval_every': ('evaluate on the test split every so many steps (and at steps 0, 1, 2, '
                         '4, ... below it, and at the last step)', 'int>=1'),
    'source_checkpoint': ("'' or a run's checkpoint/ directory: the source network of every "
                          'transfer run, instead of pretraining one', None),
    'shared_sources': ("False: each pair trains its own source network (pairs are independent "
                       "replicates); True: one per source task and seed, shared by every pair "
                       "with that source, its initial weights keyed by the task (directions "
                       "('AB',) only)", 'bool'),
    'data_dir': ("TFDS data directory ('': $TRANSFERBENCH_DATA_DIR or ~/tensorflow_datasets)",
                 None),
    'checkpoint_every': ('progress checkpoint of a run every so many steps (0: never); '
                         'execution only, results do not change', 'int>=0'),
    'execution.strategy': ('how runs are trained: auto, vmap, fused, sequential, per_run '
                           '(harness/engine); results do not change', None),
    'execution.pack_size': ('runs trained together in one program (0: automatic)', 'int>=0'),
    'execution.concurrent_runs': ('runs trained at once in threads (0: one per CPU core on CPU)',
                                  'int>=0'),
    'execution.workers': ('processes of the local executor, each pinned to a CPU core', 'int>=1'),
    'executor': ("where runs execute: 'local' or 'slurm' (harness/executors.py)", None),
    'slurm.partition': ('sbatch --partition', None),
    'slurm.time_min': ('time limit of one array task, minutes (0: the cluster default)', 'int>=0'),
    'slurm.gpus_per_node': ('GPUs per array task', 'int>=0'),
    'slurm.cpus_per_task': ('CPU cores per array task', 'int>=1'),
    'slurm.mem_gb': ("memory per array task, GB (0: the cluster's default)", '>=0'),
    'slurm.array_parallelism': ('at most this many tasks of an array at once (0: no limit)',
                                'int>=0'),
    'slurm.runs_per_task': ('runs done one after the other by one array task', 'int>=1'),
    'slurm.sbatch': ("more sbatch options, 'KEY=VALUE' strings, e.g. ('qos=high',)", None),
    'slurm.setup': ("shell lines run before a task, e.g. ('module load cuda',)", None),
    'slurm.job_name': ('name of the SLURM jobs', None),
    'slurm.dependency': ('how a phase waits for the one before: afterany or afterok', None),
}
# source_train.KEY: train.KEY for the source networks only (the pre-training of the conditions that
# copy from another task's network); None keeps train's value.
FIELDS.update({
    f'source_{name}': (f'the source networks\' pre-training only: {meaning} (None: {name})', rule)
    for name, (meaning, rule) in list(FIELDS.items()) if name.startswith('train.')})


def flat_fields(config: ml_collections.ConfigDict, prefix: str = '') -> dict[str, Any]:
  """The config's fields, dotted (``train.steps``); ``model_kwargs`` and lists stay one field."""
  out = {}
  for key, value in config.items():
    name = prefix + key
    if isinstance(value, ml_collections.ConfigDict) and name != 'model_kwargs':
      out.update(flat_fields(value, name + '.'))
    else:
      out[name] = _to_plain(value)
  return out


def validate(config: ml_collections.ConfigDict) -> None:
  """Checks every numeric field of a sweep config (and each pair's k) against :data:`FIELDS`.

  Called before a sweep is expanded, so a bad value stops the command before anything is written.

  Raises:
    UserError: the first bad value, with what the field requires and an override that passes.
  """
  defaults = flat_fields(base_config())
  _check_source_train_keys(config)
  for name, value in flat_fields(config).items():
    rule = FIELDS.get(name, ('', None))[1]
    if rule is None or (value is None and name.startswith('source_train.')):
      continue
    test, requires, example = RULES[rule]
    if not test(value):
      default = defaults.get(name.replace('source_train.', 'train.'))
      example = default if test(default) else example
      raise UserError(f'config.{name}={value!r} is not valid: {name} must be {requires}; '
                      f'e.g. --config.{name}={example}')
  for pair in _to_plain(config.get('pairs', [])):
    k = pair.get('target_examples_per_class') if isinstance(pair, dict) else None
    if k is not None and not RULES['int>=1'][0](k):
      raise UserError(f'target_examples_per_class={k!r} in pair {pair} is not valid: it must be '
                      'an integer >= 1 (examples per class of the k-shot target); leave it out '
                      'for every example')


def _check_source_train_keys(config: ml_collections.ConfigDict) -> None:
  """Refuses a ``source_train`` key that is not a training setting (a typo would otherwise leave
  the source networks on ``train``'s budget unnoticed)."""
  given = config.get('source_train') or {}
  unknown = sorted(set(given.keys()) - set(runs.TRAIN_DEFAULTS))
  if unknown:
    raise UserError(f'config.source_train.{unknown[0]} is not a training setting: source_train '
                    f'takes {", ".join(runs.TRAIN_DEFAULTS)} (as train), e.g. '
                    '--config.source_train.steps=3000')
