"""MeloTTS: our own checkpoint-compatible, exactly batched runtime of the MeloTTS network.

Public API (torch is imported only when one of the torch-backed names is first used)::

    from harmonyspeech.models.melo import MeloSynthesizer, SynthesisItem

* :class:`~harmonyspeech.models.melo.items.SynthesisItem`: one sentence as ids (+ BERT features),
  with its speaker, speed, noise knobs and seed.
* :class:`~harmonyspeech.models.melo.synthesizer.MeloSynthesizer`: loads a checkpoint directory
  and synthesises batches of items of any lengths in one forward pass.
* :func:`~harmonyspeech.models.melo.fixtures.build_melo_checkpoint`: random checkpoints in the
  official format, for tests and benchmarks.
"""

from __future__ import annotations

import importlib
from typing import Any

from harmonyspeech.models.melo.items import SynthesisItem

_LAZY = {
    "MeloSynthesizer": "harmonyspeech.models.melo.synthesizer",
    "InvalidItemError": "harmonyspeech.models.melo.synthesizer",
    "MeloHParams": "harmonyspeech.models.melo.hparams",
    "build_melo_checkpoint": "harmonyspeech.models.melo.fixtures",
    "CHECKPOINT_FILES": "harmonyspeech.models.melo.checkpoint",
    "MELO_REPO_IDS": "harmonyspeech.models.melo.checkpoint",
}

__all__ = ["SynthesisItem", *_LAZY]


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
