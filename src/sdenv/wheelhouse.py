"""``sdenv wheelhouse``: every wheel one lock target installs, in a directory, with the lock.

How an air-gapped GPU box gets an env: on a connected machine, ``sdenv wheelhouse ENV --out DIR``
downloads the one wheel per pin that the target (its Python and platform, not this machine's)
installs, with ``pip download --no-deps --only-binary :all: --require-hashes`` (pip checks each
file against the lock's sha256 as it downloads), then sdenv checks every file in DIR again against
the lock and copies the lock in. Carry DIR over; ``sdenv sync --wheelhouse DIR`` there installs it
with no index and no network at all.
"""

from __future__ import annotations

import hashlib
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from packaging.utils import InvalidWheelFilename, parse_wheel_filename

from sdenv import _cleanup
from sdenv._fs import write_atomic
from sdenv.errors import SdenvError, UsageError
from sdenv.lock.lockfile import Lockfile, render_lockfile
from sdenv.lock.pylock import read_any_lock
from sdenv.lock.spec import PLATFORMS, Target
from sdenv.lock.wheelmeta import platform_tags, wheel_fits
from sdenv.venv import index_args

Progress = Callable[[str], None]


class WheelhouseError(SdenvError):
    """The wheels could not be downloaded, or one does not match the lock."""


@dataclass(frozen=True)
class Wheel:
    name: str
    version: str
    filename: str
    sha256: str
    size: int


@dataclass(frozen=True)
class WheelhouseResult:
    out: Path
    lock: Path  # the copy inside ``out``
    python: str
    platform: str
    wheels: tuple[Wheel, ...]
    bytes: int
    seconds: float


def _target(lock: Lockfile, path: Path) -> Target:
    env, python = lock.get("env"), lock.get("python")
    plat = (lock.get("platform") or "").split(" ")[0]
    if not (env and python and plat in PLATFORMS):
        raise UsageError(
            f"{path}: no env/python/platform header of a known target; regenerate it with "
            "`sdenv lock`"
        )
    return Target(env, python, plat)


def _sha256(path: Path) -> str:
    h = hashlib.sha256()
    with path.open("rb") as fh:
        while chunk := fh.read(1 << 20):
            h.update(chunk)
    return h.hexdigest()


def _download(lock: Lockfile, target: Target, out: Path) -> None:
    python = target.python.replace(".", "")
    plats = [a for tag in platform_tags(target.uv_platform) for a in ("--platform", tag)]
    with _cleanup.throwaway_dir("sdenv-wheelhouse-") as tmp:
        req = tmp / "lock.txt"
        req.write_text(render_lockfile(lock), encoding="utf-8")
        cmd = [
            *(sys.executable, "-m", "pip", "download", "--quiet", "--disable-pip-version-check"),
            *("--no-deps", "--only-binary", ":all:", "--require-hashes", "--progress-bar", "off"),
            *("--python-version", target.python, "--implementation", "cp", "--abi", f"cp{python}"),
            *plats,
            *index_args(lock.get_all("index")),
            *("--dest", str(out), "-r", str(req)),
        ]
        proc = _cleanup.run(cmd, capture_output=True, text=True)
    if proc.returncode != 0:
        tail = (proc.stderr or proc.stdout).strip().splitlines()[-6:]
        raise WheelhouseError(f"pip download failed: {' | '.join(tail)}")


def check_wheelhouse(lock: Lockfile, target: Target, out: Path) -> tuple[Wheel, ...]:
    """One wheel per pin in ``out`` that fits the target and has one of the pin's hashes."""
    by_pin: dict[str, list[Path]] = {}
    for f in sorted(out.glob("*.whl")):
        try:
            name, version, _, _ = parse_wheel_filename(f.name)
        except InvalidWheelFilename:
            continue
        by_pin.setdefault(f"{name}=={version}", []).append(f)
    wheels: list[Wheel] = []
    for pin in lock.pins:
        candidates = [
            f
            for key, files in by_pin.items()
            if key.split("==")[0] == pin.name and _same_version(key.split("==")[1], pin.version)
            for f in files
            if wheel_fits(f.name, target.python, target.uv_platform)
        ]
        if not candidates:
            raise WheelhouseError(
                f"{out}: no wheel of {pin.name}=={pin.version} for {target.slug}; "
                "run `sdenv wheelhouse` again"
            )
        for f in candidates:
            digest = _sha256(f)
            if f"sha256:{digest}" not in pin.hashes:
                raise WheelhouseError(
                    f"{f}: sha256 {digest} is not one the lock pins for {pin.name}=={pin.version}; "
                    "delete it and run `sdenv wheelhouse` again"
                )
            wheels.append(Wheel(pin.name, pin.version, f.name, digest, f.stat().st_size))
    return tuple(wheels)


def _same_version(a: str, b: str) -> bool:
    from packaging.version import Version

    return Version(a) == Version(b)


def make_wheelhouse(
    lock_path: Path,
    out: Path,
    *,
    python: str | None = None,
    progress: Progress = lambda msg: None,
) -> WheelhouseResult:
    t0 = time.perf_counter()
    lock = read_any_lock(lock_path)
    target = _target(lock, lock_path)
    if python and python != target.python:
        raise UsageError(
            f"{lock_path}: locked for Python {target.python}, not {python}; "
            f"pass its lock for {python}"
        )
    if out.exists() and not out.is_dir():
        raise UsageError(f"{out}: exists and is not a directory; pass another --out")
    out.mkdir(parents=True, exist_ok=True)
    progress(f"downloading {len(lock.pins)} wheels for {target.slug} into {out}")
    _download(lock, target, out)
    progress(f"checking every wheel in {out} against {lock_path}")
    wheels = check_wheelhouse(lock, target, out)
    copy = out / f"{target.slug}.txt"
    write_atomic(copy, render_lockfile(lock))
    return WheelhouseResult(
        out,
        copy,
        target.python,
        target.platform,
        wheels,
        sum(w.size for w in wheels),
        time.perf_counter() - t0,
    )
