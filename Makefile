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
.PHONY: help venv bytecode run test test-fast lint fmt lock soak clean

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
# Four workers on two cores: half of an end-to-end test's time is waiting on the
# emulator or a timeout. The unit layer waits on nothing: one worker per core.
PYTEST_WORKERS ?= 4
test: venv bytecode ## the whole suite against the embedded emulator (no network, no Docker)
	$(PY) -m pytest -q -n $(PYTEST_WORKERS) --dist loadfile --durations=25

test-fast: venv bytecode ## the unit layer only, for the inner loop (no emulator, under a minute)
	$(PY) -m pytest -q -m unit -n auto --durations=10

# The suite starts a hundred-odd service processes; each would compile our sources again
# where PYTHONDONTWRITEBYTECODE is set (as in CI). Compiled once here, checked by mtime.
bytecode: venv ## compile shared/services/tools once (the suite starts a hundred-odd processes)
	@$(PY) -m compileall -q shared services tools

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
