"""What is being transferred (Neyshabur, Sedghi & Zhang, NeurIPS 2020), parts (b) and (c).

The sweep trains the base nets; `transferbench reproduce what_transfers_basins` then fine-tunes,
for each replicate r, the MNIST network of seed r twice on Animal silhouettes (seeds 2r, 2r+1;
every layer below the head copied, head re-initialised, all trained, weights kept) and compares
the fine-tuned pair with the scratch pair of the same seeds: loss barrier on the straight line
between the two, distance from the starting point, CKA of their features
(docs/reproductions/what_transfers.md).

* Model: ``mlp/3x256``; source MNIST, target Animal silhouettes.
* Base nets: both tasks, seeds 0..5 (12 networks); 3 replicates, 6 fine-tuned networks.
* Budget: 1500 SGD steps of 64 examples, lr 0.05, momentum 0.9, weight decay 5e-4 (pre-training
  and fine-tuning alike).

Command:
  transferbench reproduce what_transfers_basins
"""

from harness.sweeps import base_config


def get_config(arg=None):
  """The small-scale study; ``arg='tiny'`` shrinks it to seconds for the test suite."""
  c = base_config()
  c.name = 'what_transfers_basins'
  c.model = 'mlp/3x256'
  c.pairs = [dict(kind='datasets', source='mnist', target='animal_mnist')]
  c.directions = ('AB', 'BA')  # each task in turn the target: base nets of both
  c.seeds = 6
  c.conditions = ()
  c.fine_tune = (False,)
  c.train.steps = 1500
  c.train.batch_size = 64
  c.train.lr = 0.05
  c.train.momentum = 0.9
  c.train.weight_decay = 5e-4
  c.train.eval_every = 100
  if arg == 'tiny':  # Same code path, seconds: 2 replicates.
    c.name = 'what_transfers_basins_tiny'
    c.model = 'mlp'
    c.model_kwargs = dict(hidden=(16, 16))
    c.seeds = 4
    c.train.steps = 30
    c.train.eval_every = 10
  return c
