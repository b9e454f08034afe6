"""Load on the real Ray Serve app, over loopback: a burst of 200 concurrent streaming requests
loses none, and the served processes' memory stays flat through a soak of steady traffic.

The soak lasts ``HARMONYSPEECH_SOAK_S`` seconds (120 by default, as the production-hardening
issue asks; set it lower for a quick local run).
"""

from __future__ import annotations

import asyncio
import os
import statistics
import time

import httpx
import openai
import psutil

BURST = 200
SOAK_S = float(os.environ.get("HARMONYSPEECH_SOAK_S", "120"))
SOAK_CLIENTS = 16
SAMPLE_EVERY_S = 5.0
WARM_UP_S = min(20.0, SOAK_S / 4)
GROWTH_ALLOWED = 0.10
"""Memory at the end of the soak may exceed its level after warm-up by this fraction (plus
``SLACK_MIB``): allocator noise, not a leak, which grows with every request."""
SLACK_MIB = 64


def sdk_for(base_url: str) -> openai.AsyncOpenAI:
    limits = httpx.Limits(max_connections=BURST + 10, max_keepalive_connections=BURST + 10)
    return openai.AsyncOpenAI(
        base_url=f"{base_url}/v1",
        api_key="unused",
        max_retries=0,
        timeout=120.0,
        http_client=httpx.AsyncClient(limits=limits, timeout=httpx.Timeout(120.0)),
    )


async def stream_speech(sdk: openai.AsyncOpenAI, text: str) -> int:
    """Bytes of one streamed speech response (pcm); raises on any error or a broken stream."""
    async with sdk.audio.speech.with_streaming_response.create(
        model="tts-1", voice="nova", input=text, response_format="pcm"
    ) as response:
        size = 0
        async for chunk in response.iter_bytes():
            size += len(chunk)
    return size


async def test_a_burst_of_200_concurrent_streams_loses_none(served) -> None:
    async with sdk_for(served.base_url) as sdk:
        started = time.monotonic()
        sizes = await asyncio.wait_for(
            asyncio.gather(
                *(stream_speech(sdk, f"Request {n} says hello.") for n in range(BURST)),
                return_exceptions=True,
            ),
            timeout=served.config.server.limits.request_timeout_s + 30,
        )
        elapsed = time.monotonic() - started
    failures = [s for s in sizes if isinstance(s, BaseException)]
    assert failures == [], failures[:3]
    assert all(size > 0 and size % 2 == 0 for size in sizes)
    print(f"{BURST} concurrent streams: all complete in {elapsed:.1f} s")


def served_memory_mib() -> float:
    """Resident memory of every process this test session started (Ray and its replicas)."""
    total = 0
    for process in psutil.Process().children(recursive=True):
        try:
            total += process.memory_info().rss
        except psutil.NoSuchProcess:
            continue
    return total / 2**20


async def test_memory_stays_flat_over_a_soak(served) -> None:
    stop_at = time.monotonic() + SOAK_S
    done = 0

    async def client(sdk: openai.AsyncOpenAI, number: int) -> None:
        nonlocal done
        n = 0
        while time.monotonic() < stop_at:
            n += 1
            assert await stream_speech(sdk, f"Client {number} sends request {n}. Thanks.") > 0
            done += 1

    samples: list[tuple[float, float]] = []

    async def sample() -> None:
        started = time.monotonic()
        while time.monotonic() < stop_at:
            samples.append((time.monotonic() - started, served_memory_mib()))
            await asyncio.sleep(SAMPLE_EVERY_S)

    async with sdk_for(served.base_url) as sdk:
        clients = [client(sdk, i) for i in range(SOAK_CLIENTS)]
        await asyncio.wait_for(asyncio.gather(sample(), *clients), SOAK_S + 120)

    settled = [mib for t, mib in samples if t >= WARM_UP_S]
    assert len(settled) >= 4, "the soak was too short to judge"
    baseline = statistics.mean(settled[:2])
    final = statistics.mean(settled[-2:])
    print(
        f"soak {SOAK_S:.0f} s, {SOAK_CLIENTS} clients, {done} requests: served memory "
        f"{baseline:.0f} MiB after warm-up -> {final:.0f} MiB at the end "
        f"(peak {max(settled):.0f} MiB)"
    )
    assert done > SOAK_CLIENTS
    assert final <= baseline * (1 + GROWTH_ALLOWED) + SLACK_MIB
