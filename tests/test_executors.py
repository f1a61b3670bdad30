"""Executor planning and flags (no cluster needed; tests/test_slurm.py submits to a real one)."""

import argparse

import pytest

from harness import executors, sweeps
from harness.errors import UserError


@pytest.fixture(scope='module')
def specs(data_dir):
  config = sweeps.load_sweep('quickstart', 'tiny')
  return sweeps.expand(sweeps.apply_overrides(config, [f'--config.data_dir={data_dir}']))


def test_phases_put_each_run_after_its_pending_source(specs):
  first, second = executors.phases(specs)
  assert {s.condition for s in first} == {'scratch', 'random_frozen'}
  assert {s.condition for s in second} == {'selffer', 'transfer'}
  assert len(first) + len(second) == len(specs) == 24
  # Sources complete already: their transfers need no wait, one phase.
  transfers = [s for s in specs if s.source_run]
  assert executors.phases(transfers) == [transfers]
  assert executors.phases([]) == []


def test_chunks_cover_runs_in_order(specs):
  groups = executors.chunks(specs, 5)
  assert [len(g) for g in groups] == [5, 5, 5, 5, 4]
  assert [s for g in groups for s in g] == specs
  with pytest.raises(UserError, match='runs_per_task is 0'):
    executors.chunks(specs, 0)


def test_sbatch_options_and_flags_reach_config_slurm():
  assert executors.sbatch_parameters(['qos=high', '--exclusive', 'mail-type=END']) == {
      'qos': 'high', 'exclusive': True, 'mail_type': 'END'}
  with pytest.raises(UserError, match='dependency is set by transferbench'):
    executors.sbatch_parameters(['dependency=afterok:1'])
  parser = argparse.ArgumentParser()
  executors.add_arguments(parser)
  args = parser.parse_args(['--executor', 'slurm', '--partition', 'gpu', '--time', '30', '--gpus', '2',
                            '--mem', '16', '--runs-per-task', '4', '--sbatch', 'qos=high'])
  config = executors.apply_arguments(sweeps.load_sweep('quickstart', 'tiny'), args)
  assert config.executor == 'slurm'
  slurm = config.slurm
  assert (slurm.partition, slurm.time_min, slurm.gpus_per_node, slurm.mem_gb, slurm.runs_per_task,
          tuple(slurm.sbatch)) == ('gpu', 30, 2, 16.0, 4, ('qos=high',))
  params = executors.slurm_parameters(slurm, tasks=3)
  assert params['slurm_partition'] == 'gpu' and params['gpus_per_node'] == 2
  assert params['timeout_min'] == 30 and params['slurm_array_parallelism'] == 3  # 0: no limit
  assert params['slurm_additional_parameters'] == {'qos': 'high'}
  with pytest.raises(UserError, match="unknown executor 'k8s'"):
    executors.get('k8s')


def test_dependency_type_is_afterany_by_default_afterok_on_request():
  config = sweeps.load_sweep('quickstart', 'tiny')
  assert executors.dependency_type(config.slurm) == 'afterany'
  config.slurm.dependency = 'afterok'
  assert executors.dependency_type(config.slurm) == 'afterok'
  config.slurm.dependency = 'after'
  with pytest.raises(UserError, match="dependency='after' is not supported"):
    executors.dependency_type(config.slurm)
