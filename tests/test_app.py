"""The app layer's ``transferbench`` command: where the benchmark comes from, or why not."""

import sys

from transferbench import cli


def test_bench_outside_a_checkout_is_a_user_error_naming_the_fix(monkeypatch, tmp_path, capsys):
  monkeypatch.setattr(cli, 'CHECKOUT', tmp_path)  # an installed copy: no benchmarks/ next to it
  monkeypatch.delitem(sys.modules, 'benchmarks.bench', raising=False)
  assert cli.main(['bench', '--seeds', '1']) == 2
  err = capsys.readouterr().err
  assert err.startswith('transferbench: error: the benchmark lives in the source checkout')


def test_bench_from_the_checkout_is_the_benchmark_module(monkeypatch):
  monkeypatch.delitem(sys.modules, 'benchmarks.bench', raising=False)
  args = cli.build_parser().parse_args(['bench', '--seeds', '1'])
  assert args.func.__module__ == 'benchmarks.bench' and args.seeds == 1
