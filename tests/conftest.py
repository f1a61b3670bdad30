"""Shared fixtures: one TFDS data directory per test session (embedded data built once)."""

import os

import pytest


@pytest.fixture(scope='session')
def data_dir(tmp_path_factory):
  """Where the embedded data sets are built: $TRANSFERBENCH_TEST_DATA_DIR to reuse a build
  across sessions, else a fresh temporary directory (the real build path is then tested too)."""
  reuse = os.environ.get('TRANSFERBENCH_TEST_DATA_DIR')
  return reuse if reuse else str(tmp_path_factory.mktemp('tfds'))
