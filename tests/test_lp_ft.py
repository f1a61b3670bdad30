"""LP-FT (Kumar et al. 2022): feature distortion, claims, the tiny study and its bad input."""

import json

import numpy as np
import pandas as pd
import pytest

from analysis import lp_ft, reproduce
from transferbench.cli import main


def test_feature_distortion_against_a_hand_computed_value():
  features = np.array([[1.0, 2.0], [3.0, 4.0]])
  pretrained = np.array([[1.0, 0.0], [0.0, 4.0]])
  # Squared differences 0, 4, 9, 0: their mean over examples and units is 13 / 4.
  assert lp_ft.feature_distortion(features, pretrained) == pytest.approx(3.25)
  assert lp_ft.feature_distortion(pretrained, pretrained) == 0.0
  with pytest.raises(ValueError, match='feature shapes differ'):
    lp_ft.feature_distortion(features, pretrained[:1])


def _table(**means):
  """Five seeds; means per (method, column) with a little noise."""
  rng = np.random.default_rng(0)
  rows = []
  for seed in range(5):
    for method, values in means.items():
      rows.append({'seed': seed, 'method': method,
                   **{k: v + rng.normal(0, 0.002) for k, v in values.items()}})
  return pd.DataFrame(rows)


PAPER_LIKE = dict(  # Kumar et al.'s pattern: FT better ID, worse OOD; LP-FT the best of both
    LP=dict(id_accuracy=0.90, ood_accuracy=0.80, distortion_id=0.0, distortion_ood=0.0),
    FT=dict(id_accuracy=0.93, ood_accuracy=0.70, distortion_id=0.5, distortion_ood=0.4),
    **{'LP-FT': dict(id_accuracy=0.94, ood_accuracy=0.82, distortion_id=0.05, distortion_ood=0.04)})


def _verdicts(table):
  return {r.claim: r.verdict for r in reproduce.check_claims(table, lp_ft.CLAIMS)}


def test_claims_on_known_tables():
  assert set(_verdicts(_table(**PAPER_LIKE)).values()) == {reproduce.REPRODUCED}
  # FT better out of distribution too, and LP-FT two points below FT in distribution.
  other = {**PAPER_LIKE, 'FT': {**PAPER_LIKE['FT'], 'ood_accuracy': 0.85},
           'LP-FT': {**PAPER_LIKE['LP-FT'], 'id_accuracy': 0.91}}
  verdicts = _verdicts(_table(**other))
  assert verdicts['ft_worse_ood'] == verdicts['lp_ft_best_of_both'] == reproduce.NOT_REPRODUCED
  assert verdicts['ft_better_id'] == reproduce.REPRODUCED
  # An unconverged source network makes every claim inconclusive, whatever its parts say.
  source = pd.DataFrame([dict(pair='p', pair_kind='dissimilar', target='mnist@noise0.5', seed=0,
                              run_id='s', role='source', gain=0.01, converged=False)])
  gated = reproduce.check_claims(_table(**PAPER_LIKE), lp_ft.CLAIMS, convergence=source)
  assert {r.heading() for r in gated} == {'inconclusive: source not converged'}


def test_a_table_without_a_method_is_a_user_error():
  table = _table(**PAPER_LIKE)
  with pytest.raises(reproduce.UserError, match='has no LP-FT networks'):
    reproduce.check_claims(table[table['method'] != 'LP-FT'], lp_ft.CLAIMS)


def test_tiny_study_end_to_end(data_dir, tmp_path, capsys):
  results = tmp_path / 'res'
  argv = ['reproduce', 'lp_ft', '--arg', 'tiny', '--results', str(results), '--data-dir', data_dir,
          '--no-progress']
  assert main(argv) == 0
  printed = capsys.readouterr().out
  assert '2 runs: 2 trained' in printed  # the sweep: scratch on the target; then the sources
  assert 'Convergence of the base nets' in printed
  out = results / 'reproduce'
  table = pd.read_csv(out / 'networks.csv')
  assert sorted(zip(table['seed'], table['method'])) == sorted(
      (s, m) for s in (0, 1) for m in lp_ft.METHODS)
  assert table[['id_accuracy', 'ood_accuracy']].stack().between(0, 1).all()
  by_method = table.set_index(['method', 'seed'])
  assert by_method.loc[lp_ft.SCRATCH, ['distortion_id', 'distortion_ood']].isna().all().all()
  # LP trains the head alone: its penultimate features are the pretrained ones, exactly.
  assert (by_method.loc['LP', ['distortion_id', 'distortion_ood']] == 0).all().all()
  assert (by_method.loc['FT', ['distortion_id', 'distortion_ood']] > 0).all().all()
  saved = json.loads((out / 'claims.json').read_text())
  claims = saved['claims']
  assert [c['claim'] for c in claims] == list(lp_ft.CLAIMS)
  # The source networks are pre-trained with source_train (60 steps), scratch with train (30).
  bases = {(b['role'], b['final_step']) for b in saved['convergence']['base_nets']}
  assert bases == {('source', 60), ('baseline', 30)}
  unconverged = any(b['converged'] is False for b in saved['convergence']['base_nets']
                    if b['role'] == 'source')
  assert all((c['verdict_reason'] or '').startswith('source not converged') == unconverged
             for c in claims)
  assert {p.name for p in out.glob('id_vs_ood_accuracy.*')} == {
      'id_vs_ood_accuracy.png', 'id_vs_ood_accuracy.pdf', 'id_vs_ood_accuracy.caption.txt'}
  # The transfers are trained once, with their weights: a second call reuses them.
  records = [json.loads(p.read_text()) for p in (results / 'runs').glob('*/record.json')]
  assert len(records) == 10
  assert all((results / 'runs' / r['run_id'] / 'checkpoint' / 'meta.json').is_file()
             for r in records)
  assert main(argv + ['--analyze-only']) == 0
  pd.testing.assert_frame_equal(pd.read_csv(out / 'networks.csv'), table)


def test_results_of_another_study_are_refused(tmp_path, capsys):
  (tmp_path / 'sweep.json').write_text(json.dumps({'config': {'name': 'what_transfers_basins'}}))
  assert main(['reproduce', 'lp_ft', '--analyze-only', '--results', str(tmp_path)]) == 2
  err = capsys.readouterr().err.strip().splitlines()
  assert len(err) == 1 and err[0].startswith('transferbench: error:')
  assert "holds the sweep 'what_transfers_basins' (study 'what_transfers_basins')" in err[0]
  assert 'transferbench reproduce what_transfers_basins --results' in err[0]


def test_a_pair_without_an_ood_set_is_refused(tmp_path, capsys):
  argv = ['reproduce', 'lp_ft', '--arg', 'tiny', '--results', str(tmp_path / 'r'),
          '--analyze-only', "--config.pairs=[{'kind': 'datasets', 'source': 'digits@noise0.5', "
          "'target': 'digits'}]"]
  assert main(argv) == 2
  err = capsys.readouterr().err.strip().splitlines()
  assert len(err) == 1 and "needs one task pair with an 'ood' field" in err[0]


def test_an_ood_set_of_another_shape_is_refused(data_dir):
  from harness.errors import UserError
  from harness.tasks import TaskSpec
  from transferbench import lp_ft_pipeline
  target = TaskSpec('digits', 'digits', (5, 6, 7, 8, 9))
  with pytest.raises(UserError, match=r"ood='mnist1d' does not match the target digits .* "
                                      r"e.g. ood='digits@noise0.5'"):
    lp_ft_pipeline.ood_task(target, 'mnist1d', data_dir)
  shifted = lp_ft_pipeline.ood_task(target, 'digits@noise0.5', data_dir)
  assert (shifted.dataset, shifted.classes) == ('digits@noise0.5', target.classes)
