"""API-key checks and the refusal to expose an unauthenticated server."""

from __future__ import annotations

import io
from pathlib import Path

import pytest

from harmonyspeech.api.auth import (
    ApiKeyVerifier,
    ensure_safe_binding,
    hash_key,
    is_loopback,
    parse_keys_file,
    read_keys_file,
    with_resolved_keys,
)
from harmonyspeech.cli import main
from harmonyspeech.config import AuthConfig, load_config
from harmonyspeech.errors import AuthenticationError, ConfigError
from harmonyspeech.serve.listening import HttpAddress, ensure_safe_serving
from tests.conftest import ROOT, write_config


def test_hash_format() -> None:
    digest = hash_key("secret")
    assert digest.startswith("sha256:") and len(digest) == 7 + 64


@pytest.mark.parametrize("header", [None, "", "Bearer", "Basic abc", "Bearer wrong"])
def test_rejected_headers(header: str | None) -> None:
    with pytest.raises(AuthenticationError):
        ApiKeyVerifier([hash_key("right")]).verify(header)


def test_accepts_any_configured_key() -> None:
    verifier = ApiKeyVerifier([hash_key("one"), hash_key("two")])
    verifier.verify("Bearer one")
    verifier.verify("Bearer two ")


def test_no_keys_means_open() -> None:
    verifier = ApiKeyVerifier([])
    assert not verifier.enabled
    verifier.verify(None)


@pytest.mark.parametrize(
    ("host", "loopback"),
    [("127.0.0.1", True), ("::1", True), ("localhost", True), ("0.0.0.0", False)],
)
def test_loopback_detection(host: str, loopback: bool) -> None:
    assert is_loopback(host) is loopback


def test_public_binding_without_keys_is_refused() -> None:
    with pytest.raises(ConfigError, match="--insecure-no-auth") as info:
        ensure_safe_binding("0.0.0.0", ApiKeyVerifier([]), allow_insecure=False)
    [(where, message)] = info.value.problems
    assert where == "server.host" and "HARMONYSPEECH_API_KEYS" in message
    assert "server.auth.allow_insecure_no_auth" in message
    ensure_safe_binding("0.0.0.0", ApiKeyVerifier([]), allow_insecure=True)
    ensure_safe_binding("0.0.0.0", ApiKeyVerifier([hash_key("k")]), allow_insecure=False)


MINIMAL = {
    "models": [{"name": "vad", "family": "silero-vad"}],
    "pipelines": [{"name": "vad", "stages": [{"kind": "vad", "model": "vad"}]}],
}


def test_where_serve_listens_is_checked_as_well_as_server_host(monkeypatch) -> None:
    # A Serve config's http_options.host is its own copy: changing only it used to expose an
    # app without keys, since only server.host was checked.
    monkeypatch.delenv("HARMONYSPEECH_API_KEYS", raising=False)
    config = load_config({**MINIMAL, "server": {"host": "127.0.0.1"}})
    ensure_safe_serving(config, None)
    ensure_safe_serving(config, HttpAddress("127.0.0.1", 8000))
    with pytest.raises(ConfigError) as info:
        ensure_safe_serving(config, HttpAddress("0.0.0.0", 8000))
    [(where, message)] = info.value.problems
    assert where.startswith("http_options.host") and "serving on 0.0.0.0" in message
    keyed = load_config({**MINIMAL, "server": {"auth": {"api_key_hashes": [hash_key("k")]}}})
    ensure_safe_serving(keyed, HttpAddress("0.0.0.0", 8000))


def test_serve_refuses_before_starting_anything(capsys: pytest.CaptureFixture[str]) -> None:
    config = str(ROOT / "configs" / "test.yaml")
    assert main(["serve", "--config", config, "--host", "0.0.0.0"]) == 2
    assert "without API keys is refused" in capsys.readouterr().err


# --- keys file ---------------------------------------------------------------------------------

HASH_A, HASH_B = hash_key("sk-alpha"), hash_key("sk-beta")


def test_keys_file_lines_hashes_labels_and_comments() -> None:
    text = (
        "# team keys\n"
        "\n"
        f"{HASH_A} alpha   # inline comment\n"
        f"   {HASH_B}\n"
        f"{hash_key('sk-gamma').upper().replace('SHA256', 'sha256')} gamma\n"
    )
    keys = parse_keys_file(text, source="keys.txt")
    assert keys == {HASH_A: "alpha", HASH_B: None, hash_key("sk-gamma"): "gamma"}


def test_keys_file_refuses_plaintext_naming_the_line_not_the_key() -> None:
    text = f"{HASH_A} alpha\nsk-live-plaintext-secret\n{HASH_B} beta extra\nsha256:abc\n"
    with pytest.raises(ConfigError) as info:
        parse_keys_file(text, source="keys.txt")
    assert [path for path, _ in info.value.problems] == ["line 2", "line 3", "line 4"]
    assert "never plaintext keys" in info.value.problems[0][1]
    assert "keys.txt" in info.value.message
    assert "sk-live-plaintext-secret" not in info.value.message


@pytest.mark.parametrize(
    ("text", "message"),
    [
        (f"{HASH_A} alpha\n{HASH_A} again\n", "listed twice"),
        (f"{HASH_A} alpha\n{HASH_B} alpha\n", "already names line 1"),
        (f"{HASH_A} bad:label\n", "a label is"),
    ],
)
def test_keys_file_refuses_ambiguous_lines(text: str, message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        parse_keys_file(text, source="keys.txt")


def test_missing_keys_file_fails(tmp_path: Path) -> None:
    with pytest.raises(ConfigError) as info:
        read_keys_file(tmp_path / "absent.txt")
    assert info.value.problems[0][0] == "server.auth.api_keys_file"
    assert "absent.txt" in info.value.message


def keys_file(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "keys.txt"
    path.write_text(text)
    return path


def test_verifier_reads_the_keys_file(tmp_path: Path) -> None:
    path = keys_file(tmp_path, f"{HASH_A} alpha\n{HASH_B}\n")
    auth = AuthConfig(api_keys_file=str(path))
    verifier = ApiKeyVerifier.from_config(auth, {"HARMONYSPEECH_API_KEYS": "sk-env"})
    assert verifier.verify("Bearer sk-alpha") == HASH_A
    assert verifier.verify("Bearer sk-beta") == HASH_B
    assert verifier.verify("Bearer sk-env") == hash_key("sk-env")
    assert verifier.label(HASH_A) == "alpha" and verifier.label(HASH_B) is None
    with pytest.raises(AuthenticationError):
        verifier.verify("Bearer sk-gamma")


def test_one_label_for_two_keys_is_refused(tmp_path: Path) -> None:
    path = keys_file(tmp_path, f"{HASH_A} alpha\n")
    auth = AuthConfig(api_keys_file=str(path), api_key_labels={HASH_B: "alpha"})
    with pytest.raises(ConfigError, match="names two keys"):
        ApiKeyVerifier.from_config(auth, {})


def test_keys_are_folded_into_the_config_once(tmp_path: Path) -> None:
    path = keys_file(tmp_path, f"{HASH_A} alpha\n")
    data = load_config(ROOT / "configs" / "test.yaml").model_dump()
    data["server"]["auth"]["api_keys_file"] = str(path)
    folded = with_resolved_keys(load_config(data), {"HARMONYSPEECH_API_KEYS": "sk-env"})
    auth = folded.server.auth
    assert auth.api_keys_file is None  # replicas elsewhere need no copy of the file
    assert auth.api_key_hashes == [HASH_A, hash_key("sk-env")]
    assert auth.api_key_labels == {HASH_A: "alpha"}
    path.unlink()
    verifier = ApiKeyVerifier.from_config(auth, {})
    assert verifier.verify("Bearer sk-alpha") == HASH_A
    assert verifier.label(HASH_A) == "alpha"


def test_keys_file_alone_permits_a_public_binding(tmp_path: Path) -> None:
    auth = AuthConfig(api_keys_file=str(keys_file(tmp_path, f"{HASH_A}\n")))
    ensure_safe_binding("0.0.0.0", ApiKeyVerifier.from_config(auth, {}), allow_insecure=False)


def test_serve_refuses_a_missing_keys_file(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    data = load_config(ROOT / "configs" / "test.yaml").model_dump()
    data["server"]["auth"]["api_keys_file"] = str(tmp_path / "absent.txt")
    config = write_config(tmp_path / "engine.yaml", data)
    assert main(["serve", "--config", str(config), "--host", "0.0.0.0"]) == 2
    assert "absent.txt" in capsys.readouterr().err


def test_hash_key_command(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["hash-key", "sk-alpha", "--label", "alpha"]) == 0
    line = capsys.readouterr().out
    assert parse_keys_file(line, source="out") == {HASH_A: "alpha"}
    monkeypatch.setattr("sys.stdin", io.StringIO("sk-beta\n"))
    assert main(["hash-key"]) == 0
    assert capsys.readouterr().out.strip() == HASH_B
    monkeypatch.setattr("sys.stdin", io.StringIO(""))
    assert main(["hash-key"]) == 1
    assert main(["hash-key", "k", "--label", "two words"]) == 2


def test_check_config_reads_the_keys_file_where_there_is_one(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    # It used to pass a rate-limit label that no key has: serving then refused to start.
    data = load_config(ROOT / "configs" / "test.yaml").model_dump()
    data["server"]["auth"]["api_keys_file"] = str(keys_file(tmp_path, f"{HASH_A} alpha\n"))
    data["server"]["rate_limits"]["overrides"] = {"beta": {"requests_per_minute": 5}}
    config = write_config(tmp_path / "engine.yaml", data)
    assert main(["check-config", str(config)]) == 2
    assert "overrides.beta: no API key has this label" in capsys.readouterr().err

    data["server"]["rate_limits"]["overrides"] = {"alpha": {"requests_per_minute": 5}}
    assert main(["check-config", str(write_config(config, data))]) == 0
    assert capsys.readouterr().err == ""

    # Not here: it may be where the app runs, so no error, but a warning.
    data["server"]["auth"]["api_keys_file"] = str(tmp_path / "elsewhere.txt")
    assert main(["check-config", str(write_config(config, data))]) == 0
    assert "no keys file" in capsys.readouterr().err
