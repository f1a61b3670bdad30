"""Models: ordered named layers, parameter counts, batch-norm statistics owned by their layer."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from harness import models
from harness.errors import UserError


@pytest.mark.parametrize('name, shape, depth', [
    ('mlp/3x256', (28, 28, 1), 4),
    ('cnn/small', (28, 28, 1), 8),
    ('resnet/tiny', (28, 28, 1), 4),
    ('cnn1d', (40, 1), 4),
    ('cnn1d/small', (40, 1), 8),
])
def test_layers_are_named_in_order_and_head_last(name, shape, depth):
  model = models.build_model(name, 5)
  variables = models.init_variables(model, jax.random.key(0), shape)
  names = models.layer_names(model.num_layers)
  assert model.num_layers == depth
  assert names[-1] == 'head' and names[:2] == ('layer1', 'layer2')
  assert set(variables['params']) == set(names)
  assert variables['params']['head']['kernel'].shape[-1] == 5
  logits = model.apply(variables, jnp.zeros((3, *shape)), train=False)
  assert logits.shape == (3, 5)


def test_mlp_parameter_count():
  model = models.build_model('mlp', 10, hidden=(16, 8))
  variables = models.init_variables(model, jax.random.key(0), (4, 4, 1))
  count = sum(x.size for x in jax.tree.leaves(variables['params']))
  assert count == (16 * 16 + 16) + (16 * 8 + 8) + (8 * 10 + 10)


def test_alexnet_matches_the_caffe_reference_net():
  """Yosinski's net: 5 convs + 2 fc + head = 8 layers, ~61M parameters for 1000 classes."""
  model = models.build_model('alexnet', 1000)
  shapes = jax.eval_shape(lambda: models.init_variables(model, jax.random.key(0), (227, 227, 3)))
  count = sum(x.size for x in jax.tree.leaves(shapes['params']))
  assert model.num_layers == 8
  assert shapes['params']['layer6']['kernel'].shape == (6 * 6 * 256, 4096)  # pool5 is 6x6x256
  layer1 = models.ConvLayer(models.VARIANTS['alexnet'][1]['convs'][0])
  x = jnp.zeros((1, 227, 227, 3))
  out = jax.eval_shape(lambda: layer1.apply(layer1.init(jax.random.key(0), x), x))
  assert out.shape == (1, 27, 27, 96)  # Caffe: conv1 11x11/4 unpadded -> 55, pool1 3/2 -> 27
  assert 58e6 < count < 63e6  # Krizhevsky's ungrouped net: 62.4M; Caffe's grouped: 61M.


def test_cnn1d_is_mnist1ds_reference_conv_net():
  """The same function as MNIST-1D's ``ConvBase`` (Greydanus 2020, notebooks/models.py: Conv1d(1,
  25, 5, stride 2, padding 1), then two Conv1d(25, 25, 3, stride 2, padding 1), ReLU after each,
  a linear layer on the flattened 125 features), re-typed in PyTorch, given the same weights."""
  torch = pytest.importorskip('torch')
  model = models.build_model('cnn1d', 10)
  variables = models.init_variables(model, jax.random.key(0), (40, 1))
  params = variables['params']
  convs = [torch.nn.Conv1d(1, 25, 5, stride=2, padding=1),
           torch.nn.Conv1d(25, 25, 3, stride=2, padding=1),
           torch.nn.Conv1d(25, 25, 3, stride=2, padding=1)]
  linear = torch.nn.Linear(125, 10)
  as_torch = lambda a: torch.from_numpy(np.array(a, np.float32))
  with torch.no_grad():
    for i, conv in enumerate(convs):
      layer = params[f'layer{i + 1}']['conv']
      conv.weight.copy_(as_torch(layer['kernel']).permute(2, 1, 0))  # (k, in, out) -> (out, in, k)
      conv.bias.copy_(as_torch(layer['bias']))
    # Flax flattens (position, channel), PyTorch (channel, position).
    kernel = np.asarray(params['head']['kernel']).reshape(5, 25, 10).transpose(1, 0, 2)
    linear.weight.copy_(as_torch(kernel.reshape(125, 10).T))
    linear.bias.copy_(as_torch(params['head']['bias']))
    x = np.random.default_rng(0).normal(size=(4, 40)).astype(np.float32)
    h = as_torch(x).view(4, 1, 40)
    for conv in convs:
      h = conv(h).relu()
    expected = linear(h.reshape(4, -1)).numpy()
  count = sum(a.size for a in jax.tree.leaves(params))
  assert count == sum(p.numel() for m in (*convs, linear) for p in m.parameters()) == 5210
  got = model.apply(variables, jnp.asarray(x).reshape(4, 40, 1), train=False)
  np.testing.assert_allclose(np.asarray(got), expected, rtol=1e-4, atol=1e-5)
  shapes = models.feature_shapes(model, variables, (40, 1))
  assert shapes == [(40, 1), (19, 25), (10, 25), (5, 25)]


def test_conv_layers_with_pooling_run_on_1d_signals():
  """A pooled conv layer on (batch, samples, channels): flax's 1-D max pool of the ReLU'd conv."""
  layer = models.ConvLayer(models.ConvSpec(4, 3, pool=2, padding=1))
  x = jax.random.normal(jax.random.key(0), (2, 40, 1))
  variables = layer.init(jax.random.key(1), x)
  conv = jax.nn.relu(jax.lax.conv_general_dilated(
      x, variables['params']['conv']['kernel'], (1,), [(1, 1)],
      dimension_numbers=('NWC', 'WIO', 'NWC')) + variables['params']['conv']['bias'])
  expected = jnp.max(conv.reshape(2, 20, 2, 4), axis=2)
  np.testing.assert_allclose(layer.apply(variables, x), expected, rtol=1e-5, atol=1e-6)


def test_batch_norm_statistics_belong_to_their_layer():
  model = models.build_model('resnet/tiny', 3)
  variables = models.init_variables(model, jax.random.key(0), (8, 8, 1))
  assert set(variables['batch_stats']) == {'layer1', 'layer2', 'layer3'}  # not the head


def test_frozen_batch_norm_layers_are_the_same_function_in_training_and_evaluation():
  """A frozen layer normalises with its copied running statistics, not this batch's (regression:
  the statistics were read after the batch-statistics call had updated them)."""
  model = models.build_model('resnet/tiny', 3)
  variables = models.init_variables(model, jax.random.key(0), (8, 8, 1))
  x = 3.0 + jax.random.normal(jax.random.key(1), (16, 8, 8, 1))  # far from the init statistics
  frozen = jnp.ones(model.num_layers)
  training, _ = model.apply(variables, x, train=True, frozen=frozen, mutable=['batch_stats'])
  assert jnp.array_equal(training, model.apply(variables, x, train=False))
  trained, _ = model.apply(variables, x, train=True, frozen=jnp.zeros(model.num_layers),
                           mutable=['batch_stats'])
  assert not jnp.allclose(trained, training)  # batch statistics when not frozen


def test_unknown_model_and_option_are_user_errors():
  with pytest.raises(UserError, match="unknown model 'vgg'"):
    models.build_model('vgg', 10)
  with pytest.raises(UserError, match='no option'):
    models.build_model('mlp', 10, depth=3)


@pytest.mark.parametrize('size', [28, 14, 7])
def test_max_pool_matches_flax_values_and_gradient_after_relu(size):
  import flax.linen as nn
  x = jax.random.normal(jax.random.key(0), (3, size, size, 4))
  reference = lambda x: nn.max_pool(jax.nn.relu(x), (2, 2), strides=(2, 2), padding='VALID')
  fast = lambda x: models.max_pool(jax.nn.relu(x), 2, 2)
  assert fast(x).shape == reference(x).shape == (3, size // 2, size // 2, 4)
  assert jnp.array_equal(fast(x), reference(x))
  weights = jax.random.normal(jax.random.key(1), reference(x).shape)
  grad = lambda f: jax.grad(lambda x: jnp.sum(f(x) * weights))(x)
  assert jnp.array_equal(grad(fast), grad(reference))
  # Overlapping windows (AlexNet's 3/2) take flax's path.
  assert jnp.array_equal(models.max_pool(x, 3, 2),
                         nn.max_pool(x, (3, 3), strides=(2, 2), padding='VALID'))


@pytest.mark.parametrize('beta', [0.75, 0.5])
def test_local_response_norm_is_caffes_formula(beta):
  x = 20 * jax.random.normal(jax.random.key(0), (2, 3, 3, 8))
  sq = jnp.pad(jnp.square(x), ((0, 0), (0, 0), (0, 0), (2, 2)))
  window_sum = sum(sq[..., i:i + 8] for i in range(5))
  expected = x / (1.0 + 1e-4 / 5 * window_sum) ** beta
  assert jnp.allclose(models.local_response_norm(x, beta=beta), expected, rtol=1e-6, atol=1e-6)


def test_cnn_gradient_with_lrn_matches_float64_on_mnist(data_dir):
  """LRN's d^-3/4 as rsqrt(d) * sqrt(rsqrt(d)): the float32 gradient of cnn/small's first layers
  on MNIST images agrees with float64 to ~1e-6 (with jnp.power it was off by 1e-3 to 5e-3)."""
  import optax
  from harness import data
  model = models.build_model('cnn/small', 5)
  params = models.init_variables(model, jax.random.key(0), (28, 28, 1))['params']
  x, y = data.load_split('mnist', 'test', data_dir)
  x, y = jnp.asarray(x[:64]), jnp.asarray(y[:64] % 5)

  def grads(params, x):
    loss = lambda p: optax.softmax_cross_entropy_with_integer_labels(
        model.apply({'params': p}, x), y).mean()
    g = jax.grad(loss)(params)
    return g['layer1']['conv']['kernel'], g['layer2']['conv']['kernel']

  low = grads(params, x)
  with jax.enable_x64():
    high = grads(jax.tree.map(lambda a: jnp.asarray(a, jnp.float64), params), x.astype(jnp.float64))
  for g32, g64 in zip(low, high):
    g32, g64 = np.asarray(g32, np.float64), np.asarray(g64)
    assert np.max(np.abs(g32 - g64)) / np.max(np.abs(g64)) < 1e-5
