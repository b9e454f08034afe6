"""Out-of-vocabulary English G2P: g2p_en's pretrained GRU model, run with numpy.

MeloTTS sends every word that is not in its CMU dictionary to ``g2p_en.G2p()``. Importing
``g2p_en`` downloads nltk data, so this module never imports it: it reads the weights file the
``g2p_en`` wheel ships (``checkpoint20.npz``) and runs the same greedy encoder-decoder:

* graphemes ``<pad> <unk> </s> a..z``; the word's characters then ``</s>`` go through a GRU
  encoder (hidden 256, zero initial state);
* the decoder starts from ``<s>`` with the encoder's last state and emits the argmax phoneme
  each step, feeding it back, until ``</s>`` or 20 steps;
* GRU cells follow PyTorch's layout: stacked gates ``r, z, n`` and
  ``n = tanh(W_in x + b_in + r * (W_hn h + b_hn))``, ``h' = (1 - z) * n + z * h``.

``g2p_en_phonemes`` reproduces what ``G2p()(word)`` returns for a single word (minus the
POS-based homograph table, whose words are all in the CMU lexicon and never get here).
"""

from __future__ import annotations

import re
import unicodedata
from functools import lru_cache
from pathlib import Path

import numpy as np

from harmonyspeech.text import lexicon
from harmonyspeech.text.resources import Lazy, package_data_file

G2P_EN_WEIGHTS = ("g2p_en", "g2p_en/checkpoint20.npz")

GRAPHEMES = ("<pad>", "<unk>", "</s>", *"abcdefghijklmnopqrstuvwxyz")
VOWELS = ("AA", "AE", "AH", "AO", "AW", "AY", "EH", "ER", "EY", "IH", "IY", "OW", "OY", "UH", "UW")
"""ARPAbet vowels; they carry a stress digit 0-2."""
CONSONANTS = (
    "B", "CH", "D", "DH", "F", "G", "HH", "JH", "K", "L", "M", "N",
    "NG", "P", "R", "S", "SH", "T", "TH", "V", "W", "Y", "Z", "ZH",
)  # fmt: skip
# g2p_en's phoneme vocabulary, in its id order: four specials, then the sorted stressed set,
# which includes a bare "UW" (no stress digit) between UH2 and UW0.
PHONEMES = (
    "<pad>",
    "<unk>",
    "<s>",
    "</s>",
    *sorted([f"{v}{s}" for v in VOWELS for s in "012"] + [*CONSONANTS, "UW"]),
)
_START, _END, _UNK_GRAPHEME = 2, 3, 1
MAX_STEPS = 20

_CHAR_ID = {g: i for i, g in enumerate(GRAPHEMES)}
_KEEP = re.compile(r"[^ a-z'.,?!\-]")
# g2p_en tokenizes with nltk's TweetTokenizer; on the characters left after filtering that is:
# words (letters joined by ' or -), runs of dots, or any other single character.
_TOKEN = re.compile(r"[a-z](?:[a-z'\-]*[a-z])?|\.(?:\s*\.)+|\S")


class GruG2p:
    """The g2p_en encoder-decoder with weights from a ``checkpoint20.npz`` file."""

    def __init__(self, weights: dict[str, np.ndarray]):
        w = {k: np.asarray(v, dtype=np.float32) for k, v in weights.items()}
        if w["dec_emb"].shape[0] != len(PHONEMES) or w["enc_emb"].shape[0] != len(GRAPHEMES):
            raise ValueError("the G2P weights do not match g2p_en's grapheme/phoneme vocabularies")
        self._w = w
        # Inputs are always embedding rows, so their gate projections can be tabulated once:
        # one [vocab, 3H] table per GRU instead of a matmul per step.
        self._gates_in = {
            p: w[f"{p}_emb"] @ w[f"{p}_w_ih"].T + w[f"{p}_b_ih"] for p in ("enc", "dec")
        }

    @classmethod
    def from_file(cls, path: str | Path) -> GruG2p:
        """Load the weights from an ``.npz`` file."""
        with np.load(path) as data:
            return cls({k: data[k] for k in data.files})

    def _cell(self, prefix: str, symbol: int, h: np.ndarray) -> np.ndarray:
        gi = self._gates_in[prefix][symbol]
        gh = self._w[f"{prefix}_w_hh"] @ h + self._w[f"{prefix}_b_hh"]
        size = h.shape[0]
        r = _sigmoid(gi[:size] + gh[:size])
        z = _sigmoid(gi[size : 2 * size] + gh[size : 2 * size])
        n = np.tanh(gi[2 * size :] + r * gh[2 * size :])
        return (1.0 - z) * n + z * h

    def predict(self, word: str) -> list[str]:
        """ARPAbet phonemes for a lowercase word (characters outside a-z count as ``<unk>``)."""
        ids = [_CHAR_ID.get(c, _UNK_GRAPHEME) for c in word] + [_CHAR_ID["</s>"]]
        h = np.zeros(self._w["enc_w_hh"].shape[1], dtype=np.float32)
        for i in ids:
            h = self._cell("enc", i, h)
        out: list[str] = []
        prev = _START
        for _ in range(MAX_STEPS):
            h = self._cell("dec", prev, h)
            prev = int(np.argmax(self._w["fc_w"] @ h + self._w["fc_b"]))
            if prev == _END:
                break
            out.append(PHONEMES[prev])
        return out


def _sigmoid(x: np.ndarray) -> np.ndarray:
    return 1.0 / (1.0 + np.exp(-x))


_MODEL: Lazy[GruG2p] = Lazy(lambda: GruG2p.from_file(package_data_file(*G2P_EN_WEIGHTS)))


def gru_g2p() -> GruG2p:
    """The process-wide model (loaded on first use)."""
    return _MODEL.get()


def preprocess(text: str) -> str:
    """g2p_en's text clean-up: strip accents, lowercase, keep only ``[ a-z'.,?!-]``.

    (g2p_en also spells out digits first; the English normaliser has already done that.)
    """
    decomposed = unicodedata.normalize("NFD", text)
    text = "".join(c for c in decomposed if unicodedata.category(c) != "Mn").lower()
    text = _KEEP.sub("", text)
    return text.replace("i.e.", "that is").replace("e.g.", "for example")


@lru_cache(maxsize=4096)
def _word_phonemes(token: str) -> tuple[str, ...]:
    if not re.search("[a-z]", token):
        return (token,)  # punctuation passes through as itself
    known = lexicon.lookup(token.upper())
    return tuple(known if known is not None else gru_g2p().predict(token))


def clear_cache() -> None:
    """Forget memoised word pronunciations (for benchmarks)."""
    _word_phonemes.cache_clear()


def g2p_en_phonemes(text: str) -> list[str]:
    """What ``g2p_en.G2p()(text)`` returns, without the word-separator ``" "`` entries.

    Each token is punctuation (kept as is), a CMU lexicon word, or predicted by the GRU.
    """
    phones: list[str] = []
    for token in _TOKEN.findall(preprocess(text)):
        phones.extend(_word_phonemes(token))
    return phones
