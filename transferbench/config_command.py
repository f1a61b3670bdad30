"""``transferbench config SWEEP [--arg A] [--config.FIELD=VALUE ...]``: the resolved sweep config.

Prints every field of the config as ``run`` would use it (overrides applied, values checked),
each with its meaning and the values it accepts, from :data:`harness.sweeps.FIELDS`.
"""

from __future__ import annotations

import argparse

from harness import sweeps


def register(subparsers) -> argparse.ArgumentParser:
  """Adds the ``config`` subcommand (``func=run``) to an argparse subparsers object."""
  p = subparsers.add_parser(
      'config', help='print a sweep\'s resolved config: every field, its value and its meaning',
      description='Print the config `transferbench run SWEEP` would use (dotted overrides like '
      '--config.seeds=5 applied and checked): every field with its value and meaning. Any field '
      'can be overridden on the command line of `run` the same way.')
  p.add_argument('sweep', help='sweep name (sweeps/NAME.py) or path to a sweep file')
  p.add_argument('--arg', help='string argument passed to get_config(arg)')
  p.set_defaults(func=run)
  return p


def describe(config) -> list[str]:
  """The lines ``transferbench config`` prints: ``field = value`` and its meaning, per field."""
  lines = []
  fields = sweeps.flat_fields(config)
  order = [name for name in sweeps.FIELDS if name in fields] + sorted(set(fields) - set(sweeps.FIELDS))
  for name in order:
    value = fields[name]
    meaning, rule = sweeps.FIELDS.get(name, (None, None))
    if meaning is None:
      meaning = 'no meaning recorded: add the field to harness.sweeps.FIELDS'
    accepts = f' [{sweeps.RULES[rule][1]}]' if rule else ''
    lines.append(f'{name} = {value!r}')
    lines.append(f'    {meaning}{accepts}')
  return lines


def run(args: argparse.Namespace) -> int:
  """Loads the sweep, applies and checks the overrides, prints :func:`describe`; returns 0."""
  config = sweeps.apply_overrides(sweeps.load_sweep(args.sweep, args.arg), args.overrides)
  sweeps.validate(config)
  path = sweeps.resolve_sweep_path(args.sweep)
  print(f'# {config.name} ({path}); override a field with --config.FIELD=VALUE')
  print('\n'.join(describe(config)))
  return 0
