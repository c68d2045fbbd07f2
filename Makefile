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
	$(BIN)/python -m pip install --quiet --upgrade pip setuptools
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

# Every installed distribution against the vulnerability data PyPI publishes (.ci/audit.py
# says why not pip-audit: its endpoints are unreachable from these machines). A known
# vulnerability fails; with the default --strict so does a distribution that could not be
# checked (not at its latest release). `make audit AUDIT_FLAGS=` lists those instead.
AUDIT_FLAGS ?= --strict
audit: install
	$(BIN)/python .ci/audit.py $(AUDIT_FLAGS)

format: install
	$(BIN)/ruff format .
	$(BIN)/ruff check --fix .

bench: install
	$(BIN)/python benchmarks/e2e.py

clean:
	rm -rf $(VENV) .pytest_cache .ruff_cache .mypy_cache
