"""Weight resolution: explicit path, then the local Hugging Face cache, then the hub.

The hub is never contacted: the cache tests run with huggingface_hub's offline switch on and a
cache directory laid out as huggingface_hub writes it.
"""

from __future__ import annotations

import pickle
import sys
from pathlib import Path

import pytest

from harmonyspeech.config import WeightsSource
from harmonyspeech.errors import ModelLoadError
from harmonyspeech.models.weights import WeightsNotFoundError, resolve_weights

FILES = ["config.json", "checkpoint.pth"]
REPO = "myshell-ai/MeloTTS-English"


def _write_files(directory: Path) -> Path:
    directory.mkdir(parents=True, exist_ok=True)
    for name in FILES:
        (directory / name).write_text(name)
    return directory


def test_explicit_directory_and_file(tmp_path: Path) -> None:
    directory = _write_files(tmp_path / "model")
    assert resolve_weights(WeightsSource(path=str(directory)), FILES) == directory
    file_source = WeightsSource(path=str(directory / "checkpoint.pth"))
    assert resolve_weights(file_source, FILES) == directory


def test_broken_explicit_path_fails_without_fallback(tmp_path: Path) -> None:
    with pytest.raises(ModelLoadError, match="does not exist") as missing:
        resolve_weights(WeightsSource(path=str(tmp_path / "nope"), repo_id=REPO), FILES)
    assert not isinstance(missing.value, WeightsNotFoundError)
    (tmp_path / "config.json").write_text("{}")
    with pytest.raises(ModelLoadError, match=r"lacks checkpoint\.pth") as partial:
        resolve_weights(WeightsSource(path=str(tmp_path), allow_random=True), FILES)
    assert not isinstance(partial.value, WeightsNotFoundError)


def test_no_source_at_all() -> None:
    with pytest.raises(WeightsNotFoundError, match="no weights path or repository"):
        resolve_weights(WeightsSource(), FILES)


def test_without_huggingface_hub_says_so(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "huggingface_hub", None)  # makes the import fail
    with pytest.raises(WeightsNotFoundError, match="huggingface_hub is not installed"):
        resolve_weights(WeightsSource(), FILES, default_repo_id=REPO)


def test_error_survives_pickling() -> None:
    error = WeightsNotFoundError("weights for 'x' not found: tried a; tried b")
    clone = pickle.loads(pickle.dumps(error))
    assert type(clone) is WeightsNotFoundError and clone.message == error.message
    assert clone.code == "weights_not_found" and clone.status_code == 503


@pytest.fixture
def offline_hub(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Path:
    """huggingface_hub in offline mode with an empty cache in ``tmp_path``; returns the cache."""
    hub = pytest.importorskip("huggingface_hub")
    from huggingface_hub import constants

    cache = tmp_path / "hub"
    cache.mkdir()
    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", True)
    monkeypatch.setattr(constants, "HF_HUB_CACHE", str(cache))
    assert hub.constants.is_offline_mode()
    return cache


def _cache_snapshot(cache: Path, repo_id: str, commit: str = "a" * 40) -> Path:
    repo_dir = cache / ("models--" + repo_id.replace("/", "--"))
    (repo_dir / "refs").mkdir(parents=True)
    (repo_dir / "refs" / "main").write_text(commit)
    return _write_files(repo_dir / "snapshots" / commit)


def test_found_in_local_cache(offline_hub: Path) -> None:
    snapshot = _cache_snapshot(offline_hub, REPO)
    found = resolve_weights(WeightsSource(), FILES, default_repo_id=REPO)
    assert found.resolve() == snapshot.resolve()
    assert resolve_weights(WeightsSource(repo_id=REPO), FILES).resolve() == snapshot.resolve()


def test_offline_and_not_cached_lists_what_was_tried(offline_hub: Path) -> None:
    with pytest.raises(WeightsNotFoundError) as info:
        resolve_weights(WeightsSource(revision="v1"), FILES, default_repo_id=REPO)
    message = info.value.message
    assert "local Hugging Face cache of myshell-ai/MeloTTS-English@v1" in message
    assert "Hugging Face hub download" in message
