"""API tokens: which ones are refused (placeholders, short or predictable ones)."""

from __future__ import annotations

from itertools import pairwise

PLACEHOLDER_TOKENS = frozenset({"change-me", "changeme", "replace-me", "secret", "token"})
# Words that make a token a copied placeholder wherever they appear in it.
PLACEHOLDER_WORDS = ("changeme", "change-me", "change_me", "replaceme", "replace-me",
                     "password", "secret", "example", "default", "letmein", "qwerty")
MIN_TOKEN_LENGTH = 16
MIN_TOKEN_DISTINCT = 6
GENERATE_HINT = "generate one with: python -c 'import secrets; print(secrets.token_urlsafe(32))'"


def predictable(token: str) -> bool:
    """Few distinct characters (``aaaa…``, ``abab…``) or mostly repeated or consecutive
    neighbours (``abcd…``, ``1234…``): patterns a person types, never a generator's."""
    steps = sum(abs(ord(a) - ord(b)) <= 1 for a, b in pairwise(token))
    return len(set(token)) < MIN_TOKEN_DISTINCT or steps * 2 >= len(token) - 1


def token_problem(token: str) -> str | None:
    """Why ``token`` is unusable as an API token, or None when it is acceptable.

    Placeholders from example files, short tokens and low-entropy ones (``aaaa…``,
    ``changeme12345678``) are refused, so neither a copied example nor a typed
    "password" becomes a working credential.
    """
    lowered = token.strip().lower()
    if lowered in PLACEHOLDER_TOKENS or any(w in lowered for w in PLACEHOLDER_WORDS):
        return f"is a placeholder; {GENERATE_HINT}"
    if len(token) < MIN_TOKEN_LENGTH:
        return f"is shorter than {MIN_TOKEN_LENGTH} characters; {GENERATE_HINT}"
    if predictable(token):
        return f"is too predictable (repeated or sequential characters); {GENERATE_HINT}"
    return None
