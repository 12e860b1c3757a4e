"""A file's record in words: what ``remitflow send --file F --wait`` prints and the
console's Files page shows (docs/bankfiles.md, "An answer for every file")."""

from __future__ import annotations

from shared.files.progress import Progress

#: Record outcomes in the order they are reported.
_OUTCOMES = ("stored", "duplicate", "rejected", "quarantined", "not_final", "reported")
_LABELS = {"stored": "transactions created", "duplicate": "duplicates (already known)",
           "rejected": "transactions rejected", "quarantined": "conflicting duplicates",
           "not_final": "not final yet (ignored)", "reported": "group/batch status reports"}


def headline(progress: Progress) -> str:
    """One line: the state and, when quarantined, the reason."""
    if progress.state == "quarantined":
        return f"quarantined: {progress.reason or 'unknown reason'}"
    if progress.state == "done":
        return "processed"
    if progress.state == "reading":
        return f"reading (next record {progress.next_index})"
    return "not seen yet"


def describe(progress: Progress) -> list[str]:
    """Every line an operator needs: counts, rejection reasons, status reports,
    how the file was read, the quarantine detail. Never a file's content beyond
    references, codes and schema messages."""
    summary = progress.summary
    lines = [headline(progress)]
    info = summary.info
    if info.get("message_type"):
        lines.append(f"read as {info['message_type']} ({info.get('variant', 'ISO 20022')}), "
                     f"validated against {info.get('schema', '?')}")
    if progress.state == "quarantined" and info.get("detail"):
        lines.append(f"detail: {info['detail']}")
    for outcome in _OUTCOMES:
        if summary.counts.get(outcome):
            lines.append(f"{_LABELS[outcome]}: {summary.counts[outcome]}")
    for reason, n in sorted(summary.reasons.items()):
        lines.append(f"  rejected {reason}: {n}")
    for note in summary.notes:
        if "level" in note:
            txs = f", {note['transactions']} transactions" if note.get("transactions") else ""
            why = f" {note['reason']} {note.get('detail') or ''}".rstrip() if note.get(
                "reason") else ""
            lines.append(f"  {note['level']} {note.get('reference') or '?'}: "
                         f"{note['status']}{why}{txs}")
    return lines
