"""Random OpenVoice V2 converters in the official on-disk layout, for tests and benchmarks.

``build_converter_checkpoint`` writes ``converter/config.json``, ``converter/checkpoint.pth``
(``{"model": state_dict}`` with legacy weight-norm names, as the official file) and one
``base_speakers/ses/<speaker>.pth`` ``[1, 256, 1]`` tensor per speaker, so the loading code runs
exactly as on the real files.
"""

from __future__ import annotations

import json
import math
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch

from harmonyspeech.models.melo.fixtures import ENGLISH_SPEAKERS
from harmonyspeech.models.openvoice.converter import (
    BASE_SPEAKERS_DIR,
    CONVERTER_DIR,
    base_speaker_file,
)
from harmonyspeech.models.openvoice.hparams import ConverterHParams
from harmonyspeech.models.openvoice.network import ConverterNetwork


def converter_config(size: str = "tiny") -> dict[str, Any]:
    """The official V2 ``config.json`` (``real``), or the same with narrow layers (``tiny``)."""
    real = size == "real"
    if size not in ("real", "tiny"):
        raise ValueError(f"size must be 'real' or 'tiny', not {size!r}")
    return {
        "_version_": "v2",
        "data": {
            "sampling_rate": 22050,
            "filter_length": 1024,
            "hop_length": 256,
            "win_length": 1024,
            "n_speakers": 0,
        },
        "model": {
            "zero_g": True,
            "inter_channels": 192 if real else 16,
            "hidden_channels": 192 if real else 16,
            "filter_channels": 768,
            "n_heads": 2,
            "n_layers": 6,
            "kernel_size": 3,
            "p_dropout": 0.1,
            "resblock": "1",
            "resblock_kernel_sizes": [3, 7, 11] if real else [3],
            "resblock_dilation_sizes": [[1, 3, 5]] * (3 if real else 1),
            "upsample_rates": [8, 8, 2, 2],
            "upsample_initial_channel": 512 if real else 32,
            "upsample_kernel_sizes": [16, 16, 4, 4],
            "gin_channels": 256,
        },
    }


@torch.no_grad()
def random_converter(size: str = "tiny", *, seed: int = 0) -> ConverterNetwork:
    """A converter with random weights scaled like an untrained network (weight norm kept)."""
    network = ConverterNetwork(ConverterHParams.from_dict(converter_config(size)))
    generator = torch.Generator().manual_seed(seed)
    for name, param in network.named_parameters():
        leaf = name.rsplit(".", 1)[-1]
        if leaf == "weight_g":
            continue  # set from weight_v below
        if leaf.startswith("bias") or param.dim() == 1:
            base = 1.0 if name.endswith("layernorm.weight") else 0.0
            param.copy_(base + 0.02 * torch.randn(param.shape, generator=generator))
            continue
        gain = 0.3 if name.startswith("flow") and ".post." in name else 1.0
        fan_in = param[0].numel()
        param.copy_(torch.randn(param.shape, generator=generator) * gain / math.sqrt(fan_in))
    for name, param in network.named_parameters():
        if name.endswith("weight_g"):
            direction = dict(network.named_parameters())[name[: -len("g")] + "v"]
            norms = direction.flatten(1).norm(dim=1).view(param.shape)
            scale = 0.8 + 0.4 * torch.rand(param.shape, generator=generator)
            param.copy_(norms * scale)  # not a no-op when folded
    return network


def build_converter_checkpoint(
    out_dir: str | Path,
    *,
    size: str = "tiny",
    seed: int = 0,
    speakers: Sequence[str] = tuple(ENGLISH_SPEAKERS),
) -> Path:
    """Write a random converter and base-speaker embeddings into ``out_dir``; returns it."""
    out_dir = Path(out_dir)
    converter = out_dir / CONVERTER_DIR
    converter.mkdir(parents=True, exist_ok=True)
    (converter / "config.json").write_text(json.dumps(converter_config(size), indent=2))
    state = random_converter(size, seed=seed).state_dict()
    torch.save({"model": state, "iteration": 0}, converter / "checkpoint.pth")
    ses = out_dir / BASE_SPEAKERS_DIR
    ses.mkdir(parents=True, exist_ok=True)
    generator = torch.Generator().manual_seed(seed + 1)
    for speaker in speakers:
        embedding = 0.1 * torch.randn(1, 256, 1, generator=generator)
        torch.save(embedding, ses / base_speaker_file(speaker))
    return out_dir
