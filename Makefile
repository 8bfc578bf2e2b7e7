# Two entry points, both self-contained on a fresh machine with Python 3.10-3.12:
#   make run   - set up .venv, then execute the notebooks in order (quick profile)
#   make test  - set up .venv, then run the whole test suite
PYTHON ?= python3
VENV ?= .venv
PROFILE ?= quick
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: run test setup clean

setup: $(STAMP)

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip uv
	$(BIN)/uv pip install --quiet --python $(BIN)/python -e ".[dev]" \
	  || $(BIN)/python -m pip install --quiet -e ".[dev]"
	touch $(STAMP)

run: $(STAMP)
	$(BIN)/pianoacc notebooks --profile $(PROFILE) --out build/notebooks --figures build/figures

test: $(STAMP)
	$(BIN)/python -m pytest

clean:
	rm -rf build cache .pytest_cache
