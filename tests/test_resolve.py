"""`sdenv.lock.resolve`: uv (and pip-tools) against the local PEP 503 index (tests/pypi_index.py).

Real resolvers, real wheels: pins are what the index serves (versions and the sha256 of each
file), resolved for the target's Python rather than the host's, with constraints, preferences
and upgrades applied as the lock relies on.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterator
from pathlib import Path

import pytest

from helpers.specs import HOST, write_spec
from pypi_index import Dist, build_index, serve, simple_dist
from sdenv.lock import base_inputs, checks
from sdenv.lock.lockfile import Pin
from sdenv.lock.resolve import (
    ResolveError,
    ResolveInput,
    parse_requirements_output,
    resolve,
)
from sdenv.lock.spec import Target, load_spec

OTHER = "3.12" if HOST != "3.12" else "3.11"  # a target Python that is not the host's


def target(python: str = HOST) -> Target:
    return Target("demo", python, "linux_x86_64")


@pytest.fixture(scope="module")
def small(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Two releases each of alpha and beta (alpha needs beta), and tomli for old Pythons only."""
    root = build_index(
        [
            simple_dist("alpha", "1.0", ["beta>=2.0"]),
            simple_dist("alpha", "1.1", ["beta>=2.0"]),
            simple_dist("beta", "2.0"),
            simple_dist("beta", "2.1"),
            simple_dist("gamma", "1.0", ['tomli>=2; python_version < "3.11"']),
            simple_dist("tomli", "2.2.1"),
        ],
        tmp_path_factory.mktemp("small"),
    )
    return root


@pytest.fixture(scope="module")
def small_url(small: Path) -> Iterator[str]:
    with serve(small) as url:
        yield url


def test_pins_are_the_newest_and_carry_the_served_files_hashes(small: Path, small_url: str) -> None:
    res = resolve(target(), ResolveInput(("alpha",), (), (small_url,)))
    assert res.versions() == {"alpha": "1.1", "beta": "2.1"}
    assert res.resolver.startswith("uv ")
    for pin in res.pins:
        (wheel,) = small.glob(f"{pin.name}-{pin.version}-*.whl")
        assert pin.hashes == (f"sha256:{hashlib.sha256(wheel.read_bytes()).hexdigest()}",)
    assert res.pin("Alpha") == res.pins[0] and res.pin("delta") is None


def test_constraints_bound_what_requirements_allow(small_url: str) -> None:
    res = resolve(target(), ResolveInput(("alpha",), ("beta<2.1", "alpha!=1.1"), (small_url,)))
    assert res.versions() == {"alpha": "1.0", "beta": "2.0"}


def test_preferences_are_kept_unless_upgraded(small_url: str) -> None:
    old = (
        Pin("alpha", "1.0", ("sha256:" + "0" * 64,)),
        Pin("beta", "2.0", ("sha256:" + "1" * 64,)),
    )
    base = ResolveInput(("alpha",), (), (small_url,), old)
    assert resolve(target(), base).versions() == {"alpha": "1.0", "beta": "2.0"}
    one = ResolveInput(("alpha",), (), (small_url,), old, upgrade_packages=("alpha",))
    assert resolve(target(), one).versions() == {"alpha": "1.1", "beta": "2.0"}
    every = ResolveInput(("alpha",), (), (small_url,), old, upgrade=True)
    assert resolve(target(), every).versions() == {"alpha": "1.1", "beta": "2.1"}


def test_markers_are_resolved_for_the_target_python_not_the_host(small_url: str) -> None:
    old = resolve(target("3.10"), ResolveInput(("gamma",), (), (small_url,)))
    new = resolve(target(OTHER), ResolveInput(("gamma",), (), (small_url,)))
    assert old.versions() == {"gamma": "1.0", "tomli": "2.2.1"}
    assert new.versions() == {"gamma": "1.0"}


def test_a_wheel_for_another_python_is_no_solution_and_uv_says_why_whole(tmp_path: Path) -> None:
    cp399 = Dist("newpy", "1.0", (), {"newpy/__init__.py": ""}, "cp399-cp399-manylinux_2_28_x86_64")
    with serve(build_index([cp399], tmp_path)) as url, pytest.raises(ResolveError) as info:
        resolve(target(), ResolveInput(("newpy",), (), (url,)))
    message = str(info.value)
    assert "\n" not in message
    assert message.startswith(f"demo-py{HOST}-linux_x86_64: uv ")
    # uv's own hint, which names the fix, is kept.
    assert f"hint: You require CPython {HOST}" in message
    assert "we only found wheels for `newpy` (v1.0)" in message


def test_unknown_resolver_and_pip_tools_for_another_python_are_refused(small_url: str) -> None:
    ri = ResolveInput(("alpha",), (), (small_url,))
    with pytest.raises(ResolveError, match="unknown resolver 'pdm'; use one of uv, pip-tools"):
        resolve(target(), ri, "pdm")
    with pytest.raises(ResolveError, match=rf"pass --python {HOST} or use the default uv"):
        resolve(target(OTHER), ri, "pip-tools")


def test_pip_tools_gives_the_same_pins_for_the_host_python(index: str, tmp_path: Path) -> None:
    spec = load_spec(write_spec(tmp_path, index))
    tgt = spec.targets[0]
    inputs = base_inputs(spec, tgt, list(checks.default_rules()))
    # The constraints uv's checks end with (here given up front, as a re-lock would).
    cons = (
        *inputs.constraint_lines(),
        "diffusers<0.36",
        "transformers<5",
        "xformers==0.0.28.post1",
    )
    ri = ResolveInput(tuple(inputs.requirements), cons, (index,))
    by_uv = resolve(tgt, ri, "uv")
    by_pt = resolve(tgt, ri, "pip-tools")
    assert by_pt.resolver.startswith("pip-tools ")
    assert by_uv.versions() == by_pt.versions()
    assert all(p.hashes for p in by_pt.pins)


def test_output_markers_are_evaluated_for_the_target() -> None:
    # A universal resolve keeps markers in its output; they are judged for the target.
    h = "sha256:" + "a" * 64
    text = (
        f"alpha==1.1 \\\n    --hash={h}\n"
        f"tomli==2.2.1 ; python_full_version < '3.11' \\\n    --hash={h}\n"
        "    # via gamma\n"
    )
    assert [p.name for p in parse_requirements_output(text, target("3.10"))] == ["alpha", "tomli"]
    assert [p.name for p in parse_requirements_output(text, target("3.12"))] == ["alpha"]
    with pytest.raises(ResolveError, match="is not an exact pin"):
        parse_requirements_output(f"alpha>=1 --hash={h}\n", target())
