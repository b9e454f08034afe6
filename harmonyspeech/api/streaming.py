"""Streaming responses that fail properly before their first byte, and break off after it."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import TypeVar

T = TypeVar("T")


class StreamBrokenOff(Exception):
    """Raised inside a started response's body to break its connection off.

    With the headers out, a broken connection is the only way left to tell a client that the body
    is incomplete (a short but well-formed audio file would pass for a success). Whoever raises
    it has logged why, in one line: servers need not log it again (``broke_a_stream``).
    """


def broke_a_stream(exc: BaseException | None) -> bool:
    """Whether ``exc`` is, or wraps, a ``StreamBrokenOff``: frameworks may re-raise it as the
    cause or context of their own exception, or inside an exception group."""
    seen: set[int] = set()
    pending = [exc]
    while pending:
        current = pending.pop()
        if current is None or id(current) in seen:
            continue
        seen.add(id(current))
        if isinstance(current, StreamBrokenOff):
            return True
        if isinstance(current, BaseExceptionGroup):
            pending.extend(current.exceptions)
        pending.extend([current.__cause__, current.__context__])
    return False


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
