"""``make bench``: throughput, cost and footprint of the whole pipeline (``docs/capacity.md``).

``python -m tools.bench.run`` starts the emulator and the three services as separate OS
processes, measures an idle window, pushes N remittances through (capacity: the
pipeline's rate against the emulator's limit, 1 / its CPU per remittance), then a
steady load at 80 % of that (per-remittance figures net of idle), and writes
``tools/bench/results.json``. ``python -m tools.bench.surge`` (``make surge``) offers
three times the sustainable rate and reports how the back-pressure held it.
"""
