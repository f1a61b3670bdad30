"""`transferbench reproduce yosinski2014` end to end on the tiny config (seconds)."""

import json

from transferbench.cli import main
from harness.results import load_curves

VERDICTS = {'reproduced', 'not reproduced', 'inconclusive'}


def test_reproduce_tiny_runs_checks_every_claim_and_reanalyses(data_dir, tmp_path, capsys):
  results, out = tmp_path / 'res', tmp_path / 'out'
  argv = ['reproduce', 'yosinski2014', '--arg', 'tiny', '--results', str(results),
          '--data-dir', data_dir, '--no-progress']
  assert main(argv) == 0
  printed = capsys.readouterr().out
  # 2 pairs (MNIST halves, MNIST -> animals) x 2 seeds x (2 base nets + 2 n x 5 conditions).
  assert '48 runs: 48 trained' in printed
  claims = json.loads((results / 'reproduce' / 'claims.json').read_text())['claims']
  assert [c['claim'] for c in claims] == ['fragile_coadaptation', 'specificity',
                                          'fine_tuning_boost', 'random_features']
  assert all(c['verdict'] in VERDICTS and c['parts'] for c in claims)
  for name in ('claims.md', 'reproduced_vs_published.png', 'fig2_relative_per_pair.pdf'):
    assert (results / 'reproduce' / name).is_file()
  curves = load_curves(results)
  assert set(curves['pair']) == {'mnist_A0|mnist_B0', 'mnist|animal_mnist'}
  # The kind of each pair comes from the sweep (random_halves; datasets -> dissimilar).
  assert dict(curves.groupby('pair')['pair_kind'].first()) == {
      'mnist_A0|mnist_B0': 'random_halves', 'mnist|animal_mnist': 'dissimilar'}
  # Analyse only: nothing is trained, the same verdicts come out.
  assert main(argv + ['--analyze-only', '--out', str(out), '--no-figures']) == 0
  assert 'trained' not in capsys.readouterr().out
  again = json.loads((out / 'claims.json').read_text())['claims']
  assert [c['verdict'] for c in again] == [c['verdict'] for c in claims]
  assert not (out / 'reproduced_vs_published.png').exists()


def test_reproduce_user_errors(tmp_path, capsys):
  assert main(['reproduce', 'yosinski2014', '--analyze-only', '--results', str(tmp_path / 'none')]) == 2
  assert 'no results directory' in capsys.readouterr().err
  assert main(['reproduce', 'yosinski2014', '--analyze-only', '--results', str(tmp_path),
               '--config.nope=1']) == 2
  assert "unknown config field 'nope'" in capsys.readouterr().err
  assert main(['reproduce', 'yosinski2014', '--curves', str(tmp_path / 'none.csv')]) == 2
  assert 'no such file or directory' in capsys.readouterr().err
  assert main(['reproduce', 'yosinski2014', '--curves', 'x.csv', '--analyze-only']) == 2
  assert '--curves reads a curves file' in capsys.readouterr().err
