"""Transfer mechanics: plans, copying, masked optimizer (frozen = no update and no weight decay)."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from harness import conditions, models, training, transfer
from harness.errors import UserError


def _leaves_equal(a, b):
  return all(bool(jnp.array_equal(x, y)) for x, y in zip(jax.tree.leaves(a), jax.tree.leaves(b)))


@pytest.mark.parametrize('condition, n, ft, copy, train', [
    ('scratch', 0, False, [0, 0, 0, 0], [1, 1, 1, 1]),
    ('selffer', 2, False, [1, 1, 0, 0], [0, 0, 1, 1]),
    ('transfer', 3, False, [1, 1, 1, 0], [0, 0, 0, 1]),
    ('transfer', 1, True, [1, 0, 0, 0], [1, 1, 1, 1]),
    ('random_frozen', 2, False, [0, 0, 0, 0], [0, 0, 1, 1]),
])
def test_plans(condition, n, ft, copy, train):
  plan = conditions.make_plan(condition, n, ft, num_layers=4)
  np.testing.assert_array_equal(plan.copy, copy)
  np.testing.assert_array_equal(plan.train, train)


@pytest.mark.parametrize('condition, n, ft, message', [
    ('transfer', 4, False, 'n=4 is out of range'),   # n = L would copy the head
    ('selffer', 0, False, 'n=0 is out of range'),
    ('random_frozen', 1, True, 'no fine-tuned version'),
    ('frozen', 1, False, "unknown condition 'frozen'"),
])
def test_invalid_conditions(condition, n, ft, message):
  with pytest.raises(UserError, match=message):
    conditions.make_plan(condition, n, ft, num_layers=4)


def _setup(name='resnet/tiny', shape=(8, 8, 1)):
  model = models.build_model(name, 3)
  names = models.layer_names(model.num_layers)
  init = models.init_variables(model, jax.random.key(0), shape)
  source = models.init_variables(models.build_model(name, 7), jax.random.key(1), shape)
  return model, names, init, source


def test_copied_layers_equal_source_and_head_is_never_copied():
  model, names, init, source = _setup()
  plan = conditions.make_plan('transfer', model.num_layers - 1, False, model.num_layers)
  combined = transfer.combine(init, source, plan, names)
  for layer in names[:-1]:
    assert _leaves_equal(combined['params'][layer], source['params'][layer])
    assert _leaves_equal(combined['batch_stats'][layer], source['batch_stats'][layer])
  assert _leaves_equal(combined['params']['head'], init['params']['head'])
  assert combined['params']['head']['kernel'].shape[-1] == 3  # the source head has 7 classes


def test_declared_plans_copy_the_head_and_others_may_not():
  model, names, init, _ = _setup()
  source = models.init_variables(models.build_model('resnet/tiny', 3), jax.random.key(1), (8, 8, 1))
  L = model.num_layers
  for plan in (conditions.make_plan('surgical', 2, False, L),
               conditions.make_plan('full_finetune', L, False, L)):
    assert plan.copy_head
    combined = transfer.combine(init, source, plan, names)
    for layer in names:  # every layer from the source, the head included
      assert _leaves_equal(combined['params'][layer], source['params'][layer])
  undeclared = transfer.Plan(copy=np.ones(L, np.float32), train=np.ones(L, np.float32))
  with pytest.raises(ValueError, match='declare it'):
    transfer.combine(init, source, undeclared, names)


def test_copying_the_head_of_another_class_count_is_a_user_error():
  model, names, init, source = _setup()  # the source head has 7 classes, the target's 3
  plan = conditions.make_plan('full_finetune', model.num_layers, False, model.num_layers)
  with pytest.raises(UserError, match="needs a target with the source's number of classes"):
    transfer.combine(init, source, plan, names)


def test_a_sweep_refuses_a_head_copy_between_tasks_of_other_class_counts(data_dir):
  from harness import sweeps
  from tests.test_sweeps import tiny_config
  config = tiny_config(data_dir, conditions=('surgical',), seeds=1,
                       pairs=[dict(kind='datasets', source='digits',
                                   target='digits@subpop1')])
  with pytest.raises(UserError, match='surgical copies the head, but the source task digits has '
                     '10 classes and the target digits@subpop1 5'):
    sweeps.expand(config)


def test_layers_not_copied_keep_the_target_init():
  model, names, init, source = _setup()
  plan = conditions.make_plan('selffer', 1, False, model.num_layers)
  combined = transfer.combine(init, source, plan, names)
  assert _leaves_equal(combined['params']['layer1'], source['params']['layer1'])
  for layer in names[1:]:
    assert _leaves_equal(combined['params'][layer], init['params'][layer])


def test_copy_from_another_architecture_is_a_user_error():
  model, names, init, _ = _setup()
  other = models.init_variables(models.build_model('resnet/small', 3), jax.random.key(1), (8, 8, 1))
  plan = conditions.make_plan('transfer', 1, False, model.num_layers)
  with pytest.raises(UserError, match='another architecture'):
    transfer.combine(init, other, plan, names)


def _train(model, names, variables, plan, steps=5, weight_decay=5e-4, lr=0.1):
  tx = training.make_optimizer(lr, 0.9, weight_decay)
  state = training.create_state(variables, plan, names, tx, jax.random.key(2))
  rng = np.random.default_rng(0)
  x = jnp.asarray(rng.normal(size=(64, 8, 8, 1)), jnp.float32)
  y = jnp.asarray(rng.integers(0, 3, 64), jnp.int32)
  state, curve = training.train_loop(model, tx, state, (x, y), (x, y), steps=steps, batch_size=16,
                                     eval_every=2, data_rng=rng)
  return state, curve


def test_frozen_layers_bit_identical_while_trained_layers_change():
  model, names, init, source = _setup()
  plan = conditions.make_plan('transfer', 2, False, model.num_layers)
  start = transfer.combine(init, source, plan, names)
  state, _ = _train(model, names, start, plan)
  for layer in names[:2]:  # copied and frozen: weights and batch-norm statistics untouched
    assert _leaves_equal(state.params[layer], start['params'][layer])
    assert _leaves_equal(state.batch_stats[layer], start['batch_stats'][layer])
  for layer in names[2:]:  # re-initialised and trained
    assert not _leaves_equal(state.params[layer], start['params'][layer])


def test_fine_tuned_copied_layers_change():
  model, names, init, source = _setup()
  plan = conditions.make_plan('transfer', 2, True, model.num_layers)
  start = transfer.combine(init, source, plan, names)
  state, _ = _train(model, names, start, plan)
  for layer in names:
    assert not _leaves_equal(state.params[layer], start['params'][layer])


def test_weight_decay_never_touches_frozen_layers():
  """With a zero learning signal (lr tiny) but a huge decay, only trainable kernels shrink."""
  model = models.build_model('mlp', 3, hidden=(8, 8))
  names = models.layer_names(model.num_layers)
  init = models.init_variables(model, jax.random.key(0), (8, 8, 1))
  plan = conditions.make_plan('random_frozen', 1, False, model.num_layers)
  tx = training.make_optimizer(1.0, 0.0, 0.5)  # update = -(grad + 0.5 * w)
  state = training.create_state(init, plan, names, tx, jax.random.key(0))
  zero_grads = jax.tree.map(jnp.zeros_like, state.params)
  updates, _ = tx.update(zero_grads, state.opt_state, state.params)
  trainable = transfer.leaf_mask(state.params, names, state.multiplier())
  masked = jax.tree.map(lambda u, m: jnp.where(m > 0, u * m, 0.0), updates, trainable)
  assert _leaves_equal(masked['layer1'], jax.tree.map(jnp.zeros_like, init['params']['layer1']))
  np.testing.assert_allclose(masked['layer2']['kernel'], -0.5 * init['params']['layer2']['kernel'])
  np.testing.assert_array_equal(masked['layer2']['bias'], 0.0)  # biases are not decayed
  # And through the real loop with a large decay: the frozen layer is bit-identical.
  trained, _ = _train(model, names, init, plan, weight_decay=10.0, lr=0.01)
  assert _leaves_equal(trained.params['layer1'], init['params']['layer1'])


def test_step_on_frozen_layers_outputs_skips_them_and_matches_the_full_step():
  """``start=2``: the step trains on layer2's outputs; the two frozen layers' weights and
  optimizer state pass through untouched, the rest is the full network's step."""
  model = models.build_model('mlp', 3, hidden=(16, 16, 16))
  names = models.layer_names(model.num_layers)
  init = models.init_variables(model, jax.random.key(0), (8, 8, 1))
  plan = conditions.make_plan('random_frozen', 2, False, model.num_layers)
  tx = training.make_optimizer(0.1, 0.9, 0.5)
  rng = np.random.default_rng(0)
  x = jnp.asarray(rng.normal(size=(32, 8, 8, 1)), jnp.float32)
  y = jnp.asarray(rng.integers(0, 3, 32), jnp.int32)
  features = model.apply(init, x, stop=2)
  full = skip = training.create_state(init, plan, names, tx, jax.random.key(1))
  for _ in range(3):
    full, full_metrics = training.train_step(full, x, y, model=model, tx=tx)
    skip, skip_metrics = training.train_step(skip, features, y, model=model, tx=tx, start=2)
  np.testing.assert_allclose(skip_metrics['loss'], full_metrics['loss'], rtol=1e-6)
  trace = lambda state: state.opt_state[1][0].trace  # sgd's momentum, shaped like the params
  for layer in names[:2]:  # not touched at all: weights and momentum as they started
    assert _leaves_equal(skip.params[layer], init['params'][layer])
    assert _leaves_equal(trace(skip)[layer], jax.tree.map(jnp.zeros_like, init['params'][layer]))
  for layer in names[2:]:
    assert not _leaves_equal(skip.params[layer], init['params'][layer])
    for a, b in [(skip.params[layer], full.params[layer]), (trace(skip)[layer], trace(full)[layer])]:
      for u, v in zip(jax.tree.leaves(a), jax.tree.leaves(b)):
        np.testing.assert_allclose(u, v, rtol=1e-5, atol=1e-6)
  assert jax.tree.structure(skip) == jax.tree.structure(full) and int(skip.step) == 3


def test_eval_schedule_is_dense_early():
  assert training.eval_steps(1000, 100) == [0, 1, 2, 4, 8, 16, 32, 64] + list(range(100, 1001, 100))
  assert training.eval_steps(10, 4) == [0, 1, 2, 4, 8, 10]
  assert training.eval_steps(0, 4) == [0]


def test_diverging_run_raises_with_step():
  model = models.build_model('mlp', 3, hidden=(8,))
  names = models.layer_names(model.num_layers)
  init = models.init_variables(model, jax.random.key(0), (8, 8, 1))
  plan = conditions.make_plan('scratch', 0, False, model.num_layers)
  with pytest.raises(training.Diverged) as e:
    _train(model, names, init, plan, steps=50, lr=1e6)
  assert 0 < e.value.step <= 50


# ----------------------------------------------------------------------------------------------
# Plan fields beyond copy/freeze: learning-rate multipliers, fresh layers, phases.

def _mlp_batch():
  model = models.build_model('mlp', 3, hidden=(8, 8))
  names = models.layer_names(model.num_layers)
  x = jax.random.normal(jax.random.key(5), (16, 8, 8, 1))
  y = jnp.arange(16) % 3
  return model, names, x, y


def _step(model, names, train, phases=(), steps=4, n=1, momentum=0.0):
  """``n`` SGD steps (no decay; no momentum unless given) from one init under the multipliers."""
  from harness.engine import semantics
  _, _, x, y = _mlp_batch()
  init = models.init_variables(model, jax.random.key(0), (8, 8, 1))
  plan = transfer.Plan(copy=np.zeros(3, np.float32), train=np.asarray(train, np.float32),
                       phases=phases)
  tx = training.make_optimizer(0.5, momentum, 0.0)
  state = training.create_state(init, plan, names, tx, semantics.dropout_key(0), steps)
  states = [state]
  for _ in range(n):
    state, _ = training.train_step(state, x, y, model=model, tx=tx)
    states.append(state)
  return init, states


def test_a_learning_rate_multiplier_scales_only_its_layers_update():
  model, names, _, _ = _mlp_batch()
  init, (_, full) = _step(model, names, [1, 1, 1])
  _, (_, half) = _step(model, names, [1, 0.5, 1])
  # One step from the same init: the same gradients, so the other layers move bit-identically.
  assert _leaves_equal(half.params['layer1'], full.params['layer1'])
  assert _leaves_equal(half.params['head'], full.params['head'])
  for leaf in ('kernel', 'bias'):
    moved_full = full.params['layer2'][leaf] - init['params']['layer2'][leaf]
    moved_half = half.params['layer2'][leaf] - init['params']['layer2'][leaf]
    np.testing.assert_allclose(moved_half, 0.5 * moved_full, rtol=1e-5, atol=1e-7)
    assert float(jnp.abs(moved_full).max()) > 0


def test_multipliers_of_one_and_zero_are_exactly_train_and_freeze():
  """1.0 multiplies the update by one, bit for bit; 0.0 leaves the layer bit-identical."""
  model, names, x, y = _mlp_batch()
  init, (_, state) = _step(model, names, [0, 1, 1])
  assert _leaves_equal(state.params['layer1'], init['params']['layer1'])
  tx = training.make_optimizer(0.5, 0.0, 0.0)
  grads = jax.grad(lambda p: training.cross_entropy(
      model.apply({'params': p}, x), y))(init['params'])
  expected = jax.tree.map(lambda p, g: p - 0.5 * g, init['params']['layer2'], grads['layer2'])
  updates, _ = tx.update(grads, tx.init(init['params']), init['params'])
  by_hand = jax.tree.map(lambda p, u: p + u, init['params']['layer2'], updates['layer2'])
  assert _leaves_equal(state.params['layer2'], by_hand)
  np.testing.assert_allclose(jax.tree.leaves(by_hand)[0], jax.tree.leaves(expected)[0], rtol=1e-6)


def test_fresh_layers_differ_from_own_init_and_are_deterministic():
  from harness.engine import semantics
  model, names, _, _ = _mlp_batch()
  fresh = np.array([0, 1, 0], np.float32)
  own = semantics.own_init(model, 3, semantics.pair_tag('p'), False, np.zeros(3, np.float32), (8, 8, 1))
  drawn = semantics.own_init(model, 3, semantics.pair_tag('p'), False, fresh, (8, 8, 1))
  again = semantics.own_init(model, 3, semantics.pair_tag('p'), False, fresh, (8, 8, 1))
  assert _leaves_equal(drawn, again)
  assert _leaves_equal(drawn['params']['layer1'], own['params']['layer1'])
  assert _leaves_equal(drawn['params']['head'], own['params']['head'])
  assert not np.array_equal(drawn['params']['layer2']['kernel'], own['params']['layer2']['kernel'])
  # Same distribution (a re-initialisation, not noise): the kernel's scale is the init's.
  np.testing.assert_allclose(np.std(drawn['params']['layer2']['kernel']),
                             np.std(own['params']['layer2']['kernel']), rtol=0.3)


def test_phases_train_the_head_only_then_every_layer():
  """LP-FT: head only for the first half of the steps (other layers bit-exact), then all."""
  model, names, _, _ = _mlp_batch()
  phases = (transfer.Phase(0.5, np.ones(3, np.float32)),)
  init, states = _step(model, names, [0, 0, 1], phases=phases, steps=4, n=4)
  assert training.TrainSchedule.of(transfer.Plan(np.zeros(3), np.array([0, 0, 1.]), phases=phases),
                                   4).starts[1] == 2
  for state in states[:3]:  # steps 0, 1, 2: the switch is at step round(0.5 * 4) = 2
    for layer in ('layer1', 'layer2'):
      assert _leaves_equal(state.params[layer], init['params'][layer])
  assert not _leaves_equal(states[2].params['head'], init['params']['head'])
  for layer in ('layer1', 'layer2'):
    assert not _leaves_equal(states[3].params[layer], states[2].params[layer])
  assert training.leading_frozen(training.TrainSchedule.of(
      transfer.Plan(np.zeros(3), np.array([0, 0, 1.]), phases=phases), 4)) == 0


def test_a_layer_unfrozen_by_a_phase_starts_with_untouched_momentum():
  """While frozen, a layer's momentum is not fed its gradients: at the switch its first update is
  the plain first SGD step, as with a fresh optimizer (the paper's LP-FT restarts fine-tuning)."""
  model, names, x, y = _mlp_batch()
  phases = (transfer.Phase(0.5, np.ones(3, np.float32)),)
  _, states = _step(model, names, [0, 0, 1], phases=phases, steps=4, n=3, momentum=0.9)
  trace = states[2].opt_state[1][0].trace  # add_decayed_weights, then sgd's (trace, schedule)
  for layer in ('layer1', 'layer2'):
    assert all(not np.any(leaf) for leaf in jax.tree.leaves(trace[layer]))
  assert any(np.any(leaf) for leaf in jax.tree.leaves(trace['head']))
  # The step at the switch moves layer1 by exactly -lr * its gradient (nothing carried over).
  before = states[2]
  grads = jax.grad(lambda p: training.cross_entropy(model.apply(
      {'params': p, 'batch_stats': before.batch_stats}, x), y))(before.params)
  np.testing.assert_allclose(states[3].params['layer1']['kernel'],
                             before.params['layer1']['kernel'] - 0.5 * grads['layer1']['kernel'],
                             rtol=1e-5, atol=1e-7)


def test_the_learning_rate_schedule_counts_every_step():
  """Step decay applies: the schedule's count advances with every step (also while some layers are
  frozen), and after ``lr_decay_every`` steps an update is ``lr_decay_factor`` x lr x gradient."""
  from harness.engine import semantics
  model, names, x, y = _mlp_batch()
  init = models.init_variables(model, jax.random.key(0), (8, 8, 1))
  tx = training.make_optimizer(0.5, 0.0, 0.0, lr_decay_every=2, lr_decay_factor=0.1)
  for train in ([1, 1, 1], [0, 0, 1]):
    plan = transfer.Plan(copy=np.zeros(3, np.float32), train=np.asarray(train, np.float32))
    state = training.create_state(init, plan, names, tx, semantics.dropout_key(0), 4)
    for _ in range(2):
      state, _ = training.train_step(state, x, y, model=model, tx=tx)
    assert int(state.opt_state[1][1].count) == 2  # add_decayed_weights, then sgd's (trace, schedule)
    grads = jax.grad(lambda p: training.cross_entropy(model.apply(
        {'params': p, 'batch_stats': state.batch_stats}, x), y))(state.params)
    after, _ = training.train_step(state, x, y, model=model, tx=tx)
    np.testing.assert_allclose(after.params['head']['kernel'],
                               state.params['head']['kernel'] - 0.05 * grads['head']['kernel'],
                               rtol=1e-5, atol=1e-7)
