# Two entry points, both self-contained on a fresh machine with Python 3.10-3.12:
#   make run   - set up .venv, then execute the notebooks in order (quick profile)
#   make test  - set up .venv, then run the whole test suite
PYTHON ?= python3
VENV ?= .venv
PROFILE ?= quick
WORKERS ?= auto
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: run test setup clean

setup: $(STAMP)

# --compile-bytecode writes the .pyc files at install: where Python may not write them
# itself (PYTHONDONTWRITEBYTECODE, a read-only install) every process that imports
# TensorFlow would otherwise compile its sources again, many seconds of CPU each time.
$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip uv
	$(BIN)/uv pip install --quiet --compile-bytecode --python $(BIN)/python -e ".[dev]" \
	  || $(BIN)/python -m pip install --quiet -e ".[dev]"
	touch $(STAMP)

run: $(STAMP)
	$(BIN)/pianoacc notebooks --profile $(PROFILE) --out build/notebooks --figures build/figures

# One test process per core (pytest-xdist); the notebook tests share one worker, in order.
test: $(STAMP)
	$(BIN)/python -m pytest -n $(WORKERS) --dist loadgroup

clean:
	rm -rf build cache .pytest_cache
