"""Pass-1 validation time: xmlschema per unit vs libxml2 streaming (docs/bankfiles.md).

``python -m tools.bench.bankfiles.validate 10000``: both on the same generated
camt.054.001.08 file in one run, so the ratio holds on a loaded machine.
"""

from __future__ import annotations

import io
import sys
import time

from services.enrichment.bankfiles import formats, read_bank_file, reader, safexml
from services.enrichment.bankfiles.formats import CAMT_054_001_08
from tools.bench.bankfiles.gen import document


def main(count: int) -> None:
    formats.unit_declaration(CAMT_054_001_08)
    formats.libxml2_schema_for(CAMT_054_001_08)
    data = document(count)
    timings = {}
    for name, validate in (("xmlschema", reader._locate), ("libxml2", reader._validate)):
        source = safexml.spool(io.BytesIO(data), len(data))
        started = time.perf_counter()
        validate(source, CAMT_054_001_08)
        timings[name] = time.perf_counter() - started
    started = time.perf_counter()
    items = sum(1 for _ in read_bank_file(io.BytesIO(data), partner="FIRSTBANK"))
    total = time.perf_counter() - started
    print(f"entries={count} xmlschema_s={timings['xmlschema']:.2f} "
          f"libxml2_s={timings['libxml2']:.2f} "
          f"ratio={timings['xmlschema'] / timings['libxml2']:.1f} "
          f"read_bank_file_s={total:.2f} items={items}")


if __name__ == "__main__":
    main(int(sys.argv[1]) if len(sys.argv) > 1 else 10_000)
