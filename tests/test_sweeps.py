"""End to end on real (small) data: sweeps expand, run, skip what is done, and fail clearly."""

import json
import os

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import pytest

from harness import engine, load_curves, models, runner, runs, sweeps, transfer
from transferbench.cli import main
from harness.errors import UserError
from harness.results import CURVE_COLUMNS, ResultsStore


def tiny_config(data_dir, **changes):
  """A seconds-long sweep on sklearn's digits: MLP 64-16-16-head, 2 seeds, n = 1..2."""
  c = sweeps.base_config()
  c.name = 'tiny'
  c.model = 'mlp'
  c.model_kwargs = ml_collections.ConfigDict(dict(hidden=(16, 16)))
  c.pairs = [dict(kind='random_halves', dataset='digits', split_seed=0)]
  c.seeds = 2
  c.train.steps = 12
  c.train.batch_size = 32
  c.train.lr = 0.1
  c.train.eval_every = 4
  c.data_dir = str(data_dir)
  for key, value in changes.items():
    c[key] = value
  return c


def test_expand_counts_orders_and_ids_are_deterministic(data_dir):
  specs = sweeps.expand(tiny_config(data_dir))
  # Per seed: baseB, baseA, then n in {1,2} x (selffer, selffer+, transfer, transfer+, random_frozen).
  assert len(specs) == 2 * (2 + 2 * 5)
  ids = [s.run_id for s in specs]
  assert len(set(ids)) == len(ids)
  assert ids == [s.run_id for s in sweeps.expand(tiny_config(data_dir))]
  position = {s.run_id: i for i, s in enumerate(specs)}
  for s in specs:
    if s.source_run:
      assert position[s.source_run] < position[s.run_id]
      source = specs[position[s.source_run]]
      assert source.condition == 'scratch' and source.seed == s.seed
      assert source.target == (s.target if s.condition == 'selffer' else s.source)
  # The spec decides the id: another seed or budget is another run.
  other = sweeps.expand(tiny_config(data_dir, first_seed=5))
  assert not set(ids) & {s.run_id for s in other}


def _source_train(data_dir, **values):
  config = tiny_config(data_dir)
  for key, value in values.items():
    config.source_train[key] = value
  return config


def test_source_train_sets_the_budget_of_the_source_networks_only(data_dir):
  specs = sweeps.expand(_source_train(data_dir, steps=30, lr=0.05))
  by_id = {s.run_id: s for s in specs}
  sources = {s.source_run for s in specs if s.condition == 'transfer'}
  for s in specs:
    expected = (30, 0.05) if s.run_id in sources else (12, 0.1)
    assert (s.hyper['steps'], s.hyper['lr']) == expected, s.describe()
  assert all(by_id[s.source_run].target == s.source for s in specs if s.condition == 'transfer')
  # Empty, or equal to train: the runs (and ids) of a sweep without the field.
  plain = sweeps.expand(tiny_config(data_dir))
  ids = [s.run_id for s in plain]
  assert [s.run_id for s in sweeps.expand(_source_train(data_dir, steps=12))] == ids
  # Set: the source networks are other runs, and so the transfers from them; nothing else.
  changed = {s.run_id for s in plain if s.condition == 'transfer'}
  changed |= {s.source_run for s in plain if s.condition == 'transfer'}
  assert set(ids) - set(by_id) == changed


def test_runs_of_other_lengths_train_apart_and_as_if_alone(data_dir, tmp_path):
  """The engine groups runs by their training settings: a 30-step source and 12-step runs of the
  same sweep each train their own number of steps, and the source's curve is the one it has when
  trained alone."""
  config = _source_train(data_dir, steps=30)
  config.conditions = ('transfer',)
  config.n_layers = (1,)
  config.fine_tune = (True,)
  runner.run_sweep(config, tmp_path / 'mixed', progress=False)
  curves = load_curves(tmp_path / 'mixed')
  specs = sweeps.expand(config)
  last = curves.groupby('run_id')['step'].max()
  assert {s.run_id: s.hyper['steps'] for s in specs} == last.to_dict()
  source = next(s for s in specs if s.run_id in {t.source_run for t in specs})
  runner.execute([source], ResultsStore(tmp_path / 'alone'), str(data_dir), progress=False)
  alone = load_curves(tmp_path / 'alone')
  mixed = curves[curves['run_id'] == source.run_id]
  np.testing.assert_allclose(mixed['accuracy'].to_numpy(), alone['accuracy'].to_numpy())


def test_runs_that_copy_from_a_checkpointed_source_go_back_to_the_engine(data_dir, tmp_path):
  """A source long enough for progress checkpoints trains one by one (the per-run path); the
  short transfers from it are packed by the engine once it is done, with the curves that the
  per-run path gives them."""
  config = _source_train(data_dir, steps=30)
  config.conditions = ('transfer',)
  config.fine_tune = (True,)
  config.checkpoint_every = 20  # the 30-step sources save progress; the 12-step runs do not
  report = runner.run_sweep(config, tmp_path / 'mixed', progress=False)
  specs = sweeps.expand(config)
  sources = {s.source_run for s in specs if s.source_run}
  assert report.failed == [] and report.completed == len(specs)
  # One by one: the two sources only; the engine trained the rest with its strategy.
  assert report.execution['remaining'] == len(sources) == 2
  assert set(report.execution['strategies'].values()) == {'fused'}
  everything_per_run = tiny_config(data_dir, conditions=('transfer',), fine_tune=(True,))
  everything_per_run.source_train.steps = 30
  everything_per_run.execution.strategy = 'per_run'
  runner.run_sweep(everything_per_run, tmp_path / 'per_run', progress=False)
  packed, alone = (load_curves(tmp_path / d).set_index(['run_id', 'step']).sort_index()
                   for d in ('mixed', 'per_run'))
  assert packed.index.equals(alone.index)
  np.testing.assert_allclose(packed['loss'], alone['loss'], rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize('change, message', [
    (dict(source_checkpoint='/some/checkpoint'), 'drop one of the two'),
    (dict(directions=('AB', 'BA')), r"a source must not also be a pair's scored target"),
    (dict(source_train=dict(stepz=30)), 'config.source_train.stepz is not a training setting'),
])
def test_source_train_bad_combinations_are_user_errors(change, message, data_dir):
  config = _source_train(data_dir, steps=30)
  config.unlock()
  for key, value in change.items():
    config[key] = value
  with pytest.raises(UserError, match=message):
    sweeps.expand(config)


@pytest.fixture(scope='module')
def swept(data_dir, tmp_path_factory):
  results = tmp_path_factory.mktemp('tiny')
  report = runner.run_sweep(tiny_config(data_dir), results, progress=False)
  return results, report


def test_sweep_writes_complete_records_and_long_curves(swept):
  results, report = swept
  assert report.failed == [] and report.completed == report.total == 24
  curves = load_curves(results)
  assert list(curves.columns[:len(CURVE_COLUMNS)]) == list(CURVE_COLUMNS)
  assert curves.run_id.nunique() == 24
  assert set(curves.condition) == {'scratch', 'selffer', 'transfer', 'random_frozen'}
  assert curves.accuracy.between(0, 1).all()
  assert (curves.loc[curves.condition == 'scratch', 'n_layers'] == 0).all()
  assert set(curves.loc[curves.condition == 'random_frozen', 'source']) == {'random'}
  steps = sorted(curves.step.unique())
  assert steps == [0, 1, 2, 4, 8, 12]  # step 0 always, dense early
  record = json.loads(next((results / 'runs').glob('*/record.json')).read_text())
  assert {'spec', 'environment', 'status', 'curve', 'labels'} <= set(record)
  assert record['environment']['jax'] == jax.__version__
  # The base nets learn (digits halves are easy): well above the 20% chance level of 5 classes.
  final = curves[curves.step == 12]
  assert final[final.condition == 'scratch'].accuracy.mean() > 0.5


def test_transferred_networks_share_one_init_independent_of_the_base_nets(swept, data_dir):
  """BnB, AnB and random_frozen of a seed start from one draw, with only layers 1..n different;
  that draw is not the base net's own init (else BnB's head would restart co-adapted)."""
  results, _ = swept
  store = ResultsStore(results)
  specs = sweeps.expand(tiny_config(data_dir))
  pick = lambda cond: next(s for s in specs if s.condition == cond and s.n_layers == 1
                           and s.seed == 0 and not s.fine_tuned)
  model = models.build_model('mlp', 5, hidden=(16, 16))
  start = {c: runs.starting_variables(pick(c), model, (8, 8, 1), store)['params']
           for c in ('selffer', 'transfer', 'random_frozen')}
  base_b = next(s for s in specs if s.run_id == pick('selffer').source_run)
  base_init = runs.starting_variables(base_b, model, (8, 8, 1), store)['params']
  for layer in ('layer2', 'head'):
    for c in ('transfer', 'random_frozen'):
      np.testing.assert_array_equal(start[c][layer]['kernel'], start['selffer'][layer]['kernel'])
    assert not np.allclose(start['selffer'][layer]['kernel'], base_init[layer]['kernel'])
  assert not np.allclose(start['selffer']['layer1']['kernel'], start['transfer']['layer1']['kernel'])


def test_initial_weights_differ_between_splits_of_one_seed(data_dir):
  """Splits are independent replicates: the same seed on two random splits starts every network
  (base and transferred) from other weights; the same split and seed, expanded again, from the
  same ones."""
  config = tiny_config(data_dir)
  config.pairs = [dict(kind='random_halves', dataset='digits', split_seed=s) for s in (0, 1)]
  model = models.build_model('mlp', 5, hidden=(16, 16))

  def start(specs, condition, split):
    spec = next(s for s in specs if s.condition == condition and s.seed == 0
                and s.pair.endswith(f'B{split}') and s.n_layers in (0, 1) and not s.fine_tuned)
    return runs.starting_variables(spec, model, (8, 8, 1), store=None)['params']

  specs, again = sweeps.expand(config), sweeps.expand(config)
  for condition in ('scratch', 'random_frozen'):
    split0, split1 = start(specs, condition, 0), start(specs, condition, 1)
    for layer in ('layer1', 'layer2', 'head'):
      assert not np.allclose(split0[layer]['kernel'], split1[layer]['kernel'])
    for layer in ('layer1', 'layer2', 'head'):
      np.testing.assert_array_equal(start(again, condition, 0)[layer]['kernel'],
                                    split0[layer]['kernel'])


def test_the_pair_tag_is_the_standard_crc32():
  """The key's pair number is CRC-32 of the label, stable across processes (Python's ``hash`` of a
  string is not): 0xCBF43926 is CRC-32's published check value, of '123456789'."""
  assert engine.pair_tag('123456789') == 0xCBF43926


def test_selffer_with_a_fresh_head_starts_near_chance(swept):
  """Regression: with the base net's own head init, BnB at n = L-1 started at ~98% on MNIST."""
  curves = load_curves(swept[0])
  start = curves[(curves.step == 0) & (curves.condition == 'selffer') & (curves.n_layers == 2)]
  assert start.accuracy.mean() < 0.5  # 5 classes: chance is 0.2


def test_rerun_skips_complete_runs(swept, data_dir):
  results, _ = swept
  before = {p: p.stat().st_mtime_ns for p in (results / 'runs').glob('*/record.json')}
  report = runner.run_sweep(tiny_config(data_dir), results, progress=False)
  assert report.skipped == report.total == 24 and report.completed == 0
  assert before == {p: p.stat().st_mtime_ns for p in (results / 'runs').glob('*/record.json')}


def test_interrupted_sweep_resumes_only_missing_runs(swept, data_dir, tmp_path):
  results, _ = swept
  import shutil
  copy = tmp_path / 'copy'
  shutil.copytree(results, copy)
  victims = sorted((copy / 'runs').iterdir())[:3]
  for victim in victims:
    shutil.rmtree(victim)
  report = runner.run_sweep(tiny_config(data_dir), copy, progress=False)
  assert (report.completed, report.skipped) == (3, 21)
  # Deterministic on CPU: the redone runs reproduce their curves exactly.
  for victim in victims:
    redone = json.loads((victim / 'record.json').read_text())['curve']
    original = json.loads((results / 'runs' / victim.name / 'record.json').read_text())['curve']
    assert redone == original


def test_transfer_run_copies_and_freezes_source_layers(swept, data_dir):
  results, _ = swept
  store = ResultsStore(results)
  spec = next(s for s in sweeps.expand(tiny_config(data_dir))
              if s.condition == 'transfer' and s.n_layers == 2 and not s.fine_tuned)
  scratch_store = ResultsStore(results.parent / 'keep')
  scratch_store.runs_dir.mkdir(parents=True)
  os.symlink(store.run_dir(spec.source_run), scratch_store.run_dir(spec.source_run))
  runs.train_and_evaluate(spec, scratch_store, str(data_dir), keep_weights=True)
  trained, _ = runs.load_checkpoint(scratch_store.checkpoint_dir(spec.run_id))
  source, _ = runs.load_checkpoint(store.checkpoint_dir(spec.source_run))
  for layer in ('layer1', 'layer2'):
    for a, b in zip(jax.tree.leaves(trained['params'][layer]), jax.tree.leaves(source['params'][layer])):
      np.testing.assert_array_equal(a, b)
  assert trained['params']['head']['kernel'].shape == source['params']['head']['kernel'].shape
  assert not np.allclose(trained['params']['head']['kernel'], source['params']['head']['kernel'])


def test_checkpoint_of_another_architecture_is_refused(swept, data_dir):
  results, _ = swept
  store = ResultsStore(results)
  base = next(s for s in sweeps.expand(tiny_config(data_dir)) if s.condition == 'scratch')
  config = tiny_config(data_dir, conditions=('transfer',),
                       source_checkpoint=str(store.checkpoint_dir(base.run_id)))
  config.model_kwargs.hidden = (32, 32)
  with pytest.raises(UserError, match='another architecture|same architecture'):
    sweeps.expand(config)


def test_pretrained_model_approach_transfers_from_a_checkpoint(swept, data_dir, tmp_path):
  results, _ = swept
  base = next(s for s in sweeps.expand(tiny_config(data_dir)) if s.condition == 'scratch')
  checkpoint = ResultsStore(results).checkpoint_dir(base.run_id)
  config = tiny_config(data_dir, conditions=('transfer',), fine_tune=(False,), seeds=1,
                       source_checkpoint=str(checkpoint))
  report = runner.run_sweep(config, tmp_path, progress=False)
  assert report.failed == [] and report.completed == 1 + 2  # baseB + AnB for n = 1, 2
  curves = load_curves(tmp_path)
  # The source is the checkpoint's own task (from its metadata), e.g. the first base net's.
  assert set(curves[curves.condition == 'transfer'].source) == {base.target.name}


def cli(args, capsys):
  code = main(args)
  out = capsys.readouterr()
  return code, out.out, out.err


@pytest.mark.parametrize('override, message', [
    ("--config.pairs=[{'kind': 'random_halves', 'dataset': 'nosuchdata', 'split_seed': 0}]", "unknown data set 'nosuchdata'"),
    ('--config.model=vgg16', "unknown model 'vgg16'"),
    ('--config.n_layers=(3,)', 'n=3 is out of range'),
    ("--config.conditions=('frozen',)", "unknown condition 'frozen'"),
    ("--config.pairs=[{'kind': 'partition', 'dataset': 'digits', 'classes_a': [0, 1], 'classes_b': [2, 12]}]", '12'),
    ('--config.seedz=3', "unknown config field 'seedz'"),
    ('--config.source_train.steps=0', 'source_train.steps must be an integer >= 1'),
    ('--config.data_dir=/nonexistent/tfds', 'TFDS data directory /nonexistent/tfds (from --data-dir / config.data_dir) does not exist'),
])
def test_bad_input_is_one_line_error_and_exit_2(override, message, data_dir, tmp_path, capsys):
  sweep = tmp_path / 'tiny_sweep.py'
  sweep.write_text(f'from tests.test_sweeps import tiny_config\ndef get_config():\n  return tiny_config({str(data_dir)!r})\n')
  (tmp_path / 'results').mkdir()
  (tmp_path / 'results' / 'keep.txt').write_text('precious')
  code, out, err = cli(['run', str(sweep), '--results', str(tmp_path / 'results'), override], capsys)
  assert code == 2
  assert err.count('\n') == 1 and err.startswith('transferbench: error: ') and message in err
  assert sorted(p.name for p in (tmp_path / 'results').iterdir()) == ['keep.txt']  # nothing touched


def test_k_shot_target_sweep(data_dir):
  pair = dict(kind='random_halves', dataset='digits', split_seed=0, target_examples_per_class=5)
  specs = sweeps.expand(tiny_config(data_dir, pairs=[pair]))
  targets = {s.target.name for s in specs if s.condition != 'scratch'}
  assert targets == {'digits_B0_k5'}
  # The source base net (baseA) trains on all of A; only the target is scarce.
  assert {s.target.examples_per_class for s in specs if s.condition == 'scratch'} == {None, 5}
  with pytest.raises(UserError, match='B must be the target'):
    sweeps.expand(tiny_config(data_dir, pairs=[pair], directions=('AB', 'BA')))


def test_class_count_mismatch_is_a_user_error(data_dir):
  config = tiny_config(data_dir)
  config.model_kwargs = ml_collections.ConfigDict(dict(hidden=(16, 16), num_classes=10))
  with pytest.raises(UserError, match='class count mismatch: model_kwargs.num_classes=10 but task'):
    sweeps.expand(config)


def test_sweep_file_with_syntax_error(tmp_path, capsys):
  bad = tmp_path / 'bad.py'
  bad.write_text('def get_config(:\n  pass\n')
  code, _, err = cli(['run', str(bad)], capsys)
  assert code == 2 and 'syntax error at line 1' in err and err.count('\n') == 1


def test_sweep_file_that_fails_on_import(tmp_path, capsys):
  bad = tmp_path / 'bad_import.py'
  bad.write_text('import numpy\nfrom nowhere import get_config\n')
  code, _, err = cli(['run', str(bad)], capsys)
  assert code == 2 and err.count('\n') == 1
  assert 'failed at line 2: ModuleNotFoundError' in err


def test_corrupt_record_gives_clear_error_in_status_and_is_redone_by_run(swept, data_dir, tmp_path, capsys):
  import shutil
  copy = tmp_path / 'copy'
  shutil.copytree(swept[0], copy)
  record = sorted((copy / 'runs').glob('*/record.json'))[0]
  record.write_text('{"run_id": "abc", "status": "comp')  # truncated by a crash of another tool
  with pytest.raises(UserError, match='corrupt result file .*record.json'):
    load_curves(copy)
  code, out, _ = cli(['status', str(copy)], capsys)
  assert code == 0 and '23 complete' in out and '1 corrupt' in out
  report = runner.run_sweep(tiny_config(data_dir), copy, progress=False)
  assert report.completed == 1
  assert list(record.parent.glob('record.json.corrupt-*'))  # set aside, not deleted
  assert load_curves(copy).run_id.nunique() == 24


@pytest.mark.parametrize('model, kwargs', [('cnn/tiny', {}), ('resnet/tiny', {})])
def test_conv_and_batch_norm_architectures_run_a_transfer_sweep(model, kwargs, data_dir, tmp_path):
  config = tiny_config(data_dir, model=model, seeds=1, n_layers=(1,), fine_tune=(False,),
                       conditions=('transfer',))
  config.model_kwargs = ml_collections.ConfigDict(kwargs)
  report = runner.run_sweep(config, tmp_path, progress=False)
  assert report.failed == [] and report.completed == 3  # baseA, baseB, AnB n=1
  store = ResultsStore(tmp_path)
  transfer_spec = [s for s in sweeps.expand(config) if s.condition == 'transfer'][0]
  runs.train_and_evaluate(transfer_spec, store, data_dir, keep_weights=True)
  trained, _ = runs.load_checkpoint(store.checkpoint_dir(transfer_spec.run_id))
  source, _ = runs.load_checkpoint(store.checkpoint_dir(transfer_spec.source_run))
  for collection in ('params', 'batch_stats'):  # layer1 frozen: weights and BN statistics as copied
    for a, b in zip(jax.tree.leaves(trained[collection].get('layer1', {})),
                    jax.tree.leaves(source[collection].get('layer1', {}))):
      np.testing.assert_array_equal(a, b)
  if model.startswith('resnet'):
    assert trained['batch_stats']['layer1']  # the ResNet's stem has batch-norm statistics


def test_streamed_data_set_trains_like_imagenet(tmp_path, monkeypatch):
  """The path of data sets too big for memory (imagenet2012): labels read without decoding,
  batches decoded and preprocessed per example on the host, evaluation streamed too."""
  from harness import data
  from tests.test_data import TinyImages
  TinyImages(data_dir=str(tmp_path), file_format='array_record').download_and_prepare()
  monkeypatch.setitem(data.DATASETS, 'tiny_stream', data.DatasetSpec(
      'tiny_images', preprocess=lambda image: image.astype(np.float32) / 255.0, in_memory=False,
      input_shape=(6, 6, 3)))
  config = tiny_config(str(tmp_path), seeds=1, n_layers=(1,), fine_tune=(False,), conditions=('transfer',))
  config.pairs = [dict(kind='random_halves', dataset='tiny_stream', split_seed=0)]
  results = tmp_path / 'results'
  report = runner.run_sweep(config, results, progress=False)
  assert report.failed == [] and report.completed == 3
  curves = load_curves(results)
  # Constant images per class: the base nets separate their 2 classes perfectly.
  assert curves[(curves.condition == 'scratch') & (curves.step == 12)].accuracy.min() == 1.0


def test_imagenet_config_has_the_published_design_and_solver():
  config = sweeps.load_sweep('yosinski2014_imagenet')
  assert (config.model, config.train.steps, config.train.batch_size, config.train.lr) == ('alexnet', 450_000, 256, 0.01)
  assert (config.train.momentum, config.train.weight_decay, config.train.lr_decay_every) == (0.9, 5e-4, 100_000)
  assert len(config.pairs) == 4 and config.directions == ('AB', 'BA')
  assert (config.train.lr_decay_factor, config.seeds, config.fine_tune) == (0.1, 1, (False, True))
  assert {p['kind'] for p in config.pairs} == {'random_halves'} and len({p['split_seed'] for p in config.pairs}) == 4
  assert config.conditions == ('selffer', 'transfer')


def test_imagenet_config_shrunk_runs_on_a_tiny_image_data_set(tmp_path, monkeypatch):
  """The full-scale sweep's design with arg='tiny', imagenet2012 pointed at a tiny PNG data set
  read the imagenet2012 way (streamed, decoded and center-cropped per example on the host)."""
  from harness import data
  from tests.test_data import TinyImages
  TinyImages(data_dir=str(tmp_path), file_format='array_record').download_and_prepare()
  monkeypatch.setitem(data.DATASETS, 'imagenet2012', data.DatasetSpec(
      'tiny_images', preprocess=data.center_crop_resize(5, 6), in_memory=False, input_shape=(5, 5, 3)))
  config = sweeps.load_sweep('yosinski2014_imagenet', 'tiny').copy_and_resolve_references()
  config.data_dir = str(tmp_path)
  specs = sweeps.expand(config)
  # One split, both directions: baseA, baseB, then BnB, BnB+, AnB, AnB+ (n = 1) per direction.
  assert len(specs) == 2 + 2 * 4
  report = runner.run_sweep(config, tmp_path / 'results', progress=False)
  assert report.failed == [] and report.completed == len(specs)
  curves = load_curves(tmp_path / 'results')
  assert sorted(curves['step'].unique()) == [0, 1, 2, 4]
  assert set(curves['target']) == {'imagenet2012_A0', 'imagenet2012_B0'}


def test_diverging_runs_are_failed_records_listed_by_status_and_excluded_by_analysis(data_dir, tmp_path, capsys):
  import analysis
  config = tiny_config(data_dir, seeds=1, n_layers=(1,), fine_tune=(False,), conditions=('random_frozen',))
  results = tmp_path / 'diverge'
  runner.run_sweep(config, results, progress=False)  # baseB + random_frozen, healthy
  config.train.lr = 1e4
  config.train.momentum = 0.0
  report = runner.run_sweep(config, results, progress=False)  # new specs: they diverge
  assert len(report.failed) == 2
  record = ResultsStore(results).read_record(report.failed[0])
  assert record['status'] == 'failed' and record['diverged_at_step'] > 0
  assert record['curve'] and record['curve'][-1]['step'] < record['diverged_at_step']
  assert main(['status', str(results)]) == 0
  out = capsys.readouterr().out
  assert '2 complete, 2 failed' in out and 'diverged at step' in out
  result = analysis.analyze(analysis.read_curves(results), k=2, n_boot=100)
  assert result.excluded == {'failed': 2}
  assert set(result.runs.run_id) == {s.run_id for s in sweeps.expand(tiny_config(
      data_dir, seeds=1, n_layers=(1,), fine_tune=(False,), conditions=('random_frozen',)))}
