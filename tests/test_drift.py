"""Drift on real venvs with real wheels, built here and installed by uv (offline, a few seconds)."""

from __future__ import annotations

import hashlib
import subprocess
import sys
from pathlib import Path

import pytest

from sdenv.drift import InstalledDist, Inventory, check_drift, compare, take_inventory
from sdenv.lock.lockfile import Pin, make_lockfile, read_lockfile, write_lockfile
from sdenv.venv import install, run_uv

DEMO = "sdenv-drift-demo"
_PIP_WHEEL = [sys.executable, "-m", "pip", "wheel", "-q", "--isolated", "--no-build-isolation"]
_PIP_WHEEL += ["--no-deps"]
EXTRA = "sdenv-drift-extra"


def _project(root: Path, name: str, version: str, module: str) -> Path:
    src = root / f"{name}-{version}"
    (src / module).mkdir(parents=True)
    (src / module / "__init__.py").write_text(f'VALUE = "{version}"\n')
    (src / module / "data.txt").write_text("payload\n" * 100)
    (src / "pyproject.toml").write_text(
        '[build-system]\nrequires = ["setuptools"]\nbuild-backend = "setuptools.build_meta"\n'
        f'[project]\nname = "{name}"\nversion = "{version}"\n'
        f'[tool.setuptools]\npackages = ["{module}"]\n'
        f'[tool.setuptools.package-data]\n{module} = ["data.txt"]\n'
    )
    return src


@pytest.fixture(scope="module")
def wheels(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Three real wheels, built offline with the dev venv's setuptools."""
    root = tmp_path_factory.mktemp("wheels")
    srcs = [
        _project(root, DEMO, "1.0", "drift_demo"),
        _project(root, DEMO, "2.0", "drift_demo"),
        _project(root, EXTRA, "0.1", "drift_extra"),
    ]
    out = root / "dist"
    # Two calls: one pip call refuses two versions of one project.
    for batch in (srcs[::2], srcs[1:2]):
        subprocess.run(
            [*_PIP_WHEEL, "-w", str(out), *map(str, batch)],
            check=True,
        )
    return out


def _sha256(path: Path) -> str:
    return "sha256:" + hashlib.sha256(path.read_bytes()).hexdigest()


def _venv(dest: Path, wheels: Path, *reqs: str) -> Path:
    run_uv(["venv", "--quiet", "--python", sys.executable, str(dest)])
    py = dest / "bin" / "python"
    if reqs:
        # Copies, not uv's hardlinks: the tests tamper with installed files, which would
        # otherwise edit uv's cache and every later venv made from it.
        install(
            py,
            ["--offline", "--no-index", "--link-mode", "copy", "--find-links", str(wheels), *reqs],
        )
    return py


def _lock(
    tmp: Path, wheels: Path, header: tuple[tuple[str, str], ...] = (), **versions: str
) -> Path:
    pins = []
    for name, version in versions.items():
        dist = name.replace("-", "_")
        pins.append(Pin(name, version, (_sha256(next(wheels.glob(f"{dist}-{version}-*.whl"))),)))
    path = tmp / "test.lock.txt"
    write_lockfile(path, make_lockfile([("env", "drift-test"), *header], pins))
    return path


def _site_file(py: Path, rel: str) -> Path:
    return next((py.parent.parent / "lib").glob(f"python3*/site-packages/{rel}"))


def test_clean_venv_matches_its_lock(tmp_path: Path, wheels: Path) -> None:
    py = _venv(tmp_path / "v", wheels, f"{DEMO}==1.0")
    report = check_drift(read_lockfile(_lock(tmp_path, wheels, **{DEMO: "1.0"})), py)
    assert report.ok, report.reasons()
    # __init__.py, data.txt and the dist-info files listed with hashes
    assert report.checked_files >= 4
    assert report.reasons() == []


def test_tampered_and_deleted_files_are_named(tmp_path: Path, wheels: Path) -> None:
    py = _venv(tmp_path / "v", wheels, f"{DEMO}==1.0")
    lock = read_lockfile(_lock(tmp_path, wheels, **{DEMO: "1.0"}))
    init = _site_file(py, "drift_demo/__init__.py")
    init.write_text(init.read_text() + "import os  # injected\n")
    report = check_drift(lock, py)
    assert not report.ok
    assert [f.modified for f in report.files] == [("drift_demo/__init__.py",)]
    assert "drift_demo/__init__.py" in report.reasons()[0]
    assert "sdenv-drift-demo==1.0" in report.reasons()[0]

    _site_file(py, "drift_demo/data.txt").unlink()  # a half-installed package
    report = check_drift(lock, py)
    assert report.files[0].missing == ("drift_demo/data.txt",)


def test_swapped_version_missing_and_extra(tmp_path: Path, wheels: Path) -> None:
    py = _venv(tmp_path / "v", wheels, f"{DEMO}==2.0", f"{EXTRA}==0.1")
    lock = read_lockfile(_lock(tmp_path, wheels, **{DEMO: "1.0"}))
    report = check_drift(lock, py)
    assert [(v.name, v.locked, v.installed) for v in report.versions] == [(DEMO, "1.0", "2.0")]
    assert report.extra == (f"{EXTRA}==0.1",)
    assert report.files == ()  # 2.0 is intact, just not what the lock pins
    reasons = report.reasons()
    assert any(r.startswith(f"other versions: {DEMO} 2.0 (lock 1.0)") for r in reasons)
    assert any(f"not in the lock: {EXTRA}==0.1" in r for r in reasons)

    empty = _venv(tmp_path / "empty", wheels)
    report = check_drift(lock, empty)
    assert report.missing == (f"{DEMO}==1.0",)


def test_inventory_without_hashing_is_versions_only(tmp_path: Path, wheels: Path) -> None:
    py = _venv(tmp_path / "v", wheels, f"{DEMO}==1.0")
    init = _site_file(py, "drift_demo/__init__.py")
    init.write_text("tampered = True\n")
    inv = take_inventory(py, check_files=False)
    assert {d.name: d.version for d in inv.dists} == {DEMO: "1.0"}
    assert all(d.files == 0 and not d.modified for d in inv.dists)


def test_files_unchanged_since_they_matched_are_not_hashed_again_and_a_change_is(
    tmp_path: Path, wheels: Path
) -> None:
    """The venv's record of checked files: the next check hashes only what changed (inode, size,
    mtime or ctime); an edit that keeps size and mtime still changes the ctime and is caught;
    --rehash and an unreadable record hash everything."""
    import os
    import time

    from sdenv.target.inventory import CACHE_NAME, RACY_NS

    py = _venv(tmp_path / "v", wheels, f"{DEMO}==1.0")
    lock = read_lockfile(_lock(tmp_path, wheels, **{DEMO: "1.0"}))
    time.sleep(RACY_NS / 1e9 + 0.2)  # files written just before a check are not recorded
    first = check_drift(lock, py)
    assert first.ok and first.unchanged_files == 0
    assert (tmp_path / "v" / CACHE_NAME).is_file()
    again = check_drift(lock, py)
    assert again.ok and again.unchanged_files == again.checked_files == first.checked_files

    data = _site_file(py, "drift_demo/data.txt")
    st = data.stat()
    body = data.read_bytes()
    data.write_bytes(b"X" + body[1:])  # same size
    os.utime(data, ns=(st.st_atime_ns, st.st_mtime_ns))  # same mtime: only ctime tells
    tampered = check_drift(lock, py)
    assert [f.modified for f in tampered.files] == [("drift_demo/data.txt",)]
    assert tampered.unchanged_files == first.checked_files - 1

    assert check_drift(lock, py, rehash=True).unchanged_files == 0
    (tmp_path / "v" / CACHE_NAME).write_text("{not json")
    broken = check_drift(lock, py)
    assert broken.unchanged_files == 0 and not broken.ok


def test_a_file_changed_just_before_its_check_is_not_recorded(tmp_path: Path) -> None:
    """git's racy entries: a second edit in the same timestamp tick would not show in the file's
    times, so a file whose ctime is within RACY_NS of the check is hashed again next time."""
    import base64

    from sdenv.target.inventory import RACY_NS, _check, _vouched

    f = tmp_path / "f.txt"
    f.write_text("payload\n")
    want = base64.urlsafe_b64encode(hashlib.sha256(f.read_bytes()).digest()).rstrip(b"=").decode()
    job = ({}, "f.txt", str(f), "sha256", want)
    ctime = f.stat().st_ctime_ns
    _, got, keep, hashed = _check(job, ctime + RACY_NS // 2)
    assert got == want and hashed and keep is None
    _, got, keep, hashed = _check(job, ctime + RACY_NS + 1)
    assert got == want and hashed and keep is not None
    # Recorded: the next check takes it from the record (its digest, the one RECORD wants),
    # without hashing.
    assert _vouched(job, {str(f): keep}) == keep and keep[-1] == f"sha256={want}"


def test_bad_interpreter_is_one_line_error(tmp_path: Path) -> None:
    from sdenv.drift import DriftError

    with pytest.raises(DriftError, match="no such interpreter"):
        take_inventory(tmp_path / "nope" / "python")


def _inv(*dists: InstalledDist) -> Inventory:
    return Inventory("py", "3.11.7", dists)


def test_compare_local_versions_tools_and_record() -> None:
    inv = _inv(
        InstalledDist("torch", "2.4.1+cu121", record=True, files=10),
        InstalledDist("pip", "24.0", record=True),  # venv seed: ignored, never extra
        InstalledDist("sdenv", "0.1.0"),
        InstalledDist("xformers", "0.0.28.post1", record=False),
    )
    report = compare({"torch": "2.4.1+cu121", "xformers": "0.0.28.post1"}, inv)
    assert report.ok
    assert report.ignored == ("pip", "sdenv")
    assert report.no_record == ("xformers",)
    assert report.checked_files == 10
    # A local version is a different build: +cu121 vs +cu124 is drift.
    report = compare({"torch": "2.4.1+cu124", "xformers": "0.0.28.post1"}, inv)
    assert [(v.locked, v.installed) for v in report.versions] == [("2.4.1+cu124", "2.4.1+cu121")]
    # Names are compared canonically ("Foo_Bar" in a lock is foo-bar installed).
    inv2 = _inv(InstalledDist("foo-bar", "1.0"))
    assert compare({"Foo_Bar": "1.0"}, inv2).ok
