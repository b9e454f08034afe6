"""Loading official MeloTTS checkpoints: ``config.json`` + ``checkpoint.pth``.

``checkpoint.pth`` is a ``torch.save`` dict whose ``"model"`` entry is the state dict (training
runs also store ``iteration``, ``optimizer`` and ``learning_rate``, which are ignored). It is read
with ``weights_only=True``, loaded into :class:`MeloNetwork` with ``strict=True``, and prepared
for inference once: weight norm folded, parameters frozen, decoder layout chosen.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from pathlib import Path

import torch
from torch import Tensor

from harmonyspeech.errors import ModelLoadError
from harmonyspeech.models.melo.hparams import ConfigFormatError, MeloHParams
from harmonyspeech.models.melo.network import MeloNetwork
from harmonyspeech.models.melo.precision import use_exact_cuda_convolutions

logger = logging.getLogger(__name__)

CONFIG_FILE = "config.json"
CHECKPOINT_FILE = "checkpoint.pth"
CHECKPOINT_FILES = (CONFIG_FILE, CHECKPOINT_FILE)
"""The files of one MeloTTS model, in every official repository."""

MELO_REPO_IDS = {
    "EN": "myshell-ai/MeloTTS-English",
    "EN_V2": "myshell-ai/MeloTTS-English-v2",
    "EN_NEWEST": "myshell-ai/MeloTTS-English-v3",
    "FR": "myshell-ai/MeloTTS-French",
    "JP": "myshell-ai/MeloTTS-Japanese",
    "ES": "myshell-ai/MeloTTS-Spanish",
    "ZH": "myshell-ai/MeloTTS-Chinese",
    "KR": "myshell-ai/MeloTTS-Korean",
}
"""Hugging Face repositories of the official models, by upstream language key."""

SPEAKER_TABLE_KEY = "emb_g.weight"


def load_hparams(checkpoint_dir: str | Path) -> MeloHParams:
    """Read ``config.json`` from a checkpoint directory.

    Raises:
        ModelLoadError: The file is missing or not a usable MeloTTS config.
    """
    path = Path(checkpoint_dir) / CONFIG_FILE
    try:
        return MeloHParams.from_file(path)
    except ConfigFormatError as exc:
        raise ModelLoadError(f"MeloTTS config {path}: {exc}") from exc


def read_state_dict(path: str | Path) -> dict[str, Tensor]:
    """The ``"model"`` state dict of a ``checkpoint.pth``, on CPU.

    Raises:
        ModelLoadError: The file is missing, not a safe tensor pickle, or has no ``"model"``.
    """
    try:
        checkpoint = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # torch raises many types (pickle, zip, OS errors)
        raise ModelLoadError(f"cannot read checkpoint {path}: {exc}") from exc
    state = checkpoint.get("model") if isinstance(checkpoint, Mapping) else None
    if not isinstance(state, Mapping) or not all(isinstance(v, Tensor) for v in state.values()):
        raise ModelLoadError(f"checkpoint {path} has no 'model' state dict")
    return dict(state)


def build_network(hparams: MeloHParams, n_speakers: int, *, device: str = "cpu") -> MeloNetwork:
    """A network with the module defaults as weights (use ``meta`` to allocate nothing)."""
    with torch.device(device):
        return MeloNetwork(hparams, n_speakers)


def network_from_state_dict(hparams: MeloHParams, state: Mapping[str, Tensor]) -> MeloNetwork:
    """Build the network for ``hparams`` and load ``state`` into it with ``strict=True``.

    The speaker table is sized from the state dict, not from ``spk2id``.

    Raises:
        ModelLoadError: The keys or shapes do not match the architecture.
    """
    if SPEAKER_TABLE_KEY not in state:
        raise ModelLoadError(f"MeloTTS state dict has no '{SPEAKER_TABLE_KEY}'")
    network = build_network(hparams, state[SPEAKER_TABLE_KEY].shape[0], device="meta")
    try:
        network.load_state_dict(state, strict=True, assign=True)
    except RuntimeError as exc:
        raise ModelLoadError(f"MeloTTS state dict does not match its config: {exc}") from exc
    return network.float()


def load_network(
    checkpoint_dir: str | Path,
    *,
    device: str | torch.device = "cpu",
    decoder_dtype: torch.dtype = torch.float32,
    channels_last: bool | None = None,
) -> tuple[MeloNetwork, MeloHParams]:
    """Load a checkpoint directory and prepare its network for inference.

    Args:
        checkpoint_dir: Directory holding ``config.json`` and ``checkpoint.pth``.
        device: Torch device for the network.
        decoder_dtype: Precision of the decoder (see :meth:`MeloNetwork.prepare_for_inference`).
        channels_last: Decoder layout; None: see :func:`prepare_network`.

    Raises:
        ModelLoadError: Any file is missing or does not match.
    """
    checkpoint_dir = Path(checkpoint_dir)
    hparams = load_hparams(checkpoint_dir)
    network = network_from_state_dict(hparams, read_state_dict(checkpoint_dir / CHECKPOINT_FILE))
    prepare_network(network, device, decoder_dtype=decoder_dtype, channels_last=channels_last)
    logger.info(
        "loaded MeloTTS checkpoint %s: %d symbols, %d speakers, %d Hz",
        checkpoint_dir,
        hparams.n_vocab,
        network.n_speakers,
        hparams.sampling_rate,
    )
    return network, hparams


def prepare_network(
    network: MeloNetwork,
    device: str | torch.device,
    *,
    decoder_dtype: torch.dtype = torch.float32,
    channels_last: bool | None = None,
) -> None:
    """Move a freshly loaded network to ``device`` and prepare it for inference, in place
    (``channels_last`` None: the decoder layout measured faster, see ``Generator.prepare``).

    On CUDA this turns cuDNN's TF32 convolutions off for the whole process
    (``use_exact_cuda_convolutions``): with them, items' lengths moved with their batch mates.
    """
    device = torch.device(device)
    use_exact_cuda_convolutions(device)
    network.to(device)
    network.prepare_for_inference(channels_last=channels_last, decoder_dtype=decoder_dtype)
