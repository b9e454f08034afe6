"""The English normaliser reproduces MeloTTS's ``text_normalize`` (spec §3.2)."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor

import pytest

from harmonyspeech.text.en_normalize import (
    expand_abbreviations,
    expand_time,
    normalize_english,
    normalize_numbers,
    split_camel_case,
)


def test_tricky_sentence_as_upstream_normalises_it() -> None:
    # Upstream has no date rule: "1/2/2024" is three numbers, the last one read as a year.
    assert normalize_english("Dr. Smith paid $3.50 on 1/2/2024 at 10:30pm") == (
        "doctor smith paid three dollars fifty cents on one/two/twenty twenty-four "
        "at ten thirty p m"
    )


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("10:30pm", "ten thirty p m"),
        ("10:30 PM", "ten thirty p m"),
        ("9:00 am", "nine a m"),
        ("7:05", "seven oh five a m"),  # minutes 1-9 get "oh"; no am/pm: by the hour
        ("13:45", "one forty-five p m"),
        ("12:00", "twelve p m"),
        ("0:15", "twelve fifteen p m"),  # upstream counts midnight as p m
        ("23:59", "eleven fifty-nine p m"),
        ("24:00", "24:00"),  # not a time
    ],
)
def test_times(text: str, expected: str) -> None:
    assert expand_time(text) == expected


def test_time_regex_intent_rather_than_its_escaping_bug() -> None:
    # Upstream matched neither "a.m." nor the space after a bare time ("a mtoday").
    assert expand_time("at 10:30 a.m. today") == "at ten thirty a m today"
    assert expand_time("at 10:30 today") == "at ten thirty a m today"
    assert normalize_english("24:00") == "twenty-four:zero"


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("1990", "nineteen ninety"),
        ("1905", "nineteen oh five"),
        ("1900", "nineteen hundred"),
        ("2000", "two thousand"),
        ("2005", "two thousand five"),
        ("2024", "twenty twenty-four"),
        ("1000", "one thousand"),
        ("3000", "three thousand"),
        ("101", "one hundred one"),  # andword=""
        ("1,234,567", "one million, two hundred thirty-four thousand, five hundred sixty-seven"),
        ("1st 2nd 3rd 21st 100th", "first second third twenty-first one hundredth"),
        ("3.14", "three point fourteen"),
        ("0.5", "zero point five"),
        ("-5", "minus five"),
        ("2020-2024", "twenty twentyminus two thousand twenty-four"),  # a minus sign, glued
        ("1,2", "twelve"),
    ],
)
def test_numbers(text: str, expected: str) -> None:
    assert normalize_numbers(text) == expected


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("$1", "one dollar"),
        ("$1.01", "one dollar one cent"),
        ("$3.50", "three dollars fifty cents"),
        ("$0.50", "fifty cents"),
        ("$3.5", "three dollars five cents"),  # the fraction is a count of cents
        ("$0", "zero dollars"),
        ("$1,000", "one thousand dollars"),
        ("$1.2.3", "one point two.three dollars"),
        ("£1", "one pound sterling"),
        ("£2.50", "two pounds sterling fifty pence"),
        ("£0.01", "one penny"),
        ("¥1", "one yen"),
        ("¥3.50", "three yen fifty sen"),
        ("€5", "€five"),  # € is in upstream's table but not in its regex
    ],
)
def test_currencies(text: str, expected: str) -> None:
    assert normalize_numbers(text) == expected


@pytest.mark.parametrize(
    ("abbreviation", "expansion"),
    [
        ("mrs", "misess"),
        ("mr", "mister"),
        ("dr", "doctor"),
        ("st", "saint"),
        ("co", "company"),
        ("jr", "junior"),
        ("maj", "major"),
        ("gen", "general"),
        ("drs", "doctors"),
        ("rev", "reverend"),
        ("lt", "lieutenant"),
        ("hon", "honorable"),
        ("sgt", "sergeant"),
        ("capt", "captain"),
        ("esq", "esquire"),
        ("ltd", "limited"),
        ("col", "colonel"),
        ("ft", "fort"),
    ],
)
def test_abbreviations(abbreviation: str, expansion: str) -> None:
    assert expand_abbreviations(f"{abbreviation}. x") == f"{expansion} x"


def test_abbreviation_needs_its_dot_and_swallows_it() -> None:
    assert normalize_english("Mrs. Jones met Dr Who on Main St.") == (
        "misess jones met dr who on main saint"
    )


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("camelCaseText", "camel Case Text"),
        ("iPhone", "i Phone"),
        ("McDonald", "Mc Donald"),
        ("NASA and ABCdef", "NASA and ABCdef"),
    ],
)
def test_camel_case(text: str, expected: str) -> None:
    assert split_camel_case(text) == expected


def test_numbers_beyond_inflects_range_are_read_digit_by_digit() -> None:
    assert normalize_numbers("1" * 36).startswith("one hundred eleven decillion")
    assert normalize_numbers("-" + "12" * 20) == "minus " + " ".join(["one", "two"] * 20)


def test_text_without_rules_only_lowercases() -> None:
    assert normalize_english("Hello, World! Ça va? 🙂") == "hello, world! ça va? 🙂"


def test_number_words_are_thread_safe() -> None:
    # inflect keeps state inside number_to_words; concurrent calls must not mix it up.
    texts = [f"{n} and {n * 7919}" for n in range(1001, 1201)]
    expected = [normalize_numbers(t) for t in texts]
    with ThreadPoolExecutor(max_workers=8) as pool:
        for _ in range(3):
            assert list(pool.map(normalize_numbers, texts)) == expected
