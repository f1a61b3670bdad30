"""`transferbench estimate --source-checkpoint ...`: several networks ranked for one target at every
layer (model selection), with randomly initialised imported networks on tiny inputs. NumPy and
orbax only: the checkpoints are written as import-weights writes them, without torch."""

import jax
import numpy as np
import pandas as pd
import pytest
from scipy import stats

from analysis import estimators, model_selection
from analysis.features import pool_to_dim, task_sample
from harness import models, runs, tasks
from harness.zoo import importer
from harness.zoo.nets import IMAGENET_MEAN, IMAGENET_STD
from transferbench.cli import main

TARGET = ['--target', 'animal_mnist', '--target-classes', '0', '1', '2']
FAST = ['--max-examples', '45', '--image-size', '32', '--batch-size', '48', '--no-progress']


def imported(path, arch_name, seed, **model_kwargs):
  """A checkpoint as `import-weights --arch ARCH` writes it, of the model's random initialisation
  (``model_kwargs`` shrink it: a 64-wide fc6 instead of VGG's 4096)."""
  meta = importer.checkpoint_meta(arch_name, None, 1000, None)
  meta['model_kwargs'] = model_kwargs
  model = models.build_model(meta['model'], 1000, **model_kwargs)
  importer.write_checkpoint(path, models.init_variables(model, jax.random.key(seed), (32, 32, 3)),
                            meta)
  return path


def trained_format(path, seed=3):
  """A checkpoint as a transferbench run saves it (``harness.runs.save_weights``): a cnn/tiny of
  a 28x28 grayscale source task (random weights: the format is what matters here)."""
  model = models.build_model('cnn/tiny', 5)
  source = tasks.TaskSpec('mnist_A0', 'mnist', (0, 1, 2, 3, 4))
  meta = {'model': 'cnn/tiny', 'model_kwargs': {}, 'num_classes': 5, 'input_shape': [28, 28, 1],
          'task': source.to_dict(), 'run_id': 'abc'}
  runs.save_checkpoint(path, models.init_variables(model, jax.random.key(seed), (28, 28, 1)), meta)
  return path


@pytest.fixture(scope='module')
def zoo(tmp_path_factory):
  """Three networks of different depths: ResNet-18 (5 layers), VGG-11 (7), cnn/tiny (3)."""
  root = tmp_path_factory.mktemp('zoo')
  return {'tv_resnet18': imported(root / 'tv_resnet18', 'tv_resnet18', 1),
          'tv_vgg11': imported(root / 'tv_vgg11', 'tv_vgg11', 2, dense=[64, 64]),
          'mnist_cnn': trained_format(root / 'mnist_cnn')}


@pytest.fixture(scope='module')
def ranked(zoo, data_dir, tmp_path_factory):
  """The command run once on the three networks, with a fine-tuned accuracy per network."""
  out = tmp_path_factory.mktemp('selection') / 'out'
  accuracy = out.parent / 'accuracy.csv'
  accuracy.write_text('network,accuracy\ntv_resnet18,0.9\ntv_vgg11,0.8\nmnist_cnn,0.7\n')
  args = ['estimate', '--source-checkpoint', *map(str, zoo.values()), *TARGET, *FAST,
          '--estimators', 'logme', 'hscore', '--accuracy', str(accuracy), '--out', str(out),
          '--data-dir', data_dir]
  assert main(args) == 0
  return out


def test_every_layer_of_every_network_is_scored_and_ranked(ranked):
  scores = pd.read_csv(ranked / 'scores.csv')
  assert list(scores.columns) == list(model_selection.SCORE_COLUMNS)
  layers = {'tv_resnet18': 5, 'tv_vgg11': 7, 'mnist_cnn': 3}
  assert len(scores) == 2 * sum(layers.values()) and scores.score.notna().all()
  for name, count in layers.items():
    mine = scores[(scores.network == name) & (scores.estimator == 'logme')]
    assert sorted(mine.n_layers) == list(range(1, count + 1)) and (mine.layers == count).all()
    np.testing.assert_allclose(mine.sort_values('n_layers').relative_depth,
                               np.arange(1, count + 1) / count)
    assert mine.best_layer.sum() == 1
    assert mine.loc[mine.best_layer, 'score'].item() == mine.score.max()
  # Ranks among the networks that have layer n: 3 networks at n <= 3, 2 at n = 4, 5, 1 beyond.
  for (_, n), group in scores.groupby(['estimator', 'n_layers']):
    assert len(group) == sum(count >= n for count in layers.values())
    expected = stats.rankdata(-group.score.to_numpy(), method='min')
    np.testing.assert_array_equal(group['rank'].to_numpy(), expected)


def test_rankings_by_layer_last_and_best(ranked):
  scores = pd.read_csv(ranked / 'scores.csv')
  table = pd.read_csv(ranked / 'rankings.csv')
  logme = table[table.estimator == 'logme']
  assert list(dict.fromkeys(logme.scope)) == [f'n={n}' for n in range(1, 8)] + ['last', 'best']
  best = logme[logme.scope == 'best']
  mine = scores[(scores.estimator == 'logme') & scores.best_layer].set_index('network')
  assert list(best.network) == list(mine.score.sort_values(ascending=False).index)
  assert list(best['rank']) == [1, 2, 3]
  last = logme[logme.scope == 'last'].set_index('network')
  assert last.n_layers.to_dict() == {'tv_resnet18': 5, 'tv_vgg11': 7, 'mnist_cnn': 3}
  report = (ranked / 'model_selection.md').read_text()
  assert '## logme' in report and '## hscore' in report
  assert f"- best: {' > '.join(best.network)}" in report
  for suffix in ('png', 'pdf', 'caption.txt'):
    assert (ranked / 'figures' / f'score_vs_depth.{suffix}').stat().st_size > 100
  assert 'relative depth' in (ranked / 'figures' / 'score_vs_depth.caption.txt').read_text()


def test_rankings_are_correlated_with_the_given_accuracy(ranked):
  table = pd.read_csv(ranked / 'rankings.csv')
  corr = pd.read_csv(ranked / 'correlations.csv').set_index(['estimator', 'scope'])
  accuracy = {'tv_resnet18': 0.9, 'tv_vgg11': 0.8, 'mnist_cnn': 0.7}
  for scope in ('best', 'last', 'n=1'):
    rows = table[(table.estimator == 'logme') & (table.scope == scope)]
    row = corr.loc[('logme', scope)]
    tau = stats.kendalltau(rows.score, rows.network.map(accuracy)).statistic
    assert row.points == 3 and row.kendall_tau == pytest.approx(tau)
    assert row.too_few_points and row.kendall_min_p == pytest.approx(1 / 3)  # 2 / 3!
  assert corr.loc[('logme', 'n=7')].points == 1 and np.isnan(corr.loc[('logme', 'n=7')].kendall_tau)


def test_each_network_sees_the_target_through_its_own_input_transform(zoo, ranked, data_dir):
  """ResNet-18's layer-2 LogME equals LogME of the features of the target examples resized to
  32x32, repeated to 3 channels and ImageNet-normalised by hand, through a copy of the network
  with no transform of its own."""
  scores = pd.read_csv(ranked / 'scores.csv')
  target = tasks.make_task_pair({'kind': 'target', 'dataset': 'animal_mnist',
                                 'classes': (0, 1, 2)}, data_dir)[1]
  x, y = task_sample(target, data_dir, 45, 0)
  variables, _ = runs.load_checkpoint(zoo['tv_resnet18'])
  bare = models.build_model('zoo/resnet18', 1000, image_size=0, mean=(0, 0, 0), std=(1, 1, 1))
  resized = jax.image.resize(np.repeat(x, 3, axis=-1), (len(x), 32, 32, 3), 'bilinear')
  by_hand = (resized - np.asarray(IMAGENET_MEAN)) / np.asarray(IMAGENET_STD)
  features = models.layer_outputs(bare, variables, by_hand)['layer2']
  expected = estimators.logme(pool_to_dim(np.asarray(features), 4096), y, 3)
  row = scores[(scores.network == 'tv_resnet18') & (scores.estimator == 'logme')
               & (scores.n_layers == 2)]
  assert row.score.item() == pytest.approx(expected, rel=1e-4)


def _refused(args, out, capsys):
  assert main(args) == 2
  err = capsys.readouterr().err
  assert err.count('\n') == 1 and err.startswith('transferbench: error: ')
  assert not out.exists()
  return err


def test_bad_input_is_one_line_exit_2_nothing_written(zoo, data_dir, tmp_path, capsys):
  out = tmp_path / 'out'
  sources = ['--source-checkpoint', str(zoo['tv_resnet18']), str(zoo['tv_vgg11'])]
  base = ['estimate', *TARGET, *FAST, '--out', str(out), '--data-dir', data_dir]
  assert 'unknown estimator(s) logmee' in _refused(base + sources + ['--estimators', 'logmee'],
                                                   out, capsys)
  (tmp_path / 'notes').mkdir()
  err = _refused(base + sources + ['--source-checkpoint', str(tmp_path / 'notes')], out, capsys)
  assert 'no transferbench checkpoint at' in err and 'notes' in err
  err = _refused(base + sources + ['--source-checkpoint', str(zoo['tv_vgg11'])], out, capsys)
  assert 'is given twice' in err
  # LEEP and NCE need the source task's data: ImageNet is not prepared here.
  err = _refused(base + sources + ['--estimators', 'logme', 'leep'], out, capsys)
  assert 'LEEP and NCE' in err and 'imagenet2012' in err and '--estimators logme' in err
  # A network trained on 28x28 images cannot read 8x8 digits.
  digits = ['estimate', '--target', 'digits', *FAST, '--out', str(out), '--data-dir', data_dir,
            '--source-checkpoint', str(zoo['mnist_cnn']), str(zoo['tv_resnet18'])]
  assert 'trained on inputs of shape (28, 28, 1)' in _refused(digits, out, capsys)
  accuracy = tmp_path / 'accuracy.csv'
  accuracy.write_text('network,accuracy\ntv_resnet18,0.9\n')
  err = _refused(base + sources + ['--accuracy', str(accuracy)], out, capsys)
  assert 'has no accuracy for: tv_vgg11' in err
  assert 'not both' in _refused(['estimate', str(tmp_path), *sources, *TARGET], out, capsys)
  assert 'at least twice' in _refused(base + sources[:2], out, capsys)
  assert 'add --target' in _refused(['estimate', *sources, '--out', str(out)], out, capsys)
  assert 'goes with --source-checkpoint' in _refused(['estimate', str(tmp_path), *TARGET], out, capsys)
  assert 'drop --rule/--k' in _refused(base + sources + ['--rule', 'last'], out, capsys)
  # The results-directory use refuses an unknown estimator the same way (no argparse usage).
  assert 'unknown estimator(s) nope' in _refused(['estimate', str(tmp_path), '--estimators', 'nope'],
                                                out, capsys)
