# The two commands a new user needs: `make run` and `make test`.
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed-stamp

.PHONY: install run run-scaled test test-fast screenshots lint bench chaos clean

$(STAMP): pyproject.toml constraints.txt
	@test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -c constraints.txt -e '.[dev]'
	@touch $(STAMP)

install: $(STAMP)

# Development mode is asked for explicitly (DEBUG defaults to off); keys are made in var/.
run: export DEBUG ?= true
run: export NOTIFY_ALLOW_PRIVATE_URLS ?= true
run: install
	$(PY) manage.py migrate --noinput
	$(PY) manage.py seed_demo
	$(PY) bin/run

# Production settings on this machine: PostgreSQL (127.0.0.1:5432, database portal_scaled),
# Redis (127.0.0.1:6379/1), gunicorn with several workers and two django-q2 clusters.
run-scaled: install
	$(PY) bin/run --scaled

test: install
	$(PY) -m pytest $(PYTEST_ARGS)

# The inner loop while developing: everything but the real browser, the chaos suite and the
# other end-to-end tests with live processes (marked slow). `make test` stays the whole suite.
test-fast: install
	$(PY) -m pytest -m "not slow and not browser" $(PYTEST_ARGS)

# Re-take docs/screenshots/*.png (the README's) from a fortnight of demo use in Chromium.
screenshots: install
	SCREENSHOTS=1 $(PY) -m pytest -q tests/browser/test_screenshots.py

# 300 runs through the API with every simulator fault on and a worker SIGKILLed mid-work,
# on SQLite with the ORM broker, then on PostgreSQL with Redis; then both again with the
# convergence faults (forgotten runs, stray steps, spent and expiring keys).
chaos: install
	$(PY) -m tests.chaos --runs 300 --kills 4 --json var/chaos-sqlite.json
	$(PY) -m tests.chaos --runs 300 --kills 4 --postgres --redis --json var/chaos-postgres.json
	$(PY) -m tests.chaos --runs 300 --kills 4 --convergence --json var/chaos-convergence-sqlite.json
	$(PY) -m tests.chaos --runs 300 --kills 4 --convergence --postgres --redis --json var/chaos-convergence-postgres.json

# What CI checks besides the tests (and what .pre-commit-config.yaml runs before a commit).
# manage.py needs development mode (or a SECRET_KEY) to load the settings at all.
lint: export DEBUG ?= true
lint: install
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .
	$(VENV)/bin/mypy
	$(VENV)/bin/lint-imports
	$(PY) manage.py makemigrations --check --dry-run

# The benchmarks of issue 8 (README "Benchmarks"): PostgreSQL on 127.0.0.1:5432 and Redis on
# 127.0.0.1:6379 (database 5); prints a table and writes bench/results.json.
bench: install
	$(PY) -m bench $(BENCH_ARGS)

clean:
	rm -rf $(VENV) var staticfiles .pytest_cache .ruff_cache .mypy_cache test-artifacts
