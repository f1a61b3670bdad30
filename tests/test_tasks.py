"""Tasks and pairs: class splits, label remapping, k-shot targets, dissimilar pairs, errors."""

import numpy as np
import pytest

from harness import data, tasks
from harness.errors import UserError


def test_random_halves_are_disjoint_cover_all_and_depend_on_the_seed(data_dir):
  a, b = tasks.make_task_pair({'kind': 'random_halves', 'dataset': 'mnist', 'split_seed': 0}, data_dir)
  assert (a.name, b.name) == ('mnist_A0', 'mnist_B0')
  assert not set(a.classes) & set(b.classes) and sorted(a.classes + b.classes) == list(range(10))
  assert (a, b) == tasks.make_task_pair({'kind': 'random_halves', 'dataset': 'mnist', 'split_seed': 0}, data_dir)
  splits = {tasks.make_task_pair({'kind': 'random_halves', 'dataset': 'mnist', 'split_seed': s}, data_dir)[0].classes
            for s in range(5)}
  assert len(splits) > 1


def test_task_labels_are_remapped_and_images_are_the_tasks_classes(data_dir):
  a, _ = tasks.make_task_pair({'kind': 'random_halves', 'dataset': 'digits', 'split_seed': 1}, data_dir)
  task = tasks.load_task(a, data_dir)
  x_all, y_all = data.load_split('digits', 'test', data_dir)
  x, y = task.test
  assert task.num_classes == 5 and set(np.unique(y)) == set(range(5))
  expected = np.isin(y_all, a.classes)
  np.testing.assert_array_equal(x, x_all[expected])
  np.testing.assert_array_equal(np.asarray(a.classes)[y], y_all[expected])  # label i is classes[i]


def test_k_shot_target_has_exactly_k_per_class_deterministically(data_dir):
  pair = {'kind': 'random_halves', 'dataset': 'digits', 'split_seed': 0, 'target_examples_per_class': 3}
  _, b = tasks.make_task_pair(pair, data_dir)
  assert b.name == 'digits_B0_k3' and b.examples_per_class == 3
  x, y = tasks.load_task(b, data_dir).train
  assert np.all(np.bincount(y) == 3)
  x2, _ = tasks.load_task(tasks.TaskSpec.from_dict(b.to_dict()), data_dir).train
  np.testing.assert_array_equal(x, x2)
  _, other = tasks.make_task_pair({**pair, 'sample_seed': 1}, data_dir)
  assert not np.array_equal(tasks.load_task(other, data_dir).train[0], x)
  # The test set is never subsampled.
  assert len(tasks.load_task(b, data_dir).test[1]) == len(tasks.load_task(
      tasks.TaskSpec(b.name[:-3], b.dataset, b.classes), data_dir).test[1])


def test_dissimilar_pair_of_data_sets(data_dir):
  a, b = tasks.make_task_pair({'kind': 'datasets', 'source': 'mnist', 'target': 'animal_mnist'}, data_dir)
  assert (a.name, b.name) == ('mnist', 'animal_mnist') and b.classes == tuple(range(10))
  assert tasks.load_task(b, data_dir).train[0].shape == (8000, 28, 28, 1)


def test_user_given_partition(data_dir):
  a, b = tasks.make_task_pair({'kind': 'partition', 'dataset': 'digits', 'classes_a': [7, 1],
                               'classes_b': [0, 6, 8], 'names': ['straight', 'round']}, data_dir)
  assert (a.name, a.classes, b.name, b.classes) == ('digits_straight', (1, 7), 'digits_round', (0, 6, 8))


@pytest.mark.parametrize('pair, message', [
    ({'kind': 'halves', 'dataset': 'mnist'}, "unknown task pair kind 'halves'"),
    ({'kind': 'random_halves', 'dataset': 'emnist'}, "unknown data set 'emnist'"),
    ({'kind': 'partition', 'dataset': 'digits', 'classes_a': [0, 1], 'classes_b': [1, 2]}, 'overlap in [1]'),
    ({'kind': 'partition', 'dataset': 'digits', 'classes_a': [0, 11], 'classes_b': [2]}, 'class count mismatch'),
    ({'kind': 'datasets', 'source': 'mnist', 'target': 'digits'}, 'different input shapes'),
    ({'kind': 'random_halves', 'dataset': 'digits', 'target_examples_per_class': 500}, 'not possible'),
    ({'kind': 'partition', 'dataset': 'digits', 'classes_a': [0]}, "needs the field 'classes_b'"),
])
def test_bad_pairs_are_one_line_user_errors(pair, message, data_dir):
  with pytest.raises(UserError, match=message.replace('[', r'\[').replace(']', r'\]')) as e:
    tasks.make_task_pair(pair, data_dir)
  assert '\n' not in str(e.value)
