"""Client values in log lines and error messages: quoted (no forged lines) and cut short."""

from __future__ import annotations

import pytest

from harmonyspeech.api.routes.speech import LOGGED_NAMES, _quoted
from harmonyspeech.config import load_config
from harmonyspeech.errors import NotFoundError
from harmonyspeech.pipelines.spec import build_catalog


def test_names_are_quoted_escaped_cut_short_and_few() -> None:
    forged = "x\n2026-12-05 03:00:00 CRITICAL auth: key accepted"
    line = _quoted([forged, "speed_factor"])
    assert "\n" not in line and line.startswith("'x\\n2026")
    assert line.endswith(", 'speed_factor'")
    assert _quoted(["y" * 10_000]) == f"{'y' * 64!r}... (10000 characters)"
    many = [f"field{n}" for n in range(LOGGED_NAMES + 3)]
    assert _quoted(many).endswith(f"'field{LOGGED_NAMES - 1}' and 3 more")


def test_an_error_does_not_echo_a_huge_value_back() -> None:
    config = {
        "models": [{"name": "vad", "family": "silero-vad"}],
        "pipelines": [{"name": "vad", "stages": [{"kind": "vad", "model": "vad"}]}],
    }
    catalog = build_catalog(load_config(config))
    with pytest.raises(NotFoundError) as missing:
        catalog.resolve("x" * 100_000)
    message = missing.value.message
    assert len(message) < 300 and "(100000 characters)" in message
    assert message.endswith("available: vad")
