"""`cfpoison data list|info|fetch`: in-process, and once as the installed script."""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path
from typing import TYPE_CHECKING

import pytest

from cfpoison.cli import main
from cfpoison.data.registry import DATASETS

if TYPE_CHECKING:
    from conftest import LoopbackServer


@pytest.fixture(autouse=True)
def isolated(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, movielens_dir: Path) -> None:
    """Data from the shared copy, an empty private cache, and no network."""
    monkeypatch.setenv("CFPOISON_DATA_DIR", str(movielens_dir))
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    monkeypatch.setenv("CFPOISON_MOVIELENS_URL", "http://127.0.0.1:9/")


def test_info_ml_latest_small(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out_json = tmp_path / "info.json"
    assert main(["data", "info", "ml-latest-small", "--json", str(out_json)]) == 0
    out = capsys.readouterr().out
    for line in ("users             610", "items             9724", "ratings           100836"):
        assert line in out
    assert "scale             0.5-5 in steps of 0.5" in out
    payload = json.loads(out_json.read_text())
    assert (payload["users"], payload["items"], payload["ratings"]) == (610, 9724, 100836)
    assert payload["scale"] == {"low": 0.5, "high": 5, "step": 0.5}
    assert payload["ratings_per_user"]["min"] == 20 and payload["ratings_per_user"]["max"] == 2698


def test_info_synthetic(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["data", "info", "synthetic:small"]) == 0
    info = capsys.readouterr().out
    assert "users             200" in info and "ratings           12000" in info
    assert "scale             1-5 in steps of 1" in info


def test_bad_csv_is_one_line_exit_1(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    bad = tmp_path / "bad.csv"
    bad.write_text("userId,movieId,rating\n1,2,4\n1,3,NaN\nabc,4,3\n")
    assert main(["data", "info", f"csv:{bad}"]) == 1
    err = capsys.readouterr().err
    assert err == f"cfpoison: error: {bad}, line 3: rating 'NaN' is not a finite number\n"


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["data", "info", "ml-5m"], "unknown data set 'ml-5m'"),
        (["data", "info", "csv:/no/such/file.csv"], "/no/such/file.csv: no such file"),
        (["data", "info", "ml-1m", "--offline"], "download is off"),
        (["data", "info", "ml-1m"], "cannot connect"),
        (["data", "fetch", "synthetic"], "only the MovieLens sets are"),
    ],
)
def test_errors_exit_1(args: list[str], message: str, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(args) == 1
    err = capsys.readouterr().err
    assert err.startswith("cfpoison: error: ") and message in err and err.count("\n") == 1


def test_csv_options(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = tmp_path / "dups.txt"
    path.write_text("1|5|2\n1|5|4\n2|5|3\n")
    assert main(["data", "info", f"csv:{path}", "--delimiter", "|"]) == 1
    assert "line 2: duplicate" in capsys.readouterr().err
    args = ["data", "info", f"csv:{path}", "--on-duplicate", "mean", "--scale", "1:5:1"]
    assert main([*args, "--json", str(tmp_path / "o.json")]) == 0
    payload = json.loads((tmp_path / "o.json").read_text())
    assert payload["ratings"] == 2 and payload["mean_rating"] == 3.0
    assert payload["scale"] == {"low": 1, "high": 5, "step": 1}


def test_usage_errors_exit_2(capsys: pytest.CaptureFixture[str]) -> None:
    for args in (["data"], ["data", "info"], ["data", "info", "x", "--scale", "5:1"]):
        with pytest.raises(SystemExit) as exc:
            main(args)
        assert exc.value.code == 2
    capsys.readouterr()


def test_list(tmp_path: Path, capsys: pytest.CaptureFixture[str], movielens_dir: Path) -> None:
    assert main(["data", "list", "--json", str(tmp_path / "l.json")]) == 0
    out = capsys.readouterr().out
    assert "synthetic:ml-20m" in out and "ml-25m" in out and "csv:PATH" in out
    rows = {r["name"]: r for r in json.loads((tmp_path / "l.json").read_text())["datasets"]}
    assert rows["ml-latest-small"]["where"].startswith(str(movielens_dir))
    assert rows["ml-1m"]["where"] == "download"
    assert rows["synthetic:ml-1m"]["ratings"] == 1_000_209


def test_fetch_from_loopback(
    tmp_path: Path,
    loopback_server: LoopbackServer,
    ml_small_zip: bytes,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    monkeypatch.delenv("CFPOISON_DATA_DIR")
    info = dataclasses.replace(
        DATASETS["ml-latest-small"], sha256=hashlib.sha256(ml_small_zip).hexdigest()
    )
    monkeypatch.setitem(DATASETS, "ml-latest-small", info)
    loopback_server.files["ml-latest-small.zip"] = ml_small_zip
    assert main(["-q", "data", "fetch", "ml-latest-small", "--base-url", loopback_server.url]) == 0
    cached = tmp_path / "xdg" / "cfpoison" / "ml-latest-small" / "ratings.csv"
    assert cached.is_file()
    assert main(["data", "fetch", "ml-latest-small"]) == 0  # already there: no download
    assert str(cached) in capsys.readouterr().out


def test_installed_script(tmp_path: Path) -> None:
    script = shutil.which("cfpoison", path=os.path.dirname(sys.executable)) or shutil.which(
        "cfpoison"
    )
    assert script is not None, "the cfpoison console script is not installed"
    bad = tmp_path / "bad.csv"
    bad.write_text("user,item,rating\nx,1,3\n")
    done = subprocess.run(
        [script, "data", "info", f"csv:{bad}"], capture_output=True, text=True, timeout=120
    )
    assert done.returncode == 1 and done.stdout == ""
    assert done.stderr == f"cfpoison: error: {bad}, line 2: user id 'x' is not an integer\n"
    done = subprocess.run([script, "data", "info", "synthetic"], capture_output=True, text=True)
    assert done.returncode == 0 and "ratings           100000" in done.stdout
