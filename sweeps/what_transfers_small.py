"""What is being transferred (Neyshabur, Sedghi & Zhang, NeurIPS 2020), part (a), at small scale.

Pre-train on MNIST, fine-tune on Animal silhouettes shuffled in b x b blocks (per image,
:mod:`harness.shifts`), and compare with training from scratch on the same shuffled target:
does part of pre-training's benefit survive when the image layout is destroyed?

* Model: ``cnn/tiny`` (two 3x3 conv layers with pooling, a dense layer, the head), a small
  convolutional net like the paper's (whose features are local, so block shuffling matters).
* Pairs: source MNIST, target ``animal_mnist@block<b>`` for b = 28 (the whole image, no
  shuffling), 7, 4, 2, 1, with 20 training examples per class (a scarce target, where
  pre-training can matter: with all 800 per class, scratch matched fine-tuning even unshuffled).
* Conditions: base nets (scratch on each target, and the MNIST source), and ``reinit_head``
  (every layer below the head copied from the MNIST net, head re-initialised, all trained).
  ``shared_sources``: one MNIST network per seed serves every block size, as one pre-trained
  model is fine-tuned to many targets in the paper (so the block sizes of a seed are compared
  from the same source).
* Budget: 600 SGD steps of 64 examples, lr 0.05, momentum 0.9, weight decay 5e-4; 3 seeds:
  3 MNIST sources + 5 pairs x 3 seeds x 2 runs = 33 runs.

Command:
  transferbench reproduce what_transfers

Runtime and measured verdicts: docs/reproductions/what_transfers.md.
"""

from harness.sweeps import base_config


def get_config(arg=None):
  """The small-scale study; ``arg='tiny'`` shrinks it to seconds for the test suite."""
  c = base_config()
  c.name = 'what_transfers_small'
  c.model = 'cnn/tiny'
  c.pairs = [dict(kind='datasets', source='mnist', target=f'animal_mnist@block{b}',
                  target_examples_per_class=20) for b in (28, 7, 4, 2, 1)]
  c.directions = ('AB',)
  c.shared_sources = True
  c.seeds = 3
  c.conditions = ('reinit_head',)
  c.fine_tune = (False,)
  c.train.steps = 600
  c.train.batch_size = 64
  c.train.lr = 0.05
  c.train.momentum = 0.9
  c.train.weight_decay = 5e-4
  c.train.eval_every = 50
  if arg == 'tiny':  # Same code path, seconds: two block sizes, a tiny MLP (no conv compiles).
    c.name = 'what_transfers_small_tiny'
    c.model = 'mlp'
    c.model_kwargs = dict(hidden=(16, 16))
    c.pairs = [c.pairs[0], c.pairs[-1]]
    c.seeds = 2
    c.train.steps = 20
    c.train.eval_every = 5
  return c
