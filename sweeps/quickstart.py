"""Quickstart: layer-wise transfer between random halves of MNIST (Yosinski et al. 2014, small).

Task A = 5 MNIST digits, task B = the other 5 (a seeded random split). Base nets baseA/baseB
(scratch), then for every n = 1..3: selffer BnB and BnB+, transfer AnB and AnB+, and the
random-frozen-features control, for 5 seeds: 85 runs of an MLP with 3 hidden layers
(784-256-256-256-5), 600 SGD steps of 64 examples each, evaluated on the 5 classes' test images
at steps 0, 1, 2, 4, ..., 32, then every 50.

Command:
  transferbench run quickstart            # results in results/quickstart/
  transferbench analyze results/quickstart

Runtime: about a minute on a 2-core CPU (docs/performance.md), plus a few seconds once to build
MNIST into TFDS files.
Expected numbers (final score = mean of the last 3 evaluations, mean over 5 seeds, jax 0.10.2
on CPU; bit-identical on the same CPU model and library versions, within ~0.002 elsewhere):
baseB 0.980; AnB 0.973 / 0.953 / 0.895 and random frozen 0.966 / 0.940 / 0.880 for n = 1 / 2 / 3
(specificity, and random features worse still); AnB+ 0.981-0.982 (fine-tuning recovers base);
BnB 0.984-0.985, slightly above base: no fragile co-adaptation in this small MLP, whose copied
layers were trained for 600 steps before the upper layers get 600 more.
"""

from harness.sweeps import base_config


def get_config(arg=None):
  """Returns the quickstart sweep; ``arg='tiny'`` shrinks it for the test suite."""
  c = base_config()
  c.name = 'quickstart'
  c.model = 'mlp/3x256'
  c.pairs = [dict(kind='random_halves', dataset='mnist', split_seed=0)]
  c.directions = ('AB',)
  c.seeds = 5
  c.conditions = ('selffer', 'transfer', 'random_frozen')
  c.fine_tune = (False, True)
  c.train.steps = 600
  c.train.batch_size = 64
  c.train.lr = 0.05
  c.train.momentum = 0.9
  c.train.weight_decay = 5e-4
  c.train.eval_every = 50
  if arg == 'tiny':  # Same code path, a few seconds: used by tests/test_quickstart.py.
    c.model = 'mlp'
    c.model_kwargs = dict(hidden=(32, 32))
    c.seeds = 2
    c.train.steps = 20
    c.train.eval_every = 10
  return c
