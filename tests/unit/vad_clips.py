"""The committed VAD clips and their ground truth (see tests/data/make_vad_clips.py)."""

from __future__ import annotations

import json
from functools import cache

import numpy as np

from harmonyspeech.audio import decode_audio
from tests.conftest import DATA

VAD_DIR = DATA / "vad"


@cache
def regions() -> dict[str, dict]:
    return json.loads((VAD_DIR / "regions.json").read_text())


def clip_bytes(name: str) -> bytes:
    return (VAD_DIR / f"{name}.flac").read_bytes()


@cache
def clip(name: str, rate: int = 16000) -> np.ndarray:
    return decode_audio(clip_bytes(name), sample_rate=rate).samples
