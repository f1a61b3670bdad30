"""The records API that readers (analysis, notebooks) use: load_records, load_run, load_sweep_config."""

import numpy as np
import pytest

from harness import results, runs
from harness.errors import UserError


def _record(run_id, condition='scratch'):
  return {'run_id': run_id, 'status': 'complete', 'spec': {'condition': condition},
          'labels': {'seed': 0}, 'curve': []}


def test_load_run_reads_the_record_and_the_checkpoint_saved_by_the_harness(tmp_path):
  store = results.ResultsStore(tmp_path)
  store.write_record(_record('a'))
  record, variables = results.load_run(store.run_dir('a'))
  assert record['run_id'] == 'a' and variables is None          # no weights saved
  weights = {'params': {'dense': {'kernel': np.arange(6.0).reshape(2, 3)}}, 'batch_stats': {}}
  runs.save_checkpoint(store.checkpoint_dir('a'), weights, {'model': 'mlp'})
  _, variables = results.load_run(store.run_dir('a'))
  np.testing.assert_array_equal(variables['params']['dense']['kernel'], np.arange(6.0).reshape(2, 3))
  with pytest.raises(UserError, match='no run record'):
    results.load_run(tmp_path / 'runs' / 'missing')


def test_load_records_and_sweep_config(tmp_path):
  with pytest.raises(UserError, match='no results'):
    results.load_records(tmp_path)
  assert results.load_sweep_config(tmp_path) is None
  store = results.ResultsStore(tmp_path)
  for run_id in ('b', 'a'):
    store.write_record(_record(run_id))
  assert [r['run_id'] for r in results.load_records(tmp_path)] == ['a', 'b']
  results.atomic_write_json(tmp_path / 'sweep.json', {'config': {'data_dir': '/d'}, 'run_ids': []})
  assert results.load_sweep_config(tmp_path) == {'data_dir': '/d'}


def test_pair_kinds_are_recorded_by_the_sweep_and_read_without_building_tasks(data_dir, tmp_path,
                                                                               monkeypatch):
  """A sweep writes its pairs' kinds into sweep.json; load_curves's map then comes from there
  (no task is built), and a directory written before (no recorded kinds) is still read by
  rebuilding the tasks from its config."""
  import json
  from harness import runner, tasks
  from tests.test_sweeps import tiny_config
  config = tiny_config(data_dir)
  config.pairs = [dict(kind='random_halves', dataset='digits', split_seed=0),
                  dict(kind='partition', dataset='digits', classes_a=[0, 1], classes_b=[2, 3])]
  runner.prepare(config, tmp_path)
  expected = {'digits_A0|digits_B0': 'random_halves', 'digits_A|digits_B': 'dissimilar'}
  sweep_file = tmp_path / 'sweep.json'
  assert json.loads(sweep_file.read_text())['pair_kinds'] == expected

  def no_tasks(*args, **kwargs):
    raise AssertionError('load_curves built a task')

  with monkeypatch.context() as patched:
    patched.setattr(tasks, 'make_task_pair', no_tasks)
    assert results.pair_kinds(tmp_path) == expected
  older = json.loads(sweep_file.read_text())
  del older['pair_kinds']
  sweep_file.write_text(json.dumps(older))
  assert results.pair_kinds(tmp_path) == expected
