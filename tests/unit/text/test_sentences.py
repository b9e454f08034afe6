"""The Latin sentence splitter: upstream's mapping, then txtsplit with 256/512 (spec §3.6)."""

from __future__ import annotations

from harmonyspeech.text import split_sentences_latin, txtsplit

SENTENCE = "abcd efgh ijkl."  # 15 characters, 16 with the space after it


def test_short_paragraph_is_one_piece() -> None:
    text = "Hello there. How are you? I am fine, thanks!"
    assert split_sentences_latin(text) == [text]


def test_mapping_and_deletions() -> None:
    text = "He said “Hello (world)”. It’s «fine» [really] <ok>"
    assert split_sentences_latin(text) == ["He said Hello world. It's fine really ok"]
    assert split_sentences_latin("你好。真的！好吗？行；对，ok") == ["你好. 真的. 好吗. 行. 对, ok"]


def test_compatibility_characters_become_the_plain_ones() -> None:
    # Full-width letters, digits and brackets, a ligature, a no-break space, an ellipsis: as
    # their ASCII forms would be ("..." gets spaces like any full stop).
    text = "Ｈｅｌｌｏ ｗｏｒｌｄ． Ｉｔ’ｓ ﬁne\u00a0ａｔ ３ ｐｍ （ｒｅａｌｌｙ）… ok"
    ascii_text = "Hello world. It’s fine at 3 pm (really)... ok"
    expected = ["Hello world. It's fine at 3 pm really. . . ok"]
    assert split_sentences_latin(text) == split_sentences_latin(ascii_text) == expected
    assert split_sentences_latin("ｿｳ｡ ok") == ["ソウ. ok"]  # half-width, the full stop too


def test_forms_that_change_the_reading_stay() -> None:
    # Full NFKC turned "10²" into "102" and "1½" into "11⁄2": numbers then read wrongly.
    text = "It is 10² m², 1½ cups, ① and 5 ㎏ of iPhone™."
    assert split_sentences_latin(text) == [text]


def test_numbers_keep_their_punctuation() -> None:
    # Upstream inserted a space after every "," and "." ("$3. 50", "1, 000").
    assert split_sentences_latin("It costs $3.50, or 1,000 yen.") == [
        "It costs $3.50, or 1,000 yen."
    ]


def test_chunks_commit_at_the_first_split_point_past_256() -> None:
    pieces = split_sentences_latin(" ".join([SENTENCE] * 40))
    # 17 sentences reach 271 characters; the next chunk counts its leading space (stripped
    # afterwards), so 16 sentences reach 256.
    assert pieces == [" ".join([SENTENCE] * n) for n in (17, 16, 7)]
    assert [len(p) for p in pieces] == [271, 255, 111]


def test_no_split_point_forces_a_cut_at_512_back_to_a_space() -> None:
    pieces = split_sentences_latin(" ".join(["abcd"] * 150))
    assert pieces == [" ".join(["abcd"] * 102), " ".join(["abcd"] * 48)]
    assert len(pieces[0]) == 509


def test_cut_at_512_goes_back_to_the_last_split_point() -> None:
    pieces = split_sentences_latin("Hello, " + " ".join(["abcd"] * 120))
    assert pieces == ["Hello,", " ".join(["abcd"] * 102), " ".join(["abcd"] * 18)]


def test_newlines_and_runs_of_whitespace_collapse() -> None:
    assert split_sentences_latin("One.\n\nTwo.\tThree.", desired_length=1) == [
        "One.",
        "Two.",
        "Three.",
    ]


def test_punctuation_only_pieces_are_dropped() -> None:
    assert split_sentences_latin("Really?! Yes!!! No...", desired_length=1) == [
        "Really?",
        "Yes!",
        "No.",
    ]
    assert split_sentences_latin("... !!! . ,") == []


def test_blank_text_gives_no_pieces() -> None:
    assert split_sentences_latin("") == []
    assert split_sentences_latin(" \n\t ") == []


def test_comma_needs_a_space_after_it_to_split() -> None:
    assert txtsplit("a,b, c", desired_length=1, max_length=100) == ["a,", "b,", "c"]


def test_no_split_inside_double_quotes() -> None:
    assert txtsplit("Wait. Stop. Go.", desired_length=1) == ["Wait.", "Stop.", "Go."]
    assert txtsplit('"Wait. Stop." Go.', desired_length=1) == ['"Wait. Stop. " Go.']
    # The Latin splitter deletes double quotes first, so they never hold a split back.
    assert split_sentences_latin('"Wait. Stop." Go.', desired_length=1) == [
        "Wait.",
        "Stop.",
        "Go.",
    ]


def test_closing_quote_is_a_split_point_for_forced_cuts() -> None:
    pieces = txtsplit('She said "go now" and then she left', desired_length=10, max_length=25)
    assert pieces == ['She said "go now"', "and then she left"]


def test_every_piece_respects_max_length() -> None:
    words = ["lorem", "ipsum,", "dolor", "sit", "amet.", "consectetur", "adipiscing!"]
    text = " ".join(words[i % len(words)] for i in range(700))
    pieces = split_sentences_latin(text)
    assert all(len(p) <= 512 for p in pieces)
    assert " ".join(pieces).split() == text.split()
