"""The allocator tuning applies on glibc and declines elsewhere instead of failing."""

from __future__ import annotations

import sys

import pytest

from harmonyspeech.models import allocator


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="glibc only")
def test_applies_on_glibc() -> None:
    assert allocator.retain_freed_memory() is True


def test_declines_without_mallopt(monkeypatch: pytest.MonkeyPatch) -> None:
    class LibcWithoutMallopt:
        def __init__(self, name: object) -> None:
            self.name = name

    monkeypatch.setattr(allocator.sys, "platform", "linux")
    monkeypatch.setattr(allocator.ctypes, "CDLL", LibcWithoutMallopt)
    assert allocator.retain_freed_memory() is False


def test_declines_off_linux(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(allocator.sys, "platform", "darwin")
    assert allocator.retain_freed_memory() is False


def test_reports_a_refused_setting(monkeypatch: pytest.MonkeyPatch) -> None:
    calls: list[tuple[int, int]] = []

    class RefusingLibc:
        def __init__(self, name: object) -> None:
            self.name = name

        def mallopt(self, option: int, value: int) -> int:
            calls.append((option, value))
            return 0

    monkeypatch.setattr(allocator.sys, "platform", "linux")
    monkeypatch.setattr(allocator.ctypes, "CDLL", RefusingLibc)
    assert allocator.retain_freed_memory() is False
    assert calls[0] == (-3, allocator.MMAP_THRESHOLD)
