# Two entry points, both self-contained on a fresh machine with Python 3.10-3.12:
#   make run   - set up .venv, then execute the notebooks in order (quick profile)
#   make test  - set up .venv, then run the whole test suite
PYTHON ?= python3
VENV ?= .venv
PROFILE ?= quick
WORKERS ?= auto
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
CACHE := $(or $(PIANOACC_CACHE),cache)
PROGRAMS := $(CACHE)/decoders/prebuilt

.PHONY: run test setup clean

setup: $(STAMP) $(PROGRAMS)

# --compile-bytecode writes the .pyc files at install: where Python may not write them
# itself (PYTHONDONTWRITEBYTECODE, a read-only install) every process that imports
# TensorFlow would otherwise compile its sources again, many seconds of CPU each time.
$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip uv
	$(BIN)/uv pip install --quiet --compile-bytecode --python $(BIN)/python -e ".[dev]" \
	  || $(BIN)/python -m pip install --quiet -e ".[dev]"
	touch $(STAMP)

# The decoding programs of a first `pianoacc accompany` (the shipped FNet at the command's
# defaults, under JAX), made here rather than in the user's first run, where they took
# about 4 s of a 12 s wait (benchmarks/results/accompany_wait.json); made again when the
# package or the model changes, since a kept program is found by the package's source.
$(PROGRAMS): $(STAMP) $(shell find pianoacc_utils -name '*.py') pretrained/fnet/model.keras
	$(BIN)/pianoacc prebuild
	@mkdir -p $(@D) && touch $@

run: setup
	$(BIN)/pianoacc notebooks --profile $(PROFILE) --out build/notebooks --figures build/figures

# One test process per core (pytest-xdist); the notebook tests share one worker, in order.
test: setup
	$(BIN)/python -m pytest -n $(WORKERS) --dist loadgroup

clean:
	rm -rf build cache .pytest_cache
