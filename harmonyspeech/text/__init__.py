"""Text frontends: sentence splitting, normalisation, G2P and model-input sequences.

Importing this package is cheap: the CMU lexicon, the G2P weights and ``inflect`` load on first
use. The English frontend turns a sentence into MeloTTS inputs::

    frontend = EnglishFrontend(bert_tokenizer, symbols)
    for piece in split_sentences_latin(text):
        out = frontend(piece)
        ids, tones, languages, word2ph = to_sequence(out, symbol_table(symbols))
"""

from harmonyspeech.text.en_normalize import normalize_english, split_camel_case
from harmonyspeech.text.english import EnglishFrontend, EnglishFrontendOutput, distribute_phone
from harmonyspeech.text.sentences import split_sentences_latin, txtsplit
from harmonyspeech.text.sequence import (
    LANGUAGE_IDS,
    TONE_START,
    PhoneSequence,
    frontend_language,
    intersperse,
    speaks,
    symbol_table,
    to_sequence,
)
from harmonyspeech.text.tokenizer import BertTokenizerLike, WordPieceTokenizer

__all__ = [
    "LANGUAGE_IDS",
    "TONE_START",
    "BertTokenizerLike",
    "EnglishFrontend",
    "EnglishFrontendOutput",
    "PhoneSequence",
    "WordPieceTokenizer",
    "distribute_phone",
    "frontend_language",
    "intersperse",
    "normalize_english",
    "speaks",
    "split_camel_case",
    "split_sentences_latin",
    "symbol_table",
    "to_sequence",
    "txtsplit",
]
