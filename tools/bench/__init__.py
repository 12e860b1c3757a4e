"""``make bench``: throughput, cost and footprint of the whole pipeline (``docs/capacity.md``).

``python -m tools.bench.run`` starts the emulator and the three services as separate OS
processes, pushes N remittances through, replays the same API-call mix against the
emulator to find its own ceiling, and writes ``bench/results.json``. See
``docs/capacity.md`` for what the numbers mean for a real deployment.
"""
