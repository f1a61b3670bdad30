"""`transferbench reproduce yosinski2014` end to end on the tiny config (seconds)."""

import json

from transferbench.cli import main
from harness.results import load_curves

VERDICTS = {'reproduced', 'not reproduced', 'inconclusive'}


def test_reproduce_tiny_runs_checks_every_claim_and_reanalyses(data_dir, tmp_path, capsys):
  """The default sweep (yosinski2014_converged) shrunk: both directions, every base net's
  convergence printed and saved, the claims, the figures, then the same verdicts re-analysed."""
  results, out = tmp_path / 'res', tmp_path / 'out'
  argv = ['reproduce', 'yosinski2014', '--arg', 'tiny', '--results', str(results),
          '--data-dir', data_dir, '--no-progress']
  assert main(argv) == 0
  printed = capsys.readouterr().out
  # 2 pairs (MNIST halves, MNIST <-> animals) x 2 seeds x (2 base nets + 2 directions x 2 n x 5).
  assert '88 runs: 88 trained' in printed
  saved = json.loads((results / 'reproduce' / 'claims.json').read_text())
  claims = saved['claims']
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
  # Both directions: each target of each pair has its base nets, selffer and transfer runs.
  for pair, frame in curves.groupby('pair'):
    for condition in ('scratch', 'selffer', 'transfer', 'random_frozen'):
      assert frame.loc[frame.condition == condition, 'target'].nunique() == 2, (pair, condition)
  bases = saved['convergence']['base_nets']
  assert len(bases) == 2 * 2 * 2  # pairs x targets x seeds
  assert all(b['converged'] in (True, False) for b in bases)
  assert 'Convergence of the base nets' in printed and printed.count('mnist_A0|mnist_B0') >= 4
  coadaptation = claims[0]
  unconverged = not all(b['converged'] for b in bases if b['pair'] == 'mnist_A0|mnist_B0')
  assert (coadaptation['verdict_reason'] or '').startswith('base not converged') == unconverged
  assert coadaptation['verdict'] == 'inconclusive' or not unconverged
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


def test_the_converged_design_is_the_papers():
  """4 random splits and the dissimilar pair, both directions, 5 seeds, BnB, BnB+, AnB, AnB+ and
  random-frozen at every n = 1..7, a step-decay schedule."""
  import collections
  from harness import sweeps
  config = sweeps.load_sweep('yosinski2014_converged')
  kinds = collections.Counter(p['kind'] for p in config.pairs)
  assert kinds == {'random_halves': 4, 'datasets': 1}
  assert len({p.get('split_seed') for p in config.pairs if p['kind'] == 'random_halves'}) == 4
  assert set(config.directions) == {'AB', 'BA'} and config.seeds >= 5
  assert set(config.conditions) == {'selffer', 'transfer', 'random_frozen'}
  assert set(config.fine_tune) == {False, True} and not config.n_layers  # every n
  assert 0 < config.train.lr_decay_every < config.train.steps and config.train.lr_decay_factor < 1


def test_the_800_step_sweep_is_checked_too(data_dir, tmp_path, capsys):
  """yosinski2014_small (one direction, 800 steps) stays reachable: run it, then check it."""
  results = tmp_path / 'res'
  assert main(['run', 'yosinski2014_small', '--arg', 'tiny', '--results', str(results),
               '--data-dir', data_dir, '--no-progress']) == 0
  capsys.readouterr()
  assert main(['reproduce', 'yosinski2014', '--analyze-only', '--results', str(results),
               '--no-figures']) == 0
  claims = json.loads((results / 'reproduce' / 'claims.json').read_text())['claims']
  assert len(claims) == 4 and all(c['verdict'] in VERDICTS for c in claims)
  assert 'Convergence of the base nets' in capsys.readouterr().out
