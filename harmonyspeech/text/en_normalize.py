"""English text normalisation, as MeloTTS's checkpoints were trained with it.

``normalize_english`` runs upstream's steps in upstream's order: lowercase, times, numbers
(keithito/tacotron style, with ``inflect``), then abbreviations that end with a dot. Nothing else
is touched: dates, units, symbols and URLs pass through to the tokenizer as they are.

Deliberate differences from upstream, both in the time expander, whose regex intends something
its double escaping breaks:

* ``a.m.``/``p.m.`` are recognised (upstream only matches ``am``/``pm``);
* a time without am/pm keeps the space after it (upstream's match swallows it, so
  ``"10:30 today"`` became ``"ten thirty a mtoday"``).

Faithful quirks kept on purpose:

* ``-`` before digits is a minus sign, glued to the word before it
  (``"2020-2024"`` → ``"twenty twentyminus two thousand twenty-four"``);
* commas between digits are dropped (``"1,2"`` → ``"twelve"``);
* the digits after a decimal point are read as one number (``"3.14"`` →
  ``"three point fourteen"``), and ``"$3.5"`` is three dollars and *five* cents;
* ``€`` is not expanded (``"€5"`` → ``"€five"``);
* a time without am/pm gets ``"a m"``/``"p m"`` by its hour, and ``0:xx`` counts as p m;
* an expanded abbreviation swallows its dot, even at the end of a sentence.

One addition: numbers of 37 digits or more, which crash upstream (inflect's range ends there),
are read digit by digit.
"""

from __future__ import annotations

import re
import threading
from typing import Any

from harmonyspeech.text.resources import Lazy

_CAMEL_CASE = re.compile(r"([a-z])([A-Z])")

_TIME = re.compile(
    r"""\b(?P<hour>[01]?[0-9]|2[0-3]):(?P<minute>[0-5][0-9])
        (?:\s*(?P<ampm>[ap]\.m\.|[ap]\.?m)(?!\w))?(?!\w)""",
    re.IGNORECASE | re.VERBOSE,
)
_DIGIT_COMMAS = re.compile(r"[0-9][0-9,]+[0-9]")
_CURRENCY = re.compile(r"([$£¥])([0-9,.]*[0-9]+)")
_DECIMAL = re.compile(r"[0-9]+\.[0-9]+")
_ORDINAL = re.compile(r"[0-9]+(?:st|nd|rd|th)")
_INTEGER = re.compile(r"-?[0-9]+")

# symbol -> (one unit, several units, one hundredth, several hundredths)
_CURRENCY_UNITS = {
    "$": ("dollar", "dollars", "cent", "cents"),
    "£": ("pound sterling", "pounds sterling", "penny", "pence"),
    "¥": ("yen", "yen", "sen", "sen"),
}

_ABBREVIATIONS = {
    "mrs": "misess",
    "mr": "mister",
    "dr": "doctor",
    "st": "saint",
    "co": "company",
    "jr": "junior",
    "maj": "major",
    "gen": "general",
    "drs": "doctors",
    "rev": "reverend",
    "lt": "lieutenant",
    "hon": "honorable",
    "sgt": "sergeant",
    "capt": "captain",
    "esq": "esquire",
    "ltd": "limited",
    "col": "colonel",
    "ft": "fort",
}
_ABBREVIATION = re.compile(rf"\b({'|'.join(_ABBREVIATIONS)})\.", re.IGNORECASE)


def _new_inflect_engine() -> Any:
    import inflect  # imported on first use: it takes about 3 s (typeguard instruments it)

    return inflect.engine()


_INFLECT = Lazy(_new_inflect_engine)
# An inflect engine keeps state between the steps of number_to_words (mill_count), so calls
# from several threads must not interleave.
_INFLECT_LOCK = threading.Lock()


_DIGITS = ["zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine"]


def number_to_words(value: int | str, **options: Any) -> str:
    """``inflect``'s ``number_to_words``, safe to call from several threads.

    Numbers too large for inflect (10^36 and up), on which upstream crashes, are read digit by
    digit instead.
    """
    engine = _INFLECT.get()
    import inflect  # already imported by the engine factory

    try:
        with _INFLECT_LOCK:
            return engine.number_to_words(value, **options)
    except inflect.NumOutOfRangeError:
        sign = ["minus"] if str(value).startswith("-") else []
        return " ".join(sign + [_DIGITS[int(c)] for c in str(value) if c.isdigit()])


def split_camel_case(text: str) -> str:
    """Put a space inside lower→upper case changes (``"camelCase"`` → ``"camel Case"``).

    MeloTTS does this in ``tts_to_file`` before its frontend, for EN and ZH_MIX_EN.
    """
    return _CAMEL_CASE.sub(r"\1 \2", text)


def _expand_time(match: re.Match[str]) -> str:
    hour, minute = int(match["hour"]), int(match["minute"])
    after_noon = hour >= 12 or hour == 0
    hour = hour - 12 if hour > 12 else (12 if hour == 0 else hour)
    words = [number_to_words(hour)]
    if minute:
        if minute < 10:
            words.append("oh")
        words.append(number_to_words(minute))
    ampm = match["ampm"]
    if ampm:
        words += list(ampm.lower().replace(".", ""))  # spelled as letters: "p m"
    else:
        words.append("p m" if after_noon else "a m")
    return " ".join(words)


def expand_time(text: str) -> str:
    """Spell out ``h:mm`` times with optional am/pm: ``"10:05pm"`` → ``"ten oh five p m"``."""
    return _TIME.sub(_expand_time, text)


def _expand_currency(match: re.Match[str]) -> str:
    one, many, cent, cents = _CURRENCY_UNITS[match[1]]
    value = match[2].replace(",", "")
    parts = value.split(".")
    if len(parts) > 2:
        return f"{value} {many}"
    words = []
    whole = int(parts[0] or 0)
    if whole:
        words.append(f"{whole} {one if whole == 1 else many}")
    # The fraction is read as a count of hundredths whatever its length ("$3.5" -> 5 cents).
    fraction = int(parts[1] or 0) if len(parts) == 2 else 0
    if fraction:
        words.append(f"{fraction} {cent if fraction == 1 else cents}")
    return " ".join(words) or f"zero {many}"


def _expand_integer(match: re.Match[str]) -> str:
    number = int(match[0])
    if not 1000 < number < 3000:
        return number_to_words(number, andword="")
    # Read as a year: 2000, 2001-2009, whole hundreds, else in pairs of digits.
    if number == 2000:
        return "two thousand"
    if 2000 < number < 2010:
        return "two thousand " + number_to_words(number % 100)
    if number % 100 == 0:
        return number_to_words(number // 100) + " hundred"
    pairs = number_to_words(number, andword="", zero="oh", group=2)
    return pairs.replace(", ", " ")


def normalize_numbers(text: str) -> str:
    """Spell out numbers: digit commas, currencies, decimals, ordinals, then integers."""
    text = _DIGIT_COMMAS.sub(lambda m: m[0].replace(",", ""), text)
    text = _CURRENCY.sub(_expand_currency, text)
    text = _DECIMAL.sub(lambda m: m[0].replace(".", " point "), text)
    text = _ORDINAL.sub(lambda m: number_to_words(m[0]), text)
    return _INTEGER.sub(_expand_integer, text)


def expand_abbreviations(text: str) -> str:
    """Expand the abbreviations that end with a dot (``"dr."`` → ``"doctor"``)."""
    return _ABBREVIATION.sub(lambda m: _ABBREVIATIONS[m[1].lower()], text)


def normalize_english(text: str) -> str:
    """MeloTTS's English ``text_normalize``: lowercase, times, numbers, abbreviations.

    Args:
        text: One sentence or chunk (camelCase already split, see ``split_camel_case``).

    Returns:
        The normalised text, which is both phonemised and fed to BERT.
    """
    text = text.lower()
    text = expand_time(text)
    text = normalize_numbers(text)
    return expand_abbreviations(text)
