"""The SQLite result store: one row per key, whole rows only, exports that carry the numbers."""

from __future__ import annotations

import csv
import sqlite3

import pyarrow.parquet as pq
import pytest

from cfpoison.errors import DataError
from cfpoison.experiments.sweeps.store import ResultStore, export_csv, export_parquet

VERSIONS = {"python": "3.11", "cfpoison": "0.1.0"}


def _put(store: ResultStore, key: str, shift: float, method: str = "pga") -> bool:
    config = {"runner": "fake", "attack": {"method": method, "alpha": 0.03, "seed": 1}}
    metrics = {"rmse_shift": shift, "targets": [7], "note": "ok", "nan": float("nan")}
    return store.put(key, config, metrics, {"utility": [0.1, 0.2]}, 1.5, VERSIONS)


def test_put_is_once_per_key_and_survives_reopening(tmp_path) -> None:
    path = tmp_path / "r.sqlite"
    with ResultStore(path) as store:
        assert _put(store, "k1", 0.25)
        assert not _put(store, "k1", 0.99)
        assert _put(store, "k2", 0.5, "uniform")
        assert len(store) == 2 and "k1" in store and "k3" not in store
    with ResultStore(path) as store:
        rows = store.rows()
        assert [r.key for r in rows] == ["k1", "k2"]
        assert rows[0].metrics["rmse_shift"] == 0.25  # the first write wins
        assert rows[0].metrics["nan"] is None  # strict JSON
        assert rows[0].history == {"utility": [0.1, 0.2]}
        assert rows[0].versions == VERSIONS and rows[0].seconds == 1.5
        assert [r.key for r in store.rows(["k2", "zz"])] == ["k2"]
    mode = sqlite3.connect(path).execute("PRAGMA journal_mode").fetchone()[0]
    assert mode == "wal"


def test_foreign_files_are_refused(tmp_path) -> None:
    junk = tmp_path / "junk.sqlite"
    junk.write_bytes(b"this is not a database, not at all" * 100)
    with pytest.raises(DataError, match="not a cfpoison result store"):
        ResultStore(junk)
    newer = tmp_path / "newer.sqlite"
    ResultStore(newer).close()
    sqlite3.connect(newer).execute("UPDATE meta SET value = '99'").connection.commit()
    with pytest.raises(DataError, match="schema 99"):
        ResultStore(newer)


def test_csv_and_parquet_exports_carry_the_stored_values(tmp_path) -> None:
    with ResultStore(tmp_path / "r.sqlite") as store:
        _put(store, "k1", 0.125)
        _put(store, "k2", 0.5, "uniform")
        rows = store.rows()
    export_csv(rows, tmp_path / "r.csv")
    with open(tmp_path / "r.csv", newline="") as handle:
        lines = list(csv.DictReader(handle))
    assert [line["key"] for line in lines] == ["k1", "k2"]
    assert float(lines[0]["rmse_shift"]) == 0.125
    assert lines[1]["attack.method"] == "uniform"
    assert "targets" not in lines[0]  # only scalar metrics become columns
    export_parquet(rows, tmp_path / "r.parquet")
    table = pq.read_table(tmp_path / "r.parquet").to_pydict()
    assert table["rmse_shift"] == [0.125, 0.5]
    assert table["attack.alpha"] == [0.03, 0.03]
    assert '"utility"' in table["history_json"][0]
