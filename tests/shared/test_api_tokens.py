"""Weak API tokens are refused at start, with how to generate a good one."""

from __future__ import annotations

import secrets

import pytest

from shared.settings import SettingsError, load_settings, token_problem

WEAK = ["changeme12345678", "aaaaaaaaaaaaaaaa", "abcdefghijklmnop", "0123456789abcdef",
        "abababababababab", "Password12345678", "my-secret-api-token-2026"]
# Every token this suite and the tooling use must keep working.
SUITE = ["auth-test-token-0123456789", "browser-test-token-5f2a9c",
         "console-test-token-0123456789", "endpoint-test-token", "iam-test-token-0123456789",
         "notification-test-token", "rate-limit-test-token-0123", "resolve-test-token",
         "s3cret-test-token", "sweeper-test-token", "tracing-test-token-0123456789"]


@pytest.mark.parametrize("token", WEAK)
def test_a_low_entropy_token_is_refused_with_how_to_generate_one(
        monkeypatch: pytest.MonkeyPatch, token: str) -> None:
    monkeypatch.setenv("REMITFLOW_API_TOKEN", token)
    with pytest.raises(SettingsError) as refused:
        load_settings()
    message = str(refused.value)
    assert "REMITFLOW_API_TOKEN" in message and "secrets.token_urlsafe(32)" in message
    assert token not in message  # the refusal does not echo the token


@pytest.mark.parametrize("token", SUITE)
def test_the_suites_own_tokens_pass(monkeypatch: pytest.MonkeyPatch, token: str) -> None:
    monkeypatch.setenv("REMITFLOW_API_TOKEN", token)
    settings = load_settings()
    assert settings.api.token is not None and settings.api.token.get_secret_value() == token


def test_generated_tokens_pass() -> None:
    assert not [t for t in (secrets.token_urlsafe(32) for _ in range(2000)) if token_problem(t)]
