# One task runner. `make demo` and `make test` work on a fresh machine: they install what
# they need (a virtualenv with the project, and Debian's chromium for the browser tests).
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed-stamp

.PHONY: install demo serve test lint audit format bench chromium clean

install: $(STAMP)

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[test]'
	touch $(STAMP)

demo: install
	$(BIN)/fraudwatch demo

serve: install
	$(BIN)/fraudwatch serve

# Browser tests drive Debian's Chromium; Playwright cannot download its own browser here.
chromium:
	@command -v chromium >/dev/null 2>&1 || { \
	  echo "installing Debian chromium for the browser tests"; \
	  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium; }

test: install chromium
	$(BIN)/pytest

lint: install
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy

# Every installed distribution against PyPI's advisory data (fraudwatch itself, installed
# editable, is not on PyPI). A known vulnerability fails; so, with the default --strict, does a
# dependency the advisory service could not answer for. `make audit AUDIT_FLAGS=` lists those
# as skipped instead of failing.
AUDIT_FLAGS ?= --strict
audit: install
	$(BIN)/pip-audit --skip-editable --progress-spinner off $(AUDIT_FLAGS)

format: install
	$(BIN)/ruff format .
	$(BIN)/ruff check --fix .

bench: install
	$(BIN)/python benchmarks/e2e.py

clean:
	rm -rf $(VENV) .pytest_cache .ruff_cache .mypy_cache
