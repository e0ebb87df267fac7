# Two commands set up everything on a fresh machine: `make run` and `make test`.
PY ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: run test test-sqlite test-postgres tools lint bench demo clean

# A .venv without the stamp is half-made (an install that stopped): it is rebuilt.
$(STAMP): pyproject.toml
	@scripts/check-build-tools.sh $(PY)
	@test -f $(STAMP) || rm -rf $(VENV)
	test -x $(BIN)/python || $(PY) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	$(BIN)/pip install -q -e '.[dev]'
	touch $(STAMP)

## Install, create var/ (database, keys, demo merchant and customer) and serve all zones.
## A developer's run: the sandbox routes (SMS outbox, carrier token) on unless set otherwise.
run: $(STAMP)
	ANFU_SANDBOX_ROUTES=$${ANFU_SANDBOX_ROUTES:-true} $(BIN)/anfu run

## Install and run the whole suite: lint, types, then tests on SQLite and on PostgreSQL.
test: $(STAMP) lint test-sqlite test-postgres

lint: $(STAMP)
	$(BIN)/ruff check src tests bench
	$(BIN)/mypy src

# Debian packages the tests use: Chromium for tests/browser (never Playwright's own
# download), oathtool, the reference TOTP generator the authenticator tests compare with,
# and SoftHSM2, the PKCS#11 token the platform keystore tests run against.
tools:
	command -v chromium >/dev/null && command -v oathtool >/dev/null || \
	  (apt-get update -qq && apt-get install -y -qq chromium oathtool)
	command -v softhsm2-util >/dev/null && test -f /usr/lib/softhsm/libsofthsm2.so || \
	  (apt-get update -qq && apt-get install -y -qq softhsm2)

test-sqlite: $(STAMP) tools
	$(BIN)/python -m pytest tests

# PostgreSQL at ANFU_PG_URL; by default the local server, started and given a `test`
# database by scripts/postgres-for-tests.sh when needed.
test-postgres: $(STAMP) tools
	url="$${ANFU_PG_URL:-$$(scripts/postgres-for-tests.sh)}" && \
	  ANFU_TEST_DATABASE_URL="$$url" $(BIN)/python -m pytest tests

bench: $(STAMP)
	command -v wrk >/dev/null || (apt-get update -qq && apt-get install -y -qq wrk)
	$(BIN)/python bench/run.py

demo: $(STAMP)
	$(BIN)/anfu demo

clean:
	rm -rf var .pytest_cache .mypy_cache .ruff_cache
