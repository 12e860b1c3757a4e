"""Peak RSS of reading a generated camt.054 file (docs/bankfiles.md, "Memory").

Run one size per process so peaks do not mix:
``python -m tools.bench.bankfiles.memory 1000`` and ``... 100000``.
"""

from __future__ import annotations

import resource
import sys
import tempfile
import time

from services.enrichment.bankfiles import Transaction, read_bank_file
from services.enrichment.bankfiles.formats import CAMT_054_001_08, schema_for
from tools.bench.bankfiles.gen import chunks


def main(count: int) -> None:
    """Write the file to disk in pieces, then read it and print the figures."""
    schema_for(CAMT_054_001_08)
    baseline = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    with tempfile.TemporaryFile() as file:
        for piece in chunks(count):
            file.write(piece)
        size = file.tell()
        file.seek(0)
        started = time.perf_counter()
        mapped = sum(isinstance(item, Transaction)
                     for item in read_bank_file(file, partner="FIRSTBANK"))
        elapsed = time.perf_counter() - started
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    print(f"transactions={count} mapped={mapped} file_mb={size / 1e6:.1f} "
          f"seconds={elapsed:.1f} baseline_rss_mb={baseline / 1024:.1f} "
          f"peak_rss_mb={peak / 1024:.1f}")


if __name__ == "__main__":
    main(int(sys.argv[1]) if len(sys.argv) > 1 else 1000)
