"""`sdenv.lock.wheelmeta`: what a wheel says about itself, read from the local PEP 503 index
(tests/pypi_index.py) by listing pages and HTTP range requests, never a whole download."""

from __future__ import annotations

import hashlib
from pathlib import Path

import pytest

from pypi_index import ARCHS_CU121, Dist, build_wheel, serve, simple_dist, xformers_dist
from sdenv.lock import wheelmeta
from sdenv.lock.checks import CppLib
from sdenv.lock.wheelmeta import WheelMetaError

X86 = "x86_64-manylinux_2_28"


def test_wheel_tags_for_a_target() -> None:
    whl = "xformers-0.0.28.post1-cp311-cp311-manylinux_2_28_x86_64.whl"
    assert wheelmeta.wheel_fits(whl, "3.11", "x86_64-manylinux_2_28")
    assert not wheelmeta.wheel_fits(whl, "3.10", "x86_64-manylinux_2_28")
    assert not wheelmeta.wheel_fits(whl, "3.11", "aarch64-manylinux_2_28")
    abi3 = "xformers-0.0.33.post2-cp39-abi3-manylinux_2_28_x86_64.whl"
    assert wheelmeta.wheel_fits(abi3, "3.12", "x86_64-manylinux_2_28")
    legacy = "numpy-1.26.4-cp310-cp310-manylinux2014_x86_64.whl"
    assert wheelmeta.wheel_fits(legacy, "3.10", "x86_64-manylinux_2_28")
    assert not wheelmeta.wheel_fits(
        "torch-2.4.1-cp311-cp311-win_amd64.whl", "3.11", "x86_64-manylinux_2_28"
    )


@pytest.mark.usefixtures("private_cache")
def test_read_member_by_range_requests_then_from_cache(tmp_path: Path) -> None:
    # A big incompressible member first, so a whole-file GET would be easy to tell apart.
    big = Dist("pad", "1.0", files={"pad/blob.txt": "".join(f"{i:x}" for i in range(400_000))})
    root = tmp_path / "wheels"
    build_wheel(big, root)
    xf = xformers_dist("0.0.28.post1", "==2.4.1", "2.4.1+cu121", 1201, ARCHS_CU121)
    build_wheel(xf, root)
    log: list[tuple[str, str, str | None]] = []
    with serve(root, log) as url:
        wheel = wheelmeta.find_wheel(
            [url], "xformers", "0.0.28.post1", "3.11", "x86_64-manylinux_2_28"
        )
        assert wheel is not None and wheel.sha256
        raw = wheelmeta.read_member(wheel, "xformers/cpp_lib.json")
        assert raw is not None and CppLib.parse(raw).torch == "2.4.1+cu121"
        assert wheelmeta.read_member(wheel, "xformers/nope.json") is None
        padw = wheelmeta.find_wheel([url], "pad", "1.0", "3.11", "x86_64-manylinux_2_28")
        assert padw is not None
        assert wheelmeta.read_member(padw, "pad-1.0.dist-info/WHEEL") is not None
    file_gets = [(path, rng) for method, path, rng in log if method == "GET" and "/files/" in path]
    assert file_gets and all(rng for _, rng in file_gets), file_gets  # never a whole wheel
    # The server is gone: the same sha256 is answered from the cache.
    assert wheelmeta.read_member(wheel, "xformers/cpp_lib.json") == raw
    assert (
        wheelmeta.find_wheel([url], "xformers", "0.0.28.post1", "3.11", "x86_64-manylinux_2_28")
        is None
    )


def test_platform_tags_best_first_down_to_plain_linux() -> None:
    tags = wheelmeta.platform_tags(X86)
    assert tags[0] == "manylinux_2_28_x86_64" and tags[-1] == "linux_x86_64"
    assert "manylinux_2_5_x86_64" in tags and "manylinux2014_x86_64" in tags
    assert not [t for t in tags if "_2_29_" in t or "aarch64" in t]
    # A legacy alias only where its glibc fits: 2014 = 2.17, 2010 = 2.12, 1 = 2.5.
    old = wheelmeta.platform_tags("x86_64-manylinux_2_12")
    assert {"manylinux2010_x86_64", "manylinux1_x86_64"} <= set(old)
    assert "manylinux2014_x86_64" not in old and "manylinux_2_17_x86_64" not in old


@pytest.fixture
def two_pythons(tmp_path: Path) -> Path:
    """One release with a wheel per Python (cp310, cp311) and a newer pure-Python release."""
    root = tmp_path / "wheels"
    for tag in ("cp310-cp310-manylinux_2_28_x86_64", "cp311-cp311-manylinux_2_28_x86_64"):
        build_wheel(Dist("native", "1.0", (), {"native/__init__.py": tag}, tag), root)
    build_wheel(simple_dist("native", "1.1"), root)
    return root


def test_list_files_reads_names_versions_and_hashes_from_the_page(two_pythons: Path) -> None:
    with serve(two_pythons) as url:
        files = wheelmeta.list_files(url, "Native")  # names are canonicalised
    assert sorted(f.filename for f in files) == sorted(p.name for p in two_pythons.iterdir())
    for f in files:
        served = hashlib.sha256((two_pythons / f.filename).read_bytes()).hexdigest()
        assert f.is_wheel and f.sha256 == served and f.url.endswith(f"/files/{f.filename}")
    assert {str(f.version) for f in files} == {"1.0", "1.1"}


def test_an_unreachable_index_is_empty_unless_strict(two_pythons: Path) -> None:
    with serve(two_pythons) as url:
        pass  # the server is gone
    assert wheelmeta.list_files(url, "native") == []
    with pytest.raises(WheelMetaError, match="cannot read the index page"):
        wheelmeta.list_files(url, "native", strict=True)


def test_find_wheel_picks_the_targets_wheel_and_honours_the_pinned_hashes(
    two_pythons: Path,
) -> None:
    with serve(two_pythons) as url:
        for py in ("3.10", "3.11"):
            found = wheelmeta.find_wheel([url], "native", "1.0", py, X86)
            assert found is not None and f"cp{py.replace('.', '')}" in found.filename
            pinned = wheelmeta.find_wheel(
                [url], "native", "1.0", py, X86, [f"sha256:{found.sha256}"]
            )
            assert pinned == found
        assert wheelmeta.find_wheel([url], "native", "1.0", "3.12", X86) is None
        assert (
            wheelmeta.find_wheel([url], "native", "1.0", "3.11", X86, ["sha256:" + "0" * 64])
            is None
        )
        pure = wheelmeta.find_wheel([url], "native", "1.1", "3.12", "aarch64-manylinux_2_28")
        assert pure is not None and pure.filename.endswith("py3-none-any.whl")


@pytest.mark.usefixtures("private_cache")
def test_cached_member_answers_for_any_hash_of_the_release_found_or_missing(
    two_pythons: Path,
) -> None:
    with serve(two_pythons) as url:
        wheel = wheelmeta.find_wheel([url], "native", "1.0", "3.11", X86)
        assert wheel is not None and wheel.sha256
        other = "sha256:" + "f" * 64
        assert wheelmeta.cached_member([other, wheel.sha256], "native/__init__.py") == (False, None)
        data = wheelmeta.read_member(wheel, "native/__init__.py")
        assert wheelmeta.read_member(wheel, "native/absent.py") is None
    assert data == b"cp311-cp311-manylinux_2_28_x86_64"
    assert wheelmeta.cached_member([other, wheel.sha256], "native/__init__.py") == (True, data)
    # A member the wheel lacks is remembered as lacking: no second range read.
    assert wheelmeta.cached_member([wheel.sha256], "native/absent.py") == (True, None)


def test_a_file_that_is_not_a_wheel_is_a_one_line_error(tmp_path: Path) -> None:
    bogus = tmp_path / "bogus-1.0-py3-none-any.whl"
    bogus.write_bytes(b"not a zip")
    wheel = wheelmeta.IndexFile(bogus.name, bogus.as_uri(), None)
    with pytest.raises(WheelMetaError, match="not a readable wheel"):
        wheelmeta.read_member(wheel, "bogus/__init__.py")
