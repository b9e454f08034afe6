"""Client-chosen names in log lines cannot forge lines of their own."""

from __future__ import annotations

from harmonyspeech.api.routes.speech import LOGGED_NAMES, _quoted


def test_names_are_quoted_escaped_cut_short_and_few() -> None:
    forged = "x\n2026-12-05 03:00:00 CRITICAL auth: key accepted"
    line = _quoted([forged, "speed_factor"])
    assert "\n" not in line and line.startswith("'x\\n2026")
    assert line.endswith(", 'speed_factor'")
    assert len(_quoted(["y" * 10_000])) == 64 + 2
    many = [f"field{n}" for n in range(LOGGED_NAMES + 3)]
    assert _quoted(many).endswith(f"'field{LOGGED_NAMES - 1}' and 3 more")
