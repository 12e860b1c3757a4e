"""Bank-file benchmarks (docs/bankfiles.md, "Validation and memory"): ``make bench-bankfiles``."""
