"""The result store: SQLite, one row per finished cell, keyed by the SHA-256 of its config.

Each row (config, metrics and history as JSON, seconds, package versions, finish time) is
written in one transaction, so a run killed at any moment leaves only whole rows; restarted,
it computes only the keys that are missing. WAL journaling lets readers (a report, an export)
work while a sweep writes. Only runner processes write (several may share a store: see
``leases``); workers return results.
"""

from __future__ import annotations

import contextlib
import csv
import dataclasses
import datetime
import json
import os
import sqlite3
import time
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

from cfpoison.errors import CfpoisonError, DataError
from cfpoison.experiments.sweeps.spec import flatten
from cfpoison.io import atomic_write, to_jsonable

SCHEMA_VERSION = 1

_SCHEMA = """
CREATE TABLE IF NOT EXISTS cells (
    key TEXT PRIMARY KEY,
    config TEXT NOT NULL,
    metrics TEXT NOT NULL,
    history TEXT NOT NULL,
    seconds REAL NOT NULL,
    versions TEXT NOT NULL,
    finished_at TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS meta (name TEXT PRIMARY KEY, value TEXT NOT NULL);
"""


@dataclasses.dataclass(frozen=True)
class StoredCell:
    """One finished cell as stored."""

    key: str
    config: dict[str, Any]
    metrics: dict[str, Any]
    history: Any
    seconds: float
    versions: dict[str, str]
    finished_at: str

    def flat(self) -> dict[str, Any]:
        """Key, dotted config fields, metrics (scalars only) and seconds in one flat dict."""
        row: dict[str, Any] = {"key": self.key}
        row.update(flatten(self.config))
        row.update(
            {k: v for k, v in self.metrics.items() if v is None or isinstance(v, int | float | str)}
        )
        row["seconds"] = self.seconds
        row["finished_at"] = self.finished_at
        return row


def _dumps(value: Any) -> str:
    return json.dumps(to_jsonable(value), sort_keys=True, allow_nan=False)


class ResultStore:
    """A SQLite file of finished cells (see the module docstring)."""

    def __init__(self, path: str | os.PathLike[str]) -> None:
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        try:
            self._conn = sqlite3.connect(self.path, timeout=30.0, isolation_level=None)
            self._setup(time.monotonic() + 30.0)
        except sqlite3.DatabaseError as err:
            raise DataError(f"{self.path}: not a cfpoison result store ({err})") from None

    def _setup(self, deadline: float) -> None:
        """WAL mode and the schema; retried while another runner creates the same store (the
        switch to WAL does not wait for its lock)."""
        while True:
            try:
                self._conn.execute("PRAGMA journal_mode=WAL")
                self._conn.execute("PRAGMA synchronous=NORMAL")
                self._conn.executescript(_SCHEMA)
                self._check_schema()
                return
            except sqlite3.OperationalError as err:
                if "locked" not in str(err) or time.monotonic() > deadline:
                    raise
                time.sleep(0.05)

    def _check_schema(self) -> None:
        row = self._conn.execute("SELECT value FROM meta WHERE name = 'schema'").fetchone()
        if row is None:
            self._conn.execute(
                "INSERT OR IGNORE INTO meta VALUES ('schema', ?)", (str(SCHEMA_VERSION),)
            )
        elif int(row[0]) != SCHEMA_VERSION:
            raise DataError(f"{self.path}: store schema {row[0]}, expected {SCHEMA_VERSION}")

    def close(self) -> None:
        self._conn.close()

    def __enter__(self) -> ResultStore:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def put(
        self,
        key: str,
        config: dict[str, Any],
        metrics: dict[str, Any],
        history: Any,
        seconds: float,
        versions: dict[str, str],
    ) -> bool:
        """Store one finished cell in one transaction; False if the key was already there."""
        finished = datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds")
        values = (
            key,
            _dumps(config),
            _dumps(metrics),
            _dumps(history),
            float(seconds),
            _dumps(versions),
            finished,
        )
        with self._transaction():
            cursor = self._conn.execute(
                "INSERT INTO cells VALUES (?, ?, ?, ?, ?, ?, ?) ON CONFLICT(key) DO NOTHING", values
            )
        return cursor.rowcount == 1

    @contextlib.contextmanager
    def _transaction(self) -> Iterator[None]:
        self._conn.execute("BEGIN IMMEDIATE")
        try:
            yield
        except BaseException:
            self._conn.execute("ROLLBACK")
            raise
        self._conn.execute("COMMIT")

    def keys(self) -> set[str]:
        return {row[0] for row in self._conn.execute("SELECT key FROM cells")}

    def __len__(self) -> int:
        return int(self._conn.execute("SELECT COUNT(*) FROM cells").fetchone()[0])

    def __contains__(self, key: object) -> bool:
        query = "SELECT 1 FROM cells WHERE key = ?"
        return self._conn.execute(query, (key,)).fetchone() is not None

    def rows(self, keys: Iterable[str] | None = None) -> list[StoredCell]:
        """Stored cells (all, or those of ``keys`` that exist), in insertion order."""
        wanted = None if keys is None else set(keys)
        return [row for row in self._iter_rows() if wanted is None or row.key in wanted]

    def _iter_rows(self) -> Iterator[StoredCell]:
        query = "SELECT key, config, metrics, history, seconds, versions, finished_at FROM cells"
        for key, config, metrics, history, seconds, versions, finished in self._conn.execute(
            query + " ORDER BY rowid"
        ):
            yield StoredCell(
                key,
                json.loads(config),
                json.loads(metrics),
                json.loads(history),
                seconds,
                json.loads(versions),
                finished,
            )


def _columns(rows: list[dict[str, Any]]) -> list[str]:
    columns: dict[str, None] = {}
    for row in rows:
        columns.update(dict.fromkeys(row))
    return list(columns)


def export_csv(rows: list[StoredCell], path: str | os.PathLike[str]) -> None:
    """One line per cell: key, dotted config fields, scalar metrics, seconds (atomic)."""
    flat = [row.flat() for row in rows]
    columns = _columns(flat)
    with atomic_write(path, newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=columns)
        writer.writeheader()
        for row in flat:
            writer.writerow({k: _csv_value(row.get(k)) for k in columns})


def _csv_value(value: Any) -> Any:
    return json.dumps(value) if isinstance(value, list | dict) else value


def export_parquet(rows: list[StoredCell], path: str | os.PathLike[str]) -> None:
    """The CSV's columns plus ``config_json`` and ``history_json``, as Parquet (pyarrow)."""
    try:
        import pyarrow as pa
        import pyarrow.parquet as pq
    except ImportError:
        raise CfpoisonError(
            "Parquet export needs pyarrow: pip install 'cfpoison[parquet]'"
        ) from None
    flat = [row.flat() for row in rows]
    columns = _columns(flat)
    data: dict[str, list[Any]] = {k: [_csv_value(r.get(k)) for r in flat] for k in columns}
    data["config_json"] = [_dumps(row.config) for row in rows]
    data["history_json"] = [_dumps(row.history) for row in rows]
    table = pa.table({k: _arrow_column(v) for k, v in data.items()})
    with atomic_write(path, "wb") as handle:
        pq.write_table(table, handle)


def _arrow_column(values: list[Any]) -> Any:
    """A column of one type: mixed numbers become float, anything else mixed becomes text."""
    import pyarrow as pa

    kinds = {type(v) for v in values if v is not None}
    if kinds <= {int, float} and kinds != {int}:
        return pa.array([None if v is None else float(v) for v in values], pa.float64())
    if len(kinds) > 1:
        return pa.array([None if v is None else str(v) for v in values], pa.string())
    return pa.array(values)
