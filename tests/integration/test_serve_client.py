"""``ServeModelClient`` against the real served app: a caller that gives up on an item takes
it out of the model's queue (Serve itself only cancels the calls of a cancelled request)."""

from __future__ import annotations

import asyncio

import httpx

from harmonyspeech.engine.items import Priority
from harmonyspeech.models.types import SynthesisRequest
from harmonyspeech.serve.app import APP_NAME, model_deployment_name
from harmonyspeech.serve.clients import ServeModelClient

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
