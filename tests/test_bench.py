"""`transferbench bench`: the three-way sweep on a few steps, and how rounds are summarised."""

import importlib.util
import re
import subprocess
import sys

import pytest

from benchmarks import bench

RESULT = re.compile(r'^RESULT speedup_vs_naive=(\S+) speedup_vs_pytorch=(\S+) compiles=(\d+) '
                    r'runs=(\d+)$', re.M)


def _bench(data_dir, *extra):
  # A fresh process: the bench points JAX's compile cache at a temporary directory of its own.
  argv = [sys.executable, '-m', 'transferbench.cli', 'bench', '--seeds', '1', '--steps', '6',
          '--cnn-steps', '1', '--data-dir', data_dir, *extra]
  out = subprocess.run(argv, capture_output=True, text=True, check=False)
  assert out.returncode == 0, out.stderr[-2000:]
  return out.stdout


def test_bench_times_the_sweep_three_ways_and_prints_the_result_line(data_dir):
  stdout = _bench(data_dir)
  naive, torch, compiles, runs = RESULT.search(stdout).groups()
  assert int(runs) == 17 and int(compiles) == 1  # one family: one program for all 17 runs
  assert float(naive) > 0
  naive_compiles = int(re.search(r'naive JAX: [\d.]+ s \((\d+) XLA compilations', stdout).group(1))
  assert naive_compiles >= 17  # a jit per run
  if importlib.util.find_spec('torch') is None:
    assert torch == 'n/a' and 'PyTorch: skipped' in stdout
  else:
    assert float(torch) > 0 and 'PyTorch per-run loop' in stdout
  assert re.search(r'CNN train step .* = [\d.]+% of peak', stdout)


@pytest.mark.slow
def test_bench_repeats_runs_fresh_rounds_and_reports_their_medians(data_dir):
  stdout = _bench(data_dir, '--repeats', '2', '--no-torch')
  assert stdout.count('--- round ') == 2 and stdout.count('harness: ') == 2
  harness = [float(x) for x in re.search(r'rounds \(seconds\): harness ([\d.]+), ([\d.]+);',
                                         stdout).groups()]
  table = float(re.search(r'^harness \(transferbench run\)\s+([\d.]+)', stdout, re.M).group(1))
  assert table == pytest.approx(sum(harness) / 2, abs=0.06)  # the median of two rounds
  assert len(RESULT.findall(stdout)) == 1


def _round(harness, naive, torch, compiles=1):
  return dict(harness_s=harness, naive_s=naive, torch_s=torch, compiles=compiles, families=1,
              runs=34, batch_size=64, cnn_flops=5e9, cnn_step_s=0.07, cnn_round_s=0.075,
              at_once=2, nominal=1.66e11, formula='2 cores', matmul=2.2e11)


def test_summary_takes_each_speedup_within_its_round_then_the_median(capsys):
  rounds = [_round(10.0, 30.0, 25.0), _round(20.0, 50.0, 30.0), _round(10.0, 20.0, 21.0, 2)]
  summary = bench.summarize(rounds)
  # Per round 3.0, 2.5 and 2.0 against naive: the median is 2.5, not 30 s / 10 s of the medians.
  assert summary['speedup']['naive'] == (2.5, 2.0, 3.0)
  assert summary['speedup']['torch'] == (2.1, 1.5, 2.5)
  assert summary['harness_s'] == 10.0 and summary['naive_s'] == 30.0
  assert summary['compiles'] == 2 and summary['count'] == 3  # the worst round's compilations
  bench.print_report(summary)
  out = capsys.readouterr().out
  assert RESULT.search(out).groups() == ('2.50', '2.10', '2', '34')
  assert '2.00-3.00x' in out


def test_summary_without_pytorch_in_a_round_reports_no_pytorch_speedup(capsys):
  summary = bench.summarize([_round(10.0, 30.0, None), _round(10.0, 31.0, 20.0)])
  assert summary['torch_s'] is None and summary['speedup']['torch'] is None
  bench.print_report(summary)
  assert RESULT.search(capsys.readouterr().out).group(2) == 'n/a'
