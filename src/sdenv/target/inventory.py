"""Drift's inventory, taken INSIDE the target interpreter: standard library only, Python >= 3.9.

Every distribution ``importlib.metadata`` of that interpreter sees (its ``sys.path``), and with
``1`` as argument every file its RECORD lists with a hash, hashed in threads (hashlib releases the
GIL on large buffers, so torch's 1.6 GB hash in parallel with the nvidia-* wheels). One result
record (``sdenv.target.protocol``): ``{"python", "version", "dists": [...]}``; the host compares
it with the lock (``sdenv.drift.compare``).

With ``cache`` as second argument, in a venv, a file whose device, inode, size, mtime and ctime are
those recorded when it last matched its RECORD hash is not hashed again (git's index does the
same): a change to a file's content changes its ctime, which no unprivileged tool can set back.
The record is ``.sdenv-record-hashes.json`` at the venv's root, beside sync's stamp, with paths
relative to the venv, so it moves with a venv that sync builds aside and renames into place. A
file changed less than ``RACY_NS`` before it was looked at is not recorded (a second change in
the same timestamp tick would not show in its times: git's "racy" entries). A venv that cannot be
written to is hashed in full each time (docs/evidence.md#E-stat-record).
"""

from __future__ import annotations

import base64
import hashlib
import json
import os
import re
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from importlib import metadata
from typing import Any, Optional

from sdenv.target.protocol import emit

Job = tuple[dict[str, Any], str, str, str, str]  # entry, RECORD path, file, algorithm, hash
CACHE_NAME = ".sdenv-record-hashes.json"
CACHE_VERSION = 1
RACY_NS = 2_000_000_000  # far above any timestamp granularity (ext4: a clock tick; FAT: 2 s)
StatKey = list[Any]  # st_dev, st_ino, st_size, st_mtime_ns, st_ctime_ns, "algo=digest"
# job, its digest (None: the file is gone), the record to keep (None: none), hashed now.
# Optional, not "X | None": this alias is evaluated at run time, and targets run Python 3.9.
Checked = tuple[Job, Optional[str], Optional[StatKey], bool]  # noqa: UP045


def canon(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def file_hash(path: str, algo: str) -> str | None:
    """RECORD's encoding of the file's digest; None when the file is gone."""
    h = hashlib.new(algo)
    try:
        with open(path, "rb") as fh:
            while True:
                chunk = fh.read(1 << 20)
                if not chunk:
                    break
                h.update(chunk)
    except FileNotFoundError:
        return None
    except OSError as exc:
        return "error:" + str(exc)
    return base64.urlsafe_b64encode(h.digest()).rstrip(b"=").decode()


def _entries(check_files: bool) -> tuple[list[dict[str, Any]], list[Job]]:
    seen: dict[str, dict[str, Any]] = {}
    jobs: list[Job] = []
    for dist in metadata.distributions():
        name = dist.metadata["Name"]
        if not name:
            continue
        key = canon(name)
        if key in seen:  # shadowed by an earlier sys.path entry: Python imports the first one
            continue
        entry: dict[str, Any] = {
            "name": key,
            "version": dist.version,
            "location": str(dist.locate_file("")),
            "record": False,
            "files": 0,
            "modified": [],
            "missing_files": [],
        }
        seen[key] = entry
        files = dist.files if check_files else None
        if files is None:
            continue
        entry["record"] = True
        for f in files:
            if f.hash is None or f.hash.mode not in hashlib.algorithms_available:
                continue  # RECORD itself, .pyc files compiled after install
            entry["files"] += 1
            jobs.append((entry, str(f), str(dist.locate_file(f)), f.hash.mode, f.hash.value))
    return list(seen.values()), jobs


def cache_path() -> str | None:
    """Where this interpreter's record of checked files lives: only a venv has one."""
    return os.path.join(sys.prefix, CACHE_NAME) if sys.prefix != sys.base_prefix else None


def load_cache(path: str | None) -> dict[str, StatKey]:
    """The recorded files; an unreadable or foreign record is no record (everything hashed)."""
    if path is None:
        return {}
    try:
        with open(path, encoding="utf-8") as fh:
            data = json.load(fh)
    except (OSError, ValueError):
        return {}
    if not isinstance(data, dict) or data.get("version") != CACHE_VERSION:
        return {}
    files = data.get("files")
    return files if isinstance(files, dict) else {}


def save_cache(path: str | None, files: dict[str, StatKey]) -> None:
    """Write the record whole or not at all (a venv root we cannot write to: none)."""
    if path is None:
        return
    tmp = f"{path}.{os.getpid()}.tmp"
    try:
        with open(tmp, "w", encoding="utf-8") as fh:
            json.dump({"version": CACHE_VERSION, "files": files}, fh, separators=(",", ":"))
        os.replace(tmp, path)
    except OSError:
        if os.path.exists(tmp):
            os.unlink(tmp)


def _key(path: str) -> str:
    prefix = os.path.join(sys.prefix, "")
    return path[len(prefix) :] if path.startswith(prefix) else path


def _stat(path: str, algo: str, want: str) -> StatKey:
    """What the record keeps of a file; raises OSError (gone, unreadable)."""
    st = os.stat(path)
    return [st.st_dev, st.st_ino, st.st_size, st.st_mtime_ns, st.st_ctime_ns, f"{algo}={want}"]


def _check(job: Job, start_ns: int) -> Checked:
    """Hash the file; the record to keep when it matches and is older than RACY_NS."""
    path, algo, want = job[2], job[3], job[4]
    try:
        stat = _stat(path, algo, want)
    except FileNotFoundError:
        return job, None, None, False
    except OSError as exc:
        return job, "error:" + str(exc), None, False
    got = file_hash(path, algo)
    # Taken before hashing: a change after this stat shows as a new ctime next time.
    keep = got == want and stat[4] < start_ns - RACY_NS
    return job, got, stat if keep else None, True


def _vouched(job: Job, cached: dict[str, StatKey]) -> StatKey | None:
    """The file's record when its stat is still the recorded one; None: check it."""
    try:
        stat = _stat(job[2], job[3], job[4])
    except OSError:
        return None
    return stat if cached.get(_key(job[2])) == stat else None


def inventory(check_files: bool, use_cache: bool = False) -> dict[str, Any]:
    entries, jobs = _entries(check_files)
    where = cache_path() if use_cache and jobs else None
    cached, keep = load_cache(where), {}
    hashed = reused = 0
    start_ns = time.time_ns()
    # Files the record vouches for take one stat each, here; only the others go to the threads
    # (a hand-off to a thread costs more than a stat: 19k of them were most of a cached check).
    checks: list[Checked] = []
    misses: list[Job] = []
    for job in jobs:
        stat = _vouched(job, cached) if cached else None
        if stat is None:
            misses.append(job)
        else:
            checks.append((job, job[4], stat, False))
    with ThreadPoolExecutor(max_workers=min(16, (os.cpu_count() or 2) * 2)) as pool:
        checks += pool.map(lambda job: _check(job, start_ns), misses)
    for (entry, rel, path, _algo, want), got, stat, now in checks:
        hashed += now
        reused += not now and stat is not None
        if stat is not None:
            keep[_key(path)] = stat
        if got is None:
            entry["missing_files"].append(rel)
        elif got != want:
            entry["modified"].append(rel)
    if where is not None and keep != cached:
        save_cache(where, keep)
    for e in entries:
        e["modified"].sort()
        e["missing_files"].sort()
    return {
        "python": sys.executable,
        "version": ".".join(str(n) for n in sys.version_info[:3]),
        "dists": sorted(entries, key=lambda e: str(e["name"])),
        "hashed_files": hashed,
        "unchanged_files": reused,
    }


def main(argv: list[str]) -> int:
    check_files = bool(argv) and argv[0] == "1"
    emit(inventory(check_files, use_cache=argv[1:2] == ["cache"]))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
