"""The allocator tuning applies on glibc (through the real ``mallopt``)."""

from __future__ import annotations

import sys

import pytest

from harmonyspeech.models import allocator


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="glibc only")
def test_glibc_accepts_both_thresholds() -> None:
    assert allocator.retain_freed_memory() is True
