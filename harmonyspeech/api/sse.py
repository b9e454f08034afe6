"""Server-sent events as OpenAI streams them: ``data: {json}`` frames, no ``event:`` lines."""

from __future__ import annotations

import json
from typing import Any

from harmonyspeech.api.metrics import record_error
from harmonyspeech.errors import HarmonySpeechError

MEDIA_TYPE = "text/event-stream"
HEADERS = {"Cache-Control": "no-cache", "X-Accel-Buffering": "no"}


def sse_frame(payload: dict[str, Any]) -> bytes:
    """One event."""
    return b"data: " + json.dumps(payload, ensure_ascii=False).encode("utf-8") + b"\n\n"


def sse_error(error: HarmonySpeechError) -> bytes:
    """An error event after streaming began; the OpenAI SDK raises ``APIError`` on it
    (counted in ``harmonyspeech_errors``)."""
    record_error(error)
    return sse_frame({"type": "error", **error.to_envelope()})
