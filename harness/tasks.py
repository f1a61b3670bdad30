"""Tasks and task pairs: which classes of which data set, with how many training examples.

A task is a data set, a subset of its classes (task label i is original class ``classes[i]``), and
optionally k training examples per class (a scarce target). A *pair* gives the source task A and
the target task B of a study, by one of the kinds in :data:`PAIR_KINDS`:

* ``random_halves``: a seeded random split of one data set's classes into disjoint halves A and B
  that together cover every class (Yosinski et al. 2014; A gets the smaller half if odd);
* ``partition``: a user-given partition (e.g. semantically dissimilar halves: natural vs man-made);
* ``datasets``: two data sets with the same input shape (e.g. MNIST digits -> Animal silhouettes);
* ``target``: one task only, the target of a sweep whose source network is a checkpoint.

Any kind takes ``target_examples_per_class: k`` (and ``sample_seed``) for a k-shot target B.
Everything is deterministic (NumPy generators seeded from the config, never Python's ``hash``).
"""

from __future__ import annotations

import dataclasses
import functools
from typing import Any, Callable, Mapping, Sequence

import numpy as np

from harness import data
from harness.errors import UserError


@dataclasses.dataclass(frozen=True)
class TaskSpec:
  """One task; ``name`` is short and unique within a sweep (e.g. ``mnist_A0``, ``mnist_B0_k10``)."""
  name: str
  dataset: str
  classes: tuple[int, ...]
  examples_per_class: int | None = None
  sample_seed: int = 0

  def to_dict(self) -> dict:
    return dataclasses.asdict(self) | {'classes': list(self.classes)}

  @classmethod
  def from_dict(cls, d: Mapping[str, Any]) -> 'TaskSpec':
    return cls(**{**d, 'classes': tuple(d['classes'])})


@dataclasses.dataclass(frozen=True)
class TaskData:
  """A task's examples, labels remapped to ``0..num_classes-1``.

  ``train`` and ``test`` are ``(x, y)`` NumPy arrays, or, for data sets streamed from disk, objects
  with ``len()`` and ``get_batch(indices) -> (x, y)`` (see :class:`Subset`).
  """
  train: Any
  test: Any
  num_classes: int
  input_shape: tuple[int, ...]


def _check_classes(dataset: str, classes: Sequence[int], what: str, data_dir: str | None) -> tuple[int, ...]:
  num = data.dataset_info(dataset, data_dir).num_classes
  bad = [c for c in classes if not 0 <= int(c) < num]
  if bad:
    raise UserError(f'class count mismatch: {what} names class(es) {bad} but {dataset} has '
                    f'{num} classes (0..{num - 1}); fix the class list')
  if len(set(classes)) != len(classes) or not classes:
    raise UserError(f'{what} must list distinct classes of {dataset}, at least one')
  return tuple(sorted(int(c) for c in classes))


def _random_halves(pair: Mapping, data_dir: str | None) -> tuple[TaskSpec, TaskSpec]:
  dataset, seed = pair['dataset'], int(pair.get('split_seed', 0))
  num = data.dataset_info(dataset, data_dir).num_classes
  perm = np.random.default_rng(seed).permutation(num)
  short = dataset.split(':')[-1]
  a, b = sorted(perm[:num // 2].tolist()), sorted(perm[num // 2:].tolist())
  return (TaskSpec(f'{short}_A{seed}', dataset, tuple(a)),
          TaskSpec(f'{short}_B{seed}', dataset, tuple(b)))


def _partition(pair: Mapping, data_dir: str | None) -> tuple[TaskSpec, TaskSpec]:
  dataset = pair['dataset']
  a = _check_classes(dataset, list(pair['classes_a']), 'classes_a', data_dir)
  b = _check_classes(dataset, list(pair['classes_b']), 'classes_b', data_dir)
  if set(a) & set(b):
    raise UserError(f'classes_a and classes_b overlap in {sorted(set(a) & set(b))}: a partition '
                    'needs disjoint class sets')
  short = dataset.split(':')[-1]
  names = pair.get('names', ('A', 'B'))
  return TaskSpec(f'{short}_{names[0]}', dataset, a), TaskSpec(f'{short}_{names[1]}', dataset, b)


def _datasets(pair: Mapping, data_dir: str | None) -> tuple[TaskSpec, TaskSpec]:
  source, target = pair['source'], pair['target']
  shapes = {d: data.dataset_info(d, data_dir).input_shape for d in (source, target)}
  if shapes[source] != shapes[target]:
    raise UserError(f'{source} and {target} have different input shapes ({shapes[source]} vs '
                    f'{shapes[target]}): a transfer pair needs the same input shape')
  tasks = []
  for role, dataset in (('source', source), ('target', target)):
    classes = pair.get(f'{role}_classes') or range(data.dataset_info(dataset, data_dir).num_classes)
    tasks.append(TaskSpec(dataset.split(':')[-1], dataset,
                          _check_classes(dataset, list(classes), f'{role}_classes', data_dir)))
  if tasks[0].name == tasks[1].name:
    raise UserError(f"kind 'datasets' needs two different data sets, got {source} twice: "
                    "use 'random_halves' or 'partition' for one data set")
  return tasks[0], tasks[1]


def _target(pair: Mapping, data_dir: str | None) -> tuple[TaskSpec, TaskSpec]:
  """A target task alone, for sweeps whose source network is a checkpoint (``source_checkpoint``,
  e.g. an imported ImageNet network): A and B are both the data set's ``classes`` (default all),
  and only B is trained."""
  dataset = pair['dataset']
  classes = pair.get('classes') or range(data.dataset_info(dataset, data_dir).num_classes)
  task = TaskSpec(dataset.split(':')[-1], dataset,
                  _check_classes(dataset, list(classes), 'classes', data_dir))
  return task, task


PAIR_KINDS: dict[str, Callable[[Mapping, str | None], tuple[TaskSpec, TaskSpec]]] = {
    'random_halves': _random_halves, 'partition': _partition, 'datasets': _datasets,
    'target': _target}


def pair_label(task_a: TaskSpec, task_b: TaskSpec) -> str:
  """The label of a task pair (``'A|B'``): the ``pair`` of its runs and of the curves."""
  return f'{task_a.name}|{task_b.name}'


def make_task_pair(pair: Mapping, data_dir: str | None = None) -> tuple[TaskSpec, TaskSpec]:
  """Source task A and target task B of a pair config (see the module docstring).

  Args:
    pair: a dict with ``kind`` and that kind's fields; optional ``target_examples_per_class``
      and ``sample_seed`` make B a k-shot task.
    data_dir: TFDS data directory (None: the default).

  Returns:
    ``(A, B)``.

  Raises:
    UserError: unknown kind or data set, bad classes, input-shape mismatch, k too large.
  """
  kind = pair.get('kind')
  if kind not in PAIR_KINDS:
    raise UserError(f"unknown task pair kind '{kind}': choose one of {', '.join(PAIR_KINDS)}")
  try:
    task_a, task_b = PAIR_KINDS[kind](pair, data_dir)
  except KeyError as e:
    raise UserError(f"task pair of kind '{kind}' needs the field {e}") from None
  k = pair.get('target_examples_per_class')
  if k:
    task_b = _k_shot(task_b, int(k), int(pair.get('sample_seed', 0)), data_dir)
  return task_a, task_b


def _k_shot(task: TaskSpec, k: int, seed: int, data_dir: str | None) -> TaskSpec:
  labels = data.split_labels(task.dataset, 'train', data_dir)
  fewest = min(int(np.sum(labels == c)) for c in task.classes)
  if not 1 <= k <= fewest:
    raise UserError(f'target_examples_per_class={k} is not possible for {task.name}: its classes '
                    f'have at least {fewest} training examples; use 1 <= k <= {fewest}')
  return dataclasses.replace(task, name=f'{task.name}_k{k}', examples_per_class=k, sample_seed=seed)


def task_indices(spec: TaskSpec, labels: np.ndarray, k: int | None = None, seed: int = 0) -> np.ndarray:
  """Sorted indices of the examples of ``spec.classes``; k per class (seeded) if ``k`` is set."""
  if k is None:
    return np.flatnonzero(np.isin(labels, spec.classes))
  rng = np.random.default_rng([seed, *spec.classes])
  chosen = [rng.choice(np.flatnonzero(labels == c), size=k, replace=False) for c in spec.classes]
  return np.sort(np.concatenate(chosen))


def remap(labels: np.ndarray, classes: Sequence[int]) -> np.ndarray:
  """Original labels -> task labels (position in the sorted ``classes``)."""
  return np.searchsorted(np.asarray(classes), labels).astype(np.int32)


class Subset:
  """Examples ``indices`` of a streamed split, with task labels: ``len()``, ``get_batch()``."""

  def __init__(self, source, indices: np.ndarray, classes: Sequence[int]):
    self._source, self._indices, self._classes = source, indices, classes

  def __len__(self) -> int:
    return len(self._indices)

  def get_batch(self, indices) -> tuple[np.ndarray, np.ndarray]:
    x, y = self._source.get_batch(self._indices[np.asarray(indices)])
    return x, remap(y, self._classes)


def _split(spec: TaskSpec, split: str, data_dir: str | None, k: int | None):
  ds = data.dataset_spec(spec.dataset, data_dir)
  labels = data.split_labels(spec.dataset, split, data_dir)
  idx = task_indices(spec, labels, k, spec.sample_seed)
  if not ds.in_memory:
    return Subset(data.split_source(spec.dataset, split, data_dir), idx, spec.classes)
  x, y = data.load_split(spec.dataset, split, data_dir)
  return x[idx], remap(y[idx], spec.classes)


@functools.lru_cache(maxsize=8)
def load_task(spec: TaskSpec, data_dir: str | None = None) -> TaskData:
  """A task's training examples (k per class if k-shot) and all test examples of its classes.

  Args:
    spec: the task.
    data_dir: TFDS data directory (None: the default).

  Returns:
    The :class:`TaskData`.
  """
  info = data.dataset_info(spec.dataset, data_dir)
  _check_classes(spec.dataset, spec.classes, f'task {spec.name}', data_dir)
  return TaskData(train=_split(spec, 'train', data_dir, spec.examples_per_class),
                  test=_split(spec, 'test', data_dir, None),
                  num_classes=len(spec.classes), input_shape=info.input_shape)
