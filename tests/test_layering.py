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


def _spelled_condition_names(path: pathlib.Path, names: set[str]) -> list[str]:
  """String constants in code (docstrings excluded) that are a condition's name."""
  tree = ast.parse(path.read_text(), filename=str(path))
  docstrings = {id(node.body[0].value) for node in ast.walk(tree)
                if isinstance(node, (ast.Module, ast.FunctionDef, ast.ClassDef, ast.AsyncFunctionDef))
                and node.body and isinstance(node.body[0], ast.Expr)
                and isinstance(node.body[0].value, ast.Constant)}
  where = path.relative_to(ROOT) if path.is_relative_to(ROOT) else path.name
  return [f'{where}:{node.lineno}: {node.value!r}' for node in ast.walk(tree)
          if isinstance(node, ast.Constant) and isinstance(node.value, str)
          and node.value in names and id(node) not in docstrings]


def test_no_module_but_the_registry_spells_a_condition_name():
  from harness import conditions
  files = [path for package in ('harness', 'analysis', 'transferbench')
           for path in sorted((ROOT / package).rglob('*.py'))
           # The published families' own names in the authors' logs (a data format, mapped to ours).
           if path.name != 'conditions.py' and path.relative_to(ROOT).as_posix() != 'analysis/reference.py']
  assert len(files) > 20
  spelled = [hit for path in files for hit in _spelled_condition_names(path, set(conditions.CONDITIONS))]
  assert not spelled, spelled


def test_the_name_check_finds_a_spelled_name(tmp_path):
  bad = tmp_path / 'bad.py'
  bad.write_text('"""selffer in a docstring is fine."""\nX = "transfer"\n')
  assert _spelled_condition_names(bad, {'selffer', 'transfer'}) == ["bad.py:2: 'transfer'"]
