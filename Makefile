# Two commands for a new machine with Python 3.11 (README.md):
#   make demo   # creates/reuses .venv, trains ESAPN on the embedded synthetic set
#   make test   # creates/reuses .venv, runs the whole test suite
#   make test-fast  # the same without the slow tests, for development
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
export TF_USE_LEGACY_KERAS := 1
export TF_CPP_MIN_LOG_LEVEL := 2

.PHONY: demo test test-fast venv clean

venv: $(STAMP)

$(STAMP): requirements.txt setup.py
	@$(PYTHON) -c 'import sys; sys.exit(0 if sys.version_info[:2] == (3, 11) else "esapn_tf needs Python 3.11: run make PYTHON=python3.11 ...")'
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --disable-pip-version-check -r requirements.txt
	$(BIN)/python -m pip install --quiet --disable-pip-version-check --no-deps -e .
	touch $(STAMP)

demo: $(STAMP)
	$(BIN)/python bin/train.py --flagfile=configs/demo.flags

test: $(STAMP)
	$(BIN)/python -m pytest -q tests

# For development: leaves out the tests marked slow (tests/conftest.py).
test-fast: $(STAMP)
	$(BIN)/python -m pytest -q -m 'not slow' tests

clean:
	rm -rf $(VENV) runs/demo
