"""`transferbench analyze` on fixtures: every output is written."""

import argparse
import shutil

import pandas as pd
import pytest

from transferbench import analyze_command as cli
from harness.errors import UserError
from tests.analysis.builders import HAND, yosinski_like


def _parse(argv):
  parser = argparse.ArgumentParser(prog='transferbench')
  cli.register(parser.add_subparsers(dest='command'))
  return parser.parse_args(['analyze', *argv])


def test_analyze_writes_every_output(tmp_path, capsys):
  curves = tmp_path / 'study.csv'
  yosinski_like().to_csv(curves, index=False)
  out = tmp_path / 'out'
  args = _parse([str(curves), '--out', str(out), '--n-boot', '200', '--seed', '1'])
  assert args.func is cli.run
  assert args.func(args) == 0
  tables = ['runs.csv', 'summary.csv', 'decomposition.csv', 'summary.md', 'summary.tex']
  stems = ['fig2_accuracy_vs_n', 'fig2_relative_yosinski2014', 'learning_curves',
           'negative_transfer_heatmap', 'decomposition']
  for name in tables + [f'figures/{s}.{e}' for s in stems for e in ('png', 'pdf')]:
    assert (out / name).stat().st_size > 0, name
  printed = capsys.readouterr().out
  assert '| Source → target | Cond. | n | Runs |' in printed
  assert f'Wrote 20 files to {out}' in printed  # 5 tables, 5 figures x (PNG, PDF, caption)
  assert r'\begin{tabular}' in (out / 'summary.tex').read_text()
  runs = pd.read_csv(out / 'runs.csv')
  assert len(runs) == runs["run_id"].nunique() == 2 * 3 + 5 * 2 * 3  # scratch on A and B


def test_default_out_next_to_the_file_and_no_figures(tmp_path):
  curves = tmp_path / 'hand.csv'
  shutil.copy(HAND, curves)
  args = _parse([str(curves), '--k', '2', '--n-boot', '200', '--reference', 'none',
                 '--no-figures', '--test', 'permutation'])
  assert cli.run(args) == 0
  out = tmp_path / 'analysis_hand'
  assert sorted(p.name for p in out.iterdir()) == ['decomposition.csv', 'runs.csv', 'summary.csv',
                                                   'summary.md', 'summary.tex']
  summary = pd.read_csv(out / 'summary.csv')
  # 2 sign-flip pairs cannot reach p < 0.05; the AnB runs lack the early step (10).
  assert set(summary['verdict']) == {'reference', 'single run', 'untestable', 'no data'}


def test_rule_k_and_early_step_options(tmp_path):
  out = tmp_path / 'out'
  args = _parse([str(HAND), '--out', str(out), '--rule', 'best_k', '--early-step', '20',
                 '--n-boot', '200', '--no-figures'])
  assert (args.k, args.early_step) == (None, 20.0)
  assert cli.run(args) == 0
  summary = pd.read_csv(out / 'summary.csv')
  early = summary[summary['measure'] == 'early']
  assert (early['step_lo'] == 20).all() and early['value'].notna().all()
  # best_k without --k is the paper's mean of the 10 best: hand_curves' runs have 3-4 evaluations.
  assert summary.loc[summary['measure'] == 'final_best_k', 'value'].isna().all()
  assert 'mean of the 10 best evaluations' in (out / 'summary.md').read_text()


def test_default_out_for_a_results_directory(tmp_path):
  assert cli.default_out(tmp_path) == tmp_path / 'analysis'
  assert cli.default_out(tmp_path / 'x.csv.gz') == tmp_path / 'analysis_x'


def test_user_errors_propagate_for_the_harness_cli(tmp_path):
  bad = tmp_path / 'bad.csv'
  pd.read_csv(HAND).drop(columns='target').to_csv(bad, index=False)
  with pytest.raises(UserError, match='target'):
    cli.run(_parse([str(bad)]))
  with pytest.raises(UserError, match='threshold'):
    cli.run(_parse([str(HAND), '--threshold', '1.5']))


def test_importing_analysis_does_not_import_plotting():
  import subprocess
  import sys
  code = ('import sys, analysis; '
          'print(any(m in sys.modules for m in ("seaborn", "matplotlib")))')
  out = subprocess.run([sys.executable, '-c', code], capture_output=True, text=True, check=True)
  assert out.stdout.strip() == 'False'
