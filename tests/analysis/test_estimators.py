"""Transferability estimators: hand-computed values, limiting cases, invariances, the CLI."""

import json
import shutil

import jax
import numpy as np
import pandas as pd
import pytest
from scipy import optimize, stats

from analysis import estimate
from analysis import estimators as est
from analysis import measures
from analysis import rank_correlation as rc
from analysis.features import layer_features, pool_to_dim, stratified_indices, task_sample
from harness import models, tasks
from transferbench.cli import main
from harness.errors import UserError


def _separable(n_per_class=30, classes=3, dim=6, noise=0.05, seed=0):
  """Features = class centre (far apart) + small noise; and labels."""
  rng = np.random.default_rng(seed)
  y = np.repeat(np.arange(classes), n_per_class)
  centres = 3 * rng.normal(size=(classes, dim))
  return centres[y] + noise * rng.normal(size=(len(y), dim)), y


def _random(n_per_class=30, classes=3, dim=6, seed=1):
  rng = np.random.default_rng(seed)
  return rng.normal(size=(n_per_class * classes, dim)), np.repeat(np.arange(classes), n_per_class)


# ------------------------------------------------------------------------------------------ LogME

def test_logme_evidence_by_hand():
  # F = [[1], [1]] (N = 2, D = 1), y = (1, 0), alpha = beta = 1:
  # A = alpha + beta F^T F = 1 + 2 = 3, m = beta A^-1 F^T y = 1/3,
  # ||F m - y||^2 = (1/3 - 1)^2 + (1/3)^2 = 5/9, ||m||^2 = 1/9, log|A| = log 3,
  # evidence = D/2 log 1 + N/2 log 1 - N/2 log 2 pi - 5/18 - 1/18 - 1/2 log 3, per example / 2.
  expected = (-np.log(2 * np.pi) - 1 / 3 - 0.5 * np.log(3)) / 2
  assert est.logme_evidence(np.array([[1.0], [1.0]]), np.array([1.0, 0.0]), 1.0, 1.0) == \
      pytest.approx(expected, abs=1e-12)
  # The same number is the log density of y ~ N(0, F F^T / alpha + I / beta) = N(0, [[2,1],[1,2]]).
  assert stats.multivariate_normal(np.zeros(2), [[2, 1], [1, 2]]).logpdf([1, 0]) / 2 == \
      pytest.approx(expected, abs=1e-12)


def test_logme_fixed_point_maximises_the_gaussian_marginal_likelihood():
  features, y = _separable(n_per_class=10, dim=4, noise=1.0)
  targets = est.one_hot(y)
  alpha, beta = est.logme_fixed_point(features, targets)
  n = len(y)
  for c in range(targets.shape[1]):
    def neg(log_ab, t=targets[:, c]):
      a, b = np.exp(log_ab)
      cov = features @ features.T / a + np.eye(n) / b
      return -stats.multivariate_normal(np.zeros(n), cov).logpdf(t) / n
    best = optimize.minimize(neg, [0.0, 0.0], method='Nelder-Mead',
                             options=dict(xatol=1e-9, fatol=1e-13, maxiter=4000))
    assert np.log([alpha[c], beta[c]]) == pytest.approx(best.x, abs=1e-3)
    assert est.logme_evidence(features, targets[:, c], alpha[c], beta[c]) == \
        pytest.approx(-best.fun, abs=1e-9)
  assert est.logme(features, y) == pytest.approx(
      np.mean(est.logme_evidence(features, targets, alpha, beta)))


def test_logme_separable_beats_random_and_degenerate_inputs_stay_finite():
  assert est.logme(*_separable()) > est.logme(*_random()) + 0.5
  rng = np.random.default_rng(0)
  y = np.arange(20) % 3
  for features in (rng.normal(size=(20, 100)),   # D > N: an exact fit is possible
                   np.zeros((20, 5)),             # dead layer
                   np.ones((20, 5))):             # constant features
    assert np.isfinite(est.logme(features, y))


# -------------------------------------------------------------------------------- LEEP and NCE

def test_leep_by_hand():
  theta = np.array([[0.8, 0.2], [0.6, 0.4], [0.3, 0.7], [0.1, 0.9]])
  y = np.array([0, 0, 1, 1])
  # P(y, z) = 1/4 sum_i theta_iz [y_i = y]: P(0,0) = 1.4/4 = .35, P(0,1) = .6/4 = .15,
  # P(1,0) = .4/4 = .1, P(1,1) = 1.6/4 = .4; P(z=0) = .45, P(z=1) = .55.
  # P(y|z): P(0|0) = 7/9, P(1|0) = 2/9, P(0|1) = 3/11, P(1|1) = 8/11.
  eep = [0.8 * 7 / 9 + 0.2 * 3 / 11, 0.6 * 7 / 9 + 0.4 * 3 / 11,
         0.3 * 2 / 9 + 0.7 * 8 / 11, 0.1 * 2 / 9 + 0.9 * 8 / 11]
  assert est.leep(theta, y) == pytest.approx(np.mean(np.log(eep)), abs=1e-12)
  # Invariant to the order of the source classes.
  assert est.leep(theta[:, ::-1], y) == pytest.approx(est.leep(theta, y), abs=1e-12)


def test_leep_limits():
  # A perfect, deterministic source -> target label map (3 source classes onto 2 targets): 0.
  z = np.array([0, 1, 2, 0, 1, 2])
  y = np.array([0, 1, 1, 0, 1, 1])
  assert est.leep(np.eye(3)[z], y) == pytest.approx(0.0, abs=1e-12)
  # An uninformative source (same theta for every x): P(y|z) = P(y), LEEP = mean log P(y_i)
  # = 2/6 log(1/3) + 4/6 log(2/3) = -H(Y).
  flat = np.full((6, 3), 1 / 3)
  assert est.leep(flat, y) == pytest.approx(2 / 6 * np.log(1 / 3) + 4 / 6 * np.log(2 / 3), abs=1e-12)
  assert est.leep(flat, y) < est.leep(np.eye(3)[z], y)


def test_nce_by_hand_and_limits():
  z = np.array([0, 0, 1, 1, 1, 0])
  y = np.array([0, 0, 1, 1, 0, 1])
  # Counts (z, y): (0,0) 2, (0,1) 1, (1,1) 2, (1,0) 1. Given either z, Y is 2:1, so
  # H(Y|Z) = H(2/3, 1/3) and NCE = 2/3 log 2/3 + 1/3 log 1/3 = -0.6365.
  assert est.nce(z, y) == pytest.approx(2 / 3 * np.log(2 / 3) + 1 / 3 * np.log(1 / 3), abs=1e-12)
  assert est.nce(z, y) == pytest.approx(-0.636514, abs=1e-6)
  # Z determines Y (many to one): 0. Z independent of a balanced Y: -log 2 (the minimum).
  assert est.nce([0, 1, 2, 0, 1, 2], [0, 1, 1, 0, 1, 1]) == pytest.approx(0.0, abs=1e-12)
  assert est.nce([0, 1, 0, 1], [0, 0, 1, 1]) == pytest.approx(-np.log(2), abs=1e-12)
  # Relabelling the source classes changes nothing.
  assert est.nce(5 - z, y) == pytest.approx(est.nce(z, y), abs=1e-12)


# ------------------------------------------------------------------------------------- H-score

def test_h_score_by_hand():
  # f = (0, 2, 4, 6), y = (0, 0, 1, 1): mean 3, var f = (9 + 1 + 1 + 9) / 4 = 5;
  # E[f|y] = (1, 1, 5, 5), its variance = (4 + 4 + 4 + 4) / 4 = 4; H = 4 / 5.
  f = np.array([[0.0], [2.0], [4.0], [6.0]])
  assert est.h_score(f, [0, 0, 1, 1]) == pytest.approx(0.8, abs=1e-12)
  # Shrinkage a = 1/2 in 1-D: cov_a(f) = (1 - a) 5 + a mu = 5 (mu = var f = 5), and the class-mean
  # covariance is shrunk by the same (1 - a): H = 1/2 x 4 / 5 = 2/5. a = 0 is the plain H-score.
  assert est.h_score(f, [0, 0, 1, 1], shrinkage=0.5) == pytest.approx(0.4, abs=1e-12)
  assert est.h_score(f, [0, 0, 1, 1], shrinkage=0.0) == pytest.approx(0.8, abs=1e-12)


def test_h_score_matches_the_direct_formula_and_its_invariances():
  features, y = _separable(noise=1.0)
  centred = features - features.mean(0)
  class_means = np.stack([centred[y == c].mean(0) for c in range(3)])[y]
  direct = np.trace(np.linalg.inv(centred.T @ centred) @ (class_means.T @ class_means))
  assert est.h_score(features, y) == pytest.approx(direct, rel=1e-9)
  assert est.h_score(features, y, shrinkage=0.0) == pytest.approx(direct, rel=1e-9)
  # Invariant to an invertible affine map of the features.
  rng = np.random.default_rng(3)
  mixed = features @ rng.normal(size=(6, 6)) + 7.0
  assert est.h_score(mixed, y) == pytest.approx(direct, rel=1e-6)


def test_h_score_separable_near_maximum_random_low():
  classes = 3
  for shrinkage in (None, 'auto'):
    separable = est.h_score(*_separable(classes=classes), shrinkage=shrinkage)
    random = est.h_score(*_random(classes=classes), shrinkage=shrinkage)
    assert random < 0.5 < classes - 1.05 < separable <= classes - 1 + 1e-9


def test_shrunk_h_score_is_below_the_plain_one_and_falls_with_shrinkage():
  # Every direction counts with weight (1 - a) s / ((1 - a) s + a mu) < 1: the shrunk score is
  # below the full-rank pseudo-inverse one, decreasing in a, and 0 at a = 1.
  features, y = _separable(noise=1.0)
  plain = est.h_score(features, y, rcond=0.0)
  values = [est.h_score(features, y, shrinkage=a) for a in (0.0, 0.1, 0.5, 0.9, 1.0)]
  assert values[0] == pytest.approx(plain, rel=1e-12)
  assert all(later < earlier for earlier, later in zip(values, values[1:]))
  assert values[-1] == 0.0


# ------------------------------------------------------------------------------------ baselines

def test_knn_by_hand():
  x = np.array([[0.0], [1.0], [3.0], [10.0], [11.0], [13.0]])
  y = np.array([0, 0, 1, 1, 1, 0])
  # k = 1, nearest other point: 0->1 (0 ok), 1->0 (0 ok), 3->1 (0, wrong), 10->11 (1 ok),
  # 11->10 (1 ok), 13->11 (1, wrong): 4/6.
  assert est.knn_accuracy(x, y, k=1) == pytest.approx(4 / 6)
  # k = 3: 0 -> {1, 3, 10} = 0,1,1 -> 1 wrong; 1 -> {0, 3, 10} -> 1 wrong; 3 -> {1, 0, 10}
  # -> 0 wrong; 10 -> {11, 13, 3} -> 1 ok; 11 -> {10, 13, 3} -> 1 ok; 13 -> {11, 10, 3} -> 1
  # wrong: 2/6.
  assert est.knn_accuracy(x, y, k=3) == pytest.approx(2 / 6)
  # k = 2, ties go to the nearer neighbour: 0 -> {1: 0, 3: 1} tie -> 0 ok; 1 -> {0: 0, 3: 1}
  # tie -> 0 ok; 3 -> {1: 0, 0: 0} -> 0 wrong; 10 -> {11: 1, 13: 0} tie -> 1 ok;
  # 11 -> {10: 1, 13: 0} tie -> 1 ok; 13 -> {11: 1, 10: 1} -> 1 wrong: 4/6.
  assert est.knn_accuracy(x, y, k=2) == pytest.approx(4 / 6)
  # Without the tie-break towards the nearer neighbour, class 0 (the lower label) would win
  # the ties at 10 and 11: check that the nearer-neighbour rule is what decided them.
  assert est.knn_accuracy(x, 1 - y, k=2) == pytest.approx(4 / 6)


def test_baselines_separable_beat_random_and_knn_is_rotation_invariant():
  separable, random = _separable(), _random()
  assert est.knn_accuracy(*separable) == 1.0 and est.knn_accuracy(*random) < 0.6
  assert est.linear_probe_accuracy(*separable) == 1.0
  assert est.linear_probe_accuracy(*random) < 0.6
  rotation, _ = np.linalg.qr(np.random.default_rng(0).normal(size=(6, 6)))
  features, y = _random()
  assert est.knn_accuracy(features @ rotation * 3 + 1, y) == est.knn_accuracy(features, y)


def test_source_classifier_gives_probabilities_for_leep():
  features, y = _separable()
  probs = est.fit_source_classifier(features, y).predict_proba(features)
  assert probs.shape == (90, 3) and np.allclose(probs.sum(1), 1)
  inputs = est.LayerInputs(features, y, 3, probs)
  scores = est.score_layer(inputs, settings={'folds': 3})
  assert set(scores) == set(est.ESTIMATORS)
  assert scores['nce'] == pytest.approx(0.0, abs=1e-12) and scores['leep'] > -0.1


# ------------------------------------------------------------------------------------- features

@pytest.mark.parametrize('name', ['mlp', 'cnn/tiny', 'resnet/tiny'])
def test_layer_outputs_feed_the_head(name):
  model = models.build_model(name, 4)
  shape = (28, 28, 1)
  variables = models.init_variables(model, jax.random.key(0), shape)
  x = np.asarray(jax.random.normal(jax.random.key(1), (5, *shape)))
  outputs = jax.jit(lambda v, x: models.layer_outputs(model, v, x))(variables, x)
  assert list(outputs) == list(models.layer_names(model.num_layers)[:-1])
  # The last layer's output, pooled (ResNet) or flattened, through the head = the network's output.
  last = np.asarray(outputs[f'layer{model.num_layers - 1}'])
  pooled = last.mean(axis=(1, 2)) if name.startswith('resnet') else last.reshape(5, -1)
  head = variables['params']['head']
  logits = jax.jit(lambda v, x: model.apply(v, x, train=False))(variables, x)
  np.testing.assert_allclose(pooled @ head['kernel'] + head['bias'], logits, atol=1e-4)
  # Batched extraction (a padded last batch) equals one pass, flattened.
  batched = layer_features(model, variables, x, batch_size=3, max_dim=10**6)
  for layer, value in outputs.items():
    np.testing.assert_allclose(batched[layer], np.asarray(value).reshape(5, -1), atol=1e-5)


def test_pool_to_dim():
  x = np.arange(2 * 5 * 4 * 3, dtype=np.float32).reshape(2, 5, 4, 3)
  assert pool_to_dim(x, 1000).shape == (2, 60)                    # fits: only flattened
  np.testing.assert_allclose(pool_to_dim(x, 3), x.mean(axis=(1, 2)))  # global average pool
  grid = pool_to_dim(x, 20).reshape(2, 3, 2, 3)                   # 5x4 -> 3x2 bins
  np.testing.assert_allclose(grid[:, 0, 0], x[:, :2, :2].mean(axis=(1, 2)))
  np.testing.assert_allclose(grid[:, 2, 1], x[:, 4:, 2:].mean(axis=(1, 2)))


def test_stratified_indices_keep_every_class_and_the_proportions():
  rng = np.random.default_rng(0)
  labels = rng.permutation(np.repeat(np.arange(500), rng.integers(700, 1300, 500)))
  idx = stratified_indices(labels, 1000, seed=1)
  assert len(idx) == 1000 and len(np.unique(idx)) == 1000 and (np.diff(idx) > 0).all()
  assert len(np.unique(labels[idx])) == 500               # a random subset misses ~70 classes
  assert len(np.unique(labels[rng.choice(len(labels), 1000, replace=False)])) < 460
  # Unbalanced classes keep their proportions (after the first example of each): 900:90:10.
  skewed = np.repeat([0, 1, 2], [900, 90, 10])
  np.testing.assert_array_equal(np.bincount(skewed[stratified_indices(skewed, 100, 0)]), [90, 9, 1])
  # Seeded: the same seed gives the same subset, another seed another one; small N: everything.
  np.testing.assert_array_equal(stratified_indices(labels, 50, 3), stratified_indices(labels, 50, 3))
  assert set(stratified_indices(labels, 50, 3)) != set(stratified_indices(labels, 50, 4))
  np.testing.assert_array_equal(stratified_indices(skewed, 5000, 0), np.arange(1000))


def test_task_sample_is_stratified(data_dir):
  spec = tasks.TaskSpec(name='digits_all', dataset='digits', classes=tuple(range(10)))
  x, y = task_sample(spec, data_dir, 20, seed=0)
  assert x.shape[0] == 20 and np.bincount(y, minlength=10).tolist() == [2] * 10


# --------------------------------------------------------------------------------- correlations

def _runs(seeds, noise, seed=0):
  """Single transfer runs of one pair: score falls with n, accuracy too, plus per-seed noise."""
  rng = np.random.default_rng(seed)
  return pd.DataFrame([{'estimator': 'e', 'measure': 'AnB', 'source': 'a', 'target': 't',
                        'n_layers': n, 'source_run': f'r{s}', 'run_id': f'{s}-{n}', 'seed': s,
                        'score': -n + noise * rng.normal(), 'accuracy': 1 - 0.1 * n + noise * rng.normal()}
                       for s in range(seeds) for n in (1, 2, 3, 4, 5)])


def test_seed_bootstrap_resamples_seeds_not_layers():
  # Noise-free seeds: every resample ranks the 5 layers alike, tau = 1 exactly.
  exact = rc.seed_bootstrap_ci(_runs(5, 0.0))
  assert exact['kendall_tau_low'] == exact['kendall_tau_high'] == 1
  # Seed noise comparable to the layer effect: the CI opens up, and contains the seed-mean tau.
  runs = _runs(5, 0.6)
  means = runs.groupby('n_layers')[['score', 'accuracy']].mean()
  tau = stats.kendalltau(means.score, means.accuracy).statistic
  noisy = rc.seed_bootstrap_ci(runs)
  assert noisy['kendall_tau_low'] <= tau <= noisy['kendall_tau_high']
  assert noisy['kendall_tau_high'] - noisy['kendall_tau_low'] >= 0.4
  assert noisy == rc.seed_bootstrap_ci(runs)  # seeded
  # One seed: nothing to resample.
  assert np.isnan(rc.seed_bootstrap_ci(_runs(1, 0.6))['kendall_tau_low'])
  # correlations() uses it for the 'layers' scope, given the runs behind the seed means.
  joined = runs.groupby(['estimator', 'measure', 'source', 'target', 'n_layers'],
                        as_index=False)[['score', 'accuracy']].mean()
  corr = estimate.correlations(joined, runs)
  layers = corr[corr.scope == 'layers'].iloc[0]
  assert layers.kendall_tau == pytest.approx(tau) and layers.points == 5
  assert layers.kendall_tau_low == noisy['kendall_tau_low']
  assert corr[corr.scope == 'runs'].points.item() == 25


def test_correlations_across_layers_and_pairs():
  rows = [{'estimator': 'e', 'measure': 'AnB', 'source': s, 'target': 't', 'n_layers': n,
           'score': -n + 0.1 * i, 'accuracy': 1 - 0.1 * n + 0.01 * i}
          for i, s in enumerate(['a', 'b', 'c']) for n in (1, 2, 3)]
  corr = estimate.correlations(pd.DataFrame(rows))
  layers = corr[corr.scope == 'layers']
  assert len(layers) == 3 and (layers.kendall_tau == 1).all()
  pairs = corr[corr.scope == 'pairs']
  assert sorted(pairs.group) == ['n=1', 'n=2', 'n=3'] and (pairs.kendall_tau == 1).all()
  assert corr[corr.scope == 'all'].points.item() == 9
  # The summary: per scope, the mean over groups with a CI from resampling the groups; the
  # points per group and the minimum p they allow; the rule in the caption.
  table = estimate.summary_rows(corr)
  layers_row = table[table.scope == 'layers'].iloc[0]
  assert layers_row.groups == 3 and layers_row.points == 3 and layers_row.too_few_points
  assert layers_row.kendall_tau_low == layers_row.kendall_tau_high == 1
  text = estimate.summary_table(corr, rule='last_k', k=5)
  assert 'mean of the last 5 evaluations' in text and '0.333*' in text


# ------------------------------------------------------------------------------------ end to end

@pytest.fixture(scope='module')
def tiny_results(data_dir, tmp_path_factory):
  """The tiny quickstart with one seed: a source network, AnB and AnB+ at n = 1, 2."""
  results = tmp_path_factory.mktemp('estimate') / 'quickstart'
  assert main(['run', 'quickstart', '--arg', 'tiny', '--results', str(results), '--data-dir',
               data_dir, '--no-progress', '--config.seeds=1']) == 0
  return results


def test_estimate_cli_end_to_end(tiny_results, data_dir, capsys):
  capsys.readouterr()
  code = main(['estimate', str(tiny_results), '--data-dir', data_dir, '--max-examples', '150',
               '--source-examples', '150', '--no-progress'])
  assert code == 0
  out = tiny_results / 'estimates'
  scores = pd.read_csv(out / 'scores.csv')
  assert list(scores.columns[:7]) == list(estimate.SCORE_COLUMNS)
  assert len(scores) == 2 * len(est.ESTIMATORS)       # one source, one target, n = 1, 2
  assert set(scores.n_layers) == {1, 2} and scores.score.notna().all()
  assert set(scores.source) == {'mnist_A0'} and set(scores.target) == {'mnist_B0'}
  joined = pd.read_csv(out / 'joined.csv')
  assert set(joined.measure) == {'AnB', 'AnB+'} and len(joined) == 2 * len(scores)
  assert joined.accuracy.between(0, 1).all()
  per_run = pd.read_csv(out / 'joined_runs.csv')  # one AnB and one AnB+ run per n and estimator
  assert len(per_run) == 2 * len(scores) and per_run.run_id.nunique() == 4
  corr = pd.read_csv(out / 'correlations.csv')
  assert set(corr.scope) == {'layers', 'runs'} and (corr.points == 2).all()
  assert corr.kendall_tau.isna().all()  # 2 points per pair: too few for a correlation
  assert corr.too_few_points.all() and (corr.kendall_min_p == 1).all()
  assert {'kendall_tau_low', 'kendall_tau_high', 'pearson_r_low', 'ci_resamples'} <= set(corr.columns)
  assert (out / 'figures' / 'estimators_vs_accuracy.png').stat().st_size > 10_000
  printed = capsys.readouterr().out
  assert '1 source network(s), 1 source-target pair(s), 2 layer(s)' in printed
  assert 'logme' in printed and 'Kendall' in printed and 'min p' in printed
  rule = measures.rule_name(measures.DEFAULT_RULE, measures.DEFAULT_K)
  assert f'final score = {rule}' in printed  # the default rule, in the caption


def test_estimate_user_errors(tiny_results, tmp_path, capsys):
  assert main(['estimate', str(tmp_path / 'missing')]) == 2
  assert 'no results directory' in capsys.readouterr().err
  # Scratch runs only: no transfer.
  only_scratch = tmp_path / 'scratch'
  for record in (tiny_results / 'runs').glob('*/record.json'):
    if json.loads(record.read_text())['spec']['condition'] == 'scratch':
      shutil.copytree(record.parent, only_scratch / 'runs' / record.parent.name)
  assert main(['estimate', str(only_scratch)]) == 2
  err = capsys.readouterr().err
  assert err.count('\n') == 1 and 'no complete transfer (AnB) runs' in err
  # Transfer runs whose source checkpoints are gone.
  no_checkpoints = tmp_path / 'no_checkpoints'
  shutil.copytree(tiny_results, no_checkpoints, ignore=shutil.ignore_patterns('checkpoint'))
  assert main(['estimate', str(no_checkpoints)]) == 2
  assert 'no source checkpoint' in capsys.readouterr().err
  with pytest.raises(UserError, match='folds'):
    estimate.score_sources([], estimate.EstimateSettings(folds=1), None)
