"""`sdenv lock --check` (`sdenv.lock.freshness`): a lock made for real from the local index
(tests/pypi_index.py), then edited the ways a stale or tampered lock differs."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from helpers.specs import lock_options, write_spec
from sdenv import lock as core
from sdenv.cli import main
from sdenv.lock.lockfile import read_lockfile
from sdenv.lock.spec import load_spec

pytestmark = pytest.mark.usefixtures("private_cache")


def test_check_reports_fresh_then_stale(
    index: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = write_spec(tmp_path, index)
    locks = tmp_path / "locks"
    assert main(["lock", str(path), "--lock-dir", str(locks), "--no-verify"]) == 0
    assert main(["lock", str(path), "--lock-dir", str(locks), "--check"]) == 0
    path.write_text(path.read_text().replace('diffusers = ">=0.31"', 'diffusers = ">=0.33"'))
    capsys.readouterr()
    assert main(["lock", str(path), "--lock-dir", str(locks), "--check"]) == 1
    assert "made from another version of demo.toml" in capsys.readouterr().err


@pytest.fixture
def locked_env(index: str, tmp_path: Path) -> tuple[Path, Path, Path]:
    """An env locked for real (no proof: the checks here are about --check), and its lock."""
    (tmp_path / "envs").mkdir()
    spec = load_spec(write_spec(tmp_path / "envs", index))
    result = core.lock_target(spec, spec.targets[0], lock_options(tmp_path / "locks", verify=False))
    assert result.status == "written", result.message
    return tmp_path / "envs", tmp_path / "locks", result.path


def check(envs: Path, locks: Path, capsys: pytest.CaptureFixture[str]) -> tuple[int, str]:
    code = main(["lock", "demo", "--check", "--envs-dir", str(envs), "--lock-dir", str(locks)])
    captured = capsys.readouterr()
    return code, captured.out + captured.err


def test_check_fresh_lock_passes(
    locked_env: tuple[Path, Path, Path], capsys: pytest.CaptureFixture[str]
) -> None:
    code, text = check(*locked_env[:2], capsys)
    assert code == 0, text
    assert "fresh" in text


def test_check_catches_a_changed_wheel_hash(
    locked_env: tuple[Path, Path, Path], capsys: pytest.CaptureFixture[str]
) -> None:
    envs, locks, path = locked_env
    torch = read_lockfile(path).pin("torch")
    assert torch is not None
    # Edited in the lock and in its PEP 751 twin alike: only the index can tell.
    old_hex = torch.hashes[0].split(":", 1)[1]
    for twin in (path, *locks.glob("pylock.*.toml")):
        twin.write_text(twin.read_text().replace(old_hex, "0" * 64))
    code, out = check(envs, locks, capsys)
    assert code == 1
    assert f"torch=={torch.version} has 1 hash(es) the index does not serve" in out


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("platform", "linux_aarch64 (aarch64-manylinux_2_28)"),
        ("python", "3.10"),
        ("cuda", "cu124 (nvidia-cuda-runtime-cu12==12.4.127)"),
        ("compute-capabilities", "9.0"),
    ],
)
def test_check_compares_every_header_field(
    locked_env: tuple[Path, Path, Path],
    capsys: pytest.CaptureFixture[str],
    field: str,
    value: str,
) -> None:
    envs, locks, path = locked_env
    text = path.read_text()
    edited = re.sub(rf"^# {field}: .*$", f"# {field}: {value}", text, count=1, flags=re.M)
    assert edited != text
    path.write_text(edited)
    code, out = check(envs, locks, capsys)
    assert code == 1
    assert f"header {field} is {value!r}" in out


def test_check_cuda_detail_must_match_the_pins(
    locked_env: tuple[Path, Path, Path], capsys: pytest.CaptureFixture[str]
) -> None:
    envs, locks, path = locked_env
    detail = read_lockfile(path).get("cuda")
    assert detail is not None and detail.startswith("cu121 (")
    for twin in (path, *locks.glob("pylock.*.toml")):  # the lock and its PEP 751 twin alike
        twin.write_text(twin.read_text().replace(detail, "cu121 (other)"))
    code, out = check(envs, locks, capsys)
    assert code == 1
    assert "header cuda is 'cu121 (other)', the pins make" in out
