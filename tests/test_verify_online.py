"""`sdenv verify` on a real venv installed from the default lock (PyPI; about 5 GB, once a session).

Passes as is (on CPU: probe skipped, the tiny model in the FP8 emulated path); fails naming the
file after a file in site-packages is tampered with, and naming the package after a pinned
package is swapped for another version.
"""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from sdenv.lock.lockfile import read_lockfile
from sdenv.venv import create_venv, find_python, install, install_lock
from sdenv.verify import default_lock

pytestmark = [pytest.mark.online, pytest.mark.slow]
REPO = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def lock_venv(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Path, Path]]:
    for version in ("3.11", "3.10"):
        lock = REPO / default_lock(version)
        if lock.is_file() and find_python(version):
            break
    else:
        pytest.skip("no default lock with a matching Python here; run `sdenv lock` first")
    py = create_venv(tmp_path_factory.mktemp("lockvenv") / "venv", version)
    install_lock(py, lock, index_urls=["https://pypi.org/simple"])
    yield py, lock


def _verify(py: Path, *extra: str) -> tuple[int, dict[str, Any]]:
    proc = subprocess.run(
        [sys.executable, "-m", "sdenv", "verify", "--python", str(py), "--json", *extra],
        capture_output=True,
        text=True,
        cwd=REPO,
        timeout=900,
        check=False,
    )
    return proc.returncode, json.loads(proc.stdout)


def _part(result: dict[str, Any], name: str) -> dict[str, Any]:
    return next(p for p in result["parts"] if p["name"] == name)


def test_verify_passes_on_the_locked_venv(lock_venv: tuple[Path, Path]) -> None:
    py, lock = lock_venv
    code, result = _verify(py)
    assert code == 0, result["failed"]
    assert result["lock"] == str(lock.relative_to(REPO))
    drift = _part(result, "drift")
    assert drift["status"] == "pass"
    assert drift["detail"]["checked_files"] > 10_000  # torch, nvidia-*, ... all hashed
    model = _part(result, "model")
    assert model["status"] == "pass"
    if not _part(result, "probe")["detail"]["gpus"]:
        assert result["model_mode"] == "emulated"
        fp8 = model["detail"]["fp8"]
        assert fp8["block_linears_fp8"] == fp8["block_linears"] > 0
    versions = model["detail"]["versions"]
    pins = read_lockfile(lock).versions()
    assert versions["diffusers"] == pins["diffusers"]
    assert versions["torch"].split("+")[0] == pins["torch"].split("+")[0]


def test_verify_fails_on_a_tampered_file(lock_venv: tuple[Path, Path]) -> None:
    py, lock = lock_venv
    target = next(py.parent.parent.glob("lib/python3*/site-packages/diffusers/__init__.py"))
    original = target.read_bytes()
    try:
        target.write_bytes(original + b"\nimport os  # injected\n")
        code, result = _verify(py)
    finally:
        target.write_bytes(original)
    assert code == 1
    drift = _part(result, "drift")
    assert drift["status"] == "fail"
    version = read_lockfile(lock).versions()["diffusers"]
    assert (
        f"diffusers=={version}: 1 file(s) modified, e.g. diffusers/__init__.py"
        in (drift["reasons"][0])
    )
    # Only drift fails: the tampered file still imports, everything else passes.
    assert [f.split(":")[0] for f in result["failed"]] == ["drift"]


def test_verify_fails_on_a_swapped_version(lock_venv: tuple[Path, Path]) -> None:
    py, lock = lock_venv
    locked = read_lockfile(lock).versions()["idna"]
    other = "3.10" if locked != "3.10" else "3.9"
    install(py, ["--no-deps", f"idna=={other}"], index_urls=["https://pypi.org/simple"])
    try:
        code, result = _verify(py, "--no-hash")
    finally:
        install_lock(py, lock, index_urls=["https://pypi.org/simple"])
    assert code == 1
    drift = _part(result, "drift")
    assert (
        drift["reasons"][0]
        == f"other versions: idna {other} (lock {locked}) (reinstall from the lock)"
    )
