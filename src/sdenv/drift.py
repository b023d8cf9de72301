"""Drift: what is installed in an interpreter against what its lock pins.

Four kinds, each enough to fail ``sdenv verify``:
- missing: pinned, not installed;
- other version: installed at another version than pinned (a swapped package);
- extra: installed, not pinned (except the installer's own tools and sdenv itself);
- modified files: a file whose sha256 differs from the one its distribution's RECORD lists, or a
  listed file that is gone (a tampered, patched or half-installed package).

The inventory is taken *inside* the target interpreter by ``sdenv.target.inventory`` (standard
library only) run as a subprocess (``importlib.metadata`` of that interpreter, its ``sys.path``),
so sdenv can verify a venv or an image's Python that does not have sdenv installed. The
comparison with the lock is a pure function of that inventory (``compare``).
"""

from __future__ import annotations

import subprocess
import sys
import time
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from packaging.utils import canonicalize_name
from packaging.version import InvalidVersion, Version

from sdenv import _cleanup, _target
from sdenv._cleanup import throwaway_dir
from sdenv.errors import SdenvError
from sdenv.lock.lockfile import Lockfile
from sdenv.target.protocol import last_result

# Installed by venv seeding or pip itself, never pinned by a lock; sdenv goes in with --no-deps.
DEFAULT_IGNORE = frozenset({"pip", "setuptools", "wheel", "sdenv", "distribute"})


class DriftError(SdenvError):
    """The inventory of the target interpreter could not be taken."""


@dataclass(frozen=True)
class InstalledDist:
    name: str  # canonical
    version: str
    location: str = ""
    record: bool = False  # had a RECORD to check files against
    files: int = 0  # files checked
    modified: tuple[str, ...] = ()
    missing_files: tuple[str, ...] = ()


@dataclass(frozen=True)
class Inventory:
    python: str
    python_version: str
    dists: tuple[InstalledDist, ...]
    seconds: float = 0.0
    unchanged_files: int = 0  # matched when last checked and unchanged since: not hashed again


@dataclass(frozen=True)
class VersionDrift:
    name: str
    locked: str
    installed: str


@dataclass(frozen=True)
class FileDrift:
    name: str
    version: str
    modified: tuple[str, ...]
    missing: tuple[str, ...]


@dataclass(frozen=True)
class DriftReport:
    lock: str
    python: str
    checked_files: int
    missing: tuple[str, ...] = ()  # "name==locked"
    extra: tuple[str, ...] = ()  # "name==installed"
    versions: tuple[VersionDrift, ...] = ()
    files: tuple[FileDrift, ...] = ()
    no_record: tuple[str, ...] = ()  # pinned and installed, but without a RECORD: unchecked
    ignored: tuple[str, ...] = field(default=())
    seconds: float = 0.0
    unchanged_files: int = 0  # of checked_files: unchanged since they last matched, not hashed

    @property
    def ok(self) -> bool:
        return not (self.missing or self.extra or self.versions or self.files)

    def reasons(self) -> list[str]:
        """One line per kind of drift, naming the packages (and a file), and the fix."""
        out: list[str] = []
        if self.missing:
            out.append(f"missing: {', '.join(self.missing)} (install the lock)")
        if self.versions:
            vs = ", ".join(f"{v.name} {v.installed} (lock {v.locked})" for v in self.versions)
            out.append(f"other versions: {vs} (reinstall from the lock)")
        if self.files:
            parts = []
            for f in self.files:
                first = (f.modified or f.missing)[0]
                n = len(f.modified) + len(f.missing)
                what = "modified" if f.modified else "missing"
                parts.append(f"{f.name}=={f.version}: {n} file(s) {what}, e.g. {first}")
            out.append(
                f"files differ from RECORD: {'; '.join(parts)} (reinstall: pip install "
                "--force-reinstall --no-deps)"
            )
        if self.extra:
            out.append(f"not in the lock: {', '.join(self.extra)} (uninstall, or add to the env)")
        return out


def _versions_equal(a: str, b: str) -> bool:
    try:
        return Version(a) == Version(b)
    except InvalidVersion:
        return a == b


def compare(
    locked: Mapping[str, str],
    inventory: Inventory,
    *,
    lock_name: str = "<lock>",
    ignore: Iterable[str] = DEFAULT_IGNORE,
) -> DriftReport:
    """Pure: the lock's ``{canonical name: version}`` against an inventory."""
    ignore_set = {canonicalize_name(n) for n in ignore}
    wanted = {canonicalize_name(k): v for k, v in locked.items()}
    installed = {d.name: d for d in inventory.dists}
    missing = tuple(f"{n}=={v}" for n, v in sorted(wanted.items()) if n not in installed)
    versions = tuple(
        VersionDrift(n, v, installed[n].version)
        for n, v in sorted(wanted.items())
        if n in installed and not _versions_equal(installed[n].version, v)
    )
    extra = tuple(
        f"{d.name}=={d.version}"
        for d in sorted(inventory.dists, key=lambda d: d.name)
        if d.name not in wanted and d.name not in ignore_set
    )
    # Files are checked for every pinned distribution (the ignored tools are not the deployment).
    files = tuple(
        FileDrift(d.name, d.version, d.modified, d.missing_files)
        for d in sorted(inventory.dists, key=lambda d: d.name)
        if d.name in wanted and (d.modified or d.missing_files)
    )
    no_record = tuple(sorted(n for n in wanted if n in installed and not installed[n].record))
    return DriftReport(
        lock=lock_name,
        python=inventory.python,
        checked_files=sum(d.files for d in inventory.dists if d.name in wanted),
        missing=missing,
        extra=extra,
        versions=versions,
        files=files,
        no_record=no_record,
        ignored=tuple(sorted(n for n in installed if n in ignore_set and n not in wanted)),
        seconds=inventory.seconds,
        unchanged_files=inventory.unchanged_files,
    )


def take_inventory(
    python: str | Path | None = None,
    *,
    check_files: bool = True,
    timeout: float = 300.0,
    isolated: bool = False,
    rehash: bool = False,
) -> Inventory:
    """Distributions importable by ``python`` (default: this one), files hashed against RECORD.

    Not isolated by default: PYTHONPATH and user site are part of what the target imports when
    verify runs it. ``isolated`` (``-I``) sees the interpreter's own environment alone: what a
    venv just built holds, whatever the caller's PYTHONPATH. A venv's files unchanged since they
    last matched (``sdenv.target.inventory``) are not hashed again unless ``rehash``.
    """
    exe = _target.interpreter_path(python) if python else sys.executable
    t0 = time.perf_counter()
    with throwaway_dir("sdenv-drift-") as tmp:
        root = _target.stage(tmp)
        args = [str(int(check_files)), "rehash" if rehash else "cache"]
        cmd = _target.command(exe, root, "inventory", args, isolated=isolated)
        try:
            proc = _cleanup.run(
                cmd,
                capture_output=True,
                text=True,
                timeout=timeout,
                check=False,
                cwd=root,
                env=_target.child_env(),
            )
        except FileNotFoundError:
            raise DriftError(f"{exe}: no such interpreter; pass the venv's bin/python") from None
        except subprocess.TimeoutExpired:
            raise DriftError(f"{exe}: inventory took over {timeout:.0f} s") from None
    data = last_result(proc.stdout) if proc.returncode == 0 else None
    if data is None:
        tail = (proc.stderr.strip().splitlines() or ["no output"])[-1]
        raise DriftError(f"{exe}: inventory failed: {tail}")
    dists = tuple(
        InstalledDist(
            name=d["name"],
            version=d["version"],
            location=d["location"],
            record=d["record"],
            files=d["files"],
            modified=tuple(d["modified"]),
            missing_files=tuple(d["missing_files"]),
        )
        for d in data["dists"]
    )
    seconds = time.perf_counter() - t0
    unchanged = int(data.get("unchanged_files", 0))
    return Inventory(data["python"], data["version"], dists, seconds, unchanged)


def check_drift(
    lock: Lockfile,
    python: str | Path | None = None,
    *,
    check_files: bool = True,
    ignore: Sequence[str] = tuple(DEFAULT_IGNORE),
    isolated: bool = False,
    rehash: bool = False,
) -> DriftReport:
    inventory = take_inventory(python, check_files=check_files, isolated=isolated, rehash=rehash)
    return compare(
        lock.versions(),
        inventory,
        lock_name=str(lock.path) if lock.path else "<lock>",
        ignore=ignore,
    )
