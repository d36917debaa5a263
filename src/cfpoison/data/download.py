"""Downloading a MovieLens archive into the user cache, all or nothing.

The archive is streamed to a temporary file inside the cache directory while its SHA-256 and
MD5 are computed, checked against the registry's checksum, unpacked into a temporary directory
beside it, and only then renamed to ``<cache>/<name>/`` (one atomic ``rename`` on the same
file system). A refused connection, a truncated transfer, a checksum mismatch or a broken
archive raises one :class:`DownloadError` and removes every temporary file, so the cache never
holds half a data set.
"""

from __future__ import annotations

import hashlib
import http.client
import os
import shutil
import tempfile
import urllib.error
import urllib.request
import zipfile
from pathlib import Path
from typing import TYPE_CHECKING

from tqdm import tqdm

from cfpoison.errors import DownloadError

if TYPE_CHECKING:
    from cfpoison.data.registry import DatasetInfo

#: Where GroupLens serves the archives; ``$CFPOISON_MOVIELENS_URL`` overrides it.
DEFAULT_BASE_URL = "https://files.grouplens.org/datasets/movielens/"
BASE_URL_ENV = "CFPOISON_MOVIELENS_URL"
_CHUNK = 1 << 20


def archive_url(info: DatasetInfo, base_url: str | None = None) -> str:
    """The archive's URL: ``base_url``, else ``$CFPOISON_MOVIELENS_URL``, else GroupLens."""
    base = base_url or os.environ.get(BASE_URL_ENV) or DEFAULT_BASE_URL
    return base.rstrip("/") + "/" + info.archive


def _stream(url: str, target: Path, progress: bool, timeout: float) -> tuple[str, str]:
    """Copy ``url`` to ``target``; return its SHA-256 and MD5 hex digests."""
    sha256, md5 = hashlib.sha256(), hashlib.md5()
    try:
        with urllib.request.urlopen(url, timeout=timeout) as response, open(target, "wb") as out:
            length = response.headers.get("Content-Length")
            expected = int(length) if length and length.isdigit() else None
            received = 0
            with tqdm(
                total=expected,
                unit="B",
                unit_scale=True,
                desc=Path(url).name,
                disable=not progress,
                leave=False,
            ) as bar:
                while chunk := response.read(_CHUNK):
                    out.write(chunk)
                    sha256.update(chunk)
                    md5.update(chunk)
                    received += len(chunk)
                    bar.update(len(chunk))
    except http.client.IncompleteRead as err:
        raise DownloadError(
            f"{url}: truncated download ({len(err.partial)} bytes in the last read)"
        ) from None
    except urllib.error.HTTPError as err:
        raise DownloadError(f"{url}: HTTP {err.code} {err.reason}") from None
    except urllib.error.URLError as err:
        raise DownloadError(f"{url}: cannot connect ({err.reason})") from None
    except (OSError, http.client.HTTPException) as err:
        raise DownloadError(f"{url}: download failed ({err})") from None
    if expected is not None and received != expected:
        raise DownloadError(f"{url}: truncated download ({received} of {expected} bytes)")
    return sha256.hexdigest(), md5.hexdigest()


def _verify(url: str, info: DatasetInfo, sha256: str, md5: str) -> None:
    if info.sha256:
        algorithm, got, want = "sha256", sha256, info.sha256
    elif info.md5:
        algorithm, got, want = "md5", md5, info.md5
    else:
        raise DownloadError(f"{url}: no checksum is known for {info.name}; refusing to use it")
    if got != want.lower():
        raise DownloadError(
            f"{url}: checksum mismatch ({algorithm} {got}, expected {want}); nothing was kept"
        )


def _unpack(url: str, archive: Path, into: Path, info: DatasetInfo) -> Path:
    """Extract ``archive`` under ``into``; return the folder holding the ratings file."""
    try:
        with zipfile.ZipFile(archive) as handle:
            broken = handle.testzip()
            if broken is not None:
                raise DownloadError(f"{url}: archive member {broken} is corrupt")
            handle.extractall(into)  # zipfile drops absolute paths and ".." components
    except (zipfile.BadZipFile, EOFError) as err:
        raise DownloadError(f"{url}: not a valid zip archive ({err})") from None
    for folder in (into / info.archive_dir, into):
        if (folder / info.ratings_file).is_file():
            return folder
    raise DownloadError(f"{url}: archive holds no {info.archive_dir}/{info.ratings_file}")


def download_dataset(
    info: DatasetInfo,
    cache: Path,
    *,
    base_url: str | None = None,
    progress: bool = False,
    timeout: float = 60.0,
) -> Path:
    """Download, verify and unpack ``info``'s archive as ``cache/<name>/``; return that folder.

    If another process put the folder in place meanwhile, its copy is kept.
    """
    url = archive_url(info, base_url)
    destination = cache / info.name
    try:
        cache.mkdir(parents=True, exist_ok=True)
        work = Path(tempfile.mkdtemp(prefix=f".{info.name}.", suffix=".partial", dir=cache))
    except OSError as err:
        raise DownloadError(f"cannot write to the cache {cache}: {err.strerror}") from None
    try:
        archive = work / info.archive
        sha256, md5 = _stream(url, archive, progress, timeout)
        _verify(url, info, sha256, md5)
        unpacked = _unpack(url, archive, work / "unpacked", info)
        try:
            os.rename(unpacked, destination)
        except OSError:
            if not (destination / info.ratings_file).is_file():
                raise DownloadError(f"{url}: cannot move the data set into {destination}") from None
    finally:
        shutil.rmtree(work, ignore_errors=True)
    return destination
