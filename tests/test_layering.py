"""Layering: ``harness`` never imports ``analysis`` or the app layer (``transferbench``)."""

import ast
import pathlib

ROOT = pathlib.Path(__file__).resolve().parent.parent
FORBIDDEN = ('analysis', 'transferbench', 'benchmarks')


def _imported_modules(path: pathlib.Path) -> set[str]:
  """Every module a file imports, at any depth (function-level imports included)."""
  names = set()
  for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
    if isinstance(node, ast.Import):
      names.update(alias.name for alias in node.names)
    elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
      names.add(node.module)
  return names


def test_harness_imports_neither_analysis_nor_the_app_layer():
  files = sorted((ROOT / 'harness').rglob('*.py'))
  assert len(files) > 10  # the package is where this test thinks it is
  offending = {f'{path.relative_to(ROOT)}: {name}' for path in files
               for name in _imported_modules(path) if name.split('.')[0] in FORBIDDEN}
  assert not offending, sorted(offending)


def test_the_check_sees_function_level_imports(tmp_path):
  bad = tmp_path / 'bad.py'
  bad.write_text('def f():\n  from analysis import report\n  import transferbench.cli\n')
  assert _imported_modules(bad) == {'analysis', 'transferbench.cli'}
