"""Layer criticality (Zhang, Bengio & Singer, JMLR 2022) at small scale: the trained networks.

The study is evaluation-only: `transferbench reproduce criticality` trains these base nets (or
reuses them), then, per network and layer, resets the layer to the values the run started from
(re-initialisation), to a fresh draw (re-randomisation), and moves it along the line from its
trained to its initial values, and measures test accuracy each time (docs/reproductions/
criticality.md).

* Model: ``mlp/3x256`` (784-256-256-256-10), the paper's FCN on MNIST; the CNN variant is
  ``--config.model=cnn/small``.
* Data: MNIST and, as a second replicate task, Animal silhouettes (base nets of both tasks of
  one ``datasets`` pair; no transfer conditions).
* Budget: 1500 SGD steps of 64 examples, lr 0.05, momentum 0.9, weight decay 5e-4; 5 seeds:
  10 networks.

Command:
  transferbench reproduce criticality            # trains (resumes), measures, checks the claims

Runtime and measured verdicts: docs/reproductions/criticality.md.
"""

from harness.sweeps import base_config


def get_config(arg=None):
  """The small-scale study; ``arg='tiny'`` shrinks it to seconds for the test suite."""
  c = base_config()
  c.name = 'criticality_small'
  c.model = 'mlp/3x256'
  c.pairs = [dict(kind='datasets', source='mnist', target='animal_mnist')]
  c.directions = ('AB', 'BA')  # each task in turn the target: base nets of both
  c.seeds = 5
  c.conditions = ()
  c.fine_tune = (False,)
  c.train.steps = 1500
  c.train.batch_size = 64
  c.train.lr = 0.05
  c.train.momentum = 0.9
  c.train.weight_decay = 5e-4
  c.train.eval_every = 100
  if arg == 'tiny':  # Same code path, seconds.
    c.name = 'criticality_small_tiny'
    c.model = 'mlp'
    c.model_kwargs = dict(hidden=(16, 16))
    c.seeds = 2
    c.train.steps = 30
    c.train.eval_every = 10
  return c
