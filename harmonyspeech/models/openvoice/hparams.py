"""The converter's ``config.json`` (OpenVoice V2: ``_version_`` v2, ``zero_g`` true)."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from harmonyspeech.errors import ModelLoadError


@dataclass(frozen=True)
class ConverterHParams:
    """What the network's shapes and the spectrogram depend on."""

    sampling_rate: int
    filter_length: int
    hop_length: int
    win_length: int
    inter_channels: int
    hidden_channels: int
    resblock_kernel_sizes: tuple[int, ...]
    resblock_dilation_sizes: tuple[tuple[int, ...], ...]
    upsample_rates: tuple[int, ...]
    upsample_initial_channel: int
    upsample_kernel_sizes: tuple[int, ...]
    gin_channels: int
    zero_g: bool

    @property
    def spec_channels(self) -> int:
        return self.filter_length // 2 + 1

    @classmethod
    def from_dict(cls, config: dict[str, Any]) -> ConverterHParams:
        try:
            data, model = config["data"], config["model"]
            if model.get("resblock", "1") != "1":
                raise ValueError(f"resblock {model['resblock']!r} (only '1' is supported)")
            return cls(
                sampling_rate=int(data["sampling_rate"]),
                filter_length=int(data["filter_length"]),
                hop_length=int(data["hop_length"]),
                win_length=int(data["win_length"]),
                inter_channels=int(model["inter_channels"]),
                hidden_channels=int(model["hidden_channels"]),
                resblock_kernel_sizes=tuple(model["resblock_kernel_sizes"]),
                resblock_dilation_sizes=tuple(tuple(d) for d in model["resblock_dilation_sizes"]),
                upsample_rates=tuple(model["upsample_rates"]),
                upsample_initial_channel=int(model["upsample_initial_channel"]),
                upsample_kernel_sizes=tuple(model["upsample_kernel_sizes"]),
                gin_channels=int(model["gin_channels"]),
                zero_g=bool(model.get("zero_g", False)),
            )
        except (KeyError, TypeError, ValueError) as exc:
            raise ModelLoadError(f"not an OpenVoice converter config: {exc!r}") from exc

    @classmethod
    def from_file(cls, path: Path) -> ConverterHParams:
        try:
            config = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, json.JSONDecodeError) as exc:
            raise ModelLoadError(f"cannot read converter config {path}: {exc}") from exc
        return cls.from_dict(config)
