"""``sdenv sync``: make a venv exactly what one lock target pins, then prove it with a drift check.

Nothing is resolved: ``uv pip sync --require-hashes --only-binary :all:`` installs the pins as they
are and removes whatever the lock does not pin. The source is the lock's own index, or a wheelhouse
directory (``sdenv wheelhouse``) with no network at all.

A sync that changes anything builds the new venv beside the old one (``.envs/.<name>.sync-<pid>``),
checks it, then swaps it in by rename, so a failed or interrupted sync leaves the previous venv as
it was. The venv is made ``--relocatable``: its scripts find their interpreter relative to
themselves, so the rename does not break them. uv hardlinks from its cache, so rebuilding a torch
env that is already cached costs seconds, not a download.

A stamp in the venv records the sha256 of the lock it was synced to. A re-sync with the same lock
checks the stamp and the installed versions (no file hashing) and returns: no-op in well under 3 s.
After an install the full drift check runs (every file against its RECORD).
"""

from __future__ import annotations

import enum
import hashlib
import json
import os
import platform
import shutil
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, replace
from pathlib import Path

from sdenv.drift import DriftReport, check_drift
from sdenv.errors import SdenvError, UsageError
from sdenv.lock.lockfile import DEFAULT_LOCK_DIR, Lockfile, render_lockfile
from sdenv.lock.pylock import read_any_lock
from sdenv.lock.spec import DEFAULT_ENV, DEFAULT_ENVS_DIR, Target, load_spec
from sdenv.venv import find_python, run_uv, sync_lock

DEFAULT_VENVS_DIR = Path(".envs")
STAMP = "sdenv-sync.json"
AUTO = "auto"

Progress = Callable[[str], None]


class SyncError(SdenvError):
    """The venv could not be made to match the lock; the previous venv is left as it was."""


class SyncStatus(str, enum.Enum):
    CREATED = "created"  # no venv was there
    REPLACED = "replaced"  # a venv of another lock (or drifted) was swapped for a fresh one
    UNCHANGED = "unchanged"  # already exactly the lock: nothing done


@dataclass(frozen=True)
class SyncResult:
    status: SyncStatus
    venv: Path
    python: Path  # the venv's interpreter
    lock: Path
    lock_sha256: str
    source: str  # the index URL(s) or "wheelhouse DIR"
    pins: int
    drift: DriftReport
    seconds: float


def this_platform() -> str | None:
    """This machine as a spec platform (``linux_x86_64``), or None when it is not Linux."""
    return f"linux_{platform.machine()}" if sys.platform.startswith("linux") else None


def auto_env(envs_dir: Path = DEFAULT_ENVS_DIR) -> str:
    """The env ``sdenv probe`` recommends for this box (hardware facts only, no torch needed)."""
    from sdenv.gpu.probe import probe

    specs = [load_spec(p, envs_dir) for p in sorted(envs_dir.glob("*.toml"))]
    if not specs:
        raise UsageError(f"ENV auto: no env specs in {envs_dir}; pass --envs-dir or an ENV")
    report = probe(with_torch=False, envs=specs)
    if report.recommended_env is None:
        raise UsageError(f"ENV auto: {report.recommended_env_reason}; name an ENV instead")
    return report.recommended_env


def lock_for_env(
    env: str,
    python: str | None = None,
    *,
    envs_dir: Path = DEFAULT_ENVS_DIR,
    lock_dir: Path = DEFAULT_LOCK_DIR,
    this_machine: bool = True,
) -> Path:
    """The lockfile of ``env``'s target for ``python`` (default: this Python) on this platform.

    ``this_machine=False`` (a wheelhouse for another box): the spec's first platform when this
    machine's is not among them.
    """
    from sdenv.lock import host_python  # the resolver's imports: not on the no-op path

    spec = load_spec(auto_env(envs_dir) if env == AUTO else env, envs_dir)
    py = python or host_python()
    plat = this_platform()
    if py not in spec.pythons:
        raise UsageError(
            f"{spec.path}: env.pythons has no {py}; pass --python {' or '.join(spec.pythons)}"
        )
    if not this_machine and plat not in spec.platforms:
        plat = spec.platforms[0]
    if plat not in spec.platforms:
        raise UsageError(
            f"{spec.path}: env.platforms has no {plat or sys.platform} (this machine); "
            "sync on a machine of the env's platform"
        )
    path = Target(spec.name, py, plat).lockfile(lock_dir)
    if not path.is_file():
        raise UsageError(f"{path}: no such lockfile; create it with `sdenv lock {spec.name}`")
    return path


def wheelhouse_lock(wheelhouse: Path) -> Path:
    """The one lock a wheelhouse carries (``sdenv wheelhouse`` copies it in)."""
    if not wheelhouse.is_dir():
        raise UsageError(
            f"{wheelhouse}: no such wheelhouse directory; make one with `sdenv wheelhouse`"
        )
    locks = sorted(wheelhouse.glob("*.txt"))
    if len(locks) != 1:
        what = "no lock" if not locks else f"{len(locks)} locks"
        raise UsageError(
            f"{wheelhouse}: {what} (*.txt) in the wheelhouse; pass the one to use with --lock"
        )
    return locks[0]


def lock_sha256(lock: Lockfile) -> str:
    """Of the lock's canonical text: a .txt lock and its pylock give the same digest."""
    return hashlib.sha256(render_lockfile(lock).encode()).hexdigest()


def default_venv(lock: Lockfile, path: Path) -> Path:
    """``.envs/<target slug>``: the .txt lock's stem, for a .txt lock and its pylock alike."""
    env, python = lock.get("env"), lock.get("python")
    plat = (lock.get("platform") or "").split(" ")[0]
    stem = Target(env, python, plat).slug if env and python and plat else path.stem
    return DEFAULT_VENVS_DIR / stem


def _check_target(lock: Lockfile, path: Path, python: str | None) -> str:
    """The lock's Python, after checking it fits ``--python`` and this machine."""
    locked = lock.get("python")
    if not locked:
        raise UsageError(f"{path}: no '# python:' header; regenerate the lock with `sdenv lock`")
    if python and python != locked:
        raise UsageError(
            f"{path}: locked for Python {locked}, not {python}; pass its lock for {python}"
        )
    plat = (lock.get("platform") or "").split(" ")[0]
    here = this_platform()
    if plat and plat != here:
        raise UsageError(
            f"{path}: locked for {plat}, this machine is {here or sys.platform}; "
            f"sync it on a {plat} machine"
        )
    return locked


def _is_venv(path: Path) -> bool:
    return (path / "pyvenv.cfg").is_file()


def _read_stamp(venv: Path) -> dict[str, str]:
    try:
        data = json.loads((venv / STAMP).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}
    return data if isinstance(data, dict) else {}


def _swap(new: Path, venv: Path) -> None:
    """Put ``new`` where ``venv`` is; the old one is removed only once the new one is in place."""
    if not venv.exists():
        os.rename(new, venv)
        return
    old = venv.with_name(f".{venv.name}.old-{os.getpid()}")
    os.rename(venv, old)
    try:
        os.rename(new, venv)
    except BaseException:
        os.rename(old, venv)
        raise
    shutil.rmtree(old, ignore_errors=True)


def _source(
    lock: Lockfile, lock_path: Path, venv: Path, wheelhouse: Path | None
) -> tuple[list[str], str]:
    """The indexes the lock names and where the wheels come from; bad input is one line."""
    if venv.exists() and not _is_venv(venv):
        raise UsageError(f"{venv}: exists and is not a venv; pass another --venv or remove it")
    if wheelhouse is not None and not wheelhouse.is_dir():
        raise UsageError(
            f"{wheelhouse}: no such wheelhouse directory; make one with `sdenv wheelhouse`"
        )
    indexes = lock.get_all("index")
    if wheelhouse is None and not indexes:
        raise UsageError(f"{lock_path}: no '# index:' header; pass --wheelhouse DIR")
    return indexes, f"wheelhouse {wheelhouse}" if wheelhouse is not None else ", ".join(indexes)


def _still_exact(lock: Lockfile, exe: Path) -> DriftReport | None:
    """The drift report of a stamped venv when it still matches its lock, else None."""
    # Versions only: hashing every file of a torch env would take the no-op past 3 s.
    try:
        drift = check_drift(lock, exe, check_files=False, isolated=True)
    except SdenvError:
        return None
    return drift if drift.ok else None


def _build(
    lock: Lockfile,
    lock_path: Path,
    venv: Path,
    interpreter: Path,
    indexes: list[str],
    wheelhouse: Path | None,
    source: str,
    check_files: bool,
    progress: Progress,
) -> DriftReport:
    """Build the venv beside the old one, install, check drift, stamp and swap it in.

    ``source`` is what ``_source`` said the wheels come from (for the progress line).
    """
    version = lock.get("python") or "?"
    # What a killed sync left (its build, or the old venv mid-swap): no sync holds them now.
    for kind in ("sync", "old"):
        for leftover in venv.parent.glob(f".{venv.name}.{kind}-*"):
            shutil.rmtree(leftover, ignore_errors=True)
    existed = venv.exists()
    build = venv.with_name(f".{venv.name}.sync-{os.getpid()}")
    try:
        progress(f"{build}: creating a Python {version} venv")
        run_uv(["venv", "--quiet", "--relocatable", "--python", str(interpreter), str(build)])
        requirements = build / "sdenv-lock.txt"
        requirements.write_text(render_lockfile(lock), encoding="utf-8")
        progress(f"installing {len(lock.pins)} pins from {source}")
        try:
            sync_lock(build / "bin" / "python", requirements, index_urls=indexes,
                      find_links=wheelhouse)  # fmt: skip
        except SdenvError as exc:
            raise SyncError(f"{lock_path}: {exc}; {_kept(venv, existed)}") from None
        requirements.unlink()
        progress("drift check of the new venv")
        # Isolated: the caller's PYTHONPATH (sdenv's own tools, say) is not the venv's.
        drift = check_drift(lock, build / "bin" / "python", check_files=check_files, isolated=True)
        if not drift.ok:
            reasons = "; ".join(drift.reasons())
            raise SyncError(
                f"{lock_path}: the new venv drifts from the lock: {reasons}; "
                + _kept(venv, existed)
            )
        (build / STAMP).write_text(
            json.dumps({"lock": str(lock_path), "lock_sha256": lock_sha256(lock)}, indent=2) + "\n",
            encoding="utf-8",
        )
        _swap(build, venv)
    finally:
        shutil.rmtree(build, ignore_errors=True)
    return drift


def sync(
    lock_path: Path,
    *,
    venv: Path | None = None,
    python: str | None = None,
    wheelhouse: Path | None = None,
    check_files: bool = True,
    progress: Progress = lambda msg: None,
) -> SyncResult:
    """Make ``venv`` exactly the lock at ``lock_path`` (a .txt lock or its pylock)."""
    from filelock import FileLock

    t0 = time.perf_counter()
    lock = read_any_lock(lock_path)
    version = _check_target(lock, lock_path, python)
    venv = venv or default_venv(lock, lock_path)
    indexes, source = _source(lock, lock_path, venv, wheelhouse)
    digest = lock_sha256(lock)
    exe = venv / "bin" / "python"

    def stamped() -> bool:
        return _read_stamp(venv).get("lock_sha256") == digest and exe.exists()

    # The interpreter is looked for (a subprocess) only when something is to be built, and before
    # anything is made.
    interpreter = None if stamped() else _interpreter(version, lock_path)
    venv.parent.mkdir(parents=True, exist_ok=True)

    def result(status: SyncStatus, drift: DriftReport) -> SyncResult:
        return SyncResult(
            status, venv, exe, lock_path, digest, source, len(lock.pins), drift,
            time.perf_counter() - t0,
        )  # fmt: skip

    with FileLock(str(venv.with_name(f".{venv.name}.lock")), timeout=3600):
        if stamped():
            unchanged = _still_exact(lock, exe)
            if unchanged is not None:
                return result(SyncStatus.UNCHANGED, unchanged)
            progress(f"{venv}: drifted from its lock; rebuilding it")
        interpreter = interpreter or _interpreter(version, lock_path)
        existed = venv.exists()
        drift = _build(
            lock, lock_path, venv, interpreter, indexes, wheelhouse, source, check_files, progress
        )
    # The drift report names the build directory's interpreter: name the venv's instead.
    drift = replace(drift, python=str(exe))
    return result(SyncStatus.REPLACED if existed else SyncStatus.CREATED, drift)


def _interpreter(version: str, lock_path: Path) -> Path:
    found = find_python(version)
    if found is None:
        raise UsageError(
            f"{lock_path}: locked for Python {version}, which is not on this machine; "
            f"install Python {version}"
        )
    return found


def _kept(venv: Path, existed: bool) -> str:
    return f"{venv} is left as it was" if existed else f"no venv was made at {venv}"


def select_lock(
    env: str | None,
    lock: Path | None,
    *,
    python: str | None = None,
    wheelhouse: Path | None = None,
    envs_dir: Path = DEFAULT_ENVS_DIR,
    lock_dir: Path = DEFAULT_LOCK_DIR,
    this_machine: bool = True,
) -> Path:
    """ENV (or ``auto``), ``--lock FILE`` or the lock a wheelhouse carries; default: DEFAULT_ENV."""
    if env and lock:
        raise UsageError(f"both ENV {env!r} and --lock {lock} given; pass one of them")
    if lock is not None:
        if not lock.is_file():
            raise UsageError(f"{lock}: no such lockfile; check the path")
        return lock
    if env is None and wheelhouse is not None:
        return wheelhouse_lock(wheelhouse)
    return lock_for_env(
        env or DEFAULT_ENV,
        python,
        envs_dir=envs_dir,
        lock_dir=lock_dir,
        this_machine=this_machine,
    )
