"""The English frontend: worked example, tricky inputs and upstream's quirks (spec §3.1–3.2).

Phones and tones do not depend on the WordPiece vocabulary (pieces are regrouped into words);
tokens and word2ph are those of the generated test vocabulary (see conftest.py).
"""

from __future__ import annotations

import pytest

from harmonyspeech.errors import InvalidRequestError
from harmonyspeech.models.bert_fixtures import write_vocab
from harmonyspeech.text import (
    EnglishFrontend,
    EnglishFrontendOutput,
    WordPieceTokenizer,
    frontend_language,
    to_sequence,
)
from harmonyspeech.text.english import (
    distribute_phone,
    group_wordpieces,
    post_replace_phone,
    refine_phone,
)
from harmonyspeech.text.neural_g2p import PHONEMES


def _check_invariants(out: EnglishFrontendOutput) -> None:
    assert len(out.token_ids) == len(out.word2ph) == len(out.tokens) + 2
    assert sum(out.word2ph) == len(out.phones) == len(out.tones)
    assert out.phones[0] == out.phones[-1] == "_"
    assert set(out.tones) <= {7, 8, 9, 10}


def test_worked_example_hello(frontend: EnglishFrontend, symbol_ids: dict[str, int]) -> None:
    out = frontend("hello.")
    assert out.normalized_text == "hello."
    assert out.tokens == ("hello", ".")
    assert out.phones == ("_", "hh", "ah", "l", "ow", ".", "_")
    assert out.tones == (7, 7, 8, 7, 9, 7, 7)
    assert out.word2ph == (1, 4, 1, 1)

    phone_ids, tone_ids, language_ids, word2ph = to_sequence(out, symbol_ids)
    assert phone_ids == [0, 0, 0, 49, 0, 23, 0, 70, 0, 80, 0, 214, 0, 0, 0]
    assert tone_ids == [0, 7, 0, 7, 0, 8, 0, 7, 0, 9, 0, 7, 0, 7, 0]
    assert language_ids == [0, 2] * 7 + [0]
    assert word2ph == [3, 8, 2, 2]
    assert sum(word2ph) == len(phone_ids)


def test_sequence_without_blanks(frontend: EnglishFrontend, symbol_ids: dict[str, int]) -> None:
    seq = to_sequence(frontend("hello."), symbol_ids, add_blank=False)
    assert seq.phone_ids == [0, 49, 23, 70, 80, 214, 0]
    assert seq.language_ids == [2] * 7
    assert seq.word2ph == [1, 4, 1, 1]


def test_sequence_language_defaults_to_the_output_and_accepts_checkpoint_names(
    frontend: EnglishFrontend, symbol_ids: dict[str, int]
) -> None:
    out = frontend("hello.")
    assert to_sequence(out, symbol_ids, language="EN_V2") == to_sequence(out, symbol_ids)
    with pytest.raises(InvalidRequestError):
        to_sequence(out, symbol_ids, language="XX")


def test_token_ids_frame_the_pieces(frontend: EnglishFrontend, tokenizer) -> None:
    out = frontend("hello.")
    pieces = tokenizer.convert_tokens_to_ids(["hello", "."])
    assert out.token_ids == (tokenizer.cls_token_id, *pieces, tokenizer.sep_token_id)


def test_tricky_sentence(frontend: EnglishFrontend) -> None:
    out = frontend("Dr. Smith paid $3.50 on 1/2/2024 at 10:30pm")
    assert out.normalized_text == (
        "doctor smith paid three dollars fifty cents on one/two/twenty twenty-four "
        "at ten thirty p m"
    )
    assert " ".join(out.tokens) == (
        "doctor smith paid three dollars fifty cents on one / two / twenty twenty - four "
        "at ten thirty p m"
    )
    # "/" has no phones; "-" is a phone; "p" and "m" are spelled as letters.
    assert " ".join(out.phones) == (
        "_ d aa k t er s m ih th p ey d th r iy d aa l er z f ih f t iy s eh n t s aa n "
        "w ah n t uw t w eh n t iy t w eh n t iy - f ao r ae t t eh n th er d iy p iy eh m _"
    )
    assert out.word2ph == (1, 5, 4, 3, 3, 5, 5, 5, 2, 3, 0, 2, 0, 6, 6, 1, 3, 2, 3, 4, 2, 2, 1)
    # thirty = TH ER1 D IY2 -> tones 7 9 7 10
    assert out.tones[-9:-5] == (7, 9, 7, 10)
    _check_invariants(out)


def test_contraction_splits_at_the_apostrophe(frontend: EnglishFrontend) -> None:
    out = frontend("I don't know.")
    assert out.tokens == ("i", "don", "'", "t", "know", ".")
    assert out.phones == ("_", "ay", "d", "aa", "n", "'", "t", "iy", "n", "ow", ".", "_")
    assert out.tones == (7, 9, 7, 9, 7, 7, 7, 9, 7, 9, 7, 7)
    assert out.word2ph == (1, 1, 3, 1, 2, 2, 1, 1)


def test_url(frontend: EnglishFrontend) -> None:
    out = frontend("Visit https://example.com now!")
    assert out.normalized_text == "visit https://example.com now!"
    # "https" is not in the lexicon: the neural G2P reads it; ":" and "/" are silent.
    assert " ".join(out.phones) == ("_ V ih z ih t t ae p t s ih g z ae m p ah l . k aa m n aw ! _")
    assert out.word2ph == (1, 5, 1, 1, 1, 1, 1, 0, 0, 0, 8, 1, 3, 2, 1, 1)
    _check_invariants(out)


def test_emoji_is_read_as_unk_like_upstream(frontend: EnglishFrontend) -> None:
    out = frontend("I love pizza 🍕!")
    assert out.tokens == ("i", "love", "pizza", "[UNK]", "!")
    # [UNK] goes to g2p_en, which reads "unk": AH1 NG K.
    assert " ".join(out.phones) == "_ ay l ah V p iy t s ah ah ng k ! _"
    assert out.word2ph == (1, 1, 3, 5, 3, 1, 1)


def test_emoji_can_be_dropped(tokenizer, symbols) -> None:
    out = EnglishFrontend(tokenizer, symbols, drop_unknown_tokens=True)("I love pizza 🍕!")
    assert " ".join(out.phones) == "_ ay l ah V p iy t s ah ! _"
    assert out.word2ph == (1, 1, 3, 5, 0, 1, 1)
    _check_invariants(out)


def test_only_emoji_still_synthesises_something(frontend: EnglishFrontend) -> None:
    out = frontend("🙂🙂")
    assert out.tokens == ("[UNK]",)
    _check_invariants(out)


def test_acronyms_are_words(frontend: EnglishFrontend) -> None:
    out = frontend("NASA, the FBI and the US.")
    # FBI is spelled by the lexicon; US is the word "us" (upstream issue #129).
    assert " ".join(out.phones) == ("_ n ae s ah , dh ah eh f b iy ay ah n d dh ah ah s . _")
    assert out.word2ph == (1, 4, 1, 2, 5, 3, 2, 2, 1, 1)


def test_camel_case_is_split(frontend: EnglishFrontend) -> None:
    out = frontend("myFavoriteThing iPhone")
    assert out.normalized_text == "my favorite thing i phone"
    assert " ".join(out.phones) == "_ m ay f ey V er ih t th ih ng ay f ow n _"


def test_word_not_in_lexicon_goes_through_the_neural_g2p(frontend: EnglishFrontend) -> None:
    first = frontend("zyxqwerty")
    assert " ".join(first.phones) == "_ z ih k g z er t iy _"  # g2p_en: Z IH0 K G Z ER1 T IY0
    assert first.tones == (7, 7, 8, 7, 7, 7, 9, 7, 8, 7)
    assert frontend("zyxqwerty") == first
    assert first.word2ph == (1, 1, 1, 1, 1, 1, 1, 1, 1, 0, 1)  # 8 phones over 9 pieces


def test_numbers_sentence(frontend: EnglishFrontend) -> None:
    out = frontend("In 1990, the 21st of 3.14 and £2.50.")
    assert out.normalized_text == (
        "in nineteen ninety, the twenty-first of three point fourteen and "
        "two pounds sterling fifty pence."
    )
    assert " ".join(out.phones) == (
        "_ ih n n ay n t iy n n ay n t iy , dh ah t w eh n t iy - f er s t ah V th r iy "
        "p oy n t f ao r t iy n ah n d t uw p aw n d z s t er l ih ng f ih f t iy p eh n s . _"
    )
    _check_invariants(out)


def test_accents_symbols_quotes_and_hash(frontend: EnglishFrontend) -> None:
    out = frontend("Café: naïve; #tag c#")
    # BERT strips accents; ":" and ";" are silent; "#" joins the word before it.
    assert out.tokens[:6] == ("c", "##a", "##f", "##e", ":", "n")
    assert " ".join(out.phones) == "_ k ah f ey n ay iy V t ae g s iy _"
    assert out.word2ph == (1, 1, 1, 1, 1, 0, 1, 1, 1, 1, 0, 0, 0, 1, 1, 1, 1, 1, 1)
    _check_invariants(out)


def test_leading_hash_piece_does_not_crash(frontend: EnglishFrontend) -> None:
    out = frontend("#1")
    assert out.normalized_text == "#one"
    assert out.tokens == ("#", "one")
    assert " ".join(out.phones) == "_ w ah n _"


@pytest.mark.parametrize("text", ["", "   ", "\n\t "])
def test_empty_input_is_a_clear_error(frontend: EnglishFrontend, text: str) -> None:
    with pytest.raises(InvalidRequestError, match="empty"):
        frontend(text)


def test_phones_do_not_depend_on_the_vocabulary(frontend, symbols, tmp_path) -> None:
    chars_only = WordPieceTokenizer.from_vocab(write_vocab(tmp_path / "vocab.txt", words=()))
    other = EnglishFrontend(chars_only, symbols)
    text = "Dr. Smith paid $3.50 on 1/2/2024 at 10:30pm. I don't know, NASA!"
    a, b = frontend(text), other(text)
    assert (a.phones, a.tones) == (b.phones, b.tones)
    assert len(b.tokens) > len(a.tokens)
    _check_invariants(b)


def test_all_phones_are_official_symbols(frontend: EnglishFrontend, symbols) -> None:
    out = frontend("Zorblax quizzically vexed 17 jumbled wyverns at 3:07 am; “¿Qué?” ©2024.")
    assert set(out.phones) <= set(symbols)
    _check_invariants(out)


@pytest.mark.parametrize(
    ("phone", "expected"),
    [
        ("OW1", ("ow", 2)),
        ("AH0", ("ah", 1)),
        ("IY2", ("iy", 3)),
        ("HH", ("hh", 0)),
        (".", (".", 0)),
    ],
)
def test_refine_phone(phone: str, expected: tuple[str, int]) -> None:
    assert refine_phone(phone) == expected


@pytest.mark.parametrize(
    ("n_phone", "n_word", "expected"),
    [(5, 2, [3, 2]), (4, 4, [1, 1, 1, 1]), (2, 3, [1, 1, 0]), (0, 3, [0, 0, 0]), (7, 3, [3, 2, 2])],
)
def test_distribute_phone(n_phone: int, n_word: int, expected: list[int]) -> None:
    assert distribute_phone(n_phone, n_word) == expected


@pytest.mark.parametrize(
    ("phone", "expected"),
    [
        ("v", "V"),
        ("...", "…"),
        ("，", ","),
        ("。", "."),
        ("！", "!"),
        ("？", "?"),
        ("：", ","),
        ("\n", "."),
        ("ah", "ah"),
        ("'", "'"),
        ("UW", "UNK"),  # g2p_en's unstressed "UW" is not in MeloTTS's arpa set
        ("zz", "UNK"),
    ],
)
def test_post_replace_phone(phone: str, expected: str, symbols: list[str]) -> None:
    assert post_replace_phone(phone, frozenset(symbols)) == expected


def test_group_wordpieces() -> None:
    assert group_wordpieces(["hel", "##lo", ".", "#", "##x"]) == [["hel", "lo"], [".", "", "x"]]
    assert group_wordpieces(["##a", "b"]) == [["a"], ["b"]]


@pytest.mark.parametrize("language", ["EN", "EN_V2", "EN_NEWEST", "en_newest"])
def test_english_checkpoint_languages(language: str) -> None:
    assert frontend_language(language) == "EN"


@pytest.mark.parametrize("language", ["ZH", "JP", "KR", "FR", "ES", "xx"])
def test_other_languages_are_a_clear_error(language: str) -> None:
    with pytest.raises(InvalidRequestError, match="supported: EN, EN_V2, EN_NEWEST") as info:
        frontend_language(language)
    assert info.value.param == "language"


def test_g2p_phoneme_table_matches_g2p_en() -> None:
    assert len(PHONEMES) == 74
    assert PHONEMES[:4] == ("<pad>", "<unk>", "<s>", "</s>")
    assert PHONEMES[4] == "AA0" and PHONEMES[-1] == "ZH"
    assert PHONEMES.index("UW") == PHONEMES.index("UH2") + 1


def test_pieces_of_an_ordinary_sentence_are_the_call(frontend: EnglishFrontend) -> None:
    text = "Dr. Smith paid $3.50 on 1/2/2024 at 10:30pm."
    assert frontend.pieces(text) == [frontend(text)]


def test_text_spelled_out_past_the_limit_is_cut_after_normalisation(
    frontend: EnglishFrontend,
) -> None:
    """512 digits with no split point: one 512-character chunk, 2,047 characters of words."""
    digits = "1" * 512
    assert len(frontend(digits).normalized_text) > 2000
    pieces = frontend.pieces(digits, max_chars=512)
    assert len(pieces) == 4
    assert all(len(piece.normalized_text) <= 512 for piece in pieces)
    assert sum(piece.normalized_text.count("one") for piece in pieces) == 512
    # Each piece is a whole frontend output: padded, with its own CLS/SEP.
    for piece in pieces:
        assert piece.phones[0] == piece.phones[-1] == "_"
        assert piece.token_ids[0] == frontend.tokenizer.cls_token_id
        assert sum(piece.word2ph) == len(piece.phones)


def test_pieces_of_empty_text_are_refused(frontend: EnglishFrontend) -> None:
    with pytest.raises(InvalidRequestError, match="empty"):
        frontend.pieces("   ")
