"""The Pre-trained Model approach: the first n layers of ImageNet ResNet-18 on a new target.

Source: torchvision's ImageNet ResNet-18, imported once (docs/zoo.md); its layers are the stem
and the four residual stages, so n = 1..5. For every n: AnB (the first n layers copied and
frozen, the rest trained from scratch), AnB+ (copied and fine-tuned), and the random-frozen
control (the first n layers frozen at their random initialisation), next to the scratch baseline
(the same ResNet-18 trained from scratch on the target); 3 seeds: 48 runs. Every run resizes its
images to 224x224, repeats grayscale to three channels and normalises with ImageNet's mean and
std, as the source network was trained (the model applies it: harness/zoo/nets.py).

Command (on a machine with internet, once: fetch and import the weights, docs/zoo.md):
  curl -LO https://download.pytorch.org/models/resnet18-f37072fd.pth
  transferbench import-weights resnet18-f37072fd.pth --arch tv_resnet18 --out zoo/tv_resnet18
Then, offline, the target is Animal silhouettes (28x28 grayscale, 10 classes, 8000 training
images), resized:
  transferbench run zoo_resnet18 --config.source_checkpoint=zoo/tv_resnet18
or, on a cluster with CIFAR-10 prepared in a TFDS data directory (`tfds build cifar10`):
  transferbench run zoo_resnet18 --arg cifar10 --data-dir DIR \\
      --config.source_checkpoint=zoo/tv_resnet18 --executor slurm

Runtime on one GPU (an estimate from the FLOP count; not yet measured, no GPU was at hand): 48
runs of 2000 steps of 64 images at 224x224. ResNet-18 costs 1.8 GMAC (3.6 GFLOP) per image
forward, about 11 GFLOP with the backward pass, so a step is about 0.7 TFLOP and a run's training
1.4 PFLOP, plus about 21 evaluations of the test set (Animal silhouettes' 2000 images: 0.15 PFLOP;
CIFAR-10's 10000: 0.75 PFLOP). At the 20-50 TFLOP/s a recent GPU sustains with XLA's default TF32
convolutions (A100, H100) that is 0.5-2 minutes a run, 0.5-1.5 hours for the 48 runs; runs with a
frozen prefix are cheaper. On a 2-core CPU use the tiny version only.
Expected: AnB above the scratch baseline for every n (ImageNet features transfer to silhouettes
and to CIFAR-10), AnB+ best, random frozen falling below scratch as n grows (Yosinski et al.
2014's ordering) -- not yet measured on a GPU.
"""

from harness.sweeps import base_config

TARGETS = {
    'offline': dict(kind='target', dataset='animal_mnist'),
    'cifar10': dict(kind='target', dataset='cifar10'),
}


def get_config(arg='offline'):
  """Returns the sweep; ``arg``: 'offline' (Animal silhouettes), 'cifar10', or 'tiny' (the test
  suite's: two classes at 32x32, n = 2, a few steps)."""
  c = base_config()
  c.name = 'zoo_resnet18'
  c.model = 'zoo/resnet18'
  c.model_kwargs = dict(image_size=224)
  c.source_checkpoint = ''  # required: the imported network's directory
  c.pairs = [TARGETS['cifar10' if arg == 'cifar10' else 'offline']]
  c.directions = ('AB',)
  c.seeds = 3
  c.conditions = ('transfer', 'random_frozen')  # the scratch baseline is always trained
  c.fine_tune = (False, True)
  c.train.steps = 2000
  c.train.batch_size = 64
  c.train.lr = 0.01
  c.train.momentum = 0.9
  c.train.weight_decay = 5e-4
  c.train.eval_every = 100
  if arg == 'tiny':  # Same code path, seconds on a CPU: tests/test_zoo_sweep.py.
    c.pairs = [dict(TARGETS['offline'], classes=(0, 1))]
    c.model_kwargs = dict(image_size=32)
    c.seeds = 1
    c.n_layers = (2,)
    c.train.steps = 4
    c.train.batch_size = 8
    c.train.eval_every = 2
  return c
