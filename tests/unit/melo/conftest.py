"""Fixtures for the MeloTTS runtime tests: one tiny random checkpoint per session."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
import torch

from harmonyspeech.models.melo import MeloSynthesizer, build_melo_checkpoint


@pytest.fixture(scope="session")
def tiny_checkpoint(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A tiny random checkpoint in the official format (config.json + checkpoint.pth)."""
    return build_melo_checkpoint(tmp_path_factory.mktemp("melo-tiny"), size="tiny", seed=0)


@pytest.fixture(scope="session")
def tiny_synth(tiny_checkpoint: Path) -> MeloSynthesizer:
    """The tiny checkpoint, loaded for inference."""
    return MeloSynthesizer.from_checkpoint_dir(tiny_checkpoint)


@pytest.fixture(scope="module", autouse=True)
def one_torch_thread() -> Iterator[None]:
    """Run the tiny models on one intra-op thread, restoring the count afterwards.

    The tiny networks gain nothing from a second thread, and with one the tests stay fast on a
    shared CI machine: OpenMP thread teams of two busy processes on two cores wait on each
    other at every parallel region, which slowed this folder down twentyfold when measured.
    """
    previous = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(previous)
