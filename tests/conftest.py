from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING

import pytest

if TYPE_CHECKING:
    from osv_server import OsvServer

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture
def repo() -> Path:
    return REPO


# Shared fixtures: a local PEP 503 index of the SD3.5 stack's stand-in wheels, a lock made from it,
# and a local OSV-compatible server. Test modules use them by name.


@pytest.fixture(scope="module")
def index(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    from pypi_index import build_index, sd_stack, serve

    root = build_index(sd_stack(), tmp_path_factory.mktemp("wheels"))
    with serve(root) as url:
        yield url


@pytest.fixture(scope="module")
def locked(index: str, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A lock (and its pylock) written by `sdenv lock` for this Python, no import proof."""
    from helpers.specs import write_spec
    from sdenv import lock as locking
    from sdenv.lock.spec import load_spec

    tmp = tmp_path_factory.mktemp("locked")
    spec = load_spec(write_spec(tmp, index))
    opts = locking.LockOptions(lock_dir=tmp / "lockfiles", verify=False)
    result = locking.lock_target(spec, spec.targets[0], opts)
    assert result.status == "written", result.message
    return result.path


@pytest.fixture
def private_cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """sdenv's wheel-metadata cache in this test's tmp dir: no test sees another's reads."""
    monkeypatch.setenv("SDENV_CACHE_DIR", str(tmp_path / "sdenv-cache"))


@pytest.fixture
def osv(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[OsvServer]:
    from osv_server import OsvServer

    monkeypatch.setenv("NO_PROXY", "127.0.0.1,localhost")
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    monkeypatch.delenv("PIP_AUDIT_OSV_URL", raising=False)
    adv = tmp_path / "advisories"
    adv.mkdir()
    with OsvServer(adv) as server:
        yield server


if TYPE_CHECKING:
    from collections.abc import Callable

    LockWriter = Callable[[Path, dict[str, str]], Path]


@pytest.fixture
def make_lock() -> LockWriter:
    """Writes a real sdenv lockfile pinning ``{name: version}``; each hash is the sha256 of a
    stand-in file's bytes (``name-version``), so no wheel needs to exist."""
    import hashlib

    from sdenv.lock.lockfile import Pin, make_lockfile, render_lockfile

    def write(path: Path, pins: dict[str, str]) -> Path:
        made = [
            Pin(n, v, (f"sha256:{hashlib.sha256(f'{n}-{v}'.encode()).hexdigest()}",))
            for n, v in pins.items()
        ]
        lock = make_lockfile([("env", "test"), ("python", "3.11")], made)
        path.write_text(render_lockfile(lock), encoding="utf-8")
        return path

    return write
