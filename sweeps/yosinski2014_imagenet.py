"""Yosinski et al. 2014 at full scale: ImageNet, 8-layer AlexNet-style net, 500/500 class splits.

The original study (Sec. 3 and the public logs in yosinski/convnet_transfer): four random
500/500 splits of the 1000 ILSVRC-2012 classes (half0..half3), base nets baseA/baseB on each
half, selffers BnB / BnB+ and transfers AnB / AnB+ (both directions) for n = 1..7, trained with
Caffe's solver: SGD lr 0.01, momentum 0.9, weight decay 5e-4, learning rate x0.1 every 100k
iterations, 450k iterations, batch 256, tested every 1000 iterations. Here a "split" is a task
pair with its own split seed, and each split gets one network per role (seed 0), as in the paper.

Model: ``alexnet`` in harness/models.py, Caffe's reference net (5 convs with conv1 11x11/4
unpadded, pool + LRN after conv1/conv2, 2 x 4096 dense with dropout 0.5, head; 227x227 center
crops of images resized to 256). Known differences from Caffe, none of them in the solver: no
random-crop / mirror augmentation (center crops in training too), ungrouped convolutions
(62.4M instead of 61M parameters), flax's default initialisation instead of Caffe's
Gaussian(0.01) and bias 1, and biases use the base learning rate (Caffe: 2x, no decay; here no
decay, 1x).

Needs TFDS imagenet2012 prepared in a data directory (manual download of the ILSVRC-2012 tars,
then `tfds build imagenet2012 --manual_dir ... --data_dir DIR` on a machine with internet).

Command (on a cluster node or a workstation with a GPU):
  transferbench run yosinski2014_imagenet --data-dir DIR

Runtime: 4 splits x (2 base nets + 7 n x 2 directions x 4 variants) = 8 base nets then 224
transfer nets of 450k steps each (Caffe needed ~9.5 days per net on a K20 GPU in 2014).
Expected numbers (published; mean of the 10 best validation top-1 evaluations, from
results/reference/yosinski2014_summary.csv): baseB 0.625; AnB falls from 0.628 (n=1) to 0.543
(n=7); BnB dips to 0.594 at n=5 and recovers to 0.623 at n=7; AnB+ 0.637-0.647 for every n.
"""

from harness.sweeps import base_config


def get_config(arg=None):
  """The full-scale study; ``arg='tiny'`` shrinks steps, batch and model (same design and solver
  schedule, lr decay every 2 steps; n = 1 only) for the test suite, which points imagenet2012 at a tiny
  locally built image data set (tests/test_sweeps.py)."""
  c = base_config()
  c.name = 'yosinski2014_imagenet'
  c.model = 'alexnet'
  c.pairs = [dict(kind='random_halves', dataset='imagenet2012', split_seed=s) for s in range(4)]
  c.directions = ('AB', 'BA')
  c.seeds = 1
  c.conditions = ('selffer', 'transfer')
  c.fine_tune = (False, True)
  c.train.steps = 450_000
  c.train.batch_size = 256
  c.train.lr = 0.01
  c.train.momentum = 0.9
  c.train.weight_decay = 5e-4
  c.train.lr_decay_every = 100_000
  c.train.lr_decay_factor = 0.1
  c.train.eval_every = 1000
  if arg == 'tiny':
    c.model = 'cnn/tiny'
    c.pairs = c.pairs[:1]
    c.n_layers = (1,)
    c.train.steps = 4
    c.train.batch_size = 8
    c.train.lr_decay_every = 2
    c.train.eval_every = 2
  return c
