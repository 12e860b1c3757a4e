# `make bench`: the whole pipeline measured against the emulator; writes
# bench/results.json and prints a summary (about 8 minutes on 2 cores). Not part of
# `make test`. N remittances through the batched design (default 1000) and BASE_N
# through the Lambda-equivalent baseline (REMITFLOW_BATCHING=false, default 200).
# Included from the Makefile (`-include bench.mk`) or alone: `make -f bench.mk bench`.
PY ?= .venv/bin/python

ifndef STAMP
# Standalone: the main Makefile's `venv` target is not there; just require the venv.
venv:
	@test -x $(PY) || { echo "no $(PY): run 'make venv' first" >&2; exit 1; }
endif

.PHONY: bench
bench: venv ## throughput, CPU, memory and AWS cost per remittance (N=1000, BASE_N=200)
	$(PY) -m tools.bench.run --count $(or $(N),1000) --baseline-count $(or $(BASE_N),200)
