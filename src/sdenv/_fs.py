"""Filesystem helpers shared by every writer: no half-written output, ever."""

from __future__ import annotations

import os
import tempfile
from pathlib import Path


def write_atomic(path: Path, data: str | bytes) -> None:
    """Write ``data`` to ``path`` through a temp file in the same directory, then rename.

    Readers see the old file or the new one, never a torn one, and a crash leaves no partial file.
    A path that is a directory, or lies under a file, is a usage error naming it.
    """
    from sdenv.errors import UsageError

    if path.is_dir():
        raise UsageError(f"{path}: is a directory; name the file to write")
    blocker = _file_in_the_way(path.parent)
    if blocker is not None:
        raise UsageError(f"{path}: {blocker} is a file, not a directory; choose another path")
    path.parent.mkdir(parents=True, exist_ok=True)
    raw = data.encode() if isinstance(data, str) else data
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        # mkstemp makes 0600 files; outputs (locks, SBOMs, images' build context) are for everyone.
        umask = os.umask(0)
        os.umask(umask)
        os.fchmod(fd, 0o666 & ~umask)
        with os.fdopen(fd, "wb") as fh:
            fh.write(raw)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def _file_in_the_way(path: Path) -> Path | None:
    """The nearest existing one of ``path`` and its parents, when it is not a directory."""
    for p in (path, *path.parents):
        if p.exists() or p.is_symlink():
            return None if p.is_dir() else p
    return None


def require_dir_arg(path: Path, option: str) -> None:
    """An output or input directory option: missing is fine (it is created), another kind is not.

    Checked before any work, so a file given where a directory belongs ends in one line, not in
    a traceback from ``mkdir`` after minutes of resolving.
    """
    from sdenv.errors import UsageError

    blocker = _file_in_the_way(path)
    if blocker is not None:
        what = "is a file" if blocker == path else f"is inside {blocker}, which is a file"
        raise UsageError(f"{option} {path}: {what}, not a directory; pass a directory")


def require_file_arg(path: Path, option: str, what: str, fix: str) -> None:
    """An input file option: say which of missing / a directory / not a regular file it is."""
    from sdenv.errors import UsageError

    if path.is_file():
        return
    if path.is_dir():
        raise UsageError(f"{option} {path}: is a directory, not a {what}; {fix}")
    if path.exists():
        raise UsageError(f"{option} {path}: not a regular file, not a {what}; {fix}")
    raise UsageError(f"{option} {path}: no such {what}; {fix}")
