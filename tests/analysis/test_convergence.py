"""Convergence of the base nets, and its effect on the fragile co-adaptation verdict."""

import json

import numpy as np
import pandas as pd
import pytest

from analysis import convergence, reproduce, studies
from analysis.reproduce import INCONCLUSIVE, NOT_REPRODUCED, REPRODUCED
from tests.analysis.builders import PAPER_LIKE, claim_runs, run_rows

SETTINGS = reproduce.Settings(rule='best_k', k=10)
CO_ADAPTATION = 'fragile_coadaptation'


def base_curve(run_id, pair, kind, target, seed, steps, accuracy):
  return run_rows(run_id, 'scratch', 0, False, 'none', target, seed, steps, accuracy, pair=pair,
                  pair_kind=kind)


def test_the_gain_is_read_at_the_last_evaluation_at_or_before_80_percent():
  rows = (base_curve('flat', 'A|B', 'random_halves', 'B', 0, [0, 25, 50, 75, 90],
                     [0.1, 0.9, 0.95, 0.951, 0.9515])
          # 0.8 x 90 = 72: read at step 50 (0.95), so the gain is 0.96 - 0.95 = 0.01.
          + base_curve('rising', 'A|B', 'random_halves', 'A', 0, [0, 25, 50, 75, 90],
                       [0.1, 0.9, 0.95, 0.955, 0.96])
          + base_curve('once', 'A|B', 'random_halves', 'A', 1, [90], [0.9]))
  table = convergence.base_convergence(pd.DataFrame(rows)).set_index('run_id')
  assert table.loc['flat', 'step_at_fraction'] == 50
  assert table.loc['flat', 'gain'] == pytest.approx(0.0015)
  assert table.loc['flat', 'converged'] is True
  assert table.loc['rising', 'gain'] == pytest.approx(0.01)
  assert table.loc['rising', 'converged'] is False
  assert table.loc['once', 'converged'] is None  # one evaluation: cannot be checked
  # The tolerance is the rule's: a looser one accepts the rising net.
  loose = convergence.base_convergence(pd.DataFrame(rows), convergence.Rule(tolerance=0.02))
  assert loose.set_index('run_id').loc['rising', 'converged'] is True


def _convergence(random_halves_gain: float, dissimilar_gain: float = 0.0) -> pd.DataFrame:
  """A convergence table of claim_runs' base nets: one random-halves net (split 0, seed 0) gains
  ``random_halves_gain`` over its last 20%, one dissimilar net ``dissimilar_gain``, the others 0."""
  steps, rows = np.arange(0, 110, 10), []
  for pair, kind in {'A0|B0': 'random_halves', 'A1|B1': 'random_halves',
                     'M|N': 'dissimilar'}.items():
    target = pair.split('|')[1]
    for seed in range(5):
      gain = {('A0|B0', 0): random_halves_gain, ('M|N', 0): dissimilar_gain}.get((pair, seed), 0)
      accuracy = np.where(steps < 100, 0.9, 0.9 + gain)
      rows += base_curve(f'base{target}_{seed}', pair, kind, target, seed, steps, accuracy)
  return convergence.base_convergence(pd.DataFrame(rows))


def _verdicts(levels, table):
  runs, _ = claim_runs(levels)
  rel = reproduce.relative_scores(runs)
  return {r.claim: r for r in reproduce.check_claims(rel, reproduce.YOSINSKI2014_CLAIMS, SETTINGS,
                                                     table)}


@pytest.mark.parametrize('levels, converged_verdict', [
    ({**PAPER_LIKE, 'BnB': lambda n, g: 1.01}, NOT_REPRODUCED),  # BnB above base everywhere
    (PAPER_LIKE, REPRODUCED),
])
def test_an_unconverged_base_makes_co_adaptation_inconclusive(levels, converged_verdict):
  converged = _verdicts(levels, _convergence(0.0))
  assert converged[CO_ADAPTATION].verdict == converged_verdict
  assert converged[CO_ADAPTATION].note == ''
  unconverged = _verdicts(levels, _convergence(0.01))[CO_ADAPTATION]
  assert unconverged.verdict == INCONCLUSIVE
  assert unconverged.heading() == 'inconclusive: base not converged'
  assert '1 of 10 base nets' in unconverged.note and '+0.0100' in unconverged.note
  # The parts keep their own verdicts: the evidence is still shown.
  assert [p.verdict for p in unconverged.parts] == [p.verdict for p in converged[CO_ADAPTATION].parts]


def test_only_co_adaptation_and_only_random_halves_bases_are_checked():
  levels = {**PAPER_LIKE, 'BnB': lambda n, g: 1.01}
  # An unconverged dissimilar base does not touch claim 1 (it reads the random halves only).
  assert _verdicts(levels, _convergence(0.0, 0.05))[CO_ADAPTATION].verdict == NOT_REPRODUCED
  others = _verdicts(PAPER_LIKE, _convergence(0.05))
  assert all(others[c].verdict == REPRODUCED and not others[c].note
             for c in ('specificity', 'fine_tuning_boost', 'random_features'))
  # A gain just below the tolerance is converged (the rule is strict: gain < tolerance).
  assert _verdicts(levels, _convergence(0.0019))[CO_ADAPTATION].verdict == NOT_REPRODUCED


def _curves(base_gain: float) -> pd.DataFrame:
  """claim_runs as curves: every run flat at its score after step 0, except the base nets, which
  gain ``base_gain`` at their last evaluation (the score rule 'last' reads that evaluation)."""
  runs, _ = claim_runs({**PAPER_LIKE, 'BnB': lambda n, g: 1.01})
  steps, rows = np.arange(0, 110, 10), []
  for run in runs.itertuples():
    gain = base_gain if run.condition == 'scratch' else 0.0
    accuracy = np.r_[0.1, np.full(9, run.score - gain), run.score]
    rows += run_rows(run.run_id, run.condition, run.n_layers, run.fine_tuned, run.source,
                     run.target, run.seed, steps, accuracy, pair=run.pair,
                     pair_kind=run.pair_kind)
  return pd.DataFrame(rows)


@pytest.mark.parametrize('gain, verdict, heading', [
    (0.0, NOT_REPRODUCED, 'not reproduced'),
    (0.01, INCONCLUSIVE, 'inconclusive: base not converged')])
def test_reproduce_writes_the_convergence_of_every_base_net(gain, verdict, heading, tmp_path):
  settings = reproduce.Settings(rule='last')
  study = studies.STUDIES['yosinski2014']
  results, _, _, table, _ = reproduce.reproduce_curves(_curves(gain), study, settings, tmp_path,
                                                       draw=False)
  assert len(table) == 15 and table['converged'].tolist() == [gain == 0.0] * 15
  saved = json.loads((tmp_path / 'claims.json').read_text())
  assert len(saved['convergence']['base_nets']) == 15
  assert saved['convergence']['base_nets'][0]['gain'] == pytest.approx(gain)
  assert 'below 0.002' in saved['convergence']['rule']
  claim = {c['claim']: c for c in saved['claims']}[CO_ADAPTATION]
  assert claim['verdict'] == verdict
  markdown = (tmp_path / 'claims.md').read_text()
  assert f'**{heading}**' in markdown
  done = 1 if gain == 0 else 0
  assert f'Base nets converged: dissimilar {5 * done} of 5, random_halves {10 * done} of 10' in markdown
  printed = reproduce.claims_text(results) + convergence.text(table, settings.convergence_rule())
  assert f'[{heading.upper()}] {CO_ADAPTATION}' in printed
  assert printed.count('  NO' if gain else '  yes') == 15
  assert f'converged: dissimilar {5 * done} of 5, random_halves {10 * done} of 10:' in printed


def test_a_base_net_that_a_run_copies_from_is_a_source_and_gates_its_claims():
  steps = [0, 50, 80, 100]
  rows = (base_curve('src', 'mnist', 'dissimilar', 'mnist', 0, steps, [0.1, 0.9, 0.90, 0.95])
          + base_curve('other', 'mnist', 'dissimilar', 'mnist', 1, steps, [0.1, 0.9, 0.95, 0.95])
          + base_curve('tgt', 'mnist->m@noise', 'dissimilar', 'm@noise', 0, steps,
                       [0.1, 0.5, 0.6, 0.7])
          + run_rows('ft', 'full_finetune', 4, False, 'mnist', 'm@noise', 0, steps,
                     [0.5, 0.8, 0.8, 0.8], pair='mnist->m@noise', pair_kind='dissimilar'))
  table = convergence.base_convergence(pd.DataFrame(rows)).set_index('run_id')
  # mnist seed 1 has no run copying from it: a baseline, as is the target's scratch net.
  assert table['role'].to_dict() == {'src': 'source', 'other': 'baseline', 'tgt': 'baseline'}
  # Only the source's gain counts: the target's baseline still rising does not gate.
  note = convergence.summary(table.reset_index(), role=convergence.SOURCE)
  assert note.startswith('source not converged: 1 of 1 source networks')
  gated = reproduce.Claim('x', lambda rel, settings: [], converged_sources=True)
  free = reproduce.Claim('y', lambda rel, settings: [])
  results = reproduce.check_claims(pd.DataFrame(), {'x': gated, 'y': free}, SETTINGS,
                                   table.reset_index())
  assert (results[0].verdict, results[0].heading()) == (INCONCLUSIVE,
                                                        'inconclusive: source not converged')
  assert results[1].note == ''
