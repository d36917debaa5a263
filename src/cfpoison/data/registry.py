"""Data sets by name: ``synthetic[:PRESET]``, the MovieLens sets, ``csv:PATH`` (ratings) and
``interactions:PATH`` (a native implicit-feedback file, :func:`load_interactions`).

Where a MovieLens set comes from, in this order:

1. ``data_dir/<name>/`` (callers fill ``data_dir`` from ``--data-dir`` or
   ``$CFPOISON_DATA_DIR``); the unpacked archive's own folder name is accepted too, as
   ``data_dir/<name>/<folder>/`` or ``data_dir/<folder>/`` (ml-10m unpacks to ``ml-10M100K``);
2. the user cache ``$XDG_CACHE_HOME/cfpoison/<name>/`` (default ``~/.cache/cfpoison``);
3. ml-latest-small only: the copy shipped with the package (``bundled/ml-latest-small/``:
   ``ratings.csv.xz`` and the README.txt whose license allows redistribution under the same
   terms), checked against the SHA-256 of the official ``ratings.csv`` recorded here and
   unpacked into the cache (:func:`bundled_ratings`); no network, no data directory;
4. a download of the official GroupLens archive into the cache (:mod:`.download`), verified
   against the checksum recorded here (third-party records of the official archives).

:func:`load_dataset` returns the raw ratings on the shifted scale, without preprocessing. A
MovieLens file, wherever it comes from, must be the official one: its SHA-256 where the
registry records it (ml-latest-small's ``ratings.csv``; verified once per file version and
process), and its counts of users, items and ratings. A copy cut at a line boundary or edited
raises :class:`DataError` unless the caller accepts modified data (then one warning).
"""

from __future__ import annotations

import atexit
import dataclasses
import functools
import hashlib
import logging
import lzma
import os
import shutil
import tempfile
from pathlib import Path

from cfpoison.data.download import archive_url, download_dataset
from cfpoison.data.interactions import Interactions
from cfpoison.data.parsers import Layout, OnDuplicate, parse_interactions, parse_ratings
from cfpoison.data.ratings import Ratings, RatingScale
from cfpoison.data.synthetic import PRESETS, make_synthetic
from cfpoison.errors import ConfigError, DataError
from cfpoison.io import atomic_write

log = logging.getLogger(__name__)

FIVE_STARS = RatingScale(1.0, 5.0, 1.0)
HALF_STARS = RatingScale(0.5, 5.0, 0.5)


@dataclasses.dataclass(frozen=True)
class DatasetInfo:
    """One MovieLens release: where it comes from, its layout, scale and expected counts."""

    name: str
    archive: str  # file name of the zip under the base URL
    archive_dir: str  # top folder inside the zip
    ratings_file: str
    layout: Layout
    scale: RatingScale
    users: int
    items: int
    ratings: int
    archive_bytes: int | None = None
    sha256: str = ""
    md5: str = ""
    #: SHA-256 of the official ratings file, shipped xz-compressed in ``bundled/<name>/``;
    #: "" if none is bundled.
    bundled_sha256: str = ""

    @property
    def url(self) -> str:
        """Download URL (``$CFPOISON_MOVIELENS_URL`` overrides the GroupLens base)."""
        return archive_url(self)


#: The MovieLens releases: counts, and checksums of the official archives.
DATASETS: dict[str, DatasetInfo] = {
    info.name: info
    for info in (
        DatasetInfo(
            "ml-latest-small", "ml-latest-small.zip", "ml-latest-small", "ratings.csv", "csv",
            HALF_STARS, 610, 9724, 100_836, 978_202,
            sha256="696d65a3dfceac7c45750ad32df2c259311949efec81f0f144fdfb91ebc9e436",
            bundled_sha256="aa289ca83157595d0df6aea1be6a4ded676ddc4385472e8313a8ed9805352646",
        ),
        DatasetInfo(
            "ml-100k", "ml-100k.zip", "ml-100k", "u.data", "tab",
            FIVE_STARS, 943, 1682, 100_000, 4_924_029,
            sha256="50d2a982c66986937beb9ffb3aa76efe955bf3d5c6b761f4e3a7cd717c6a3229",
            md5="0e33842e24a9c977be4e0107933c0723",
        ),
        DatasetInfo(
            "ml-1m", "ml-1m.zip", "ml-1m", "ratings.dat", "dat",
            FIVE_STARS, 6040, 3706, 1_000_209, 5_917_549,
            sha256="a6898adb50b9ca05aa231689da44c217cb524e7ebd39d264c56e2832f2c54e20",
            md5="c4d9eecfca2ab87c1945afe126590906",
        ),
        DatasetInfo(
            "ml-10m", "ml-10m.zip", "ml-10M100K", "ratings.dat", "dat",
            HALF_STARS, 69_878, 10_677, 10_000_054,
            md5="ce571fd55effeba0271552578f2648bd",
        ),
        DatasetInfo(
            "ml-20m", "ml-20m.zip", "ml-20m", "ratings.csv", "csv",
            HALF_STARS, 138_493, 26_744, 20_000_263, 198_702_078,
            sha256="96f243c338a8665f6bcc89c53edf6ee39162a846940de6b7c8c48aeada765ff3",
            md5="cd245b17a1ae2cc31bb14903e1204af3",
        ),
        DatasetInfo(
            "ml-25m", "ml-25m.zip", "ml-25m", "ratings.csv", "csv",
            HALF_STARS, 162_541, 59_047, 25_000_095, 261_978_986,
            sha256="8b21cfb7eb1706b4ec0aac894368d90acf26ebdfb6aced3ebd4ad5bd1eb9c6aa",
            md5="6b51fb2759a8657d3bfcbfc42b592ada",
        ),
    )
}  # fmt: skip

SYNTHETIC = "synthetic"
CSV_PREFIX = "csv:"
#: A native implicit-feedback file (``user,item[,weight[,timestamp]]``): ``interactions:PATH``.
INTERACTIONS_PREFIX = "interactions:"
#: The data shipped with the package: ``BUNDLED_DIR/<name>/<ratings file>.xz`` and README.txt.
BUNDLED_DIR = Path(__file__).with_name("bundled")
_BUNDLED_FILES = ("README.txt",)


def dataset_names() -> list[str]:
    """Every data set name (``csv:PATH`` and ``interactions:PATH`` shown as such; the last is
    read by :func:`load_interactions`, every other by :func:`load_dataset`)."""
    synthetic = [SYNTHETIC] + [f"{SYNTHETIC}:{p}" for p in PRESETS if p != "default"]
    return [*synthetic, *DATASETS, f"{CSV_PREFIX}PATH", f"{INTERACTIONS_PREFIX}PATH"]


def cache_dir() -> Path:
    """``$XDG_CACHE_HOME/cfpoison`` (default ``~/.cache/cfpoison``)."""
    base = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(base) / "cfpoison"


def movielens_info(name: str) -> DatasetInfo:
    """The registry entry of a MovieLens set; unknown names raise :class:`DataError`."""
    try:
        return DATASETS[name]
    except KeyError:
        known = ", ".join(dataset_names())
        raise DataError(f"unknown data set {name!r} (known: {known})") from None


def find_local(info: DatasetInfo, data_dir: Path | None = None) -> Path | None:
    """The ratings file of ``info`` under ``data_dir`` or the user cache, or None."""
    bases = [b for b in (data_dir, cache_dir()) if b is not None]
    for base in bases:
        for folder in (
            base / info.name,
            base / info.name / info.archive_dir,
            base / info.archive_dir,
        ):
            if (folder / info.ratings_file).is_file():
                return folder / info.ratings_file
    return None


def bundled_ratings(info: DatasetInfo) -> Path:
    """The ratings file of the copy of ``info`` shipped with the package, unpacked.

    Once per process the shipped ``<ratings file>.xz`` is decompressed and checked against
    ``info.bundled_sha256`` (a missing, corrupted or altered copy raises one
    :class:`DataError`), then kept as ``<cache>/bundled/<sha256[:16]>/<name>/`` with its
    README.txt, shared by every process (rewritten whenever it differs). Where the cache
    cannot be written, a temporary folder removed at exit takes its place.
    """
    if not info.bundled_sha256:
        raise DataError(f"{info.name} is not bundled with cfpoison")
    source, sha256 = BUNDLED_DIR / info.name, info.bundled_sha256
    return _unpack_bundled(source, info.name, info.ratings_file, sha256, cache_dir())


@functools.cache
def _unpack_bundled(source: Path, name: str, ratings_file: str, sha256: str, cache: Path) -> Path:
    archive = source / f"{ratings_file}.xz"
    try:
        files = {ratings_file: lzma.decompress(archive.read_bytes())}
        files.update((extra, (source / extra).read_bytes()) for extra in _BUNDLED_FILES)
    except (OSError, lzma.LZMAError) as err:
        reason = getattr(err, "strerror", None) or err
        raise DataError(f"{archive}: cannot read the bundled {name} ({reason})") from None
    digest = hashlib.sha256(files[ratings_file]).hexdigest()
    if digest != sha256:
        raise DataError(
            f"{archive}: the bundled {name} is corrupted (sha256 {digest}, expected {sha256}); "
            "reinstall cfpoison"
        )
    try:
        folder = cache / "bundled" / sha256[:16] / name
        _write_unless_equal(folder, files)
    except OSError as err:
        log.info("cannot keep the bundled %s in the cache (%s); using a temporary copy", name, err)
        try:
            folder = Path(tempfile.mkdtemp(prefix="cfpoison-bundled-")) / name
            atexit.register(shutil.rmtree, folder.parent, ignore_errors=True)
            _write_unless_equal(folder, files)
        except OSError as again:
            raise DataError(f"cannot unpack the bundled {name}: {again}") from None
    return folder / ratings_file


def _write_unless_equal(folder: Path, files: dict[str, bytes]) -> None:
    """Make ``folder/<name>`` hold ``files[name]`` for every name, each written atomically."""
    for file_name, data in files.items():
        path = folder / file_name
        if path.is_file() and path.read_bytes() == data:
            continue
        with atomic_write(path, "wb") as handle:
            handle.write(data)


def ratings_path(
    name: str,
    data_dir: str | os.PathLike[str] | None = None,
    *,
    download: bool = True,
    bundled: bool = True,
    progress: bool = False,
    base_url: str | None = None,
) -> Path:
    """The ratings file of MovieLens set ``name``: local, cached, bundled (unless ``bundled`` is
    False), or downloaded into the cache."""
    info = movielens_info(name)
    data_dir = None if data_dir is None else Path(data_dir)
    found = find_local(info, data_dir)
    if found is not None:
        return found
    if bundled and info.bundled_sha256:
        return bundled_ratings(info)
    if not download:
        places = [str(b / name) for b in (data_dir, cache_dir()) if b is not None]
        raise DataError(
            f"{name} is not in {' or '.join(places)}, and download is off "
            f"(cfpoison data fetch {name} downloads it)"
        )
    log.info("%s not found locally; downloading it into %s", name, cache_dir())
    return download_dataset(info, cache_dir(), base_url=base_url, progress=progress) / (
        info.ratings_file
    )


def synthetic_preset(name: str) -> str | None:
    """``"default"`` for ``synthetic``, the preset of ``synthetic:PRESET``, else None."""
    if name == SYNTHETIC:
        return "default"
    if name.startswith(f"{SYNTHETIC}:"):
        preset = name.split(":", 1)[1]
        if preset not in PRESETS:
            raise DataError(
                f"unknown synthetic preset {preset!r} (known: {', '.join(sorted(PRESETS))})"
            )
        return preset
    return None


def load_dataset(
    name: str,
    data_dir: str | os.PathLike[str] | None = None,
    *,
    download: bool = True,
    progress: bool = False,
    on_duplicate: OnDuplicate = "error",
    delimiter: str | None = None,
    scale: RatingScale | None = None,
    base_url: str | None = None,
    accept_modified: bool = False,
) -> Ratings:
    """The raw ratings of data set ``name`` (shifted scale, no preprocessing).

    ``delimiter`` and ``scale`` apply to ``csv:PATH`` only (default: sniffed, inferred);
    ``on_duplicate`` to files (``error``, ``first``, ``last`` or ``mean``). A MovieLens file
    that is not the official one (module docstring) raises :class:`DataError`, or with
    ``accept_modified`` logs one warning.
    """
    preset = synthetic_preset(name)
    if preset is not None:
        return make_synthetic(PRESETS[preset], name=name)
    if name.startswith(INTERACTIONS_PREFIX):
        raise ConfigError(
            f"{name} holds interactions, not ratings: `cfpoison promote`, `gradcheck promote`, "
            "`evaluate`, `detect` and `data info` read it"
        )
    if name.startswith(CSV_PREFIX):
        path = Path(name[len(CSV_PREFIX) :]).expanduser()
        return parse_ratings(
            path, "generic", scale=scale, on_duplicate=on_duplicate, delimiter=delimiter, name=name
        )
    info = movielens_info(name)
    if delimiter is not None or scale is not None:
        raise DataError(f"{name}: the delimiter and the scale are fixed; they apply to csv:PATH")
    path = ratings_path(name, data_dir, download=download, progress=progress, base_url=base_url)
    problems = []
    if info.bundled_sha256:
        stat = path.stat()
        digest = _sha256_of(str(path), stat.st_size, stat.st_mtime_ns)
        if digest != info.bundled_sha256:
            problems.append(f"sha256 {digest[:12]}..., expected {info.bundled_sha256[:12]}...")
    ratings = parse_ratings(
        path, info.layout, scale=info.scale, on_duplicate=on_duplicate, name=name
    )
    counts = (ratings.n_users, ratings.n_items, ratings.nnz)
    if counts != (info.users, info.items, info.ratings):
        problems.append(
            f"{counts[0]} users, {counts[1]} items, {counts[2]} ratings; the official release "
            f"has {info.users}, {info.items}, {info.ratings}"
        )
    if problems:
        message = f"{path} is not the official {name} ({'; '.join(problems)})"
        if not accept_modified:
            raise DataError(f"{message}: a cut or edited copy? --accept-modified-data reads it")
        log.warning("%s; read as given (--accept-modified-data)", message)
    return ratings


@functools.lru_cache(maxsize=32)
def _sha256_of(path: str, size: int, mtime_ns: int) -> str:
    """SHA-256 of the file ``path``; cached per version (size, modification time)."""
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        while chunk := handle.read(1 << 20):
            digest.update(chunk)
    return digest.hexdigest()


def load_interactions(
    name: str, *, on_duplicate: OnDuplicate = "error", delimiter: str | None = None
) -> Interactions:
    """The interactions of the native implicit-feedback file ``interactions:PATH``
    (:func:`cfpoison.data.parsers.parse_interactions`), no preprocessing."""
    if not name.startswith(INTERACTIONS_PREFIX):
        raise DataError(f"{name}: not an {INTERACTIONS_PREFIX}PATH data set")
    path = Path(name.removeprefix(INTERACTIONS_PREFIX)).expanduser()
    user_ids, item_ids, matrix = parse_interactions(
        path, on_duplicate=on_duplicate, delimiter=delimiter, name=name
    )
    return Interactions(matrix, user_ids, item_ids, name)
