"""Synthetic MeloTTS inputs for tests."""

from __future__ import annotations

from typing import Any

import numpy as np

from harmonyspeech.models.melo import SynthesisItem

ENGLISH_LANGUAGE_ID = 2
ENGLISH_TONES = (7, 8, 9, 10)


def make_item(n_tokens: int, *, rng_seed: int = 0, **knobs: Any) -> SynthesisItem:
    """An English-like item: blank-interspersed phone ids, EN tones, 768-d BERT features."""
    rng = np.random.default_rng(rng_seed)
    phones = rng.integers(1, 219, n_tokens)
    phones[::2] = 0  # blanks, as add_blank produces
    tones = rng.choice(ENGLISH_TONES, n_tokens)
    tones[::2] = 0
    languages = np.full(n_tokens, ENGLISH_LANGUAGE_ID)
    languages[::2] = 0
    ja_bert = rng.normal(0.0, 0.5, (768, n_tokens)).astype(np.float32)
    knobs.setdefault("speaker_id", 0)
    return SynthesisItem(phones=phones, tones=tones, languages=languages, ja_bert=ja_bert, **knobs)


def max_abs_diff(a: np.ndarray, b: np.ndarray) -> float:
    """Largest elementwise difference of two equal-length waveforms."""
    assert a.shape == b.shape, f"lengths differ: {a.shape} vs {b.shape}"
    return float(np.abs(a - b).max())
