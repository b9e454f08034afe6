"""API-key checks and the refusal to expose an unauthenticated server."""

from __future__ import annotations

import pytest

from harmonyspeech.api.auth import ApiKeyVerifier, ensure_safe_binding, hash_key, is_loopback
from harmonyspeech.cli import main
from harmonyspeech.errors import AuthenticationError, ConfigError
from tests.conftest import ROOT


def test_hash_format() -> None:
    digest = hash_key("secret")
    assert digest.startswith("sha256:") and len(digest) == 7 + 64


@pytest.mark.parametrize("header", [None, "", "Bearer", "Basic abc", "Bearer wrong"])
def test_rejected_headers(header: str | None) -> None:
    with pytest.raises(AuthenticationError):
        ApiKeyVerifier([hash_key("right")]).verify(header)


def test_accepts_any_configured_key() -> None:
    verifier = ApiKeyVerifier([hash_key("one"), hash_key("two")])
    verifier.verify("Bearer one")
    verifier.verify("Bearer two ")


def test_no_keys_means_open() -> None:
    verifier = ApiKeyVerifier([])
    assert not verifier.enabled
    verifier.verify(None)


@pytest.mark.parametrize(
    ("host", "loopback"),
    [("127.0.0.1", True), ("::1", True), ("localhost", True), ("0.0.0.0", False)],
)
def test_loopback_detection(host: str, loopback: bool) -> None:
    assert is_loopback(host) is loopback


def test_public_binding_without_keys_is_refused() -> None:
    with pytest.raises(ConfigError, match="--insecure-no-auth"):
        ensure_safe_binding("0.0.0.0", ApiKeyVerifier([]), allow_insecure=False)
    ensure_safe_binding("0.0.0.0", ApiKeyVerifier([]), allow_insecure=True)
    ensure_safe_binding("0.0.0.0", ApiKeyVerifier([hash_key("k")]), allow_insecure=False)


def test_serve_refuses_before_starting_anything(capsys: pytest.CaptureFixture[str]) -> None:
    config = str(ROOT / "configs" / "test.yaml")
    assert main(["serve", "--config", config, "--host", "0.0.0.0"]) == 2
    assert "without API keys is refused" in capsys.readouterr().err
