# igris — two commands: `make run` (embedded default) and `make test` (full suite).
SHELL := /bin/bash
UV := $(shell command -v uv 2>/dev/null)
ifeq ($(UV),)
UV := $(shell python3 -c 'import sysconfig;print(sysconfig.get_path("scripts"))')/uv
endif
PY := $(UV) run --frozen python
TEST_DATABASE_URL ?= postgres://postgres@127.0.0.1:5432/igris
TEST_REDIS_URL ?= redis://127.0.0.1:6379/1
PYTEST_ARGS ?= -n 2 --dist loadfile --durations=15

.PHONY: install system-deps run run-prod test check lint fmt bench migrate

$(UV):
	python3 -m pip install --quiet uv

install: $(UV)
	$(UV) sync --frozen

# Headless Chromium for the console's browser tests (Debian package; Playwright uses it
# through executable_path, it never downloads a browser).
system-deps:
	@command -v chromium >/dev/null 2>&1 || { \
	  echo "installing chromium (Debian)"; \
	  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium fonts-dejavu-core; }

# Third-party MCP clients for tests/compat: the Python SDK 1.x in its own venv (1.x and 2.x
# cannot share one) and the MCP Inspector CLI from npm. Both pinned; fast when already there.
compat-deps: $(UV)
	@test -x .venv-mcp1/bin/python || $(UV) venv --python 3.11 .venv-mcp1
	@$(UV) pip install --quiet --python .venv-mcp1/bin/python -r tests/compat/requirements-mcp1.txt
	@if ! command -v node >/dev/null 2>&1; then \
	  echo "compat-deps: node is missing; the MCP Inspector tests will skip (and fail when CI=true)"; \
	elif [ tests/compat/node_modules/.package-lock.json -nt tests/compat/package-lock.json ]; then \
	  :; \
	else \
	  npm ci --prefix tests/compat --no-audit --no-fund; \
	fi

run: install
	$(PY) manage.py igris_run

# The production shape on this machine: WORKERS web processes, the audit writer and a Celery
# worker with beat, supervised, against DATABASE_URL and REDIS_URL (DEMO=0 skips the demo server).
WORKERS ?= 2
DEMO ?= 1
run-prod: install
	@test -n "$$DATABASE_URL" -a -n "$$REDIS_URL" || { \
	  echo "make run-prod needs DATABASE_URL and REDIS_URL, e.g."; \
	  echo "  DATABASE_URL=postgres://postgres@127.0.0.1:5432/igris REDIS_URL=redis://127.0.0.1:6379/0 make run-prod"; \
	  exit 2; }
	$(PY) manage.py igris_prod --workers $(WORKERS) $(if $(filter 1,$(DEMO)),--demo,)

migrate: install
	$(PY) manage.py migrate

test: install system-deps compat-deps
	DATABASE_URL=$${DATABASE_URL:-$(TEST_DATABASE_URL)} REDIS_URL=$${REDIS_URL:-$(TEST_REDIS_URL)} \
	  $(UV) run --frozen pytest $(PYTEST_ARGS)

lint: install
	$(UV) run --frozen ruff check .
	$(UV) run --frozen ruff format --check .
	$(UV) run --frozen lint-imports
	$(PY) manage.py makemigrations --check --dry-run
	$(UV) run --frozen mypy

check: lint test

fmt: install
	$(UV) run --frozen ruff format .
	$(UV) run --frozen ruff check --fix .

bench: install
	$(PY) bench/run_all.py
