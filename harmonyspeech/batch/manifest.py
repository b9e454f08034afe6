"""The output directory: audio files written atomically and ``manifest.jsonl``.

The manifest has one JSON record per line that has finished (``status`` ``ok`` or ``failed``),
appended and flushed to disk as each line finishes, so a job killed at any moment loses at most
the lines in flight. A record is only written after its audio file is complete and in place, and
audio files are written to a hidden temporary name and renamed, so the directory never holds a
half-written file under a real name. On a re-run, ``ManifestWriter.resume`` keeps the ``ok``
records whose files still exist (those lines are skipped) and drops the rest (retried), so the
manifest never holds two records for one id.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

MANIFEST_NAME = "manifest.jsonl"
SUMMARY_NAME = "summary.json"
PARTIAL_PREFIX = ".partial-"


def write_atomically(path: Path, data: bytes) -> None:
    """Write ``data`` to ``path`` so that ``path`` is either absent or complete."""
    temporary = path.with_name(f"{PARTIAL_PREFIX}{path.name}")
    with temporary.open("wb") as out:
        out.write(data)
        out.flush()
        os.fsync(out.fileno())
    os.replace(temporary, path)


def read_manifest(out_dir: Path) -> list[dict[str, Any]]:
    """The manifest's records; a torn last line (a job killed mid-write) is ignored."""
    path = out_dir / MANIFEST_NAME
    if not path.exists():
        return []
    records = []
    for text in path.read_text(encoding="utf-8").splitlines():
        try:
            record = json.loads(text)
        except json.JSONDecodeError:
            continue
        if isinstance(record, dict) and "id" in record:
            records.append(record)
    return records


class ManifestWriter:
    """Appends records to ``manifest.jsonl`` in ``out_dir``; one writer per job."""

    def __init__(self, out_dir: Path):
        self.out_dir = out_dir
        self.path = out_dir / MANIFEST_NAME
        self._file: Any = None

    def resume(self) -> dict[str, dict[str, Any]]:
        """Prepare the directory for a (re-)run; returns the ``ok`` records kept, by id.

        Leftover temporary files are removed, and the manifest is rewritten (atomically) with
        only the completed lines whose audio is still there.
        """
        self.out_dir.mkdir(parents=True, exist_ok=True)
        for leftover in self.out_dir.glob(f"{PARTIAL_PREFIX}*"):
            leftover.unlink()
        done: dict[str, dict[str, Any]] = {}
        for record in read_manifest(self.out_dir):
            path = record.get("path")
            if record.get("status") == "ok" and path and (self.out_dir / path).is_file():
                done[record["id"]] = record
        lines = "".join(json.dumps(record) + "\n" for record in done.values())
        write_atomically(self.path, lines.encode("utf-8"))
        self._file = self.path.open("a", encoding="utf-8")
        return done

    def append(self, record: dict[str, Any]) -> None:
        """Add one finished line, durably."""
        if self._file is None:
            raise RuntimeError("call resume() before append()")
        self._file.write(json.dumps(record) + "\n")
        self._file.flush()
        os.fsync(self._file.fileno())

    def close(self) -> None:
        if self._file is not None:
            self._file.close()
            self._file = None
