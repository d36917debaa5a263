"""Writing outputs safely: every file appears whole or not at all.

Outputs are written to a temporary file in the destination directory and renamed into place
(``os.replace`` is atomic on POSIX), so an error or a kill never leaves a half-written file;
the file gets the mode a plain ``open`` would give it (``0o666`` less the umask, or the mode
of the file it replaces), not the temporary file's ``0o600``. :func:`check_outputs` checks a
command's output paths before any work starts.
"""

from __future__ import annotations

import contextlib
import functools
import io
import json
import math
import os
import tempfile
from collections.abc import Iterable, Iterator, Mapping
from pathlib import Path
from typing import IO, TYPE_CHECKING, Any

import numpy as np

from cfpoison.errors import ConfigError, OutputError

if TYPE_CHECKING:
    from matplotlib.figure import Figure


@contextlib.contextmanager
def atomic_write(path: str | os.PathLike[str], mode: str = "w", **kwargs: Any) -> Iterator[IO[Any]]:
    """Open a temporary file beside ``path``; rename it onto ``path`` only on success."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, mode, **kwargs) as handle:
            yield handle
            handle.flush()
            os.fsync(handle.fileno())
        os.chmod(tmp, _mode_of(path))
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise


@functools.cache
def _umask() -> int:
    """The process's umask (read once: setting it is the only way to read it)."""
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


def _mode_of(path: Path) -> int:
    """The permission bits of the file ``path`` replaces, else ``0o666`` less the umask."""
    try:
        return path.stat().st_mode & 0o7777
    except FileNotFoundError:
        return 0o666 & ~_umask()


def check_outputs(
    files: Mapping[str, Path | None],
    folders: Mapping[str, Path | None] | None = None,
    inputs: Iterable[tuple[str, Path | None]] = (),
) -> None:
    """Check a command's outputs before it works: raise :class:`OutputError` unless every file
    can be written (its folder exists and is writable, the path is not a folder) and every
    folder made (an existing folder, or a new one under a writable folder); raise
    :class:`ConfigError` when two outputs, or an output and an input, are the same path.

    The mappings (and the ``(flag, path)`` pairs of ``inputs``) name each path by the flag
    that gave it (None: not given).
    """
    folders = folders or {}
    outputs: dict[Path, str] = {}
    for flag, path in {**files, **folders}.items():
        if path is None:
            continue
        key = Path(path).expanduser().resolve()
        if key in outputs:
            raise ConfigError(f"{outputs[key]} and {flag} are the same path {path}")
        outputs[key] = flag
    for flag, path in inputs:
        if path is not None and (found := Path(path).expanduser().resolve()) in outputs:
            raise ConfigError(f"{outputs[found]} {path} would overwrite the input {flag}")
    for flag, path in files.items():
        if path is not None:
            _check_file(flag, Path(path))
    for flag, path in folders.items():
        if path is not None:
            _check_folder(flag, Path(path))


def _check_file(flag: str, path: Path) -> None:
    if path.is_dir():
        raise OutputError(f"{flag} {path}: is a folder; give a file name")
    parent = path.parent
    if not parent.is_dir():
        raise OutputError(f"{flag} {path}: no such folder {parent}")
    _check_writable(flag, path, parent)


def _check_folder(flag: str, path: Path) -> None:
    if path.exists():
        if not path.is_dir():
            raise OutputError(f"{flag} {path}: exists and is not a folder")
        _check_writable(flag, path, path)
        return
    ancestor = path.parent
    while not ancestor.exists():
        ancestor = ancestor.parent
    if not ancestor.is_dir():
        raise OutputError(f"{flag} {path}: {ancestor} is not a folder")
    _check_writable(flag, path, ancestor)


def _check_writable(flag: str, path: Path, folder: Path) -> None:
    if not os.access(folder, os.W_OK | os.X_OK):
        raise OutputError(f"{flag} {path}: cannot write in {folder} (permission denied)")


def to_jsonable(value: Any) -> Any:
    """Convert NumPy scalars and arrays, tuples, paths and configs to JSON types.

    Non-finite floats become ``None`` (strict JSON has no NaN or infinity).
    """
    if hasattr(value, "to_dict") and callable(value.to_dict):
        return to_jsonable(value.to_dict())
    if isinstance(value, dict):
        return {str(k): to_jsonable(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [to_jsonable(v) for v in value]
    if isinstance(value, np.ndarray):
        return to_jsonable(value.tolist())
    if isinstance(value, np.bool_):
        return bool(value)
    if isinstance(value, np.integer):
        return int(value)
    if isinstance(value, float | np.floating):
        value = float(value)
        return value if math.isfinite(value) else None
    if isinstance(value, os.PathLike):
        return os.fspath(value)
    return value


def write_json(path: str | os.PathLike[str], payload: Any) -> None:
    """Write ``payload`` as indented, strict JSON, atomically."""
    text = json.dumps(to_jsonable(payload), indent=2, sort_keys=True, allow_nan=False)
    with atomic_write(path) as handle:
        handle.write(text + "\n")


def write_figure_report(
    directory: str | os.PathLike[str],
    stem: str,
    heading: str,
    body: str,
    figure: Figure,
    payload: Any,
) -> list[Path]:
    """``STEM.png`` (``figure``), ``STEM.json`` (``payload``) and ``STEM.md`` (``# heading``,
    ``body``, the figure embedded, titled by ``heading``) under ``directory``, each atomically,
    the page last so that it never points at a missing file; the three paths."""
    directory = Path(directory)
    md, png, js = (directory / f"{stem}.{ext}" for ext in ("md", "png", "json"))
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png", dpi=120, metadata={"Software": None})
    with atomic_write(png, "wb") as handle:
        handle.write(buffer.getvalue())
    write_json(js, payload)
    with atomic_write(md) as handle:
        handle.write(f"# {heading}\n\n{body}\n![{heading}]({png.name})\n")
    return [md, png, js]
