"""Your own data, end to end: an .npz of arrays, registered once, then swept by its name.

The arrays here are scikit-learn's 8x8 digits standing in for yours; replace ``write_npz`` with
your own ``np.savez``. Run from the repository root (about 20 s on a CPU):

    python scripts/example_own_data.py [--work results/example_own_data]

It writes WORK/my_digits.npz, builds the data set into WORK/tfds (its own TFDS data directory,
so nothing of yours is touched), runs a small transfer sweep into WORK/results and prints the
final accuracy per condition. See docs/data.md.
"""

from __future__ import annotations

import argparse
import pathlib

import numpy as np


def write_npz(path: pathlib.Path) -> None:
  """Your data as arrays: x (N, H, W) or (N, H, W, C) or (N, D), y integer or string labels.

  With only ``x, y`` a seeded per-class split holds out the test set; give ``x_train, y_train,
  x_test, y_test`` instead to choose it yourself.
  """
  from sklearn.datasets import load_digits
  digits = load_digits()
  # Floats are used as they are (uint8 would be divided by 255): scale to [0, 1] here.
  np.savez(path, x=(digits.images / 16.0).astype(np.float32), y=digits.target)


def sweep_config(name: str, data_dir: pathlib.Path):
  """A small Yosinski-style sweep on the registered data: MLP, random class halves, 2 seeds."""
  import ml_collections
  from harness import sweeps
  config = sweeps.base_config()
  config.name = 'own_data'
  config.model = 'mlp'
  config.model_kwargs = ml_collections.ConfigDict(dict(hidden=(32, 32)))
  config.pairs = [dict(kind='random_halves', dataset=name, split_seed=0)]
  config.seeds = 2
  config.train.steps = 200
  config.train.batch_size = 32
  config.train.lr = 0.1
  config.train.eval_every = 50
  config.data_dir = str(data_dir)
  return config


def final_accuracies(results: pathlib.Path):
  """Mean final target accuracy over seeds per condition, fine-tuning and n."""
  from harness import load_curves
  curves = load_curves(results)
  final = curves[curves.step == curves.groupby('run_id').step.transform('max')]
  return final.groupby(['condition', 'fine_tuned', 'n_layers']).accuracy.agg(['mean', 'count'])


def main() -> None:
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument('--work', default='results/example_own_data', type=pathlib.Path,
                      help='folder for the .npz, the TFDS data directory and the results')
  work = parser.parse_args().work
  from harness import runner, userdata
  (work / 'tfds').mkdir(parents=True, exist_ok=True)
  write_npz(work / 'my_digits.npz')
  info = userdata.register_dataset('my_digits', work / 'my_digits.npz', str(work / 'tfds'),
                                   replace=True)
  print(f'registered my_digits: {info.num_classes} classes, input {info.input_shape}, '
        f'{info.num_train} train / {info.num_test} test')
  report = runner.run_sweep(sweep_config('my_digits', work / 'tfds'), work / 'results',
                            progress=False)
  print(f'{report.total} runs: {report.completed} trained, {report.skipped} already complete, '
        f'{len(report.failed)} failed')
  print(final_accuracies(work / 'results').round(4).to_string())


if __name__ == '__main__':
  main()
