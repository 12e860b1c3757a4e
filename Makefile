# remitflow — `make run` and `make test` are all a newcomer needs.
PYTHON ?= python3
VENV   ?= .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.installed
# uv (pinned in constraints.txt, from PyPI) installs what pip would, resolving and
# unpacking in parallel: a fresh `make venv` took 94 s with pip, 51 s with uv (both
# compile bytecode at install: CI sets PYTHONDONTWRITEBYTECODE, so nothing compiles later).
UV_INSTALL := $(VENV)/bin/uv pip install --python $(PY)

.DEFAULT_GOAL := help
.PHONY: help venv run test test-durations test-fast lint fmt lock soak clean

help: ## list targets
	@grep -hE '^[a-zA-Z_-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  make %-20s %s\n", $$1, $$2}'

$(STAMP): pyproject.toml constraints.txt
	@test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q -c constraints.txt uv
	$(UV_INSTALL) -q --compile-bytecode -c constraints.txt -e '.[dev]'
	@touch $@

venv: $(STAMP) ## create .venv and install the project (editable, dev extras)

run: venv ## emulator + bootstrap + every service + demo traffic (Ctrl-C or SIGTERM stops)
	$(VENV)/bin/remitflow dev

# One emulator and one stack per xdist worker; the 25 slowest tests printed at the end;
# a test past the per-test budget fails the run (tests/layers.py, docs/testing.md).
# Six workers on two cores: much of an end-to-end test's time is waiting on the
# emulator or a timeout. At five the cores idled a tenth of the run once the tests
# stopped busy-polling; at six they stay 90-100 % busy (docs/testing.md, "Measured").
# Files are handed out longest first (tests/durations.json, from make test-durations),
# at most three of the waiting ones at once
# (tests/layers.py WAITING, through the scheduler hook in tests/conftest.py).
# The unit layer waits on nothing: one worker per core.
PYTEST_WORKERS ?= 6
# Bytecode may be written during the suite, even where PYTHONDONTWRITEBYTECODE is set (as
# in CI): otherwise every worker parses and assertion-rewrites every test module again at
# collection (8–9 s of CPU each; 5 s with pytest's cache) and each of the hundred-odd
# service processes the suite starts compiles our sources again. __pycache__ is ignored.
TEST_ENV := env -u PYTHONDONTWRITEBYTECODE
test: venv ## the whole suite against the embedded emulator (no network, no Docker)
	$(TEST_ENV) $(PY) -m pytest -q -n $(PYTEST_WORKERS) --dist loadfile --durations=25

test-durations: venv ## make test, then each file's seconds into tests/durations.json (its order)
	$(TEST_ENV) $(PY) -m pytest -q -n $(PYTEST_WORKERS) --dist loadfile \
		--write-durations tests/durations.json

test-fast: venv ## the unit layer only, for the inner loop (no emulator, under a minute)
	$(TEST_ENV) $(PY) -m pytest -q -m unit -n auto --durations=10

lint: venv ## ruff, mypy --strict, import contracts (docs/architecture.md), dead code
	$(VENV)/bin/ruff check .
	$(VENV)/bin/mypy shared services tools tests
	$(VENV)/bin/lint-imports
	$(VENV)/bin/vulture

fmt: venv ## apply ruff's fixes
	$(VENV)/bin/ruff check --fix .

lock: venv ## re-pin constraints.txt from what .venv has now
	{ echo "# Exact versions every install uses (make venv: pip install -c constraints.txt)."; \
	  echo "# Regenerate after changing dependencies: make lock"; \
	  $(PY) -m pip freeze --exclude-editable | grep -v '^-e'; } > constraints.txt

clean: ## remove caches and dev logs (keeps .venv)
	rm -rf .pytest_cache .mypy_cache .ruff_cache .dev-logs .hypothesis

-include deploy.mk
-include bench.mk

soak: venv ## N remittances with random kill -9s: prints lost=… duplicates=… (N=2000)
	$(PY) -m tools.soak --count $(or $(N),2000)
