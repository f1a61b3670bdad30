"""sweeps/zoo_resnet18.py, tiny: an imported (here random) ResNet-18 as the source of AnB, AnB+
and the random-frozen control on a resized grayscale target, through the real CLI. NumPy and
orbax only: the checkpoint is written as import-weights writes it, without torch."""

import json

import jax
import numpy as np
import pytest

from harness import load_curves, models
from harness.zoo import importer
from transferbench.cli import main


def random_imported_resnet18(path):
  """A checkpoint as `import-weights --arch tv_resnet18` writes it, of random weights (the
  model's own initialisation, whose activations stay finite through 5 layers)."""
  model = models.build_model('zoo/resnet18', 1000)
  variables = models.init_variables(model, jax.random.key(7), (32, 32, 3))
  meta = importer.checkpoint_meta('tv_resnet18', None, 1000, None)
  importer.write_checkpoint(path, variables, meta)
  return path


def test_zoo_resnet18_tiny_runs_end_to_end(data_dir, tmp_path, capsys):
  checkpoint = random_imported_resnet18(tmp_path / 'tv_resnet18')
  results = tmp_path / 'results'
  code = main(['run', 'zoo_resnet18', '--arg', 'tiny', '--results', str(results), '--data-dir',
               data_dir, '--no-progress', f'--config.source_checkpoint={checkpoint}'])
  out = capsys.readouterr().out
  assert code == 0, out
  assert '4 runs: 4 trained, 0 already complete, 0 failed' in out  # scratch, AnB, AnB+, random
  curves = load_curves(results)
  final = curves[curves.step == curves.step.max()]
  assert set(zip(final.condition, final.n_layers, final.fine_tuned)) == {
      ('scratch', 0, False), ('transfer', 2, False), ('transfer', 2, True),
      ('random_frozen', 2, False)}
  assert set(final[final.condition == 'transfer'].source) == {'imagenet2012'}
  assert np.isfinite(final.accuracy).all()
  # AnB copies from the imported checkpoint, at the sweep's image size (its kwargs may differ
  # from the checkpoint's 224 in the input size only).
  anb = next(r for r in runs_of(results) if r['labels']['condition'] == 'transfer'
             and not r['labels']['fine_tuned'])
  assert anb['spec']['source_checkpoint'] == str(checkpoint)
  assert anb['spec']['model_kwargs'] == {'image_size': 32}


def runs_of(results):
  return [json.loads(p.read_text()) for p in (results / 'runs').glob('*/record.json')]


def test_zoo_sweep_without_a_checkpoint_says_how_to_get_one(data_dir, tmp_path, capsys):
  code = main(['run', 'zoo_resnet18', '--arg', 'tiny', '--results', str(tmp_path / 'r'),
               '--data-dir', data_dir, '--no-progress'])
  err = capsys.readouterr().err
  assert code == 2
  assert err.startswith("transferbench: error: a pair of kind 'target' has no source task")
  assert 'import-weights' in err


def test_target_pair_is_one_task_of_the_given_classes(data_dir):
  from harness import tasks
  from harness.errors import UserError
  a, b = tasks.make_task_pair(dict(kind='target', dataset='animal_mnist', classes=(3, 1)), data_dir)
  assert a == b and b.name == 'animal_mnist' and b.classes == (1, 3)
  _, every = tasks.make_task_pair(dict(kind='target', dataset='animal_mnist'), data_dir)
  assert len(every.classes) == 10
  with pytest.raises(UserError, match='class count mismatch'):
    tasks.make_task_pair(dict(kind='target', dataset='animal_mnist', classes=(0, 10)), data_dir)
