"""Random-weight Whisper models in the CTranslate2 format faster-whisper loads.

Used by the tests, the benchmarks and the offline demo mode (DESIGN.md decision 7): no hub is
needed. The tokenizer is synthesised with the exact id layout of OpenAI's multilingual Whisper
vocabulary (51865 ids), because CTranslate2 and faster-whisper derive special ids and
"multilingual" from it (see reference/environment-notes.md §3):

* ids 0..255 are byte-level characters, then two-character merges up to id 50255;
* id 50256 is the empty token ``""`` (CTranslate2 >= 4.8 detects multilingual models by it);
* ``<|endoftext|>`` = 50257, ``<|startoftranscript|>`` = 50258, 99 language tokens, the task and
  control tokens, ``<|notimestamps|>`` = 50363, then 1501 timestamp tokens ``<|0.00|>``..
  ``<|30.00|>``.

torch and transformers are needed only to build a model, never to load one.
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass
from pathlib import Path

logger = logging.getLogger(__name__)

# OpenAI's language order (ids 50259..50357 of multilingual checkpoints).
LANGUAGES = (  # noqa: SIM905 (a word list reads better than 99 quoted items)
    "en zh de es ru ko fr ja pt tr pl ca nl ar sv it id hi fi vi he uk el ms cs ro da hu ta "
    "no th ur hr bg lt la mi ml cy sk te fa lv bn sr az sl kn et mk br eu is hy ne mn bs kk "
    "sq sw gl mr pa si km sn yo so af oc ka be tg sd gu am yi lo uz fo ht ps tk nn mt sa lb "
    "my bo tl mg as tt haw ln ha ba jw su "
).split()
CONTROL_TOKENS = (
    "<|translate|>",
    "<|transcribe|>",
    "<|startoflm|>",
    "<|startofprev|>",
    "<|nocaptions|>",
    "<|notimestamps|>",
)
TEXT_VOCAB = 50257  # ids below <|endoftext|>
EOT, SOT = 50257, 50258
NO_TIMESTAMPS = 50363
VOCAB_SIZE = 51865


@dataclass(frozen=True)
class WhisperDims:
    d_model: int
    layers: int
    heads: int
    ffn: int


SIZES = {
    "toy": WhisperDims(d_model=64, layers=2, heads=2, ffn=128),
    "tiny": WhisperDims(d_model=384, layers=4, heads=6, ffn=1536),
    "base": WhisperDims(d_model=512, layers=6, heads=8, ffn=2048),
}


def build_whisper_model(out_dir: str | Path, *, size: str = "toy", seed: int = 0) -> Path:
    """Write a random Whisper of ``size`` dims as a CTranslate2 model directory.

    Args:
        out_dir: Destination; created if missing. Contains ``model.bin``, ``config.json``,
            ``vocabulary.json``, ``tokenizer.json`` and ``preprocessor_config.json``.
        size: ``toy`` (3.6 M parameters, for tests), ``tiny`` or ``base`` (real dimensions).
        seed: Seed for the random weights.

    Returns:
        ``out_dir`` as a Path.
    """
    import tempfile

    import ctranslate2

    out = Path(out_dir)
    with tempfile.TemporaryDirectory(prefix="whisper-hf-") as hf_dir:
        _save_tokenizer(Path(hf_dir))
        _save_transformers_model(Path(hf_dir), SIZES[size], seed)
        converter = ctranslate2.converters.TransformersConverter(
            hf_dir, copy_files=["tokenizer.json"]
        )
        converter.convert(str(out), quantization=None, force=True)
    (out / "preprocessor_config.json").write_text(json.dumps(_preprocessor_config()))
    logger.info("built random %s Whisper in %s", size, out)
    return out


def _byte_characters() -> list[str]:
    """GPT-2's byte-to-unicode table: printable stand-ins for the 256 byte values."""
    visible = [*range(ord("!"), ord("~") + 1), *range(ord("¡"), ord("¬") + 1)]
    visible += range(ord("®"), ord("ÿ") + 1)
    table: dict[int, str] = {b: chr(b) for b in visible}
    extra = 0
    for byte in range(256):
        if byte not in table:
            table[byte] = chr(256 + extra)
            extra += 1
    return [table[b] for b in range(256)]


def _vocabulary() -> tuple[dict[str, int], list[tuple[str, str]]]:
    chars = _byte_characters()
    vocab = {c: i for i, c in enumerate(chars)}
    merges: list[tuple[str, str]] = []
    # Frequent letters first so that common text gets real merges.
    ordered = sorted(chars, key=lambda c: (not c.isalpha(), not c.isascii(), c))
    for first in ordered:
        for second in ordered:
            if len(vocab) == TEXT_VOCAB - 1:
                break
            vocab[first + second] = len(vocab)
            merges.append((first, second))
    vocab[""] = TEXT_VOCAB - 1
    return vocab, merges


def _save_tokenizer(hf_dir: Path) -> None:
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers
    from transformers import PreTrainedTokenizerFast

    vocab, merges = _vocabulary()
    tokenizer = Tokenizer(models.BPE(vocab=vocab, merges=merges))
    tokenizer.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tokenizer.decoder = decoders.ByteLevel()
    specials = ["<|endoftext|>", "<|startoftranscript|>", *(f"<|{c}|>" for c in LANGUAGES)]
    tokenizer.add_special_tokens([*specials, *CONTROL_TOKENS])
    tokenizer.add_tokens([f"<|{i * 0.02:.2f}|>" for i in range(1501)])
    assert tokenizer.get_vocab_size() == VOCAB_SIZE
    assert tokenizer.token_to_id("<|notimestamps|>") == NO_TIMESTAMPS
    wrapped = PreTrainedTokenizerFast(
        tokenizer_object=tokenizer,
        bos_token="<|endoftext|>",
        eos_token="<|endoftext|>",
        unk_token="<|endoftext|>",
        pad_token="<|endoftext|>",
    )
    wrapped.save_pretrained(hf_dir)


def _save_transformers_model(hf_dir: Path, dims: WhisperDims, seed: int) -> None:
    import torch
    from transformers import GenerationConfig, WhisperConfig, WhisperForConditionalGeneration

    config = WhisperConfig(
        vocab_size=VOCAB_SIZE,
        num_mel_bins=80,
        d_model=dims.d_model,
        encoder_layers=dims.layers,
        decoder_layers=dims.layers,
        encoder_attention_heads=dims.heads,
        decoder_attention_heads=dims.heads,
        encoder_ffn_dim=dims.ffn,
        decoder_ffn_dim=dims.ffn,
        max_source_positions=1500,
        max_target_positions=448,
        pad_token_id=EOT,
        bos_token_id=EOT,
        eos_token_id=EOT,
        decoder_start_token_id=SOT,
    )
    torch.manual_seed(seed)
    model = WhisperForConditionalGeneration(config).eval()
    space = _vocabulary()[0]["Ġ"]
    model.generation_config = GenerationConfig(
        decoder_start_token_id=SOT,
        eos_token_id=EOT,
        suppress_tokens=[],
        begin_suppress_tokens=[space, EOT],
        lang_to_id={f"<|{c}|>": SOT + 1 + i for i, c in enumerate(LANGUAGES)},
        task_to_id={"translate": SOT + 1 + len(LANGUAGES), "transcribe": SOT + 2 + len(LANGUAGES)},
        no_timestamps_token_id=NO_TIMESTAMPS,
        is_multilingual=True,
        alignment_heads=[[dims.layers - 1, 0]],
        max_length=448,
    )
    model.save_pretrained(hf_dir)


def _preprocessor_config() -> dict[str, object]:
    return {
        "feature_size": 80,
        "hop_length": 160,
        "n_fft": 400,
        "n_samples": 480000,
        "nb_max_frames": 3000,
        "sampling_rate": 16000,
        "chunk_length": 30,
        "padding_value": 0.0,
    }
