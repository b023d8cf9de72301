"""`sdenv image` options refused before any engine is asked, and an absent engine: one line each."""

from __future__ import annotations

from pathlib import Path

import pytest

from conftest import REPO
from sdenv.cli import main

ENVS = REPO / "envs"


def test_no_engine_is_one_line_and_exit_1(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    sock = tmp_path / "none.sock"
    monkeypatch.setenv("DOCKER_HOST", f"unix://{sock}")
    assert main(["image", "build", "--envs-dir", str(ENVS)]) == 1
    lines = capsys.readouterr().err.strip().splitlines()
    assert len(lines) == 1
    assert f"Docker engine not reachable at unix://{sock}" in lines[0]
    assert "start it with `scripts/docker-engine.sh start`" in lines[0]


def test_missing_ca_bundle_is_a_usage_error(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    assert main(["image", "build", "--ca-bundle", str(tmp_path / "nope.pem")]) == 2
    assert "--ca-bundle" in capsys.readouterr().err


@pytest.mark.parametrize(
    ("name", "message"),
    [
        ("absent.whl", "--sdenv-wheel {path}: no such wheel"),
        ("rich-13.0-py3-none-any.whl", "--sdenv-wheel {path}: not an sdenv wheel's file name"),
    ],
)
def test_a_bad_sdenv_wheel_is_a_usage_error_before_the_engine(
    name: str,
    message: str,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    tmp_path: Path,
) -> None:
    monkeypatch.setenv("DOCKER_HOST", f"unix://{tmp_path / 'none.sock'}")
    path = tmp_path / name
    if name != "absent.whl":
        path.write_bytes(b"PK")
    assert main(["image", "build", "--envs-dir", str(ENVS), "--sdenv-wheel", str(path)]) == 2
    (line,) = capsys.readouterr().err.strip().splitlines()
    assert message.format(path=path) in line
