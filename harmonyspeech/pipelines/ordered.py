"""Awaiting a request's concurrent model calls in order, failing as soon as any of them fails."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from typing import Any, TypeVar

T = TypeVar("T")


async def in_order(
    future: asyncio.Future[T], futures: Sequence[asyncio.Future[Any]], timeout: float | None
) -> T:
    """``future``'s result, or the failure of any of ``futures`` as soon as it happens.

    A request's items (sentences, windows) are delivered in order, but a later item's failure
    dooms the request all the same: a full queue refuses it at once, and the request must then
    fail fast (a 503 before its stream starts), not after the items before it were computed
    for nothing.

    Raises:
        TimeoutError: ``future`` was not done within ``timeout`` seconds.
    """
    async with asyncio.timeout(timeout):
        while not future.done():
            running = [f for f in futures if not f.done()]
            await asyncio.wait(running, return_when=asyncio.FIRST_COMPLETED)
            for other in futures:
                if other.done() and not other.cancelled() and other.exception() is not None:
                    raise other.exception()  # type: ignore[misc]
    return future.result()


def cancel_all(futures: Sequence[asyncio.Future[Any]]) -> None:
    """Cancel what still runs, and collect what failed, now or later (the request already has
    its error): a task asked to cancel may still end with its own error (a refusal that was on
    its way), which asyncio would otherwise log as never retrieved, with its traceback."""
    for future in futures:
        if not future.done():
            future.cancel()
        future.add_done_callback(_collect)


def _collect(future: asyncio.Future[Any]) -> None:
    if not future.cancelled():
        future.exception()
