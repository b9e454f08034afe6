"""``ServeModelClient`` against the real served app: a caller that gives up on an item takes
it out of the model's queue (Serve itself only cancels the calls of a cancelled request), and
an invalid item comes back as its client error."""

from __future__ import annotations

import asyncio

import httpx
import pytest

from harmonyspeech.engine.items import Priority
from harmonyspeech.errors import InvalidRequestError
from harmonyspeech.models.types import SynthesisRequest
from harmonyspeech.serve.app import APP_NAME, model_deployment_name
from harmonyspeech.serve.clients import Refusal, ServeModelClient

SYNTHESIZER = "melo-en"
# At a quarter speed the test synthesizer's cost budget runs this item alone, for seconds.
SLOW = SynthesisRequest(
    text=" ".join(["A long sentence that keeps going on and on."] * 6), voice="EN-US", speed=0.25
)


def cancelled(client: httpx.Client) -> int:
    stats = client.get(f"/v1/models/instance:{SYNTHESIZER}").json()["details"]["stats"]
    return stats["cancelled"]


async def test_a_cancelled_call_takes_its_item_out_of_the_queue(served, client) -> None:
    from ray import serve

    handle = serve.get_deployment_handle(model_deployment_name(SYNTHESIZER), app_name=APP_NAME)
    model = ServeModelClient(SYNTHESIZER, handle)
    before = cancelled(client)
    calls = [
        asyncio.ensure_future(model.infer(SLOW, priority=Priority.INTERACTIVE, timeout_s=120))
        for _ in range(3)
    ]
    try:
        await asyncio.sleep(1.0)  # the first item runs, the other two wait in the queue
        calls[2].cancel()
        for _ in range(40):
            if cancelled(client) > before:
                break
            await asyncio.sleep(0.25)
        assert cancelled(client) == before + 1
    finally:
        for call in calls:
            call.cancel()
        await asyncio.gather(*calls, return_exceptions=True)


def item_counts(client: httpx.Client) -> tuple[int, int]:
    stats = client.get(f"/v1/models/instance:{SYNTHESIZER}").json()["details"]["stats"]
    return stats["rejected"], stats["failed"]


async def test_an_invalid_item_comes_back_as_the_client_error_it_is(served, client) -> None:
    from ray import serve

    handle = serve.get_deployment_handle(model_deployment_name(SYNTHESIZER), app_name=APP_NAME)
    unknown_voice = SynthesisRequest(text="Hello there.", voice="no-such-speaker")
    # The replica returns the refusal as a value: Serve would log a raised one as a failed
    # request, with its traceback, for every client's typo.
    answer = await handle.infer.remote(unknown_voice, int(Priority.INTERACTIVE), 60.0)
    assert isinstance(answer, Refusal) and isinstance(answer.error, InvalidRequestError)
    rejected, failed = item_counts(client)
    with pytest.raises(InvalidRequestError, match="no-such-speaker") as info:
        await ServeModelClient(SYNTHESIZER, handle).infer(
            unknown_voice, priority=Priority.INTERACTIVE, timeout_s=60
        )
    assert info.value.param == "voice"
    # Counted as the request's mistake, not as a model failure.
    assert item_counts(client) == (rejected + 1, failed)
