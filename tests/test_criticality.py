"""Layer criticality (Zhang, Bengio & Singer 2022): the reset measurements and their claims."""

import json
import pathlib

import numpy as np
import pandas as pd
import pytest

from analysis import criticality, reproduce
from harness import probe
from transferbench.cli import main


def _table(drop_reinit, drop_rerandom, seeds=4, noise=0.002):
  """A reset table: every run at 0.9 trained, the given drops per layer (plus a little noise)."""
  rng = np.random.default_rng(0)
  rows = []
  for seed in range(seeds):
    rows.append(dict(target='t', seed=seed, layer='', measure='trained', alpha=0.0, accuracy=0.9))
    for i, (a, b) in enumerate(zip(drop_reinit, drop_rerandom)):
      layer = f'layer{i + 1}' if i < len(drop_reinit) - 1 else 'head'
      for measure, d in (('reinit', a), ('rerandom', b)):
        rows.append(dict(target='t', seed=seed, layer=layer, measure=measure, alpha=1.0,
                         accuracy=0.9 - d + rng.normal(0, noise)))
  return pd.DataFrame(rows)


def _verdicts(table):
  results = reproduce.check_claims(criticality.drops(table), criticality.CLAIMS)
  return {r.claim: r.verdict for r in results}


def test_claims_on_known_tables():
  # Layer 1 collapses, the rest barely move; re-randomising hurts more everywhere.
  paper_like = _table([0.6, 0.0, 0.0, 0.005], [0.8, 0.3, 0.3, 0.5])
  assert _verdicts(paper_like) == {'robust_and_critical': 'reproduced',
                                   'rerandomisation_harsher': 'reproduced'}
  d = criticality.drops(paper_like)
  assert list(d['layer'][:4]) == ['layer1', 'layer2', 'layer3', 'head']
  assert d.loc[d['layer'] == 'layer1', 'drop_reinit'].mean() == pytest.approx(0.6, abs=0.01)
  # Every layer critical: "most layers robust" is refuted; equal resets: not harsher.
  all_critical = _table([0.5, 0.5, 0.5, 0.5], [0.5, 0.5, 0.5, 0.5])
  verdicts = _verdicts(all_critical)
  assert verdicts['robust_and_critical'] == 'not reproduced'
  assert verdicts['rerandomisation_harsher'] == 'inconclusive'


def test_tiny_study_end_to_end(data_dir, tmp_path, capsys):
  results = tmp_path / 'res'
  argv = ['reproduce', 'criticality', '--arg', 'tiny', '--results', str(results),
          '--data-dir', data_dir, '--no-progress']
  assert main(argv) == 0
  assert '4 runs: 4 trained' in capsys.readouterr().out
  out = results / 'reproduce'
  claims = json.loads((out / 'claims.json').read_text())['claims']
  assert [c['claim'] for c in claims] == list(criticality.CLAIMS)
  assert all(c['verdict'] in ('reproduced', 'not reproduced', 'inconclusive') for c in claims)
  assert (out / 'accuracy_along_the_line_to_init.png').is_file()
  table = pd.read_csv(out / 'resets.csv')
  # Moving a layer all the way along the line is resetting it.
  ends = table[(table['measure'] == 'line') & (table['alpha'] == 1.0)].set_index(['run_id', 'layer'])
  reinit = table[table['measure'] == 'reinit'].set_index(['run_id', 'layer'])
  assert np.allclose(ends['accuracy'], reinit.loc[ends.index, 'accuracy'])
  # The reset values are the run's own start: all layers reset = its accuracy at step 0.
  run_dir = next((results / 'runs').iterdir())
  run = probe.open_run(run_dir, data_dir)
  record = json.loads((run_dir / 'record.json').read_text())
  assert run.spec.run_id == record['run_id']
  acc, _ = probe.evaluator(run)(run.initial())
  assert acc == pytest.approx(record['curve'][0]['accuracy'], abs=1e-6)
  assert probe.evaluator(run)(run.trained)[0] == pytest.approx(record['curve'][-1]['accuracy'], abs=1e-6)


def test_criticality_refuses_another_studys_results(tmp_path, capsys):
  (tmp_path / 'sweep.json').write_text(json.dumps({'config': {'name': 'yosinski2014_small_tiny'}}))
  assert main(['reproduce', 'criticality', '--analyze-only', '--results', str(tmp_path)]) == 2
  err = capsys.readouterr().err.strip().splitlines()
  assert len(err) == 1 and "(study 'yosinski2014')" in err[0]
  assert f'run `transferbench reproduce yosinski2014 --results {tmp_path}`' in err[0]
  assert main(['reproduce', 'criticality', '--curves', 'x.csv']) == 2
  assert 'drop --curves' in capsys.readouterr().err
