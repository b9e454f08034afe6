"""API keys: stored hashed, checked in constant time (DESIGN.md decision 10)."""

from __future__ import annotations

import hashlib
import hmac
import ipaddress
import os
import re
from collections.abc import Iterable, Mapping
from pathlib import Path

from harmonyspeech.config import KEY_HASH_PATTERN, KEY_LABEL_PATTERN, AuthConfig, EngineConfig
from harmonyspeech.errors import AuthenticationError, ConfigError


def hash_key(key: str) -> str:
    """The stored form of an API key: ``sha256:<hex digest>``."""
    return "sha256:" + hashlib.sha256(key.encode("utf-8")).hexdigest()


def keys_file_line(key: str, label: str | None = None) -> str:
    """The keys-file line of ``key``: its hash, then its label if given.

    Raises:
        ConfigError: ``label`` is not a valid label.
    """
    if label is not None and not re.fullmatch(KEY_LABEL_PATTERN, label):
        raise ConfigError([("label", _LABEL_RULE)])
    return hash_key(key) + (f" {label}" if label else "")


_LABEL_RULE = (
    "a label is 1-64 letters, digits, '.', '_', '@' or '-', starting with a letter or digit"
)
_NOT_A_HASH = (
    "not a key hash; the keys file holds only 'sha256:<64 hex digits> [label]' lines, never "
    "plaintext keys (print a key's line with `harmonyspeech hash-key`)"
)


def parse_keys_file(text: str, *, source: str) -> dict[str, str | None]:
    """Key hashes and their labels from the text of a keys file.

    One ``sha256:<hex> [label]`` per line; blank lines and ``#`` comments are skipped. Problems
    name the line but never repeat its content (it might be a plaintext key).

    Raises:
        ConfigError: A line that is not a hash (plaintext keys included), a bad or repeated
            label, or a repeated hash; every such line is listed.
    """
    keys: dict[str, str | None] = {}
    label_line: dict[str, int] = {}
    problems: list[tuple[str, str]] = []
    for number, raw in enumerate(text.splitlines(), start=1):
        fields = raw.split("#", 1)[0].split()
        if not fields:
            continue
        where = f"line {number}"
        if not re.fullmatch(KEY_HASH_PATTERN, fields[0].lower()) or len(fields) > 2:
            problems.append((where, _NOT_A_HASH))
            continue
        digest = fields[0].lower()
        label = fields[1] if len(fields) == 2 else None
        if digest in keys:
            problems.append((where, "this key hash is listed twice"))
        elif label is not None and not re.fullmatch(KEY_LABEL_PATTERN, label):
            problems.append((where, _LABEL_RULE))
        elif label is not None and label in label_line:
            problems.append((where, f"label {label!r} already names line {label_line[label]}"))
        else:
            keys[digest] = label
            if label is not None:
                label_line[label] = number
    if problems:
        raise ConfigError(problems, source=source)
    return keys


def read_keys_file(path: str | Path) -> dict[str, str | None]:
    """Key hashes and labels from a keys file (see ``parse_keys_file``).

    Raises:
        ConfigError: The file cannot be read, or a line is invalid.
    """
    resolved = Path(path).expanduser()
    try:
        text = resolved.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        reason = exc.strerror if isinstance(exc, OSError) and exc.strerror else str(exc)
        problem = ("server.auth.api_keys_file", f"cannot read keys file {str(path)!r}: {reason}")
        raise ConfigError([problem]) from None
    return parse_keys_file(text, source=str(path))


class ApiKeyVerifier:
    """Checks ``Authorization: Bearer <key>`` against a set of key hashes.

    Args:
        hashes: Accepted keys as ``sha256:<hex>``.
        labels: Names of some of those keys, by hash (for logs and rate-limit overrides).
    """

    def __init__(self, hashes: Iterable[str], labels: Mapping[str, str] | None = None):
        self._hashes = tuple(dict.fromkeys(hashes))
        self._labels = dict(labels or {})

    @classmethod
    def from_config(
        cls, auth: AuthConfig, environ: Mapping[str, str] | None = None
    ) -> ApiKeyVerifier:
        """Hashes from the config and ``auth.api_keys_file``, plus plaintext keys from
        ``auth.api_keys_env``.

        Raises:
            ConfigError: The keys file is missing or invalid, or one label names two keys.
        """
        env = os.environ if environ is None else environ
        plain = [k.strip() for k in env.get(auth.api_keys_env, "").split(",") if k.strip()]
        hashes = list(auth.api_key_hashes)
        labels = dict(auth.api_key_labels)
        if auth.api_keys_file:
            for digest, label in read_keys_file(auth.api_keys_file).items():
                hashes.append(digest)
                if label is not None:
                    labels[digest] = label
        owners: dict[str, str] = {}
        for digest, label in labels.items():
            if owners.setdefault(label, digest) != digest:
                problem = ("server.auth.api_key_labels", f"label {label!r} names two keys")
                raise ConfigError([problem])
        return cls([*hashes, *(hash_key(k) for k in plain)], labels)

    @property
    def enabled(self) -> bool:
        return bool(self._hashes)

    @property
    def hashes(self) -> tuple[str, ...]:
        """The accepted key hashes."""
        return self._hashes

    @property
    def labels(self) -> Mapping[str, str]:
        """Labels of keys, by hash."""
        return dict(self._labels)

    def label(self, digest: str) -> str | None:
        """The label of the key with hash ``digest``, if it has one."""
        return self._labels.get(digest)

    def verify(self, authorization: str | None) -> str | None:
        """Accept or raise.

        Returns:
            The hash of the accepted key; None when no keys are configured (everyone passes).

        Raises:
            AuthenticationError: Missing header, wrong scheme or unknown key.
        """
        if not self.enabled:
            return None
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
        return digest


def is_loopback(host: str) -> bool:
    """Whether binding ``host`` keeps the server reachable from this machine only."""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def ensure_safe_binding(
    host: str,
    verifier: ApiKeyVerifier,
    *,
    allow_insecure: bool,
    keys_env: str = "HARMONYSPEECH_API_KEYS",
    where: str = "server.host",
) -> None:
    """Refuse to expose an unauthenticated server beyond loopback.

    Args:
        host: Where the server listens.
        verifier: The configured keys.
        allow_insecure: The operator's explicit override.
        keys_env: The environment variable keys may come from (named in the message).
        where: What set ``host``, for the message.

    Raises:
        ConfigError: ``host`` is not loopback, no keys are configured and no override was given.
    """
    if is_loopback(host) or verifier.enabled or allow_insecure:
        return
    raise ConfigError(
        [
            (
                where,
                f"serving on {host} without API keys is refused; configure "
                f"server.auth.api_key_hashes, server.auth.api_keys_file or {keys_env}, or set "
                "server.auth.allow_insecure_no_auth (harmonyspeech serve: --insecure-no-auth)",
            )
        ]
    )


def with_resolved_keys(
    config: EngineConfig, environ: Mapping[str, str] | None = None
) -> EngineConfig:
    """The config with keys from the environment and the keys file folded in as hashes (and
    the file's labels), and ``api_keys_file`` cleared.

    Done once where the app is built, so replicas on other nodes need no copy of the variable
    or the file, and plaintext keys never travel.

    Raises:
        ConfigError: The keys file is missing or invalid, or a rate-limit override names no
            key.
    """
    auth = config.server.auth
    verifier = ApiKeyVerifier.from_config(auth, environ)
    update = {
        "api_key_hashes": list(verifier.hashes),
        "api_key_labels": dict(verifier.labels),
        "api_keys_file": None,
    }
    resolved = auth.model_copy(update=update)
    problems = config.server.rate_limits.override_problems(resolved, keys_known=True)
    if problems:
        raise ConfigError(problems)
    if resolved == auth:
        return config
    server = config.server.model_copy(update={"auth": resolved})
    return config.model_copy(update={"server": server})
