"""A content-addressed cache of what the cells of a sweep share (a clean fit, say).

An entry is a set of named NumPy arrays stored as one ``.npz`` file whose name is the SHA-256
of its key: the canonical JSON of everything that determines it. It also holds the key
itself, and is read back only when the stored key is the one asked for. Entries are written
to a temporary file beside their final name and renamed into place, so worker processes (on
one machine or sharing a filesystem) and resumed runs never see half an entry; two workers
that compute the same entry at once both write it and the last rename wins (the values are
the same). An entry that cannot be read, or holds another key, is recomputed and rewritten,
never trusted. Like the result store, the cache belongs to one version of the code: the key
records the package versions, not the source.
"""

from __future__ import annotations

import json
import logging
import os
import zipfile
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import numpy as np

from cfpoison.config import digest_of
from cfpoison.io import atomic_write, to_jsonable

log = logging.getLogger(__name__)

Entry = dict[str, np.ndarray]
_KEY = "__key__"


class Cache:
    """The entries under ``root`` (created on first write); see the module docstring."""

    def __init__(self, root: str | os.PathLike[str]) -> None:
        self.root = Path(root)

    def path(self, key: Mapping[str, Any]) -> Path:
        """Where the entry of ``key`` lives."""
        return self.root / f"{digest_of(to_jsonable(key))}.npz"

    def get(self, key: Mapping[str, Any]) -> Entry | None:
        """The stored entry of ``key``, or None if absent, unreadable or another key's."""
        path, text = self.path(key), _key_text(key)
        try:
            with np.load(path, allow_pickle=False) as data:
                entry = {name: data[name] for name in data.files}
        except FileNotFoundError:
            return None
        except (OSError, ValueError, EOFError, KeyError, zipfile.BadZipFile) as err:
            log.warning("cache entry %s is unreadable (%s): recomputing it", path.name, err)
            return None
        stored = entry.pop(_KEY, None)
        if stored is None or str(stored) != text:
            log.warning("cache entry %s does not hold its key: recomputing it", path.name)
            return None
        return entry

    def put(self, key: Mapping[str, Any], entry: Mapping[str, Any]) -> None:
        """Write ``entry`` (name -> array-like) under ``key``, atomically."""
        if _KEY in entry:
            raise ValueError(f"{_KEY} is reserved")
        arrays: dict[str, Any] = {name: np.asarray(value) for name, value in entry.items()}
        arrays[_KEY] = np.array(_key_text(key))
        with atomic_write(self.path(key), "wb") as handle:
            np.savez(handle, **arrays)

    def get_or_compute(
        self, key: Mapping[str, Any], compute: Callable[[], Mapping[str, Any]]
    ) -> Entry:
        """The entry of ``key``: read back, or computed by ``compute()`` and stored."""
        entry = self.get(key)
        if entry is None:
            entry = {name: np.asarray(value) for name, value in compute().items()}
            self.put(key, entry)
        return entry


def _key_text(key: Mapping[str, Any]) -> str:
    return json.dumps(to_jsonable(key), sort_keys=True, separators=(",", ":"))
