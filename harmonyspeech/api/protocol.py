"""Wire types of the HTTP API (responses; request bodies live with their routes)."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from harmonyspeech.errors import InvalidRequestError
from harmonyspeech.models.types import SynthesisRequest


class SegmentOut(BaseModel):
    start: float
    """Start of speech, seconds."""
    end: float
    """End of speech, seconds."""


class VadResponse(BaseModel):
    model: str
    """Pipeline that served the request."""
    duration: float
    """Duration of the decoded upload, seconds."""
    segments: list[SegmentOut]
    """Speech segments in order."""


class ModelCard(BaseModel):
    """One entry of ``GET /v1/models`` (OpenAI list shape plus our details)."""

    id: str
    object: str = "model"
    created: int
    owned_by: str = "harmonyspeech"
    type: str
    """``pipeline``, ``alias`` or ``model_instance``."""
    details: dict[str, Any] = Field(default_factory=dict)


class ModelList(BaseModel):
    object: str = "list"
    data: list[ModelCard]


# https://platform.openai.com/docs/api-reference/audio/createSpeech
class VoiceRef(BaseModel):
    """A voice given as an object, as the OpenAI SDK's ``VoiceID``."""

    id: str


class SpeechRequest(BaseModel):
    """``POST /v1/audio/speech``. Unknown fields are accepted (clients add their own through
    ``extra_body`` / ``extra_payload``) and logged by the route, never rejected.

    Values take JSON's types, as OpenAI checks them: ``stream`` a boolean, numeric fields numbers
    (``"speed": "1.5"``, ``"seed": true`` or ``"stream": "no"`` are 400s, not guesses)."""

    model_config = ConfigDict(extra="allow")

    model: str = Field(examples=["tts-1"])
    """Pipeline name or alias (``tts-1``, ``tts-1-hd``, ...)."""
    input: str = Field(examples=["The quick brown fox jumped over the lazy dog."])
    """Text to speak."""
    voice: str | VoiceRef = Field(examples=["alloy"])
    """A MeloTTS speaker of the pipeline's checkpoint, or a voice name mapped to one in config."""
    response_format: Literal["mp3", "opus", "aac", "flac", "wav", "pcm"] = "mp3"
    speed: float = Field(1.0, ge=0.25, le=4.0, allow_inf_nan=False)
    instructions: str | None = Field(None, max_length=4096)
    """Accepted for compatibility; MeloTTS has no instruction conditioning."""
    stream_format: Literal["audio", "sse"] = "audio"
    stream: bool = Field(True, strict=True)
    """Extension (as Kokoro-FastAPI): false buffers the whole file, so containers carry exact
    lengths and the response has a Content-Length; true sends audio as it is synthesised."""
    seed: int | None = Field(None, ge=0, le=2**31 - 1)
    """Extension: fixes the sampling noise, so the same request gives the same audio."""
    sdp_ratio: float | None = Field(None, ge=0, le=1, allow_inf_nan=False)
    """Extension: MeloTTS stochastic-duration mix (0 deterministic durations .. 1)."""
    noise_scale: float | None = Field(None, ge=0, le=2, allow_inf_nan=False)
    """Extension: MeloTTS prior noise."""
    noise_scale_w: float | None = Field(None, ge=0, le=2, allow_inf_nan=False)
    """Extension: MeloTTS duration noise."""

    @model_validator(mode="before")
    @classmethod
    def _nulls_mean_defaults(cls, data: Any) -> Any:
        # Clients that send every optional field send null for those left unset
        # ("speed": null); that means the default, not a type error.
        if not isinstance(data, dict):
            return data
        defaulted = {
            name
            for name, field in cls.model_fields.items()
            if not field.is_required() and field.default is not None
        }
        return {k: v for k, v in data.items() if not (v is None and k in defaulted)}

    @field_validator("speed", "seed", "sdp_ratio", "noise_scale", "noise_scale_w", mode="before")
    @classmethod
    def _numbers_are_json_numbers(cls, value: Any) -> Any:
        # Lax parsing read "1.5" as 1.5 and true as 1; an exact float stays a valid seed.
        if isinstance(value, bool | str):
            raise ValueError("must be a number")
        return value

    @field_validator("voice", mode="before")
    @classmethod
    def _check_voice(cls, value: Any) -> Any:
        # One clear error for a wrong voice, rather than one per member of the union.
        if isinstance(value, str | VoiceRef):
            return value
        if isinstance(value, dict) and isinstance(value.get("id"), str):
            return value
        raise ValueError("must be a voice name or an object with a string 'id'")

    @property
    def voice_id(self) -> str:
        return self.voice if isinstance(self.voice, str) else self.voice.id

    @property
    def unknown_fields(self) -> list[str]:
        return sorted(self.model_extra or {})

    def check_input(self, max_chars: int) -> None:
        """Reject empty text, text over ``max_chars`` and text with lone surrogates (400,
        ``param: input``)."""
        if len(self.input) > max_chars:
            raise InvalidRequestError(
                f"input is {len(self.input)} characters; the limit is {max_chars}", param="input"
            )
        if not self.input.strip():
            raise InvalidRequestError("input is empty", param="input")
        try:
            self.input.encode("utf-8")
        except UnicodeEncodeError as exc:
            # JSON escapes can spell lone surrogates, which no tokenizer accepts.
            raise InvalidRequestError(
                f"input is not valid Unicode: {exc.reason} at character {exc.start}",
                param="input",
            ) from None

    def synthesis_request(self) -> SynthesisRequest:
        """What the pipeline speaks, and how."""
        return SynthesisRequest(
            text=self.input,
            voice=self.voice_id,
            speed=self.speed,
            sdp_ratio=self.sdp_ratio,
            noise_scale=self.noise_scale,
            noise_scale_w=self.noise_scale_w,
            seed=self.seed,
        )
