"""A model replica's process dies while requests are in flight (SIGKILL, as the OOM killer does).

Every request must end within its deadline with success or a clean 503 in the OpenAI envelope
(never a hang, a 500 or a broken stream), and Serve must bring the replica back to serve again.
"""

from __future__ import annotations

import asyncio
import os
import signal
import time

import openai
import psutil

from harmonyspeech.audio import decode_audio
from harmonyspeech.serve.app import APP_NAME, model_deployment_name
from tests.helpers import answers, wait_until

SYNTHESIZER = "melo-en"
IN_FLIGHT = 8
# Long enough that every request is still synthesising when the replica dies.
TEXT = " ".join(f"Sentence number {n} of a request, spoken slowly." for n in range(1, 7))


def replica_processes(model: str) -> list[psutil.Process]:
    """The live processes of ``model``'s Serve replicas (Ray titles them after the actor)."""
    title = f"ServeReplica:{APP_NAME}:{model_deployment_name(model)}"
    found = []
    for process in psutil.process_iter(["cmdline"]):
        cmdline = " ".join(process.info["cmdline"] or ())
        if title in cmdline and process.status() != psutil.STATUS_ZOMBIE:
            found.append(process)
    return found


async def speak(
    sdk: openai.AsyncOpenAI, *, stream: bool, first_audio: asyncio.Event | None = None
) -> str:
    """One request's outcome: ``ok`` (complete audio) or ``503`` (a clean overload/unavailable
    error); anything else fails the test."""
    try:
        if stream:
            async with sdk.audio.speech.with_streaming_response.create(
                model="tts-1", voice="alloy", input=TEXT, response_format="pcm"
            ) as response:
                chunks = []
                async for chunk in response.iter_bytes():
                    chunks.append(chunk)
                    if first_audio is not None:
                        first_audio.set()
                pcm = b"".join(chunks)
        else:
            reply = await sdk.audio.speech.create(
                model="tts-1", voice="alloy", input=TEXT, response_format="wav"
            )
            pcm = reply.content
    except openai.APIStatusError as exc:
        assert exc.status_code == 503, exc
        body = exc.response.json()["error"]
        assert body["type"] == "server_error" and body["message"]
        assert exc.response.headers.get("retry-after")
        return "503"
    if stream:
        assert len(pcm) > 0 and len(pcm) % 2 == 0
    else:
        assert decode_audio(pcm, sample_rate=24000).duration > 1.0
    return "ok"


async def test_killing_a_replica_mid_request_loses_no_request(served) -> None:
    timeout_s = served.config.server.limits.request_timeout_s
    (victim,) = replica_processes(SYNTHESIZER)
    async with openai.AsyncOpenAI(
        base_url=f"{served.base_url}/v1",
        api_key="unused",
        max_retries=0,
        timeout=timeout_s + 15,
    ) as sdk:
        first_audio = asyncio.Event()
        started = time.monotonic()
        requests = [
            asyncio.create_task(speak(sdk, stream=i % 3 == 0, first_audio=first_audio))
            for i in range(IN_FLIGHT)
        ]
        # Kill once audio flows: every request has sentences still to synthesise.
        await asyncio.wait_for(first_audio.wait(), timeout_s)
        os.kill(victim.pid, signal.SIGKILL)
        killed_after = time.monotonic() - started
        unfinished_at_kill = sum(not request.done() for request in requests)
        outcomes = await asyncio.wait_for(asyncio.gather(*requests), timeout_s + 20)
        elapsed = time.monotonic() - started
    assert unfinished_at_kill > 0, "the kill came too late to hit a request in flight"
    assert set(outcomes) <= {"ok", "503"}
    assert elapsed < timeout_s + 5

    # Serve replaces the replica; the replacement loads its model and serves.
    wait_until(
        lambda: [p.pid for p in replica_processes(SYNTHESIZER)] not in ([], [victim.pid]),
        timeout=60,
        what="a new synthesizer replica",
    )
    wait_until(answers(f"{served.base_url}/ready"), timeout=90, what="the app to be ready again")
    async with openai.AsyncOpenAI(
        base_url=f"{served.base_url}/v1", api_key="unused", max_retries=0
    ) as sdk:
        assert await speak(sdk, stream=False) == "ok"
    print(
        f"replica killed {killed_after:.1f} s into {IN_FLIGHT} requests "
        f"({unfinished_at_kill} unfinished); outcomes {outcomes}; "
        f"all ended {elapsed:.1f} s after the start"
    )
