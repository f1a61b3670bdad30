"""The evaluation-only pipeline of ``transferbench reproduce``: per-layer resets of trained nets.

Used by studies whose ``pipeline`` is ``resets`` (layer criticality, Zhang, Bengio & Singer
2022): after the sweep's base nets are trained (or found complete), every one is evaluated with
each layer reset to its initial values, re-randomised, and moved along the line to its initial
values (:func:`harness.probe.reset_measurements`); :mod:`analysis.criticality` checks the claims.
"""

from __future__ import annotations

import pathlib

import pandas as pd

from analysis import criticality, reproduce
from harness import conditions
from harness.errors import UserError


def measure(results: pathlib.Path, data_dir: str | None) -> pd.DataFrame:
  """The reset table of every complete base net in ``results`` (one row per measurement)."""
  from harness import probe
  from harness.results import load_records
  rows = []
  for record in load_records(results):
    if record.get('status') != 'complete' or record['spec']['condition'] != conditions.BASE:
      continue
    run = probe.open_run(results / 'runs' / record['run_id'], data_dir)
    for row in probe.reset_measurements(run):
      rows.append({'run_id': record['run_id'], 'target': run.spec.target.name,
                   'seed': run.spec.seed, **row})
  if not rows:
    raise UserError(f'no complete base nets with saved weights in {results}: run '
                    '`transferbench reproduce STUDY` without --analyze-only first')
  return pd.DataFrame(rows)


def check(table: pd.DataFrame, study, settings: reproduce.Settings, out: pathlib.Path,
          draw: bool = True):
  """Claims of the study on a reset table; writes resets.csv, line.csv, claims.json/md, figure."""
  results = reproduce.check_claims(criticality.drops(table), study.claims, settings)
  out.mkdir(parents=True, exist_ok=True)
  written = [out / 'resets.csv', out / 'line.csv']
  table.to_csv(written[0], index=False)
  line = criticality.line_table(table)
  line.to_csv(written[1], index=False)
  method = (f'drop = trained accuracy - accuracy after the reset; robust < {criticality.ROBUST:g}, '
            f'critical >= {criticality.CRITICAL:g}; one-sided t-tests over seeds at alpha='
            f'{settings.alpha}, Holm over each claim\'s parts; 90% t CIs')
  written += reproduce.write_claims(results, out, settings, method)
  if draw:
    from analysis.plotting import save
    written += save(criticality.line_figure(line), out, 'accuracy_along_the_line_to_init')
  return results, written
