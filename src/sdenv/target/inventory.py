"""Drift's inventory, taken INSIDE the target interpreter: standard library only, Python >= 3.9.

Every distribution ``importlib.metadata`` of that interpreter sees (its ``sys.path``), and with
``1`` as argument every file its RECORD lists with a hash, hashed in threads (hashlib releases the
GIL on large buffers, so torch's 1.6 GB hash in parallel with the nvidia-* wheels). One result
record (``sdenv.target.protocol``): ``{"python", "version", "dists": [...]}``; the host compares
it with the lock (``sdenv.drift.compare``).
"""

from __future__ import annotations

import base64
import hashlib
import os
import re
import sys
from concurrent.futures import ThreadPoolExecutor
from importlib import metadata
from typing import Any

from sdenv.target.protocol import emit

Job = tuple[dict[str, Any], str, str, str, str]  # entry, RECORD path, file, algorithm, hash


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


def _check(job: Job) -> tuple[Job, str | None]:
    return job, file_hash(job[2], job[3])


def inventory(check_files: bool) -> dict[str, Any]:
    entries, jobs = _entries(check_files)
    with ThreadPoolExecutor(max_workers=min(16, (os.cpu_count() or 2) * 2)) as pool:
        for (entry, rel, _path, _algo, want), got in pool.map(_check, jobs):
            if got is None:
                entry["missing_files"].append(rel)
            elif got != want:
                entry["modified"].append(rel)
    for e in entries:
        e["modified"].sort()
        e["missing_files"].sort()
    return {
        "python": sys.executable,
        "version": ".".join(str(n) for n in sys.version_info[:3]),
        "dists": sorted(entries, key=lambda e: str(e["name"])),
    }


def main(argv: list[str]) -> int:
    emit(inventory(check_files=bool(argv) and argv[0] == "1"))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
