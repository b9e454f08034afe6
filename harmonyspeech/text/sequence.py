"""From frontend output to MeloTTS model inputs: symbol ids, tones, languages and blanks.

This is upstream's ``cleaned_text_to_sequence`` plus the ``add_blank`` step of
``get_text_for_tts_infer`` (spec §3.1 steps 3–4).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import NamedTuple, Protocol

from harmonyspeech.errors import InvalidRequestError

# Language embedding rows and tone offsets shared by every MeloTTS checkpoint.
LANGUAGE_IDS: Mapping[str, int] = {
    "ZH": 0,
    "JP": 1,
    "EN": 2,
    "ZH_MIX_EN": 3,
    "KR": 4,
    "ES": 5,
    "SP": 5,
    "FR": 6,
}
TONE_START: Mapping[str, int] = {
    "ZH": 0,
    "ZH_MIX_EN": 0,
    "JP": 6,
    "EN": 7,
    "KR": 11,
    "ES": 12,
    "SP": 12,
    "FR": 13,
    "DE": 14,
    "RU": 15,
}

SILENT_SYMBOLS = frozenset({"_", "!", "?", "…", ",", ".", "'", "-", "SP", "UNK"})
"""Symbols that carry no speech: the pad and MeloTTS's punctuation marks."""


def speaks(phones: Sequence[str]) -> bool:
    """Whether a frontend's phones hold anything to speak: text of emoji, symbols or a script
    the frontend drops comes out as pads and punctuation alone, on which the network would
    only make a short noise."""
    return any(phone not in SILENT_SYMBOLS for phone in phones)


# Checkpoint language names (config.json / the TTS language argument) -> frontend language.
FRONTEND_LANGUAGES: Mapping[str, str] = {"EN": "EN", "EN_V2": "EN", "EN_NEWEST": "EN"}


def frontend_language(language: str) -> str:
    """The frontend that handles a checkpoint language (``"EN_V2"`` → ``"EN"``).

    Raises:
        InvalidRequestError: No frontend exists for ``language`` yet.
    """
    resolved = FRONTEND_LANGUAGES.get(language.strip().upper())
    if resolved is None:
        supported = ", ".join(FRONTEND_LANGUAGES)
        raise InvalidRequestError(
            f"no text frontend for language {language!r} yet; supported: {supported}",
            param="language",
            code="unsupported_language",
        )
    return resolved


class FrontendOutput(Protocol):
    """What ``to_sequence`` reads from a frontend's output."""

    @property
    def phones(self) -> Sequence[str]: ...

    @property
    def tones(self) -> Sequence[int]: ...

    @property
    def word2ph(self) -> Sequence[int]: ...

    @property
    def language(self) -> str: ...


class PhoneSequence(NamedTuple):
    """Model inputs for one sentence; unpacks as ``ids, tones, languages, word2ph``."""

    phone_ids: list[int]
    tone_ids: list[int]
    language_ids: list[int]
    word2ph: list[int]
    """Phones per BERT token, after blanks: sums to ``len(phone_ids)``."""


def intersperse(items: Sequence[int], filler: int) -> list[int]:
    """``[a, b]`` → ``[filler, a, filler, b, filler]`` (length ``2n + 1``)."""
    result = [filler] * (2 * len(items) + 1)
    result[1::2] = items
    return result


def to_sequence(
    out: FrontendOutput,
    symbol_to_id: Mapping[str, int],
    *,
    add_blank: bool = True,
    language: str | None = None,
) -> PhoneSequence:
    """Turn phones into symbol ids, and optionally put blanks between them.

    Args:
        out: Frontend output; its tones already include the language's tone offset.
        symbol_to_id: The checkpoint's symbol table (from its ``config.json``), as a mapping.
        add_blank: The checkpoint's ``data.add_blank`` (true for every official one): blanks
            (id 0, tone 0, language 0) go around every phone, and word2ph doubles, with the
            first token also covering the leading blank.
        language: The language whose id to use (a checkpoint name such as ``"EN_V2"`` works);
            defaults to the output's own ``language``.

    Returns:
        The model inputs.

    Raises:
        KeyError: A phone is not in ``symbol_to_id`` (the frontend was built for other symbols).
        InvalidRequestError: ``language`` is unknown.
    """
    missing = sorted({p for p in out.phones if p not in symbol_to_id})
    if missing:
        raise KeyError(f"phones missing from the symbol table: {missing}")
    language = language or out.language
    if language not in LANGUAGE_IDS:
        language = frontend_language(language)
    language_id = LANGUAGE_IDS[language]
    phone_ids = [symbol_to_id[p] for p in out.phones]
    tone_ids = list(out.tones)
    language_ids = [language_id] * len(phone_ids)
    word2ph = list(out.word2ph)
    if add_blank:
        phone_ids = intersperse(phone_ids, 0)
        tone_ids = intersperse(tone_ids, 0)
        language_ids = intersperse(language_ids, 0)
        word2ph = [2 * n for n in word2ph]
        if word2ph:
            word2ph[0] += 1
    return PhoneSequence(phone_ids, tone_ids, language_ids, word2ph)


def symbol_table(symbols: Sequence[str]) -> dict[str, int]:
    """``{symbol: id}`` for a checkpoint's ``symbols`` list."""
    return {s: i for i, s in enumerate(symbols)}
