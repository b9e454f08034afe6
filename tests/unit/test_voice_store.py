"""The cloned-voice registry on disk."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from harmonyspeech.errors import InternalError, NotFoundError
from harmonyspeech.pipelines.voices import METADATA_FILE, VoiceStore, is_voice_id


def store_with_two(root: Path) -> tuple[VoiceStore, str, str]:
    store = VoiceStore(root)
    made = [
        store.create(name=name, embedding=np.ones(256), model="openvoice", speech_seconds=4.0)
        for name in ("Ada", "Grace")
    ]
    return store, made[0].id, made[1].id


def test_a_damaged_voice_is_skipped_in_the_listing_and_named_when_asked_for(
    tmp_path: Path,
) -> None:
    store, damaged, intact = store_with_two(tmp_path)
    (tmp_path / damaged / METADATA_FILE).write_text('{"id": "voice_')  # cut short
    assert [record.id for record in store.list()] == [intact]
    with pytest.raises(InternalError, match=f"voice '{damaged}' is damaged"):
        store.get(damaged)
    assert store.get(intact).embedding.shape == (256,)


def test_metadata_that_is_not_a_voice_record_is_damage_too(tmp_path: Path) -> None:
    store, first, second = store_with_two(tmp_path)
    (tmp_path / first / METADATA_FILE).write_text("[1, 2]")
    (tmp_path / second / METADATA_FILE).write_text('{"id": "x", "colour": "blue"}')
    assert store.list() == []
    for voice_id in (first, second):
        with pytest.raises(InternalError):
            store.get(voice_id)


def test_unknown_and_malformed_ids_are_not_found(tmp_path: Path) -> None:
    store, _, _ = store_with_two(tmp_path)
    for voice_id in ("voice_0000000000000000", "../etc", "voice_XYZ"):
        with pytest.raises(NotFoundError):
            store.get(voice_id)


def test_an_id_with_a_trailing_newline_is_no_voice_id() -> None:
    assert is_voice_id("voice_0123456789abcdef")
    assert not is_voice_id("voice_0123456789abcdef\n")


def test_a_voice_that_cannot_be_written_leaves_nothing_behind(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    store = VoiceStore(tmp_path)

    def disk_full(*args: object, **kwargs: object) -> int:
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(Path, "write_text", disk_full)
    with pytest.raises(OSError, match="No space left"):
        store.create(name="Ada", embedding=np.ones(256), model="openvoice", speech_seconds=4.0)
    assert list(tmp_path.iterdir()) == []
