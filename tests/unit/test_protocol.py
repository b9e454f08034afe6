"""The speech request body as clients send it."""

from __future__ import annotations

import pytest
from pydantic import ValidationError

from harmonyspeech.api.protocol import SpeechRequest


def test_null_optional_fields_take_their_defaults() -> None:
    # Clients that send every field send null for the ones left unset; those were 400s.
    body = SpeechRequest.model_validate(
        {
            "model": "tts-1",
            "input": "Hi.",
            "voice": "alloy",
            "response_format": None,
            "speed": None,
            "stream": None,
            "stream_format": None,
            "instructions": None,
            "seed": None,
        }
    )
    assert (body.response_format, body.speed, body.stream, body.stream_format) == (
        "mp3",
        1.0,
        True,
        "audio",
    )
    assert body.seed is None and body.unknown_fields == []


def test_required_fields_stay_required_and_values_stay_checked() -> None:
    for bad in ({"model": None}, {"voice": None}, {"speed": 9.0}, {"response_format": "ogg"}):
        with pytest.raises(ValidationError):
            SpeechRequest.model_validate({"model": "tts-1", "input": "Hi.", "voice": "a", **bad})


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("stream", "no"),
        ("stream", "false"),
        ("stream", 0),
        ("speed", "1.5"),
        ("speed", True),
        ("seed", True),
        ("seed", "7"),
        ("sdp_ratio", "0.2"),
        ("noise_scale", False),
    ],
)
def test_values_of_another_json_type_are_refused_not_guessed(field: str, value: object) -> None:
    """As OpenAI answers them: lax parsing read "no" as false, true as 1 and "1.5" as 1.5."""
    with pytest.raises(ValidationError, match=field):
        SpeechRequest.model_validate({"model": "tts-1", "input": "Hi.", "voice": "a", field: value})


def test_json_numbers_of_either_kind_are_numbers() -> None:
    body = SpeechRequest.model_validate(
        {"model": "tts-1", "input": "Hi.", "voice": "a", "speed": 2, "seed": 7.0, "stream": False}
    )
    assert (body.speed, body.seed, body.stream) == (2.0, 7, False)
