"""`sdenv sync` for real: locks made by `sdenv lock` against a local index, real uv venvs."""

from __future__ import annotations

import json
import os
import resource
import subprocess
import sys
from pathlib import Path

import pytest

from pypi_index import build_index, simple_dist
from sdenv import sync as core
from sdenv.cli import main
from sdenv.drift import check_drift
from sdenv.lock.lockfile import read_lockfile
from sdenv.lock.pylock import pylock_path
from sdenv.lock.spec import load_spec
from sdenv.venv import run_uv

SRC = str(Path(__file__).resolve().parents[1] / "src")


def sdenv(*args: str, cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "sdenv", *args],
        capture_output=True,
        text=True,
        cwd=cwd,
        env={**os.environ, "PYTHONPATH": SRC},
        timeout=300,
    )


def installed(venv: Path) -> dict[str, str]:
    out = run_uv(["pip", "list", "--format", "json", "--python", str(venv / "bin" / "python")])
    return {d["name"]: d["version"] for d in json.loads(out)}


def test_sync_makes_the_lock_exactly_then_a_resync_is_a_noop(locked: Path, tmp_path: Path) -> None:
    venv = tmp_path / "env"
    first = core.sync(locked, venv=venv)
    assert first.status == core.SyncStatus.CREATED
    assert first.drift.ok and first.drift.checked_files > 0  # files hashed against RECORD
    assert installed(venv) == read_lockfile(locked).versions()  # nothing else, not even pip
    # Bytecode compiled at install (before anything imported it): a box that sets
    # PYTHONDONTWRITEBYTECODE would otherwise compile the whole stack again at every start.
    (site,) = venv.glob("lib/python3.*/site-packages")
    assert list(site.glob("torch/__pycache__/__init__.cpython-*.pyc"))
    proc = subprocess.run(
        [str(first.python), "-c", "import xformers, torch; print(torch.__version__)"],
        capture_output=True,
        text=True,
    )
    assert proc.stdout.strip() == "2.4.1", proc.stderr
    assert not [p.name for p in tmp_path.iterdir() if p.name.startswith(".env.sync-")]

    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    proc = sdenv("sync", "--lock", str(locked), "--venv", str(venv), "--json")
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    assert proc.returncode == 0, proc.stderr
    again = json.loads(proc.stdout)
    assert again["status"] == "unchanged" and again["drift"]["missing"] == []
    assert again["lock_sha256"] == first.lock_sha256
    assert again["drift"]["checked_files"] == 0  # versions only: no file hashed, nothing installed
    # CPU time of the whole command (CLI start-up, the inventory subprocess): unlike wall time it
    # does not grow with the load of a shared 2-core box.
    cpu = (after.ru_utime + after.ru_stime) - (before.ru_utime + before.ru_stime)
    assert cpu < 3, f"no-op re-sync used {cpu:.1f} s of CPU ({again['seconds']:.1f} s in sync)"


def test_extras_are_removed_and_a_moved_venv_still_runs(locked: Path, tmp_path: Path) -> None:
    venv = tmp_path / "env"
    core.sync(locked, venv=venv)
    wheel = build_index([simple_dist("stray-tool", "1.0")], tmp_path / "stray")
    run_uv(
        ["pip", "install", "--quiet", "--python", str(venv / "bin" / "python"),
         "--no-index", "--find-links", str(wheel), "stray-tool"]
    )  # fmt: skip
    assert "stray-tool" in installed(venv)
    # A sync killed mid-way (SIGKILL: no cleanup ran) left its build directory behind.
    (tmp_path / ".env.sync-99999" / "lib").mkdir(parents=True)
    result = core.sync(locked, venv=venv)
    assert result.status == core.SyncStatus.REPLACED
    assert "stray-tool" not in installed(venv)
    assert not list(tmp_path.glob(".env.sync-*")) and not list(tmp_path.glob(".env.old-*"))
    assert result.drift.ok and result.drift.extra == ()
    # Built beside and renamed in: its interpreter and pyvenv.cfg work from the final place.
    assert check_drift(read_lockfile(locked), venv / "bin" / "python").ok


def test_failed_sync_leaves_the_previous_venv_working(locked: Path, tmp_path: Path) -> None:
    venv = tmp_path / "env"
    core.sync(locked, venv=venv)
    stamp = (venv / core.STAMP).read_text()
    # Same pins, but torch's hash is not the wheel's: uv refuses it, nothing is swapped.
    text = locked.read_text()
    torch_line = next(i for i, ln in enumerate(text.splitlines()) if ln.startswith("torch=="))
    lines = text.splitlines()
    good = lines[torch_line + 1].split(":")[-1].strip(" \\")
    bad_lock = tmp_path / "bad.txt"
    bad_lock.write_text(text.replace(good, "0" * 64))
    assert main(["sync", "--lock", str(bad_lock), "--venv", str(venv)]) == 1
    assert (venv / core.STAMP).read_text() == stamp
    assert check_drift(read_lockfile(locked), venv / "bin" / "python").ok
    assert sorted(p.name for p in tmp_path.iterdir()) == [".env.lock", "bad.txt", "env"]


def test_the_pylock_syncs_the_same_venv(locked: Path, tmp_path: Path) -> None:
    venv = tmp_path / "env"
    assert core.sync(locked, venv=venv).status == core.SyncStatus.CREATED
    again = core.sync(pylock_path(locked), venv=venv)
    assert again.status == core.SyncStatus.UNCHANGED  # the same lock, in its other format


def test_default_venv_is_under_envs_named_by_the_target(locked: Path, tmp_path: Path) -> None:
    lock = read_lockfile(locked)
    assert core.default_venv(lock, locked) == Path(".envs") / locked.stem
    assert core.default_venv(lock, pylock_path(locked)) == Path(".envs") / locked.stem
    spec_dir = locked.parent.parent
    proc = sdenv(
        "sync", "demo", "--envs-dir", str(spec_dir), "--lock-dir", str(locked.parent),
        "--json", cwd=tmp_path,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    assert json.loads(proc.stdout)["venv"] == f".envs/{locked.stem}"
    assert (tmp_path / ".envs" / locked.stem / "bin" / "python").exists()


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--lock", "nope.txt"], "nope.txt: no such lockfile; check the path"),
        (["demo", "--lock", "x.txt"], "both ENV 'demo' and --lock x.txt given; pass one of them"),
        (["--lock", "{lock}", "--python", "3.6"], "locked for Python"),
        (["--lock", "{garbage}"], "garbage.txt: line 1: torch has no --hash"),
        (["--lock", "{badpylock}"], "pylock.x.toml: not a valid PEP 751 lock"),
        (["--lock", "{lock}", "--venv", "{notvenv}"], "exists and is not a venv"),
        (["--lock", "{lock}", "--wheelhouse", "nowhere"], "nowhere: no such wheelhouse"),
        (["--wheelhouse", "{empty}"], "no lock (*.txt) in the wheelhouse"),
        (["nosuchenv", "--envs-dir", "{specs}"], "no env named 'nosuchenv'"),
    ],
)
def test_bad_input_is_one_line_and_exit_2(
    locked: Path, tmp_path: Path, args: list[str], message: str
) -> None:
    garbage = tmp_path / "garbage.txt"
    garbage.write_text("torch==2.4.1\n")
    (tmp_path / "pylock.x.toml").write_text('lock-version = "1.0"\n[[packages]]\nname = "torch"\n')
    (tmp_path / "notvenv").mkdir()
    (tmp_path / "notvenv" / "precious.txt").write_text("keep me")
    (tmp_path / "empty").mkdir()
    subs = {
        "{lock}": str(locked),
        "{garbage}": str(garbage),
        "{badpylock}": str(tmp_path / "pylock.x.toml"),
        "{notvenv}": str(tmp_path / "notvenv"),
        "{empty}": str(tmp_path / "empty"),
        "{specs}": str(locked.parent.parent),
    }
    proc = sdenv("sync", *(subs.get(a, a) for a in args), cwd=tmp_path)
    assert proc.returncode == 2, proc.stderr
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("sdenv: error: ") and message in lines[0]
    assert (tmp_path / "notvenv" / "precious.txt").read_text() == "keep me"
    assert not (tmp_path / ".envs").exists()


@pytest.mark.skipif(Path("/proc/driver/nvidia").exists(), reason="this box has an NVIDIA driver")
def test_auto_on_a_box_without_gpu_names_the_reason(repo: Path) -> None:
    from sdenv.gpu.probe import probe

    envs = [load_spec(p, repo / "envs") for p in sorted((repo / "envs").glob("*.toml"))]
    report = probe(with_torch=False, envs=envs)
    assert report.recommended_env is None  # no GPU: no env fits
    proc = sdenv("sync", "auto", cwd=repo)
    assert proc.returncode == 2
    assert proc.stderr == (
        f"sdenv: error: ENV auto: {report.recommended_env_reason}; name an ENV instead\n"
    )


def test_the_callers_pythonpath_does_not_leak_into_the_new_venvs_drift(
    locked: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Seen on an H200 box: sdenv ran with its tools (uv, tomli-w) on PYTHONPATH, and the drift check
    # of the venv it had just built reported them as "not in the lock".
    tools = tmp_path / "tools" / "stray_tool-1.0.dist-info"
    tools.mkdir(parents=True)
    (tools / "METADATA").write_text("Metadata-Version: 2.1\nName: stray-tool\nVersion: 1.0\n")
    (tools / "RECORD").write_text("")
    monkeypatch.setenv("PYTHONPATH", str(tools.parent))
    result = core.sync(locked, venv=tmp_path / "env")
    assert result.status == core.SyncStatus.CREATED and result.drift.ok
    # verify's inventory still sees what PYTHONPATH adds: that is what the target imports there.
    from sdenv.drift import take_inventory

    seen = {d.name for d in take_inventory(result.python, check_files=False).dists}
    alone = {d.name for d in take_inventory(result.python, check_files=False, isolated=True).dists}
    assert "stray-tool" in seen and "stray-tool" not in alone
