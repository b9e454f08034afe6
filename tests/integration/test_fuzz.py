"""Hostile HTTP input gets a 4xx in OpenAI's error envelope: never a 5xx, never a hang.

Two parts, both over the real app on in-process workers with tiny weights (as
``test_api_inprocess.py`` builds it, without auth):

* Schemathesis fuzzes every operation of the app's own OpenAPI schema (examples, coverage and
  fuzzing phases, valid and invalid data, a fixed seed). Multipart ``file`` parts are declared as
  ``audio/*`` in the schema, so part of the generated uploads are real audio (generated WAVs and a
  committed speech clip) and the fuzzed options reach the models. Run with ``-s`` to see how many
  inputs were tried and how many got a 5xx.
* Targeted cases schemathesis does not produce: malformed multipart, huge and deeply nested JSON,
  odd unicode, non-finite numbers, wrong types and content types, over-long URLs, path traversal
  in voice ids, and the upload size and duration limits of every upload endpoint.
"""

from __future__ import annotations

import asyncio
import io
import json
import struct
import threading
import wave
from collections import Counter
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from types import EllipsisType
from typing import Any
from urllib.parse import unquote

import httpx
import numpy as np
import pytest
import schemathesis
from fastapi import FastAPI
from hypothesis import strategies as st
from schemathesis.checks import not_a_server_error

from harmonyspeech.api.app import create_app
from harmonyspeech.config import load_config
from harmonyspeech.pipelines.runtime import LocalEngine
from tests.conftest import ROOT, TinyWeights, served_config_data
from tests.unit.vad_clips import clip_bytes

MAX_UPLOAD_BYTES = 2_000_000
MAX_AUDIO_SECONDS = 10.0
REQUEST_TIMEOUT_S = 60.0
"""Every request, fuzzed or targeted, must be answered within this (a hang fails the test)."""
FUZZ_EXAMPLES = 100
"""Fuzzing-phase examples per operation (the examples and coverage phases add their own)."""
FUZZ_SEED = 20240917


@pytest.fixture(scope="module")
def engine(
    tiny_weights: TinyWeights, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[LocalEngine]:
    # Fuzzed clones go to a registry of their own, not the session's shared one.
    data = served_config_data(tiny_weights, voices={"path": str(tmp_path_factory.mktemp("fuzz"))})
    data["server"]["limits"]["max_upload_bytes"] = MAX_UPLOAD_BYTES
    data["server"]["limits"]["max_audio_seconds"] = MAX_AUDIO_SECONDS
    with LocalEngine(load_config(data)) as local:
        yield local


# --- fuzzing the OpenAPI schema ------------------------------------------------------------------


def wav_bytes(samples: np.ndarray, rate: int, channels: int = 1) -> bytes:
    """16-bit PCM WAV of float samples in [-1, 1], each repeated on ``channels`` channels."""
    frames = np.repeat(np.asarray(samples, dtype=np.float64)[:, None], channels, axis=1)
    pcm = (np.clip(frames, -1.0, 1.0) * 32767).astype("<i2")
    buffer = io.BytesIO()
    with wave.open(buffer, "wb") as out:
        out.setnchannels(channels)
        out.setsampwidth(2)
        out.setframerate(rate)
        out.writeframes(pcm.tobytes())
    return buffer.getvalue()


@st.composite
def wav_uploads(draw: st.DrawFn) -> bytes:
    """Short WAVs of silence, a tone or noise at common rates, mono or stereo (zero frames too)."""
    rate = draw(st.sampled_from([8000, 16000, 22050, 44100]))
    channels = draw(st.integers(1, 2))
    frames = int(rate * draw(st.floats(0.0, 1.5)))
    kind = draw(st.sampled_from(["silence", "tone", "noise"]))
    amplitude = draw(st.floats(0.0, 1.0))
    t = np.arange(frames, dtype=np.float32) / rate
    if kind == "tone":
        samples = amplitude * np.sin(2 * np.pi * draw(st.floats(50.0, 4000.0)) * t)
    elif kind == "noise":
        rng = np.random.default_rng(draw(st.integers(0, 2**16)))
        samples = amplitude * rng.uniform(-1.0, 1.0, frames)
    else:
        samples = np.zeros(frames)
    return wav_bytes(samples, rate, channels)


# The schema declares upload parts as `audio/*`; these are the audio files schemathesis sends.
schemathesis.openapi.media_type("audio/wav", wav_uploads())
schemathesis.openapi.media_type(
    "audio/flac", st.sampled_from([clip_bytes("short"), clip_bytes("two_phrases")])
)


@dataclass
class FuzzStats:
    """What the fuzzer sent, by operation: the figures printed at the end of the module."""

    tried: Counter[str] = field(default_factory=Counter)
    statuses: dict[str, Counter[int]] = field(default_factory=dict)
    server_errors: list[str] = field(default_factory=list)

    def record(self, operation: str, status: int, reproduce: str) -> None:
        self.tried[operation] += 1
        self.statuses.setdefault(operation, Counter())[status] += 1
        if status >= 500:
            self.server_errors.append(f"{operation} -> {status}: {reproduce}")

    def summary(self) -> str:
        lines = [
            f"schemathesis: {len(self.tried)} operations, {sum(self.tried.values())} inputs "
            f"tried, {len(self.server_errors)} answered with a 5xx"
        ]
        for operation, count in sorted(self.tried.items()):
            statuses = ", ".join(f"{s}: {n}" for s, n in sorted(self.statuses[operation].items()))
            lines.append(f"  {operation}: {count} inputs ({statuses})")
        lines += [f"  5xx: {line}" for line in self.server_errors]
        return "\n".join(lines)


STATS = FuzzStats()


@pytest.fixture(scope="module", autouse=True)
def fuzz_summary() -> Iterator[None]:
    yield
    if STATS.tried:
        print(f"\n{STATS.summary()}")


@pytest.fixture(scope="module")
def app(engine: LocalEngine) -> FastAPI:
    return create_app(engine.runtime)


def load_schema() -> schemathesis.BaseSchema:
    """The app's OpenAPI document, read at collection time (it does not depend on the models, so
    an engine that is never started serves it); requests go to the fixture's app."""
    document = create_app(
        LocalEngine(load_config(ROOT / "configs" / "test.yaml")).runtime
    ).openapi()
    config = schemathesis.Config.from_dict(
        {
            "seed": FUZZ_SEED,
            "generation": {
                "max-examples": FUZZ_EXAMPLES,
                "deterministic": True,
                "database": "none",
            },
            "suppress-health-check": ["all"],
        }
    )
    return schemathesis.openapi.from_dict(document, config=config)


def openai_error_envelope(
    ctx: schemathesis.CheckContext, response: schemathesis.Response, case: schemathesis.Case
) -> None:
    """Every error answer is ``{"error": {"message", "type", "param", "code"}}``."""
    if response.status_code >= 400:
        assert_envelope(response.status_code, response.json())


def assert_envelope(status: int, body: object) -> dict:
    """The error object of an OpenAI error body, checked field by field."""
    assert isinstance(body, dict) and set(body) == {"error"}, f"{status}: {body!r}"
    error = body["error"]
    assert set(error) == {"message", "type", "param", "code"}, f"{status}: {body!r}"
    assert isinstance(error["message"], str) and error["message"], body
    assert isinstance(error["type"], str) and error["type"], body
    assert error["param"] is None or isinstance(error["param"], str), body
    assert error["code"] is None or isinstance(error["code"], str), body
    return error


def call_bounded(case: schemathesis.Case, app: FastAPI) -> schemathesis.Response:
    """``case.call()`` on another thread, failing the test if it takes over the timeout."""
    outcome: dict[str, object] = {}

    def call() -> None:
        try:
            outcome["response"] = case.call(app=app)
        except BaseException as exc:  # re-raised on the test's thread
            outcome["error"] = exc

    worker = threading.Thread(target=call, daemon=True)
    worker.start()
    worker.join(REQUEST_TIMEOUT_S)
    if worker.is_alive():
        pytest.fail(f"no answer within {REQUEST_TIMEOUT_S:.0f} s: {case.as_curl_command()}")
    if "error" in outcome:
        raise outcome["error"]  # type: ignore[misc]
    response = outcome["response"]
    assert isinstance(response, schemathesis.Response)
    return response


schema = load_schema()


@schema.hook
def map_case(context: schemathesis.HookContext, case: schemathesis.Case) -> schemathesis.Case:
    # Schemathesis draws one value from the `audio/*` strategy for the array `file` of the voice
    # endpoints and then sends it as a text part (no filename); a list is sent as file parts.
    many = case.operation.path in ("/v1/audio/voices", "/v1/audio/embeddings")
    if many and isinstance(case.body, dict) and isinstance(case.body.get("file"), bytes):
        case.body = {**case.body, "file": [case.body["file"]]}
    return case


@schema.parametrize()
def test_fuzzed_requests_never_get_a_server_error(case: schemathesis.Case, app: FastAPI) -> None:
    response = call_bounded(case, app)
    STATS.record(case.operation.label, response.status_code, case.as_curl_command())
    case.validate_response(response, checks=[not_a_server_error, openai_error_envelope])


# --- targeted hostile input ----------------------------------------------------------------------

UPLOAD_ENDPOINTS = [
    "/v1/audio/transcriptions",
    "/v1/audio/translations",
    "/v1/audio/vad",
    "/v1/audio/voices",
    "/v1/audio/embeddings",
]
"""Every endpoint that takes an upload; each must apply the body and the duration limit."""
BOUNDARY = "harmonyspeech-fuzz"
SPEECH = {"model": "tts-1", "input": "Hello there.", "voice": "alloy", "stream": False}


@pytest.fixture
async def http(app: FastAPI) -> AsyncIterator[httpx.AsyncClient]:
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://test") as client:
        yield client


async def send(http: httpx.AsyncClient, method: str, url: str, **kwargs: Any) -> httpx.Response:
    """One request, failing the test if it is not answered within the timeout."""
    try:
        return await asyncio.wait_for(http.request(method, url, **kwargs), REQUEST_TIMEOUT_S)
    except TimeoutError:
        pytest.fail(f"{method} {url[:80]}: no answer within {REQUEST_TIMEOUT_S:.0f} s")


def assert_refused(
    response: httpx.Response, status: int, param: str | EllipsisType | None = ...
) -> dict:
    """A 4xx of exactly ``status`` in the OpenAI envelope, naming ``param`` (unless ``...``)."""
    assert response.status_code == status, f"{response.status_code}: {response.text[:500]}"
    error = assert_envelope(response.status_code, response.json())
    if param is not ...:
        assert error["param"] == param, error
    return error


def assert_not_server_error(response: httpx.Response) -> None:
    """Valid but unusual input: any answer but a 5xx, and an error is in the envelope."""
    assert response.status_code < 500, f"{response.status_code}: {response.text[:500]}"
    if response.status_code >= 400:
        assert_envelope(response.status_code, response.json())


def multipart(*parts: tuple[bytes | str, bytes], boundary: str = BOUNDARY) -> bytes:
    """A multipart body from (Content-Disposition parameters, content) pairs, written by hand so
    that it can be malformed."""
    body = b""
    for disposition, content in parts:
        params = disposition.encode() if isinstance(disposition, str) else disposition
        body += b"--%s\r\nContent-Disposition: form-data; %s\r\n\r\n" % (boundary.encode(), params)
        body += content + b"\r\n"
    return body + b"--%s--\r\n" % boundary.encode()


def form_headers(boundary: str | None = BOUNDARY) -> dict[str, str]:
    suffix = f"; boundary={boundary}" if boundary is not None else ""
    return {"content-type": f"multipart/form-data{suffix}"}


def speech_clip() -> bytes:
    return clip_bytes("two_phrases")


def upload_fields(endpoint: str) -> list[tuple[str, bytes]]:
    """The form fields besides ``file`` that ``endpoint`` requires."""
    return [('name="name"', b"fuzz")] if endpoint == "/v1/audio/voices" else []


def audio_part(content: bytes, name: str = "file") -> tuple[str, bytes]:
    return f'name="{name}"; filename="clip.flac"', content


MALFORMED_MULTIPART: dict[str, tuple[dict[str, str], bytes, int]] = {
    "wrong boundary": (
        form_headers("not-the-boundary"),
        multipart(audio_part(b"RIFF....WAVE")),
        400,
    ),
    "missing boundary": (form_headers(None), multipart(audio_part(b"RIFF....WAVE")), 400),
    "empty boundary": (form_headers('""'), multipart(audio_part(b"RIFF....WAVE")), 400),
    "truncated body": (form_headers(), multipart(audio_part(b"\0" * 1000))[:-600], 400),
    "only a boundary": (form_headers(), f"--{BOUNDARY}\r\n".encode(), 400),
    "no body": (form_headers(), b"", 400),
    "part without a name": (form_headers(), multipart(('filename="clip.flac"', b"x")), 400),
    "part without a disposition": (
        form_headers(),
        f"--{BOUNDARY}\r\nContent-Type: audio/wav\r\n\r\nxx\r\n--{BOUNDARY}--\r\n".encode(),
        400,
    ),
    "file as a text field": (form_headers(), multipart(('name="file"', b"not a file")), 400),
    "non-audio bytes": (form_headers(), multipart(audio_part(b"%PDF-1.4 definitely" * 50)), 400),
    "empty file": (form_headers(), multipart(audio_part(b"")), 400),
    "garbage after a valid header": (
        form_headers(),
        multipart(audio_part(speech_clip()[:200] + b"\xde\xad\xbe\xef" * 500)),
        400,
    ),
    "thousands of fields": (
        form_headers(),
        multipart(audio_part(b"x"), *[(f'name="f{i}"', b"1") for i in range(3000)]),
        400,
    ),
    "thousands of files": (
        form_headers(),
        multipart(*[audio_part(b"x", name=f"f{i}") for i in range(1500)]),
        400,
    ),
    "invalid charset": (
        {"content-type": f"multipart/form-data; boundary={BOUNDARY}; charset=no-such-codec"},
        multipart(audio_part(b"RIFF....WAVE")),
        400,
    ),
}


@pytest.mark.parametrize("endpoint", UPLOAD_ENDPOINTS)
async def test_a_file_sent_without_a_filename_is_told_how_to_send_it(
    http: httpx.AsyncClient, endpoint: str
) -> None:
    # `curl -F "file=<clip.flac"` and httpx's `files={"file": (None, data)}` send the audio
    # as a text part; the message used to be pydantic's "Expected UploadFile, received: ...".
    body = multipart(('name="file"', speech_clip()), *upload_fields(endpoint))
    response = await send(http, "POST", endpoint, content=body, headers=form_headers())
    error = assert_refused(response, 400)
    # The voice endpoints take several files and name the one at fault: file.0.
    assert error["param"].split(".")[0] == "file"
    expected = "expected a file: send it as a multipart part with a filename"
    assert error["message"] == f"{error['param']}: {expected}"


@pytest.mark.parametrize("endpoint", UPLOAD_ENDPOINTS)
@pytest.mark.parametrize("case", list(MALFORMED_MULTIPART))
async def test_malformed_multipart_is_a_400(
    http: httpx.AsyncClient, endpoint: str, case: str
) -> None:
    headers, body, status = MALFORMED_MULTIPART[case]
    response = await send(http, "POST", endpoint, content=body, headers=headers)
    assert_refused(response, status)


async def test_a_form_field_beyond_the_body_limit_is_a_413(http: httpx.AsyncClient) -> None:
    body = multipart(audio_part(speech_clip()), ('name="prompt"', b"a" * MAX_UPLOAD_BYTES))
    response = await send(http, "POST", UPLOAD_ENDPOINTS[0], content=body, headers=form_headers())
    assert_refused(response, 413, "file")


@pytest.mark.parametrize(
    ("endpoint", "fields", "status", "param"),
    [
        # The last of repeated scalar fields counts (as Starlette reads forms); none is a 5xx.
        ("/v1/audio/vad", [('name="threshold"', b"0.5"), ('name="threshold"', b"nan")], 400, None),
        ("/v1/audio/vad", [('name="threshold"', b"nan"), ('name="threshold"', b"0.5")], 200, None),
        ("/v1/audio/vad", [('name="model"', b"vad"), ('name="model"', b"whisper")], 404, "model"),
        ("/v1/audio/vad", [('name="model"', b"whisper"), ('name="model"', b"vad")], 200, None),
        ("/v1/audio/transcriptions", [audio_part(b"not audio")], 400, "file"),
        ("/v1/audio/voices", [('name="name"', b"a"), ('name="name"', b"b")], 200, None),
    ],
)
async def test_duplicate_fields(
    http: httpx.AsyncClient,
    endpoint: str,
    fields: list[tuple[str, bytes]],
    status: int,
    param: str | None,
) -> None:
    body = multipart(audio_part(speech_clip()), *fields)
    response = await send(http, "POST", endpoint, content=body, headers=form_headers())
    if status == 200:
        assert response.status_code == 200, response.text[:500]
    else:
        error = assert_refused(response, status)
        assert param is None or error["param"] == param


NON_FINITE_FORM_VALUES = [b"nan", b"NaN", b"inf", b"-inf", b"Infinity", b"1e309", b"-1e309"]


@pytest.mark.parametrize("value", NON_FINITE_FORM_VALUES)
@pytest.mark.parametrize(
    ("endpoint", "field"),
    [
        ("/v1/audio/vad", "threshold"),
        ("/v1/audio/vad", "neg_threshold"),
        ("/v1/audio/vad", "max_speech_duration_s"),
        ("/v1/audio/vad", "min_speech_duration_ms"),
        ("/v1/audio/vad", "speech_pad_ms"),
        ("/v1/audio/transcriptions", "temperature"),
        ("/v1/audio/translations", "temperature"),
    ],
)
async def test_non_finite_numbers_in_forms_are_refused(
    http: httpx.AsyncClient, endpoint: str, field: str, value: bytes
) -> None:
    body = multipart(audio_part(speech_clip()), (f'name="{field}"', value))
    response = await send(http, "POST", endpoint, content=body, headers=form_headers())
    assert_refused(response, 400, field)


@pytest.mark.parametrize(
    ("endpoint", "field", "value", "status"),
    [
        ("/v1/audio/transcriptions", "model", b"\xff\xfe whisper", 404),
        ("/v1/audio/transcriptions", "language", b"e\xffn", 400),
        ("/v1/audio/transcriptions", "language", b"en\x00", 400),
        ("/v1/audio/transcriptions", "prompt", b"\xff\xfe\x00\xc3\x28 \xed\xa0\x80", 200),
        ("/v1/audio/transcriptions", "response_format", b"json\x00", 400),
        ("/v1/audio/transcriptions", "timestamp_granularities[]", b"wo\xffrd", 400),
        ("/v1/audio/vad", "model", "\u202evad\u200b".encode(), 404),
        ("/v1/audio/vad", "threshold", b"0.\xff5", 400),
        ("/v1/audio/voices", "name", b"\xed\xa0\x80 \x00 \xff", 200),
        ("/v1/audio/voices", "consent", "\U0001f600\u0301\u202e".encode(), 200),
    ],
)
async def test_odd_bytes_in_form_fields(
    http: httpx.AsyncClient, endpoint: str, field: str, value: bytes, status: int
) -> None:
    body = multipart(
        *upload_fields(endpoint), audio_part(speech_clip()), (f'name="{field}"', value)
    )
    response = await send(http, "POST", endpoint, content=body, headers=form_headers())
    if status == 200:
        assert response.status_code == 200, response.text[:500]
    else:
        assert_refused(response, status, field.removesuffix("[]"))


def speech_json(**fields: str) -> bytes:
    """A speech request's JSON text with some members replaced by raw JSON text (so that they
    can be what ``json.dumps`` never writes: NaN, lone surrogates, invalid UTF-8, ...)."""
    members = {key: json.dumps(value) for key, value in SPEECH.items()}
    members.update(fields)
    return ("{" + ", ".join(f'"{key}": {value}' for key, value in members.items()) + "}").encode(
        "utf-8", "surrogatepass"
    )


JSON_HEADERS = {"content-type": "application/json"}


@pytest.mark.parametrize(
    ("field", "raw"),
    [
        ("speed", "NaN"),
        ("speed", "Infinity"),
        ("speed", "-Infinity"),
        ("speed", "1e309"),
        ("speed", '"nan"'),
        ("speed", '"inf"'),
        ("sdp_ratio", "NaN"),
        ("noise_scale", "Infinity"),
        ("noise_scale_w", "-Infinity"),
        ("seed", "NaN"),
        ("seed", "1e309"),
        ("seed", "1e30"),
    ],
)
async def test_non_finite_numbers_in_json_are_refused(
    http: httpx.AsyncClient, field: str, raw: str
) -> None:
    response = await send(
        http, "POST", "/v1/audio/speech", content=speech_json(**{field: raw}), headers=JSON_HEADERS
    )
    assert_refused(response, 400, field)


@pytest.mark.parametrize(
    ("fields", "param"),
    [
        ({"input": "5"}, "input"),
        ({"input": "null"}, "input"),
        ({"input": '["Hello"]'}, "input"),
        ({"input": '{"text": "Hello"}'}, "input"),
        ({"voice": "[]"}, "voice"),
        ({"voice": "5"}, "voice"),
        ({"voice": "{}"}, "voice"),
        ({"voice": '{"id": []}'}, "voice"),
        ({"voice": '{"name": "alloy"}'}, "voice"),
        ({"model": "[]"}, "model"),
        ({"model": "true"}, "model"),
        ({"speed": '"fast"'}, "speed"),
        ({"speed": "[1]"}, "speed"),
        ({"stream": '"maybe"'}, "stream"),
        ({"response_format": '"exe"'}, "response_format"),
        ({"response_format": '["mp3"]'}, "response_format"),
        ({"instructions": "{}"}, "instructions"),
    ],
)
async def test_wrong_json_types_are_a_400_naming_the_field(
    http: httpx.AsyncClient, fields: dict[str, str], param: str
) -> None:
    response = await send(
        http, "POST", "/v1/audio/speech", content=speech_json(**fields), headers=JSON_HEADERS
    )
    assert_refused(response, 400, param)


def nested(depth: int) -> str:
    return "[" * depth + "]" * depth


NOT_AN_OBJECT = "must be a JSON object"
NOT_JSON = "not valid JSON"
BAD_JSON_BODIES: dict[str, tuple[bytes, int, str | None, str]] = {
    "array instead of an object": (
        b"[" + json.dumps(SPEECH).encode() + b"]",
        400,
        None,
        NOT_AN_OBJECT,
    ),
    "a string": (b'"speak"', 400, None, NOT_AN_OBJECT),
    "null": (b"null", 400, None, NOT_AN_OBJECT),
    "empty": (b"", 400, None, NOT_AN_OBJECT),
    "not JSON": (b"model=tts-1&input=hi", 400, None, NOT_JSON),
    "truncated": (json.dumps(SPEECH).encode()[:-5], 400, None, NOT_JSON),
    "trailing garbage": (json.dumps(SPEECH).encode() + b"}}", 400, None, NOT_JSON),
    "deeply nested member": (speech_json(extra=nested(100_000)), 400, None, "nested too deeply"),
    "deeply nested voice": (speech_json(voice=nested(100_000)), 400, None, "nested too deeply"),
    "10k-key voice object": (
        speech_json(voice=json.dumps({f"k{i}": i for i in range(10_000)})),
        400,
        "voice",
        "voice name or an object",
    ),
    "1 MB input": (speech_json(input=json.dumps("a" * 1_000_000)), 400, "input", "the limit"),
    "body over the limit": (
        speech_json(input=json.dumps("a" * MAX_UPLOAD_BYTES)),
        413,
        None,
        "exceeds the limit",
    ),
    "invalid UTF-8": (
        speech_json(input='"\xff\xfe hello"').replace(b"\xc3\xbf", b"\xff"),
        400,
        None,
        "not valid utf-8",
    ),
    "empty input": (speech_json(input='""'), 400, "input", "empty"),
    "whitespace input": (speech_json(input=json.dumps(" \n\t\u3000")), 400, "input", "empty"),
    "unknown voice": (speech_json(voice='"nobody"'), 400, "voice", "unknown voice"),
    "unknown model": (speech_json(model='"tts-9"'), 404, "model", "does not exist"),
    "transcription model": (speech_json(model='"whisper-1"'), 404, "model", "cannot serve"),
    "traversal voice": (speech_json(voice='"../../etc/passwd"'), 400, "voice", "unknown voice"),
    "traversal cloned voice": (
        speech_json(voice='"voice_../../../etc/passwd"'),
        400,
        "voice",
        "unknown voice",
    ),
    "lone surrogate input": (
        speech_json(input='"Hello \\ud800 \\udfff."'),
        400,
        "input",
        "not valid Unicode",
    ),
    "lone surrogate voice": (speech_json(voice='"\\ud800"'), 400, "voice", "unknown voice"),
    "lone surrogate model": (speech_json(model='"\\udfff tts"'), 404, "model", "does not exist"),
}


@pytest.mark.parametrize("case", list(BAD_JSON_BODIES))
async def test_bad_json_bodies_are_refused(http: httpx.AsyncClient, case: str) -> None:
    body, status, param, message = BAD_JSON_BODIES[case]
    response = await send(http, "POST", "/v1/audio/speech", content=body, headers=JSON_HEADERS)
    error = assert_refused(response, status, param)
    assert message in error["message"], error


@pytest.mark.parametrize(
    "text",
    [
        "\U0001f600\U0001f389\U0001f44d",  # emoji only
        "\u05e9\u05dc\u05d5\u05dd \u05e2\u05d5\u05dc\u05dd",  # Hebrew, right to left
        "\u202eHello\u202c there\u200b\u200d\ufeff.",  # bidi overrides, zero-width characters
        "e\u0301\u0301\u0301\u0301\u0301 Z\u0351\u0352\u0353\u0354\u0355\u0356",  # combining marks
        "Hello\u0000world\u0000.",  # NUL characters
        "\u0007\u001b[31mHello\u007f",  # control characters and an ANSI escape
        "\ufffd\ufffe\uffff",  # replacement character and non-characters
        "\U000e0041\U000f0000\U0010fffd",  # tag and private-use characters
        ".,;!?" * 20,  # punctuation only
    ],
)
async def test_unusual_text_is_never_a_server_error(http: httpx.AsyncClient, text: str) -> None:
    escaped = json.dumps(text)  # ASCII with \\u escapes, surrogates included
    body = speech_json(input=escaped)
    response = await send(http, "POST", "/v1/audio/speech", content=body, headers=JSON_HEADERS)
    assert_not_server_error(response)


@pytest.mark.parametrize(
    ("body", "headers"),
    [
        # Unknown fields are accepted (clients add their own) and only logged.
        (
            json.dumps({**SPEECH, **{f"x{i}": i for i in range(10_000)}}).encode(),
            JSON_HEADERS,
        ),
        (json.dumps(SPEECH).encode("utf-16"), JSON_HEADERS),  # JSON may come in UTF-16
        (json.dumps(SPEECH).encode(), {"content-type": "application/json; charset=latin-1"}),
    ],
    ids=["10k unknown fields", "UTF-16", "odd charset"],
)
async def test_unusual_but_valid_speech_bodies_are_served(
    http: httpx.AsyncClient, body: bytes, headers: dict[str, str]
) -> None:
    response = await send(http, "POST", "/v1/audio/speech", content=body, headers=headers)
    assert response.status_code == 200, response.text[:500]


WRONG_CONTENT_TYPES: list[tuple[str, str | None, bytes]] = [
    ("/v1/audio/speech", "text/plain", json.dumps(SPEECH).encode()),
    ("/v1/audio/speech", None, json.dumps(SPEECH).encode()),  # FastAPI's strict content type
    ("/v1/audio/speech", "application/x-www-form-urlencoded", b"model=tts-1&input=hi&voice=alloy"),
    (
        "/v1/audio/speech",
        "multipart/form-data; boundary=" + BOUNDARY,
        multipart(('name="model"', b"tts-1")),
    ),
    ("/v1/audio/speech", "application/xml", b"<speech model='tts-1'/>"),
    ("/v1/audio/speech", "application/json", b"\x00" * 64),
    *[
        (endpoint, "application/json", json.dumps({"file": "clip.flac"}).encode())
        for endpoint in UPLOAD_ENDPOINTS
    ],
    *[(endpoint, "text/plain", b"file=clip.flac") for endpoint in UPLOAD_ENDPOINTS],
    *[(endpoint, None, multipart(audio_part(b"RIFF"))) for endpoint in UPLOAD_ENDPOINTS],
    ("/v1/audio/vad", "application/x-www-form-urlencoded", b"file=RIFF&threshold=0.5"),
    ("/v1/audio/vad", "multipart/mixed; boundary=" + BOUNDARY, multipart(audio_part(b"RIFF"))),
    ("/v1/audio/vad", "application/octet-stream", speech_clip()),
    ("/v1/audio/vad", "audio/flac", speech_clip()),
]


@pytest.mark.parametrize(("endpoint", "content_type", "body"), WRONG_CONTENT_TYPES)
async def test_wrong_content_types_are_a_400(
    http: httpx.AsyncClient, endpoint: str, content_type: str | None, body: bytes
) -> None:
    headers = {"content-type": content_type} if content_type else {}
    response = await send(http, "POST", endpoint, content=body, headers=headers)
    error = assert_refused(response, 400)
    if endpoint == "/v1/audio/speech":
        assert "JSON" in error["message"], error
    else:
        assert error["param"] == "file", error


LONG = "a" * 60_000
"""Just under httpx's URL length limit (64 KiB)."""


@pytest.mark.parametrize(
    ("method", "url", "status", "param"),
    [
        ("GET", "/v1/" + LONG, 404, None),
        ("GET", "/v1/audio/voices/" + LONG, 404, "voice_id"),
        ("GET", "/v1/models/" + LONG, 404, "model"),
        ("POST", "/v1/audio/speech/" + LONG, 404, None),
        ("GET", "/v1/audio/voices?model=" + LONG, 404, "model"),
        ("GET", "/v1/audio/voices?" + "&".join(f"k{i}=v" for i in range(6000)), 200, None),
        ("GET", "/v1/models?" + "x=" + LONG, 200, None),
        ("GET", "/v1/audio/voices?model=%FF%FE%00", 404, "model"),
        ("GET", "/v1/audio/voices/..%2F..%2Fetc%2Fpasswd", 404, None),
        ("GET", "/v1/audio/voices/%2E%2E%2F%2E%2E%2Fetc%2Fpasswd/embedding", 404, None),
        ("GET", "/v1/audio/voices/..%252F..%252Fetc%252Fpasswd", 404, "voice_id"),
        ("GET", "/v1/audio/voices/voice_..%2F..%2Fetc%2Fpasswd", 404, None),
        ("GET", "/v1/audio/voices/....//....//etc//passwd", 404, None),
        ("GET", "/v1/audio/voices/%5C..%5C..%5Cetc%5Cpasswd", 404, "voice_id"),
        ("GET", "/v1/audio/voices/voice_0123456789abcdef%00", 404, "voice_id"),
        ("GET", "/v1/audio/voices/%FF%FE", 404, "voice_id"),
        ("GET", "/v1/audio/voices/..%2F..%2Fetc%2Fpasswd/embedding", 404, None),
        ("GET", "/v1/audio/voices/%2E%2E/embedding", 404, None),
        ("GET", "/v1/audio/voices/voice_0000000000000000/embedding", 404, "voice"),
        ("DELETE", "/v1/audio/voices/%2E%2E", 404, None),
        ("DELETE", "/v1/audio/voices/..%2F..%2Fetc%2Fpasswd", 404, None),
        ("DELETE", "/v1/audio/voices/voice_../../etc/passwd", 404, None),
        ("DELETE", "/v1/audio/voices/%5C..%5Cvoices", 404, "voice"),
        ("GET", "/v1/models/..%2F..%2Fetc%2Fpasswd", 404, "model"),
        ("GET", "/v1/models/instance:..%2F..%2Fetc%2Fpasswd", 404, "model"),
    ],
)
async def test_long_urls_and_path_traversal_are_refused(
    http: httpx.AsyncClient, method: str, url: str, status: int, param: str | None
) -> None:
    response = await send(http, method, url)
    if status == 200:
        assert response.status_code == 200, response.text[:500]
    else:
        error = assert_refused(response, status)
        assert param is None or error["param"] == param, error


async def raw_asgi_request(app: FastAPI, method: str, raw_path: bytes) -> tuple[int, object]:
    """A request with its path exactly as an HTTP server hands it on: percent-decoded, dot
    segments kept (httpx would remove them before sending)."""
    scope = {
        "type": "http",
        "asgi": {"version": "3.0"},
        "http_version": "1.1",
        "method": method,
        "scheme": "http",
        "path": unquote(raw_path.decode("ascii")),
        "raw_path": raw_path,
        "root_path": "",
        "query_string": b"",
        "headers": [(b"host", b"test")],
        "client": ("127.0.0.1", 50000),
        "server": ("test", 80),
    }
    messages: list[dict[str, Any]] = []

    async def receive() -> dict[str, Any]:
        return {"type": "http.request", "body": b"", "more_body": False}

    async def send_message(message: dict[str, Any]) -> None:
        messages.append(message)

    await asyncio.wait_for(app(scope, receive, send_message), REQUEST_TIMEOUT_S)
    status = next(m["status"] for m in messages if m["type"] == "http.response.start")
    body = b"".join(m.get("body", b"") for m in messages if m["type"] == "http.response.body")
    return status, json.loads(body)


@pytest.mark.parametrize(
    ("method", "raw_path", "param"),
    [
        ("GET", b"/v1/audio/voices/../../etc/passwd", None),
        ("GET", b"/v1/audio/voices/..", "voice_id"),
        ("GET", b"/v1/audio/voices/../embedding", "voice"),
        ("GET", b"/v1/audio/voices/voice_0123456789abcdef/../../../etc/passwd", None),
        ("DELETE", b"/v1/audio/voices/..", "voice"),
        ("DELETE", b"/v1/audio/voices/.", "voice"),
        ("DELETE", b"/v1/audio/voices/%2E%2E", "voice"),
        ("DELETE", b"/v1/audio/voices/../../../tmp", None),
        ("GET", b"/v1/models/../../etc/passwd", "model"),
        ("GET", b"/v1/models/instance:../../../etc/passwd", "model"),
    ],
)
async def test_dot_segments_never_leave_the_voice_registry(
    app: FastAPI, engine: LocalEngine, method: str, raw_path: bytes, param: str | None
) -> None:
    status, body = await raw_asgi_request(app, method, raw_path)
    assert status == 404, body
    assert assert_envelope(status, body)["param"] == param
    assert Path(engine.config.server.voices.path).is_dir()


def float_wav(samples: np.ndarray, rate: int = 16000) -> bytes:
    """A mono IEEE-float WAV (format 3), which can carry NaN and infinity."""
    data = np.asarray(samples, dtype="<f4").tobytes()
    fmt = struct.pack("<HHIIHH", 3, 1, rate, rate * 4, 4, 32)
    chunks = b"WAVEfmt " + struct.pack("<I", len(fmt)) + fmt
    chunks += b"data" + struct.pack("<I", len(data)) + data
    return b"RIFF" + struct.pack("<I", len(chunks)) + chunks


NOISE = np.random.default_rng(0).uniform(-0.5, 0.5, 16000 * 4)
EVERY_100TH = np.arange(len(NOISE)) % 100 == 0


@pytest.mark.parametrize("endpoint", UPLOAD_ENDPOINTS)
@pytest.mark.parametrize(
    "samples",
    [np.full(len(NOISE), np.nan), np.where(EVERY_100TH, np.nan, NOISE)]
    + [np.where(EVERY_100TH, value, NOISE) for value in (np.inf, -np.inf)],
    ids=["all NaN", "some NaN", "some inf", "some -inf"],
)
async def test_non_finite_samples_are_refused(
    http: httpx.AsyncClient, endpoint: str, samples: np.ndarray
) -> None:
    body = multipart(*upload_fields(endpoint), audio_part(float_wav(samples)))
    response = await send(http, "POST", endpoint, content=body, headers=form_headers())
    error = assert_refused(response, 400, "file")
    assert "not finite" in error["message"]


@pytest.mark.parametrize("endpoint", UPLOAD_ENDPOINTS)
@pytest.mark.parametrize(
    "audio",
    [
        wav_bytes(np.array([0.5]), 16000),
        wav_bytes(np.full(10, 0.5), 8000),
        wav_bytes(np.full(4, 0.5), 1),
        wav_bytes(np.full(4000, 0.5), 384_000),
        wav_bytes(np.full(1600, 0.5), 16000, channels=8),
        float_wav(NOISE * 1e30),
        wav_bytes(np.sign(NOISE), 16000),
    ],
    ids=["one sample", "ten samples", "1 Hz", "384 kHz", "8 channels", "1e30", "full scale"],
)
async def test_odd_but_finite_audio_is_never_a_server_error(
    http: httpx.AsyncClient, endpoint: str, audio: bytes
) -> None:
    body = multipart(*upload_fields(endpoint), audio_part(audio))
    response = await send(http, "POST", endpoint, content=body, headers=form_headers())
    assert_not_server_error(response)


# --- the limits of every upload endpoint ---------------------------------------------------------


@pytest.mark.parametrize("endpoint", UPLOAD_ENDPOINTS)
async def test_every_upload_endpoint_applies_the_body_limit(
    http: httpx.AsyncClient, endpoint: str
) -> None:
    noise = np.random.default_rng(0).uniform(-1, 1, MAX_UPLOAD_BYTES // 2 + 1000)
    body = multipart(*upload_fields(endpoint), audio_part(wav_bytes(noise, 16000)))
    response = await send(http, "POST", endpoint, content=body, headers=form_headers())
    assert_refused(response, 413, "file")

    async def chunks() -> AsyncIterator[bytes]:  # no Content-Length: counted as it arrives
        for start in range(0, len(body), 65536):
            yield body[start : start + 65536]

    response = await send(http, "POST", endpoint, content=chunks(), headers=form_headers())
    assert_refused(response, 413, "file")


@pytest.mark.parametrize("endpoint", UPLOAD_ENDPOINTS)
async def test_every_upload_endpoint_applies_the_duration_limit(
    http: httpx.AsyncClient, endpoint: str
) -> None:
    # 8 kHz keeps audio over the duration limit well under the body limit.
    seconds = MAX_AUDIO_SECONDS + 1
    tone = 0.3 * np.sin(2 * np.pi * 220 * np.arange(int(8000 * seconds)) / 8000)
    body = multipart(*upload_fields(endpoint), audio_part(wav_bytes(tone, 8000)))
    assert len(body) < MAX_UPLOAD_BYTES
    response = await send(http, "POST", endpoint, content=body, headers=form_headers())
    error = assert_refused(response, 413, "file")
    assert "limit" in error["message"]


@pytest.mark.parametrize("endpoint", ["/v1/audio/voices", "/v1/audio/embeddings"])
async def test_several_references_share_the_duration_limit(
    http: httpx.AsyncClient, endpoint: str
) -> None:
    # Each reference fits the limit; together they do not.
    half = speech_clip()
    parts = [audio_part(half), audio_part(half)]
    body = multipart(*upload_fields(endpoint), *parts)
    response = await send(http, "POST", endpoint, content=body, headers=form_headers())
    assert_refused(response, 413, "file")
