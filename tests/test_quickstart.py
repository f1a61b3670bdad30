"""The quickstart sweep file, shrunk (get_config('tiny')), through the real CLI end to end."""

import json

import pandas as pd
import pytest

from harness import load_curves
from transferbench.cli import main


def test_quickstart_tiny_runs_end_to_end(data_dir, tmp_path, capsys):
  results = tmp_path / 'quickstart'
  code = main(['run', 'quickstart', '--arg', 'tiny', '--results', str(results),
               '--data-dir', data_dir, '--no-progress'])
  out = capsys.readouterr().out
  assert code == 0
  # 2 seeds x (baseA, baseB + n in {1, 2} x (BnB, BnB+, AnB, AnB+, random)) = 24 runs.
  assert '24 runs: 24 trained, 0 already complete, 0 failed' in out
  table = [line for line in out.splitlines() if line.startswith(('scratch', 'selffer', 'transfer', 'random'))]
  assert len(table) == 2 + 2 * 5  # one line per condition, fine-tuning and n
  assert any(line.startswith('transfer+') and 'mnist_A0 -> mnist_B0' in line for line in table)
  curves = load_curves(results)
  assert curves.run_id.nunique() == 24 and (curves.groupby('run_id').step.min() == 0).all()

  # Re-running skips everything and keeps the provenance of the call that trained; then the
  # analysis writes its tables and figures.
  execution = (results / 'execution.json').read_bytes()
  assert json.loads(execution)['runs_ran'] == 24
  assert main(['run', 'quickstart', '--arg', 'tiny', '--results', str(results),
               '--data-dir', data_dir, '--no-progress']) == 0
  assert '0 trained, 24 already complete' in capsys.readouterr().out
  assert (results / 'execution.json').read_bytes() == execution
  assert len((results / 'executions.jsonl').read_text().splitlines()) == 1
  assert main(['analyze', str(results), '--k', '3', '--n-boot', '200']) == 0
  summary = pd.read_csv(results / 'analysis' / 'summary.csv')
  assert {'transfer', 'selffer', 'random_frozen'} <= set(summary.condition)
  assert (results / 'analysis' / 'figures' / 'fig2_accuracy_vs_n.png').stat().st_size > 10_000

  # Another budget in the same directory: rows of their own, never averaged with the first.
  capsys.readouterr()
  assert main(['run', 'quickstart', '--arg', 'tiny', '--results', str(results), '--data-dir',
               data_dir, '--no-progress', '--config.train.steps=10', '--config.seeds=1']) == 0
  out = capsys.readouterr().out
  assert '12 runs: 12 trained, 0 already complete' in out
  table = out.split('t-distribution):\n')[1].splitlines()
  assert table[0].startswith('config          condition')
  assert sum(line.startswith('train.steps=10  ') for line in table) == 12
  assert sum(line.startswith('train.steps=20  ') for line in table) == 12
  curves = load_curves(results)
  assert curves.groupby('config').run_id.nunique().to_dict() == {'train.steps=10': 12,
                                                                 'train.steps=20': 24}
  assert len((results / 'executions.jsonl').read_text().splitlines()) == 2


@pytest.mark.slow
def test_full_quickstart_shows_specificity_and_the_fine_tuning_recovery(data_dir, tmp_path):
  """The documented expectations of sweeps/quickstart.py, checked with the analysis' verdicts."""
  import analysis
  from analysis import measures
  results = tmp_path / 'quickstart'
  assert main(['run', 'quickstart', '--results', str(results), '--data-dir', data_dir,
               '--no-progress']) == 0
  curves = load_curves(results)
  table = analysis.final_accuracy_table(curves, rule='last')
  mean = lambda cond, ft, n: table[(table.condition == cond) & (table.fine_tuned == ft)
                                   & (table.n_layers == n)]['mean'].item()
  transfer = [mean('transfer', False, n) for n in (1, 2, 3)]
  random = [mean('random_frozen', False, n) for n in (1, 2, 3)]
  assert transfer[0] > transfer[1] > transfer[2] and random[0] > random[1] > random[2]
  assert random[2] < transfer[2]
  summary = analysis.analyze(curves, n_boot=2000).summary  # default rule: mean of the last 5
  final = summary[summary.measure == f'final_{measures.DEFAULT_RULE}']
  verdict = lambda cond, ft, n: final[(final.condition == cond) & (final.fine_tuned == ft)
                                      & (final.n_layers == n)]['verdict'].item()
  assert verdict('transfer', False, 3) == 'negative' and verdict('random_frozen', False, 3) == 'negative'
  assert all(verdict('transfer', True, n) != 'negative' for n in (1, 2, 3))
