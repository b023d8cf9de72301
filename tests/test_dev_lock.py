"""requirements/dev.txt (what `make install` puts in .venv) against pyproject.toml: not stale."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path
from types import ModuleType

import pytest
from packaging.requirements import Requirement

REPO = Path(__file__).resolve().parents[1]


def _lock_dev() -> ModuleType:
    spec = importlib.util.spec_from_file_location("lock_dev", REPO / "scripts" / "lock_dev.py")
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


lock_dev = _lock_dev()

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover
    import tomli as tomllib


def _pins(text: str) -> dict[str, list[Requirement]]:
    """name -> its pins (one per marker branch), from a `uv pip compile --universal` file."""
    pins: dict[str, list[Requirement]] = {}
    for line in text.splitlines():
        if line and not line[0].isspace() and not line.startswith("#"):
            req = Requirement(line.rstrip(" \\"))
            pins.setdefault(req.name, []).append(req)
    return pins


def test_dev_lock_was_made_from_these_pyproject_inputs() -> None:
    pyproject = tomllib.loads((REPO / "pyproject.toml").read_text())
    recorded = lock_dev.recorded_sha256(lock_dev.DEV_LOCK.read_text())
    assert recorded == lock_dev.inputs_sha256(pyproject), (
        "requirements/dev.txt is stale against pyproject.toml's dependencies; run `make dev-lock`"
    )


def test_every_input_is_pinned_in_range_with_hashes_and_no_torch() -> None:
    pyproject = tomllib.loads((REPO / "pyproject.toml").read_text())
    text = lock_dev.DEV_LOCK.read_text()
    pins = _pins(text)
    for group, reqs in lock_dev.inputs(pyproject).items():
        for raw in reqs:
            req = Requirement(raw)
            if req.marker is not None and not req.marker.evaluate():
                continue
            here = [p for p in pins.get(req.name, []) if p.marker is None or p.marker.evaluate()]
            assert len(here) == 1, f"{group}: {raw}: pinned {len(here)} times for this Python"
            (version,) = (s.version for s in here[0].specifier)
            assert req.specifier.contains(version, prereleases=True), f"{raw}: pinned {version}"
    assert text.count("--hash=sha256:") >= len(pins)  # every pin hash-checked
    assert not {"torch", "diffusers", "transformers"} & set(pins)  # the runtime is .envs/'s


@pytest.mark.online
def test_recompiling_gives_the_same_lock(tmp_path: Path) -> None:
    """The committed file is what `make dev-lock` makes from pyproject.toml today."""
    (tmp_path / "pyproject.toml").write_text((REPO / "pyproject.toml").read_text())
    out = tmp_path / "dev.txt"
    out.write_text(lock_dev.DEV_LOCK.read_text())
    lock_dev.compile_lock(tmp_path / "pyproject.toml", out)
    assert out.read_text() == lock_dev.DEV_LOCK.read_text()
