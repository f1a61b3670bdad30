"""Replicate pairs: validation, pooled rows at the independent unit, and the bad inputs."""

import numpy as np
import pandas as pd
import pytest
from scipy import stats as sps

import analysis
from analysis.reference import load_yosinski2014, yosinski2014_curves
from transferbench.cli import main
from harness.errors import UserError
from tests.analysis.builders import run_rows

STEPS = np.arange(12) * 10


def flat_run(run_id, condition, n, target, seed, pair, kind, value, source=None):
  """Rows of one run whose every evaluation after step 0 is ``value``."""
  source = source or {'scratch': 'none', 'selffer': target, 'random_frozen': 'random'}.get(
      condition, 'X')
  return run_rows(run_id, condition, n, False, source, target, seed, STEPS,
                  [0.1] + [value] * (len(STEPS) - 1), pair=pair, pair_kind=kind)


def two_pair_study(seeds=(0, 1, 2), drop=0.05, rng=0):
  """Two random-halves pairs, scratch and BnB n=2 per seed; BnB is ``drop`` below its base."""
  rng = np.random.default_rng(rng)
  rows = []
  for pair in ('split0', 'split1'):
    target = f'{pair[-1]}B'
    for seed in seeds:
      base = 0.8 + rng.normal(0, 0.01)
      rows += flat_run(f'base{target}_{seed}', 'scratch', 0, target, seed, pair,
                       'random_halves', base)
      rows += flat_run(f'BnB{target}_{seed}', 'selffer', 2, target, seed, pair,
                       'random_halves', base - drop + rng.normal(0, 0.01))
  return pd.DataFrame(rows)


def cli_error(argv, capsys) -> str:
  assert main(argv) == 2
  err = capsys.readouterr().err.strip()
  assert err.count('\n') == 0 and err.startswith('transferbench: error: ')
  return err


# ------------------------------------------------------------------------------- bad inputs

def test_pair_without_pair_kind_is_one_line_naming_the_fix(tmp_path, capsys):
  path = tmp_path / 'curves.csv'
  two_pair_study().drop(columns='pair_kind').to_csv(path, index=False)
  err = cli_error(['analyze', str(path), '--no-figures'], capsys)
  assert 'pair column but no pair_kind' in err and 'random_halves, dissimilar, none' in err


@pytest.mark.parametrize('change, message', [
    (lambda df: df.drop(columns='pair'), 'pair_kind but no pair column'),
    (lambda df: df.assign(pair_kind='halves'), "unknown pair_kind(s) ['halves']"),
    (lambda df: df.assign(pair_kind=np.where(df['seed'] == 0, 'dissimilar', 'random_halves')),
     'several pair kinds'),
])
def test_bad_pair_columns(change, message):
  with pytest.raises(UserError, match=message.replace('(', r'\(').replace(')', r'\)')
                     .replace('[', r'\[').replace(']', r'\]')):
    analysis.validate_curves(change(two_pair_study()))


def test_a_replicate_without_its_scratch_run_is_an_error(tmp_path, capsys):
  curves = two_pair_study()
  curves = curves[curves['run_id'] != 'base1B_2']  # seed 2 of split1 keeps its other bases
  analysis.analyze(curves, n_boot=200)              # matched to the pair's pooled scratch
  lonely = two_pair_study()
  lonely = lonely[~lonely['run_id'].str.startswith('base1B')]
  with pytest.raises(UserError, match=r"run 'BnB1B_0' \(pair 'split1', target '1B'\) has no "
                     'scratch run'):
    analysis.analyze(lonely, n_boot=200)
  path = tmp_path / 'lonely.csv'
  lonely.to_csv(path, index=False)
  err = cli_error(['reproduce', 'yosinski2014', '--curves', str(path), '--no-figures',
                   '--rule', 'last'], capsys)
  assert 'add it (condition scratch, pair split1, target 1B)' in err


def test_mixed_pair_kinds_in_one_claim_is_an_error(tmp_path, capsys):
  curves = yosinski2014_curves()
  # Random-frozen nets in a random-halves pair as well as the paper's own-base 'none' pair.
  extra = curves[curves['condition'] == 'random_frozen'].assign(
      run_id=lambda d: d['run_id'] + '_split0', target='0B', pair='split0',
      pair_kind='random_halves')
  path = tmp_path / 'mixed.csv'
  pd.concat([curves, extra]).to_csv(path, index=False)
  err = cli_error(['reproduce', 'yosinski2014', '--curves', str(path), '--no-figures',
                   '--rule', 'last'], capsys)
  assert 'random-frozen runs come from pairs of kinds none and random_halves' in err


def test_a_rule_the_table_cannot_give_names_the_fix(tmp_path, capsys):
  path = tmp_path / 'published.csv'
  yosinski2014_curves().to_csv(path, index=False)
  err = cli_error(['reproduce', 'yosinski2014', '--curves', str(path), '--no-figures'], capsys)
  assert 'no mean of the last 3 evaluations' in err and 'pass --rule last' in err


# ------------------------------------------------------------------------- unit of replication

def test_pooled_rows_average_pairs_within_a_seed_and_test_over_seeds(tmp_path):
  curves = two_pair_study()
  result = analysis.analyze(curves, n_boot=500)
  row = result.pooled[result.pooled['measure'] == 'final_last'].iloc[0]
  assert (row['label'], row['n_layers'], row['pair_kind']) == ('BnB', 2, 'random_halves')
  assert row['n_units'] == 3 and row['n_obs'] == 6 and row['n_pairs'] == 2
  assert row['unit'].startswith('seed (3 seeds, mean over 2 pair x target')
  # By hand: gap per (pair, seed) = base - BnB; mean over the pairs of each seed; t over seeds.
  last = curves[curves['step'] == STEPS[-1]].set_index('run_id')['accuracy']
  gaps = np.array([[last[f'base{t}_{s}'] - last[f'BnB{t}_{s}'] for t in ('0B', '1B')]
                   for s in range(3)]).mean(axis=1)
  assert row['gap'] == pytest.approx(gaps.mean(), abs=1e-12)
  assert row['p_value'] == pytest.approx(sps.ttest_1samp(gaps, 0).pvalue, rel=1e-9)
  assert row['verdict'] == 'negative'
  # Per-target rows stay, one per (pair, target).
  final = result.summary[(result.summary['measure'] == 'final_last')
                         & (result.summary['label'] == 'BnB')]
  assert sorted(final['pair']) == ['split0', 'split1']
  analysis.write_report(result, tmp_path, figures=False)
  assert len(pd.read_csv(tmp_path / 'pooled.csv')) == len(result.pooled)
  assert '## Pooled over replicate pairs' in (tmp_path / 'summary.md').read_text()


def test_one_pair_per_kind_has_no_pooled_rows():
  curves = two_pair_study()
  assert analysis.analyze(curves[curves['pair'] == 'split0'], n_boot=200).pooled.empty


def test_pooled_analyze_on_the_published_table():
  result = analysis.analyze(yosinski2014_curves(), rule='last', k=1, n_boot=1000)
  pooled = result.pooled[result.pooled['measure'] == 'final_last'].set_index(
      ['label', 'n_layers', 'pair_kind'])
  ref = load_yosinski2014()
  base = ref[ref['family'] == 'base'].set_index('target')['score']
  bnb5 = ref[(ref['family'] == 'selffer') & (ref['n_layers'] == 5)]
  expected = (bnb5['target'].map(base) - bnb5['score']).to_numpy()
  row = pooled.loc[('BnB', 5, 'random_halves')]
  # One seed: the unit is the published network's (pair, target); 4 splits.
  assert row['n_units'] == 4 and row['unit'].startswith('pair x target (4 observations')
  assert row['gap'] == pytest.approx(expected.mean(), abs=1e-9)
  assert row['verdict'] == 'negative'
  assert pooled.loc[('AnB', 1, 'random_halves'), 'n_units'] == 8
  assert ('AnB', 1, 'dissimilar') not in pooled.index  # one natman pair: nothing to pool
  assert 'random' not in set(result.pooled['label'])   # kind none is never pooled


# ------------------------------------------------------------------ reproduce on published data

def test_reproduce_on_the_published_networks(tmp_path, capsys):
  path, out = tmp_path / 'published.csv', tmp_path / 'out'
  yosinski2014_curves().to_csv(path, index=False)
  assert main(['reproduce', 'yosinski2014', '--curves', str(path), '--rule', 'last',
               '--no-figures', '--out', str(out)]) == 0
  claims = {c['claim']: c for c in pd.read_json(out / 'claims.json', typ='series')['claims']}
  for name in ('fragile_coadaptation', 'fine_tuning_boost', 'random_features'):
    assert claims[name]['verdict'] == 'reproduced', claims[name]
  assert claims['fragile_coadaptation']['parts'][0]['name'] == 'dip n=5'
  curves = pd.read_csv(out / 'curves_relative.csv').set_index(['group', 'label', 'n_layers'])
  bnb = curves.loc['random halves', 'BnB']
  assert bnb.loc[4, 'rel_mean'] == pytest.approx(0.970, abs=0.001)
  assert bnb.loc[5, 'rel_mean'] == pytest.approx(0.952, abs=0.001)
  assert bnb.loc[7, 'rel_mean'] == pytest.approx(1.000, abs=0.001)
  rel = pd.read_csv(out / 'runs_relative.csv')
  spread = rel[(rel['label'] == 'BnB') & rel['n_layers'].isin([4, 5])].groupby('n_layers')['rel']
  assert spread.std().between(0.002, 0.004).all()
  assert 'one seed' in bnb.loc[5, 'unit']
  assert 'reproduced' in capsys.readouterr().out


def test_the_published_summary_converts_to_one_evaluation_per_network():
  ref = load_yosinski2014()
  curves = analysis.validate_curves(yosinski2014_curves(ref))
  assert curves['run_id'].is_unique  # one evaluation per run
  kept = ref[ref['study'] != 'reduced_data']
  assert len(curves) == len(kept) == 136
  np.testing.assert_array_equal(curves.set_index('run_id').loc[kept['network'], 'accuracy'],
                                kept['score'])
  kinds = curves.groupby('pair')['pair_kind'].first().to_dict()
  assert kinds == {'split0': 'random_halves', 'split1': 'random_halves', 'split2': 'random_halves',
                   'split3': 'random_halves', 'natman': 'dissimilar', 'all1000': 'none'}
  # Each split holds its two base nets, and the random-frozen nets sit with netbase.
  bases = curves[curves['condition'] == 'scratch'].groupby('pair')['run_id'].apply(sorted)
  assert bases['split2'] == ['half2A', 'half2B'] and bases['all1000'] == ['netbase']
  assert set(curves.loc[curves['condition'] == 'random_frozen', 'pair']) == {'all1000'}


def test_results_without_a_sweep_file_get_kind_none(tmp_path):
  from harness.results import pair_kinds
  assert pair_kinds(tmp_path) == {}
