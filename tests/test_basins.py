"""What is being transferred (Neyshabur et al. 2020), parts (b, c): claims and the tiny study."""

import json

import numpy as np
import pandas as pd

from analysis import basins, reproduce
from transferbench.cli import main


def _table(**means):
  rng = np.random.default_rng(0)
  return pd.DataFrame([{'replicate': r, **{k: v + rng.normal(0, 0.002) for k, v in means.items()}}
                       for r in range(4)])


def _verdicts(table):
  return {r.claim: r.verdict for r in reproduce.check_claims(table, basins.CLAIMS)}


def test_claims_on_known_tables():
  paper_like = _table(barrier_ft=0.0, barrier_scratch=0.4, distance_ft=0.1, distance_scratch=0.6,
                      cka_ft=0.95, cka_scratch=0.5)
  assert _verdicts(paper_like) == {'one_basin': 'reproduced', 'stay_close': 'reproduced'}
  # A barrier of 0.3 nats between the fine-tuned pair: not one basin, though lower than scratch.
  ridge = paper_like.assign(barrier_ft=0.3)
  assert _verdicts(ridge)['one_basin'] == 'not reproduced'


def test_tiny_study_end_to_end(data_dir, tmp_path, capsys):
  results = tmp_path / 'res'
  argv = ['reproduce', 'what_transfers_basins', '--arg', 'tiny', '--results', str(results),
          '--data-dir', data_dir, '--no-progress']
  assert main(argv) == 0
  assert '8 runs: 8 trained' in capsys.readouterr().out
  table = pd.read_csv(results / 'reproduce' / 'basins.csv')
  assert list(table['replicate']) == [0, 1] and set(basins.COLUMNS) <= set(table.columns)
  assert (table[['cka_ft', 'cka_scratch']].to_numpy() <= 1 + 1e-9).all()
  claims = json.loads((results / 'reproduce' / 'claims.json').read_text())['claims']
  assert [c['claim'] for c in claims] == list(basins.CLAIMS)
  # The fine-tuned networks are trained once, with their weights: a second call reuses them.
  fine_tuned = [d for d in (results / 'runs').iterdir()
                if json.loads((d / 'record.json').read_text())['spec']['condition'] == 'reinit_head']
  assert len(fine_tuned) == 4 and all((d / 'checkpoint' / 'meta.json').is_file() for d in fine_tuned)
  assert main(argv + ['--analyze-only']) == 0
  again = pd.read_csv(results / 'reproduce' / 'basins.csv')
  pd.testing.assert_frame_equal(again, table)
