"""Finding a model's weight files (DESIGN.md decision 7), for any model family.

Resolution order:

1. ``WeightsSource.path``, an explicit local directory (or a file inside it);
2. the local Hugging Face cache (``huggingface_hub`` with ``local_files_only=True``);
3. a download from the hub.

Every step that fails is recorded, and when nothing works :class:`WeightsNotFoundError` says
what was tried. An explicit ``path`` that does not hold the files is a configuration mistake
and raises a plain :class:`~harmonyspeech.errors.ModelLoadError` at once: it never falls back
to the hub, and never to random weights. Whether random weights may replace missing ones is the
adapter's decision (``WeightsSource.allow_random``); it catches :class:`WeightsNotFoundError`.

``huggingface_hub`` is imported lazily, only when a repository has to be looked up.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from pathlib import Path

from harmonyspeech.config import WeightsSource
from harmonyspeech.errors import ModelLoadError

logger = logging.getLogger(__name__)


class WeightsNotFoundError(ModelLoadError):
    """No source had the weight files; the message lists every attempt."""

    default_code = "weights_not_found"


def resolve_weights(
    source: WeightsSource,
    filenames: Sequence[str],
    *,
    default_repo_id: str | None = None,
) -> Path:
    """The local directory that holds all ``filenames`` of a model.

    Args:
        source: The model's configured weight source.
        filenames: Files the model needs, relative to the directory / repository root.
        default_repo_id: Repository to use when ``source.repo_id`` is not set.

    Returns:
        A directory containing every file in ``filenames``.

    Raises:
        ModelLoadError: ``source.path`` is set but does not hold the files.
        WeightsNotFoundError: No path was configured and neither the cache nor the hub had the
            files (no repository, ``huggingface_hub`` missing, offline, unknown repo, ...).
    """
    if not filenames:
        raise ValueError("filenames must not be empty")
    if source.path is not None:
        return _explicit_path(Path(source.path).expanduser(), filenames)
    repo_id = source.repo_id or default_repo_id
    if repo_id is None:
        raise WeightsNotFoundError("no weights path or repository configured")
    attempts: list[str] = []
    for local_only in (True, False):
        directory = _from_hub(repo_id, source.revision, filenames, local_only, attempts)
        if directory is not None:
            return directory
    raise WeightsNotFoundError(f"weights for {repo_id!r} not found: " + "; ".join(attempts))


def _explicit_path(path: Path, filenames: Sequence[str]) -> Path:
    if not path.exists():
        raise ModelLoadError(f"weights path {path} does not exist")
    directory = path if path.is_dir() else path.parent
    missing = [name for name in filenames if not (directory / name).is_file()]
    if missing:
        raise ModelLoadError(f"weights path {path} lacks {', '.join(missing)}")
    return directory


def _from_hub(
    repo_id: str,
    revision: str | None,
    filenames: Sequence[str],
    local_only: bool,
    attempts: list[str],
) -> Path | None:
    where = "local Hugging Face cache" if local_only else "Hugging Face hub download"
    target = f"{repo_id}@{revision}" if revision else repo_id
    try:
        from huggingface_hub import snapshot_download
    except ImportError:
        if local_only:
            attempts.append("huggingface_hub is not installed, so no cache or hub lookup")
        return None
    try:
        snapshot = snapshot_download(
            repo_id,
            revision=revision,
            allow_patterns=list(filenames),
            local_files_only=local_only,
        )
    except Exception as exc:  # offline, unknown repo, HTTP errors: all mean "not here"
        attempts.append(f"{where} of {target}: {type(exc).__name__}: {_first_line(exc)}")
        return None
    directory = Path(snapshot)
    missing = [name for name in filenames if not (directory / name).is_file()]
    if missing:
        attempts.append(f"{where} of {target} lacks {', '.join(missing)}")
        return None
    logger.info("weights for %s found via %s: %s", target, where, directory)
    return directory


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0] if text else "(no message)"
