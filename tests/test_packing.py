"""The engine's strategies (harness.engine): same curves as the per-run path, one program per family."""

import json
import os
import subprocess
import sys

import numpy as np
import pytest

from harness import compilation, conditions, engine, runner, runs, sweeps, transfer
from harness.engine import family as families
from harness.results import ResultsStore
from tests.test_sweeps import tiny_config


def _curves(store: ResultsStore, specs) -> dict:
  return {s.run_id: store.read_record(s.run_id)['curve'] for s in specs}


def _assert_same_curves(a: dict, b: dict, num_test: int):
  assert a.keys() == b.keys()
  for run_id in a:
    assert [p['step'] for p in a[run_id]] == [p['step'] for p in b[run_id]]
    for p, q in zip(a[run_id], b[run_id]):
      np.testing.assert_allclose(p['loss'], q['loss'], rtol=1e-4, atol=1e-5)
      assert abs(p['accuracy'] - q['accuracy']) <= 1.5 / num_test  # at most one example flips
      if p['step']:
        np.testing.assert_allclose(p['train_loss'], q['train_loss'], rtol=1e-4, atol=1e-5)


@pytest.fixture(scope='module')
def per_run(data_dir, tmp_path_factory):
  """The tiny sweep through the per-run path (runs.train_and_evaluate), the reference."""
  config = tiny_config(data_dir)
  results = tmp_path_factory.mktemp('per_run')
  config.execution.strategy = 'per_run'
  report = runner.run_sweep(config, results, progress=False)
  assert report.failed == [] and report.execution['remaining'] == len(sweeps.expand(config))
  return config, ResultsStore(results)


@pytest.mark.parametrize('strategy, pack_size', [('vmap', 5), ('sequential', 0), ('fused', 0)])
def test_packed_and_unpacked_training_give_the_per_run_curves(per_run, strategy, pack_size, data_dir, tmp_path):
  config, reference = per_run
  specs = sweeps.expand(config)
  config = tiny_config(data_dir)
  config.execution.strategy = strategy
  config.execution.pack_size = pack_size  # 5: packs of 5 runs, the last ones padded
  report = runner.run_sweep(config, tmp_path, progress=False)
  assert report.failed == [] and report.execution['remaining'] == 0
  store = ResultsStore(tmp_path)
  num_test = engine.device_task(specs[0].target, data_dir)[2][0].shape[0]
  _assert_same_curves(_curves(reference, specs), _curves(store, specs), num_test)
  record = store.read_record(specs[-1].run_id)
  assert record['execution']['strategy'] == strategy
  _assert_frozen_prefix_computed_once(store, specs, expected=strategy != 'vmap')
  assert set(record) >= set(reference.read_record(specs[-1].run_id))  # same format, plus execution
  # Base nets' checkpoints are written as by the per-run path (transfers read them).
  assert (tmp_path / 'runs' / specs[0].run_id / 'checkpoint' / 'meta.json').is_file()


def _assert_frozen_prefix_computed_once(store: ResultsStore, specs, expected: bool):
  """Runs with frozen leading layers trained on their outputs computed once (unpacked runs)."""
  for spec in specs:
    frozen = 0 if spec.fine_tuned or spec.condition == 'scratch' else spec.n_layers
    done = store.read_record(spec.run_id)['execution']['frozen_prefix_computed_once']
    assert done == (frozen if expected else 0), (spec.run_id, done)


@pytest.mark.parametrize('model', ['resnet/tiny', 'cnn/tiny'])
def test_frozen_prefix_outputs_computed_once_give_the_per_run_curves(model, data_dir, tmp_path):
  """Convs, pooling and (frozen) batch norm: training on a frozen prefix's outputs computed once
  equals training through the frozen layers at every step."""
  curves = {}
  for strategy in ('per_run', 'sequential'):
    config = tiny_config(data_dir, seeds=1, model=model, n_layers=(1, 2))
    config.model_kwargs = {}
    config.train.lr = 0.02  # at 0.1, batch norm on 32 examples amplified rounding 1e3x in 4 steps
    config.execution.strategy = strategy
    report = runner.run_sweep(config, tmp_path / strategy, progress=False)
    assert report.failed == []
    store = ResultsStore(tmp_path / strategy)
    specs = sweeps.expand(config)
    curves[strategy] = _curves(store, specs)
  _assert_frozen_prefix_computed_once(store, specs, expected=True)
  num_test = engine.device_task(specs[0].target, data_dir)[2][0].shape[0]
  _assert_same_curves(curves['per_run'], curves['sequential'], num_test)


def test_concurrent_runs_give_the_same_records_and_reuse_frozen_outputs(per_run, data_dir, tmp_path):
  """Runs trained two at a time in threads give the records of one at a time, each run trained
  once; the n = 2 run of a source continues from the n = 1 run's frozen-layer outputs."""
  config, reference = per_run
  specs = sweeps.expand(config)
  curves = {}
  for threads in (1, 2):
    config = tiny_config(data_dir)
    config.execution.strategy = 'fused'
    config.execution.concurrent_runs = threads
    report = runner.run_sweep(config, tmp_path / str(threads), progress=False)
    assert report.failed == [] and report.execution['concurrent_runs'] == threads
    store = ResultsStore(tmp_path / str(threads))
    curves[threads] = _curves(store, specs)
    for spec in specs:
      assert [a['event'] for a in store.attempts(spec.run_id)] == ['start', 'end'], spec.run_id
      assert store.read_record(spec.run_id)['execution']['concurrent_runs'] == threads
    if threads == 1:  # in sweep order: n = 1 then n = 2 of each source
      for spec in specs:
        frozen = 0 if spec.fine_tuned or spec.condition == 'scratch' else spec.n_layers
        reused = store.read_record(spec.run_id)['execution']['frozen_prefix_reused']
        assert reused == max(0, frozen - 1), (spec.describe(), reused)
  assert curves[1] == curves[2]  # the same programs on the same inputs: equal to the bit
  num_test = engine.device_task(specs[0].target, data_dir)[2][0].shape[0]
  _assert_same_curves(_curves(reference, specs), curves[2], num_test)


def test_prefix_keys_identify_equal_leading_layers(data_dir):
  """Leading layers start equal exactly when copied from one source network, or initialised
  with one seed's key."""
  specs = sweeps.expand(tiny_config(data_dir))  # MLP: layer1, layer2, head

  def keys(condition, n, seed):
    spec, = [s for s in specs if (s.condition, s.n_layers, s.seed, s.fine_tuned)
             == (condition, n, seed, False)]
    return engine.prefix_keys(spec, conditions.make_plan(condition, n, False, 3))

  bnb1, bnb2, anb1 = keys('selffer', 1, 0), keys('selffer', 2, 0), keys('transfer', 1, 0)
  assert len(bnb1) == 2 and bnb1[0] == bnb2[0] and bnb1[1] != bnb2[1]  # layer 2: own init, copied
  assert anb1[0] != bnb1[0] and keys('selffer', 1, 1)[0] != bnb1[0]  # other source networks
  assert keys('random_frozen', 1, 0) == keys('random_frozen', 2, 0)  # one seed's initial weights
  assert keys('random_frozen', 1, 1)[0] != keys('random_frozen', 1, 0)[0]


def test_prefix_keys_tell_fresh_layers_from_own_init(data_dir):
  """A re-initialised layer starts from another draw than the layer's own init: runs must not
  share its frozen outputs."""
  spec = [s for s in sweeps.expand(tiny_config(data_dir)) if s.condition == 'random_frozen'][0]
  frozen = np.array([0, 0, 1], np.float32)
  own = transfer.Plan(copy=np.zeros(3, np.float32), train=frozen)
  fresh = transfer.Plan(copy=np.zeros(3, np.float32), train=frozen,
                        fresh=np.array([0, 1, 0], np.float32))
  own_keys, fresh_keys = engine.prefix_keys(spec, own), engine.prefix_keys(spec, fresh)
  assert own_keys[0] == fresh_keys[0] and own_keys[1] != fresh_keys[1]


def test_one_training_program_per_family(per_run, data_dir, tmp_path):
  """Every condition, n, seed and both tasks of the pair (padded to one shape) share programs."""
  config = tiny_config(data_dir)
  config.execution.strategy = 'fused'  # vmap: one program per pack size (see next test)
  config.model_kwargs.hidden = (16, 13)  # a model no other test compiled in this process
  report = runner.run_sweep(config, tmp_path, progress=False)
  execution = json.loads((tmp_path / 'execution.json').read_text())
  assert execution == report.execution
  assert report.completed == 24 and execution['families'] == 1
  # One program per run: initial weights and copied layers, the frozen layers' outputs (a branch
  # per number of frozen layers), every training step and evaluation.
  assert execution['programs_compiled'] == 1


@pytest.mark.parametrize('strategy,size', [('fused', 1), ('vmap', 3)])
def test_program_compiled_from_shapes_is_the_one_runs_call(strategy, size, data_dir, tmp_path):
  """_compile_ahead compiles before the family's data exists; the packs' calls reuse it."""
  config = tiny_config(data_dir)
  config.model_kwargs.hidden = (16, 11) if strategy == 'fused' else (16, 9)  # new to this process
  spec = sweeps.expand(config)[0]
  chosen = engine.choose_strategy(strategy, 'cpu', spec.model)
  family = families.make_family(spec, str(data_dir), chosen.depths)
  with compilation.CompileCounter() as ahead:
    chosen.compile_ahead(family, size)
  assert ahead.xla + ahead.cache_hits >= 1
  assert family.built is None  # compiled from shapes alone
  specs = [s for s in sweeps.expand(config) if s.condition == 'scratch'][:size]
  inputs = families.run_inputs(specs, family, ResultsStore(tmp_path), chosen.packs)
  with compilation.CompileCounter() as call:
    _, metrics, _ = chosen.call(family, inputs)
  assert call.xla + call.cache_hits == 0  # the call found the program compiled
  assert chosen.program(family)._cache_size() == 1
  assert np.all(np.isfinite(metrics[..., :2]))  # accuracy and test loss (train loss: NaN at step 0)


def test_frozen_outputs_read_the_training_rows_in_place(data_dir):
  """Computing a run's frozen-layer outputs inside the program makes no copy of the training or
  test rows: the program's scratch memory is well under their size (docs/performance.md)."""
  config = tiny_config(data_dir)
  config.model_kwargs.hidden = (16, 7)  # a model no other test compiled in this process
  spec = sweeps.expand(config)[0]
  chosen = engine.choose_strategy('fused', 'cpu', spec.model)
  family = families.make_family(spec, str(data_dir), chosen.depths)
  assert family.depths.switch and family.depths.depths == (0, 1, 2)
  shapes = family.shapes
  rows_bytes = lambda a: int(np.prod(a.shape)) * a.dtype.itemsize
  inputs = rows_bytes(shapes.x_train) + rows_bytes(shapes.x_test)
  compiled = chosen.compile_ahead(family, 1)
  assert compiled.memory_analysis().temp_size_in_bytes < inputs / 2


def test_balanced_packs_pad_little():
  assert engine.balanced_pack_size(1, 8) == 1      # a lone base net is not padded to 8
  assert engine.balanced_pack_size(15, 8) == 8     # 2 packs: 1 slot of padding
  assert engine.balanced_pack_size(17, 8) == 6     # 3 packs of 6, not 3 of 8
  assert engine.balanced_pack_size(3, 8, devices=4) == 4
  for n in range(1, 40):
    size = engine.balanced_pack_size(n, 8)
    packs = -(-n // size)
    assert size <= 8 and packs == -(-n // 8) and packs * size - n < packs


def test_strategy_choice_per_backend_and_override():
  assert engine.choose_strategy('auto', 'cpu', 'mlp/3x256').name == 'fused'
  assert engine.choose_strategy('auto', 'cpu', 'cnn/small').name == 'sequential'
  assert engine.choose_strategy('auto', 'gpu', 'cnn/small').name == 'vmap'
  assert engine.choose_strategy('fused', 'gpu', 'cnn/small').name == 'fused'
  from harness.errors import UserError
  with pytest.raises(UserError, match='unknown execution strategy'):
    engine.choose_strategy('fastest', 'cpu', 'mlp')


def test_bucket_pads_little_and_shares_shapes():
  assert engine.bucket(29886) == engine.bucket(30114) == 30720
  for n in (1, 17, 1000, 5000, 12345, 60000):
    assert n <= engine.bucket(n) <= n * 1.125 + 1


_SHARDED = r'''
import json, sys
import jax
from harness import runner, sweeps
from harness.results import ResultsStore
from tests.test_sweeps import tiny_config
assert jax.device_count() == 4, jax.devices()
config = tiny_config(sys.argv[1], seeds=1, n_layers=(1,), fine_tune=(False, True))
config.execution.strategy = 'vmap'
config.execution.pack_size = 2   # rounded up to 4: one run per device
report = runner.run_sweep(config, sys.argv[2], progress=False)
store = ResultsStore(sys.argv[2])
print(json.dumps({s.run_id: store.read_record(s.run_id)['curve'] for s in sweeps.expand(config)}))
'''


def test_runs_sharded_across_four_devices_give_the_same_curves(per_run, data_dir, tmp_path):
  """The pack's run axis split over 4 (forced host) devices with jax.sharding."""
  env = {**os.environ, 'XLA_FLAGS': '--xla_force_host_platform_device_count=4',
         'JAX_PLATFORMS': 'cpu', 'PYTHONPATH': os.getcwd()}
  out = subprocess.run([sys.executable, '-c', _SHARDED, str(data_dir), str(tmp_path / 'res')],
                       env=env, capture_output=True, text=True, timeout=300)
  assert out.returncode == 0, out.stderr[-3000:]
  sharded = json.loads(out.stdout.strip().splitlines()[-1])
  config, reference = per_run
  specs = [s for s in sweeps.expand(config) if s.run_id in sharded]
  assert len(specs) == len(sharded) == 7  # baseA, baseB; BnB, BnB+, AnB, AnB+, random at n=1
  num_test = engine.device_task(specs[0].target, data_dir)[2][0].shape[0]
  _assert_same_curves(_curves(reference, specs), sharded, num_test)


def _new_field_plans(spec, num_layers):
  """Plans using every new field, in place of the tiny sweep's n = 1 conditions (seed 0):
  a multiplier of 0.5 on a copied layer, a fresh layer, and two phase schedules (head only then
  all; layer 1 frozen throughout, layer 2 from half-way)."""
  plan = conditions.make_plan(spec.condition, spec.n_layers, spec.fine_tuned, num_layers)
  if spec.n_layers != 1 or spec.seed != 0:
    return plan
  ones = np.ones(num_layers, np.float32)
  if spec.condition == 'selffer' and spec.fine_tuned:
    return transfer.Plan(copy=plan.copy, train=np.array([0.5, 1, 1], np.float32))
  if spec.condition == 'transfer' and spec.fine_tuned:
    return transfer.Plan(copy=plan.copy, train=ones, fresh=np.array([0, 1, 0], np.float32))
  if spec.condition == 'transfer':
    return transfer.Plan(copy=plan.copy, train=np.array([0, 0, 1], np.float32),
                         phases=(transfer.Phase(0.5, ones),))
  if spec.condition == 'random_frozen':
    return transfer.Plan(copy=plan.copy, train=np.array([0, 0, 1], np.float32),
                         phases=(transfer.Phase(0.5, np.array([0, 1, 1], np.float32)),))
  return plan


@pytest.fixture(scope='module')
def new_field_runs(data_dir, tmp_path_factory):
  """The tiny sweep (seed 0, n = 1) with :func:`_new_field_plans`, per strategy."""
  from harness.engine import semantics
  config = tiny_config(data_dir, seeds=1, n_layers=(1,))
  config.model_kwargs.hidden = (16, 15)  # other programs than the other tests'
  stores = {}

  def run(name, strategy, pack_size=0):
    config.execution.strategy = strategy
    config.execution.pack_size = pack_size
    stores[name] = ResultsStore(tmp_path_factory.mktemp(name))
    assert runner.run_sweep(config, stores[name].root, progress=False).failed == []

  run('unpatched', 'fused')
  patch = pytest.MonkeyPatch()
  patch.setattr(semantics, 'plan_of', _new_field_plans)
  try:
    for strategy, pack_size in (('per_run', 0), ('fused', 0), ('vmap', 4), ('sequential', 0)):
      run(strategy, strategy, pack_size)
  finally:
    patch.undo()
  return config, stores


@pytest.mark.parametrize('strategy', ['fused', 'vmap', 'sequential'])
def test_multipliers_fresh_layers_and_phases_give_the_per_run_curves(new_field_runs, strategy,
                                                                     data_dir):
  config, stores = new_field_runs
  specs = sweeps.expand(config)
  num_test = engine.device_task(specs[0].target, data_dir)[2][0].shape[0]
  _assert_same_curves(_curves(stores['per_run'], specs), _curves(stores[strategy], specs), num_test)
  # Only layers frozen in every phase are computed once (the phased random_frozen: layer 1).
  computed = {(s.condition, s.fine_tuned): stores[strategy].read_record(s.run_id)['execution']
              ['frozen_prefix_computed_once'] for s in specs}
  expected = strategy != 'vmap'
  assert computed[('random_frozen', False)] == expected and computed[('transfer', False)] == 0
  assert computed[('selffer', False)] == expected  # unchanged plan: layer 1 frozen throughout


def test_new_plan_fields_change_the_curves(new_field_runs):
  """The patched plans were used: their runs' curves differ from the unpatched sweep's."""
  config, stores = new_field_runs
  specs = sweeps.expand(config)
  changed = [s for s in specs if s.condition != 'scratch'
             and not (s.condition == 'selffer' and not s.fine_tuned)]
  assert len(changed) == 4
  patched, unpatched = _curves(stores['fused'], specs), _curves(stores['unpatched'], specs)
  for spec in specs:
    assert (patched[spec.run_id] != unpatched[spec.run_id]) == (spec in changed), spec.describe()


@pytest.fixture(scope='module')
def head_copy_runs(data_dir, tmp_path_factory):
  """The tiny sweep (seed 0) with the head-copying conditions (surgical n = 1..3, full
  fine-tuning), per strategy: digits' random halves have 5 classes each, so the heads fit."""
  config = tiny_config(data_dir, seeds=1, conditions=(conditions.SURGICAL, conditions.FULL_FINETUNE))
  config.model_kwargs.hidden = (16, 14)  # other programs than the other tests'
  stores = {}
  for strategy, pack_size in (('per_run', 0), ('fused', 0), ('vmap', 4), ('sequential', 0)):
    config.execution.strategy = strategy
    config.execution.pack_size = pack_size
    stores[strategy] = ResultsStore(tmp_path_factory.mktemp(f'head_{strategy}'))
    assert runner.run_sweep(config, stores[strategy].root, progress=False).failed == []
  return config, stores


@pytest.mark.parametrize('strategy', ['fused', 'vmap', 'sequential'])
def test_head_copying_plans_give_the_per_run_curves(head_copy_runs, strategy, data_dir):
  config, stores = head_copy_runs
  specs = sweeps.expand(config)
  num_test = engine.device_task(specs[0].target, data_dir)[2][0].shape[0]
  _assert_same_curves(_curves(stores['per_run'], specs), _curves(stores[strategy], specs), num_test)
  surgical_head = next(s for s in specs if s.condition == conditions.SURGICAL and s.n_layers == 3)
  computed = stores[strategy].read_record(surgical_head.run_id)['execution']
  # Layers 1-2 frozen: their outputs computed once, except by vmap (no frozen-prefix branches).
  assert computed['frozen_prefix_computed_once'] == (2 if strategy != 'vmap' else 0)


def test_head_copying_runs_start_from_the_whole_source_network(head_copy_runs):
  """Every head-copying run starts as the source network (step 0 equal across them, the head
  included), and the surgical runs then move apart: each trains another layer."""
  config, stores = head_copy_runs
  specs = sweeps.expand(config)
  curves = _curves(stores['per_run'], specs)
  copying = [s for s in specs if conditions.get(s.condition).copies_head]
  assert sorted(s.n_layers for s in copying) == [1, 2, 3, 3]
  starts = {(curves[s.run_id][0]['step'], curves[s.run_id][0]['loss']) for s in copying}
  assert len(starts) == 1 and next(iter(starts))[0] == 0
  base = next(s for s in specs if s.condition == conditions.BASE and s.target == copying[0].target)
  assert curves[base.run_id][0]['loss'] not in {loss for _, loss in starts}
  finals = {curves[s.run_id][-1]['loss'] for s in copying}
  assert len(finals) == len(copying)
