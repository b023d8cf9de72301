"""What one fleet task does on its node: probe, choose the env, optionally sync it, verify it.

Runs inside a Ray worker on the node, so it needs only the standard library and an installed
sdenv (the same version as the host's: the payload carries a schema number). Every step is the
node's own ``sdenv`` command line in a subprocess, for three reasons: a step that hangs (a hung
driver, an import blocked on a dead mount) is killed with its whole process group at the deadline;
a crash in one step cannot take the Ray worker with it; and ``sdenv sync``, written separately, is
used exactly as a person would use it, or reported as missing when this sdenv has no such command.

The host ships env specs and lockfiles as text (nodes need not share a file system with it); they
are written to a temporary directory that is removed whatever happens.
"""

from __future__ import annotations

import contextlib
import importlib.util
import json
import os
import platform
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from sdenv import __version__
from sdenv.fleet.rows import PAYLOAD_SCHEMA, choose_env

# Set where `ray start` runs on a node: the deployment venv that node serves (its bin/python is
# verified, and synced with --sync). Without it and without --venv, the Ray worker's own Python.
VENV_VAR = "SDENV_FLEET_VENV"


@dataclass(frozen=True)
class NodeJob:
    """Everything a node needs, sent by value: the host's files travel as text."""

    env: str | None  # an env name, "auto" (the probe's pick on each node), or None (a lock/no lock)
    timeout: float  # seconds for the whole node task; each step gets what is left
    lock_name: str | None = None  # --lock FILE: its name and text
    lock_text: str | None = None
    no_lock: bool = False
    specs: Mapping[str, str] = field(default_factory=dict)  # env name -> spec TOML text
    locks: Mapping[str, str] = field(default_factory=dict)  # lockfile name -> text
    venv: str | None = None  # the deployment venv on every node (else VENV_VAR, else this Python)
    sync: bool = False


@dataclass
class Step:
    code: int | None  # None: did not finish (timed out or could not start)
    out: str
    err: str
    seconds: float

    def error(self) -> str:
        lines = [ln for ln in self.err.strip().splitlines() if ln.strip()]
        return lines[-1] if lines else f"exit {self.code}"


def run_sdenv(args: Sequence[str], deadline: float, cwd: Path) -> Step:
    """``sdenv ARGS`` in its own process group; at the deadline the whole group is killed."""
    t0 = time.monotonic()
    remaining = deadline - t0
    if remaining <= 0:
        return Step(None, "", "no time left before the node deadline", 0.0)
    try:
        proc = subprocess.Popen(
            [sys.executable, "-m", "sdenv", *args],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            cwd=cwd,  # the worker's environment as is: it found sdenv, so will this process
            start_new_session=True,
        )
    except OSError as exc:
        return Step(None, "", f"cannot start sdenv: {exc}", 0.0)
    try:
        out, err = proc.communicate(timeout=remaining)
    except subprocess.TimeoutExpired:
        _kill_group(proc)
        out, err = proc.communicate()
        took = time.monotonic() - t0
        return Step(None, out, f"`sdenv {args[0]}` timed out after {took:.0f} s", took)
    except BaseException:  # cancelled by Ray (KeyboardInterrupt) or anything else: no orphans
        _kill_group(proc)
        proc.wait()
        raise
    return Step(proc.returncode, out, err, time.monotonic() - t0)


def _descendants(pid: int) -> list[int]:
    """Every process below ``pid`` (Linux /proc): smoke runs its checks in sessions of their own,
    which a kill of the step's process group would miss and leave running."""
    children: dict[int, list[int]] = {}
    for stat in Path("/proc").glob("[0-9]*/stat"):
        with contextlib.suppress(OSError, ValueError, IndexError):
            fields = stat.read_text().rsplit(")", 1)[1].split()
            children.setdefault(int(fields[1]), []).append(int(stat.parent.name))
    found, todo = [], [pid]
    while todo:
        for child in children.get(todo.pop(), []):
            found.append(child)
            todo.append(child)
    return found


def _kill_group(proc: subprocess.Popen[str]) -> None:
    below = _descendants(proc.pid)  # before the kill: orphans are re-parented and lost to view
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(proc.pid, signal.SIGKILL)
    for pid in below:
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.kill(pid, signal.SIGKILL)


def _json(step: Step) -> dict[str, Any] | None:
    try:
        data = json.loads(step.out)
    except ValueError:
        return None
    return data if isinstance(data, dict) else None


def _python_xy(python: Path, deadline: float) -> str | None:
    from sdenv.venv import _python_version

    return _python_version(python) if deadline > time.monotonic() else None


def _lock_for(
    job: NodeJob, env: str | None, python: Path, tmp: Path, deadline: float
) -> tuple[Path | None, str | None]:
    """The lock this node verifies against, or why there is none that fits."""
    if job.no_lock:
        return None, None
    if job.lock_text is not None:
        path = tmp / (job.lock_name or "lock.txt")
        path.write_text(job.lock_text)
        return path, None
    from sdenv.lock.spec import Target

    xy = _python_xy(python, deadline)
    if xy is None:
        return None, f"{python}: cannot run this interpreter; check --venv / ${VENV_VAR}"
    plat = f"{sys.platform}_{platform.machine()}"
    name = Target(str(env), xy, plat).lockfile(Path("lockfiles")).name
    if name not in job.locks:
        return None, (
            f"no lock {name} for env {env} on Python {xy} ({plat}) on the host; "
            f"make it with `sdenv lock {env}`"
        )
    path = tmp / name
    path.write_text(job.locks[name])
    return path, None


def _sync(lock: Path | None, venv: str | None, deadline: float, tmp: Path) -> dict[str, Any]:
    if importlib.util.find_spec("sdenv.cli.sync") is None:
        return {"status": "skip", "reason": f"sdenv {__version__} on this node has no `sdenv sync`"}
    if venv is None:
        return {"status": "skip", "reason": f"no venv to sync: pass --venv or set ${VENV_VAR}"}
    if lock is None:
        return {"status": "skip", "reason": "no lock to sync to (--no-lock)"}
    step = run_sdenv(["sync", "--lock", str(lock), "--venv", venv, "--json"], deadline, tmp)
    result = {"seconds": round(step.seconds, 3), "json": _json(step)}
    if step.code == 0:
        return {"status": "pass", "reason": "", **result}
    return {"status": "fail", "reason": step.error(), **result}


def run_node(job: NodeJob) -> dict[str, Any]:
    """The node task: a JSON-able payload that ``sdenv.fleet.rows.row_from_payload`` reads."""
    t0 = time.monotonic()
    deadline = t0 + job.timeout
    venv = job.venv or os.environ.get(VENV_VAR) or None
    python = Path(venv) / "bin" / "python" if venv else Path(sys.executable)
    payload: dict[str, Any] = {
        "schema": PAYLOAD_SCHEMA,
        "host": socket.gethostname(),
        "sdenv": __version__,
        "python": str(python),
        "env": None,
        "probe": None,
        "sync": None,
        "verify": None,
        "errors": [],
    }
    errors: list[str] = payload["errors"]
    with tempfile.TemporaryDirectory(prefix="sdenv-fleet-") as tmp_s:
        tmp = Path(tmp_s)
        (tmp / "envs").mkdir()
        for name, text in job.specs.items():
            (tmp / "envs" / f"{name}.toml").write_text(text)
        args = ["probe", "--no-torch", "--json", "--envs-dir", str(tmp / "envs")]
        for name in job.specs:
            args += ["--env", name]
        step = run_sdenv(args, deadline, tmp)
        payload["probe"] = probe = _json(step)
        if probe is None:
            errors.append(f"probe: {step.error()}")
            probe = {}
        env, why = choose_env(
            job.env, probe.get("recommended_env"), str(probe.get("recommended_env_reason"))
        )
        payload["env"] = env
        if why:
            errors.append(why)
        lock, no_lock_why = (
            _lock_for(job, env, python, tmp, deadline) if not errors else (None, None)
        )
        if no_lock_why:
            errors.append(no_lock_why)
        if job.sync and not errors:
            payload["sync"] = _sync(lock, venv, deadline, tmp)
        if not errors and (payload["sync"] or {}).get("status") != "fail":
            args = ["verify", "--python", str(python), "--json"]
            args += ["--lock", str(lock)] if lock else ["--no-lock"]
            step = run_sdenv(args, deadline, tmp)
            payload["verify"] = _json(step)
            if payload["verify"] is None:
                errors.append(f"verify: {step.error()}")
    payload["seconds"] = round(time.monotonic() - t0, 3)
    return payload
