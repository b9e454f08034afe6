"""The registry of cloned voices: tone-colour embeddings with their metadata, on disk.

Each voice is a directory ``<root>/<id>/`` holding ``embedding.npy`` (float32, read without
pickle) and ``voice.json``. A voice is written into a hidden directory and renamed into place,
and deleted by renaming it away first, so readers (other replicas sharing the path) never see
half a voice. Requests read the embedding once, when they start, so deleting a voice does not
disturb requests already using it. Nothing is cached across requests: every replica sees the
same directory, and a voice is a few kilobytes.
"""

from __future__ import annotations

import json
import logging
import os
import re
import secrets
import shutil
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np

from harmonyspeech.errors import InternalError, NotFoundError, quoted

logger = logging.getLogger(__name__)

VOICE_ID_PREFIX = "voice_"
VOICE_ID_PATTERN = re.compile(r"voice_[0-9a-f]{16}")
EMBEDDING_FILE = "embedding.npy"
METADATA_FILE = "voice.json"


def is_voice_id(value: str) -> bool:
    """Whether ``value`` has the shape of a cloned voice's id (``voice_`` + 16 hex digits)."""
    return VOICE_ID_PATTERN.fullmatch(value) is not None


@dataclass(frozen=True)
class VoiceRecord:
    """A cloned voice's metadata (what ``GET /v1/audio/voices/{id}`` shows)."""

    id: str
    name: str
    model: str
    """Model instance that made the embedding (the converter that can use it)."""
    family: str
    version: str
    speech_seconds: float
    """Seconds of speech the embedding was made from."""
    created: int
    """Unix time of creation."""
    consent: str | None = None
    """What the uploader stated about the speaker's consent, verbatim."""

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass(frozen=True)
class StoredVoice:
    record: VoiceRecord
    embedding: np.ndarray


class VoiceStore:
    """Cloned voices under one directory (local, or a path shared by every replica)."""

    def __init__(self, root: str | Path):
        self.root = Path(root).expanduser()

    def create(
        self,
        *,
        name: str,
        embedding: np.ndarray,
        model: str,
        speech_seconds: float,
        consent: str | None = None,
        family: str = "openvoice",
        version: str = "v2",
    ) -> VoiceRecord:
        """Store a new voice; returns its record with a fresh id."""
        record = VoiceRecord(
            id=VOICE_ID_PREFIX + secrets.token_hex(8),
            name=name,
            model=model,
            family=family,
            version=version,
            speech_seconds=round(float(speech_seconds), 3),
            created=int(time.time()),
            consent=consent,
        )
        self.root.mkdir(parents=True, exist_ok=True)
        staging = self.root / f".new-{record.id}"
        staging.mkdir()
        try:
            np.save(staging / EMBEDDING_FILE, np.asarray(embedding, dtype=np.float32).reshape(-1))
            (staging / METADATA_FILE).write_text(json.dumps(record.to_dict(), indent=2))
            os.replace(staging, self.root / record.id)
        except BaseException:
            # A full disk must not leave a half-written voice behind, hidden or not.
            shutil.rmtree(staging, ignore_errors=True)
            raise
        return record

    def get(self, voice_id: str) -> StoredVoice:
        """The voice and its embedding.

        Raises:
            NotFoundError: No such voice (404).
            InternalError: The voice's files are damaged (500, naming the voice).
        """
        folder = self._folder(voice_id)
        try:
            record = _read_record(folder)
            embedding = np.load(folder / EMBEDDING_FILE, allow_pickle=False)
        except FileNotFoundError:
            raise _not_found(voice_id) from None
        except (ValueError, TypeError, OSError) as exc:
            raise InternalError(f"voice {voice_id!r} is damaged on disk: {exc}") from exc
        return StoredVoice(record, embedding.astype(np.float32))

    def list(self) -> list[VoiceRecord]:
        """Every voice, oldest first."""
        if not self.root.is_dir():
            return []
        records = []
        for folder in self.root.iterdir():
            if not is_voice_id(folder.name):
                continue
            try:
                records.append(_read_record(folder))
            except FileNotFoundError:
                continue  # deleted while listing
            except (ValueError, TypeError, OSError) as exc:
                # One damaged voice must not hide the others (nor the built-in voices).
                logger.warning(
                    "skipping voice %s: its %s is damaged: %s", folder.name, METADATA_FILE, exc
                )
        return sorted(records, key=lambda r: (r.created, r.id))

    def delete(self, voice_id: str) -> None:
        """Remove a voice.

        Raises:
            NotFoundError: No such voice (404).
        """
        folder = self._folder(voice_id)
        doomed = self.root / f".deleted-{voice_id}-{secrets.token_hex(4)}"
        try:
            os.replace(folder, doomed)
        except FileNotFoundError:
            raise _not_found(voice_id) from None
        shutil.rmtree(doomed, ignore_errors=True)

    def _folder(self, voice_id: str) -> Path:
        if not is_voice_id(voice_id):
            raise _not_found(voice_id)
        return self.root / voice_id


def _read_record(folder: Path) -> VoiceRecord:
    data = json.loads((folder / METADATA_FILE).read_text())
    if not isinstance(data, dict):
        raise ValueError(f"{METADATA_FILE} holds no JSON object")
    return VoiceRecord(**data)


def _not_found(voice_id: str) -> NotFoundError:
    return NotFoundError(f"no voice {quoted(voice_id)}", param="voice")
