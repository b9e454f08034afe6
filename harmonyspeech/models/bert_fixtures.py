"""Tiny random BERT models in the Hugging Face on-disk format, for tests and benchmarks.

``build_tiny_bert_dir`` writes what ``bert-base-uncased`` ships (``config.json``, weights and
tokenizer files, via ``save_pretrained``) with a generated WordPiece vocabulary and a few
thousand random parameters, so the loading code users run (``harmonyspeech.models.bert``) can
load it offline. The vocabulary has every printable ASCII character, alone and as a ``##``
continuation, so any ASCII word tokenizes without ``[UNK]``; whole words listed in ``words``
become single tokens, as common words are in the real vocabulary.

torch and transformers are imported only inside ``build_tiny_bert_dir``; ``build_vocab`` and
``write_vocab`` need neither.
"""

from __future__ import annotations

import string
from collections.abc import Iterable
from pathlib import Path

SPECIAL_TOKENS = ("[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]")

# Common English words, plus the words the unit tests use, so that they are single WordPieces
# as they are in bert-base-uncased.
_COMMON_WORDS = """
    the of and to a in is it you that he was for on are with as i his they be at one have this
    from or had by word but what some we can out other were all there when up use your how said
    an each she which do their time if will way about many then them write would like so these
    her long make thing see him two has look more day could go come did number sound no most
    people my over know water than call first who may down side been now find any new work part
    take get place made live where after back little only round man year came show every good me
    give our under name very through just form sentence great think say help low line differ
    turn cause much mean before move right boy old too same tell does set three want air well
    also play small end put home read hand port large spell add even land here must big high
    such follow act why ask men change went light kind off need house picture try us again
    animal point mother world near build self earth father head stand own page should country
    found answer school grow study still learn plant cover food sun four between state keep eye
    never last let thought city tree cross farm hard start might story saw far sea draw left
    late run don while press close night real life few north hello doctor smith paid dollars
    dollar cents cent at ten thirty twenty four fifty nasa fbi visit today weather
    sunny cold warm quick brown fox jumps lazy dog please thank thanks yes minute hour morning
    evening tomorrow yesterday meeting office phone email open
"""
DEFAULT_WORDS = tuple(dict.fromkeys(_COMMON_WORDS.split()))


def build_vocab(words: Iterable[str] = DEFAULT_WORDS) -> list[str]:
    """A WordPiece vocabulary: specials, printable ASCII characters, ``##`` + each, then words.

    Args:
        words: Whole words to add as single tokens (lowercased; duplicates are dropped).

    Returns:
        The vocabulary in id order.
    """
    chars = [c for c in string.printable if not c.isspace() and not c.isupper()]
    tokens = [*SPECIAL_TOKENS, *chars, *(f"##{c}" for c in chars if c.isalnum())]
    tokens += [w.lower() for w in words]
    return list(dict.fromkeys(tokens))


def write_vocab(path: str | Path, words: Iterable[str] = DEFAULT_WORDS) -> Path:
    """Write ``build_vocab(words)`` as a ``vocab.txt`` (one token per line) and return its path."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("\n".join(build_vocab(words)) + "\n", encoding="utf-8")
    return path


def build_tiny_bert_dir(
    out_dir: str | Path,
    *,
    words: Iterable[str] = DEFAULT_WORDS,
    hidden_size: int = 32,
    num_layers: int = 3,
    num_heads: int = 2,
    intermediate_size: int | None = None,
    seed: int = 0,
) -> Path:
    """Write a tiny random uncased ``BertForMaskedLM`` and its tokenizer to ``out_dir``.

    Args:
        out_dir: Directory to create (or overwrite files in).
        words: Whole words in the vocabulary besides the characters.
        hidden_size: Hidden width; must be divisible by ``num_heads``.
        num_layers: Transformer layers; at least 2, so that ``hidden_states[-3]`` exists.
        num_heads: Attention heads (bert-base: 12, with 768 hidden, 12 layers, 3072 inner).
        intermediate_size: Feed-forward width; by default twice the hidden width.
        seed: Seed of the random weights.

    Returns:
        ``out_dir`` as a ``Path``; load it with ``harmonyspeech.models.bert.get_bert_extractor``.
    """
    import torch
    from transformers import BertConfig, BertForMaskedLM, BertTokenizerFast

    if num_layers < 2:
        raise ValueError("num_layers must be >= 2 so that hidden_states[-3] exists")
    out = Path(out_dir)
    vocab_path = write_vocab(out / "vocab.txt", words)
    # transformers 5 ignores vocab_file=...; vocab=<path> is the argument that loads the file.
    tokenizer = BertTokenizerFast(vocab=str(vocab_path), do_lower_case=True)
    config = BertConfig(
        vocab_size=len(build_vocab(words)),
        hidden_size=hidden_size,
        num_hidden_layers=num_layers,
        num_attention_heads=num_heads,
        intermediate_size=intermediate_size or hidden_size * 2,
        max_position_embeddings=512,
    )
    torch.manual_seed(seed)
    model = BertForMaskedLM(config).eval()
    model.save_pretrained(out)
    tokenizer.save_pretrained(out)
    return out
