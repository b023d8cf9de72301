"""`sdenv wheelhouse` and `sdenv sync --wheelhouse` in a network namespace with no network."""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from sdenv.lock.lockfile import read_lockfile
from sdenv.lock.spec import Target
from sdenv.wheelhouse import WheelhouseError, check_wheelhouse

SRC = str(Path(__file__).resolve().parents[1] / "src")
NO_NETNS = subprocess.run(["unshare", "-n", "true"], capture_output=True).returncode != 0


@pytest.fixture(scope="module")
def house(locked: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("house") / "wh"
    proc = sdenv("wheelhouse", "--lock", str(locked), "--out", str(out), "--json")
    assert proc.returncode == 0, proc.stderr
    return out


def sdenv(*args: str, prefix: tuple[str, ...] = (), **env: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [*prefix, sys.executable, "-m", "sdenv", *args],
        capture_output=True,
        text=True,
        env={**os.environ, "PYTHONPATH": SRC, **env},
        timeout=300,
    )


def test_one_wheel_per_pin_each_with_a_locked_hash_and_the_lock(locked: Path, house: Path) -> None:
    lock = read_lockfile(locked)
    wheels = sorted(house.glob("*.whl"))
    assert len(wheels) == len(lock.pins)
    for w in wheels:
        name = w.name.split("-")[0].replace("_", "-")
        digest = hashlib.sha256(w.read_bytes()).hexdigest()
        assert f"sha256:{digest}" in lock.pin(name).hashes  # type: ignore[union-attr]
    assert (house / locked.name).read_text() == locked.read_text()


@pytest.mark.skipif(NO_NETNS, reason="unshare -n (a network namespace) is not permitted here")
def test_sync_from_the_wheelhouse_with_no_network(
    locked: Path, house: Path, tmp_path: Path
) -> None:
    venv = tmp_path / "env"
    # A fresh uv cache: every wheel must come from the wheelhouse, none from an earlier download.
    proc = sdenv(
        "sync", "--wheelhouse", str(house), "--venv", str(venv), "--json",
        prefix=("unshare", "-n"), UV_CACHE_DIR=str(tmp_path / "uv-cache"),
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    result = json.loads(proc.stdout)
    assert result["status"] == "created" and result["drift"]["missing"] == []
    assert result["source"] == f"wheelhouse {house}"
    assert result["lock"] == str(house / locked.name)
    out = subprocess.run(
        [str(venv / "bin" / "python"), "-c", "import torch, xformers; print(torch.__version__)"],
        capture_output=True,
        text=True,
    )
    assert out.stdout.strip() == read_lockfile(locked).versions()["torch"]


@pytest.mark.skipif(NO_NETNS, reason="unshare -n (a network namespace) is not permitted here")
def test_offline_sync_with_a_wheel_missing_fails_and_makes_nothing(
    house: Path, tmp_path: Path
) -> None:
    partial = tmp_path / "partial"
    shutil.copytree(house, partial)
    next(partial.glob("diffusers-*.whl")).unlink()
    venv = tmp_path / "env"
    proc = sdenv(
        "sync", "--wheelhouse", str(partial), "--venv", str(venv),
        prefix=("unshare", "-n"), UV_CACHE_DIR=str(tmp_path / "uv-cache"),
    )  # fmt: skip
    assert proc.returncode == 1
    assert "diffusers" in proc.stderr and f"no venv was made at {venv}" in proc.stderr
    assert sorted(p.name for p in tmp_path.iterdir()) == [".env.lock", "partial", "uv-cache"]


def test_a_tampered_wheel_is_named_and_a_rerun_repairs_it(
    locked: Path, house: Path, tmp_path: Path
) -> None:
    copy = tmp_path / "wh"
    shutil.copytree(house, copy)
    wheel = next(copy.glob("rich-*.whl"))
    good = wheel.read_bytes()
    wheel.write_bytes(good + b"\0")
    lock = read_lockfile(locked)
    target = Target(lock.get("env") or "", lock.get("python") or "", "linux_x86_64")
    with pytest.raises(WheelhouseError, match=f"{wheel}: sha256 [0-9a-f]{{64}} is not one"):
        check_wheelhouse(lock, target, copy)
    # pip sees the bad hash of the file already there and downloads it again.
    proc = sdenv("wheelhouse", "--lock", str(locked), "--out", str(copy))
    assert proc.returncode == 0, proc.stderr
    assert wheel.read_bytes() == good


def test_bad_input_is_exit_2(locked: Path, tmp_path: Path) -> None:
    (tmp_path / "file").write_text("x")
    proc = sdenv("wheelhouse", "--lock", str(locked), "--out", str(tmp_path / "file"))
    assert proc.returncode == 2
    assert proc.stderr.strip() == (
        f"sdenv: error: {tmp_path / 'file'}: exists and is not a directory; pass another --out"
    )
    proc = sdenv("wheelhouse", "--lock", str(locked), "--python", "3.6", "--out", "x")
    assert proc.returncode == 2 and "locked for Python" in proc.stderr
