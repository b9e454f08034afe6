"""The English frontend of MeloTTS (EN, EN_V2, EN_NEWEST): text to phones, tones and word2ph.

Pipeline, as upstream (spec §3.2):

1. split camelCase, then normalise (``en_normalize``);
2. tokenize the normalised text with BERT's WordPiece tokenizer and group the pieces into
   words (a piece starting with ``#`` joins the previous word, ``#`` removed);
3. each word: CMU lexicon lookup of ``word.upper()``, else g2p_en (``neural_g2p``);
4. ARPAbet phone → (lowercase phone, stress digit + 1), other items keep tone 0; the word's
   phones are spread over its pieces (``distribute_phone``);
5. ``post_replace_ph``: full-width punctuation → ASCII, ``v`` → ``V``, unknown → ``UNK``;
6. ``_`` at both ends, word2ph 1 for ``[CLS]`` and ``[SEP]``.

Faithful quirks: contractions split at the apostrophe and their tail is spelled
(``don't`` → ``d aa n ' t iy``); "US" is the word "us"; a ``[UNK]`` piece (emoji, rare symbols)
goes to g2p_en, which reads it as the word "unk" (``drop_unknown_tokens=True`` silences it
instead); characters such as ``; : " /`` give no phones. The one crash upstream has, a text whose
first piece starts with ``#``, starts a new word here instead.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass

from harmonyspeech.errors import InvalidRequestError
from harmonyspeech.text import lexicon
from harmonyspeech.text.en_normalize import normalize_english, split_camel_case
from harmonyspeech.text.neural_g2p import CONSONANTS, VOWELS, g2p_en_phonemes
from harmonyspeech.text.sentences import MAX_LENGTH, txtsplit
from harmonyspeech.text.sequence import TONE_START
from harmonyspeech.text.tokenizer import BertTokenizerLike

# MeloTTS's ``arpa`` set: g2p_en output outside it (punctuation, the bare "UW" its model can emit,
# specials) is kept verbatim with tone 0, so "UW" ends up as UNK. Its bare "ER" and "IH" are odd
# but harmless.
ARPABET = frozenset([f"{v}{s}" for v in VOWELS for s in "012"] + [*CONSONANTS, "ER", "IH"])

_PHONE_REPLACEMENTS = {
    "：": ",",
    "；": ",",
    "，": ",",
    "。": ".",
    "！": "!",
    "？": "?",
    "\n": ".",
    "·": ",",
    "、": ",",
    "...": "…",
    "v": "V",
}
_STRESS = re.compile(r"^(.*?)([0-9])$")
PAD = "_"
UNKNOWN = "UNK"


@dataclass(frozen=True)
class EnglishFrontendOutput:
    """One sentence through the English frontend.

    Attributes:
        normalized_text: The text after camelCase splitting and normalisation; BERT reads it.
        tokens: BERT WordPieces, without ``[CLS]``/``[SEP]``.
        phones: Symbols with the ``_`` pads, before blanks are interspersed.
        tones: Absolute tone ids (EN offset 7 included, pads and punctuation too), per phone.
        word2ph: Phones per BERT token, ``[CLS]`` and ``[SEP]`` included (1 each).
        token_ids: BERT input ids with ``[CLS]``/``[SEP]``; ``len(token_ids) == len(word2ph)``.
        language: The frontend language, which picks the language id in ``to_sequence``.
    """

    normalized_text: str
    tokens: tuple[str, ...]
    phones: tuple[str, ...]
    tones: tuple[int, ...]
    word2ph: tuple[int, ...]
    token_ids: tuple[int, ...]
    language: str = "EN"


def refine_phone(phone: str) -> tuple[str, int]:
    """``"OW1"`` → ``("ow", 2)``: the stress digit plus one is the tone; no digit is tone 0."""
    match = _STRESS.match(phone)
    if match:
        return match[1].lower(), int(match[2]) + 1
    return phone.lower(), 0


def word_phones(word: str) -> list[tuple[str, int]]:
    """(phone, tone) pairs of one grouped word, tones relative (0–3)."""
    known = lexicon.lookup(word.upper())
    if known is not None:
        return [refine_phone(p) for p in known]
    return [refine_phone(p) if p in ARPABET else (p, 0) for p in g2p_en_phonemes(word)]


def distribute_phone(n_phone: int, n_word: int) -> list[int]:
    """Spread ``n_phone`` phones over ``n_word`` pieces, each to the least-loaded (first) one."""
    counts = [0] * n_word
    for _ in range(n_phone):
        counts[counts.index(min(counts))] += 1
    return counts


def post_replace_phone(phone: str, symbols: frozenset[str] | set[str]) -> str:
    """Map full-width punctuation to ASCII, ``...`` to ``…``, ``v`` to ``V``; unknown → ``UNK``."""
    phone = _PHONE_REPLACEMENTS.get(phone, phone)
    return phone if phone in symbols else UNKNOWN


def group_wordpieces(tokens: Sequence[str]) -> list[list[str]]:
    """Group WordPieces into words: a piece starting with ``#`` joins the previous word.

    Pieces keep their position (one entry per token); ``#`` characters are removed from
    joining pieces, so a literal ``#`` token joins the word before it as an empty piece.
    """
    groups: list[list[str]] = []
    for token in tokens:
        if not token.startswith("#"):
            groups.append([token])
        elif groups:
            groups[-1].append(token.replace("#", ""))
        else:  # nothing to join (upstream crashes here): start the first word
            groups.append([token.replace("#", "")])
    return groups


class EnglishFrontend:
    """Text → ``EnglishFrontendOutput`` for one MeloTTS English checkpoint.

    Thread-safe: shared data (lexicon, G2P weights) is read-only after its first load.

    Args:
        tokenizer: The BERT tokenizer of the checkpoint's BERT (``bert-base-uncased``).
        symbols: The checkpoint's symbol list (``config.json`` ``symbols``).
        drop_unknown_tokens: Give ``[UNK]`` pieces no phones instead of upstream's reading of
            them as the word "unk".
    """

    def __init__(
        self,
        tokenizer: BertTokenizerLike,
        symbols: Sequence[str],
        *,
        drop_unknown_tokens: bool = False,
    ):
        self.tokenizer = tokenizer
        self.symbols = frozenset(symbols)
        self.drop_unknown_tokens = drop_unknown_tokens
        self.tone_start = TONE_START["EN"]

    def __call__(self, text: str) -> EnglishFrontendOutput:
        """Run the frontend on one sentence (a chunk from ``split_sentences_latin``).

        Raises:
            InvalidRequestError: The text is empty or only whitespace.
        """
        _require_text(text)
        return self._from_normalized(normalize_english(split_camel_case(text)))

    def pieces(self, text: str, max_chars: int = MAX_LENGTH) -> list[EnglishFrontendOutput]:
        """Like calling the frontend, but cut into several outputs when normalisation spells
        the text out past ``max_chars`` characters.

        Sentence splitting runs on the raw text, so a chunk can still grow a lot: 512 digits
        without a split point become 512 words, minutes of audio in one item. Such a chunk is
        cut again, after normalisation, the way sentences are (``txtsplit``).

        Raises:
            InvalidRequestError: The text is empty or only whitespace.
        """
        _require_text(text)
        normalized = normalize_english(split_camel_case(text))
        if len(normalized) <= max_chars:
            return [self._from_normalized(normalized)]
        chunks = txtsplit(normalized, desired_length=max_chars // 2, max_length=max_chars)
        # Only punctuation (txtsplit drops it) still makes one output, as a call would.
        return [self._from_normalized(chunk) for chunk in chunks or [normalized]]

    def _from_normalized(self, normalized: str) -> EnglishFrontendOutput:
        tokens = self.tokenizer.tokenize(normalized)
        phones, tones, word2ph = self.phonemize(tokens)
        ids = self.tokenizer.convert_tokens_to_ids(tokens)
        return EnglishFrontendOutput(
            normalized_text=normalized,
            tokens=tuple(tokens),
            phones=(PAD, *phones, PAD),
            tones=tuple(t + self.tone_start for t in (0, *tones, 0)),
            word2ph=(1, *word2ph, 1),
            token_ids=(self.tokenizer.cls_token_id, *ids, self.tokenizer.sep_token_id),
        )

    def phonemize(self, tokens: Sequence[str]) -> tuple[list[str], list[int], list[int]]:
        """G2P of WordPieces: phones, relative tones (0–3) and word2ph, without pads."""
        phones: list[str] = []
        tones: list[int] = []
        word2ph: list[int] = []
        for group in group_wordpieces(tokens):
            word = "".join(group)
            silent = self.drop_unknown_tokens and word == self.tokenizer.unk_token
            pairs = [] if silent else word_phones(word)
            phones += [post_replace_phone(p, self.symbols) for p, _ in pairs]
            tones += [t for _, t in pairs]
            word2ph += distribute_phone(len(pairs), len(group))
        return phones, tones, word2ph


def _require_text(text: str) -> None:
    if not text or not text.strip():
        raise InvalidRequestError("the input text is empty", param="input")
