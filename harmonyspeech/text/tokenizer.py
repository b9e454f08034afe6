"""The WordPiece tokenizer interface the frontends need, and a light implementation of it.

The English frontend tokenizes with BERT's own tokenizer, because its word2ph must line up with
BERT's tokens. Any object with this interface works: a ``transformers`` tokenizer loaded from the
BERT directory (what ``harmonyspeech.models.bert`` returns), or ``WordPieceTokenizer`` below,
which needs only the ``tokenizers`` package and loads in milliseconds.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Protocol, runtime_checkable


@runtime_checkable
class BertTokenizerLike(Protocol):
    """The part of a Hugging Face BERT tokenizer that the frontends use."""

    cls_token_id: int
    sep_token_id: int
    unk_token: str

    def tokenize(self, text: str) -> list[str]:
        """WordPieces of ``text``, without special tokens."""
        ...

    def convert_tokens_to_ids(self, tokens: list[str]) -> list[int]:
        """Vocabulary ids of ``tokens``."""
        ...


class WordPieceTokenizer:
    """A BERT WordPiece tokenizer on the ``tokenizers`` library, without ``transformers``.

    Produces the same tokens as ``transformers``' fast BERT tokenizer for the same files.

    Args:
        tokenizer: A ``tokenizers.Tokenizer`` with a WordPiece model and BERT specials.
    """

    def __init__(self, tokenizer: Any, *, unk_token: str = "[UNK]"):
        self._tok = tokenizer
        self.unk_token = unk_token
        self.cls_token_id = self._required_id("[CLS]")
        self.sep_token_id = self._required_id("[SEP]")

    @classmethod
    def from_vocab(cls, vocab_path: str | Path, *, lowercase: bool = True) -> WordPieceTokenizer:
        """Build from a ``vocab.txt`` with BERT's normaliser (uncased by default)."""
        from tokenizers import BertWordPieceTokenizer

        return cls(BertWordPieceTokenizer(str(vocab_path), lowercase=lowercase)._tokenizer)

    @classmethod
    def from_dir(cls, directory: str | Path) -> WordPieceTokenizer:
        """Load from a Hugging Face model directory: ``tokenizer.json``, else ``vocab.txt``."""
        directory = Path(directory)
        if (directory / "tokenizer.json").is_file():
            from tokenizers import Tokenizer

            return cls(Tokenizer.from_file(str(directory / "tokenizer.json")))
        return cls.from_vocab(directory / "vocab.txt")

    def _required_id(self, token: str) -> int:
        token_id = self._tok.token_to_id(token)
        if token_id is None:
            raise ValueError(f"the tokenizer's vocabulary has no {token} token")
        return int(token_id)

    def tokenize(self, text: str) -> list[str]:
        """WordPieces of ``text``, without special tokens."""
        return list(self._tok.encode(text, add_special_tokens=False).tokens)

    def convert_tokens_to_ids(self, tokens: list[str]) -> list[int]:
        """Vocabulary ids of ``tokens`` (unknown tokens map to the ``[UNK]`` id)."""
        unk = self._tok.token_to_id(self.unk_token)
        ids = (self._tok.token_to_id(t) for t in tokens)
        return [unk if i is None else i for i in ids]
