# One task runner. `make demo` and `make test` work on a fresh machine: they install what
# they need (a virtualenv with the project, and Debian's chromium for the browser tests).
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed-stamp

.PHONY: install demo serve test lint audit format bench chromium clean screenshots

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

# The pictures in docs/screenshots/ (README, docs/dashboard.md), retaken by the browser tests
# that take them: about three minutes, where `FRAUDWATCH_UPDATE_SCREENSHOTS=1 pytest -m
# browser` runs every browser test for them. Look at each picture before committing it.
SCREENSHOT_TESTS := \
	tests/test_dashboard_browser.py::test_dashboard_screenshot \
	tests/test_dashboard_shared.py::test_presence_shows_who_else_is_looking_on_the_row_and_in_the_drawer \
	tests/test_dashboard_triage.py::test_details_drawer_shows_everything_and_holds_the_stream \
	tests/test_dashboard_triage.py::test_bulk_actions_report_each_result_and_name_the_holder \
	tests/test_dashboard_header.py::test_dark_theme_and_accessibility_basics \
	tests/test_dashboard_scale.py::test_ten_thousand_alerts_render_only_a_window \
	tests/test_dashboard_scorecard.py::test_the_scorecard_appears_once_labels_are_known \
	tests/test_admin_browser.py::test_an_admin_manages_users_and_sees_settings

screenshots: install chromium
	FRAUDWATCH_UPDATE_SCREENSHOTS=1 $(BIN)/pytest -q $(SCREENSHOT_TESTS)

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
