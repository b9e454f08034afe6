"""Token-bucket rate limits: the same behaviour from the in-process and the Redis backend.

The memory backend runs on an injected clock, so its cases are exact; the Redis backend runs on
Redis's own clock against a real ``redis-server``, so its cases use short windows and bounds.
"""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path

import pytest
from pydantic import ValidationError

from harmonyspeech.api.auth import hash_key
from harmonyspeech.api.ratelimit import (
    AUDIO_SECONDS,
    REQUESTS,
    BackendUnavailable,
    Bucket,
    BucketStore,
    MemoryBuckets,
    RateLimiter,
)
from harmonyspeech.config import RateLimitsConfig
from harmonyspeech.errors import ConfigError, OverloadedError, RateLimitError
from tests.helpers import RedisServer, free_port


class FakeClock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


@dataclass
class Harness:
    store: BucketStore
    advance: Callable[[float], Awaitable[None]]
    exact: bool
    """Whether time stands still between calls (the injected clock), so values are exact."""

    def retry_bounds(self, expected: float) -> tuple[float, float]:
        """Where a Retry-After computed as ``expected`` at the last call may lie now."""
        # Redis's clock runs on between the calls (slowly on a loaded machine).
        return (expected, expected) if self.exact else (expected - 1.0, expected)


@pytest.fixture(params=["memory", "redis"])
async def harness(request: pytest.FixtureRequest) -> AsyncIterator[Harness]:
    if request.param == "memory":
        clock = FakeClock()

        async def advance(seconds: float) -> None:
            clock.now += seconds

        yield Harness(MemoryBuckets(clock), advance, exact=True)
        return
    from harmonyspeech.api.ratelimit_redis import RedisBuckets

    server: RedisServer = request.getfixturevalue("redis_server")
    store = RedisBuckets(server.url, prefix=f"test:{uuid.uuid4().hex}", timeout_s=2)
    try:
        yield Harness(store, asyncio.sleep, exact=False)
    finally:
        await store.aclose()


def within(value: float, bounds: tuple[float, float]) -> bool:
    low, high = bounds
    return low - 1e-6 <= value <= high + 1e-6


# --- behaviour shared by both backends --------------------------------------------------------


async def test_burst_up_to_capacity_then_refused(harness: Harness) -> None:
    requests = Bucket(3, window_s=3.0)  # one token back per second
    for _ in range(3):
        assert (await harness.store.admit("a", requests, None)).allowed
    refused = await harness.store.admit("a", requests, None)
    assert not refused.allowed
    assert refused.exhausted == (REQUESTS,)
    assert within(refused.retry_after_s, harness.retry_bounds(1.0))


async def test_per_minute_retry_after(harness: Harness) -> None:
    requests = Bucket(3)  # 3 per minute: a token every 20 s
    for _ in range(3):
        assert (await harness.store.admit("a", requests, None)).allowed
    refused = await harness.store.admit("a", requests, None)
    assert within(refused.retry_after_s, harness.retry_bounds(20.0))


async def test_tokens_come_back_continuously(harness: Harness) -> None:
    requests = Bucket(2, window_s=4.0)  # a token every 2 s
    assert (await harness.store.admit("a", requests, None)).allowed
    assert (await harness.store.admit("a", requests, None)).allowed
    refused = await harness.store.admit("a", requests, None)
    assert not refused.allowed and within(refused.retry_after_s, harness.retry_bounds(2.0))
    await harness.advance(refused.retry_after_s + 0.05)
    assert (await harness.store.admit("a", requests, None)).allowed
    again = await harness.store.admit("a", requests, None)
    assert not again.allowed and again.retry_after_s < 2.0


async def test_refill_stops_at_capacity(harness: Harness) -> None:
    requests = Bucket(2, window_s=2.0)  # a token a second
    assert (await harness.store.admit("a", requests, None)).allowed
    await harness.advance(2.5)  # long enough to refill more than once over
    assert (await harness.store.admit("a", requests, None)).allowed
    assert (await harness.store.admit("a", requests, None)).allowed
    assert not (await harness.store.admit("a", requests, None)).allowed


async def test_audio_balance_goes_negative_and_refuses_until_refilled(harness: Harness) -> None:
    audio = Bucket(2, window_s=2.0)  # one audio second back per second
    assert (await harness.store.admit("a", None, audio)).allowed
    await harness.store.charge("a", audio, 3.0)  # more than the bucket holds: balance -1
    refused = await harness.store.admit("a", None, audio)
    assert not refused.allowed
    assert refused.exhausted == (AUDIO_SECONDS,)
    assert within(refused.retry_after_s, harness.retry_bounds(1.0))
    await harness.advance(refused.retry_after_s + 0.05)
    assert (await harness.store.admit("a", None, audio)).allowed


async def test_large_audio_charge_per_minute(harness: Harness) -> None:
    audio = Bucket(60)  # 60 audio seconds per minute
    await harness.store.charge("a", audio, 90.0)  # balance -30: half a minute to get back to 0
    refused = await harness.store.admit("a", None, audio)
    assert within(refused.retry_after_s, harness.retry_bounds(30.0))


async def test_refusals_take_no_request_token(harness: Harness) -> None:
    requests, audio = Bucket(2, window_s=600.0), Bucket(4, window_s=8.0)
    await harness.store.charge("a", audio, 5.0)  # balance -1: 2 s to get back above zero
    for _ in range(5):
        assert not (await harness.store.admit("a", requests, audio)).allowed
    await harness.advance(2.3)
    assert (await harness.store.admit("a", requests, audio)).allowed
    assert (await harness.store.admit("a", requests, audio)).allowed
    third = await harness.store.admit("a", requests, audio)
    assert not third.allowed and third.exhausted == (REQUESTS,)


async def test_both_buckets_short_waits_for_the_later(harness: Harness) -> None:
    requests, audio = Bucket(1), Bucket(1)
    assert (await harness.store.admit("a", requests, audio)).allowed
    await harness.store.charge("a", audio, 3.0)  # -2: two minutes of audio refill
    refused = await harness.store.admit("a", requests, audio)
    assert refused.exhausted == (REQUESTS, AUDIO_SECONDS)
    assert within(refused.retry_after_s, harness.retry_bounds(120.0))


async def test_clients_are_independent(harness: Harness) -> None:
    requests = Bucket(1)
    assert (await harness.store.admit("a", requests, None)).allowed
    assert not (await harness.store.admit("a", requests, None)).allowed
    assert (await harness.store.admit("b", requests, None)).allowed


async def test_no_buckets_means_unlimited(harness: Harness) -> None:
    for _ in range(20):
        assert (await harness.store.admit("a", None, None)).allowed


async def test_concurrent_admits_never_over_admit(harness: Harness) -> None:
    requests = Bucket(10, window_s=600.0)
    results = await asyncio.gather(*(harness.store.admit("a", requests, None) for _ in range(40)))
    assert sum(r.allowed for r in results) == 10


# --- Redis: shared by replicas, namespaced, expiring, failing cleanly ---------------------------


@pytest.fixture
async def redis_pair(redis_server: RedisServer) -> AsyncIterator[tuple]:
    """Two stores on one Redis: what two ingress replicas hold."""
    from harmonyspeech.api.ratelimit_redis import RedisBuckets

    prefix = f"test:{uuid.uuid4().hex}"
    one = RedisBuckets(redis_server.url, prefix=prefix, timeout_s=2)
    two = RedisBuckets(redis_server.url, prefix=prefix, timeout_s=2)
    try:
        yield one, two
    finally:
        await one.aclose()
        await two.aclose()


async def test_two_replicas_share_the_buckets(redis_pair: tuple) -> None:
    one, two = redis_pair
    requests = Bucket(4)
    assert (await one.admit("a", requests, None)).allowed
    assert (await two.admit("a", requests, None)).allowed
    assert (await one.admit("a", requests, None)).allowed
    assert (await two.admit("a", requests, None)).allowed
    assert not (await one.admit("a", requests, None)).allowed
    assert not (await two.admit("a", requests, None)).allowed
    audio = Bucket(5)
    await one.charge("b", audio, 6.0)
    assert not (await two.admit("b", None, audio)).allowed


async def test_two_replicas_under_concurrency_admit_exactly_the_limit(redis_pair: tuple) -> None:
    one, two = redis_pair
    requests = Bucket(12, window_s=600.0)
    calls = [store.admit("a", requests, None) for store in (one, two) for _ in range(30)]
    results = await asyncio.gather(*calls)
    assert sum(r.allowed for r in results) == 12


async def test_keys_are_namespaced_and_expire(redis_server: RedisServer) -> None:
    import redis.asyncio as aioredis

    from harmonyspeech.api.ratelimit_redis import RedisBuckets

    prefix = f"test:{uuid.uuid4().hex}"
    store = RedisBuckets(redis_server.url, prefix=prefix, timeout_s=2)
    raw = aioredis.Redis.from_url(redis_server.url)
    try:
        await store.admit("key:abc", Bucket(3), None)
        await store.charge("key:abc", Bucket(60), 30.0)
        request_key, audio_key = store.keys("key:abc")
        assert request_key == f"{prefix}:{{key:abc}}:requests"
        found = sorted(k.decode() for k in await raw.keys(f"{prefix}:*"))
        assert found == sorted([request_key, audio_key])
        # Each key lives until its bucket would be full again (plus a second), then vanishes.
        assert 19 <= await raw.ttl(request_key) <= 21  # one token of 3/min: 20 s
        assert 29 <= await raw.ttl(audio_key) <= 31  # 30 audio s of 60/min: 30 s
    finally:
        await raw.aclose()
        await store.aclose()


async def test_script_is_reloaded_after_a_flush(redis_server: RedisServer) -> None:
    import redis.asyncio as aioredis

    from harmonyspeech.api.ratelimit_redis import RedisBuckets

    store = RedisBuckets(redis_server.url, prefix=f"test:{uuid.uuid4().hex}", timeout_s=2)
    raw = aioredis.Redis.from_url(redis_server.url)
    try:
        requests = Bucket(2)
        assert (await store.admit("a", requests, None)).allowed
        await raw.script_flush()  # EVALSHA now answers NOSCRIPT; the store falls back to EVAL
        assert (await store.admit("a", requests, None)).allowed
        assert not (await store.admit("a", requests, None)).allowed
    finally:
        await raw.aclose()
        await store.aclose()


async def test_unreachable_redis_fails_fast(tmp_path: Path) -> None:
    pytest.importorskip("redis")
    from harmonyspeech.api.ratelimit_redis import RedisBuckets

    store = RedisBuckets(f"redis://127.0.0.1:{free_port()}/0", prefix="test", timeout_s=1)
    started = time.monotonic()
    with pytest.raises(BackendUnavailable):
        await store.admit("a", Bucket(5), None)
    assert time.monotonic() - started < 10  # bounded by the timeout, not a TCP stall
    await store.aclose()


async def test_redis_going_down_is_a_clean_503(tmp_path: Path) -> None:
    server = RedisServer(tmp_path)
    with server:
        config = RateLimitsConfig(requests_per_minute=5, backend="redis", redis_url=server.url)
        limiter = RateLimiter.from_config(config)
        assert limiter is not None
        client = limiter.client(key_hash=hash_key("k"), address=None)
        await limiter.admit(client)
    # The server is gone now.
    with pytest.raises(OverloadedError) as info:
        await limiter.admit(client)
    error = info.value
    assert error.status_code == 503 and not isinstance(error, RateLimitError)
    assert error.code == "rate_limiter_unavailable"
    assert error.headers() == {"Retry-After": "5"}
    await limiter.charge(client, 3.0)  # a charge never fails the request already under way
    await limiter.aclose()


async def test_redis_url_read_from_the_environment(
    redis_server: RedisServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("TEST_RATE_REDIS_URL", redis_server.url)
    config = RateLimitsConfig(
        requests_per_minute=1,
        backend="redis",
        redis_url_env="TEST_RATE_REDIS_URL",
        redis_prefix=f"test:{uuid.uuid4().hex}",
    )
    limiter = RateLimiter.from_config(config)
    assert limiter is not None
    client = limiter.client(key_hash=hash_key("k"), address=None)
    await limiter.admit(client)
    with pytest.raises(RateLimitError):  # the second request in the minute: Redis counted one
        await limiter.admit(client)
    await limiter.aclose()


async def test_redis_down_can_be_allowed_through(tmp_path: Path) -> None:
    pytest.importorskip("redis")
    config = RateLimitsConfig(
        requests_per_minute=1,
        backend="redis",
        redis_url=f"redis://127.0.0.1:{free_port()}/0",
        redis_timeout_s=1,
        on_backend_error="allow",
    )
    limiter = RateLimiter.from_config(config)
    assert limiter is not None
    client = limiter.client(key_hash=None, address="10.0.0.1")
    for _ in range(3):
        await limiter.admit(client)  # unmetered, not refused
    await limiter.aclose()


# --- the limiter: identities, overrides, errors ----------------------------------------------


def limiter(clock: FakeClock | None = None, **config: object) -> RateLimiter:
    labels = config.pop("labels", None)
    built = RateLimiter.from_config(
        RateLimitsConfig.model_validate(config),
        labels=labels,  # type: ignore[arg-type]
        clock=clock or FakeClock(),
    )
    assert built is not None
    return built


def test_no_limits_means_no_limiter() -> None:
    assert RateLimiter.from_config(RateLimitsConfig()) is None
    assert RateLimiter.from_config(RateLimitsConfig(backend="memory")) is None


def test_clients_are_keys_or_addresses() -> None:
    digest = hash_key("sk-one")
    rl = limiter(requests_per_minute=5, labels={digest: "team-a"})
    by_key = rl.client(key_hash=digest, address="10.0.0.1")
    assert by_key.id == "key:" + digest.removeprefix("sha256:")
    assert by_key.name == "team-a"
    by_address = rl.client(key_hash=None, address="10.0.0.1")
    assert by_address.id == "addr:10.0.0.1" and by_address.name == "10.0.0.1"


async def test_refusal_is_a_429_with_whole_seconds() -> None:
    clock = FakeClock()
    rl = limiter(clock, requests_per_minute=3)
    client = rl.client(key_hash=hash_key("k"), address=None)
    for _ in range(3):
        await rl.admit(client)
    clock.now += 0.5
    with pytest.raises(RateLimitError) as info:
        await rl.admit(client)
    error = info.value
    assert error.status_code == 429
    assert error.headers() == {"Retry-After": "20"}  # 19.5 s rounded up, never down
    envelope = error.to_envelope()["error"]
    assert envelope["type"] == "rate_limit_error" and envelope["code"] == "rate_limit_exceeded"
    assert "requests (3 per minute)" in envelope["message"]
    clock.now += 19.5
    await rl.admit(client)


async def test_audio_refusal_names_audio_seconds() -> None:
    rl = limiter(audio_seconds_per_minute=10)
    client = rl.client(key_hash=None, address="10.0.0.1")
    await rl.admit(client)
    await rl.charge(client, 12.5)
    with pytest.raises(RateLimitError) as info:
        await rl.admit(client)
    assert "audio seconds (10 per minute)" in info.value.message
    assert info.value.headers() == {"Retry-After": "15"}  # 2.5 s at 1/6 per second


async def test_overrides_by_hash_and_label() -> None:
    a, b, c = hash_key("a"), hash_key("b"), hash_key("c")
    rl = limiter(
        requests_per_minute=1,
        audio_seconds_per_minute=30,
        overrides={
            "bulk": {"requests_per_minute": None},  # label; null lifts the limit
            b: {"requests_per_minute": 2},  # hash entries win over label entries
            "small": {"audio_seconds_per_minute": 5},  # other fields keep the default
        },
        labels={a: "bulk", b: "bulk-too", c: "small"},
    )
    assert rl.client(key_hash=a, address=None).limits.requests_per_minute is None
    assert rl.client(key_hash=a, address=None).limits.audio_seconds_per_minute == 30
    assert rl.client(key_hash=b, address=None).limits.requests_per_minute == 2
    small = rl.client(key_hash=c, address=None).limits
    assert (small.requests_per_minute, small.audio_seconds_per_minute) == (1, 5)
    unlisted = rl.client(key_hash=hash_key("d"), address=None).limits
    assert (unlisted.requests_per_minute, unlisted.audio_seconds_per_minute) == (1, 30)
    for _ in range(10):
        await rl.admit(rl.client(key_hash=a, address=None))


def test_override_of_an_unknown_label_fails_start_up() -> None:
    with pytest.raises(ConfigError, match="no API key has this label"):
        limiter(requests_per_minute=1, overrides={"nobody": {"requests_per_minute": 5}})


def test_override_alone_enables_limits() -> None:
    digest = hash_key("x")
    rl = limiter(overrides={digest: {"requests_per_minute": 2}})
    assert rl.client(key_hash=digest, address=None).limits.requests_per_minute == 2
    assert rl.client(key_hash=hash_key("y"), address=None).limits.requests_per_minute is None


async def test_charge_without_an_audio_limit_stores_nothing() -> None:
    rl = limiter(requests_per_minute=100)
    store = rl.store
    assert isinstance(store, MemoryBuckets)
    client = rl.client(key_hash=None, address="10.0.0.1")
    await rl.charge(client, 30.0)
    assert len(store) == 0


async def test_idle_buckets_are_forgotten() -> None:
    clock = FakeClock()
    rl = limiter(clock, requests_per_minute=6)
    store = rl.store
    assert isinstance(store, MemoryBuckets)
    for n in range(5):
        await rl.admit(rl.client(key_hash=None, address=f"10.0.0.{n}"))
    assert len(store) == 5
    clock.now += 61  # every bucket has refilled; the next call sweeps them away
    await rl.admit(rl.client(key_hash=None, address="10.0.1.1"))
    assert len(store) == 1


def test_redis_backend_is_built_lazily() -> None:
    pytest.importorskip("redis")
    from harmonyspeech.api.ratelimit_redis import RedisBuckets

    config = RateLimitsConfig(
        requests_per_minute=1, backend="redis", redis_url="redis://127.0.0.1:1/0"
    )
    rl = RateLimiter.from_config(config)
    assert rl is not None and isinstance(rl.store, RedisBuckets)  # no connection made yet


def test_bad_redis_url_fails_start_up(monkeypatch: pytest.MonkeyPatch) -> None:
    pytest.importorskip("redis")
    with pytest.raises(ValidationError, match="redis://"):
        RateLimitsConfig(requests_per_minute=1, backend="redis", redis_url="http://x")
    # A URL from the environment is only seen where the limiter starts.
    monkeypatch.setenv("TEST_REDIS_URL", "http://x")
    config = RateLimitsConfig(
        requests_per_minute=1, backend="redis", redis_url_env="TEST_REDIS_URL"
    )
    with pytest.raises(ConfigError, match="redis_url"):
        RateLimiter.from_config(config)
