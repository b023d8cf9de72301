"""Resolve a target's requirements to exact pins with hashes: uv (default) or pip-tools.

Both backends take the same inputs and return the same :class:`Resolution`, so everything after
resolving (checks, import proof, the lockfile) does not care which one ran. uv resolves FOR the
target (``--python-version``/``--python-platform``), not the host; pip-compile can only resolve for
the interpreter that runs it, so ``--resolver pip-tools`` is for the host Python.
"""

from __future__ import annotations

import os
import re
import shutil
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

from packaging.markers import Marker
from packaging.requirements import InvalidRequirement, Requirement
from packaging.utils import canonicalize_name

from sdenv import _cleanup
from sdenv._cleanup import throwaway_dir
from sdenv.errors import SdenvError
from sdenv.lock.lockfile import Pin
from sdenv.lock.spec import Target
from sdenv.venv import index_args, uv_bin, uv_env

RESOLVERS = ("uv", "pip-tools")
_HASH_RE = re.compile(r"--hash[= ](sha256:[0-9a-f]{64})")


class ResolveError(SdenvError):
    """No set of versions satisfies the inputs, or the resolver could not run."""


@dataclass(frozen=True)
class ResolveInput:
    requirements: tuple[str, ...]
    constraints: tuple[str, ...]
    index_urls: tuple[str, ...]
    # Pins of the lock being replaced: kept where still valid unless upgraded (both resolvers read
    # their output file as preferences, like `pip-compile` always did).
    preferences: tuple[Pin, ...] = ()
    upgrade: bool = False
    upgrade_packages: tuple[str, ...] = ()


@dataclass(frozen=True)
class Resolution:
    target: Target
    resolver: str  # "uv 0.13.8"
    pins: tuple[Pin, ...]
    seconds: float
    command: tuple[str, ...] = field(default=(), compare=False)

    def versions(self) -> dict[str, str]:
        return {p.name: p.version for p in self.pins}

    def pin(self, name: str) -> Pin | None:
        wanted = canonicalize_name(name)
        return next((p for p in self.pins if p.name == wanted), None)


def uv_version() -> str:
    from importlib.metadata import version

    return version("uv")


def piptools_version() -> str:
    from importlib.metadata import version

    return version("pip-tools")


def target_environment(target: Target) -> dict[str, str]:
    """PEP 508 marker values of a Linux CPython target, for markers the resolvers leave in."""
    arch = target.uv_platform.split("-", 1)[0]
    return {
        "python_version": target.python,
        "python_full_version": f"{target.python}.0",
        "implementation_name": "cpython",
        "platform_python_implementation": "CPython",
        "sys_platform": "linux",
        "platform_system": "Linux",
        "os_name": "posix",
        "platform_machine": arch,
        "platform_release": "",
        "platform_version": "",
        "implementation_version": f"{target.python}.0",
    }


def parse_requirements_output(text: str, target: Target) -> list[Pin]:
    """Pins of a hashed requirements.txt (uv's or pip-compile's), markers evaluated for target."""
    pins: list[Pin] = []
    env = target_environment(target)
    logical = re.sub(r"\\\n", " ", text)
    for raw in logical.splitlines():
        line = raw.split(" #", 1)[0].strip()
        if not line or line.startswith(("#", "-")):
            continue
        hashes = tuple(_HASH_RE.findall(line))
        spec = _HASH_RE.sub("", line).strip()
        try:
            req = Requirement(spec)
        except InvalidRequirement as exc:
            raise ResolveError(f"unexpected resolver output line {raw!r}: {exc}") from exc
        if req.marker is not None and not Marker(str(req.marker)).evaluate(env):
            continue
        specs = list(req.specifier)
        if len(specs) != 1 or specs[0].operator != "==":
            raise ResolveError(f"resolver output {raw!r} is not an exact pin")
        pins.append(Pin(canonicalize_name(req.name), specs[0].version, tuple(sorted(hashes))))
    return pins


def _preference_text(pins: Sequence[Pin]) -> str:
    return "".join(f"{p.name}=={p.version}\n" for p in pins)


def resolve(target: Target, inputs: ResolveInput, resolver: str = "uv") -> Resolution:
    if resolver not in RESOLVERS:
        raise ResolveError(f"unknown resolver {resolver!r}; use one of {', '.join(RESOLVERS)}")
    with throwaway_dir("sdenv-resolve-") as work:
        req_in = work / "requirements.in"
        cons = work / "constraints.txt"
        out = work / "requirements.txt"
        req_in.write_text("".join(f"{r}\n" for r in inputs.requirements))
        cons.write_text("".join(f"{c}\n" for c in inputs.constraints))
        if inputs.preferences and not inputs.upgrade:
            out.write_text(_preference_text(inputs.preferences))
        if resolver == "uv":
            cmd, env, label = _uv_command(target, inputs, req_in, cons, out)
        else:
            cmd, env, label = _piptools_command(target, inputs, req_in, cons, out)
        start = time.perf_counter()
        proc = _cleanup.run(cmd, capture_output=True, text=True, env=env, cwd=work)
        seconds = time.perf_counter() - start
        if proc.returncode != 0:
            raise ResolveError(_failure_message(target, label, proc.stderr or proc.stdout))
        pins = parse_requirements_output(out.read_text(), target)
    return Resolution(target, label, tuple(sorted(pins, key=lambda p: p.name)), seconds, tuple(cmd))


def _upgrade_args(inputs: ResolveInput) -> list[str]:
    args = ["--upgrade"] if inputs.upgrade else []
    for name in inputs.upgrade_packages:
        args += ["--upgrade-package", name]
    return args


def _uv_command(
    target: Target, inputs: ResolveInput, req_in: Path, cons: Path, out: Path
) -> tuple[list[str], dict[str, str], str]:
    cmd = [
        uv_bin(),
        "pip",
        "compile",
        str(req_in),
        "--constraint",
        str(cons),
        "--output-file",
        str(out),
        "--python-version",
        target.python,
        "--python-platform",
        target.uv_platform,
        "--generate-hashes",
        # The lock installs with --only-binary :all:, so resolve to versions that have wheels.
        "--only-binary",
        ":all:",
        "--no-header",
        "--no-annotate",
        "--quiet",
        *index_args(inputs.index_urls),
        *_upgrade_args(inputs),
    ]
    return cmd, uv_env(), f"uv {uv_version()}"


def _piptools_command(
    target: Target, inputs: ResolveInput, req_in: Path, cons: Path, out: Path
) -> tuple[list[str], dict[str, str], str]:
    host = f"{sys.version_info[0]}.{sys.version_info[1]}"
    if target.python != host:
        raise ResolveError(
            f"{target.slug}: pip-tools resolves only for the Python running it ({host}); "
            f"pass --python {host} or use the default uv resolver for Python {target.python}"
        )
    # pip-compile reads constraints only from inside the .in file.
    req_in.write_text(req_in.read_text() + f"-c {cons.name}\n")
    piptools = shutil.which("pip-compile", path=str(Path(sys.executable).parent)) or "pip-compile"
    cmd = [
        piptools,
        str(req_in.name),
        "--output-file",
        str(out.name),
        "--generate-hashes",
        "--allow-unsafe",
        "--strip-extras",
        "--no-header",
        "--no-annotate",
        "--quiet",
        "--pip-args",
        "--only-binary :all: --isolated",
        *index_args(inputs.index_urls),
        *_upgrade_args(inputs),
    ]
    env = dict(os.environ)
    env["PIP_CONFIG_FILE"] = os.devnull  # no find-links/extra indexes from the user's pip config
    return cmd, env, f"pip-tools {piptools_version()}"


def _failure_message(target: Target, label: str, output: str) -> str:
    # The resolver's own words, whole: its "Because ..." lines name the packages and its hints
    # name the fix ("You require CPython 3.99"). Joined on one line, nothing dropped.
    lines = [ln.strip() for ln in output.strip().splitlines() if ln.strip()]
    return f"{target.slug}: {label} found no solution: " + " | ".join(lines)
