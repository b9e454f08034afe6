"""Streaming responses that fail properly before their first byte."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import TypeVar

T = TypeVar("T")


async def started(stream: AsyncIterator[T]) -> AsyncIterator[T]:
    """Wait for ``stream``'s first item, then return an iterator over all of it.

    Errors raised before anything was produced (bad input, a full queue, an unavailable model)
    then surface as a normal HTTP error response with its status, instead of as a 200 stream
    that breaks off.
    """
    try:
        first = await anext(stream)
    except StopAsyncIteration:
        return _empty()
    return _chain(first, stream)


async def _chain(first: T, rest: AsyncIterator[T]) -> AsyncIterator[T]:
    yield first
    async for item in rest:
        yield item


async def _empty() -> AsyncIterator[T]:
    return
    yield  # an async generator that yields nothing
