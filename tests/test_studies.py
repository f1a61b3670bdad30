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
