"""Imported public networks (harness/zoo): the Flax conversion computes what PyTorch computes,
layer by layer, and bad files are refused at their first mismatching parameter.

Tests that run the PyTorch originals need the ``zoo`` extra (torch, torchvision, timm,
safetensors; ``make test`` installs it where its torch wheel is at hand) and are skipped without
it, except where ``TRANSFERBENCH_REQUIRE_ZOO=1`` (CI: .ci/run) makes a missing extra a failure;
the conversion's checks need only NumPy.
"""

import importlib
import importlib.util
import json
import os
import pathlib
import re
import tomllib

import jax
import numpy as np
import pytest

from harness import models, runs
from harness.errors import UserError
from harness.zoo import convert
from transferbench import cli

ARCHS = tuple(convert.ZOO)
ROOT = pathlib.Path(__file__).resolve().parent.parent
ZOO_MODULES = ('torch', 'torchvision', 'timm', 'safetensors')


def zoo_extra(module: str = 'torch'):
  """``module`` of the zoo extra; skips the test without it, or fails where CI requires it."""
  if os.environ.get('TRANSFERBENCH_REQUIRE_ZOO') == '1':
    # find_spec, not import: torchvision imports only through harness.zoo.verify beside CPU torch.
    missing = [m for m in ZOO_MODULES if importlib.util.find_spec(m) is None]
    if missing:
      pytest.fail(f"TRANSFERBENCH_REQUIRE_ZOO=1 but the zoo extra is missing ({', '.join(missing)}): "
                  "pip install -e '.[zoo]' (docs/zoo.md)")
    return importlib.import_module(module)
  return pytest.importorskip(module, reason=f"{module} missing: the zoo extra is not installed "
                             "(make test installs it where its torch wheel is at hand; docs/zoo.md)")


def synthetic_state(arch_name: str, num_classes: int = 10, seed: int = 0) -> dict:
  """A state_dict with every key and shape of ``arch_name`` (random values, variances > 0)."""
  arch = convert.get_arch(arch_name)
  rng = np.random.default_rng(seed)
  return {key: np.abs(rng.standard_normal(shape, np.float32)) if key.endswith('running_var')
          else rng.standard_normal(shape, np.float32)
          for key, (_, shape, _) in convert.expected_shapes(arch, num_classes).items()}


# ----------------------------------------------------------------------------------------------
# The architectures and their layers.

@pytest.mark.parametrize('name, depth', [('zoo/resnet18', 6), ('zoo/resnet50', 6),
                                         ('zoo/vgg11', 8), ('zoo/vgg16', 8), ('zoo/bit_r50x1', 6)])
def test_layers_are_the_documented_cuts(name, depth):
  model = models.build_model(name, 10, image_size=64)
  variables = jax.eval_shape(lambda: models.init_variables(model, jax.random.key(0), (64, 64, 3)))
  assert model.num_layers == depth
  assert set(variables['params']) == set(models.layer_names(depth))
  shapes = models.feature_shapes(model, variables, (64, 64, 3))
  if 'resnet' in name or 'bit' in name:  # stem (/4), then stages at /4, /8, /16, /32
    width = 1 if name.endswith('18') else 4
    assert shapes[1:] == [(16, 16, 64), (16, 16, 64 * width), (8, 8, 128 * width),
                          (4, 4, 256 * width), (2, 2, 512 * width)]
    batch_normed = set() if 'bit' in name else set(models.layer_names(depth)[:-1])
    assert set(variables['batch_stats']) == batch_normed  # BiT: group norm, no statistics
  else:  # five pooled conv blocks, fc6, fc7
    assert shapes[1:] == [(32, 32, 64), (16, 16, 128), (8, 8, 256), (4, 4, 512), (2, 2, 512),
                          (4096,), (4096,)]


def test_grayscale_inputs_are_repeated_resized_and_normalised():
  from harness.zoo.nets import IMAGENET_MEAN, IMAGENET_STD, source_transform
  gray = np.linspace(0, 1, 2 * 8 * 8).reshape(2, 8, 8, 1).astype(np.float32)
  out = np.asarray(source_transform(gray, 16, IMAGENET_MEAN, IMAGENET_STD))
  assert out.shape == (2, 16, 16, 3)
  resized = np.asarray(jax.image.resize(gray, (2, 16, 16, 1), 'bilinear'))[..., 0]
  for c in range(3):
    np.testing.assert_allclose(out[..., c], (resized - IMAGENET_MEAN[c]) / IMAGENET_STD[c],
                               rtol=1e-6, atol=1e-6)


def test_source_checkpoint_may_differ_only_in_image_size(tmp_path):
  meta = {'model': 'zoo/resnet18', 'model_kwargs': {}}
  runs.check_architecture(tmp_path, meta, 'zoo/resnet18', {'image_size': 64})
  with pytest.raises(UserError, match='same architecture'):
    runs.check_architecture(tmp_path, meta, 'zoo/resnet18', {'stage_sizes': [1, 1, 1, 1]})


@pytest.mark.parametrize('arch_name', ARCHS)
def test_the_checkpoints_model_applies_the_recorded_preprocessing(arch_name):
  """meta.json's model_kwargs are {}: the variant's defaults must be the source's transform."""
  from harness.zoo import importer
  arch = convert.get_arch(arch_name)
  model = models.build_model(arch.model, 10)
  recorded = importer.preprocessing(arch)
  assert (model.image_size, tuple(model.mean), tuple(model.std)) == (
      recorded['image_size'], tuple(recorded['mean']), tuple(recorded['std']))


# ----------------------------------------------------------------------------------------------
# Conversion checks (NumPy only).

def test_synthetic_state_converts_to_the_architectures_variables():
  state = synthetic_state('tv_resnet18')
  variables = convert.convert('tv_resnet18', state)
  model = models.build_model('zoo/resnet18', 10)
  shapes = jax.eval_shape(lambda: models.init_variables(model, jax.random.key(0), (32, 32, 3)))
  assert jax.tree.map(np.shape, variables) == jax.tree.map(lambda s: s.shape, shapes)
  np.testing.assert_array_equal(variables['params']['layer1']['conv1']['kernel'],
                                state['conv1.weight'].transpose(2, 3, 1, 0))
  np.testing.assert_array_equal(variables['params']['layer3']['block0']['downsample_bn']['scale'],
                                state['layer2.0.downsample.1.weight'])
  np.testing.assert_array_equal(variables['batch_stats']['layer5']['block1']['bn2']['var'],
                                state['layer4.1.bn2.running_var'])
  np.testing.assert_array_equal(variables['params']['head']['kernel'], state['fc.weight'].T)


def test_vgg_keys_count_convs_relus_and_pools():
  expected = convert.expected_shapes(convert.get_arch('tv_vgg16'), 10)
  where = {key: path for key, (path, _, _) in expected.items()}
  # features: block1 = 0, 2 (pool 4); block2 = 5, 7 (pool 9); block3 = 10, 12, 14 (pool 16)...
  assert where['features.0.weight'] == ('params', 'layer1', 'conv0', 'kernel')
  assert where['features.7.bias'] == ('params', 'layer2', 'conv1', 'bias')
  assert where['features.14.bias'] == ('params', 'layer3', 'conv2', 'bias')
  assert where['features.28.weight'] == ('params', 'layer5', 'conv2', 'kernel')
  assert where['classifier.0.weight'] == ('params', 'layer6', 'kernel')
  assert where['classifier.3.bias'] == ('params', 'layer7', 'bias')
  assert where['classifier.6.bias'] == ('params', 'head', 'bias')
  assert len(where) == 2 * (13 + 3)  # 13 convs and 3 linear layers, weight and bias each


def test_another_architecture_is_named_with_the_arch_that_fits():
  with pytest.raises(UserError) as e:
    convert.convert('tv_resnet18', synthetic_state('tv_resnet50'))
  message = str(e.value)  # the first parameter of the file (in its order) that does not fit
  assert message.startswith("unexpected parameter 'layer1.0.bn3.bias' (and 164 more)")
  assert 'use --arch tv_resnet50 or timm_resnet50' in message


def test_missing_unexpected_and_misshapen_parameters_are_named():
  state = synthetic_state('tv_vgg11')
  missing = r"missing parameter 'features.3.bias' \(and 0 more\).*none of"
  with pytest.raises(UserError, match=missing):
    convert.convert('tv_vgg11', {k: v for k, v in state.items() if k != 'features.3.bias'})
  with pytest.raises(UserError, match=r"unexpected parameter 'features.99.weight' \(and 0 more\)"):
    convert.convert('tv_vgg11', {**state, 'features.99.weight': np.zeros(3, np.float32)})
  misshapen = r"'classifier.3.weight' has shape \(4096, 10\), a tv_vgg11 has \(4096, 4096\)"
  with pytest.raises(UserError, match=misshapen):
    convert.convert('tv_vgg11', {**state, 'classifier.3.weight': np.zeros((4096, 10), np.float32)})
  with pytest.raises(UserError, match=r"no parameter 'fc.bias'"):
    convert.convert('tv_resnet18', state)


def test_bit_keys_are_the_released_npz_keys():
  expected = convert.expected_shapes(convert.get_arch('bit_m_r50x1'), 21843)
  where = {key: path for key, (path, _, _) in expected.items()}
  assert where['resnet/root_block/standardized_conv2d/kernel'] == (
      'params', 'layer1', 'conv', 'kernel')
  assert where['resnet/block1/unit01/a/proj/standardized_conv2d/kernel'] == (
      'params', 'layer2', 'unit0', 'proj', 'kernel')
  assert where['resnet/block4/unit03/c/group_norm/beta'] == (
      'params', 'layer5', 'unit2', 'norm3', 'bias')
  assert where['resnet/group_norm/gamma'] == ('params', 'layer5', 'final_norm', 'scale')
  assert where['resnet/head/conv2d/kernel'] == ('params', 'head', 'kernel')
  shapes = {key: shape for key, (_, shape, _) in expected.items()}
  assert shapes['resnet/head/conv2d/kernel'] == (1, 1, 2048, 21843)
  assert shapes['resnet/block2/unit01/b/standardized_conv2d/kernel'] == (3, 3, 128, 128)
  # stem; 16 units of 3 convs and 3 norms (gamma, beta); 4 projections; final norm; head
  assert len(where) == 1 + 16 * (3 + 3 * 2) + 4 + 2 + 2


def test_an_npz_that_is_not_bit_is_refused(tmp_path, capsys):
  np.savez(tmp_path / 'other.npz', **{'params/conv/kernel': np.zeros((3, 3, 3, 8), np.float32)})
  out = tmp_path / 'out'
  assert cli.main(['import-weights', str(tmp_path / 'other.npz'), '--arch', 'bit_m_r50x1',
                   '--out', str(out), '--no-check']) == 2
  err = capsys.readouterr().err
  assert err.count('\n') == 1 and err.startswith(
      "transferbench: error: the file is not a bit_m_r50x1 checkpoint: it has no parameter "
      "'resnet/head/conv2d/bias'")
  assert not out.exists()
  state = synthetic_state('bit_m_r50x1')
  del state['resnet/block3/unit02/b/group_norm/gamma']
  missing = r"missing parameter 'resnet/block3/unit02/b/group_norm/gamma'"
  with pytest.raises(UserError, match=missing):
    convert.convert('bit_m_r50x1', state)


def test_an_existing_output_directory_is_refused(tmp_path, capsys):
  zoo_extra('safetensors')
  from safetensors.numpy import save_file
  save_file(synthetic_state('tv_resnet18'), str(tmp_path / 'r18.safetensors'))
  out = tmp_path / 'out'
  out.mkdir()
  (out / 'keep.txt').write_text('mine')
  args = ['import-weights', str(tmp_path / 'r18.safetensors'), '--arch', 'tv_resnet18', '--out',
          str(out), '--no-check']
  assert cli.main(args) == 2
  assert 'already exists and is not empty' in capsys.readouterr().err
  assert [p.name for p in out.iterdir()] == ['keep.txt']
  (out / 'keep.txt').unlink()  # an empty directory is used
  assert cli.main(args) == 0
  assert 'not checked against PyTorch' in capsys.readouterr().out
  variables, meta = runs.load_checkpoint(out)
  assert meta['imported']['max_abs_logit_difference'] is None and meta['num_classes'] == 10
  assert len(meta['imported']['sha256']) == 64


def test_num_batches_tracked_is_ignored():
  state = synthetic_state('tv_resnet18')
  with_counter = {**state, 'bn1.num_batches_tracked': np.array(7)}
  assert jax.tree.all(jax.tree.map(np.array_equal, convert.convert('tv_resnet18', with_counter),
                                   convert.convert('tv_resnet18', state)))


def test_unknown_arch_is_one_line_exit_2_nothing_written(tmp_path, capsys):
  out = tmp_path / 'out'
  args = ['import-weights', str(tmp_path / 'x.pth'), '--arch', 'resnet18', '--out', str(out)]
  assert cli.main(args) == 2
  err = capsys.readouterr().err
  assert err.count('\n') == 1 and err.startswith("transferbench: error: unknown --arch 'resnet18'")
  assert 'tv_resnet18' in err and not out.exists()


# ----------------------------------------------------------------------------------------------
# Against PyTorch (the zoo extra).

def _randomised(model, seed):
  """Batch-norm statistics and affine parameters drawn at random, so that none is an identity
  (fresh PyTorch models have mean 0, variance 1, and timm zero-initialises the last scale)."""
  import torch
  generator = torch.Generator().manual_seed(seed)
  with torch.no_grad():
    for module in model.modules():
      if isinstance(module, torch.nn.BatchNorm2d):
        for tensor in (module.weight, module.bias, module.running_mean):
          tensor.copy_(torch.randn(tensor.shape, generator=generator) * 0.5)
        module.running_var.copy_(torch.rand(module.running_var.shape, generator=generator) + 0.5)
  return model


@pytest.mark.parametrize('arch_name', ARCHS)
def test_conversion_computes_what_pytorch_computes_at_every_layer(arch_name):
  zoo_extra()
  from harness.zoo import verify
  arch = convert.get_arch(arch_name)
  if arch.layout == 'big_vision':  # an .npz with BiT's keys, read by timm's own BiT loader
    state = synthetic_state(arch_name, seed=1)
    model = verify.load_torch_model(arch, state)
  else:
    model = _randomised(verify.torch_model(arch, 10), seed=1)
    state = {k: v.numpy() for k, v in model.state_dict().items()}
  variables = convert.convert(arch_name, state)
  images = verify.random_images(2, 64, seed=3)
  torch_logits, torch_features = verify.torch_features(arch, model, images)
  logits, features = verify.flax_features(arch, variables, images)
  assert set(features) == set(torch_features) == set(models.layer_names(models.build_model(
      arch.model, 10).num_layers)[:-1])
  for name, expected in torch_features.items():
    scale = max(1.0, float(np.max(np.abs(expected))))
    assert np.max(np.abs(features[name] - expected)) <= 1e-5 * scale, name
  scale = max(1.0, float(np.max(np.abs(torch_logits))))
  assert np.max(np.abs(logits - torch_logits)) <= 1e-5 * scale


def _save_torch(model, path):
  import torch
  if path.suffix == '.safetensors':
    from safetensors.torch import save_file
    save_file({k: v.contiguous() for k, v in model.state_dict().items()}, str(path))
  else:
    torch.save(model.state_dict(), path)


@pytest.mark.parametrize('suffix', ['.pth', '.safetensors'])
def test_import_weights_writes_a_checked_source_checkpoint(tmp_path, capsys, suffix):
  zoo_extra()
  from harness.zoo import verify
  arch = convert.get_arch('tv_resnet18')
  model = _randomised(verify.torch_model(arch, 1000), seed=2)
  file = tmp_path / f'resnet18{suffix}'
  _save_torch(model, file)
  out = tmp_path / 'imported'
  assert cli.main(['import-weights', str(file), '--arch', 'tv_resnet18', '--out', str(out)]) == 0
  printed = capsys.readouterr().out
  difference = float(printed.split('random images: ')[1].split()[0])
  assert 0 <= difference <= verify.TOLERANCE
  variables, meta = runs.load_checkpoint(out)
  expected = convert.convert('tv_resnet18', {k: v.numpy() for k, v in model.state_dict().items()})
  assert jax.tree.all(jax.tree.map(np.array_equal, variables, expected))
  assert meta['model'] == 'zoo/resnet18' and meta['num_classes'] == 1000
  assert meta['task']['name'] == 'imagenet2012' and len(meta['task']['classes']) == 1000
  assert meta['preprocessing']['mean'] == [0.485, 0.456, 0.406]
  assert meta['imported']['max_abs_logit_difference'] == pytest.approx(difference, rel=1e-2)
  json.dumps(meta)  # plain JSON


def test_a_conversion_that_differs_is_refused_and_nothing_written(tmp_path, capsys, monkeypatch):
  zoo_extra()
  from harness.zoo import verify
  model = verify.torch_model(convert.get_arch('tv_resnet18'), 1000)
  file = tmp_path / 'resnet18.pth'
  _save_torch(_randomised(model, seed=4), file)
  # A plausible bug: conv kernels with height and width swapped (same shapes for square kernels).
  shape, right = convert.LAYOUTS['torch']
  monkeypatch.setitem(convert.LAYOUTS, 'torch', (shape, lambda v, flax_shape: right(
      v, flax_shape).swapaxes(0, 1) if v.ndim == 4 else right(v, flax_shape)))
  out = tmp_path / 'imported'
  assert cli.main(['import-weights', str(file), '--arch', 'tv_resnet18', '--out', str(out)]) == 2
  err = capsys.readouterr().err
  assert err.startswith('transferbench: error: the conversion differs from the original by')
  assert not out.exists() and [p.name for p in tmp_path.iterdir()] == ['resnet18.pth']


def test_bad_files_are_one_line_errors_and_nothing_written(tmp_path, capsys):
  torch = zoo_extra()
  from harness.zoo import verify
  model = verify.torch_model(convert.get_arch('tv_resnet50'), 1000)
  cases = {'wrapped.pth': {'state_dict': model.state_dict()}, 'resnet50.pth': model.state_dict()}
  for name, content in cases.items():
    torch.save(content, tmp_path / name)
  (tmp_path / 'weights.h5').write_bytes(b'not a checkpoint')
  (tmp_path / 'garbage.pth').write_bytes(b'not a pickle')
  expected = {'wrapped.pth': "not a flat state_dict of tensors (found state_dict)",
              'resnet50.pth': "parameter 'layer1.0.conv1.weight' has shape (64, 64, 1, 1), a "
                              'tv_resnet18 has (64, 64, 3, 3): it is a resnet50 state_dict: use '
                              '--arch tv_resnet50 or timm_resnet50',
              'weights.h5': "unknown checkpoint suffix '.h5'",
              'garbage.pth': 'is not a PyTorch state_dict torch.load can read',
              'missing.pth': 'no checkpoint file'}
  for name, message in expected.items():
    out = tmp_path / f'out_{name}'
    code = cli.main(['import-weights', str(tmp_path / name), '--arch', 'tv_resnet18',
                     '--out', str(out)])
    err = capsys.readouterr().err
    assert code == 2 and err.count('\n') == 1 and err.startswith('transferbench: error: '), name
    assert message in err, (name, err)
    assert not out.exists()


def test_make_test_probes_for_the_torch_of_the_zoo_extra():
  """The Makefile installs the zoo extra where the torch it pins is at hand: the same pin."""
  extra = tomllib.loads((ROOT / 'pyproject.toml').read_text())['project']['optional-dependencies']
  pinned = next(r for r in extra['zoo'] if r.startswith('torch=='))
  assert re.search(rf'^ZOO_TORCH := {re.escape(pinned)}$', (ROOT / 'Makefile').read_text(), re.M)
