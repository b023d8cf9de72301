"""What a build starts from, checked before any step: the base's Python against the env's
targets, and the lock's freshness against the spec and sdenv's data."""

from __future__ import annotations

import pytest

from conftest import REPO
from sdenv.image import inputs
from sdenv.image.errors import LockStale, PythonMismatch
from sdenv.lock.lockfile import make_lockfile
from sdenv.lock.spec import load_spec

ENVS = REPO / "envs"


def test_python_of_the_base_must_match_the_target() -> None:
    spec = load_spec("sd35-fp8-cu121", ENVS)
    assert inputs.resolve_target(spec, None, "3.11", "b").python == "3.11"
    with pytest.raises(PythonMismatch, match=r"base image b has Python 3.11 .* needs 3.10"):
        inputs.resolve_target(spec, "3.10", "3.11", "b")
    with pytest.raises(Exception, match=r"3.13 is not a Python of env sd35-fp8-cu121"):
        inputs.resolve_target(spec, "3.13", "3.13", "b")


def test_a_lock_from_another_spec_or_sdenv_is_stale() -> None:
    from sdenv.lock import data_sha256

    spec = load_spec("sd35-fp8-cu121", ENVS)
    inputs.check_lock_fresh(
        spec, make_lockfile([("spec-sha256", spec.sha256), ("data-sha256", data_sha256())], [])
    )
    with pytest.raises(LockStale, match="stale, made from another version of"):
        inputs.check_lock_fresh(spec, make_lockfile([("spec-sha256", "0" * 64)], []))
    with pytest.raises(LockStale, match="other rules/torch tables"):
        inputs.check_lock_fresh(
            spec, make_lockfile([("spec-sha256", spec.sha256), ("data-sha256", "0")], [])
        )
