"""Cell leases: runners that share a store share its missing cells instead of each computing all.

Before it computes a cell, a runner creates the lease file ``KEY.lease`` in the store's lease
folder (``results.sqlite.leases/``) with ``os.open(O_CREAT | O_EXCL)``, which succeeds for one
runner only; the file holds the runner's id, pid, host and start time. Other runners skip a
leased cell and come back to it once they have nothing else to start: by then it is in the
store, or its lease is gone (the holder failed or stopped: it is leased again) or stale, and
then taken over. A lease is **stale** when its pid is dead on this host (a runner killed by
SIGKILL: taken over at once), or when its file's modification time is older than ``expiry``
seconds (:data:`LEASE_EXPIRY`, 10 minutes; a runner on another host that died): every holder
touches its leases every ``expiry / 4`` seconds, so a live runner's lease never expires
however long its cell runs. A finished or failed cell's lease is removed.

Taking over renames the stale file to a name of the taker's own (atomic: one rename wins), then
creates a fresh lease with ``O_EXCL``. Two runners that both take over one lease in the same
instant may both compute that cell; the store keeps its first row (the values are the same).
A reused pid makes a dead runner's lease look alive until it expires.
"""

from __future__ import annotations

import contextlib
import datetime
import json
import os
import socket
import threading
import time
import uuid
from pathlib import Path
from typing import Any

#: Seconds after its last refresh that a lease whose holder cannot be checked is stale.
LEASE_EXPIRY = 600.0
SUFFIX = ".lease"


def lease_folder(store_path: str | os.PathLike[str]) -> Path:
    """The lease folder of the store at ``store_path``."""
    path = Path(store_path)
    return path.with_name(path.name + ".leases")


def pid_alive(pid: int) -> bool:
    """Whether process ``pid`` exists on this host."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


class Leases:
    """One runner's leases in ``root`` (see the module docstring); a context manager that
    refreshes the held leases in a thread and removes them on exit."""

    def __init__(self, root: str | os.PathLike[str], expiry: float = LEASE_EXPIRY) -> None:
        self.root = Path(root)
        self.expiry = float(expiry)
        self.host = socket.gethostname()
        self.pid = os.getpid()
        self.runner = f"{self.host}:{self.pid}:{uuid.uuid4().hex[:8]}"
        self.held: set[str] = set()
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def __enter__(self) -> Leases:
        self.root.mkdir(parents=True, exist_ok=True)
        self._thread = threading.Thread(target=self._refresh, daemon=True, name="lease-refresh")
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join()
        for key in list(self.held):
            self.release(key)

    def path(self, key: str) -> Path:
        return self.root / f"{key}{SUFFIX}"

    def acquire(self, key: str) -> bool:
        """Lease ``key`` if no one holds it (True), else False."""
        record = {
            "runner": self.runner,
            "pid": self.pid,
            "host": self.host,
            "time": datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds"),
        }
        try:
            fd = os.open(self.path(key), os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644)
        except FileExistsError:
            return False
        with os.fdopen(fd, "w") as handle:
            json.dump(record, handle)
        with self._lock:
            self.held.add(key)
        return True

    def holder(self, key: str) -> dict[str, Any] | None:
        """The lease record of ``key`` (None: no lease, or one being written)."""
        with contextlib.suppress(OSError, ValueError):
            record = json.loads(self.path(key).read_text())
            if isinstance(record, dict):
                return record
        return None

    def stale(self, key: str) -> bool:
        """Whether ``key``'s lease exists and is stale (its pid dead here, or expired)."""
        try:
            age = time.time() - self.path(key).stat().st_mtime
        except FileNotFoundError:
            return False
        record = self.holder(key)
        if record is not None and record.get("host") == self.host:
            pid = record.get("pid")
            if isinstance(pid, int) and pid != self.pid and not pid_alive(pid):
                return True
        return age > self.expiry

    def claim(self, key: str) -> bool:
        """Lease ``key`` if it is free or its lease is stale (taken over); else False."""
        if self.acquire(key):
            return True
        if not self.stale(key):
            return False
        before = self.holder(key)
        tomb = self.root / f"{key}.{self.runner.replace(':', '-')}.stale"
        try:
            os.rename(self.path(key), tomb)
        except FileNotFoundError:
            return False  # another runner took it over first
        try:
            if json.loads(tomb.read_text() or "null") != before:  # a fresh lease: put it back
                with contextlib.suppress(FileExistsError):
                    os.link(tomb, self.path(key))
                return False
        except (OSError, ValueError):
            pass
        finally:
            tomb.unlink(missing_ok=True)
        return self.acquire(key)

    def release(self, key: str) -> None:
        """Remove ``key``'s lease if this runner still holds it."""
        with self._lock:
            self.held.discard(key)
        record = self.holder(key)
        if record is not None and record.get("runner") == self.runner:
            self.path(key).unlink(missing_ok=True)

    def _refresh(self) -> None:
        while not self._stop.wait(self.expiry / 4):
            with self._lock:
                keys = list(self.held)
            for key in keys:
                with contextlib.suppress(OSError):
                    os.utime(self.path(key))
