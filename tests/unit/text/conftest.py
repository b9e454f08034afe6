"""Fixtures for the text frontend tests: the official symbol table and a generated vocabulary."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from harmonyspeech.models.bert_fixtures import DEFAULT_WORDS, write_vocab
from harmonyspeech.text import EnglishFrontend, WordPieceTokenizer, symbol_table

ROOT = Path(__file__).resolve().parents[3]
SYMBOLS_JSON = ROOT / "harmonyspeech" / "models" / "melo" / "symbols.json"

# Words of the test sentences that bert-base-uncased also keeps whole, so that word2ph looks
# like the real one. Phones and tones do not depend on the vocabulary (pieces are regrouped).
_MORE_WORDS = """
    i know love pizza example com now favorite thing phone nineteen ninety thousand five point
    fourteen pounds sterling pence hundred yen minus million seven oh twelve fifteen in or first
"""
TEST_WORDS = (*DEFAULT_WORDS, *_MORE_WORDS.split())


@pytest.fixture(scope="session")
def symbols() -> list[str]:
    return json.loads(SYMBOLS_JSON.read_text(encoding="utf-8"))


@pytest.fixture(scope="session")
def symbol_ids(symbols: list[str]) -> dict[str, int]:
    return symbol_table(symbols)


@pytest.fixture(scope="session")
def tokenizer(tmp_path_factory: pytest.TempPathFactory) -> WordPieceTokenizer:
    vocab = write_vocab(tmp_path_factory.mktemp("bert") / "vocab.txt", TEST_WORDS)
    return WordPieceTokenizer.from_vocab(vocab)


@pytest.fixture(scope="session")
def frontend(tokenizer: WordPieceTokenizer, symbols: list[str]) -> EnglishFrontend:
    return EnglishFrontend(tokenizer, symbols)
