"""The input file: one speech request per JSON line.

Each line has the fields of ``POST /v1/audio/speech`` plus an ``id`` that names the output file
and makes re-runs resumable (``{"id": "ch1-p3", "input": "...", "voice": "alloy"}``). A line that
cannot be read becomes a failed line with its error; it never stops the job.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pydantic import ValidationError

from harmonyspeech.api.protocol import SpeechRequest
from harmonyspeech.errors import HarmonySpeechError, InvalidRequestError, invalid_field

ID_PATTERN = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,127}")
"""Ids become file names, so they are restricted to a safe alphabet."""
AUTO_ID_PATTERN = re.compile(r"line-[0-9]+")
"""The ids of lines without one (``line-N``); no other line may take them."""


@dataclass(frozen=True)
class BatchLine:
    """One line of the input: a request, or the error that made it unreadable."""

    number: int
    """1-based line number in the input file."""
    id: str
    """The line's ``id``, or ``line-N`` when it has none (or an unusable one)."""
    request: SpeechRequest | None = None
    error: HarmonySpeechError | None = None


def read_lines(path: Path, defaults: Mapping[str, Any] | None = None) -> list[BatchLine]:
    """Every non-blank line of ``path``; ``defaults`` fill fields a line leaves out.

    Lines are decoded one by one, so a line that is not UTF-8 fails alone.
    """
    with path.open("rb") as source:
        return parse_lines(enumerate(source, start=1), defaults or {})


def parse_lines(
    numbered: Iterable[tuple[int, str | bytes]], defaults: Mapping[str, Any]
) -> list[BatchLine]:
    lines: list[BatchLine] = []
    first_seen: dict[str, int] = {}
    for number, text in numbered:
        if not text.strip():
            continue
        line = parse_line(number, text, defaults)
        if line.id in first_seen:
            message = f"duplicate id {line.id!r} (first on line {first_seen[line.id]})"
            line = BatchLine(
                number, f"line-{number}", error=InvalidRequestError(message, param="id")
            )
        first_seen.setdefault(line.id, number)
        lines.append(line)
    return lines


def parse_line(number: int, text: str | bytes, defaults: Mapping[str, Any]) -> BatchLine:
    fallback_id = f"line-{number}"
    if isinstance(text, bytes):
        try:
            text = text.decode("utf-8")
        except UnicodeDecodeError as exc:
            message = f"not UTF-8 text ({exc.reason} at byte {exc.start})"
            return BatchLine(number, fallback_id, error=InvalidRequestError(message))
    if number == 1:
        text = text.removeprefix("\ufeff")  # the byte-order mark some editors write
    try:
        data = json.loads(text)
    except json.JSONDecodeError as exc:
        return BatchLine(number, fallback_id, error=InvalidRequestError(f"not JSON: {exc}"))
    if not isinstance(data, dict):
        return BatchLine(number, fallback_id, error=InvalidRequestError("not a JSON object"))
    raw_id = data.pop("id", None)
    line_id = fallback_id if raw_id is None else str(raw_id)
    if not ID_PATTERN.fullmatch(line_id):
        message = f"id {line_id!r} must be 1-128 of A-Z a-z 0-9 . _ - (it names the file)"
        return BatchLine(number, fallback_id, error=InvalidRequestError(message, param="id"))
    if AUTO_ID_PATTERN.fullmatch(line_id) and line_id != fallback_id:
        message = f"id {line_id!r} is kept for the line of that number when it has no id"
        return BatchLine(number, fallback_id, error=InvalidRequestError(message, param="id"))
    try:
        request = SpeechRequest.model_validate({**defaults, **data})
    except ValidationError as exc:
        return BatchLine(number, line_id, error=invalid_field(exc.errors()[0]))
    return BatchLine(number, line_id, request=request)
