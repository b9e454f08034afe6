"""The faster-whisper adapter on a toy random Whisper built offline by the fixture."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from harmonyspeech.config import FasterWhisperModelConfig
from harmonyspeech.errors import InvalidRequestError, ModelLoadError
from harmonyspeech.models import whisper_fixtures as fixtures
from harmonyspeech.models.faster_whisper import FasterWhisperAdapter
from harmonyspeech.models.types import TranscribeWindow, WindowTranscript
from tests.unit.vad_clips import clip


@pytest.fixture(scope="module")
def toy_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return fixtures.build_whisper_model(tmp_path_factory.mktemp("whisper") / "toy", size="toy")


def make_adapter(path: Path | None, **weights: object) -> FasterWhisperAdapter:
    config = FasterWhisperModelConfig(
        name="whisper",
        family="faster-whisper",
        num_threads=1,
        weights={"path": str(path) if path else None, **weights},
        options={"compute_type": "float32", "beam_size": 1, "max_new_tokens": 16},
    )
    return FasterWhisperAdapter(config)


@pytest.fixture(scope="module")
def adapter(toy_dir: Path) -> FasterWhisperAdapter:
    whisper = make_adapter(toy_dir)
    whisper.load()
    return whisper


def essentials(result: WindowTranscript) -> list[tuple]:
    """Everything but the float scores, which may differ in the last bits across batch sizes."""
    return [
        (s.start, s.end, s.text, s.tokens, [(w.word, w.start, w.end) for w in s.words])
        for s in result.segments
    ]


def test_fixture_has_whispers_vocabulary_layout(toy_dir: Path) -> None:
    vocabulary = json.loads((toy_dir / "vocabulary.json").read_text())
    assert len(vocabulary) == fixtures.VOCAB_SIZE
    assert vocabulary[fixtures.TEXT_VOCAB - 1] == ""
    assert vocabulary[fixtures.EOT] == "<|endoftext|>"
    assert vocabulary[fixtures.SOT + 1] == "<|en|>"
    assert vocabulary[fixtures.NO_TIMESTAMPS] == "<|notimestamps|>"
    assert vocabulary[-1] == "<|30.00|>"


def test_loads_as_a_multilingual_model(adapter: FasterWhisperAdapter) -> None:
    info = adapter.describe()
    assert info["multilingual"] is True and info["random_weights"] is False


def test_batched_windows_equal_single_windows(adapter: FasterWhisperAdapter) -> None:
    windows = [
        TranscribeWindow(clip("two_phrases"), language="en", word_timestamps=True),
        TranscribeWindow(clip("distractors"), offset=30.0),
        TranscribeWindow(clip("short"), task="translate", language="de", prompt="hello there"),
        TranscribeWindow(clip("short")[:8000], offset=61.5, language="en"),
    ]
    together = adapter.infer_batch(windows)
    for window, batched in zip(windows, together, strict=True):
        [alone] = adapter.infer_batch([window])
        assert batched.language == alone.language
        assert essentials(batched) == essentials(alone)
        for a, b in zip(batched.segments, alone.segments, strict=True):
            assert a.avg_logprob == pytest.approx(b.avg_logprob, abs=1e-5)


def test_times_are_absolute_and_inside_the_window(adapter: FasterWhisperAdapter) -> None:
    audio = clip("short")
    [result] = adapter.infer_batch([TranscribeWindow(audio, offset=100.0, language="en")])
    end = 100.0 + len(audio) / 16000
    assert result.segments
    for segment in result.segments:
        assert 100.0 <= segment.start <= segment.end <= end
        assert segment.seek == 10000  # the window's start in 10 ms frames


def test_detects_a_language_when_none_is_given(adapter: FasterWhisperAdapter) -> None:
    [result] = adapter.infer_batch([TranscribeWindow(clip("short"))])
    assert result.language in adapter._whisper.supported_languages


def test_bad_items_fail_alone(adapter: FasterWhisperAdapter) -> None:
    good, empty, language, task = adapter.infer_batch(
        [
            TranscribeWindow(clip("short"), language="en"),
            TranscribeWindow(np.zeros(0, np.float32)),
            TranscribeWindow(clip("short"), language="klingon"),
            TranscribeWindow(clip("short"), task="summarise"),
        ]
    )
    assert isinstance(good, WindowTranscript)
    assert all(isinstance(r, InvalidRequestError) for r in (empty, language, task))
    assert language.param == "language"


def test_missing_weights_offline_is_a_load_error(tmp_path: Path, monkeypatch) -> None:
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("HF_HOME", str(tmp_path / "hf"))
    with pytest.raises(ModelLoadError, match="allow_random"):
        make_adapter(None).load()
    with pytest.raises(ModelLoadError, match="not a CTranslate2 Whisper directory"):
        make_adapter(tmp_path).load()


def test_random_weights_when_allowed(tmp_path: Path, monkeypatch) -> None:
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("HF_HOME", str(tmp_path / "hf"))
    monkeypatch.setattr("harmonyspeech.models.faster_whisper.RANDOM_CACHE", tmp_path / "cache")
    config = FasterWhisperModelConfig(
        name="demo",
        family="faster-whisper",
        weights={"allow_random": True},
        options={"random_size": "toy", "max_new_tokens": 4, "beam_size": 1},
    )
    demo = FasterWhisperAdapter(config)
    demo.load()
    assert demo.describe()["random_weights"] is True
    assert (tmp_path / "cache" / "whisper-toy" / "model.bin").is_file()
