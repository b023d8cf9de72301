"""PEP 751 ``pylock.<name>.toml`` beside each ``<target>.txt`` lock: the same pins and hashes.

The .txt lock is what pip reads; the pylock is the standard format that uv (``uv pip install -r``,
``uv pip sync``) and ``packaging.pylock`` read. PEP 751 wants a ``url`` (or ``path``) for every
file, which the .txt lock does not record, so the pylock is rendered from two inputs: the parsed
.txt lock and the index's file list (each file by its sha256). The rendering is a pure function of
those (sorted, no timestamps), so the same lock gives the same bytes. The .txt header travels in
``[tool.sdenv]``, so a pylock reads back to the very ``Lockfile`` it was made from: that equality is
what ``sdenv lock --check`` checks.

File name: PEP 751 allows no dot in ``<name>`` (uv refuses ``pylock.x-py3.11.toml``), so the dots of
the target's stem are dropped: ``pylock.sd35-fp8-cu121-py311-linux_x86_64.toml``.
"""

from __future__ import annotations

import sys
from collections.abc import Iterable, Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from packaging.utils import canonicalize_name

from sdenv._fs import write_atomic
from sdenv.lock.lockfile import Lockfile, LockfileError, Pin, read_lockfile

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover - exercised on 3.10 only
    import tomli as tomllib

LOCK_VERSION = "1.0"
CREATED_BY = "sdenv"


@dataclass(frozen=True)
class LockedFile:
    """One file of a pin as the index lists it."""

    filename: str
    url: str
    index: str  # the index URL that listed it


def pylock_path(txt: Path) -> Path:
    """``lockfiles/x-py3.11-linux_x86_64.txt`` -> ``lockfiles/pylock.x-py311-linux_x86_64.toml``."""
    return txt.with_name(f"pylock.{txt.stem.replace('.', '')}.toml")


def is_pylock(path: Path) -> bool:
    return path.name.startswith("pylock.") and path.suffix == ".toml"


def environment_marker(lock: Lockfile) -> str | None:
    """The PEP 508 marker of the lock's target (its python and platform header), if it has one."""
    python = lock.get("python")
    platform = (lock.get("platform") or "").split(" ")[0]
    os_name, _, machine = platform.partition("_")
    if not python or os_name != "linux" or not machine:
        return None
    return (
        f'python_version == "{python}" and sys_platform == "linux" '
        f'and platform_machine == "{machine}"'
    )


def render_pylock(lock: Lockfile, files: Mapping[str, LockedFile]) -> str:
    """The pylock text of ``lock``; ``files`` maps each ``sha256:<hex>`` to the file it names.

    Every hash of every pin must be in ``files`` (a file the index no longer lists cannot be given
    a url); wheels and the sdist keep the lock's hash order, which is sorted.
    """
    import tomli_w

    where = str(lock.path) if lock.path else "<lock>"
    packages: list[dict[str, Any]] = []
    for pin in lock.pins:
        missing = [h for h in pin.hashes if h not in files]
        if missing:
            raise LockfileError(
                f"{where}: {pin.name}=={pin.version}: the index lists no file with {missing[0]}; "
                "re-lock with `sdenv lock` against an index that has it"
            )
        wheels: list[dict[str, Any]] = []
        sdist: dict[str, Any] | None = None
        for h in pin.hashes:
            f = files[h]
            entry = {"name": f.filename, "url": f.url, "hashes": {"sha256": h.split(":", 1)[1]}}
            if f.filename.endswith(".whl"):
                wheels.append(entry)
            elif sdist is None:
                sdist = entry
            else:
                raise LockfileError(
                    f"{where}: {pin.name}=={pin.version}: two sdists ({sdist['name']}, "
                    f"{f.filename}); PEP 751 allows one per package"
                )
        package: dict[str, Any] = {"name": pin.name, "version": pin.version}
        indexes = sorted({files[h].index for h in pin.hashes})
        if len(indexes) == 1:
            package["index"] = indexes[0]
        if sdist is not None:
            package["sdist"] = sdist
        if wheels:
            package["wheels"] = wheels
        packages.append(package)
    doc: dict[str, Any] = {"lock-version": LOCK_VERSION}
    marker = environment_marker(lock)
    if marker:
        doc["environments"] = [marker]
    if lock.get("python"):
        doc["requires-python"] = f"=={lock.get('python')}.*"
    doc["created-by"] = CREATED_BY
    doc["packages"] = packages
    doc["tool"] = {"sdenv": {"header": [f"{k}: {v}" for k, v in lock.header]}}
    return tomli_w.dumps(doc)


def parse_pylock(text: str, path: Path | None = None) -> Lockfile:
    """A pylock sdenv wrote, validated by ``packaging.pylock``, as the Lockfile it came from."""
    from packaging.pylock import Pylock, PylockValidationError

    where = str(path) if path else "<pylock>"
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise LockfileError(
            f"{where}: invalid TOML: {exc}; regenerate it with `sdenv lock`"
        ) from None
    try:
        pylock = Pylock.from_dict(data)
    except PylockValidationError as exc:
        raise LockfileError(f"{where}: not a valid PEP 751 lock: {exc}") from None
    tool = (pylock.tool or {}).get("sdenv")
    header = tool.get("header") if isinstance(tool, Mapping) else None
    if not isinstance(header, list) or not all(
        isinstance(line, str) and ": " in line for line in header
    ):
        raise LockfileError(
            f"{where}: tool.sdenv.header: missing; sdenv reads only the pylocks `sdenv lock` writes"
        )
    pins: list[Pin] = []
    for i, package in enumerate(pylock.packages):
        if package.version is None or package.is_direct:
            raise LockfileError(
                f"{where}: packages[{i}] ({package.name}): not an exact version with files; "
                "regenerate it with `sdenv lock`"
            )
        files: list[Mapping[str, str]] = [
            *([package.sdist.hashes] if package.sdist else []),
            *(w.hashes for w in package.wheels or []),
        ]
        if any("sha256" not in h for h in files):
            raise LockfileError(f"{where}: packages[{i}] ({package.name}): a file has no sha256")
        hashes = tuple(sorted(f"sha256:{h['sha256']}" for h in files))
        pins.append(Pin(canonicalize_name(package.name), str(package.version), hashes))
    pairs = tuple((k, v) for k, _, v in (line.partition(": ") for line in header))
    lock = Lockfile(pairs, tuple(sorted(pins, key=lambda p: p.name)))
    # The same checks as a .txt lock gets (format header, duplicates): render and parse it back.
    from sdenv.lock.lockfile import parse_lockfile, render_lockfile

    return parse_lockfile(render_lockfile(lock), path)


def read_pylock(path: Path) -> Lockfile:
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise LockfileError(f"{path}: no such pylock; create it with `sdenv lock`") from None
    return parse_pylock(text, path)


def read_any_lock(path: Path) -> Lockfile:
    """A ``<target>.txt`` lock or its ``pylock.<name>.toml``, as one Lockfile."""
    return read_pylock(path) if is_pylock(path) else read_lockfile(path)


def disagreement(txt: Lockfile, pylock_file: Path) -> str | None:
    """Why the pylock beside a .txt lock does not say the same thing, or None when it does."""
    try:
        other = read_pylock(pylock_file)
    except LockfileError as exc:
        return str(exc)
    if other.header != txt.header:
        return f"{pylock_file}: its [tool.sdenv] header differs from {txt.path}; run `sdenv lock`"
    mine, theirs = {p.name: p for p in txt.pins}, {p.name: p for p in other.pins}
    for name in sorted(set(mine) | set(theirs)):
        a, b = mine.get(name), theirs.get(name)
        if a == b:
            continue
        if a and b and a.version == b.version:
            what = f"{name}=={a.version}: other sha256 hashes than the .txt lock's"
        else:
            what = f"{name}: {b.version if b else 'not pinned'}, the .txt lock: "
            what += a.version if a else "not pinned"
        return f"{pylock_file}: {what}; run `sdenv lock`"
    return None


# --- the impure part: the index's file list ------------------------------------------------------


def index_files(pins: Iterable[Pin], index_urls: Iterable[str]) -> dict[str, LockedFile]:
    """Every file the indexes list for the pins, by ``sha256:<hex>`` (one listing per project)."""
    from sdenv.lock.wheelmeta import list_files

    urls = list(index_urls)
    names = sorted({p.name for p in pins})

    def listing(name: str) -> list[tuple[str, LockedFile]]:
        out = []
        for url in urls:
            for f in list_files(url, name):
                if f.sha256:
                    out.append((f"sha256:{f.sha256}", LockedFile(f.filename, f.url, url)))
        return out

    found: dict[str, LockedFile] = {}
    with ThreadPoolExecutor(max_workers=8) as pool:
        for entries in pool.map(listing, names):
            for sha, f in entries:
                found.setdefault(sha, f)  # the first index listing a file wins, as installers do
    return found


def write_pylock(txt: Path, lock: Lockfile) -> Path:
    """Write the pylock of the .txt lock at ``txt`` from its header's indexes (no resolving)."""
    path = pylock_path(txt)
    text = render_pylock(lock, index_files(lock.pins, lock.get_all("index")))
    write_atomic(path, text)
    return path


def main(argv: list[str] | None = None) -> int:
    """``python -m sdenv.lock.pylock LOCK.txt ...``: (re)write the pylock of existing .txt locks."""
    from sdenv.errors import SdenvError

    args = sys.argv[1:] if argv is None else argv
    if not args:
        print("usage: python -m sdenv.lock.pylock LOCK.txt ...", file=sys.stderr)
        return 2
    try:
        for arg in args:
            print(write_pylock(Path(arg), read_lockfile(Path(arg))))
    except SdenvError as exc:
        print(f"sdenv: error: {exc}", file=sys.stderr)
        return exc.exit_code
    return 0


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
