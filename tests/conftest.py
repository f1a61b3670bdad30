"""Shared fixtures: one TFDS data directory per test session (embedded data built once)."""

import os

import pytest
# submitit's logger runs logging.config.dictConfig on import, which closes every existing handler,
# absl's too, and absl's stream may be a capture pytest has since replaced: importing it here,
# before any handler exists, keeps it from closing pytest's capture in the middle of a test.
import submitit  # noqa: F401


@pytest.fixture(scope='session')
def data_dir(tmp_path_factory):
  """Where the embedded data sets are built: $TRANSFERBENCH_TEST_DATA_DIR to reuse a build
  across sessions, else a fresh temporary directory (the real build path is then tested too)."""
  reuse = os.environ.get('TRANSFERBENCH_TEST_DATA_DIR')
  return reuse if reuse else str(tmp_path_factory.mktemp('tfds'))
