from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

from sdenv.venv import VenvError, create_venv, find_python


def test_find_python_returns_that_version() -> None:
    exe = find_python("3.11")
    assert exe is not None
    out = subprocess.run(
        [exe, "-c", "import sys; print(sys.version_info[:2])"], capture_output=True
    )
    assert out.stdout.strip() == b"(3, 11)"
    assert find_python("3.99") is None


def test_create_venv_offline(tmp_path: Path) -> None:
    python = create_venv(tmp_path / "v", "3.11")
    out = subprocess.run([python, "-c", "import sys; print(sys.prefix)"], capture_output=True)
    assert Path(out.stdout.decode().strip()) == tmp_path / "v"


def test_create_venv_unknown_python(tmp_path: Path) -> None:
    with pytest.raises(VenvError, match="no Python 3.99 on this machine"):
        create_venv(tmp_path / "v", "3.99")
