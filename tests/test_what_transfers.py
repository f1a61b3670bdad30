"""What is being transferred (Neyshabur et al. 2020), part (a): claims and the tiny study."""

import json

import numpy as np
import pandas as pd
import pytest

from analysis import reproduce, what_transfers
from harness import conditions, sweeps
from harness.errors import UserError
from transferbench.cli import main


def _rel(benefit_by_block, seeds=4, sd=0.003):
  rng = np.random.default_rng(0)
  rows = [dict(label='reinit-head', target=f'animal_mnist@block{b}', seed=s,
               rel=1 + m + rng.normal(0, sd)) for b, m in benefit_by_block.items()
          for s in range(seeds)]
  return pd.DataFrame(rows)


def _verdicts(rel):
  return {r.claim: r.verdict for r in reproduce.check_claims(rel, what_transfers.CLAIMS)}


def test_claims_on_known_tables():
  paper_like = _rel({28: 0.08, 7: 0.05, 4: 0.03, 1: 0.02})
  assert _verdicts(paper_like) == {'benefit_survives_shuffling': 'reproduced',
                                   'benefit_falls_with_smaller_blocks': 'reproduced'}
  table = what_transfers.benefits(paper_like)
  assert list(table.columns) == [1, 4, 7, 28] and table[28].mean() == pytest.approx(0.08, abs=0.005)
  gone = _rel({28: 0.08, 7: 0.0, 4: -0.02, 1: -0.05})
  assert _verdicts(gone)['benefit_survives_shuffling'] == 'not reproduced'
  with pytest.raises(UserError, match='not block-shuffled'):
    what_transfers.benefits(_rel({28: 0.1}).assign(target='animal_mnist'))


def test_tiny_study_end_to_end(data_dir, tmp_path, capsys):
  results = tmp_path / 'res'
  assert main(['reproduce', 'what_transfers', '--arg', 'tiny', '--results', str(results),
               '--data-dir', data_dir, '--no-progress']) == 0
  assert '10 runs: 10 trained' in capsys.readouterr().out  # 2 sources + 2 pairs x 2 seeds x 2
  claims = json.loads((results / 'reproduce' / 'claims.json').read_text())['claims']
  assert [c['claim'] for c in claims] == list(what_transfers.CLAIMS)
  assert all(c['verdict'] in ('reproduced', 'not reproduced', 'inconclusive') for c in claims)
  assert (results / 'reproduce' / 'what_transfers.png').is_file()


def _tiny(data_dir, **changes):
  config = sweeps.load_sweep('what_transfers_small', 'tiny').copy_and_resolve_references()
  config.data_dir = str(data_dir)
  for key, value in changes.items():
    config[key] = value
  return config


def test_one_source_network_per_seed_serves_every_block_size(data_dir):
  """The MNIST source of a seed is one run whatever target it serves: the pairs of the sweep share
  it, and a sweep with only one of the pairs names the same run (its id and initial-weights key
  depend on the source task and seed, not on the pair)."""
  specs = sweeps.expand(_tiny(data_dir))
  transfers = [s for s in specs if s.condition == conditions.REINIT_HEAD]
  sources = {s.run_id: s for s in specs
             if s.condition == conditions.BASE and s.target.name == 'mnist'}
  assert len(specs) == 10 and len(transfers) == 4 and len(sources) == 2
  assert {s.source_run for s in transfers} == set(sources)
  for spec in transfers:
    assert sources[spec.source_run].seed == spec.seed
  assert {s.pair for s in sources.values()} == {'mnist'}
  config = _tiny(data_dir)
  alone = [sweeps.expand(_tiny(data_dir, pairs=[pair])) for pair in config.pairs]
  for one in alone:
    assert {s.run_id for s in one if s.target.name == 'mnist'} == set(sources)
  # Each pair training its own source (the default) costs one more network per pair and seed.
  assert len(sweeps.expand(_tiny(data_dir, shared_sources=False))) == 12


def test_shared_source_starts_from_its_task_and_seed_alone(data_dir):
  """The shared source of seed 0 starts from the same weights whichever pair's sweep builds it,
  and from other weights than a source of the same seed trained for one pair only."""
  from harness import models, runs
  model = models.build_model('mlp', 10, hidden=(16, 16))

  def source_init(**changes):
    spec = next(s for s in sweeps.expand(_tiny(data_dir, **changes))
                if s.condition == conditions.BASE and s.target.name == 'mnist' and s.seed == 0)
    variables = runs.starting_variables(spec, model, (28, 28, 1), store=None)
    return variables['params']['layer1']['kernel']

  pairs = _tiny(data_dir).pairs
  first, last = source_init(pairs=[pairs[0]]), source_init(pairs=[pairs[-1]])
  np.testing.assert_array_equal(first, last)
  assert not np.allclose(first, source_init(pairs=[pairs[0]], shared_sources=False))


def test_shared_sources_with_both_directions_is_a_user_error(data_dir):
  config = _tiny(data_dir, directions=('AB', 'BA'))
  config.pairs = [dict(kind='datasets', source='mnist', target='animal_mnist')]
  with pytest.raises(UserError, match="directions=\\('AB',\\)"):
    sweeps.expand(config)
