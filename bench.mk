# `make bench`: the whole pipeline measured against the emulator (docs/capacity.md);
# writes tools/bench/results.json and prints a summary. Not part of `make test`.
# REPEAT runs (default 3) of: an idle window, N remittances (default 1000; the first
# N/10 at 2/s for latency, the rest flat out for capacity), N/3 at a steady 80 % of
# that capacity (per-remittance figures); then BASE_N (default 200) through the
# Lambda-equivalent baseline (REMITFLOW_BATCHING=false). About 6 minutes per
# repetition at N=1000 on 2 cores; N=300 is enough to iterate.
# Included from the Makefile (`-include bench.mk`) or alone: `make -f bench.mk bench`.
PY ?= .venv/bin/python

ifndef STAMP
# Standalone: the main Makefile's `venv` target is not there; just require the venv.
venv:
	@test -x $(PY) || { echo "no $(PY): run 'make venv' first" >&2; exit 1; }
endif

.PHONY: bench
bench: venv ## throughput, CPU, memory and AWS cost per remittance (N=1000, BASE_N=200)
	$(PY) -m tools.bench.run --count $(or $(N),1000) --baseline-count $(or $(BASE_N),200) \
	    --repeat $(or $(REPEAT),3)

# `make surge`: RATE/s (default 10 ≈ 3 × what `make bench` sustains on 2 cores) for
# SECONDS (default 120), then 20 at 2/s after the drain; writes tools/bench/surge.json.
.PHONY: surge
surge: venv ## a surge at 3 × the sustainable rate: backlog, drain time, attempts, latency
	$(PY) -m tools.bench.surge --rate $(or $(RATE),10) --seconds $(or $(SECONDS),120)

# `make bench-emulator`: the emulator's own cost per remittance with its Step Functions
# caches (shared/aws/emulator_sfn.py, docs/emulator.md) on and off, in one invocation:
# REPEAT runs with the caches, then one run of moto as shipped. N=300 takes ~6 minutes.
.PHONY: bench-emulator
bench-emulator: venv ## emulator CPU per remittance, its caches on vs moto as shipped (N=300)
	$(PY) -m tools.bench.run --count $(or $(N),300) --baseline-count 0 --steady-count 0 \
	    --profile-s 0 --repeat $(or $(REPEAT),1) --emulator-ab --out tools/bench/emulator-ab.json

# `make bench-calls`: the emulator's CPU per AWS call (GetItem, UpdateItem, ReceiveMessage),
# moto as shipped against the emulator's caches, in one run (docs/emulator.md). N=1000.
.PHONY: bench-calls
bench-calls: venv ## emulator CPU per AWS call, moto as shipped vs its caches (N=1000)
	$(PY) -m tools.bench.calls --count $(or $(N),1000)

# `make bench-bankfiles`: the bank-file reader and worker (docs/bankfiles.md, "Validation
# and memory"): validation speed on N entries (default 10000), the reader's peak RSS on
# FILE_N (default 100000; one size per process), the worker alone against its own emulator
# on WORKER_N transactions (default 1000; 100000 takes ~6 min). Not part of `make test`.
.PHONY: bench-bankfiles
bench-bankfiles: venv ## bank files: validation time, reader and worker peak RSS
	$(PY) -m tools.bench.bankfiles.validate $(or $(N),10000)
	$(PY) -m tools.bench.bankfiles.memory $(or $(FILE_N),100000)
	$(PY) -m tools.bench.bankfiles.worker $(or $(WORKER_N),1000)
