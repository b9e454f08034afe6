"""FFT convolutions equal the direct ones, alone, in a decoder and in a batched network."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from harmonyspeech.models.melo import MeloSynthesizer
from harmonyspeech.models.melo.checkpoint import build_network
from harmonyspeech.models.melo.conv import Conv, fold_weight_norm
from harmonyspeech.models.melo.fixtures import melo_config
from harmonyspeech.models.melo.generator import build_generator
from harmonyspeech.models.melo.hparams import MeloHParams
from harmonyspeech.models.melo.spectral import correlate, spectral_kernel
from tests.unit.melo.helpers import make_item, max_abs_diff

RELATIVE_TOLERANCE = 1e-5


def _relative_diff(actual: torch.Tensor, expected: torch.Tensor) -> float:
    return float((actual - expected).abs().max() / expected.abs().max())


@pytest.mark.parametrize("taps", [3, 7, 11])
@pytest.mark.parametrize("dilation", [1, 3, 5])
@pytest.mark.parametrize("bias", [True, False], ids=["bias", "no-bias"])
def test_correlate_equals_conv1d(taps: int, dilation: int, bias: bool) -> None:
    gen = torch.Generator().manual_seed(taps * 10 + dilation)
    weight = torch.randn(6, 5, taps, generator=gen)
    offsets = torch.randn(6, generator=gen) if bias else None
    kernel = spectral_kernel(weight, offsets, dilation, block=32)
    padding = dilation * (taps - 1) // 2
    # Shorter than one block, exactly one and two blocks' worth of outputs, and ragged lengths.
    for length in (1, 4, 22, 26, 52, 53, 301):
        x = torch.randn(2, 5, length, generator=gen)
        expected = F.conv1d(x, weight, offsets, padding=padding, dilation=dilation)
        actual = correlate(x.transpose(1, 2).contiguous(), kernel).transpose(1, 2)
        assert actual.shape == expected.shape
        assert _relative_diff(actual, expected) <= RELATIVE_TOLERANCE, f"length {length}"


def test_kernel_must_fit_the_block() -> None:
    with pytest.raises(ValueError, match="blocks longer than 16"):
        spectral_kernel(torch.zeros(2, 2, 9), None, 1, block=16)


def _folded_conv(**kwargs) -> Conv:
    conv = Conv(8, 8, 7, weight_norm=True, **kwargs)
    conv.fold_weight_norm()
    return conv


def test_conv_runs_channels_last_inputs_through_the_fft() -> None:
    conv = _folded_conv(padding=9, dilation=3)
    conv.use_channels_last()
    x = torch.randn(2, 8, 1, 200).contiguous(memory_format=torch.channels_last)
    with torch.no_grad():
        direct = conv(x)
        conv.use_spectral()
        spectral = conv(x)
    assert spectral.is_contiguous(memory_format=torch.channels_last)
    assert _relative_diff(spectral, direct) <= RELATIVE_TOLERANCE
    assert "spectral" in repr(conv)


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        (dict(padding=3, stride=2), "stride-1"),
        (dict(padding=3, transposed=True), "stride-1"),
        (dict(padding=2), "same"),
    ],
)
def test_only_same_padded_stride_one_convolutions_qualify(kwargs: dict, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        _folded_conv(**kwargs).use_spectral()


def test_unfolded_weight_norm_is_refused() -> None:
    with pytest.raises(RuntimeError, match="fold the weight norm"):
        Conv(4, 4, 7, padding=3, weight_norm=True).use_spectral()


def test_real_decoder_sends_its_measured_winners_through_the_fft() -> None:
    """The default threshold picks the 7- and 11-tap blocks at 256 and 128 channels only."""
    hparams = MeloHParams.from_dict(melo_config("real"))
    decoder = build_generator(hparams)
    fold_weight_norm(decoder)
    decoder.use_channels_last()
    # 2 stages x 2 kernel sizes x 6 convolutions per residual block.
    assert decoder.use_spectral_convolutions() == 24
    chosen = {
        (conv.weight.shape[1], conv.weight.shape[-1])
        for conv in decoder.modules()
        if isinstance(conv, Conv) and conv.spectral is not None
    }
    assert chosen == {(256, 7), (256, 11), (128, 7), (128, 11)}


@pytest.mark.parametrize(("capability", "expected"), [("AVX2", 24), ("AVX512", 0), ("DEFAULT", 0)])
def test_fft_path_only_on_cpus_where_it_measured_faster(
    monkeypatch: pytest.MonkeyPatch, capability: str, expected: int
) -> None:
    monkeypatch.setattr(torch.backends.cpu, "get_cpu_capability", lambda: capability)
    network = build_network(MeloHParams.from_dict(melo_config("real")), n_speakers=2)
    network.prepare_for_inference(channels_last=True)
    convs = [conv for conv in network.dec.modules() if isinstance(conv, Conv)]
    assert sum(conv.spectral is not None for conv in convs) == expected


def test_spectral_convolutions_need_channels_last(tiny_synth: MeloSynthesizer) -> None:
    decoder = build_generator(tiny_synth.hparams)
    with pytest.raises(RuntimeError, match="channels-last"):
        decoder.use_spectral_convolutions()


@pytest.fixture(scope="module")
def spectral_synth(tiny_checkpoint) -> MeloSynthesizer:
    """The tiny checkpoint with every residual-block convolution through the FFT."""
    synth = MeloSynthesizer.from_checkpoint_dir(tiny_checkpoint, decoder_batch_size=None)
    assert synth.network.dec.use_spectral_convolutions(min_work=0) == 90
    return synth


def test_spectral_decoder_matches_the_direct_one(
    spectral_synth: MeloSynthesizer, tiny_synth: MeloSynthesizer
) -> None:
    items = [make_item(n, rng_seed=n, seed=n, speaker_id=n % 5) for n in (4, 31, 17)]
    for spectral, direct in zip(
        spectral_synth.synthesize(items), tiny_synth.synthesize(items), strict=True
    ):
        assert max_abs_diff(spectral, direct) <= 1e-4


def test_spectral_batch_equals_items_run_alone(spectral_synth: MeloSynthesizer) -> None:
    """Masked batching stays exact through the FFT path (DESIGN.md decision 3)."""
    items = [
        make_item(n, rng_seed=n, seed=100 + n, speaker_id=n % 5, length_scale=0.8 + n / 50)
        for n in (3, 41, 9, 27)
    ]
    batched = spectral_synth.synthesize(items)
    assert len({len(audio) for audio in batched}) == len(items)
    for item, audio in zip(items, batched, strict=True):
        assert max_abs_diff(audio, spectral_synth.synthesize([item])[0]) <= 1e-4
