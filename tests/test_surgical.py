"""Surgical fine-tuning (Lee et al. 2023): claims on known tables, the tiny study, bad input."""

import json

import numpy as np
import pandas as pd
import pytest

from analysis import reproduce, surgical
from harness import conditions
from harness.errors import UserError
from transferbench.cli import main

SURGICAL = conditions.label(conditions.SURGICAL, False)
FULL = conditions.label(conditions.FULL_FINETUNE, False)


def _rel(profiles, seeds=5, sd=0.004):
  """rel rows: target -> (rel of tuning layer k = 1..L, rel of full fine-tuning), plus noise."""
  rng = np.random.default_rng(0)
  rows = []
  for target, (layers, full) in profiles.items():
    for s in range(seeds):
      rows += [dict(target=target, seed=s, label=SURGICAL, n_layers=k, rel=m + rng.normal(0, sd),
                    score=0.9 * m, base=0.9) for k, m in enumerate(layers, 1)]
      rows.append(dict(target=target, seed=s, label=FULL, n_layers=len(layers),
                       rel=full + rng.normal(0, sd), score=0.9 * full, base=0.9))
  return pd.DataFrame(rows)


PAPER_LIKE = {'mnist@noise0.5_k20': ([1.20, 1.10, 1.05, 1.00], 1.15),
              'mnist@subpop1_k20': ([1.00, 1.08, 1.12, 1.02], 1.10),
              'mnist@labelperm_k20': ([0.80, 0.90, 1.00, 1.30], 1.25)}


def _verdicts(rel):
  return {r.claim: r.verdict for r in reproduce.check_claims(rel, surgical.CLAIMS)}


def test_claims_on_known_tables():
  assert _verdicts(_rel(PAPER_LIKE)) == {'best_layer_matches_full_ft': 'reproduced',
                                         'best_layer_follows_the_shift': 'reproduced'}
  # Full fine-tuning far ahead on one shift, and the last layer best under input noise.
  wrong = dict(PAPER_LIKE, **{'mnist@noise0.5_k20': ([1.00, 1.02, 1.05, 1.10], 1.30)})
  assert _verdicts(_rel(wrong)) == {'best_layer_matches_full_ft': 'not reproduced',
                                    'best_layer_follows_the_shift': 'not reproduced'}
  # An unconverged source network makes both claims inconclusive, whatever their parts say.
  source = pd.DataFrame([dict(pair='mnist', pair_kind='dissimilar', target='mnist', seed=0,
                              run_id='s', role='source', gain=0.01, converged=False)])
  gated = reproduce.check_claims(_rel(PAPER_LIKE), surgical.CLAIMS, convergence=source)
  assert [r.heading() for r in gated] == ['inconclusive: source not converged'] * 2
  flat = {t: ([1.0] * 4, 1.0) for t in PAPER_LIKE}  # no differences: nothing is established
  results = reproduce.check_claims(_rel(flat, sd=0.01), surgical.CLAIMS)
  assert results[1].verdict == 'inconclusive'


def test_the_layer_is_chosen_on_the_other_seeds():
  table = pd.DataFrame({1: [0.9, 0.5, 0.5], 2: [0.1, 0.6, 0.7], 3: [0.0, 0.0, 0.0]},
                       index=pd.Index([0, 1, 2], name='seed'))
  # Seed 0: the others' means 0.5 (k=1) vs 0.65 (k=2) -> 2; seed 1: 0.7 vs 0.4 -> 1;
  # seed 2: 0.7 vs 0.35 -> 1.
  assert surgical.loso_best(table, [1, 2]).to_dict() == {0: 2, 1: 1, 2: 1}
  part = surgical.beats_every_other(table, (1, 2), 'feature', reproduce.Settings())
  # k* per seed: 2, 1, 1 -> rel(k*) = 0.1, 0.5, 0.5; minus layer 3 (0.0): mean 0.3667.
  assert part.estimate == pytest.approx((0.1 + 0.5 + 0.5) / 3) and part.n == 3


def test_a_model_without_middle_layers_leaves_the_feature_level_part_untested():
  two_layers = {'mnist@subpop1_k20': ([1.00, 1.02], 1.01)}  # L = 2: no layer between 1 and L
  part = surgical.claim_follows(_rel(two_layers), reproduce.Settings())[0]
  assert np.isnan(part.p_value) and 'needs the layers []' in part.note


def test_levels_and_predicted_layers():
  assert [surgical.level(t) for t in ('mnist@blur1.5_k20', 'mnist@subpop1', 'digits@labelperm')] \
      == [surgical.INPUT, surgical.FEATURE, surgical.OUTPUT]
  assert [surgical.PREDICTED[lv](4) for lv in (surgical.INPUT, surgical.FEATURE, surgical.OUTPUT)] \
      == [(1,), (2, 3), (4,)]
  with pytest.raises(UserError, match="target 'mnist_k20' is not a shifted data set"):
    surgical.tables(_rel({'mnist_k20': ([1.0, 1.0], 1.0)}))
  with pytest.raises(UserError, match='needs the conditions surgical and full_finetune'):
    surgical.tables(_rel(PAPER_LIKE).query('label != @FULL'))


def test_tiny_study_end_to_end(data_dir, tmp_path, capsys):
  results = tmp_path / 'res'
  assert main(['reproduce', 'surgical_finetuning', '--arg', 'tiny', '--results', str(results),
               '--data-dir', data_dir, '--no-progress']) == 0
  # 2 seeds x (one source shared by both shifts + 2 shifts x (scratch on the target, surgical
  # k = 1..3, full fine-tuning)).
  printed = capsys.readouterr().out
  assert '22 runs: 22 trained' in printed and 'Convergence of the base nets' in printed
  saved = json.loads((results / 'reproduce' / 'claims.json').read_text())
  claims = saved['claims']
  assert [c['claim'] for c in claims] == list(surgical.CLAIMS)
  # The sources are pre-trained with source_train (40 steps), the rest with train (20).
  sources = [b for b in saved['convergence']['base_nets'] if b['role'] == 'source']
  assert [(b['target'], b['final_step']) for b in sources] == [('digits', 40)] * 2
  unconverged = any(b['converged'] is False for b in sources)
  assert all((c['verdict_reason'] or '').startswith('source not converged') == unconverged
             for c in claims)
  assert all(c['verdict'] in ('reproduced', 'not reproduced', 'inconclusive') for c in claims)
  for suffix in ('png', 'pdf', 'caption.txt'):
    assert (results / 'reproduce' / f'surgical_finetuning.{suffix}').is_file()
  # The results of this study are refused by another study, in one line naming the fix.
  assert main(['reproduce', 'what_transfers', '--analyze-only', '--results', str(results)]) == 2
  err = capsys.readouterr().err.strip().splitlines()
  assert len(err) == 1 and err[0].startswith('transferbench: error: ')
  assert f'run `transferbench reproduce surgical_finetuning --results {results}`' in err[0]


def test_results_of_another_study_are_refused(tmp_path, capsys):
  (tmp_path / 'sweep.json').write_text(json.dumps({'config': {'name': 'what_transfers_small'}}))
  assert main(['reproduce', 'surgical_finetuning', '--analyze-only', '--results',
               str(tmp_path)]) == 2
  err = capsys.readouterr().err.strip().splitlines()
  assert len(err) == 1
  assert "holds the sweep 'what_transfers_small' (study 'what_transfers')" in err[0]
  assert 'run `transferbench reproduce what_transfers' in err[0]
