"""Rate-limit buckets in Redis, shared by every ingress replica.

Each call is one Lua script run atomically by Redis on Redis's own clock (``TIME``), so replicas
on different machines agree on time and never over-admit together. The script is sent by hash
(``EVALSHA``) and, when Redis does not have it cached (restart, ``SCRIPT FLUSH``), in full
(``EVAL``, which caches it again). A bucket is a hash ``{tokens, ts}`` under
``<prefix>:{<client>}:<bucket>``; the braces keep a client's buckets in one Redis Cluster slot,
and each key expires once its bucket would have refilled, so idle clients leave nothing behind.
Needs Redis 5 or newer (scripts replicate their effects, so ``TIME`` may precede writes).
"""

from __future__ import annotations

import asyncio
import hashlib
from typing import Any

from harmonyspeech.api.ratelimit import (
    AUDIO_SECONDS,
    REQUESTS,
    BackendUnavailable,
    Bucket,
    Decision,
)
from harmonyspeech.errors import ConfigError

BUCKET_SCRIPT = """
-- KEYS[1]: request bucket, KEYS[2]: audio-seconds bucket; each a hash {tokens, ts}.
-- ARGV: op ('admit' | 'charge'), request capacity, request window (s), audio capacity,
--       audio window (s), audio seconds to charge. A capacity of 0: no such bucket.
-- Returns {allowed (0/1), microseconds until allowed, short buckets (1 requests + 2 audio)}.
local clock = redis.call('TIME')
local now = tonumber(clock[1]) + tonumber(clock[2]) / 1000000

local function level(key, capacity, window)
  local saved = redis.call('HMGET', key, 'tokens', 'ts')
  local tokens, ts = tonumber(saved[1]), tonumber(saved[2])
  if tokens == nil or ts == nil then
    return capacity
  end
  return math.min(capacity, tokens + math.max(0, now - ts) * capacity / window)
end

local function save(key, capacity, window, tokens)
  redis.call('HSET', key, 'tokens', string.format('%.17g', tokens),
             'ts', string.format('%.17g', now))
  -- Full again after this long; a missing bucket reads as full, so Redis may drop it then.
  redis.call('EXPIRE', key, math.ceil((capacity - tokens) * window / capacity) + 1)
end

local op = ARGV[1]
local request_cap, request_window = tonumber(ARGV[2]), tonumber(ARGV[3])
local audio_cap, audio_window = tonumber(ARGV[4]), tonumber(ARGV[5])

if op == 'charge' then
  local tokens = level(KEYS[2], audio_cap, audio_window) - tonumber(ARGV[6])
  save(KEYS[2], audio_cap, audio_window, tokens)
  return {1, 0, 0}
end

local wait, short = 0, 0
local request_level
if request_cap > 0 then
  request_level = level(KEYS[1], request_cap, request_window)
  if request_level < 1 then
    short = short + 1
    wait = math.max(wait, (1 - request_level) * request_window / request_cap)
  end
end
if audio_cap > 0 then
  local audio_level = level(KEYS[2], audio_cap, audio_window)
  if audio_level <= 0 then
    short = short + 2
    wait = math.max(wait, -audio_level * audio_window / audio_cap)
  end
end
if short > 0 then
  return {0, math.ceil(wait * 1000000), short}
end
if request_cap > 0 then
  save(KEYS[1], request_cap, request_window, request_level - 1)
end
return {1, 0, 0}
"""
BUCKET_SCRIPT_SHA = hashlib.sha1(BUCKET_SCRIPT.encode("utf-8")).hexdigest()


class RedisBuckets:
    """Buckets kept in Redis by one atomic script (see the module docstring).

    Args:
        url: ``redis://``, ``rediss://`` or ``unix://`` URL.
        prefix: Namespace of the keys.
        timeout_s: Connect and command timeout; past it the call fails as unreachable.

    Raises:
        ConfigError: The ``redis`` package is missing or the URL is invalid.
    """

    def __init__(self, url: str, *, prefix: str, timeout_s: float):
        try:
            import redis.asyncio as aioredis
            from redis.asyncio.retry import Retry
            from redis.backoff import NoBackoff
            from redis.exceptions import NoScriptError, RedisError
        except ImportError:
            problem = "backend 'redis' needs the redis package: pip install 'harmonyspeech[redis]'"
            raise ConfigError([("server.rate_limits.backend", problem)]) from None
        self._no_script = NoScriptError
        self._errors: tuple[type[BaseException], ...] = (RedisError, OSError, asyncio.TimeoutError)
        self.prefix = prefix
        try:
            # One retry on a fresh connection covers a pooled connection that died with a
            # Redis restart; more would only stretch a real outage past the timeout.
            self._redis: Any = aioredis.Redis.from_url(
                url,
                socket_timeout=timeout_s,
                socket_connect_timeout=timeout_s,
                retry=Retry(NoBackoff(), 1),
            )
        except ValueError as exc:
            problem = f"invalid Redis URL: {exc}"
            raise ConfigError([("server.rate_limits.redis_url", problem)]) from None

    def keys(self, client: str) -> tuple[str, str]:
        """The request and audio-seconds bucket keys of ``client``."""
        base = f"{self.prefix}:{{{client}}}"
        return f"{base}:{REQUESTS}", f"{base}:{AUDIO_SECONDS}"

    async def admit(self, client: str, requests: Bucket | None, audio: Bucket | None) -> Decision:
        allowed, wait_us, short = await self._run(client, "admit", requests, audio, 0.0)
        exhausted = tuple(
            name for bit, name in ((1, REQUESTS), (2, AUDIO_SECONDS)) if int(short) & bit
        )
        return Decision(bool(allowed), int(wait_us) / 1e6, exhausted)

    async def charge(self, client: str, audio: Bucket, seconds: float) -> None:
        await self._run(client, "charge", None, audio, seconds)

    async def _run(
        self,
        client: str,
        op: str,
        requests: Bucket | None,
        audio: Bucket | None,
        seconds: float,
    ) -> list[Any]:
        keys = self.keys(client)
        args = [op, *_shape(requests), *_shape(audio), repr(float(seconds))]
        try:
            try:
                result = await self._redis.evalsha(BUCKET_SCRIPT_SHA, len(keys), *keys, *args)
            except self._no_script:
                result = await self._redis.eval(BUCKET_SCRIPT, len(keys), *keys, *args)
        except self._errors as exc:
            raise BackendUnavailable(f"{type(exc).__name__}: {exc}") from exc
        return list(result)

    async def aclose(self) -> None:
        await self._redis.aclose()


def _shape(bucket: Bucket | None) -> tuple[str, str]:
    if bucket is None:
        return "0", "1"
    return repr(float(bucket.capacity)), repr(float(bucket.window_s))
