"""The table of studies behind `transferbench reproduce STUDY`: listing and bad input."""

import json

import pytest

from analysis import studies
from transferbench.cli import main


def test_help_lists_every_study(capsys):
  with pytest.raises(SystemExit):
    main(['reproduce', '--help'])
  printed = capsys.readouterr().out
  for name, study in studies.STUDIES.items():
    assert f'{name}: {study.title}' in printed


def test_unknown_study_is_one_line_error(capsys):
  assert main(['reproduce', 'nosuchstudy', '--analyze-only']) == 2
  err = capsys.readouterr().err.strip().splitlines()
  assert len(err) == 1 and err[0].startswith("transferbench: error: unknown study 'nosuchstudy'")
  assert 'yosinski2014' in err[0]


def test_results_of_another_sweep_are_refused(tmp_path, capsys):
  (tmp_path / 'sweep.json').write_text(json.dumps({'config': {'name': 'quickstart'}}))
  assert main(['reproduce', 'yosinski2014', '--analyze-only', '--results', str(tmp_path)]) == 2
  err = capsys.readouterr().err.strip().splitlines()
  assert len(err) == 1 and "holds the sweep 'quickstart'" in err[0]
  assert "not 'yosinski2014_converged' of study 'yosinski2014'" in err[0]


def test_owner_of_a_sweep_names_the_command_to_run():
  owners = {'a': {'a_sweep', 'a_sweep_tiny'}, 'b': {'b_sweep'}}
  assert studies.study_of_sweep('a_sweep_tiny', owners) == 'a'
  assert studies.study_of_sweep('other', owners) is None
  with pytest.raises(studies.UserError, match=r'run `transferbench reproduce a --results R`'):
    studies.check_results_belong('R', 'a_sweep', 'b_sweep', 'b', 'a')
  studies.check_results_belong('R', None, 'b_sweep', 'b', None)  # no sweep.json yet: accepted


def test_the_ownership_check_loads_each_sweep_file_once(tmp_path, monkeypatch):
  """Refusing a directory asks every study for its sweeps' names: each sweep file is loaded once
  per process, not once per check."""
  from harness import sweeps
  from transferbench import reproduce_command
  loads = []
  real = sweeps.load_sweep
  monkeypatch.setattr(sweeps, 'load_sweep',
                      lambda sweep, arg=None: loads.append((sweep, arg)) or real(sweep, arg))
  reproduce_command._config_name.cache_clear()
  (tmp_path / 'sweep.json').write_text(json.dumps({'config': {'name': 'quickstart'}}))
  for _ in range(2):
    with pytest.raises(studies.UserError, match="holds the sweep 'quickstart'"):
      reproduce_command._check_owner(tmp_path, 'criticality_small', 'criticality')
  owned = {(s, arg) for study in studies.STUDIES.values() for s in (study.sweep, *study.also)
           for arg in (None, 'tiny')}
  assert len(loads) == len(owned) and set(loads) == owned  # each once, over two checks
  reproduce_command._config_name.cache_clear()


def test_every_study_ships_its_published_comparator_with_provenance():
  """Each study names a file under results/reference/ that PROVENANCE.md describes."""
  import pathlib
  reference = pathlib.Path(__file__).resolve().parents[1] / 'results' / 'reference'
  provenance = (reference / 'PROVENANCE.md').read_text()
  for name, study in studies.STUDIES.items():
    assert study.reference, f'{name} has no published comparator'
    files = sorted(p.name for p in reference.glob(f'{study.reference}_*'))
    assert files, f'{name}: no results/reference/{study.reference}_* file'
    assert any(f'`{f}`' in provenance for f in files), f'{name}: {files} not in PROVENANCE.md'
