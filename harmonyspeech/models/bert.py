"""BERT features for TTS models, one shared model per (BERT, device, dtype) per process.

MeloTTS conditions on a BERT layer (spec §3.1 steps 5–6): the hidden state ``hidden_states[-3]``
of every token, repeated ``word2ph[i]`` times so that there is one 768-d column per phone. Every
TTS model that names the same BERT shares one ``BertFeatureExtractor`` from
``get_bert_extractor`` (DESIGN.md decision 6), and a batch of sentences runs in one forward pass.

Weights resolve as DESIGN.md decision 7: an explicit local directory, else the local Hugging
Face cache, else a hub download (skipped when ``HF_HUB_OFFLINE``/``TRANSFORMERS_OFFLINE`` is
set). Failures raise ``ModelLoadError``.

Since only layer ``L-2`` is needed, the extractor drops the last two transformer layers and the
MLM head after loading; that is exact and saves a sixth of the compute of a 12-layer BERT.
torch and transformers are imported inside functions only.
"""

from __future__ import annotations

import logging
import os
import threading
from collections.abc import Sequence
from contextlib import nullcontext
from pathlib import Path
from typing import Any

import numpy as np

from harmonyspeech.errors import InvalidRequestError, ModelLoadError

logger = logging.getLogger(__name__)

FEATURE_LAYER = -3
"""The hidden state MeloTTS uses: ``hidden_states[-3]`` (layer 10 of 12)."""

_DTYPES = ("float32", "bfloat16", "float16")
_OFFLINE_VARS = ("HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE")
_TRUE = ("1", "true", "yes", "on")


class BertFeatureExtractor:
    """A loaded BERT that turns token ids plus word2ph into per-phone features.

    Thread-safe: inference only reads the model. Build through ``get_bert_extractor``.

    Args:
        model: A Hugging Face masked-LM or base BERT model, already on its device in eval mode.
            The extractor owns it from then on: it keeps the base model only and drops the
            layers after the feature layer.
        tokenizer: The tokenizer from the same directory (usable by the text frontends).
        source: Where the model came from (a directory or a hub id), for messages.
    """

    def __init__(self, model: Any, tokenizer: Any, *, source: str):
        self.tokenizer = tokenizer
        self.source = source
        base = getattr(model, "base_model", model)
        self.hidden_size = int(base.config.hidden_size)
        self.max_tokens = int(getattr(base.config, "max_position_embeddings", 512))
        self.pad_id = int(getattr(tokenizer, "pad_token_id", None) or 0)
        self._model, self._truncated = _keep_feature_layers(base)

    @property
    def device(self) -> Any:
        """The torch device the model runs on."""
        return next(self._model.parameters()).device

    def extract(
        self, token_ids: Sequence[int], word2ph: Sequence[int], *, autocast_bf16: bool = False
    ) -> np.ndarray:
        """Features of one sentence: ``[hidden_size, sum(word2ph)]`` float32."""
        return self.extract_batch([(token_ids, word2ph)], autocast_bf16=autocast_bf16)[0]

    def extract_batch(
        self,
        items: Sequence[tuple[Sequence[int], Sequence[int]]],
        *,
        autocast_bf16: bool = False,
    ) -> list[np.ndarray]:
        """Features of several sentences in one forward pass.

        Args:
            items: ``(token_ids, word2ph)`` per sentence; token ids include ``[CLS]``/``[SEP]``
                and ``len(word2ph) == len(token_ids)``.
            autocast_bf16: Run the forward pass under bfloat16 autocast. Faster only where
                the hardware has bf16 matmuls (AVX512-BF16/AMX CPUs, recent GPUs); several
                times slower on AVX2-only CPUs. See ``benchmarks/bench_frontend.py``.

        Returns:
            One ``[hidden_size, sum(word2ph)]`` float32 array per item, each equal to the item
            run alone (right padding is masked out).

        Raises:
            ValueError: A word2ph does not match its token ids.
            InvalidRequestError: A sentence has more tokens than the BERT's positions.
        """
        if not items:
            return []
        for ids, word2ph in items:
            self._check(ids, word2ph)
        hidden = self._forward([ids for ids, _ in items], autocast_bf16)
        return [
            expand_by_word2ph(hidden[i, : len(ids)], word2ph)
            for i, (ids, word2ph) in enumerate(items)
        ]

    def _check(self, ids: Sequence[int], word2ph: Sequence[int]) -> None:
        if len(ids) != len(word2ph):
            raise ValueError(f"word2ph has {len(word2ph)} entries for {len(ids)} BERT tokens")
        if any(n < 0 for n in word2ph):
            raise ValueError("word2ph entries must be >= 0")
        if len(ids) > self.max_tokens:
            raise InvalidRequestError(
                f"a sentence has {len(ids)} BERT tokens, more than the {self.max_tokens} "
                "this model accepts; split the text into shorter sentences",
                param="input",
            )

    def _forward(self, batch_ids: list[Sequence[int]], autocast_bf16: bool) -> np.ndarray:
        import torch

        device = self.device
        longest = max(len(ids) for ids in batch_ids)
        input_ids = torch.full((len(batch_ids), longest), self.pad_id, dtype=torch.long)
        mask = torch.zeros((len(batch_ids), longest), dtype=torch.long)
        for row, ids in enumerate(batch_ids):
            input_ids[row, : len(ids)] = torch.as_tensor(list(ids), dtype=torch.long)
            mask[row, : len(ids)] = 1
        autocast = (
            torch.autocast(device_type=device.type, dtype=torch.bfloat16)
            if autocast_bf16
            else nullcontext()
        )
        with torch.inference_mode(), autocast:
            out = self._model(
                input_ids=input_ids.to(device),
                attention_mask=mask.to(device),
                output_hidden_states=not self._truncated,
            )
            hidden = out.last_hidden_state if self._truncated else out.hidden_states[FEATURE_LAYER]
            return hidden.float().cpu().numpy()


def expand_by_word2ph(hidden: np.ndarray, word2ph: Sequence[int]) -> np.ndarray:
    """Repeat token row ``i`` of ``hidden`` ``word2ph[i]`` times: ``[T, D]`` → ``[D, Σword2ph]``.

    Raises:
        ValueError: ``word2ph`` does not have one entry per row, or has a negative entry.
    """
    if len(word2ph) != hidden.shape[0]:
        raise ValueError(f"word2ph has {len(word2ph)} entries for {hidden.shape[0]} tokens")
    counts = np.asarray(word2ph, dtype=np.int64)
    if (counts < 0).any():
        raise ValueError("word2ph entries must be >= 0")
    return np.ascontiguousarray(np.repeat(hidden, counts, axis=0).T, dtype=np.float32)


def zero_features(word2ph: Sequence[int], hidden_size: int = 768) -> np.ndarray:
    """The features to use when BERT is switched off: zeros of ``[hidden_size, Σword2ph]``."""
    return np.zeros((hidden_size, int(sum(word2ph))), dtype=np.float32)


def _keep_feature_layers(base: Any) -> tuple[Any, bool]:
    """Drop the layers after the feature layer when the model has BERT's layout."""
    import torch

    layers = getattr(getattr(base, "encoder", None), "layer", None)
    if not isinstance(layers, torch.nn.ModuleList) or len(layers) < -FEATURE_LAYER - 1:
        return base, False
    # hidden_states has L+1 entries (embeddings first), so [-3] is the output of layer L-2.
    base.encoder.layer = layers[: len(layers) + FEATURE_LAYER + 1]
    return base, True


# ---- loading and the process-wide registry -------------------------------------------------

_registry: dict[tuple[str, str, str], BertFeatureExtractor] = {}
_key_locks: dict[tuple[str, str, str], threading.Lock] = {}
_registry_lock = threading.Lock()


def get_bert_extractor(
    source: str | os.PathLike[str], *, device: str = "cpu", dtype: str = "float32"
) -> BertFeatureExtractor:
    """The shared extractor for ``(source, device, dtype)``, loading it on first use.

    Several threads asking for the same key get the same object, loaded once; different keys
    load in parallel.

    Args:
        source: A local model directory, or a hub id such as ``"bert-base-uncased"``.
        device: Torch device, e.g. ``"cpu"`` or ``"cuda:0"``.
        dtype: ``"float32"``, ``"bfloat16"`` or ``"float16"`` weights.

    Raises:
        ModelLoadError: The model cannot be found or loaded.
    """
    key = (_canonical_source(source), str(device), dtype)
    with _registry_lock:
        extractor = _registry.get(key)
        if extractor is not None:
            return extractor
        key_lock = _key_locks.setdefault(key, threading.Lock())
    with key_lock:
        extractor = _registry.get(key)
        if extractor is None:
            extractor = load_bert_extractor(key[0], device=device, dtype=dtype)
            with _registry_lock:
                _registry[key] = extractor
    return extractor


def clear_bert_registry() -> None:
    """Forget all shared extractors (their memory is freed once no model holds them)."""
    with _registry_lock:
        _registry.clear()
        _key_locks.clear()


def load_bert_extractor(
    source: str | os.PathLike[str], *, device: str = "cpu", dtype: str = "float32"
) -> BertFeatureExtractor:
    """Load a new, unshared extractor (``get_bert_extractor`` is the cached way).

    Raises:
        ModelLoadError: The model cannot be found or loaded.
    """
    if dtype not in _DTYPES:
        raise ValueError(f"dtype must be one of {', '.join(_DTYPES)}, not {dtype!r}")
    name = str(source)
    path = Path(name).expanduser()
    if path.is_dir():
        model, tokenizer = _load_pretrained(str(path), dtype, local_only=True)
    elif _looks_like_path(name):
        raise ModelLoadError(f"BERT directory {name} does not exist")
    else:
        model, tokenizer = _load_from_hub(name, dtype)
    model = model.to(device).eval().requires_grad_(False)
    logger.info("loaded BERT %s on %s (%s)", name, device, dtype)
    return BertFeatureExtractor(model, tokenizer, source=name)


def _load_from_hub(name: str, dtype: str) -> tuple[Any, Any]:
    try:
        return _load_pretrained(name, dtype, local_only=True)
    except ModelLoadError:
        if _hub_offline():
            raise ModelLoadError(
                f"BERT {name!r} is not in the local Hugging Face cache and hub downloads are "
                "off (HF_HUB_OFFLINE); download it beforehand or configure a local directory"
            ) from None
    logger.info("downloading BERT %s from the Hugging Face hub", name)
    return _load_pretrained(name, dtype, local_only=False)


def _load_pretrained(name: str, dtype: str, *, local_only: bool) -> tuple[Any, Any]:
    import torch
    from transformers import AutoModelForMaskedLM, AutoTokenizer

    try:
        tokenizer = AutoTokenizer.from_pretrained(name, local_files_only=local_only)
        model = AutoModelForMaskedLM.from_pretrained(
            name, local_files_only=local_only, dtype=getattr(torch, dtype)
        )
    except Exception as exc:  # transformers raises OSError, ValueError, hub errors...
        where = "locally" if local_only else "from the hub"
        raise ModelLoadError(f"cannot load BERT {name!r} {where}: {exc}") from exc
    return model, tokenizer


def _canonical_source(source: str | os.PathLike[str]) -> str:
    path = Path(source).expanduser()
    return str(path.resolve()) if path.is_dir() else str(source)


def _looks_like_path(name: str) -> bool:
    return os.path.isabs(name) or name.startswith((".", "~"))


def _hub_offline() -> bool:
    # huggingface_hub reads these variables once, at import; read them again now.
    if any(os.environ.get(v, "").strip().lower() in _TRUE for v in _OFFLINE_VARS):
        return True
    try:
        import huggingface_hub

        return bool(huggingface_hub.is_offline_mode())
    except (ImportError, AttributeError):
        return False
