# Two commands set up everything on a fresh machine: `make run` and `make test`.
PY ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: run test test-sqlite test-postgres browser lint bench demo clean

$(STAMP): pyproject.toml
	test -d $(VENV) || $(PY) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	$(BIN)/pip install -q -e '.[dev]'
	touch $(STAMP)

## Install, create var/ (database, keys, demo merchant and customer) and serve all zones.
run: $(STAMP)
	$(BIN)/anfu run

## Install and run the whole suite: lint, types, then tests on SQLite and on PostgreSQL.
test: $(STAMP) lint test-sqlite test-postgres

lint: $(STAMP)
	$(BIN)/ruff check src tests bench
	$(BIN)/mypy src

# The browser tests (tests/browser) drive Debian's Chromium; never Playwright's own download.
browser:
	command -v chromium >/dev/null || (apt-get update -qq && apt-get install -y -qq chromium)

test-sqlite: $(STAMP) browser
	$(BIN)/python -m pytest tests

# PostgreSQL at ANFU_PG_URL (default: the local server, database `test`).
ANFU_PG_URL ?= postgresql+psycopg://postgres@127.0.0.1:5432/test
test-postgres: $(STAMP) browser
	ANFU_TEST_DATABASE_URL=$(ANFU_PG_URL) $(BIN)/python -m pytest tests

bench: $(STAMP)
	command -v wrk >/dev/null || (apt-get update -qq && apt-get install -y -qq wrk)
	$(BIN)/python bench/run.py

demo: $(STAMP)
	$(BIN)/anfu demo

clean:
	rm -rf var .pytest_cache .mypy_cache .ruff_cache
