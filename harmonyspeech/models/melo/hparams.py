"""MeloTTS hyperparameters, read from a checkpoint's ``config.json``.

The file has the upstream HParams layout: sections ``train``, ``data`` and ``model`` plus the
top-level ``symbols``, ``num_tones`` and ``num_languages``. Only what the network and the
synthesizer need is read; training-only keys are ignored, and options this runtime does not
implement are rejected with a clear message instead of loading a network that would compute
something else. This module does not import torch, so the adapter can read a checkpoint's facts
cheaply.
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any


class ConfigFormatError(ValueError):
    """A ``config.json`` is missing a field, has a wrong type, or asks for an unsupported option."""


@dataclass(frozen=True)
class MeloHParams:
    """The facts of one MeloTTS checkpoint that shape its network and its inputs.

    Attributes:
        symbols: Phone symbols in id order (``config.json["symbols"]``, never ``symbols.py``).
        spk2id: Speaker name to row of the speaker table.
        num_tones: Rows of the tone embedding.
        num_languages: Rows of the language embedding.
        sampling_rate: Output sample rate in Hz (44100 for the official models).
        hop_length: Audio samples per latent frame; equals the product of ``upsample_rates``.
        filter_length: STFT size of the training spectrogram (sets the posterior encoder input).
        n_speakers: ``data.n_speakers``. The speaker table is sized from the checkpoint tensor.
        add_blank: Whether the frontend intersperses blank (id 0) tokens.
        disable_bert: Whether BERT features are zeroed for this model.
    """

    symbols: tuple[str, ...]
    spk2id: Mapping[str, int]
    num_tones: int
    num_languages: int
    sampling_rate: int
    hop_length: int
    filter_length: int
    n_speakers: int
    add_blank: bool
    disable_bert: bool
    inter_channels: int
    hidden_channels: int
    filter_channels: int
    n_heads: int
    n_layers: int
    n_layers_trans_flow: int
    kernel_size: int
    resblock_kernel_sizes: tuple[int, ...]
    resblock_dilation_sizes: tuple[tuple[int, ...], ...]
    upsample_rates: tuple[int, ...]
    upsample_initial_channel: int
    upsample_kernel_sizes: tuple[int, ...]
    gin_channels: int
    use_spk_conditioned_encoder: bool = True
    n_flow_layer: int = 4

    @property
    def n_vocab(self) -> int:
        """Rows of the phone embedding."""
        return len(self.symbols)

    @property
    def spec_channels(self) -> int:
        """Linear-spectrogram bins the posterior encoder reads."""
        return self.filter_length // 2 + 1

    @property
    def encoder_gin_channels(self) -> int:
        """Speaker channels fed to the text encoder (0 when it is not speaker-conditioned)."""
        return self.gin_channels if self.use_spk_conditioned_encoder else 0

    @classmethod
    def from_file(cls, path: str | Path) -> MeloHParams:
        """Parse a ``config.json``.

        Raises:
            ConfigFormatError: The file is not valid JSON or not a usable MeloTTS config.
        """
        try:
            config = json.loads(Path(path).read_text(encoding="utf-8"))
        except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
            raise ConfigFormatError(f"cannot read {path}: {exc}") from exc
        return cls.from_dict(config)

    @classmethod
    def from_dict(cls, config: Mapping[str, Any]) -> MeloHParams:
        """Build from the parsed JSON object of a ``config.json``.

        Raises:
            ConfigFormatError: A field is missing or wrong, or an option is unsupported.
        """
        data = _section(config, "data")
        model = _section(config, "model")
        _reject_unsupported(model, data)
        hparams = cls(
            symbols=tuple(_field(config, "symbols", list, "")),
            spk2id=dict(_field(data, "spk2id", dict, "data")),
            num_tones=_field(config, "num_tones", int, ""),
            num_languages=_field(config, "num_languages", int, ""),
            sampling_rate=_field(data, "sampling_rate", int, "data"),
            hop_length=_field(data, "hop_length", int, "data"),
            filter_length=_field(data, "filter_length", int, "data"),
            n_speakers=_field(data, "n_speakers", int, "data"),
            add_blank=bool(data.get("add_blank", True)),
            disable_bert=bool(data.get("disable_bert", False)),
            inter_channels=_field(model, "inter_channels", int, "model"),
            hidden_channels=_field(model, "hidden_channels", int, "model"),
            filter_channels=_field(model, "filter_channels", int, "model"),
            n_heads=_field(model, "n_heads", int, "model"),
            n_layers=_field(model, "n_layers", int, "model"),
            n_layers_trans_flow=_field(model, "n_layers_trans_flow", int, "model"),
            kernel_size=_field(model, "kernel_size", int, "model"),
            resblock_kernel_sizes=tuple(_field(model, "resblock_kernel_sizes", list, "model")),
            resblock_dilation_sizes=tuple(
                tuple(d) for d in _field(model, "resblock_dilation_sizes", list, "model")
            ),
            upsample_rates=tuple(_field(model, "upsample_rates", list, "model")),
            upsample_initial_channel=_field(model, "upsample_initial_channel", int, "model"),
            upsample_kernel_sizes=tuple(_field(model, "upsample_kernel_sizes", list, "model")),
            gin_channels=_field(model, "gin_channels", int, "model"),
            use_spk_conditioned_encoder=bool(model.get("use_spk_conditioned_encoder", True)),
            n_flow_layer=int(model.get("n_flow_layer", 4)),
        )
        hparams.check()
        return hparams

    def check(self) -> None:
        """Check the cross-field constraints the network relies on.

        Raises:
            ConfigFormatError: A constraint does not hold.
        """
        problems = []
        if math.prod(self.upsample_rates) != self.hop_length:
            problems.append(f"prod(upsample_rates)={self.upsample_rates} != hop_length")
        if len(self.upsample_rates) != len(self.upsample_kernel_sizes):
            problems.append("upsample_rates and upsample_kernel_sizes differ in length")
        if len(self.resblock_kernel_sizes) != len(self.resblock_dilation_sizes):
            problems.append("resblock_kernel_sizes and resblock_dilation_sizes differ in length")
        if self.hidden_channels % self.n_heads or self.inter_channels % 2:
            problems.append("hidden_channels must divide by n_heads, inter_channels by 2")
        if self.upsample_initial_channel >> len(self.upsample_rates) < 1:
            problems.append("upsample_initial_channel too small for the number of upsamples")
        if self.gin_channels and self.n_layers <= 2:
            problems.append("n_layers must be > 2: the speaker vector is added before layer 2")
        if not all(self.resblock_dilation_sizes):
            problems.append("every resblock needs at least one dilation")
        if any(k % 2 == 0 for k in (self.kernel_size, *self.resblock_kernel_sizes)):
            problems.append("kernel sizes must be odd")
        if problems:
            raise ConfigFormatError("invalid MeloTTS config: " + "; ".join(problems))


def _section(config: Mapping[str, Any], name: str) -> Mapping[str, Any]:
    section = config.get(name)
    if not isinstance(section, Mapping):
        raise ConfigFormatError(f"config.json has no '{name}' section")
    return section


def _field(section: Mapping[str, Any], key: str, kind: type, where: str) -> Any:
    name = f"{where}.{key}" if where else key
    if key not in section:
        raise ConfigFormatError(f"config.json is missing '{name}'")
    value = section[key]
    if (kind is int and isinstance(value, bool)) or not isinstance(value, kind):
        raise ConfigFormatError(f"config.json '{name}' must be a {kind.__name__}")
    return value


# Options of the upstream constructor that change the network; this runtime implements only the
# values the released checkpoints use and refuses the rest.
_REQUIRED_MODEL_OPTIONS = {
    "resblock": "1",
    "use_transformer_flow": True,
    "flow_share_parameter": False,
    "use_vc": False,
}


def _reject_unsupported(model: Mapping[str, Any], data: Mapping[str, Any]) -> None:
    for key, supported in _REQUIRED_MODEL_OPTIONS.items():
        if key in model and model[key] != supported:
            raise ConfigFormatError(
                f"config.json model.{key}={model[key]!r} is not supported (only {supported!r})"
            )
    if data.get("n_speakers", 1) == 0:
        raise ConfigFormatError(
            "config.json data.n_speakers=0 (reference encoder) is not supported"
        )
