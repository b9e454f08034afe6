"""Checkpoint format, strict loading and weight-norm folding."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch

from harmonyspeech.errors import ModelLoadError
from harmonyspeech.models.melo import MeloSynthesizer, build_melo_checkpoint, precision
from harmonyspeech.models.melo.checkpoint import (
    CHECKPOINT_FILE,
    CONFIG_FILE,
    build_network,
    load_network,
    network_from_state_dict,
    read_state_dict,
)
from harmonyspeech.models.melo.conv import Conv, fold_weight_norm
from harmonyspeech.models.melo.fixtures import load_symbols, melo_config
from harmonyspeech.models.melo.hparams import MeloHParams
from harmonyspeech.models.melo.network import PerItemNoise
from tests.unit.melo.helpers import make_item, max_abs_diff

REFERENCE_STATE_DICT = Path(__file__).resolve().parents[2] / "data/melo/melotts_state_dict.txt"
OFFICIAL_PARAMETERS = 51_873_713


def _reference_shapes() -> dict[str, list[int]]:
    shapes = {}
    for line in REFERENCE_STATE_DICT.read_text().splitlines():
        key, shape = line.split(" ", 1)
        shapes[key] = json.loads(shape)
    return shapes


def test_real_architecture_matches_the_official_state_dict() -> None:
    hparams = MeloHParams.from_dict(melo_config("real"))
    network = build_network(hparams, 256, device="meta")
    ours = {key: list(value.shape) for key, value in network.state_dict().items()}
    reference = _reference_shapes()
    assert len(reference) == 1051
    assert sorted(set(ours) - set(reference)) == []
    assert sorted(set(reference) - set(ours)) == []
    assert ours == reference
    assert sum(p.numel() for p in network.parameters()) == OFFICIAL_PARAMETERS


def test_fixture_checkpoint_has_the_official_format(tiny_checkpoint: Path) -> None:
    config = json.loads((tiny_checkpoint / CONFIG_FILE).read_text())
    assert {"train", "data", "model", "symbols", "num_tones", "num_languages"} <= set(config)
    assert config["symbols"] == load_symbols() and len(config["symbols"]) == 219
    assert (config["num_tones"], config["num_languages"]) == (16, 8)
    assert config["data"]["spk2id"]["EN-US"] == 0
    raw = torch.load(tiny_checkpoint / CHECKPOINT_FILE, map_location="cpu", weights_only=True)
    state = raw["model"]
    assert "dec.ups.0.weight_g" in state and "dec.ups.0.weight" not in state
    assert state["dec.ups.0.weight_g"].shape[0] == state["dec.ups.0.weight_v"].shape[0]
    assert state["emb_g.weight"].shape[0] == config["data"]["n_speakers"]


def test_official_symbol_ids() -> None:
    ids = {symbol: i for i, symbol in enumerate(load_symbols())}
    assert (ids["_"], ids["~"], ids["¡"], ids["¿"], ids["!"], ids["."]) == (
        0,
        114,
        115,
        116,
        210,
        214,
    )
    assert (ids["SP"], ids["UNK"], ids["V"], ids["aa"]) == (217, 218, 14, 21)


def test_load_folds_every_weight_norm(tiny_checkpoint: Path) -> None:
    network, hparams = load_network(tiny_checkpoint)
    names = [name for name, _ in network.named_parameters()]
    assert not [n for n in names if n.endswith(("weight_g", "weight_v"))]
    assert not any(p.requires_grad for p in network.parameters())
    assert hparams.sampling_rate == 44100 and hparams.hop_length == 512


def test_strict_load_rejects_missing_and_unexpected_keys(tiny_checkpoint: Path) -> None:
    hparams = MeloHParams.from_file(tiny_checkpoint / CONFIG_FILE)
    state = read_state_dict(tiny_checkpoint / CHECKPOINT_FILE)
    network_from_state_dict(hparams, state)
    missing = {k: v for k, v in state.items() if k != "enc_q.proj.bias"}
    with pytest.raises(ModelLoadError, match=r"enc_q\.proj\.bias"):
        network_from_state_dict(hparams, missing)
    with pytest.raises(ModelLoadError, match="ref_enc"):
        network_from_state_dict(hparams, {**state, "ref_enc.proj.weight": torch.zeros(1)})


def test_unreadable_files_raise_model_load_error(tmp_path: Path, tiny_checkpoint: Path) -> None:
    with pytest.raises(ModelLoadError, match=r"config\.json"):
        load_network(tmp_path)
    (tmp_path / CONFIG_FILE).write_text((tiny_checkpoint / CONFIG_FILE).read_text())
    (tmp_path / CHECKPOINT_FILE).write_bytes(b"not a checkpoint")
    with pytest.raises(ModelLoadError, match="cannot read"):
        load_network(tmp_path)
    torch.save({"state_dict": {}}, tmp_path / CHECKPOINT_FILE)
    with pytest.raises(ModelLoadError, match="no 'model'"):
        load_network(tmp_path)


def test_speaker_table_size_comes_from_the_checkpoint(tmp_path: Path) -> None:
    path = build_melo_checkpoint(tmp_path, speakers={"A": 0, "B": 5}, n_speakers=12)
    synth = MeloSynthesizer.from_checkpoint_dir(path)
    assert synth.n_speakers == 12
    assert synth.spk2id == {"A": 0, "B": 5}
    assert len(synth.synthesize([make_item(5, speaker_id=11, seed=0)])[0]) > 0


@pytest.mark.parametrize("transposed", [False, True])
def test_folded_conv_equals_weight_norm_conv(transposed: bool) -> None:
    torch.manual_seed(0)
    conv = Conv(
        6, 4, 5, stride=2 if transposed else 1, padding=1, weight_norm=True, transposed=transposed
    )
    with torch.no_grad():
        conv.weight_g.mul_(torch.rand_like(conv.weight_g) + 0.5)
    x = torch.randn(2, 6, 17)
    expected = conv(x)
    g, v = conv.weight_g.detach().clone(), conv.weight_v.detach().clone()
    assert g.shape == (6 if transposed else 4, 1, 1)
    assert fold_weight_norm(conv) == 1
    norms = v.flatten(1).norm(dim=1).view(-1, 1, 1)
    assert torch.allclose(conv.weight, g * v / norms, atol=1e-6)
    assert torch.allclose(conv(x), expected, atol=1e-5)
    conv.use_channels_last()
    as_2d = conv(x.unsqueeze(2).contiguous(memory_format=torch.channels_last)).squeeze(2)
    assert torch.allclose(as_2d, expected, atol=1e-5)


def test_prepared_network_equals_the_unprepared_one(tiny_checkpoint: Path) -> None:
    """Folding, freezing and the channels-last decoder change nothing but speed."""
    synth = MeloSynthesizer.from_checkpoint_dir(tiny_checkpoint)
    hparams = MeloHParams.from_file(tiny_checkpoint / CONFIG_FILE)
    raw = network_from_state_dict(hparams, read_state_dict(tiny_checkpoint / CHECKPOINT_FILE))
    raw.eval()
    items = [make_item(17, seed=3, rng_seed=1), make_item(6, seed=4, rng_seed=2)]
    prepared = synth.synthesize(items)
    out = raw.infer(synth._collate(items), PerItemNoise([3, 4]))
    for i, audio in enumerate(prepared):
        frames = int(out.frames[i])
        unfolded = out.audio[i, : frames * synth.hop_length].detach().numpy()
        assert max_abs_diff(audio, unfolded) <= 1e-5


@pytest.mark.parametrize("native_fp16", [True, False])
def test_float16_on_cpu_needs_native_float16(
    tiny_checkpoint: Path, monkeypatch: pytest.MonkeyPatch, native_fp16: bool
) -> None:
    """Emulated float16 ran 20x slower than float32 here: refused with the way out."""
    monkeypatch.setattr(precision, "cpu_has_native_fp16", lambda: native_fp16)
    if native_fp16:
        assert precision.resolve_decoder_dtype("float16", "cpu") == torch.float16
        return
    with pytest.raises(ValueError, match=r"float16 is emulated on this CPU.*use bfloat16"):
        MeloSynthesizer.from_checkpoint_dir(tiny_checkpoint, dtype="float16")
    assert precision.resolve_decoder_dtype("float16", "cuda") == torch.float16


def test_bfloat16_decoder_keeps_lengths(tiny_checkpoint: Path, tiny_synth) -> None:
    bf16 = MeloSynthesizer.from_checkpoint_dir(tiny_checkpoint, dtype="bfloat16")
    item = make_item(7, seed=1)
    a, b = tiny_synth.synthesize([item])[0], bf16.synthesize([item])[0]
    assert a.shape == b.shape and b.dtype == np.float32
    assert max_abs_diff(a, b) < 0.05


@pytest.mark.parametrize("native_bf16", [True, False])
def test_auto_dtype_is_bfloat16_only_on_cpus_with_native_bf16(
    tiny_checkpoint: Path, monkeypatch: pytest.MonkeyPatch, native_bf16: bool
) -> None:
    monkeypatch.setattr(precision, "cpu_has_native_bf16", lambda: native_bf16)
    synth = MeloSynthesizer.from_checkpoint_dir(tiny_checkpoint, dtype="auto")
    expected = torch.bfloat16 if native_bf16 else torch.float32
    assert synth.network.dec.conv_pre.weight.dtype == expected
    assert precision.resolve_decoder_dtype("auto", "cuda") == torch.float32
