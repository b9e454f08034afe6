"""Random MeloTTS checkpoints in the official on-disk format, for tests, benchmarks and demos.

:func:`build_melo_checkpoint` writes ``config.json`` (sections ``train``/``data``/``model`` and
the official 219 symbols, 16 tones, 8 languages) and ``checkpoint.pth`` (``{"model": state}``
with weight norm stored unfolded as ``weight_g``/``weight_v``, as the released files have it),
so they load through the same code as the real models. ``size="real"`` is the official English
architecture (51.9 M parameters); ``size="tiny"`` keeps every structural feature (hop 512, five
upsampling stages, 16 posterior layers, 4 coupling flows) at a few channels, for fast tests.

The random weights are scaled so that the untrained network behaves like a plausible one:
durations of about 1-10 frames per token and a waveform that is neither silent nor clipped.
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch
from torch import Tensor

from harmonyspeech.models.melo.checkpoint import CHECKPOINT_FILE, CONFIG_FILE, build_network
from harmonyspeech.models.melo.conv import Conv
from harmonyspeech.models.melo.hparams import MeloHParams
from harmonyspeech.models.melo.network import MeloNetwork

SYMBOLS_FILE = Path(__file__).with_name("symbols.json")
"""The 219-entry symbol table of the official checkpoints."""

OFFICIAL_SPEAKERS: dict[str, dict[str, int]] = {
    "EN": {"EN-US": 0, "EN-BR": 1, "EN_INDIA": 2, "EN-AU": 3, "EN-Default": 4},
    "EN_V2": {"EN-US": 0, "EN-BR": 1, "EN_INDIA": 2, "EN-AU": 3},
    "EN_NEWEST": {"EN-Newest": 0},
}
"""``spk2id`` of the official English checkpoints (v1, v2, v3), by their language code."""

ENGLISH_SPEAKERS = OFFICIAL_SPEAKERS["EN"]
"""``spk2id`` of MeloTTS-English (v1)."""

_MODEL_SIZES: dict[str, dict[str, Any]] = {
    "real": {
        "inter_channels": 192,
        "hidden_channels": 192,
        "filter_channels": 768,
        "n_layers": 6,
        "upsample_initial_channel": 512,
        "gin_channels": 256,
    },
    "tiny": {
        "inter_channels": 16,
        "hidden_channels": 16,
        "filter_channels": 32,
        "n_layers": 3,
        "upsample_initial_channel": 32,
        "gin_channels": 16,
    },
}
_DEFAULT_N_SPEAKERS = {"real": 256, "tiny": 8}
_TARGET_FRAMES_PER_TOKEN = 2.5


def load_symbols() -> list[str]:
    """The official symbol table shipped with the package."""
    return json.loads(SYMBOLS_FILE.read_text(encoding="utf-8"))


def melo_config(
    size: str = "tiny",
    *,
    speakers: Mapping[str, int] | None = None,
    n_speakers: int | None = None,
) -> dict[str, Any]:
    """A ``config.json`` object in the official layout.

    Args:
        size: ``"real"`` (official English hyperparameters) or ``"tiny"``.
        speakers: ``spk2id``; defaults to the English v1 speakers.
        n_speakers: Rows of the speaker table; defaults to 256 (real) or 8 (tiny).
    """
    if size not in _MODEL_SIZES:
        raise ValueError(f"size must be one of {sorted(_MODEL_SIZES)}, not {size!r}")
    speakers = dict(ENGLISH_SPEAKERS if speakers is None else speakers)
    rows = _DEFAULT_N_SPEAKERS[size] if n_speakers is None else n_speakers
    if speakers and max(speakers.values()) >= rows:
        raise ValueError("every speaker id must be below n_speakers")
    return {
        "train": {
            "segment_size": 16384,
            "learning_rate": 3e-4,
            "betas": [0.8, 0.99],
            "eps": 1e-9,
            "batch_size": 6,
            "lr_decay": 0.999875,
            "c_mel": 45,
            "c_kl": 1.0,
            "fp16_run": False,
        },
        "data": {
            "training_files": "train.list",
            "validation_files": "val.list",
            "max_wav_value": 32768.0,
            "sampling_rate": 44100,
            "filter_length": 2048,
            "hop_length": 512,
            "win_length": 2048,
            "n_mel_channels": 128,
            "mel_fmin": 0.0,
            "mel_fmax": None,
            "add_blank": True,
            "n_speakers": rows,
            "cleaned_text": True,
            "spk2id": speakers,
        },
        "model": {
            "use_spk_conditioned_encoder": True,
            "use_noise_scaled_mas": True,
            "use_mel_posterior_encoder": False,
            "use_duration_discriminator": True,
            "n_heads": 2,
            "n_layers_trans_flow": 3,
            "kernel_size": 3,
            "p_dropout": 0.1,
            "resblock": "1",
            "resblock_kernel_sizes": [3, 7, 11],
            "resblock_dilation_sizes": [[1, 3, 5], [1, 3, 5], [1, 3, 5]],
            "upsample_rates": [8, 8, 2, 2, 2],
            "upsample_kernel_sizes": [16, 16, 8, 2, 2],
            "n_layers_q": 3,
            "use_spectral_norm": False,
            **_MODEL_SIZES[size],
        },
        "num_languages": 8,
        "num_tones": 16,
        "symbols": load_symbols(),
    }


def random_network(
    *,
    size: str = "tiny",
    seed: int = 0,
    speakers: Mapping[str, int] | None = None,
    n_speakers: int | None = None,
) -> tuple[MeloNetwork, MeloHParams]:
    """A freshly initialised network (weight norm unfolded) and its hyperparameters."""
    hparams = MeloHParams.from_dict(melo_config(size, speakers=speakers, n_speakers=n_speakers))
    network = build_network(
        hparams, _DEFAULT_N_SPEAKERS[size] if n_speakers is None else n_speakers
    )
    init_random_weights(network, seed=seed)
    return network, hparams


def build_melo_checkpoint(
    out_dir: str | Path,
    *,
    size: str = "tiny",
    seed: int = 0,
    speakers: Mapping[str, int] | None = None,
    n_speakers: int | None = None,
) -> Path:
    """Write ``config.json`` and ``checkpoint.pth`` of a random model into ``out_dir``.

    Args:
        out_dir: Directory to create (or reuse).
        size: ``"real"`` or ``"tiny"`` (see :func:`melo_config`).
        seed: Seed of the random weights.
        speakers: ``spk2id``; defaults to the English v1 speakers.
        n_speakers: Rows of the speaker table.

    Returns:
        ``out_dir`` as a Path.
    """
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    config = melo_config(size, speakers=speakers, n_speakers=n_speakers)
    network, _ = random_network(size=size, seed=seed, speakers=speakers, n_speakers=n_speakers)
    (out_dir / CONFIG_FILE).write_text(json.dumps(config, indent=2, ensure_ascii=False))
    # Training checkpoints also carry these; loaders must ignore them.
    checkpoint = {"model": network.state_dict(), "iteration": 0, "learning_rate": 3e-4}
    torch.save(checkpoint, out_dir / CHECKPOINT_FILE)
    return out_dir


@torch.no_grad()
def init_random_weights(network: MeloNetwork, *, seed: int = 0) -> None:
    """Give every parameter a random value scaled for a plausible untrained network.

    Weights get ``N(0, gain^2 / fan_in)``; layer norms stay near identity; weight-normed
    convolutions get a direction ``v`` whose row norms differ from ``g`` (so folding is not a
    no-op). A few outputs are set on purpose: the duration predictors aim at about
    ``_TARGET_FRAMES_PER_TOKEN`` frames per token and the prior log-scale is slightly negative.
    """
    generator = torch.Generator().manual_seed(seed)
    for name, param in network.named_parameters():
        param.copy_(_random_value(name, param, generator))
    _set_duration_priors(network)
    for module in network.modules():
        if isinstance(module, Conv) and module.has_weight_norm:
            _randomise_weight_norm(module)


def _random_value(name: str, param: Tensor, generator: torch.Generator) -> Tensor:
    def normal(std: float, mean: float = 0.0) -> Tensor:
        return torch.randn(param.shape, generator=generator) * std + mean

    leaf = name.rsplit(".", 1)[-1]
    fan_in = param[0].numel() if param.dim() > 1 else 1
    if leaf == "gamma":
        return normal(0.1, 1.0)
    if leaf in ("beta", "bias", "m", "logs"):
        return normal(0.02)
    if leaf in ("emb_rel_k", "emb_rel_v"):
        return normal(param.shape[-1] ** -0.5)
    if name == "emb_g.weight":
        return normal(1.0)
    if name.startswith("enc_p.") and leaf == "weight" and param.dim() == 2:
        return normal(param.shape[1] ** -0.5)  # phone/tone/language tables, as upstream
    if leaf == "weight_g":
        return param  # set together with weight_v below
    return normal(_gain(name) / math.sqrt(fan_in))


def _gain(name: str) -> float:
    if name.endswith(("proj.weight", "post.weight")) and (
        ".flows." in name or name.startswith("flow")
    ):
        return 0.3  # keep the flows close to (but not exactly) the identity
    if name.startswith("dec.resblocks"):
        return 0.5  # residual stacks: keep the sum of branches bounded
    if name == "dec.conv_post.weight":
        return 1.5
    return 1.0


def _set_duration_priors(network: MeloNetwork) -> None:
    log_target = math.log(_TARGET_FRAMES_PER_TOKEN)
    dp_proj = network.dp.proj
    dp_proj.weight.mul_(0.5)
    dp_proj.bias.fill_(log_target)
    # The SDP's last inverse step is (z - m) * exp(-logs): centre channel 0 on the target.
    affine = network.sdp.flows[0]
    affine.m[0] = -log_target
    affine.logs.zero_()
    log_scale = network.enc_p.proj.bias[network.enc_p.out_channels :]
    log_scale.fill_(-0.5)


def _randomise_weight_norm(conv: Conv) -> None:
    """Set ``g`` to the row norms of the drawn ``v``, then rescale ``v`` per row.

    The folded weight ``g * v / ||v||`` is thus the drawn weight, while ``v`` itself differs.
    """
    v = conv.weight_v
    norms = v.flatten(1).norm(dim=1).view(-1, *[1] * (v.dim() - 1))
    conv.weight_g.copy_(norms)
    scale = torch.linspace(0.5, 2.0, v.shape[0]).view_as(norms)
    v.mul_(scale)
