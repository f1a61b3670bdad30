"""The claims of Yosinski et al. 2014 checked on synthetic runs: every verdict is reachable."""

import numpy as np
import pandas as pd
import pytest
from scipy import stats as sps

from analysis import reproduce
from analysis.reproduce import INCONCLUSIVE, NOT_REPRODUCED, REPRODUCED
from tests.analysis.builders import PAPER_LIKE, claim_runs

SETTINGS = reproduce.Settings(rule='best_k', k=10)  # claim_runs scores runs by the paper's rule


def verdicts(levels=None, **kwargs) -> dict:
  runs, _ = claim_runs(levels, **kwargs)
  rel = reproduce.relative_scores(runs)
  results = reproduce.check_claims(rel, reproduce.YOSINSKI2014_CLAIMS, SETTINGS)
  return {r.claim: r for r in results}


def test_relative_scores_divide_by_the_base_of_the_same_target_and_seed():
  runs, _ = claim_runs({'AnB': lambda n, g: 0.5}, noise=0.0)
  rel = reproduce.relative_scores(runs)
  assert set(rel['group']) == {'random halves', 'dissimilar'}
  assert set(rel['kind']) == {'random_halves', 'dissimilar'}
  np.testing.assert_allclose(rel.loc[rel['label'] == 'AnB', 'rel'], 0.5)
  np.testing.assert_allclose(rel.loc[rel['label'] == 'base', 'rel'], 1.0)
  # A seed without its own base falls back to the mean base of its (pair, target).
  runs = runs[~((runs['condition'] == 'scratch') & (runs['seed'] == 0))]
  rel = reproduce.relative_scores(runs)
  seed0 = rel[(rel['seed'] == 0) & (rel['pair'] == 'A0|B0')]
  bases = runs[(runs['condition'] == 'scratch') & (runs['pair'] == 'A0|B0')]['score']
  np.testing.assert_allclose(seed0['base'], bases.mean())


def test_slopes_are_least_squares_per_observation():
  runs, _ = claim_runs({'AnB': lambda n, g: 1 - 0.02 * n}, noise=0.0)
  table = reproduce.matrix(reproduce.relative_scores(runs), 'random_halves', 'AnB')
  np.testing.assert_allclose(reproduce.slopes(table), -0.02, atol=1e-12)


def test_a_paper_like_study_reproduces_every_claim():
  results = verdicts()
  assert {name: r.verdict for name, r in results.items()} == dict.fromkeys(
      reproduce.YOSINSKI2014_CLAIMS, REPRODUCED)
  dip, recovery = results['fragile_coadaptation'].parts
  # The dip is tested at the n fixed in advance (the paper's 5 of 7), not the deepest one seen.
  assert dip.name == 'dip n=5' and dip.estimate == pytest.approx(0.03, abs=0.005)
  assert recovery.estimate == pytest.approx(0.03, abs=0.005) and recovery.ci_low > 0
  # Every part states its unit: 5 seeds, each the mean over the 2 random-halves pairs.
  assert dip.n == 5 and dip.unit.startswith('seed (5 seeds')


OPPOSITE = {
    'fragile_coadaptation': {'BnB': lambda n, g: 1.01},            # BnB above base everywhere
    'specificity': {'AnB': lambda n, g: 1.0 + 0.01 * n},            # AnB rises with n
    'fine_tuning_boost': {'AnB+': lambda n, g: 0.97},               # fine-tuning below base
    'random_features': {'random': lambda n, g: 1.0 + 0.001 * n,     # random features do not fall
                        'AnB': lambda n, g: 1.0 - 0.01 * n},
}


@pytest.mark.parametrize('claim', list(OPPOSITE))
def test_the_opposite_pattern_is_not_reproduced(claim):
  result = verdicts({**PAPER_LIKE, **OPPOSITE[claim]})[claim]
  assert result.verdict == NOT_REPRODUCED, result.evidence()


@pytest.mark.parametrize('claim', list(reproduce.YOSINSKI2014_CLAIMS))
def test_noise_much_larger_than_the_effects_is_inconclusive(claim):
  flat = {name: (lambda n, g: 1.0) for name in PAPER_LIKE}
  # Fixed draws; with 2 observations a t-test needs |t| > 12.7, which pure noise rarely gives.
  result = verdicts(flat, noise=0.05, seeds=2, splits=1, rng=2)[claim]
  assert result.verdict == INCONCLUSIVE, result.evidence()


def test_a_dip_that_deepens_to_the_top_is_not_reproduced():
  result = verdicts({**PAPER_LIKE, 'BnB': lambda n, g: 1.0 - 0.01 * n})['fragile_coadaptation']
  assert [p.verdict for p in result.parts] == [REPRODUCED, NOT_REPRODUCED]
  assert result.verdict == NOT_REPRODUCED


def test_missing_data_is_inconclusive_and_says_why():
  result = verdicts(dissimilar=False)['specificity']
  assert result.verdict == INCONCLUSIVE and 'no dissimilar pair' in result.evidence()
  shallow = verdicts(ns=(1, 2))['fragile_coadaptation']
  assert shallow.verdict == INCONCLUSIVE and 'no middle layers' in shallow.evidence()
  no_runs = verdicts({'AnB': PAPER_LIKE['AnB']})['fine_tuning_boost']
  assert no_runs.verdict == INCONCLUSIVE and 'no AnB+ runs' in no_runs.evidence()


def test_combine_needs_every_part():
  part = lambda v: reproduce.Part('p', 'f', verdict=v)
  assert reproduce.combine([part(REPRODUCED), part(REPRODUCED)]) == REPRODUCED
  assert reproduce.combine([part(REPRODUCED), part(INCONCLUSIVE)]) == INCONCLUSIVE
  assert reproduce.combine([part(INCONCLUSIVE), part(NOT_REPRODUCED)]) == NOT_REPRODUCED


def test_outputs_are_written_with_the_published_overlay(tmp_path):
  runs, _ = claim_runs()
  rel = reproduce.relative_scores(runs)
  results = reproduce.check_claims(rel, reproduce.YOSINSKI2014_CLAIMS, SETTINGS)
  written = reproduce.write_outputs(results, rel, runs, tmp_path, 'yosinski2014', SETTINGS)
  names = {p.name for p in written}
  assert {'claims.json', 'claims.md', 'reproduced_vs_published.png', 'reproduced_vs_published.pdf',
          'fig2_relative_per_pair.png'} <= names
  assert '**reproduced**' in (tmp_path / 'claims.md').read_text()


def test_the_dip_is_tested_at_the_n_fixed_in_advance():
  # A dip at n = 3 only: the deepest dip seen, but not the paper's n = 5 of 7.
  levels = {**PAPER_LIKE, 'BnB': lambda n, g: 1.0 - 0.03 * (n == 3)}
  result = verdicts(levels)['fragile_coadaptation']
  assert result.parts[0].name == 'dip n=5' and result.verdict != REPRODUCED
  runs, _ = claim_runs(levels)
  rel = reproduce.relative_scores(runs)
  fixed = reproduce.check_claims(rel, reproduce.YOSINSKI2014_CLAIMS,
                                 reproduce.Settings(dip_n=3))[0]
  assert fixed.parts[0].name == 'dip n=3' and fixed.verdict == REPRODUCED, fixed.evidence()
  assert reproduce.dip_n([1, 2, 3, 4], reproduce.Settings()) == 3  # round(5 * 4 / 7)


def test_no_evidence_of_a_drop_is_not_evidence_of_none():
  # AnB+ at base on average, noisy: "nowhere below base" is inconclusive, not reproduced.
  noisy = {**PAPER_LIKE, 'AnB+': lambda n, g: 1.0}
  nowhere = verdicts(noisy, noise=0.03)['fine_tuning_boost'].parts[1]
  assert nowhere.name == 'nowhere below base' and nowhere.verdict == INCONCLUSIVE, nowhere.text()
  # Exactly at base with little noise: within the 1% margin at every n.
  tight = verdicts(noisy, noise=0.001)['fine_tuning_boost'].parts[1]
  assert tight.verdict == REPRODUCED, tight.text()
  # ... but not within a margin of 0 (a drop of zero cannot be shown to be > 0).
  runs, _ = claim_runs(noisy, noise=0.001)
  zero = reproduce.check_claims(reproduce.relative_scores(runs), reproduce.YOSINSKI2014_CLAIMS,
                                reproduce.Settings(margin=0.0))[2].parts[1]
  assert zero.verdict == INCONCLUSIVE, zero.text()


def test_holm_over_a_claims_parts_by_hand():
  parts = [reproduce.Part('a', 'f', p_value=0.03, p_opposite=0.97),
           reproduce.Part('b', 'f', p_value=0.02, p_opposite=0.98)]
  reproduce.decide(parts, 0.05)
  assert [p.p_holm for p in parts] == pytest.approx([0.04, 0.04])  # 2 x 0.02, then max(.., 0.03)
  assert [p.verdict for p in parts] == [REPRODUCED, REPRODUCED]
  parts = [reproduce.Part('a', 'f', p_value=0.03, p_opposite=0.97),
           reproduce.Part('b', 'f', p_value=0.04, p_opposite=0.96)]
  reproduce.decide(parts, 0.05)
  assert [p.verdict for p in parts] == [INCONCLUSIVE, INCONCLUSIVE]  # 0.06 and 0.06


def test_a_single_network_per_n_uses_its_regression_residuals():
  index = pd.MultiIndex.from_tuples([('p', 't', 0)], names=['pair', 'target', 'seed'])
  table = pd.DataFrame([[1.0, 0.8, 0.7, 0.3]], columns=[1, 2, 3, 4], index=index)
  effect = reproduce.slope_effect(table)
  fit = sps.linregress([1, 2, 3, 4], [1.0, 0.8, 0.7, 0.3])
  assert effect.estimate == pytest.approx(fit.slope) and effect.se == pytest.approx(fit.stderr)
  assert effect.df == 2 and effect.n == 1


def test_false_reproductions_stay_within_alpha_under_the_null():
  # Every label at base (margin 0: the boundary of the non-inferiority null), fixed draws.
  flat = {name: (lambda n, g: 1.0) for name in PAPER_LIKE}
  sims, alpha = 60, SETTINGS.alpha
  reproduced = dict.fromkeys(reproduce.YOSINSKI2014_CLAIMS, 0)
  for i in range(sims):
    runs, _ = claim_runs(flat, noise=0.01, rng=1000 + i)
    for r in reproduce.check_claims(reproduce.relative_scores(runs), reproduce.YOSINSKI2014_CLAIMS,
                                    reproduce.Settings(margin=0.0)):
      reproduced[r.claim] += r.verdict == REPRODUCED
  bound = alpha + 2 * np.sqrt(alpha * (1 - alpha) / sims)  # alpha plus twice its simulation error
  assert all(count / sims <= bound for count in reproduced.values()), reproduced
