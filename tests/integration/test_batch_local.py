"""``harmonyspeech batch run`` with the models in-process (no Ray), on the tiny real models."""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

import pytest

from harmonyspeech.audio import decode_audio
from harmonyspeech.batch.command import models_used, wait_ready
from harmonyspeech.batch.job import BatchOptions, run_batch
from harmonyspeech.batch.lines import parse_lines
from harmonyspeech.cli import main
from harmonyspeech.config import load_config
from harmonyspeech.engine.client import LocalModelClient
from harmonyspeech.engine.items import Priority
from harmonyspeech.errors import ModelLoadError
from harmonyspeech.pipelines.runtime import EngineRuntime, LocalEngine
from tests.conftest import TinyWeights, served_config, served_config_data, write_config


def _manifest(out: Path) -> dict[str, dict[str, Any]]:
    records = [json.loads(line) for line in (out / "manifest.jsonl").read_text().splitlines()]
    by_id = {record["id"]: record for record in records}
    assert len(by_id) == len(records), "a manifest never holds an id twice"
    return by_id


def _input(path: Path) -> Path:
    lines = [
        {"id": "plain", "input": "Plain speech. Two sentences.", "voice": "alloy"},
        {"id": "checked", "input": "Checked speech.", "model": "tts-validated", "voice": "echo"},
        {"id": "flac", "input": "A flac file.", "voice": "nova", "response_format": "flac"},
        {"id": "pcm", "input": "Raw samples.", "voice": "alloy", "response_format": "pcm"},
        {"id": "bad-voice", "input": "Nobody.", "voice": "nobody"},
        {"id": "too-fast", "input": "Fast.", "voice": "alloy", "speed": 12},
        {"id": "empty", "input": "   ", "voice": "alloy"},
        {"id": "no-such-model", "input": "Hi.", "voice": "alloy", "model": "nope"},
    ]
    path.write_text("\n".join(json.dumps(line) for line in lines) + "\n{broken\n")
    return path


def test_batch_run_writes_audio_and_a_manifest_then_resumes(
    tmp_path: Path, tiny_weights: TinyWeights, capsys: pytest.CaptureFixture[str]
) -> None:
    config = write_config(tmp_path / "engine.yaml", served_config_data(tiny_weights))
    source, out = _input(tmp_path / "in.jsonl"), tmp_path / "out"
    command = ["batch", "run", str(source), "--out", str(out), "--config", str(config)]
    command += ["--model", "tts-1", "--response-format", "wav", "--no-progress"]

    assert main(command) == 0
    records = _manifest(out)
    assert {k for k, r in records.items() if r["status"] == "ok"} == {
        "plain", "checked", "flac", "pcm"
    }  # fmt: skip
    for name in ("plain", "checked", "flac"):
        record = records[name]
        audio = decode_audio((out / record["path"]).read_bytes(), sample_rate=24000)
        assert abs(audio.duration - record["duration"]) < 0.03
        assert record["sample_rate"] == 24000
    assert records["flac"]["path"] == "flac.flac" and records["plain"]["path"] == "plain.wav"
    pcm_seconds = (out / "pcm.pcm").stat().st_size / 2 / 24000  # s16le mono at 24 kHz
    assert abs(pcm_seconds - records["pcm"]["duration"]) < 0.002
    assert records["checked"]["validation"]["metric"] == "wer"
    assert records["plain"]["validation"] is None
    errors = {k: r["error"] for k, r in records.items() if r["status"] == "failed"}
    assert all(record.keys() == records["plain"].keys() for record in records.values())
    assert (records["bad-voice"]["voice"], records["bad-voice"]["format"]) == ("nobody", "wav")
    assert records["line-9"]["voice"] is None  # unreadable: nothing to report
    assert errors["bad-voice"]["param"] == "voice"
    assert errors["too-fast"]["param"] == "speed"
    assert errors["empty"]["message"] == "input is empty"
    assert errors["no-such-model"]["type"] == "invalid_request_error"
    assert errors["line-9"]["message"].startswith("not JSON")
    assert "9 lines: 4 done, 5 failed, 0 skipped" in capsys.readouterr().out

    # A job killed mid-way: a torn manifest line, a half-written file, audio of a line that was
    # never recorded, and a recorded line whose file was lost.
    (out / "flac.flac").unlink()
    with (out / "manifest.jsonl").open("a") as manifest:
        manifest.write('{"id": "pl')
    (out / ".partial-plain.wav").write_bytes(b"RIFF")
    kept = (out / "plain.wav").stat().st_mtime_ns

    assert main(command) == 0
    again = _manifest(out)
    assert set(again) == set(records)
    assert again["flac"]["status"] == "ok" and (out / "flac.flac").exists()
    assert (out / "plain.wav").stat().st_mtime_ns == kept, "done lines are not redone"
    assert not list(out.glob(".partial-*"))
    assert "9 lines: 1 done, 5 failed, 3 skipped" in capsys.readouterr().out
    summary = json.loads((out / "summary.json").read_text())
    assert (summary["done"], summary["failed"], summary["skipped"]) == (1, 5, 3)


class PrioritySpy:
    """The real local client, noting the priority of every call."""

    def __init__(self, client: LocalModelClient):
        self.client, self.priorities = client, []

    async def infer(
        self, payload: Any, *, priority: Priority, timeout_s: float | None, admitted: bool = False
    ) -> Any:
        self.priorities.append(priority)
        return await self.client.infer(
            payload, priority=priority, timeout_s=timeout_s, admitted=admitted
        )

    async def status(self) -> dict[str, Any]:
        return await self.client.status()


async def test_batch_lines_queue_behind_live_traffic(
    tmp_path: Path, tiny_weights: TinyWeights
) -> None:
    with LocalEngine(served_config(tiny_weights)) as engine:
        spies = {n: PrioritySpy(LocalModelClient(w)) for n, w in engine.workers.items()}
        runtime = EngineRuntime(engine.config, spies)
        text = json.dumps({"input": "One. Two. Three.", "voice": "alloy", "model": "tts-validated"})
        lines = parse_lines([(1, text)], {})
        summary = await run_batch(runtime, lines, tmp_path, BatchOptions(concurrency=2))
    assert summary.done == 1
    calls = spies["melo-en"].priorities + spies["whisper"].priorities
    assert spies["melo-en"].priorities and spies["whisper"].priorities
    assert set(calls) == {Priority.BATCH}


async def test_lines_refused_by_a_full_queue_wait_their_turn(
    tmp_path: Path, tiny_weights: TinyWeights
) -> None:
    # Six lines of three sentence items each against a queue of four: most lines are refused
    # at first, and must wait for room rather than fail (the job itself filled the queue).
    data = served_config_data(tiny_weights)
    for model in data["models"]:
        if model["name"] == "melo-en":
            model["batching"]["max_queue"] = 4
    text = " ".join(f"Part {k} {'goes on ' * 35}to its end." for k in range(3))
    body = {"input": text, "voice": "alloy", "model": "tts-1", "response_format": "pcm"}
    lines = parse_lines([(i, json.dumps({"id": f"l{i}", **body})) for i in range(1, 7)], {})
    options = BatchOptions(concurrency=6, unavailable_attempts=1, backoff_s=0.2)
    with LocalEngine(load_config(data)) as engine:
        summary = await run_batch(engine.runtime, lines, tmp_path, options)
        stats = engine.workers["melo-en"].stats.snapshot()
    assert (summary.done, summary.failed) == (6, 0)
    # Each of the 18 sentences ran; one of a refused line may have been running already when
    # its line was refused, and runs again when the line is tried again.
    assert stats["items"] >= 18 and stats["max_queue_depth"] <= 4
    assert stats["cancelled"] > 0, "no line was refused: the test did not fill the queue"


async def test_a_job_waits_only_for_the_models_its_lines_use_and_not_for_a_failed_one(
    tmp_path: Path, tiny_weights: TinyWeights
) -> None:
    data = served_config_data(tiny_weights)
    for model in data["models"]:
        if model["family"] == "faster-whisper":
            model["weights"] = {"path": str(tmp_path / "no-such-whisper")}
    engine = LocalEngine(load_config(data)).start(wait=False)
    try:
        runtime = engine.runtime
        plain = parse_lines(
            [(1, json.dumps({"input": "Hi.", "voice": "alloy"}))], {"model": "tts-1"}
        )
        checked = parse_lines(
            [(1, json.dumps({"input": "Hi.", "voice": "alloy", "model": "tts-validated"}))], {}
        )
        assert models_used(runtime, plain) == {"melo-en", "openvoice"}
        # Whisper failed to load, but tts-1 lines never use it.
        await wait_ready(runtime, 120, models_used(runtime, plain))
        started = time.monotonic()
        with pytest.raises(ModelLoadError, match="whisper: ") as info:
            await wait_ready(runtime, 120, models_used(runtime, checked))
        assert time.monotonic() - started < 30, "a failed model is reported at once"
        assert "no-such-whisper" in info.value.message
    finally:
        engine.stop()


def test_a_local_job_whose_lines_need_a_model_that_failed_to_load_stops_at_once(
    tmp_path: Path, tiny_weights: TinyWeights, capsys: pytest.CaptureFixture[str]
) -> None:
    # It used to try each line six times over 31 s of backoff, a failure record each.
    data = served_config_data(tiny_weights)
    for model in data["models"]:
        if model["family"] == "faster-whisper":
            model["weights"] = {"path": str(tmp_path / "no-such-whisper")}
    config = write_config(tmp_path / "engine.yaml", data)
    source, out = tmp_path / "in.jsonl", tmp_path / "out"
    line = {"input": "Hi.", "voice": "alloy", "model": "tts-validated"}
    source.write_text("\n".join(json.dumps({**line, "id": f"l{n}"}) for n in range(3)) + "\n")
    command = ["batch", "run", str(source), "--out", str(out), "--config", str(config)]
    started = time.monotonic()
    assert main([*command, "--no-progress"]) == 1
    assert time.monotonic() - started < 60
    error = capsys.readouterr().err
    assert "a model the batch needs failed to load: whisper: " in error
    assert not (out / "manifest.jsonl").exists() or _manifest(out) == {}


def test_batch_run_explains_a_dashboard_url_given_as_its_address(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    source = tmp_path / "in.jsonl"
    source.write_text(json.dumps({"input": "Hi.", "voice": "alloy"}) + "\n")
    command = ["batch", "run", str(source), "--out", str(tmp_path / "out")]
    assert main([*command, "--address", "http://127.0.0.1:8265"]) == 2
    error = capsys.readouterr().err
    assert error.startswith("invalid arguments") and "GCS address" in error
    assert main(["batch", "run", str(tmp_path / "missing.jsonl"), "--out", "o"]) == 2
    assert "invalid arguments\ninput: no such file" in capsys.readouterr().err
