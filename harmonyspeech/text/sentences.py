"""Sentence splitting for Latin-script languages (EN, FR, ES), as MeloTTS's ``tts_to_file``.

``split_sentences_latin`` maps CJK sentence punctuation, then full-width and half-width forms,
ligatures and special spaces to their plain characters (``plain_forms``), and curly quotes,
deletes brackets and double quotes, then cuts the text with the ``txtsplit`` chunker into pieces
of about 256–512 characters, so a paragraph under 256 characters stays one piece (spec §3.6).

``txtsplit`` semantics:

* whitespace runs collapse to one space and a space follows every ``, . ? !``;
* a split point is ``!``, ``?`` or a newline, or ``.``/``,`` followed by a space or the end, never
  inside double quotes; a run of ``!?.`` after it stays with it; a closing quote followed by a
  space is a split point too;
* a chunk is committed at the first split point where it has reached ``desired_length``;
* at ``max_length`` it is cut at its last split point (if past half of ``desired_length``), else
  at the last ``!?.`` or space after ``desired_length``, else exactly there;
* chunks of only punctuation are dropped.

Differences from upstream, which only runs at inference (training text was never split, so the
checkpoints are unaffected): no space is inserted between a ``,``/``.`` and a digit (upstream
turned "$3.50" into "$3. 50" and "1,000" into "1, 000", which the normaliser then read as
"three dollars. fifty" and "one, zero"); quote state follows the text exactly when a cut backs
off. Newlines are split points in ``txtsplit`` but the whitespace collapse removes them first,
as upstream. Upstream passed full-width letters and digits, ligatures ("ﬁ") and the like on
as they were, which the BERT tokenizer reads as unknown tokens and the lexicon cannot spell.
"""

from __future__ import annotations

import functools
import re
import unicodedata

_FULL_STOPS = re.compile("[。｡！？；]")
_DELETED = re.compile(r"[<>()\[\]\"«»]+")
_SPACE_AFTER_PUNCT = re.compile(r"([,.?!])(?![0-9])")
_PUNCT_ONLY = re.compile(r"^[\s.,;:!?]*$")

DESIRED_LENGTH = 256
MAX_LENGTH = 512
GAP_S = 0.05
"""Silence between consecutive pieces at speed 1 (upstream ``tts_to_file``: 50 ms / speed)."""


def gap_samples(sample_rate: int, speed: float) -> int:
    """Samples of silence between consecutive pieces spoken at ``speed``."""
    return int(sample_rate * GAP_S / speed)


def item_seed(seed: int | None, index: int) -> int | None:
    """A distinct, reproducible seed for piece ``index`` of a seeded text (None stays None)."""
    if seed is None:
        return None
    return (seed * 1_000_003 + index) % (2**31)


def split_sentences_latin(
    text: str, *, desired_length: int = DESIRED_LENGTH, max_length: int = MAX_LENGTH
) -> list[str]:
    """Split text into synthesis pieces the way MeloTTS does for EN/FR/ES.

    Args:
        text: The request's input text.
        desired_length: Commit a piece at the first split point once it is this long.
        max_length: Never let a piece grow past this many characters.

    Returns:
        Stripped, non-empty pieces in order; ``[]`` for blank text.
    """
    # Upstream's mapping of the CJK marks first: plain_forms would map "！" to "!".
    text = plain_forms(_FULL_STOPS.sub(".", text).replace("，", ","))
    text = text.replace("“", '"').replace("”", '"').replace("‘", "'").replace("’", "'")
    text = _DELETED.sub("", text)
    return txtsplit(text, desired_length=desired_length, max_length=max_length)


PLAIN_FORM_TAGS = ("<wide>", "<narrow>", "<noBreak>", "<compat>")
"""Unicode compatibility mappings that only change a character's form: full-width and half-width
letters, digits and punctuation, no-break and other special spaces, ligatures ("ﬁ"), "…". The
others change what is read: superscripts ("10²" would read "one hundred two"), fractions ("1½"
"eleven"), circled and squared forms ("①", "㎏"), "™"; they stay as they are."""


def plain_forms(text: str) -> str:
    """``text`` with the characters of :data:`PLAIN_FORM_TAGS` in their plain forms (NFKC for
    those alone; each becomes at most 4 characters)."""
    return "".join(_plain_form(char) if ord(char) > 127 else char for char in text)


@functools.lru_cache(maxsize=4096)
def _plain_form(char: str) -> str:
    if unicodedata.decomposition(char).startswith(PLAIN_FORM_TAGS):
        return unicodedata.normalize("NFKC", char)
    return char


def txtsplit(text: str, desired_length: int = 100, max_length: int = 200) -> list[str]:
    """Chunk ``text`` into pieces of ``desired_length``–``max_length`` characters.

    See the module docstring for the rules.
    """
    text = re.sub(r"\s+", " ", text).replace("“", '"').replace("”", '"')
    text = re.sub(r"\s+", " ", _SPACE_AFTER_PUNCT.sub(r"\1 ", text))
    chunks = _Chunker(text, desired_length, max_length).run()
    stripped = (c.strip() for c in chunks)
    return [c for c in stripped if c and not _PUNCT_ONLY.match(c)]


class _Chunker:
    """One left-to-right scan; the current chunk is always ``text[start : pos + 1]``."""

    def __init__(self, text: str, desired: int, maximum: int):
        self.text = text
        self.desired = desired
        self.maximum = maximum
        self.pos = -1
        self.start = 0
        self.in_quote = False
        self.splits: list[int] = []
        self.chunks: list[str] = []

    @property
    def length(self) -> int:
        return self.pos + 1 - self.start

    def peek(self, ahead: int) -> str:
        index = self.pos + ahead
        return self.text[index] if 0 <= index < len(self.text) else ""

    def seek(self, delta: int) -> str:
        """Move by ``delta`` characters, keeping the quote state right; returns the char."""
        step = 1 if delta > 0 else -1
        for _ in range(abs(delta)):
            leaving = self.text[self.pos] if step < 0 else self.text[self.pos + 1]
            self.pos += step
            if leaving == '"':
                self.in_quote = not self.in_quote
        return self.text[self.pos]

    def commit(self) -> None:
        self.chunks.append(self.text[self.start : self.pos + 1])
        self.start = self.pos + 1
        self.splits = []

    def run(self) -> list[str]:
        last = len(self.text) - 1
        while self.pos < last:
            char = self.seek(1)
            if self.length >= self.maximum:
                self._cut(char)
            elif not self.in_quote and self._is_split_point(char):
                self._absorb_punctuation(last)
                self.splits.append(self.pos)
                if self.length >= self.desired:
                    self.commit()
            elif self.in_quote and self.peek(1) == '"' and self.peek(2) in ("", " ", "\n"):
                self.seek(min(2, last - self.pos))
                self.splits.append(self.pos)
        self.chunks.append(self.text[self.start :])
        return self.chunks

    def _is_split_point(self, char: str) -> bool:
        return char in "!?\n" or (char in ".," and self.peek(1) in ("", " ", "\n"))

    def _absorb_punctuation(self, last: int) -> None:
        while self.pos < last and self.length < self.maximum and self.peek(1) in "!?.":
            self.seek(1)

    def _cut(self, char: str) -> None:
        if self.splits and self.length > self.desired / 2:
            self.seek(self.splits[-1] - self.pos)
        else:
            while char not in "!?.\n " and self.pos > 0 and self.length > self.desired:
                char = self.seek(-1)
        self.commit()
