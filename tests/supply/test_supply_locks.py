"""Which lockfiles `sdenv audit` and `sdenv sbom` read: every target lock of the envs, or files."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

import pytest

from sdenv.errors import UsageError
from sdenv.supply.locks import lockfiles_for

if TYPE_CHECKING:
    from conftest import LockWriter


def test_lockfiles_for_env_names_missing_lock(repo: Path, tmp_path: Path) -> None:
    with pytest.raises(UsageError, match=r"no lockfile for sd35-fp8-cu121-py3.10.*sdenv lock"):
        lockfiles_for(["sd35-fp8-cu121"], [], tmp_path, repo / "envs")


def test_lockfiles_for_env_targets(repo: Path, tmp_path: Path, make_lock: LockWriter) -> None:
    for py in ("3.10", "3.11", "3.12"):
        make_lock(tmp_path / f"sd35-fp8-cu121-py{py}-linux_x86_64.txt", {"six": "1.16.0"})
    found = lockfiles_for([], [], tmp_path, repo / "envs")  # the default env
    assert [t.label for t in found] == [
        "sd35-fp8-cu121-py3.10-linux_x86_64",
        "sd35-fp8-cu121-py3.11-linux_x86_64",
        "sd35-fp8-cu121-py3.12-linux_x86_64",
    ]
    assert all(t.spec is not None and t.spec.name == "sd35-fp8-cu121" for t in found)
