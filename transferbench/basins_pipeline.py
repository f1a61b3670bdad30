"""Pipeline of ``transferbench reproduce what_transfers_basins`` (Neyshabur et al. 2020, (b, c)).

After the sweep's base nets (source task and target task, seeds 0..2R-1) are trained, replicate r
fine-tunes source r twice on the target (seeds 2r and 2r+1, condition ``reinit_head``, weights
kept) through the per-run path, then measures with :mod:`analysis.similarity` the barrier of the
fine-tuned pair and of the scratch pair (seeds 2r, 2r+1), each network's distance from where it
started, and the CKA of each pair's features; :mod:`analysis.basins` checks the claims.
"""

from __future__ import annotations

import dataclasses
import pathlib

import numpy as np
import pandas as pd

from analysis import basins, reproduce, similarity
from harness import conditions
from harness.errors import UserError

POINTS = tuple(np.linspace(0.0, 1.0, 11))
FEATURE_EXAMPLES = 1000


def _base_runs(results: pathlib.Path, config) -> tuple[dict, dict]:
  """(source seed -> run dir, target seed -> run dir) of the complete base nets."""
  from harness.results import load_records
  pair = config.pairs[0]
  source, target = {}, {}
  for record in load_records(results):
    spec = record['spec']
    if record.get('status') == 'complete' and spec['condition'] == conditions.BASE:
      side = {pair['source']: source, pair['target']: target}.get(spec['target']['dataset'])
      if side is not None:
        side[spec['seed']] = results / 'runs' / record['run_id']
  return source, target


def _fine_tuned(source_dir: pathlib.Path, scratch_dir: pathlib.Path, seed: int, store,
                data_dir: str | None, train: bool) -> pathlib.Path:
  """Fine-tunes the source network on the scratch run's target (weights kept), once.

  Raises:
    UserError: the fine-tuned network is missing and ``train`` is False (--analyze-only).
  """
  from harness import probe, runs
  source = probe.spec_of(store.read_record(source_dir.name))
  scratch_record = store.read_record(scratch_dir.name)
  layers = len(scratch_record['layer_names'])
  spec = dataclasses.replace(probe.spec_of(scratch_record), condition=conditions.REINIT_HEAD,
                             n_layers=layers - 1, seed=seed, source=source.target,
                             source_run=source.run_id)
  return runs.network_with_weights(spec, store, data_dir, train)


def _body(names) -> list[str]:
  return [n for n in names if n != 'head']


def _replicate(r: int, source: pathlib.Path, scratch: tuple, fine: tuple, data_dir) -> dict:
  """The measurements of one replicate (see :mod:`analysis.basins`)."""
  from harness import probe
  ft = [probe.open_run(d, data_dir) for d in fine]
  sc = [probe.open_run(d, data_dir) for d in scratch]
  src = probe.open_run(source, data_dir)
  body = _body(ft[0].names)
  barrier = lambda pair: similarity.interpolation_barrier(
      POINTS, similarity.interpolation_curve(probe.evaluator(pair[0]), pair[0].trained,
                                             pair[1].trained, POINTS)['loss'])
  distance = lambda start, end: similarity.parameter_distance(start, end).set_index('layer').loc[
      body, 'relative'].mean()
  features = lambda p: probe.layer_features(p, p.trained, FEATURE_EXAMPLES)
  cka = lambda a, b: float(np.mean([similarity.linear_cka(a[k], b[k]) for k in body]))
  fa, fb, sa, sb = features(ft[0]), features(ft[1]), features(sc[0]), features(sc[1])
  return {'replicate': r, 'barrier_ft': barrier(ft), 'barrier_scratch': barrier(sc),
          'distance_ft': distance(src.trained, ft[0].trained),
          'distance_scratch': distance(sc[0].initial(), sc[0].trained),
          'cka_ft': cka(fa, fb), 'cka_scratch': cka(sa, sb)}


def measure(results: pathlib.Path, config, data_dir: str | None,
            train: bool = True) -> pd.DataFrame:
  """Fine-tunes what is missing (``train``) and measures every replicate with its networks."""
  from harness.results import ResultsStore
  store = ResultsStore(results)
  source, target = _base_runs(results, config)
  rows = []
  for r in range(len(target) // 2):
    seeds = (2 * r, 2 * r + 1)
    if r not in source or any(s not in target for s in seeds):
      continue
    fine = tuple(_fine_tuned(source[r], target[s], s, store, data_dir, train)
                 for s in seeds)
    rows.append(_replicate(r, source[r], tuple(target[s] for s in seeds), fine, data_dir))
  if not rows:
    raise UserError(f'no complete replicate in {results} (a source net and two target base nets):'
                    ' run `transferbench reproduce what_transfers_basins` without --analyze-only')
  return pd.DataFrame(rows)


def check(table: pd.DataFrame, study, settings: reproduce.Settings, out: pathlib.Path):
  """Claims on the replicate table; writes basins.csv, claims.json and claims.md."""
  results = reproduce.check_claims(table, study.claims, settings)
  out.mkdir(parents=True, exist_ok=True)
  written = [out / 'basins.csv']
  table.to_csv(written[0], index=False)
  method = (f'unit: the replicate (one source network); one-sided t-tests at alpha='
            f'{settings.alpha}, Holm over each claim\'s parts; 90% t CIs; barrier margin '
            f'{basins.BARRIER_MARGIN:g} nats')
  written += reproduce.write_claims(results, out, settings, method)
  return results, written
