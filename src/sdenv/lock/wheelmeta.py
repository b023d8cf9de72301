"""What a wheel says about itself, read from the index without installing or downloading it.

The indexes here serve no PEP 658 ``.whl.metadata`` files but do answer HTTP range requests
(``docs/evidence.md#E-index-range-requests``), so one member of a wheel
(``xformers/cpp_lib.json``) is read with a few ranged GETs through ``remotezip``. Results are
cached by the wheel's sha256, which the index gives and the lock pins: the same hash means the
same bytes, so the cache never goes stale.
"""

from __future__ import annotations

import hashlib
import os
import urllib.request
import zipfile
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from functools import cache
from html.parser import HTMLParser
from pathlib import Path
from urllib.parse import unquote, urljoin, urlsplit

from packaging.tags import Tag, compatible_tags, cpython_tags
from packaging.utils import (
    InvalidWheelFilename,
    canonicalize_name,
    parse_wheel_filename,
)
from packaging.version import Version

from sdenv.errors import SdenvError


class WheelMetaError(SdenvError):
    """An index or a wheel on it could not be read."""


@dataclass(frozen=True)
class IndexFile:
    filename: str
    url: str
    sha256: str | None

    @property
    def is_wheel(self) -> bool:
        return self.filename.endswith(".whl")

    @property
    def version(self) -> Version | None:
        try:
            return parse_wheel_filename(self.filename)[1]
        except InvalidWheelFilename:
            return None


class _Anchors(HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.hrefs: list[tuple[str, str]] = []
        self._href: str | None = None
        self._text = ""

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag == "a":
            self._href = dict(attrs).get("href")
            self._text = ""

    def handle_data(self, data: str) -> None:
        if self._href is not None:
            self._text += data

    def handle_endtag(self, tag: str) -> None:
        if tag == "a" and self._href is not None:
            self.hrefs.append((self._href, self._text.strip()))
            self._href = None


def _get(url: str, accept: str = "text/html") -> bytes:
    if url.startswith("file://"):
        path = Path(unquote(urlsplit(url).path))
        if path.is_dir():
            path = path / "index.html"
        return path.read_bytes()
    req = urllib.request.Request(url, headers={"Accept": accept, "User-Agent": "sdenv"})
    try:
        with urllib.request.urlopen(req, timeout=60) as resp:
            data: bytes = resp.read()
            return data
    except OSError as exc:
        raise WheelMetaError(
            f"{url}: cannot read the index page ({exc}); check the index URL"
        ) from exc


def list_files(index_url: str, name: str, *, strict: bool = False) -> list[IndexFile]:
    """Every file a PEP 503 simple index lists for project ``name``.

    An unreadable page means no files, unless ``strict``: then it raises, for callers that must
    not mistake an unreachable index for an empty one.
    """
    page = f"{index_url.rstrip('/')}/{canonicalize_name(name)}/"
    try:
        html = _get(page).decode("utf-8", "replace")
    except WheelMetaError:
        if strict:
            raise
        return []
    parser = _Anchors()
    parser.feed(html)
    files = []
    for href, text in parser.hrefs:
        url, _, fragment = urljoin(page, href).partition("#")
        filename = text or unquote(url.rsplit("/", 1)[-1])
        sha = fragment[len("sha256=") :] if fragment.startswith("sha256=") else None
        files.append(IndexFile(filename, url, sha))
    return files


def platform_tags(platform: str) -> list[str]:
    """Platform tags a uv platform ("x86_64-manylinux_2_28") takes, best first."""
    arch, _, libc = platform.partition("-")
    plats: list[str] = []
    if libc.startswith("manylinux_2_"):
        glibc = int(libc.rsplit("_", 1)[1])
        plats = [f"manylinux_2_{m}_{arch}" for m in range(glibc, 4, -1)]
        legacy = {17: "manylinux2014", 12: "manylinux2010", 5: "manylinux1"}
        plats += [f"{tag}_{arch}" for m, tag in legacy.items() if m <= glibc]
    plats.append(f"linux_{arch}")
    return plats


@cache
def target_tags(python: str, platform: str) -> frozenset[Tag]:
    """Wheel tags a CPython ``python`` ("3.11") on a uv platform ("x86_64-manylinux_2_28") takes."""
    major, minor = (int(p) for p in python.split("."))
    plats = platform_tags(platform)
    version = (major, minor)
    tags = list(cpython_tags(version, platforms=plats))
    tags += list(compatible_tags(version, f"cp{major}{minor}", plats))
    return frozenset(tags)


def wheel_fits(filename: str, python: str, platform: str) -> bool:
    try:
        tags = parse_wheel_filename(filename)[3]
    except InvalidWheelFilename:
        return False
    return bool(tags & target_tags(python, platform))


def find_wheel(
    index_urls: Sequence[str],
    name: str,
    version: str,
    python: str,
    platform: str,
    hashes: Iterable[str] = (),
) -> IndexFile | None:
    """The wheel of ``name==version`` that a target installs (one of ``hashes`` when given)."""
    wanted = {h.removeprefix("sha256:") for h in hashes}
    v = Version(version)
    for index in index_urls:
        for f in list_files(index, name):
            if not f.is_wheel or f.version != v or not wheel_fits(f.filename, python, platform):
                continue
            if wanted and f.sha256 not in wanted:
                continue
            return f
    return None


def cache_dir() -> Path:
    base = os.environ.get("SDENV_CACHE_DIR") or os.environ.get("XDG_CACHE_HOME")
    root = Path(base) if base else Path.home() / ".cache"
    return (root if os.environ.get("SDENV_CACHE_DIR") else root / "sdenv") / "wheelmeta"


def _cache_path(ident: str, member: str) -> Path:
    key = hashlib.sha256(f"{ident}\0{member}".encode()).hexdigest()
    return cache_dir() / key[:2] / key


def cached_member(sha256s: Iterable[str], member: str) -> tuple[bool, bytes | None]:
    """(found, data) from the cache for any wheel among ``sha256s``: no index request at all."""
    for sha in sha256s:
        cached = _cache_path(sha.removeprefix("sha256:"), member)
        if cached.exists():
            data = cached.read_bytes()
            return True, (None if data == _MISSING else data)
    return False, None


_MISSING = b"\0missing"


def read_member(wheel: IndexFile, member: str) -> bytes | None:
    """One file inside a remote wheel (None when the wheel has no such member)."""
    cached = _cache_path(wheel.sha256 or wheel.url, member)
    if wheel.sha256 and cached.exists():
        data = cached.read_bytes()
        return None if data == _MISSING else data
    data_or_none = _read_remote_member(wheel.url, member)
    if wheel.sha256:
        from sdenv._fs import write_atomic

        write_atomic(cached, _MISSING if data_or_none is None else data_or_none)
    return data_or_none


def _read_remote_member(url: str, member: str) -> bytes | None:
    try:
        if url.startswith("file://"):
            with zipfile.ZipFile(unquote(urlsplit(url).path)) as zf:
                return zf.read(member) if member in zf.namelist() else None
        import requests
        from remotezip import RemoteIOError, RemoteZip  # type: ignore[import-untyped]

        # requests ignores SSL_CERT_FILE; an inspecting proxy's CA is only found through it.
        verify: str | bool = (
            os.environ.get("REQUESTS_CA_BUNDLE") or os.environ.get("SSL_CERT_FILE") or True
        )
        try:
            with RemoteZip(url, verify=verify, timeout=60) as zf:
                return zf.read(member) if member in zf.namelist() else None
        except (RemoteIOError, requests.RequestException) as exc:
            raise WheelMetaError(f"{url}: range read of {member} failed: {exc}") from exc
    except (zipfile.BadZipFile, OSError) as exc:
        raise WheelMetaError(f"{url}: not a readable wheel ({exc})") from exc
