"""Parity with the upstream MeloTTS network on the same checkpoint and inputs.

The oracle is upstream's own ``SynthesizerTrn`` (PyPI sdist melotts 0.1.1), fetched beforehand by
``python tests/unit/melo/fetch_reference.py`` into ``.cache/melotts-ref``. Without it these tests
skip, unless ``HARMONYSPEECH_REQUIRE_MELO_REF=1`` makes the absence a failure (CI sets it).
"""

from __future__ import annotations

import json
import os
import warnings
from pathlib import Path

import numpy as np
import pytest
import torch

from harmonyspeech.models.melo import MeloSynthesizer, SynthesisItem
from harmonyspeech.models.melo.checkpoint import CHECKPOINT_FILE, CONFIG_FILE
from tests.unit.melo.fetch_reference import DEFAULT_DEST, is_fetched, load_reference
from tests.unit.melo.helpers import make_item, max_abs_diff

TOLERANCE = 1e-4


@pytest.fixture(scope="module")
def upstream(tiny_checkpoint: Path):
    """Upstream's SynthesizerTrn with the tiny checkpoint loaded strictly, as upstream loads it."""
    if not is_fetched(DEFAULT_DEST):
        message = f"upstream MeloTTS not in {DEFAULT_DEST}; run tests/unit/melo/fetch_reference.py"
        if os.environ.get("HARMONYSPEECH_REQUIRE_MELO_REF") == "1":
            pytest.fail(message)
        pytest.skip(message)
    with warnings.catch_warnings():
        # Upstream uses the legacy weight_norm and torch.jit.script, both deprecated.
        warnings.simplefilter("ignore", FutureWarning)
        warnings.simplefilter("ignore", DeprecationWarning)
        models = load_reference(DEFAULT_DEST)
        config = json.loads((tiny_checkpoint / CONFIG_FILE).read_text())
        data = config["data"]
        network = models.SynthesizerTrn(
            len(config["symbols"]),
            data["filter_length"] // 2 + 1,
            config["train"]["segment_size"] // data["hop_length"],
            n_speakers=data["n_speakers"],
            num_tones=config["num_tones"],
            num_languages=config["num_languages"],
            **config["model"],
        )
    state = torch.load(tiny_checkpoint / CHECKPOINT_FILE, map_location="cpu", weights_only=True)
    network.load_state_dict(state["model"], strict=True)
    return network.eval()


def _upstream_infer(network, item: SynthesisItem) -> np.ndarray:
    """Upstream's TTS.tts_to_file call for one sentence, seeded like our item."""
    n = item.n_tokens
    torch.manual_seed(item.seed)
    with torch.no_grad():
        audio = network.infer(
            torch.as_tensor(item.phones)[None],
            torch.tensor([n]),
            torch.tensor([item.speaker_id]),
            torch.as_tensor(item.tones)[None],
            torch.as_tensor(item.languages)[None],
            torch.zeros(1, 1024, n),
            torch.as_tensor(item.ja_bert)[None],
            sdp_ratio=item.sdp_ratio,
            noise_scale=item.noise_scale,
            noise_scale_w=item.noise_scale_w,
            length_scale=item.length_scale,
        )[0]
    return audio[0, 0].numpy()


@pytest.mark.parametrize(
    "knobs",
    [
        dict(noise_scale=0.0, noise_scale_w=0.0, sdp_ratio=0.5),
        dict(),
        dict(sdp_ratio=1.0, length_scale=0.8, speaker_id=3),
        dict(sdp_ratio=0.0, length_scale=1.3, speaker_id=1, noise_scale=0.667),
    ],
    ids=["no-noise", "defaults", "sdp-only", "dp-only"],
)
def test_matches_upstream_network(upstream, tiny_synth: MeloSynthesizer, knobs) -> None:
    item = make_item(23, rng_seed=7, seed=1234, **knobs)
    expected = _upstream_infer(upstream, item)
    assert max_abs_diff(tiny_synth.synthesize([item])[0], expected) <= TOLERANCE


def test_batched_matches_upstream_item_by_item(upstream, tiny_synth: MeloSynthesizer) -> None:
    items = [
        make_item(n, rng_seed=n, seed=n, speaker_id=n % 5, length_scale=1 + n / 100)
        for n in (5, 29, 13)
    ]
    for item, audio in zip(items, tiny_synth.synthesize(items), strict=True):
        assert max_abs_diff(audio, _upstream_infer(upstream, item)) <= TOLERANCE
