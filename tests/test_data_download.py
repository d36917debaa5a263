"""The download path against a loopback HTTP server: good, corrupted and truncated archives,
a server that is down; the bundled ml-latest-small; and the lookup order
data_dir -> cache -> bundled -> download."""

from __future__ import annotations

import dataclasses
import hashlib
import io
import lzma
import shutil
import socket
import zipfile
from pathlib import Path
from typing import TYPE_CHECKING

import pytest

from cfpoison.data import registry
from cfpoison.data.download import BASE_URL_ENV, DEFAULT_BASE_URL, archive_url
from cfpoison.data.registry import DATASETS, cache_dir, load_dataset, ratings_path
from cfpoison.errors import DataError, DownloadError

if TYPE_CHECKING:
    from conftest import LoopbackServer


@pytest.fixture
def cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    monkeypatch.delenv(BASE_URL_ENV, raising=False)
    return tmp_path / "xdg" / "cfpoison"


def trust(monkeypatch: pytest.MonkeyPatch, name: str, archive: bytes, **changes: object) -> None:
    """Record ``archive``'s checksum for ``name`` (the test's zip is not GroupLens's) and drop
    its bundled copy, so that loading it downloads."""
    info = dataclasses.replace(
        DATASETS[name],
        sha256=hashlib.sha256(archive).hexdigest(),
        md5="",
        bundled_sha256="",
        **changes,
    )
    monkeypatch.setitem(DATASETS, name, info)


def leftovers(cache: Path) -> list[str]:
    return sorted(p.name for p in cache.iterdir()) if cache.exists() else []


def test_cache_dir_follows_xdg(cache: Path) -> None:
    assert cache_dir() == cache


def test_archive_url(monkeypatch: pytest.MonkeyPatch) -> None:
    info = DATASETS["ml-10m"]
    monkeypatch.delenv(BASE_URL_ENV, raising=False)
    assert archive_url(info) == DEFAULT_BASE_URL + "ml-10m.zip"
    assert info.url == "https://files.grouplens.org/datasets/movielens/ml-10m.zip"
    monkeypatch.setenv(BASE_URL_ENV, "http://127.0.0.1:9")
    assert archive_url(info) == "http://127.0.0.1:9/ml-10m.zip"
    assert archive_url(info, "http://h/x/") == "http://h/x/ml-10m.zip"


def test_good_archive_downloads_into_cache_once(
    cache: Path,
    loopback_server: LoopbackServer,
    ml_small_zip: bytes,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    trust(monkeypatch, "ml-latest-small", ml_small_zip)
    loopback_server.files["ml-latest-small.zip"] = ml_small_zip
    monkeypatch.setenv(BASE_URL_ENV, loopback_server.url)
    r = load_dataset("ml-latest-small", progress=True)
    assert (r.n_users, r.n_items, r.nnz) == (610, 9724, 100836)
    assert leftovers(cache) == ["ml-latest-small"]
    assert sorted(p.name for p in (cache / "ml-latest-small").iterdir()) == [
        "README.txt", "ratings.csv",
    ]  # fmt: skip
    # the second load reads the cache: the server is no longer asked
    loopback_server.files.clear()
    assert load_dataset("ml-latest-small", download=False).nnz == 100836


def test_corrupted_archive_leaves_nothing(
    cache: Path,
    loopback_server: LoopbackServer,
    ml_small_zip: bytes,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    trust(monkeypatch, "ml-latest-small", ml_small_zip)
    corrupted = bytearray(ml_small_zip)
    corrupted[len(corrupted) // 2] ^= 0xFF
    loopback_server.files["ml-latest-small.zip"] = bytes(corrupted)
    with pytest.raises(DownloadError, match="checksum mismatch") as err:
        load_dataset("ml-latest-small", base_url=loopback_server.url)
    assert "\n" not in str(err.value)
    assert leftovers(cache) == []


def test_truncated_transfer_leaves_nothing(
    cache: Path,
    loopback_server: LoopbackServer,
    ml_small_zip: bytes,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    trust(monkeypatch, "ml-latest-small", ml_small_zip)
    loopback_server.files["ml-latest-small.zip"] = ml_small_zip
    loopback_server.truncate = True
    with pytest.raises(DownloadError, match="truncated download"):
        load_dataset("ml-latest-small", base_url=loopback_server.url)
    assert leftovers(cache) == []


def test_truncated_archive_with_matching_checksum(
    cache: Path,
    loopback_server: LoopbackServer,
    ml_small_zip: bytes,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # a cut archive whose checksum was (wrongly) recorded: the zip itself is refused
    cut = ml_small_zip[: len(ml_small_zip) // 2]
    trust(monkeypatch, "ml-latest-small", cut)
    loopback_server.files["ml-latest-small.zip"] = cut
    with pytest.raises(DownloadError, match="not a valid zip archive"):
        load_dataset("ml-latest-small", base_url=loopback_server.url)
    assert leftovers(cache) == []


def test_server_down(cache: Path) -> None:
    with socket.socket() as sock:  # a port nobody listens on
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    with pytest.raises(DownloadError, match="cannot connect") as err:
        load_dataset("ml-100k", base_url=f"http://127.0.0.1:{port}/")
    assert "\n" not in str(err.value)
    assert leftovers(cache) == []


def test_http_error(cache: Path, loopback_server: LoopbackServer) -> None:
    with pytest.raises(DownloadError, match="HTTP 404"):
        load_dataset("ml-1m", base_url=loopback_server.url)
    assert leftovers(cache) == []


def test_ml_10m_top_folder_and_md5(
    cache: Path, loopback_server: LoopbackServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    # ml-10m.zip unpacks to ml-10M100K/; its only recorded checksum is an MD5
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        archive.writestr("ml-10M100K/ratings.dat", "1::122::5::838985046\n2::185::4.5::1\n")
    data = buffer.getvalue()
    info = dataclasses.replace(
        DATASETS["ml-10m"], md5=hashlib.md5(data).hexdigest(), users=2, items=2, ratings=2
    )
    monkeypatch.setitem(DATASETS, "ml-10m", info)
    loopback_server.files["ml-10m.zip"] = data
    r = load_dataset("ml-10m", base_url=loopback_server.url)
    assert (r.n_users, r.n_items, r.nnz) == (2, 2, 2)
    assert (cache / "ml-10m" / "ratings.dat").is_file() and leftovers(cache) == ["ml-10m"]


def test_lookup_order(tmp_path: Path, cache: Path, movielens_dir: Path) -> None:
    # 1. data_dir/<name>/ (also data_dir/<archive folder>/), 2. the cache, 3. the bundled copy
    # (ml-latest-small only), 4. download
    shared = registry.find_local(DATASETS["ml-latest-small"], movielens_dir)
    assert ratings_path("ml-latest-small", movielens_dir, download=False) == shared
    bundled = registry.bundled_ratings(DATASETS["ml-latest-small"])
    assert ratings_path("ml-latest-small", tmp_path / "empty", download=False) == bundled
    with pytest.raises(DataError, match="download is off"):
        ratings_path("ml-latest-small", tmp_path / "empty", download=False, bundled=False)
    ten = DATASETS["ml-10m"]
    own = tmp_path / "mine" / "ml-10M100K"
    own.mkdir(parents=True)
    (own / "ratings.dat").write_text("1::2::3::4\n")
    assert ratings_path("ml-10m", tmp_path / "mine", download=False) == own / "ratings.dat"
    cached = cache / "ml-10m"
    cached.mkdir(parents=True)
    (cached / "ratings.dat").write_text("1::2::3::4\n")
    assert ratings_path("ml-10m", tmp_path / "mine", download=False) == own / "ratings.dat"
    assert ratings_path("ml-10m", tmp_path / "elsewhere", download=False) == cached / "ratings.dat"
    assert registry.find_local(ten, None) == cached / "ratings.dat"
    with pytest.raises(DataError, match="download is off"):
        ratings_path("ml-20m", tmp_path, download=False)
    with pytest.raises(DataError, match="ml-20m is not bundled"):
        registry.bundled_ratings(DATASETS["ml-20m"])


@pytest.mark.realdata
def test_bundled_copy_loads_offline_with_an_empty_cache(
    cache: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv(BASE_URL_ENV, "http://127.0.0.1:9/")  # any download would fail
    r = load_dataset("ml-latest-small")
    assert (r.n_users, r.n_items, r.nnz) == (610, 9724, 100836)
    path = ratings_path("ml-latest-small")
    assert path.is_relative_to(cache / "bundled") and leftovers(cache) == ["bundled"]
    expected = DATASETS["ml-latest-small"].bundled_sha256
    assert hashlib.sha256(path.read_bytes()).hexdigest() == expected
    assert "Usage License" in (path.parent / "README.txt").read_text()  # the license travels
    shipped = registry.BUNDLED_DIR / "ml-latest-small"
    assert sorted(p.name for p in shipped.iterdir()) == ["README.txt", "ratings.csv.xz"]
    assert (shipped / "ratings.csv.xz").stat().st_size < 1_000_000
    # a damaged unpacked copy is rewritten by the next process (here: after the cache clears)
    path.write_bytes(b"userId,movieId,rating\n1,1,9\n")
    registry._unpack_bundled.cache_clear()
    assert ratings_path("ml-latest-small") == path
    assert hashlib.sha256(path.read_bytes()).hexdigest() == expected


@pytest.mark.realdata
def test_bundled_copy_without_a_writable_cache(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    (tmp_path / "not-a-folder").write_text("")
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "not-a-folder"))
    path = ratings_path("ml-latest-small", download=False)
    assert not path.is_relative_to(tmp_path) and path.parent.name == "ml-latest-small"
    assert load_dataset("ml-latest-small", download=False).nnz == 100836


@pytest.mark.realdata
@pytest.mark.parametrize("damage", ["flip", "truncate", "alter", "missing"])
def test_corrupted_bundled_copy_is_one_line_error(
    damage: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    copy = tmp_path / "bundled" / "ml-latest-small"
    shutil.copytree(registry.BUNDLED_DIR / "ml-latest-small", copy)
    packed = copy / "ratings.csv.xz"
    data = bytearray(packed.read_bytes())
    if damage == "flip":
        data[len(data) // 2] ^= 0xFF
        packed.write_bytes(bytes(data))
    elif damage == "truncate":
        packed.write_bytes(bytes(data[: len(data) // 2]))
    elif damage == "alter":  # a valid xz stream, one rating changed: only the checksum sees it
        text = lzma.decompress(bytes(data)).replace(b"1,1,4.0,", b"1,1,3.0,", 1)
        packed.write_bytes(lzma.compress(text))
    else:
        packed.unlink()
    monkeypatch.setattr(registry, "BUNDLED_DIR", tmp_path / "bundled")
    expected = "is corrupted" if damage == "alter" else "cannot read the bundled ml-latest-small"
    with pytest.raises(DataError, match=expected) as err:
        load_dataset("ml-latest-small", tmp_path / "no-data-here", download=False)
    assert "\n" not in str(err.value)


def test_names_and_errors(tmp_path: Path) -> None:
    names = registry.dataset_names()
    for name in ("synthetic", "synthetic:ml-20m", "ml-latest-small", "ml-25m", "csv:PATH"):
        assert name in names
    with pytest.raises(DataError, match="unknown data set 'ml-5m'"):
        load_dataset("ml-5m")
    with pytest.raises(DataError, match="unknown synthetic preset 'huge'"):
        load_dataset("synthetic:huge")
    with pytest.raises(DataError, match="apply to csv:PATH"):
        load_dataset("ml-latest-small", delimiter=",")
    assert load_dataset("synthetic:small").name == "synthetic:small"
    path = tmp_path / "mine.csv"
    path.write_text("u;i;r\n1;1;2\n1;2;4\n")
    r = load_dataset(f"csv:{path}")
    assert r.name == f"csv:{path}" and r.scale.low == 2 and r.scale.high == 4


def test_registry_entries_are_consistent() -> None:
    for name, info in DATASETS.items():
        assert info.name == name and info.archive == f"{name}.zip"
        assert info.sha256 or info.md5
        expected = {"tab": "u.data", "dat": "ratings.dat", "csv": "ratings.csv"}[info.layout]
        assert info.ratings_file == expected
    assert DATASETS["ml-10m"].archive_dir == "ml-10M100K"
    assert DATASETS["ml-1m"].scale.step == 1 and DATASETS["ml-25m"].scale.step == 0.5
