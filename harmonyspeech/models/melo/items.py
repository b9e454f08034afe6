"""The unit of work of the MeloTTS synthesizer: one sentence, already turned into ids.

No torch import, so pipelines and adapters can build items without loading the network.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

BERT_CHANNELS = 1024
"""Width of the ``bert`` input (chinese-roberta-wwm-ext-large; all zeros for released models)."""

JA_BERT_CHANNELS = 768
"""Width of the ``ja_bert`` input, which carries the 768-d BERT of every released language."""


@dataclass(frozen=True, kw_only=True)
class SynthesisItem:
    """One sentence to synthesise, as the frontend produces it (blanks already interspersed).

    Attributes:
        phones: int64 ``[T]`` symbol ids from the checkpoint's ``config.json`` symbol table.
        tones: int64 ``[T]`` tone ids (language tone offset already added).
        languages: int64 ``[T]`` language ids.
        speaker_id: Row of the speaker table (``spk2id[name]``).
        bert: float32 ``[1024, T]`` features, or None for zeros (what every released model uses).
        ja_bert: float32 ``[768, T]`` BERT features expanded per phone, or None for zeros.
        sdp_ratio: Weight of the stochastic duration predictor, 0..1 (upstream default 0.2).
        noise_scale: Scale of the prior noise, >= 0 (0.6).
        noise_scale_w: Scale of the duration noise, >= 0 (0.8).
        length_scale: Duration multiplier, > 0; ``1 / speed`` (1.0).
        seed: Seed of this item's noise; None draws a fresh one. With a seed, the waveform is the
            same whatever batch the item runs in.
    """

    phones: np.ndarray
    tones: np.ndarray
    languages: np.ndarray
    speaker_id: int
    bert: np.ndarray | None = None
    ja_bert: np.ndarray | None = None
    sdp_ratio: float = 0.2
    noise_scale: float = 0.6
    noise_scale_w: float = 0.8
    length_scale: float = 1.0
    seed: int | None = None

    @property
    def n_tokens(self) -> int:
        """Number of tokens ``T``."""
        return int(np.shape(self.phones)[0]) if np.ndim(self.phones) else 0
