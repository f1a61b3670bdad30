"""The test suite's tiny sweep as a sweep file: ``transferbench run tests/tiny_sweep.py --arg DATA_DIR``."""

from tests.test_sweeps import tiny_config


def get_config(data_dir):
  return tiny_config(data_dir)
