"""Parsing config.json."""

from __future__ import annotations

import copy

import pytest

from harmonyspeech.models.melo.fixtures import ENGLISH_SPEAKERS, melo_config
from harmonyspeech.models.melo.hparams import ConfigFormatError, MeloHParams


def test_official_english_config_parses() -> None:
    hp = MeloHParams.from_dict(melo_config("real"))
    assert (hp.n_vocab, hp.num_tones, hp.num_languages) == (219, 16, 8)
    assert (hp.sampling_rate, hp.hop_length, hp.spec_channels) == (44100, 512, 1025)
    assert hp.upsample_rates == (8, 8, 2, 2, 2)
    assert hp.resblock_dilation_sizes == ((1, 3, 5),) * 3
    assert dict(hp.spk2id) == ENGLISH_SPEAKERS
    assert hp.encoder_gin_channels == 256 and hp.add_blank


def _broken(change) -> dict:
    config = copy.deepcopy(melo_config("tiny"))
    change(config)
    return config


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (lambda c: c.pop("symbols"), "missing 'symbols'"),
        (lambda c: c.pop("model"), "no 'model' section"),
        (lambda c: c["data"].update(hop_length="512"), "data.hop_length"),
        (lambda c: c["data"].update(hop_length=256), "hop_length"),
        (lambda c: c["model"].update(resblock="2"), "resblock"),
        (lambda c: c["model"].update(use_transformer_flow=False), "use_transformer_flow"),
        (lambda c: c["data"].update(n_speakers=0), "n_speakers=0"),
        (lambda c: c["model"].update(n_layers=2), "n_layers"),
    ],
)
def test_bad_configs_are_rejected(change, message) -> None:
    with pytest.raises(ConfigFormatError, match=message):
        MeloHParams.from_dict(_broken(change))


def test_unknown_training_keys_are_ignored() -> None:
    config = _broken(lambda c: c["model"].update(use_duration_discriminator=True, foo=1))
    MeloHParams.from_dict(config)
