"""The OpenVoice V2 converter: official layout, strict loading, embeddings, batched conversion."""

from __future__ import annotations

import json
import warnings
from pathlib import Path

import numpy as np
import pytest
import torch

from harmonyspeech.errors import ModelLoadError
from harmonyspeech.models.melo import precision
from harmonyspeech.models.openvoice import (
    ConversionItem,
    ConverterHParams,
    ToneColorConverter,
    build_converter_checkpoint,
)
from harmonyspeech.models.openvoice.converter import load_base_speakers
from harmonyspeech.models.openvoice.fixtures import converter_config
from harmonyspeech.models.openvoice.network import ConverterNetwork
from harmonyspeech.models.openvoice.spectrogram import linear_spectrogram

REFERENCE = (
    Path(__file__).resolve().parents[2] / "data/openvoice/openvoice_v2_converter_state_dict.txt"
)
RATE = 22050


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return build_converter_checkpoint(tmp_path_factory.mktemp("openvoice"), size="tiny")


@pytest.fixture(scope="module")
def converter(checkpoint: Path) -> ToneColorConverter:
    """Every item of a call in one padded pass (on CPU the default runs them one by one)."""
    return ToneColorConverter.from_checkpoint_dir(checkpoint, batch_size=None)


def _speech(seconds: float, seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    t = np.arange(int(seconds * RATE)) / RATE
    tone = 0.3 * np.sin(2 * np.pi * (120 + 40 * seed) * t) * (1 + np.sin(2 * np.pi * 3 * t))
    return (tone + 0.02 * rng.standard_normal(t.size)).astype(np.float32)


def test_real_architecture_matches_the_official_state_dict() -> None:
    reference = {}
    for line in REFERENCE.read_text().splitlines():
        key, shape = line.split(" ", 1)
        reference[key] = json.loads(shape)
    with torch.device("meta"):
        network = ConverterNetwork(ConverterHParams.from_dict(converter_config("real")))
    ours = {key: list(value.shape) for key, value in network.state_dict().items()}
    assert len(reference) == 486
    assert ours == reference
    millions = {
        part: sum(p.numel() for p in getattr(network, part).parameters()) / 1e6
        for part in ("dec", "enc_q", "flow", "ref_enc")
    }
    assert {k: round(v, 2) for k, v in millions.items()} == {
        "dec": 14.47, "enc_q": 8.82, "flow": 8.69, "ref_enc": 0.81
    }  # fmt: skip


def test_fixture_has_the_official_layout_and_loads_strictly(checkpoint: Path) -> None:
    raw = torch.load(checkpoint / "converter/checkpoint.pth", weights_only=True)
    assert "ref_enc.convs.0.weight_g" in raw["model"]
    loaded = ToneColorConverter.from_checkpoint_dir(checkpoint)
    names = {name for name, _ in loaded.network.named_parameters()}
    assert not any(name.endswith(("weight_g", "weight_v")) for name in names)
    assert loaded.sample_rate == RATE and loaded.embedding_size == 256


def test_a_state_dict_that_does_not_match_is_refused(tmp_path: Path, checkpoint: Path) -> None:
    broken = build_converter_checkpoint(tmp_path / "broken", size="tiny")
    path = broken / "converter/checkpoint.pth"
    raw = torch.load(path, weights_only=True)
    del raw["model"]["ref_enc.proj.bias"]
    torch.save(raw, path)
    with pytest.raises(ModelLoadError, match=r"ref_enc\.proj\.bias"):
        ToneColorConverter.from_checkpoint_dir(broken)


def test_spectrogram_is_the_reflect_padded_linear_magnitude() -> None:
    hp = ConverterHParams.from_dict(converter_config("tiny"))
    audio = _speech(0.5, 1)
    spec = linear_spectrogram(torch.from_numpy(audio), hp).numpy()
    assert spec.shape == (513, audio.size // 256)
    padded = np.pad(audio.astype(np.float64), 384, mode="reflect")
    window = 0.5 - 0.5 * np.cos(2 * np.pi * np.arange(1024) / 1024)  # periodic Hann
    frame = 7
    expected = np.abs(np.fft.rfft(padded[frame * 256 : frame * 256 + 1024] * window))
    np.testing.assert_allclose(spec[:, frame], np.sqrt(expected**2 + 1e-6), rtol=1e-4, atol=1e-4)


def test_embedding_is_the_mean_over_reference_pieces(converter: ToneColorConverter) -> None:
    pieces = [_speech(1.2, 1), _speech(0.8, 2)]
    each = [converter.embed([piece]) for piece in pieces]
    both = converter.embed(pieces)
    assert both.shape == (256,) and both.dtype == np.float32
    np.testing.assert_allclose(both, (each[0] + each[1]) / 2, atol=1e-6)
    assert not np.allclose(each[0], each[1])


def test_batched_conversion_equals_each_item_alone(converter: ToneColorConverter) -> None:
    source, target = converter.embed([_speech(1.0, 3)]), converter.embed([_speech(1.0, 4)])
    items = [
        ConversionItem(_speech(seconds, seed), source, target, seed=seed)
        for seed, seconds in enumerate([0.4, 1.3, 0.9, 0.2])
    ]
    batched = converter.convert(items)
    for item, out in zip(items, batched, strict=True):
        alone = converter.convert([item])[0]
        assert out.shape == alone.shape == ((item.audio.size // 256) * 256,)
        np.testing.assert_allclose(out, alone, atol=1e-4)  # float32 rounding, see below
    other_target = ConversionItem(items[1].audio, source, source, seed=1)
    assert not np.allclose(converter.convert([other_target])[0], batched[1])


def test_windowed_decoding_equals_one_pass(checkpoint: Path) -> None:
    """On CPU long utterances decode in windows; the samples are those of one pass."""
    converter = ToneColorConverter.from_checkpoint_dir(checkpoint, batch_size=None)
    source, target = converter.embed([_speech(1.0, 3)]), converter.embed([_speech(1.0, 4)])
    items = [
        ConversionItem(_speech(s, seed), source, target, seed=seed)
        for seed, s in enumerate([1.5, 0.7])
    ]
    converter.decoder_window = None
    whole = converter.convert(items)
    converter.decoder_window = 20  # 1.5 s is 129 frames: seven windows
    for a, b in zip(whole, converter.convert(items), strict=True):
        np.testing.assert_allclose(b, a, atol=1e-5)


def test_bucketed_lengths_equal_exact_lengths(checkpoint: Path) -> None:
    """On CPU each pass is padded to a bucketed length; no sample may change."""
    converter = ToneColorConverter.from_checkpoint_dir(checkpoint)
    assert converter.bucket_lengths  # the CPU default
    se = np.linspace(-0.1, 0.1, 256)
    items = [ConversionItem(_speech(s, n), se, -se, seed=n) for n, s in enumerate([0.3, 1.1])]
    bucketed = converter.convert(items)
    converter.bucket_lengths = False
    for item, out, exact in zip(items, bucketed, converter.convert(items), strict=True):
        assert out.shape == exact.shape == ((item.audio.size // 256) * 256,)
        np.testing.assert_allclose(out, exact, atol=1e-4)


def test_batched_conversion_is_exact_in_double_precision(checkpoint: Path) -> None:
    """The float32 differences above are rounding: in float64 the masks make batching exact."""
    converter = ToneColorConverter.from_checkpoint_dir(checkpoint, batch_size=None)
    converter.network.double()
    se = np.linspace(-0.1, 0.1, 256)
    items = [ConversionItem(_speech(s, n), se, -se, seed=n) for n, s in enumerate([0.5, 1.4, 0.9])]
    for item, out in zip(items, converter.convert(items), strict=True):
        np.testing.assert_allclose(out, converter.convert([item])[0], atol=1e-9)


def test_conversions_run_in_groups_of_similar_length_in_order(checkpoint: Path) -> None:
    grouped = ToneColorConverter.from_checkpoint_dir(checkpoint, batch_size=2)
    assert ToneColorConverter.from_checkpoint_dir(checkpoint).batch_size == 1  # CPU default
    se = np.linspace(-0.1, 0.1, 256)
    items = [ConversionItem(_speech(s, n), se, -se, seed=n) for n, s in enumerate([1.1, 0.3, 0.7])]
    for item, out in zip(items, grouped.convert(items), strict=True):
        assert out.shape == ((item.audio.size // 256) * 256,)
        np.testing.assert_allclose(out, grouped.convert([item])[0], atol=1e-4)


def test_a_bfloat16_decoder_keeps_lengths_and_batches(checkpoint: Path) -> None:
    """Only the decoder drops to bfloat16: lengths are unchanged, the waveform stays near
    float32's, and a padded, masked pass stays near each item alone (on CPU the default runs
    items one by one, so there a batch equals its items alone by construction)."""
    full = ToneColorConverter.from_checkpoint_dir(checkpoint)
    half = ToneColorConverter.from_checkpoint_dir(checkpoint, dtype="bfloat16", batch_size=None)
    assert half.network.dec.conv_pre.weight.dtype == torch.bfloat16
    assert half.network.flow.flows[0].pre.weight.dtype == torch.float32
    se = np.linspace(-0.1, 0.1, 256)
    items = [ConversionItem(_speech(s, n), se, -se, seed=n) for n, s in enumerate([0.3, 1.1, 0.6])]
    batched = half.convert(items)
    for item, out, reference in zip(items, batched, full.convert(items), strict=True):
        assert out.dtype == np.float32 and out.shape == reference.shape
        assert 0 < np.abs(out - reference).max() < 0.05
        np.testing.assert_allclose(out, half.convert([item])[0], atol=0.05)  # bf16 rounding


def test_auto_dtype_gives_a_bfloat16_decoder_on_cpus_with_native_bf16(
    checkpoint: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The rule's other branch (float32 elsewhere) is tested with MeloTTS."""
    monkeypatch.setattr(precision, "cpu_has_native_bf16", lambda: True)
    converter = ToneColorConverter.from_checkpoint_dir(checkpoint, dtype="auto")
    assert converter.network.dec.conv_pre.weight.dtype == torch.bfloat16


def test_unseeded_conversion_draws_fresh_noise(converter: ToneColorConverter) -> None:
    se = converter.embed([_speech(1.0, 5)])
    item = ConversionItem(_speech(0.5, 6), se, se)
    first, second = converter.convert([item, item])
    assert not np.allclose(first, second)


def test_base_speaker_embeddings_load_by_speaker_name(checkpoint: Path, tmp_path: Path) -> None:
    found = load_base_speakers(checkpoint, ["EN-US", "EN_INDIA", "XX"])
    assert sorted(found) == ["EN-US", "EN_INDIA"]
    assert found["EN_INDIA"].shape == (256,)
    bad = tmp_path / "base_speakers/ses"
    bad.mkdir(parents=True)
    torch.save(torch.zeros(256), bad / "en-us.pth")
    with pytest.raises(ModelLoadError, match="not a"):
        load_base_speakers(tmp_path, ["EN-US"])


def test_read_only_and_reversed_audio_convert_without_a_warning(
    converter: ToneColorConverter,
) -> None:
    """Arrays that crossed Ray's object store are read-only views; a reversed view has
    negative strides, which torch cannot wrap."""
    audio = _speech(0.5, 7)
    audio.flags.writeable = False
    se = np.linspace(-0.1, 0.1, 256)
    with warnings.catch_warnings():
        warnings.filterwarnings("error", message=".*not writable.*")
        [out, backwards] = converter.convert(
            [ConversionItem(audio, se, -se, seed=1), ConversionItem(audio[::-1], se, -se, seed=1)]
        )
        embedding = converter.embed([audio])
    assert out.shape == backwards.shape == ((audio.size // 256) * 256,)
    assert embedding.shape == (256,)
    [forwards] = converter.convert([ConversionItem(audio[::-1].copy(), se, -se, seed=1)])
    np.testing.assert_allclose(backwards, forwards, atol=1e-4)  # batched vs alone rounding
