"""What is being transferred (Neyshabur et al. 2020), part (a): claims and the tiny study."""

import json

import numpy as np
import pandas as pd
import pytest

from analysis import reproduce, what_transfers
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
  assert '12 runs: 12 trained' in capsys.readouterr().out
  claims = json.loads((results / 'reproduce' / 'claims.json').read_text())['claims']
  assert [c['claim'] for c in claims] == list(what_transfers.CLAIMS)
  assert all(c['verdict'] in ('reproduced', 'not reproduced', 'inconclusive') for c in claims)
  assert (results / 'reproduce' / 'what_transfers.png').is_file()
