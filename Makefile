# FKS: `make run` (the main job on the sample data) and `make test` (every test) are all a new machine needs.
SHELL := /bin/bash
PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
LIBRARY_PACKAGES := config market storage providers expectations features ingestion envs models backtest serving execution

.PHONY: install run test test-fast bench lint clean

$(STAMP): pyproject.toml
	@$(PYTHON) -c 'import sys; sys.exit(0 if sys.version_info >= (3, 11) else "FKS needs Python >= 3.11; set PYTHON=/path/to/python3.11")'
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[dev]' --config-settings editable_mode=compat
	touch $(STAMP)

install: $(STAMP)

run: $(STAMP)
	$(BIN)/fks pipeline

# The PostgreSQL twins of the store tests run against a throwaway server when PostgreSQL's
# binaries are installed (or TEST_POSTGRES_URL names a server); otherwise they skip, saying why.
test: $(STAMP)
	@bash -c 'source .ci/postgres.sh; \
	  if [ -z "$${TEST_POSTGRES_URL:-}" ]; then FKS_PG_INSTALL=0 fks_start_postgres; trap fks_stop_postgres EXIT; fi; \
	  $(BIN)/python -m pytest'

test-fast: $(STAMP)
	$(BIN)/python -m pytest -m "not slow"

bench: $(STAMP)
	@for b in benchmarks/[a-z]*.py; do echo "== $$b"; $(BIN)/python -m benchmarks.$$(basename $$b .py) || exit 1; done

lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy $(LIBRARY_PACKAGES)

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache
