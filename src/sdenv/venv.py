"""Throwaway virtual environments for import proofs and tests, made with uv (cache-backed).

uv hardlinks from its cache, so a second venv of the same 5 GB torch set costs seconds.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path

from sdenv import _cleanup
from sdenv.errors import SdenvError


class VenvError(SdenvError):
    """A venv could not be created or installed into."""


def uv_bin() -> str:
    from uv import find_uv_bin  # the pinned uv wheel is a dependency of sdenv

    return str(find_uv_bin())


def uv_env(extra: Mapping[str, str] | None = None) -> dict[str, str]:
    env = dict(os.environ)
    # No managed-Python downloads (GitHub is not reachable everywhere) and no stray config.
    env.setdefault("UV_PYTHON_DOWNLOADS", "never")
    env.setdefault("UV_NO_CONFIG", "1")
    if "SSL_CERT_FILE" in env:
        env.setdefault("UV_NATIVE_TLS", "1")
    env.update(extra or {})
    return env


def _python_version(exe: Path) -> str | None:
    try:
        proc = _cleanup.run(
            [str(exe), "-c", "import sys; print('%d.%d' % sys.version_info[:2])"],
            capture_output=True,
            text=True,
            timeout=20,
        )
    except (OSError, subprocess.TimeoutExpired):
        return None
    return proc.stdout.strip() if proc.returncode == 0 else None


def _candidates(version: str) -> Iterable[Path]:
    found = shutil.which(f"python{version}")
    if found:
        yield Path(found)
    # pyenv shims refuse versions that are not selected; its real interpreters are fine.
    pyenv_root = Path(os.environ.get("PYENV_ROOT", Path.home() / ".pyenv"))
    yield from sorted(pyenv_root.glob(f"versions/{version}.*/bin/python{version}"), reverse=True)
    for prefix in ("/usr/local/bin", "/usr/bin"):
        yield Path(prefix) / f"python{version}"


def find_python(version: str) -> Path | None:
    """An interpreter of ``version`` (``"3.11"``) on this machine that really runs, or None."""
    for exe in _candidates(version):
        if exe.exists() and _python_version(exe) == version:
            return exe
    return None


def run_uv(args: Sequence[str], *, env: Mapping[str, str] | None = None) -> str:
    proc = _cleanup.run([uv_bin(), *args], capture_output=True, text=True, env=uv_env(env))
    if proc.returncode != 0:
        tail = (proc.stderr or proc.stdout).strip().splitlines()[-12:]
        raise VenvError(
            f"uv {args[0]} {args[1] if len(args) > 1 else ''} failed: " + " | ".join(tail)
        )
    return str(proc.stdout)


def create_venv(dest: Path, python: str | Path) -> Path:
    """Make a venv at ``dest`` (replacing any) for ``python`` (a version or an interpreter path)."""
    exe = Path(python) if os.sep in str(python) else find_python(str(python))
    if exe is None:
        raise VenvError(f"no Python {python} on this machine; install it or drop it from the env")
    if dest.exists():
        shutil.rmtree(dest)
    run_uv(["venv", "--quiet", "--seed", "--python", str(exe), str(dest)])
    return dest / "bin" / "python"


def install(
    python: Path,
    args: Sequence[str],
    *,
    index_urls: Sequence[str] = (),
    env: Mapping[str, str] | None = None,
) -> None:
    """``uv pip install`` into the venv of ``python``; first index is the default, others extra."""
    run_uv(
        ["pip", "install", "--quiet", "--python", str(python), *index_args(index_urls), *args],
        env=env,
    )


def index_args(index_urls: Sequence[str]) -> list[str]:
    """pip/uv options for these indexes: the first is the default index, the others extra."""
    out: list[str] = []
    for i, url in enumerate(index_urls):
        out += ["--index-url" if i == 0 else "--extra-index-url", url]
    return out


def install_lock(
    python: Path,
    lockfile: Path,
    *,
    index_urls: Sequence[str] = (),
    env: Mapping[str, str] | None = None,
) -> None:
    """Install exactly what a lock pins, hashes enforced, no resolution."""
    install(
        python,
        ["--require-hashes", "--no-deps", "--only-binary", ":all:", "-r", str(lockfile)],
        index_urls=index_urls,
        env=env,
    )


def sync_lock(
    python: Path,
    lockfile: Path,
    *,
    index_urls: Sequence[str] = (),
    find_links: Path | None = None,
) -> None:
    """Make the venv of ``python`` exactly ``lockfile``: hashes enforced, nothing resolved, every
    package the lock does not pin removed (``uv pip sync``). With ``find_links`` no index and no
    network at all: every wheel comes from that directory."""
    source = index_args(index_urls)
    if find_links is not None:
        source = ["--offline", "--no-index", "--find-links", str(find_links)]
    run_uv(
        [
            *("pip", "sync", "--quiet", "--python", str(python), *source),
            *("--require-hashes", "--only-binary", ":all:", str(lockfile)),
            # Bytecode now, as pip does: uv does not by default, and where the box or image sets
            # PYTHONDONTWRITEBYTECODE every start compiles torch, transformers and diffusers
            # again (an H200 box: 14-16 s to import diffusers' SD3 pipeline; see
            # docs/evidence.md#E-bytecode).
            "--compile-bytecode",
        ]
    )
