"""Run a batch: every line through its speech pipeline at batch priority, a file per line.

Lines run ``concurrency`` at a time, so the schedulers always have work to batch while the queues
stay bounded. Every item is queued at ``Priority.BATCH``, behind live requests' items in the same
schedulers, and batch items only take free queue room (``Scheduler.submit``). A line refused by a
full queue waits and is tried again until its deadline: a job whose lines outnumber the room
(or that shares it with live traffic) runs at the pace the queue drains. A line whose model is
unavailable (a replica restarting) is tried a few times. Any other error is recorded in the
manifest and the job goes on.
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from harmonyspeech.api.protocol import SpeechRequest
from harmonyspeech.audio import output_sample_rate
from harmonyspeech.batch.lines import BatchLine
from harmonyspeech.batch.manifest import SUMMARY_NAME, ManifestWriter, write_atomically
from harmonyspeech.engine.items import Priority
from harmonyspeech.errors import HarmonySpeechError, InternalError, ModelLoadError, OverloadedError
from harmonyspeech.pipelines.runtime import EngineRuntime
from harmonyspeech.pipelines.speech import encoded_file, retries
from harmonyspeech.pipelines.validation import request_score

logger = logging.getLogger(__name__)

MAX_BACKOFF_S = 30.0
"""Longest pause between two tries of a line."""


@dataclass(frozen=True)
class BatchOptions:
    """How a batch runs."""

    concurrency: int = 16
    """Lines in flight at once."""
    line_timeout_s: float | None = 900.0
    """Deadline of one line, its tries included (batch items wait behind live traffic)."""
    unavailable_attempts: int = 6
    """Tries of a line whose model keeps being unavailable before it is recorded as failed."""
    backoff_s: float = 1.0
    """First pause before trying a line again; doubled on each further one (at most 30 s)."""


@dataclass
class BatchSummary:
    """What a run did. ``skipped`` lines were already done by an earlier run."""

    lines: int = 0
    done: int = 0
    failed: int = 0
    skipped: int = 0
    audio_seconds: float = 0.0
    wall_seconds: float = 0.0
    errors: dict[str, int] = field(default_factory=dict)

    @property
    def lines_per_second(self) -> float:
        return (self.done + self.failed) / self.wall_seconds if self.wall_seconds else 0.0

    @property
    def audio_seconds_per_second(self) -> float:
        return self.audio_seconds / self.wall_seconds if self.wall_seconds else 0.0

    def to_dict(self) -> dict[str, Any]:
        return {
            **asdict(self),
            "audio_hours": self.audio_seconds / 3600,
            "lines_per_second": self.lines_per_second,
            "audio_seconds_per_second": self.audio_seconds_per_second,
        }

    def describe(self) -> str:
        return (
            f"{self.lines} lines: {self.done} done, {self.failed} failed, "
            f"{self.skipped} skipped (done before); "
            f"{self.audio_seconds / 3600:.3f} audio hours in {self.wall_seconds:.1f} s "
            f"({self.lines_per_second:.2f} lines/s, "
            f"{self.audio_seconds_per_second:.2f} audio-s/s)"
        )


Progress = Callable[[int], None]
"""Called with the number of lines just finished."""


async def run_batch(
    runtime: EngineRuntime,
    lines: list[BatchLine],
    out_dir: Path,
    options: BatchOptions = BatchOptions(),
    progress: Progress | None = None,
) -> BatchSummary:
    """Synthesise every line not already done into ``out_dir``; returns the run's summary."""
    manifest = ManifestWriter(out_dir)
    completed = manifest.resume()
    todo = [line for line in lines if line.id not in completed]
    summary = BatchSummary(lines=len(lines), skipped=len(lines) - len(todo))
    if progress is not None and summary.skipped:
        progress(summary.skipped)  # the bar counts every line of the input
    started = time.monotonic()
    queue: asyncio.Queue[BatchLine] = asyncio.Queue()
    for line in todo:
        queue.put_nowait(line)

    async def work() -> None:
        while not queue.empty():
            line = queue.get_nowait()
            record = await _run_line(runtime, line, out_dir, options)
            manifest.append(record)
            _count(summary, record)
            if progress is not None:
                progress(1)

    try:
        workers = max(1, min(options.concurrency, len(todo)))
        await asyncio.gather(*(work() for _ in range(workers)))
    finally:
        manifest.close()
        summary.wall_seconds = time.monotonic() - started
    write_atomically(out_dir / SUMMARY_NAME, _json_bytes(summary.to_dict()))
    return summary


def _count(summary: BatchSummary, record: dict[str, Any]) -> None:
    if record["status"] == "ok":
        summary.done += 1
        summary.audio_seconds += record["duration"]
    else:
        summary.failed += 1
        kind = record["error"]["type"]
        summary.errors[kind] = summary.errors.get(kind, 0) + 1


async def _run_line(
    runtime: EngineRuntime, line: BatchLine, out_dir: Path, options: BatchOptions
) -> dict[str, Any]:
    base = {"id": line.id, "line": line.number}
    try:
        if line.error is not None:
            raise line.error
        assert line.request is not None
        return {**base, **await _with_retries(runtime, line.request, line.id, out_dir, options)}
    except HarmonySpeechError as exc:
        return {**base, **_failed(exc, line.request)}
    except Exception as exc:
        logger.exception("line %d (%s) failed", line.number, line.id)
        return {**base, **_failed(InternalError(f"{type(exc).__name__}: {exc}"), line.request)}


def _failed(exc: HarmonySpeechError, request: SpeechRequest | None) -> dict[str, Any]:
    """A failed line's record: the same keys as a done one, with the OpenAI error object; what
    the line asked for (model, voice, format) when it could be read."""
    return {
        "status": "failed",
        "path": None,
        "model": request.model if request else None,
        "voice": request.voice_id if request else None,
        "format": request.response_format if request else None,
        "duration": None,
        "sample_rate": None,
        "bytes": None,
        "validation": None,
        "error": exc.to_envelope()["error"],
    }


async def _with_retries(
    runtime: EngineRuntime,
    request: SpeechRequest,
    line_id: str,
    out_dir: Path,
    options: BatchOptions,
) -> dict[str, Any]:
    clock = time.monotonic
    deadline = None if options.line_timeout_s is None else clock() + options.line_timeout_s
    pause, unavailable = options.backoff_s, 0
    while True:
        timeout_s = None if deadline is None else deadline - clock()
        try:
            return await synthesise_line(runtime, request, line_id, out_dir, timeout_s)
        except (OverloadedError, ModelLoadError) as exc:
            unavailable += isinstance(exc, ModelLoadError)
            out_of_time = deadline is not None and clock() + pause >= deadline
            if out_of_time or unavailable == options.unavailable_attempts:
                raise
            logger.info("%s: %s; trying again in %.0f s", line_id, exc.message, pause)
        await asyncio.sleep(pause)
        pause = min(pause * 2, MAX_BACKOFF_S)


async def synthesise_line(
    runtime: EngineRuntime,
    request: SpeechRequest,
    line_id: str,
    out_dir: Path,
    timeout_s: float | None,
) -> dict[str, Any]:
    """One request through its pipeline, written to ``out_dir/<id>.<format>``; its model work
    must end within ``timeout_s``."""
    request.check_input(runtime.config.server.limits.max_input_chars)
    pipeline = runtime.catalog.resolve(request.model, produces="speech")
    ctx = await runtime.speech_context(
        pipeline,
        request.synthesis_request(),
        timeout_s=timeout_s,
        priority=Priority.BATCH,
    )
    items = [item async for item in runtime.runner.stream(pipeline, ctx)]
    fmt = request.response_format
    data = await asyncio.to_thread(encoded_file, items, fmt)
    name = f"{line_id}.{fmt}"
    await asyncio.to_thread(write_atomically, out_dir / name, data)
    record: dict[str, Any] = {
        "status": "ok",
        "path": name,
        "model": pipeline.name,
        "voice": request.voice_id,
        "format": fmt,
        "duration": round(sum(item.audio.duration for item in items if item.audio), 3),
        "sample_rate": output_sample_rate(fmt),
        "bytes": len(data),
        "validation": None,
        "error": None,
    }
    score = request_score(item.score for item in items)
    if score is not None:
        record["validation"] = {
            "metric": score.metric,
            "score": round(score.rate, 4),
            "retries": retries(items),
            "transcript": score.transcript,
        }
    return record


def _json_bytes(document: dict[str, Any]) -> bytes:
    return (json.dumps(document, indent=2) + "\n").encode("utf-8")
