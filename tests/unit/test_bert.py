"""Shared BERT features: registry, exact batching, word2ph expansion and offline failures.

A tiny random BERT is built in the official on-disk format and loaded through the same code
users run (DESIGN.md decision 8).
"""

from __future__ import annotations

import json
import threading
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import pytest

from harmonyspeech.errors import InvalidRequestError, ModelLoadError
from harmonyspeech.models import bert
from harmonyspeech.models.bert_fixtures import build_tiny_bert_dir
from harmonyspeech.text import EnglishFrontend, WordPieceTokenizer, symbol_table, to_sequence

torch = pytest.importorskip("torch")
pytest.importorskip("transformers")

SYMBOLS_JSON = Path(__file__).resolve().parents[2] / "harmonyspeech/models/melo/symbols.json"
SENTENCES = [
    "hello.",
    "Dr. Smith paid $3.50 on 1/2/2024 at 10:30pm, and then the quick brown fox left.",
    "I don't know!",
    "Zyxqwerty?",
]


@pytest.fixture(scope="module")
def bert_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return build_tiny_bert_dir(tmp_path_factory.mktemp("tiny-bert"))


@pytest.fixture(autouse=True)
def _fresh_registry():
    bert.clear_bert_registry()
    yield
    bert.clear_bert_registry()


@pytest.fixture
def extractor(bert_dir: Path) -> bert.BertFeatureExtractor:
    return bert.get_bert_extractor(bert_dir)


def _inputs(extractor: bert.BertFeatureExtractor) -> list[tuple[tuple[int, ...], list[int]]]:
    """(token ids, word2ph after blanks) for each sentence, from the English frontend."""
    symbols = json.loads(SYMBOLS_JSON.read_text(encoding="utf-8"))
    frontend = EnglishFrontend(extractor.tokenizer, symbols)
    items = []
    for text in SENTENCES:
        out = frontend(text)
        items.append((out.token_ids, to_sequence(out, symbol_table(symbols)).word2ph))
    return items


def test_fixture_has_the_official_layout(bert_dir: Path) -> None:
    names = {p.name for p in bert_dir.iterdir()}
    assert {"config.json", "model.safetensors", "tokenizer.json", "vocab.txt"} <= names
    config = json.loads((bert_dir / "config.json").read_text())
    assert config["model_type"] == "bert"
    assert config["architectures"] == ["BertForMaskedLM"]


def test_loads_through_the_registry(extractor: bert.BertFeatureExtractor) -> None:
    assert extractor.hidden_size == 32
    assert extractor.max_tokens == 512
    assert extractor.tokenizer.tokenize("Hello.") == ["hello", "."]


def test_same_object_for_the_same_key_from_many_threads(bert_dir, monkeypatch) -> None:
    loads = []
    real_load = bert.load_bert_extractor
    gate = threading.Barrier(8)

    def counting_load(*args, **kwargs):
        loads.append(1)
        return real_load(*args, **kwargs)

    def get(_: int) -> bert.BertFeatureExtractor:
        gate.wait()
        return bert.get_bert_extractor(str(bert_dir))

    monkeypatch.setattr(bert, "load_bert_extractor", counting_load)
    with ThreadPoolExecutor(max_workers=8) as pool:
        extractors = list(pool.map(get, range(8)))
    assert len(loads) == 1
    assert all(e is extractors[0] for e in extractors)
    assert bert.get_bert_extractor(bert_dir / ".") is extractors[0]  # same directory
    assert bert.get_bert_extractor(bert_dir, dtype="bfloat16") is not extractors[0]


def test_batched_equals_single(extractor: bert.BertFeatureExtractor) -> None:
    items = _inputs(extractor)
    assert len({len(ids) for ids, _ in items}) == len(items)  # different lengths
    batched = extractor.extract_batch(items)
    for (ids, word2ph), features in zip(items, batched, strict=True):
        single = extractor.extract(ids, word2ph)
        assert features.shape == single.shape == (32, sum(word2ph))
        assert features.dtype == np.float32
        np.testing.assert_allclose(features, single, atol=1e-5, rtol=0)


def test_features_are_layer_minus_three_repeated_by_word2ph(bert_dir, extractor) -> None:
    from transformers import AutoModelForMaskedLM

    full = AutoModelForMaskedLM.from_pretrained(bert_dir).eval()
    ids, word2ph = _inputs(extractor)[1]
    with torch.inference_mode():
        hidden = full(input_ids=torch.tensor([ids]), output_hidden_states=True).hidden_states
    expected = np.repeat(hidden[-3][0].numpy(), word2ph, axis=0).T
    np.testing.assert_allclose(extractor.extract(ids, word2ph), expected, atol=1e-5, rtol=0)


def test_expand_by_word2ph_repeats_rows() -> None:
    hidden = np.arange(6, dtype=np.float32).reshape(3, 2)  # 3 tokens, 2 dims
    out = bert.expand_by_word2ph(hidden, [3, 0, 2])
    assert out.shape == (2, 5)
    np.testing.assert_array_equal(out, [[0, 0, 0, 4, 4], [1, 1, 1, 5, 5]])


@pytest.mark.parametrize("word2ph", [[1, 2], [1, 2, 3, 4], [1, -1, 1]])
def test_bad_word2ph_raises(extractor: bert.BertFeatureExtractor, word2ph: list[int]) -> None:
    ids = extractor.tokenizer("hello")["input_ids"]
    assert len(ids) == 3
    with pytest.raises(ValueError, match="word2ph"):
        extractor.extract(ids, word2ph)
    with pytest.raises(ValueError, match="word2ph"):
        bert.expand_by_word2ph(np.zeros((3, 4), np.float32), word2ph)


def test_too_many_tokens_is_a_request_error(extractor: bert.BertFeatureExtractor) -> None:
    ids = [2] + [7] * 600 + [3]
    with pytest.raises(InvalidRequestError, match="602 BERT tokens"):
        extractor.extract(ids, [1] * len(ids))


def test_empty_batch(extractor: bert.BertFeatureExtractor) -> None:
    assert extractor.extract_batch([]) == []


def test_bf16_autocast_is_close(extractor: bert.BertFeatureExtractor) -> None:
    items = _inputs(extractor)
    fp32 = extractor.extract_batch(items)
    bf16 = extractor.extract_batch(items, autocast_bf16=True)
    for a, b in zip(fp32, bf16, strict=True):
        assert b.dtype == np.float32
        np.testing.assert_allclose(a, b, atol=0.1, rtol=0)


def test_zero_features_for_bypass() -> None:
    zeros = bert.zero_features([3, 8, 2, 2])
    assert zeros.shape == (768, 15)
    assert not zeros.any()


def test_wordpiece_tokenizer_matches_transformers(bert_dir, extractor) -> None:
    light = WordPieceTokenizer.from_dir(bert_dir)
    for text in [*SENTENCES, "Café naïve 中文 🙂 #tag", "don't   stop\tme"]:
        tokens = extractor.tokenizer.tokenize(text)
        assert light.tokenize(text) == tokens
        assert light.convert_tokens_to_ids(tokens) == extractor.tokenizer.convert_tokens_to_ids(
            tokens
        )
    assert light.cls_token_id == extractor.tokenizer.cls_token_id
    assert light.sep_token_id == extractor.tokenizer.sep_token_id


def test_empty_directory_is_a_load_error(tmp_path: Path) -> None:
    with pytest.raises(ModelLoadError, match="cannot load BERT"):
        bert.get_bert_extractor(tmp_path)


def test_missing_directory_is_a_load_error(tmp_path: Path) -> None:
    with pytest.raises(ModelLoadError, match="does not exist"):
        bert.get_bert_extractor(tmp_path / "nowhere")


def test_weights_missing_is_a_load_error(bert_dir: Path, tmp_path: Path) -> None:
    partial = tmp_path / "no-weights"
    partial.mkdir()
    for name in ("config.json", "tokenizer.json", "tokenizer_config.json", "vocab.txt"):
        (partial / name).write_bytes((bert_dir / name).read_bytes())
    with pytest.raises(ModelLoadError, match="cannot load BERT"):
        bert.get_bert_extractor(partial)


def test_unknown_hub_id_offline_is_a_load_error(monkeypatch, tmp_path: Path) -> None:
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("HF_HOME", str(tmp_path))
    with pytest.raises(ModelLoadError, match="HF_HUB_OFFLINE"):
        bert.get_bert_extractor("harmonyspeech-tests/no-such-bert")


def test_failed_load_is_not_cached(monkeypatch, tmp_path: Path) -> None:
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    target = tmp_path / "later"
    with pytest.raises(ModelLoadError):
        bert.get_bert_extractor(target)
    build_tiny_bert_dir(target)
    assert bert.get_bert_extractor(target).hidden_size == 32
