"""Long commands say what they are doing on stderr, with the seconds so far; --quiet silences."""

from __future__ import annotations

from pathlib import Path

import pytest

from cfpoison.cli import main


@pytest.fixture(scope="module")
def profiles(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("p") / "uniform.csv"
    argv = ["--quiet", "attack", "--dataset", "synthetic:small", "--method", "uniform"]
    assert main([*argv, "--profiles", str(path)]) == 0
    return path


def test_detect_reports_each_phase(profiles: Path, capsys: pytest.CaptureFixture[str]) -> None:
    argv = ["detect", "--dataset", "synthetic:small", "--profiles", str(profiles)]
    assert main(argv) == 0
    err = capsys.readouterr().err
    for phase in ("detectors on", "the learned detector", "distribution tests"):
        assert phase in err
    assert err.lstrip().startswith("[")  # "[   0.0 s] ..."
    assert main(["--quiet", *argv]) == 0
    quiet = capsys.readouterr()
    assert "detectors on" not in quiet.err
    # --quiet silences progress and logs, never the result: without --json it is all there is
    assert "rdma" in quiet.out and "precision" in quiet.out


@pytest.mark.slow
def test_gradcheck_reports_each_phase(capsys: pytest.CaptureFixture[str]) -> None:
    argv = ["gradcheck", "--dataset", "synthetic:small", "--rank", "3", "--alpha", "0.02"]
    main([*argv, "--items-per-user", "10", "--min-cos", "0"])
    err = capsys.readouterr().err
    for phase in ("the engine's gradient", "the reference, refitted", "finite difference"):
        assert phase in err
