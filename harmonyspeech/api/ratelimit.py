"""Per-key rate limits on ``/v1/*``: token buckets for requests and audio seconds per minute.

Every client (its API key's hash; without keys configured, its address) has up to two buckets,
each holding at most its per-minute amount and refilled continuously at that amount per minute:

- a request takes one token from the request bucket, and is refused while less than one is left;
- audio seconds are charged when a route knows them (a decoded upload, each synthesised
  sentence). The charge is never refused, so the balance may go below zero; while it is not
  above zero the client's next requests are refused.

A refusal is HTTP 429 with ``Retry-After``: the whole seconds until the request would pass. The
buckets live in this process (``MemoryBuckets``) or in Redis, shared by every ingress replica
(``harmonyspeech.api.ratelimit_redis``). Routes charge audio through ``charge_audio_seconds``,
which finds the request's client in a context variable set by ``RateLimitMiddleware``.
"""

from __future__ import annotations

import logging
import math
import re
import time
from collections.abc import Callable, Mapping
from contextvars import ContextVar
from dataclasses import dataclass
from typing import Protocol

from starlette.types import ASGIApp, Receive, Scope, Send

from harmonyspeech.api.middleware import API_KEY_STATE, is_api_path, send_error
from harmonyspeech.config import KEY_HASH_PATTERN, RateLimitsConfig
from harmonyspeech.errors import ConfigError, HarmonySpeechError, OverloadedError, RateLimitError

logger = logging.getLogger(__name__)

WINDOW_S = 60.0
"""Limits are per minute: a bucket refills its whole capacity in this many seconds."""
BACKEND_RETRY_AFTER_S = 5.0
"""``Retry-After`` of the 503 answered while the shared backend is unreachable."""
WARN_EVERY_S = 30.0
"""Backend failures are logged at most this often (every request would meet them)."""

REQUESTS = "requests"
AUDIO_SECONDS = "audio_seconds"


@dataclass(frozen=True)
class Bucket:
    """One bucket's shape: ``capacity`` tokens, refilled in full over ``window_s``."""

    capacity: float
    window_s: float = WINDOW_S

    @property
    def rate(self) -> float:
        """Tokens added per second."""
        return self.capacity / self.window_s


@dataclass(frozen=True)
class Decision:
    """Whether a request may pass; if not, after how long and which buckets are short."""

    allowed: bool
    retry_after_s: float = 0.0
    exhausted: tuple[str, ...] = ()


class BackendUnavailable(Exception):
    """The bucket store cannot be reached (Redis down, timed out, refused the script)."""


class BucketStore(Protocol):
    """Where the buckets live. Each call is atomic: concurrent calls never over-admit."""

    async def admit(self, client: str, requests: Bucket | None, audio: Bucket | None) -> Decision:
        """Take one request token if the request may pass; change nothing otherwise."""
        ...

    async def charge(self, client: str, audio: Bucket, seconds: float) -> None:
        """Take ``seconds`` from the audio bucket, going below zero if need be."""
        ...

    async def aclose(self) -> None:
        """Release connections."""
        ...


def decide(
    request_level: float | None,
    audio_level: float | None,
    requests: Bucket | None,
    audio: Bucket | None,
) -> Decision:
    """The admission rule on refilled levels (the Redis script applies the same rule)."""
    wait = 0.0
    short: list[str] = []
    if requests is not None and request_level is not None and request_level < 1:
        short.append(REQUESTS)
        wait = max(wait, (1 - request_level) / requests.rate)
    if audio is not None and audio_level is not None and audio_level <= 0:
        short.append(AUDIO_SECONDS)
        wait = max(wait, -audio_level / audio.rate)
    return Decision(not short, wait, tuple(short))


class MemoryBuckets:
    """Buckets in this process, on an injectable monotonic clock (seconds).

    Fits one ingress replica only; ``server.rate_limits.backend: redis`` shares them.
    """

    def __init__(self, clock: Callable[[], float] = time.monotonic):
        self._clock = clock
        # (client, bucket name) -> (tokens, when saved, when full again)
        self._saved: dict[tuple[str, str], tuple[float, float, float]] = {}
        self._swept = clock()

    def __len__(self) -> int:
        return len(self._saved)

    def _level(self, key: tuple[str, str], bucket: Bucket, now: float) -> float:
        saved = self._saved.get(key)
        if saved is None:
            return bucket.capacity
        tokens, at, _ = saved
        return min(bucket.capacity, tokens + max(0.0, now - at) * bucket.rate)

    def _save(self, key: tuple[str, str], bucket: Bucket, tokens: float, now: float) -> None:
        self._saved[key] = (tokens, now, now + (bucket.capacity - tokens) / bucket.rate)

    def _sweep(self, now: float) -> None:
        # A bucket that has refilled equals a missing one: forget it, so idle clients cost nothing.
        if now - self._swept < WINDOW_S:
            return
        self._swept = now
        for key in [k for k, (_, _, full_at) in self._saved.items() if full_at <= now]:
            del self._saved[key]

    async def admit(self, client: str, requests: Bucket | None, audio: Bucket | None) -> Decision:
        now = self._clock()
        self._sweep(now)
        request_key, audio_key = (client, REQUESTS), (client, AUDIO_SECONDS)
        request_level = None if requests is None else self._level(request_key, requests, now)
        audio_level = None if audio is None else self._level(audio_key, audio, now)
        decision = decide(request_level, audio_level, requests, audio)
        if decision.allowed and requests is not None and request_level is not None:
            self._save(request_key, requests, request_level - 1, now)
        return decision

    async def charge(self, client: str, audio: Bucket, seconds: float) -> None:
        now = self._clock()
        key = (client, AUDIO_SECONDS)
        self._save(key, audio, self._level(key, audio, now) - seconds, now)

    async def aclose(self) -> None:
        return None


@dataclass(frozen=True)
class Limits:
    """A client's limits; None: unlimited."""

    requests_per_minute: int | None = None
    audio_seconds_per_minute: float | None = None

    def buckets(self) -> tuple[Bucket | None, Bucket | None]:
        rpm, aps = self.requests_per_minute, self.audio_seconds_per_minute
        return (None if rpm is None else Bucket(rpm)), (None if aps is None else Bucket(aps))


@dataclass(frozen=True)
class Client:
    """Who a request counts against."""

    id: str
    """Bucket identity: ``key:<sha256 hex>`` or ``addr:<client address>``."""

    name: str
    """For logs: the key's label, a hash prefix, or the address."""

    limits: Limits


class RateLimiter:
    """Admits requests and charges audio seconds against each client's buckets.

    Args:
        config: ``server.rate_limits``.
        store: Where the buckets live.
        labels: Key labels by hash, to resolve overrides given by label.

    Raises:
        ConfigError: An override names a label no key carries.
    """

    def __init__(
        self,
        config: RateLimitsConfig,
        store: BucketStore,
        *,
        labels: Mapping[str, str] | None = None,
    ):
        self.store = store
        self._labels = dict(labels or {})
        self._reject_on_error = config.on_backend_error == "reject"
        self._defaults = Limits(config.requests_per_minute, config.audio_seconds_per_minute)
        self._by_hash = self._overrides(config, self._labels)
        self._warned_at = -math.inf

    @classmethod
    def from_config(
        cls,
        config: RateLimitsConfig,
        *,
        labels: Mapping[str, str] | None = None,
        clock: Callable[[], float] | None = None,
    ) -> RateLimiter | None:
        """The limiter ``config`` describes; None when it sets no limit at all.

        Raises:
            ConfigError: Unknown override label, bad Redis URL, or the ``redis`` package missing.
        """
        if not config.enabled:
            return None
        store: BucketStore
        if config.backend == "redis":
            from harmonyspeech.api.ratelimit_redis import RedisBuckets

            store = RedisBuckets(
                config.resolved_redis_url(),
                prefix=config.redis_prefix,
                timeout_s=config.redis_timeout_s,
            )
        else:
            store = MemoryBuckets(clock or time.monotonic)
        return cls(config, store, labels=labels)

    def _overrides(self, config: RateLimitsConfig, labels: Mapping[str, str]) -> dict[str, Limits]:
        by_label: dict[str, list[str]] = {}
        for digest, label in labels.items():
            by_label.setdefault(label, []).append(digest)
        resolved: dict[str, Limits] = {}
        # Hash entries win over label entries for the same key: apply labels first.
        ordered = sorted(config.overrides.items(), key=lambda kv: _is_hash(kv[0]))
        for name, override in ordered:
            digests = [name] if _is_hash(name) else by_label.get(name)
            if not digests:
                raise ConfigError(
                    [(f"server.rate_limits.overrides.{name}", "no API key has this label")]
                )
            changed = {f: getattr(override, f) for f in override.model_fields_set}
            for digest in digests:
                base = resolved.get(digest, self._defaults)
                resolved[digest] = Limits(
                    changed.get("requests_per_minute", base.requests_per_minute),
                    changed.get("audio_seconds_per_minute", base.audio_seconds_per_minute),
                )
        return resolved

    def client(self, *, key_hash: str | None, address: str | None) -> Client:
        """The client a request counts against: its key, or without one its address."""
        if key_hash is not None:
            name = self._labels.get(key_hash) or f"key {key_hash[7:19]}"
            limits = self._by_hash.get(key_hash, self._defaults)
            return Client(f"key:{key_hash.removeprefix('sha256:')}", name, limits)
        host = address or "unknown"
        return Client(f"addr:{host}", host, self._defaults)

    async def admit(self, client: Client) -> None:
        """Let one request of ``client`` pass, or raise.

        Raises:
            RateLimitError: A bucket is short (429 with ``Retry-After``).
            OverloadedError: The backend is unreachable and ``on_backend_error`` is ``reject``
                (503 with ``Retry-After``).
        """
        requests, audio = client.limits.buckets()
        if requests is None and audio is None:
            return
        try:
            decision = await self.store.admit(client.id, requests, audio)
        except BackendUnavailable as exc:
            self._warn(f"rate-limit backend unreachable: {exc}")
            if self._reject_on_error:
                raise OverloadedError(
                    "rate limiting is unavailable; retry later",
                    code="rate_limiter_unavailable",
                    retry_after_s=BACKEND_RETRY_AFTER_S,
                ) from None
            return
        if decision.allowed:
            return
        seconds = max(1, math.ceil(decision.retry_after_s))
        logger.debug("rate limited %s (%s)", client.name, ", ".join(decision.exhausted))
        raise RateLimitError(
            f"rate limit reached for {self._describe(client.limits, decision.exhausted)}; "
            f"retry in {seconds} s",
            retry_after_s=seconds,
        )

    async def charge(self, client: Client, seconds: float) -> None:
        """Charge ``client`` for ``seconds`` of audio. Never raises: the request is already
        under way; a backend failure is logged and the charge is lost."""
        audio = client.limits.buckets()[1]
        if audio is None or not seconds > 0:
            return
        try:
            await self.store.charge(client.id, audio, float(seconds))
        except BackendUnavailable as exc:
            self._warn(f"rate-limit backend unreachable, {seconds:.1f} audio s not charged: {exc}")

    async def aclose(self) -> None:
        await self.store.aclose()

    def _warn(self, message: str) -> None:
        now = time.monotonic()
        if now - self._warned_at >= WARN_EVERY_S:
            self._warned_at = now
            logger.warning(message)

    @staticmethod
    def _describe(limits: Limits, exhausted: tuple[str, ...]) -> str:
        parts = []
        if REQUESTS in exhausted:
            parts.append(f"requests ({limits.requests_per_minute} per minute)")
        if AUDIO_SECONDS in exhausted:
            parts.append(f"audio seconds ({limits.audio_seconds_per_minute:g} per minute)")
        return " and ".join(parts)


def _is_hash(name: str) -> bool:
    return re.fullmatch(KEY_HASH_PATTERN, name) is not None


@dataclass(frozen=True)
class Meter:
    """The current request's client and limiter, for charging audio seconds."""

    limiter: RateLimiter
    client: Client

    async def charge(self, seconds: float) -> None:
        await self.limiter.charge(self.client, seconds)


_CURRENT: ContextVar[Meter | None] = ContextVar("harmonyspeech_rate_meter", default=None)


async def charge_audio_seconds(seconds: float) -> None:
    """Charge the current request's client for ``seconds`` of audio (decoded upload,
    synthesised speech). Does nothing without rate limits; never raises."""
    meter = _CURRENT.get()
    if meter is not None:
        await meter.charge(seconds)


class RateLimitMiddleware:
    """Admit each ``/v1/*`` request against its client's buckets; runs after authentication.

    The client is the key hash ``AuthMiddleware`` put into ``scope["state"]``, or the client
    address when no keys are configured. Health, readiness, metrics and ``/`` stay unlimited.
    """

    def __init__(self, app: ASGIApp, *, limiter: RateLimiter):
        self.app = app
        self.limiter = limiter

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if not _limited(scope):
            await self.app(scope, receive, send)
            return
        peer = scope.get("client")
        client = self.limiter.client(
            key_hash=(scope.get("state") or {}).get(API_KEY_STATE),
            address=peer[0] if peer else None,
        )
        try:
            await self.limiter.admit(client)
        except HarmonySpeechError as exc:
            await send_error(send, exc)
            return
        token = _CURRENT.set(Meter(self.limiter, client))
        try:
            await self.app(scope, receive, send)
        finally:
            _CURRENT.reset(token)


def _limited(scope: Scope) -> bool:
    path = scope.get("path", "")
    return scope["type"] == "http" and is_api_path(path) and scope.get("method") != "OPTIONS"
