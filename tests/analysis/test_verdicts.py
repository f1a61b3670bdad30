"""Verdicts: family-wise error control on null tables, power on a real drop, and the MDE."""

import numpy as np
import pandas as pd
import pytest

import analysis
from analysis import measures
from analysis import stats
from analysis.transfer import MEASURES, Settings, compare_with_scratch
from tests.analysis.builders import HAND

STEPS = np.r_[0., 2 ** np.arange(6), np.arange(50, 601, 50)]  # the harness's eval_steps(600, 50)
ALPHA = 0.05


def null_table(rng: np.random.Generator, cells: int = 20, seeds: int = 5,
               drop: dict | None = None) -> pd.DataFrame:
  """Curves of scratch and ``cells`` transfer cells on target B, every run from one distribution.

  Each run: a saturating curve a(t) = A - (A - c) exp(-t / tau) with its own asymptote A ~ N(0.9,
  0.01), speed tau ~ lognormal around 20 steps and chance-level start c ~ N(0.2, 0.02), plus
  evaluation noise N(0, 0.005). Cell c = 1..cells is AnB with n = (c + 1) // 2, fine-tuned when
  c is even. ``drop`` = {cell: points} lowers a cell's whole curve after step 0 (a true
  negative effect).
  """
  n_runs = (cells + 1) * seeds
  asymptote = 0.9 + rng.normal(0, 0.01, n_runs)
  tau = np.exp(rng.normal(np.log(20), 0.3, n_runs))
  start = 0.2 + rng.normal(0, 0.02, n_runs)
  acc = asymptote[:, None] - (asymptote - start)[:, None] * np.exp(-STEPS / tau[:, None])
  acc = acc + rng.normal(0, 0.005, acc.shape)
  cell = np.arange(n_runs) // seeds  # 0 = scratch
  for index, points in (drop or {}).items():
    acc[cell == index, 1:] -= points / 100
  runs = pd.DataFrame({
      'run_id': [f'r{i}' for i in range(n_runs)],
      'condition': np.where(cell == 0, 'scratch', 'transfer'),
      'n_layers': np.where(cell == 0, 0, (cell + 1) // 2), 'fine_tuned': (cell > 0) & (cell % 2 == 0),
      'source': np.where(cell == 0, 'none', 'A'), 'target': 'B', 'seed': np.arange(n_runs) % seeds})
  curves = runs.loc[np.repeat(np.arange(n_runs), len(STEPS))].reset_index(drop=True)
  return curves.assign(step=np.tile(STEPS, n_runs), accuracy=np.clip(acc, 0, 1).ravel(), loss=np.nan)


def summarise(curves: pd.DataFrame, settings: Settings) -> pd.DataFrame:
  """The summary that :func:`analysis.analyze` computes, through the same compare_with_scratch."""
  arrays = measures.curve_arrays(curves)
  runs = measures.run_measures(curves, arrays, settings.k)
  return compare_with_scratch(runs, arrays, settings)[1]


def false_label_rates(tables: int, seed: int = 0) -> tuple[pd.Series, pd.Series, int]:
  """Per measure, the fraction of null tables with at least one false label: (Holm, unadjusted)."""
  rng = np.random.default_rng(seed)
  settings = Settings(n_boot=100, alpha=ALPHA)
  holm, raw = [], []
  for _ in range(tables):
    s = summarise(null_table(rng), settings)
    s = s[s['verdict'] != 'reference']
    holm.append(s.groupby('measure')['verdict'].agg(lambda v: v.isin(['negative', 'positive']).any()))
    unadjusted = (s['p_value'] < ALPHA) & ((s['gap_ci_low'] > 0) | (s['gap_ci_high'] < 0))
    raw.append(unadjusted.groupby(s['measure']).any())
  return pd.concat(holm, axis=1).mean(axis=1), pd.concat(raw, axis=1).mean(axis=1), tables


@pytest.mark.parametrize('tables', [60, pytest.param(400, marks=pytest.mark.slow)])
def test_null_tables_keep_the_family_wise_error_rate(tables):
  # 20 cells drawn from scratch's own distribution, 5 seeds each: any label is false. Per
  # measure, the rate of tables with a false label may exceed alpha only by simulation error.
  holm, unadjusted, n = false_label_rates(tables)
  bound = ALPHA + 3 * np.sqrt(ALPHA * (1 - ALPHA) / n)
  assert set(holm.index) == set(MEASURES)
  assert (holm <= bound).all(), holm.to_dict()
  # The same tables label falsely far more often with unadjusted p-values: the check can fail.
  assert (unadjusted[['final_last_k', 'auc']] > bound).all(), unadjusted.to_dict()


def test_a_large_true_drop_is_still_called_negative():
  rng = np.random.default_rng(1)
  settings = Settings(n_boot=200, alpha=ALPHA)
  for _ in range(5):
    s = summarise(null_table(rng, drop={7: 8.0}), settings)  # cell 7 = AnB n=4: 8 points lower
    dropped = s[(s['n_layers'] == 4) & ~s['fine_tuned'] & (s['condition'] == 'transfer')]
    by = dropped.set_index('measure')
    for measure in ('final_last_k', 'final_last', 'auc'):
      assert by.loc[measure, 'verdict'] == 'negative', measure
      assert by.loc[measure, 'gap'] == pytest.approx(0.08, abs=0.02)
    assert by.loc['start', 'verdict'] == 'inconclusive'  # step 0 is not lowered


def test_minimum_detectable_effect_has_the_stated_power_by_simulation():
  # Paired t over 5 seeds at Holm's first-step level for 20 cells: simulate 40000 studies whose
  # true gap is the MDE; the t test must reject in 80% of them (3 binomial s.e. = 0.6%).
  level, sd = ALPHA / 20, 0.01
  mde = stats.minimum_detectable_effect(sd, 5, 5, True, level)
  d = np.random.default_rng(0).normal(mde, sd, (40000, 5))
  t = d.mean(1) / (d.std(1, ddof=1) / np.sqrt(5))
  critical = stats.sps.t.ppf(1 - level / 2, 4)
  assert np.mean(np.abs(t) > critical) == pytest.approx(0.8, abs=0.006)


def test_minimum_detectable_effect_approaches_the_normal_formula():
  # Large n: (z_{1-a/2} + z_{power}) sd / sqrt(n).
  z = stats.sps.norm.ppf
  assert stats.minimum_detectable_effect(1.0, 4000, 4000, True, 0.05) == pytest.approx(
      (z(0.975) + z(0.8)) / np.sqrt(4000), rel=2e-3)
  # Unpaired with the s.d. split equally: se = sd sqrt((1/n + 1/n_ref) / 2).
  assert stats.minimum_detectable_effect(1.0, 4000, 4000, False, 0.05) == pytest.approx(
      (z(0.975) + z(0.8)) / np.sqrt(4000), rel=2e-3)


def test_seeds_needed_is_the_smallest_n_with_the_power():
  level, sd = 0.01, 0.02
  gap = stats.minimum_detectable_effect(sd, 9, 9, True, level) * 1.001
  assert stats.seeds_needed(gap, sd, True, level) == 9
  se, df = stats.t_design(8, 8, True, sd)
  assert stats.t_power(gap, se, df, level) < 0.8
  assert stats.seeds_needed(1e-6, sd, True, level) == np.inf
  assert np.isnan(stats.seeds_needed(0.0, sd, True, level))


def test_family_verdicts_by_hand():
  # Holm over the 3 testable cells (the 4th cannot reach alpha): 0.01 x 3, 0.02 x 2, 0.04 x 1.
  labels = stats.family_verdicts(p=[0.01, 0.02, 0.04, 0.25, np.nan], p_min=[0, 0, 0, 0.25, np.nan],
                                 sign=[1, -1, 1, 1, 0], ci_low=[0.1, -0.3, 0.01, 0.1, np.nan],
                                 ci_high=[0.3, -0.1, 0.2, 0.3, np.nan], alpha=0.05)
  np.testing.assert_allclose(labels['p_holm'], [0.03, 0.04, 0.04, np.nan, np.nan])
  assert list(labels['verdict']) == ['negative', 'positive', 'negative', 'untestable', '']
  assert (labels['family_size'] == 3).all()
  # A significant test whose CI straddles 0 is not labelled.
  labels = stats.family_verdicts([0.001], [0], [1], [-0.1], [0.2])
  assert list(labels['verdict']) == ['inconclusive']


def test_summary_and_report_state_the_family():
  result = analysis.analyze(null_table(np.random.default_rng(2), cells=4), n_boot=200)
  s = result.summary[result.summary['verdict'] != 'reference']
  assert (s.groupby('measure')['family_size'].first() == 4).all()
  final = s[s['measure'] == 'final_last_k']
  assert final['p_holm'].ge(final['p_value']).all() and final['mde'].gt(0).all()
  # The gap is computed from the scratch value shown: mean(ref) - mean(x) over the pairs.
  assert (final['ref_value'] - final['value']).to_numpy() == pytest.approx(final['gap'].to_numpy())
  text = analysis.report.report_markdown(result)
  assert 'one family per measure = every cell of this table' in text and 'Holm-adjusted' in text
  assert measures.rule_name(measures.DEFAULT_RULE, measures.DEFAULT_K) in text
  assert 'Scratch final' in text
  assert 'family' in analysis.report.report_latex(result)


def test_early_skill_is_taken_at_one_step_and_missing_runs_are_left_out():
  # hand_curves: budget 30 (anb_s1), 5% of it = 1.5: the first step scheduled for at least half
  # of the runs after that is 10, which the AnB runs do not have.
  result = analysis.analyze(pd.read_csv(HAND), k=2, n_boot=200)
  runs = result.runs.set_index('run_id')
  assert (runs['early_step'] == 10).all()
  assert runs.loc['base_s0', 'early'] == 0.5 and np.isnan(runs.loc['anb_s0', 'early'])
  anb = result.summary[(result.summary['label'] == 'AnB')].set_index('measure')
  assert anb.loc['early', 'verdict'] == 'no data' and anb.loc['auc', 'n'] == 2
  assert any('no evaluation at the early step' in n for n in result.notes)


def test_a_missing_step_0_leaves_the_auc_range_of_the_cell_alone():
  curves = pd.read_csv(HAND)
  curves = curves[~((curves['run_id'] == 'anb_s0') & (curves['step'] == 0))]
  result = analysis.analyze(curves, k=2, n_boot=200)
  runs = result.runs.set_index('run_id')
  assert np.isnan(runs.loc['anb_s0', 'auc']) and np.isnan(runs.loc['anb_s0', 'start'])
  assert runs.loc['anb_s1', 'auc_step_lo'] == 0
  assert runs.loc['anb_s1', 'auc'] == pytest.approx(11.25 / 30)  # as with step 0 present
  assert any('start of the AUC range' in n for n in result.notes)


def test_default_rule_is_used_by_analyze_and_the_run_table():
  curves = null_table(np.random.default_rng(3), cells=1)
  table = analysis.final_accuracy_table(curves)
  runs = measures.run_measures(curves, measures.curve_arrays(curves), measures.DEFAULT_K)
  scratch = runs[runs['condition'] == 'scratch']['final_last_k'].mean()
  assert table[table['condition'] == 'scratch']['mean'].item() == pytest.approx(scratch)
  settings = analysis.analyze(curves, n_boot=200).settings
  assert (settings.rule, settings.k) == (measures.DEFAULT_RULE, measures.DEFAULT_K)
  # The paper's rule stays available, with the paper's k.
  assert analysis.analyze(curves, rule='best_k', n_boot=200).settings.k == 10
