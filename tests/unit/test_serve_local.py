"""``harmonyspeech serve`` start-up checks that run before Ray does."""

from __future__ import annotations

import socket

import pytest

from harmonyspeech.errors import ConfigError
from harmonyspeech.serve.local import ensure_port_free


def test_a_taken_metrics_port_fails_fast_naming_the_setting() -> None:
    with socket.socket() as listener:
        listener.bind(("0.0.0.0", 0))
        listener.listen()
        port = listener.getsockname()[1]
        with pytest.raises(ConfigError) as caught:
            ensure_port_free(port)
    (path, message), *_ = caught.value.problems
    assert path == "server.ray.metrics_export_port"
    assert f"port {port} is in use" in message


def test_a_free_metrics_port_passes() -> None:
    with socket.socket() as sock:
        sock.bind(("0.0.0.0", 0))
        port = sock.getsockname()[1]
    ensure_port_free(port)  # released above: nothing listens there
