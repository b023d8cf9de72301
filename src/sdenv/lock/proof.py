"""The import proof: install a lock into a throwaway venv and run ``sdenv smoke`` there.

A target whose Python or platform does not exist on this machine is not proven, and says so
(``unverified``); an install or smoke failure names the failing checks and their culprits, which
``--search`` (:mod:`sdenv.lock.search`) bisects.
"""

from __future__ import annotations

import platform
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from packaging.utils import canonicalize_name

from sdenv.errors import SdenvError
from sdenv.lock.lockfile import Lockfile, render_lockfile
from sdenv.lock.options import LockOptions
from sdenv.lock.spec import EnvSpec, Target
from sdenv.venv import find_python, install_lock, run_uv


@dataclass(frozen=True)
class ProofFailure:
    check: str
    detail: str
    culprits: tuple[str, ...]
    hint: str = ""
    kind: str = ""  # the smoke's failure kind: too-new-for-torch, backend-disabled, ...


@dataclass(frozen=True)
class Proof:
    status: str  # "passed", "failed", "unverified"
    detail: str
    failures: tuple[ProofFailure, ...] = ()

    @property
    def ok(self) -> bool:
        return self.status != "failed"


def smoke_prover(python: Path, checks: Sequence[str] | None = None) -> Proof:
    """The ``sdenv smoke`` checks (all, or the named ones), run in the venv of ``python``."""
    from sdenv.smoke import run_smoke

    report = run_smoke(python, gpu=None, checks=checks)
    done = [c for c in report.checks if c.status != "skip"]
    if report.ok:
        return Proof(
            "passed", f"smoke {len(done)} checks passed, {len(report.checks) - len(done)} skipped"
        )
    failures = []
    for c in report.checks:
        if c.status != "fail":
            continue
        f = getattr(c, "failure", None)
        culprits = tuple(canonicalize_name(n) for n in (getattr(f, "culprits", None) or ()))
        failures.append(
            ProofFailure(
                c.name,
                str(c.detail),
                culprits,
                str(getattr(f, "hint", "") or ""),
                str(getattr(f, "kind", "") or ""),
            )
        )
    names = ", ".join(f.check for f in failures)
    return Proof("failed", f"smoke failed: {names}", tuple(failures))


def prove(
    spec: EnvSpec,
    target: Target,
    lock: Lockfile,
    opts: LockOptions,
    workdir: Path,
    only: Sequence[str] | None = None,
) -> Proof:
    arch = target.uv_platform.split("-", 1)[0]
    if not sys.platform.startswith("linux") or platform.machine() != arch:
        return Proof("unverified", f"this machine is not {target.platform}")
    python = find_python(target.python)
    if python is None:
        return Proof("unverified", f"no Python {target.python} on this machine")
    workdir.mkdir(parents=True, exist_ok=True)
    req = workdir / "lock.txt"
    req.write_text(render_lockfile(lock))
    venv = workdir / "venv"
    opts.progress(f"{target.slug}: installing the lock into a throwaway venv")
    try:
        # No --seed (pip/setuptools): the proof needs exactly what the lock pins.
        run_uv(["venv", "--quiet", "--python", str(python), str(venv)])
        vpy = venv / "bin" / "python"
        install_lock(vpy, req, index_urls=[i.url for i in spec.indexes])
    except SdenvError as exc:
        return Proof("failed", f"install failed: {exc}", (ProofFailure("install", str(exc), ()),))
    opts.progress(f"{target.slug}: running the smoke checks in it")
    return smoke_prover(vpy, only or opts.smoke_checks)
