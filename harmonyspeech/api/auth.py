"""API keys: stored hashed, checked in constant time (DESIGN.md decision 10)."""

from __future__ import annotations

import hashlib
import hmac
import ipaddress
import os
from collections.abc import Iterable, Mapping

from harmonyspeech.config import AuthConfig, EngineConfig
from harmonyspeech.errors import AuthenticationError, ConfigError


def hash_key(key: str) -> str:
    """The stored form of an API key: ``sha256:<hex digest>``."""
    return "sha256:" + hashlib.sha256(key.encode("utf-8")).hexdigest()


class ApiKeyVerifier:
    """Checks ``Authorization: Bearer <key>`` against a set of key hashes."""

    def __init__(self, hashes: Iterable[str]):
        self._hashes = tuple(dict.fromkeys(hashes))

    @classmethod
    def from_config(
        cls, auth: AuthConfig, environ: Mapping[str, str] | None = None
    ) -> ApiKeyVerifier:
        """Hashes from the config plus plaintext keys from ``auth.api_keys_env``."""
        env = os.environ if environ is None else environ
        plain = [k.strip() for k in env.get(auth.api_keys_env, "").split(",") if k.strip()]
        return cls([*auth.api_key_hashes, *(hash_key(k) for k in plain)])

    @property
    def enabled(self) -> bool:
        return bool(self._hashes)

    def verify(self, authorization: str | None) -> None:
        """Accept or raise.

        Raises:
            AuthenticationError: Missing header, wrong scheme or unknown key.
        """
        if not self.enabled:
            return
        scheme, _, key = (authorization or "").partition(" ")
        if scheme.lower() != "bearer" or not key.strip():
            raise AuthenticationError("missing API key: send 'Authorization: Bearer <key>'")
        digest = hash_key(key.strip())
        matched = False
        # Compare against every stored hash, without short-circuiting, so timing reveals nothing.
        for stored in self._hashes:
            matched |= hmac.compare_digest(stored, digest)
        if not matched:
            raise AuthenticationError("invalid API key")


def is_loopback(host: str) -> bool:
    """Whether binding ``host`` keeps the server reachable from this machine only."""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def ensure_safe_binding(host: str, verifier: ApiKeyVerifier, *, allow_insecure: bool) -> None:
    """Refuse to expose an unauthenticated server beyond loopback.

    Raises:
        ConfigError: ``host`` is not loopback, no keys are configured and no override was given.
    """
    if is_loopback(host) or verifier.enabled or allow_insecure:
        return
    raise ConfigError(
        [
            (
                "server.host",
                f"serving on {host} without API keys is refused; configure "
                "server.auth.api_key_hashes or the keys environment variable, or pass "
                "--insecure-no-auth",
            )
        ]
    )


def with_env_keys(config: EngineConfig, environ: Mapping[str, str] | None = None) -> EngineConfig:
    """The config with keys from the environment added as hashes.

    Done once where the app is built, so replicas on other nodes need no copy of the variable
    and plaintext keys never travel.
    """
    auth = config.server.auth
    hashes = ApiKeyVerifier.from_config(auth, environ)._hashes
    if hashes == tuple(auth.api_key_hashes):
        return config
    server = config.server.model_copy(
        update={"auth": auth.model_copy(update={"api_key_hashes": list(hashes)})}
    )
    return config.model_copy(update={"server": server})
