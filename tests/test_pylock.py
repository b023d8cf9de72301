"""PEP 751: `sdenv lock` writes pylock.<name>.toml beside each .txt lock; packaging, uv read it."""

from __future__ import annotations

import json
import sys
from dataclasses import replace
from pathlib import Path

import pytest
from packaging.pylock import Pylock, is_valid_pylock_path

from helpers.specs import write_spec
from sdenv import lock as locking
from sdenv.lock.lockfile import read_lockfile
from sdenv.lock.pylock import (
    LockedFile,
    disagreement,
    main,
    pylock_path,
    read_pylock,
    render_pylock,
)
from sdenv.lock.spec import load_spec
from sdenv.venv import run_uv

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover
    import tomli as tomllib


@pytest.fixture
def locked(index: str, tmp_path: Path) -> tuple[locking.LockOptions, Path]:
    spec = load_spec(write_spec(tmp_path, index))
    opts = locking.LockOptions(lock_dir=tmp_path / "lockfiles", verify=False)
    result = locking.lock_target(spec, spec.targets[0], opts)
    assert result.status == "written", result.message
    return opts, result.path


def test_lock_writes_a_valid_pylock_with_the_same_pins_and_hashes(
    locked: tuple[locking.LockOptions, Path],
) -> None:
    _, txt = locked
    path = pylock_path(txt)
    assert path.name == f"pylock.{txt.stem.replace('.', '')}.toml"
    assert is_valid_pylock_path(path)  # PEP 751's name rule: no dot inside the name
    pylock = Pylock.from_dict(tomllib.loads(path.read_text()))
    lock = read_lockfile(txt)
    assert pylock.created_by == "sdenv" and str(pylock.lock_version) == "1.0"
    py = lock.get("python")
    assert [str(m) for m in pylock.environments or []] == [
        f'python_version == "{py}" and sys_platform == "linux" and platform_machine == "x86_64"'
    ]
    seen = {}
    for p in pylock.packages:
        files = [*(w.hashes["sha256"] for w in p.wheels or []), *([p.sdist.hashes["sha256"]]
                 if p.sdist else [])]  # fmt: skip
        seen[p.name] = (str(p.version), sorted(f"sha256:{h}" for h in files))
        for w in p.wheels or []:  # each wheel by the url the index gave, named like the pin
            assert w.url and w.url.endswith(f"/files/{w.name}")
    assert seen == {p.name: (p.version, list(p.hashes)) for p in lock.pins}
    assert read_pylock(path) == lock  # the header travels in [tool.sdenv]: nothing lost


def test_the_pylock_is_byte_deterministic_and_a_relock_keeps_both(
    locked: tuple[locking.LockOptions, Path], index: str
) -> None:
    opts, txt = locked
    path = pylock_path(txt)
    first = path.read_bytes()
    # Rewritten from the .txt lock alone (the index's file list, no resolving): same bytes.
    path.unlink()
    assert main([str(txt)]) == 0
    assert path.read_bytes() == first
    spec = load_spec(txt.parent.parent / "demo.toml")
    again = locking.lock_target(spec, spec.targets[0], opts)
    assert again.status == "unchanged" and path.read_bytes() == first
    # Pure: the same lock and file list render the same text, in any order of the list.
    lock = read_lockfile(txt)
    files = {
        f"sha256:{w['hashes']['sha256']}": LockedFile(w["name"], w["url"], index)
        for p in tomllib.loads(first.decode())["packages"]
        for w in p["wheels"]
    }
    reversed_files = dict(reversed(list(files.items())))
    assert render_pylock(lock, reversed_files).encode() == first


def test_uv_installs_the_pylock(locked: tuple[locking.LockOptions, Path], tmp_path: Path) -> None:
    _, txt = locked
    venv = tmp_path / "venv"
    run_uv(["venv", "--quiet", "--python", sys.executable, str(venv)])
    py = str(venv / "bin" / "python")
    run_uv(["pip", "install", "--quiet", "--python", py, "-r", str(pylock_path(txt))])
    listed = json.loads(run_uv(["pip", "list", "--format", "json", "--python", py]))
    assert {d["name"]: d["version"] for d in listed} == read_lockfile(txt).versions()


def test_lock_check_fails_when_the_pylock_disagrees(
    locked: tuple[locking.LockOptions, Path],
) -> None:
    opts, txt = locked
    spec = load_spec(txt.parent.parent / "demo.toml")
    path = pylock_path(txt)
    assert locking.check_target(spec, spec.targets[0], opts).status == "fresh"
    text = path.read_text()
    lock = read_lockfile(txt)
    torch_hash = lock.pin("torch").hashes[0].split(":")[1]  # type: ignore[union-attr]
    path.write_text(text.replace(torch_hash, "0" * 64))
    result = locking.check_target(spec, spec.targets[0], opts)
    assert result.status == "stale"
    assert result.message == (
        f"{path}: torch==2.4.1: other sha256 hashes than the .txt lock's; run `sdenv lock`"
    )
    path.write_text(text.replace('version = "2.4.1"', 'version = "2.6.0"', 1))
    assert locking.check_target(spec, spec.targets[0], opts).message == (
        f"{path}: not a valid PEP 751 lock: Version in 'torch-2.4.1-py3-none-any.whl' is not "
        "consistent with package version '2.6.0' in 'packages[4].wheels[0]'"
    )
    path.write_text(text)
    moved = replace(lock, pins=tuple(replace(p, version="2.6.0") if p.name == "torch" else p
                                     for p in lock.pins))  # fmt: skip
    assert (
        disagreement(moved, path) == f"{path}: torch: 2.4.1, the .txt lock: 2.6.0; run `sdenv lock`"
    )
    path.unlink()
    result = locking.check_target(spec, spec.targets[0], opts)
    assert result.status == "stale" and "no such pylock" in result.message
    assert disagreement(lock, path) == result.message
