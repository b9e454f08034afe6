"""Batch input lines and the resumable output directory."""

from __future__ import annotations

import json
from pathlib import Path

from harmonyspeech.batch.lines import parse_lines, read_lines
from harmonyspeech.batch.manifest import (
    MANIFEST_NAME,
    ManifestWriter,
    read_manifest,
    write_atomically,
)


def _parse(*texts: str, **defaults: object):
    return parse_lines(enumerate(texts, start=1), defaults)


def _line(**fields: object) -> str:
    return json.dumps({"input": "Hello.", "voice": "alloy", "model": "tts-1", **fields})


def test_lines_become_speech_requests_with_defaults_filled_in() -> None:
    first, second = _parse(
        json.dumps({"id": "a", "input": "One."}),
        json.dumps({"id": 7, "input": "Two.", "voice": "echo", "response_format": "wav"}),
        model="tts-1",
        voice="alloy",
    )
    assert (first.id, first.request.voice_id, first.request.model) == ("a", "alloy", "tts-1")
    assert first.request.response_format == "mp3"
    assert (second.id, second.request.voice_id, second.request.response_format) == (
        "7",
        "echo",
        "wav",
    )
    assert first.error is None and second.error is None


def test_blank_lines_are_skipped_and_lines_without_id_are_named_by_number() -> None:
    lines = _parse("", _line(), "   ", _line())
    assert [(line.number, line.id) for line in lines] == [(2, "line-2"), (4, "line-4")]


def test_unreadable_lines_carry_their_error() -> None:
    lines = _parse(
        "{not json",
        "[1, 2]",
        _line(id="../etc/passwd"),
        _line(id="ok", speed=9),
        _line(id="ends-in-a-newline\n"),
        json.dumps({"id": "no-voice", "input": "x", "model": "tts-1"}),
        _line(id="text-speed", speed="fast"),
    )
    messages = {line.id: (line.error.message, line.error.param) for line in lines}
    assert len(messages) == 7
    assert messages["line-1"][0].startswith("not JSON")
    assert messages["line-2"][0] == "not a JSON object"
    assert "names the file" in messages["line-3"][0] and messages["line-3"][1] == "id"
    assert "names the file" in messages["line-5"][0]
    assert messages["ok"][1] == "speed"
    assert messages["no-voice"] == ("voice: field required", "voice")
    # The same words as the HTTP API's 400 for that body.
    assert messages["text-speed"] == ("speed: must be a number", "speed")
    assert all(line.request is None for line in lines)


def test_a_line_that_is_not_utf8_fails_alone_and_a_bom_is_ignored(tmp_path: Path) -> None:
    path = tmp_path / "in.jsonl"
    good = _line(id="after").encode()
    path.write_bytes(b"\xef\xbb\xbf" + _line(id="first").encode() + b"\n\xff\xfe bad\n" + good)
    first, bad, after = read_lines(path)
    assert first.id == "first" and first.error is None
    assert bad.id == "line-2" and bad.error.message.startswith("not UTF-8 text")
    assert after.id == "after" and after.error is None


def test_ids_of_lines_without_one_are_kept_for_them() -> None:
    # Line 1 may not take line 2's automatic id: the manifest would hold it twice.
    first, second, third = _parse(_line(id="line-2"), _line(), _line(id="line-3"))
    assert first.id == "line-1" and "kept for the line" in first.error.message
    assert second.id == "line-2" and second.error is None
    assert third.id == "line-3" and third.error is None


def test_a_duplicate_id_fails_the_later_line_under_its_line_number() -> None:
    first, second = _parse(_line(id="same"), _line(id="same"))
    assert first.error is None
    assert second.id == "line-2"
    assert second.error.message == "duplicate id 'same' (first on line 1)"


def _record(line_id: str, status: str = "ok", path: str | None = None) -> dict:
    return {"id": line_id, "status": status, "path": path or f"{line_id}.wav"}


def test_resume_keeps_completed_lines_whose_audio_exists(tmp_path: Path) -> None:
    (tmp_path / "a.wav").write_bytes(b"a")
    (tmp_path / "c.wav").write_bytes(b"c")
    (tmp_path / ".partial-d.wav").write_bytes(b"half")
    lines = [
        _record("a"),
        _record("b"),  # its file is gone: done again
        _record("c", status="failed"),  # failed lines are tried again
    ]
    text = "".join(json.dumps(r) + "\n" for r in lines) + '{"id": "torn", "sta'
    (tmp_path / MANIFEST_NAME).write_text(text)

    writer = ManifestWriter(tmp_path)
    done = writer.resume()
    writer.append(_record("b"))
    writer.close()

    assert list(done) == ["a"]
    assert [r["id"] for r in read_manifest(tmp_path)] == ["a", "b"]
    assert not list(tmp_path.glob(".partial-*"))


def test_resume_of_a_new_directory_creates_it(tmp_path: Path) -> None:
    writer = ManifestWriter(tmp_path / "new" / "out")
    assert writer.resume() == {}
    writer.close()
    assert (tmp_path / "new" / "out" / MANIFEST_NAME).read_text() == ""


def test_atomic_write_leaves_only_the_complete_file(tmp_path: Path) -> None:
    target = tmp_path / "x.mp3"
    target.write_bytes(b"old")
    write_atomically(target, b"new content")
    assert target.read_bytes() == b"new content"
    assert [p.name for p in tmp_path.iterdir()] == ["x.mp3"]
