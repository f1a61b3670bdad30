"""The condition registry: every row's plans against hand-written vectors, its errors, no JAX."""

import subprocess
import sys

import numpy as np
import pytest

from harness import conditions
from harness.errors import UserError

# (condition, n, fine_tuned) -> (copy, train) for a model of L = 4 layers, written out by hand from
# the definitions in the paper (and, for reinit_head, "re-initialise only the head, fine-tune all").
EXPECTED_L4 = {
    ('scratch', 0, False): ([0, 0, 0, 0], [1, 1, 1, 1]),
    ('selffer', 1, False): ([1, 0, 0, 0], [0, 1, 1, 1]),
    ('selffer', 2, False): ([1, 1, 0, 0], [0, 0, 1, 1]),
    ('selffer', 3, False): ([1, 1, 1, 0], [0, 0, 0, 1]),
    ('selffer', 1, True): ([1, 0, 0, 0], [1, 1, 1, 1]),
    ('selffer', 2, True): ([1, 1, 0, 0], [1, 1, 1, 1]),
    ('selffer', 3, True): ([1, 1, 1, 0], [1, 1, 1, 1]),
    ('transfer', 1, False): ([1, 0, 0, 0], [0, 1, 1, 1]),
    ('transfer', 2, False): ([1, 1, 0, 0], [0, 0, 1, 1]),
    ('transfer', 3, False): ([1, 1, 1, 0], [0, 0, 0, 1]),
    ('transfer', 1, True): ([1, 0, 0, 0], [1, 1, 1, 1]),
    ('transfer', 2, True): ([1, 1, 0, 0], [1, 1, 1, 1]),
    ('transfer', 3, True): ([1, 1, 1, 0], [1, 1, 1, 1]),
    ('random_frozen', 1, False): ([0, 0, 0, 0], [0, 1, 1, 1]),
    ('random_frozen', 2, False): ([0, 0, 0, 0], [0, 0, 1, 1]),
    ('random_frozen', 3, False): ([0, 0, 0, 0], [0, 0, 0, 1]),
    ('reinit_head', 3, False): ([1, 1, 1, 0], [1, 1, 1, 1]),
    ('lp_then_ft', 3, False): ([1, 1, 1, 0], [0, 0, 0, 1]),  # first phase: the linear probe
    # Lee et al. 2023: every layer copied, the head too; tune only layer n, or every layer.
    ('surgical', 1, False): ([1, 1, 1, 1], [1, 0, 0, 0]),
    ('surgical', 2, False): ([1, 1, 1, 1], [0, 1, 0, 0]),
    ('surgical', 3, False): ([1, 1, 1, 1], [0, 0, 1, 0]),
    ('surgical', 4, False): ([1, 1, 1, 1], [0, 0, 0, 1]),
    ('full_finetune', 4, False): ([1, 1, 1, 1], [1, 1, 1, 1]),
}
HEAD_COPIERS = {'surgical', 'full_finetune'}
# Later phases, (start, train), written out by hand: LP-FT (Kumar et al. 2022) trains every layer
# from the middle of the run, at a tenth of the learning rate.
PHASES_L4 = {('lp_then_ft', 3, False): ((0.5, [0.1, 0.1, 0.1, 0.1]),)}


def _every_valid_combination(num_layers):
  for name in conditions.CONDITIONS:
    for n in conditions.allowed_n(name, num_layers):
      for fine_tuned in (False, True) if conditions.get(name).fine_tunable else (False,):
        yield name, n, fine_tuned


def test_every_registry_plan_matches_the_hand_written_vectors():
  combinations = set(_every_valid_combination(4))
  assert combinations == set(EXPECTED_L4)  # a new row needs its vectors here
  for (name, n, fine_tuned), (copy, train) in EXPECTED_L4.items():
    plan = conditions.make_plan(name, n, fine_tuned, 4)
    np.testing.assert_array_equal(plan.copy, copy, err_msg=f'{name} n={n} ft={fine_tuned}')
    np.testing.assert_array_equal(plan.train, train, err_msg=f'{name} n={n} ft={fine_tuned}')
    assert plan.copy.dtype == plan.train.dtype == np.float32
    assert plan.fresh is None
    phases = PHASES_L4.get((name, n, fine_tuned), ())
    assert [p.start for p in plan.phases] == [start for start, _ in phases]
    for phase, (_, train_later) in zip(plan.phases, phases):
      np.testing.assert_allclose(phase.train, train_later)
      assert phase.train.dtype == np.float32
    assert plan.copy_head == (name in HEAD_COPIERS)


@pytest.mark.parametrize('num_layers', [2, 3, 8])
def test_only_declared_plans_copy_the_head_and_every_n_is_valid(num_layers):
  for name, n, fine_tuned in _every_valid_combination(num_layers):
    plan = conditions.make_plan(name, n, fine_tuned, num_layers)
    assert plan.copy.shape == plan.train.shape == (num_layers,)
    assert conditions.get(name).copies_head == plan.copy_head == (name in HEAD_COPIERS)
    if plan.copy_head:  # everything copied; one layer trained (surgical) or all (full FT)
      assert plan.copy.all() and plan.train.sum() in (1, num_layers)
    else:
      assert plan.copy[-1] == 0 and plan.train[-1] == 1  # the head: own init, always trained


def test_allowed_n_per_rule():
  assert conditions.allowed_n('scratch', 8) == (0,)
  assert conditions.allowed_n('transfer', 8) == (1, 2, 3, 4, 5, 6, 7)
  assert conditions.allowed_n('reinit_head', 8) == (7,)
  assert conditions.allowed_n('surgical', 4) == (1, 2, 3, 4)
  assert conditions.allowed_n('full_finetune', 4) == (4,)
  assert conditions.sweep_n('surgical', 4, ()) == (1, 2, 3, 4)


@pytest.mark.parametrize('name, n, fine_tuned, message', [
    ('frozen', 1, False, "unknown condition 'frozen': choose one of scratch, selffer, transfer, "
                         "random_frozen, reinit_head, lp_then_ft, surgical, full_finetune"),
    ('scratch', 1, False, 'condition scratch takes n_layers=0 and fine_tuned=False'),
    ('scratch', 0, True, 'condition scratch takes n_layers=0 and fine_tuned=False'),
    ('selffer', 0, False, r'n=0 is out of range for selffer: .* so use 1 <= n <= 3'),
    ('transfer', 4, True, r'n=4 is out of range for transfer: this model has 3 transferable'),
    ('random_frozen', 1, True, 'random_frozen has no fine-tuned version'),
    ('reinit_head', 2, False, r'n=2 is out of range for reinit_head: .* so n = L-1 = 3'),
    ('reinit_head', 3, True, 'reinit_head has no fine-tuned version: .* use fine_tuned=False'),
    ('lp_then_ft', 3, True, 'lp_then_ft has no fine-tuned version: .* use fine_tuned=False'),
    ('surgical', 0, False, r'n=0 is out of range for surgical: .* use 1 <= n <= 4 \(n = 4: the head\)'),
    ('surgical', 2, True, 'surgical has no fine-tuned version'),
    ('full_finetune', 3, False, r'n=3 is out of range for full_finetune: .* n = L = 4'),
])
def test_bad_conditions_are_user_errors_that_name_the_fix(name, n, fine_tuned, message):
  with pytest.raises(UserError, match=message):
    conditions.make_plan(name, n, fine_tuned, 4)


def test_sweep_n_applies_n_layers_only_to_conditions_with_a_free_n():
  assert conditions.sweep_n('transfer', 4, ()) == (1, 2, 3)
  assert conditions.sweep_n('transfer', 4, (2,)) == (2,)
  assert conditions.sweep_n('reinit_head', 4, (1,)) == (3,)
  assert conditions.sweep_n('scratch', 4, (1, 2)) == (0,)
  with pytest.raises(UserError, match='n=5 is out of range for random_frozen'):
    conditions.sweep_n('random_frozen', 4, (1, 5))


def test_labels_and_styles_cover_each_other_and_are_unique():
  labels = conditions.labels()
  assert labels[('transfer', True)] == 'AnB+' and labels[('scratch', False)] == 'base'
  assert len(set(labels.values())) == len(labels)
  assert set(conditions.styles()) == set(labels.values())
  assert conditions.label('selffer', True) == 'BnB+'
  with pytest.raises(UserError, match='scratch has no fine-tuned variant'):
    conditions.label('scratch', True)


def test_rows_are_consistent():
  for row in conditions.TABLE.values():
    assert row.source in conditions.SOURCE_ROLES and row.n_rule in conditions.N_RULES
    assert row.label_fine_tuned or not row.fine_tunable  # a trained variant has a label
    assert bool(row.no_fine_tune) != row.fine_tunable  # an error exactly where there is no variant
    assert (row.style_fine_tuned is None) == (row.label_fine_tuned is None)
  assert conditions.BASE == 'scratch'
  assert conditions.with_source(conditions.OTHER_TASK) == (
      'transfer', 'reinit_head', 'lp_then_ft', 'surgical', 'full_finetune')
  assert conditions.source_column('random_frozen', None) == 'random'
  assert conditions.source_column('scratch', None) == 'none'
  assert conditions.source_column('transfer', 'mnist_A0') == 'mnist_A0'


def test_the_registry_imports_no_jax():
  code = 'import sys, harness.conditions; assert "jax" not in sys.modules, "jax imported"'
  subprocess.run([sys.executable, '-c', code], check=True)


def test_a_sweep_runs_a_new_condition_by_naming_it(data_dir):
  from harness import sweeps
  from tests.test_sweeps import tiny_config
  specs = sweeps.expand(tiny_config(data_dir, conditions=('reinit_head',), n_layers=(1,), seeds=1))
  base_b, base_a, reinit = specs  # the other task's base net is trained: reinit_head copies it
  assert (base_b.condition, base_a.condition) == ('scratch', 'scratch')
  assert (reinit.condition, reinit.n_layers, reinit.fine_tuned) == ('reinit_head', 2, False)
  assert reinit.source_run == base_a.run_id and reinit.source == base_a.target != reinit.target


def test_reinit_head_runs_through_a_sweep_and_equals_anb_plus_at_n_l_minus_1(data_dir, tmp_path):
  """The new row end to end: the sweep names it, the engine runs its plan. Its plan is AnB+'s at
  n = L-1 with the same source network and init, so the curves must be equal, bit for bit."""
  from harness import load_curves, runner, sweeps
  from tests.test_sweeps import tiny_config
  config = tiny_config(data_dir, conditions=('transfer', 'reinit_head'), seeds=1)
  specs = sweeps.expand(config)
  reinit = [s for s in specs if s.condition == 'reinit_head']
  anb_plus = next(s for s in specs
                  if s.condition == 'transfer' and s.n_layers == 2 and s.fine_tuned)
  assert [(s.n_layers, s.fine_tuned) for s in reinit] == [(2, False)]  # mlp 16-16-head: L-1 = 2
  assert reinit[0].source_run == anb_plus.source_run
  report = runner.run_sweep(config, tmp_path, progress=False)
  assert report.failed == [] and report.completed == len(specs) == 7
  curves = load_curves(tmp_path)
  mine = curves[curves.condition == 'reinit_head'].sort_values('step')
  theirs = curves[curves.run_id == anb_plus.run_id].sort_values('step')
  assert set(mine.source) == {anb_plus.source.name}
  np.testing.assert_array_equal(mine.accuracy.to_numpy(), theirs.accuracy.to_numpy())
  np.testing.assert_array_equal(mine.loss.to_numpy(), theirs.loss.to_numpy())


def test_lp_ft_probes_then_fine_tunes_alike_in_the_engine_and_the_per_run_path(data_dir, tmp_path):
  """LP-FT's first phase is LP (same source, init and batches: equal curves before the switch at
  step 6 of 12), its second trains the body; the per-run path (which the lp_ft study trains it
  with, weights kept) gives the engine's curve."""
  import shutil
  from harness import load_curves, runner, runs, sweeps
  from harness.results import ResultsStore
  from tests.test_sweeps import tiny_config
  config = tiny_config(data_dir, conditions=('transfer', 'lp_then_ft'), fine_tune=(False,), seeds=1)
  specs = sweeps.expand(config)
  lp_ft = next(s for s in specs if s.condition == 'lp_then_ft')
  lp = next(s for s in specs if s.condition == 'transfer' and s.n_layers == lp_ft.n_layers)
  assert runner.run_sweep(config, tmp_path / 'engine', progress=False).failed == []
  curves = load_curves(tmp_path / 'engine')
  mine, theirs = (curves[curves.run_id == s.run_id].set_index('step').accuracy for s in (lp_ft, lp))
  np.testing.assert_array_equal(mine.loc[:4].to_numpy(), theirs.loc[:4].to_numpy())
  losses = [curves[curves.run_id == s.run_id].set_index('step').loss for s in (lp_ft, lp)]
  assert losses[0].loc[12] != losses[1].loc[12]  # the body trained in the second phase
  per_run = ResultsStore(tmp_path / 'per_run')
  shutil.copytree(tmp_path / 'engine' / 'runs' / lp_ft.source_run,
                  tmp_path / 'per_run' / 'runs' / lp_ft.source_run)
  runs.train_and_evaluate(lp_ft, per_run, str(data_dir), keep_weights=True)
  again = load_curves(tmp_path / 'per_run').query('run_id == @lp_ft.run_id')
  again = again.set_index('step').accuracy
  np.testing.assert_allclose(again.to_numpy(), mine.to_numpy(), atol=1e-6)
  assert (per_run.checkpoint_dir(lp_ft.run_id) / 'meta.json').is_file()
