"""LP-FT (Kumar, Raghunathan, Jones, Ma & Liang, ICLR 2022) at small scale.

Fine-tuning beats linear probing in distribution (ID) but can lose out of distribution (OOD) when
the pretrained features are good and the shift is large; linear probing, then fine-tuning (LP-FT)
gets the best of both. The pretrained features must serve the OOD data: the source network is
trained on a broad task that includes the shift, the target's training set does not.

* Source: all ten MNIST digits with Gaussian noise (``mnist@noise0.5``, sd = half the pixel range;
  :mod:`harness.shifts`). Target (ID): clean MNIST digits 5-9, every training example. OOD: the
  target's test digits with the same noise (``ood``: the study evaluates every network on it).
* Model ``mlp/3x256``; methods: LP (``transfer`` at n = L-1 = 3), FT (the same, fine-tuned), LP-FT
  (``lp_then_ft``: the head for 300 steps, then every layer at a tenth of the learning rate, the
  body's momentum starting at zero), and scratch for reference. The sweep trains scratch on the
  target; the study trains the source networks and the three transfers per seed with their
  weights (``transferbench/lp_ft_pipeline.py``).
* Budget: each source network pre-trained to convergence (``source_train``: 4500 SGD steps of 64
  examples, 1500 at each of lr 0.05, 0.005, 0.0005); every other network 600 SGD steps of 64
  examples, lr 0.05, momentum 0.9, weight decay 5e-4; 10 seeds: 10 scratch + 10 sources + 30
  transfers. The claims are inconclusive if a source did not converge.

Command:
  transferbench reproduce lp_ft              # about 3-4 minutes on 2 shared CPU cores
  transferbench reproduce lp_ft --arg tiny   # seconds (digits, a tiny MLP; the test suite)

Expected (10 seeds, docs/reproductions/lp_ft.md): every source converged (0.925-0.930 on noisy
MNIST); ID accuracy LP 0.976, FT 0.981, LP-FT 0.980; OOD accuracy LP 0.935, FT 0.867 (0.78-0.91
over seeds), LP-FT 0.934; feature distortion on ID inputs FT 0.34, LP-FT 0.019 (LP: 0, its
features are the pretrained ones). All four claims reproduced.
"""

from harness.sweeps import base_config


def get_config(arg=None):
  """The small-scale study; ``arg='tiny'`` shrinks it to seconds for the test suite."""
  c = base_config()
  c.name = 'lp_ft_small'
  c.model = 'mlp/3x256'
  c.pairs = [dict(kind='datasets', source='mnist@noise0.5', target='mnist',
                  target_classes=[5, 6, 7, 8, 9], ood='mnist@noise0.5')]
  c.directions = ('AB',)  # the sweep: scratch on the target; the study adds the sources
  c.seeds = 10
  c.conditions = ()
  c.fine_tune = (False,)
  c.train.steps = 600
  c.train.batch_size = 64
  c.train.lr = 0.05
  c.train.momentum = 0.9
  c.train.weight_decay = 5e-4
  c.train.eval_every = 100
  # The source networks are pre-trained to convergence (as in the paper): a step schedule,
  # 1500 steps at each of lr 0.05, 0.005, 0.0005; analysis/convergence.py checks the last 20%.
  c.source_train.steps = 4500
  c.source_train.lr_decay_every = 1500
  c.checkpoint_every = 0  # runs this short need no progress checkpoints (and stay in the engine)
  if arg == 'tiny':  # Same code path, seconds: 8x8 digits, a tiny MLP.
    c.name = 'lp_ft_small_tiny'
    c.model = 'mlp'
    c.model_kwargs = dict(hidden=(16, 16))
    c.pairs = [dict(kind='datasets', source='digits@noise0.5', target='digits',
                    target_classes=[5, 6, 7, 8, 9], ood='digits@noise0.5')]
    c.seeds = 2
    c.train.steps = 30
    c.train.eval_every = 10
    c.source_train.steps = 60
    c.source_train.lr_decay_every = 40
  return c
