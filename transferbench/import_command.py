"""``transferbench import-weights FILE --arch NAME --out DIR``: a public pretrained network as a
source checkpoint (``--config.source_checkpoint=DIR``).

The command line calls :func:`register` on its subparsers; :func:`run` does the work through
:mod:`harness.zoo.importer`. See docs/zoo.md for the architectures and their layers.
"""

from __future__ import annotations

import argparse

from harness.zoo.convert import ZOO


def register(subparsers) -> argparse.ArgumentParser:
  """Adds the ``import-weights`` subcommand (``func=run``) to an argparse subparsers object."""
  p = subparsers.add_parser(
      'import-weights', help='convert a torchvision/timm checkpoint file into a source checkpoint',
      description='Convert a pretrained network you have as a file (torchvision or timm '
      'state_dict, .pth or .safetensors) into the Flax architecture with the same computation, '
      'check it against PyTorch on seeded random images (max |logit difference| <= 1e-3), and '
      'save it for --config.source_checkpoint=DIR. Nothing is downloaded; see docs/zoo.md.')
  p.add_argument('file', metavar='FILE', help='the checkpoint file')
  p.add_argument('--arch', required=True, metavar='NAME',
                 help=f"what the file holds: {', '.join(ZOO)}")
  p.add_argument('--out', required=True, metavar='DIR', help='checkpoint directory to create')
  p.add_argument('--no-check', action='store_true',
                 help='skip the PyTorch comparison (without torch installed it cannot run)')
  p.set_defaults(func=run)
  return p


def run(args: argparse.Namespace) -> int:
  """Imports one file; prints the check and how to use the checkpoint."""
  from harness.zoo import importer  # pylint: disable=import-outside-toplevel
  report = importer.import_weights(args.file, args.arch, args.out, check=not args.no_check)
  checked = ('' if report.max_logit_difference is not None
             else ' (not checked against PyTorch: --no-check)')
  print(f'wrote {report.out}: {report.arch} as model {report.model}, {report.num_classes}-class '
        f'head{checked}')
  print(f'use it with: --config.model={report.model} --config.source_checkpoint={report.out}')
  return 0
