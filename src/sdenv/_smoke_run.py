"""How ``sdenv smoke`` runs its checks in the target interpreter: processes, groups, a schedule.

Checks share a process per group, which reports each check's result as it finishes: the imports
and tiny CPU computations by torch itself in one (``imports``), the checks that launch CUDA
kernels in another (``gpu``), and each third-party C++ extension's checks (xformers, torchao) in
one of their own, apart from the rest. The groups run side by side. A torch import costs seconds
and a CUDA context one more; paying each once per group instead of once per check is most of the
smoke's time.

``sdenv verify`` lends the ``imports`` group a process it has running anyway: its model check's,
which imports the same torch, diffusers and transformers (``Attach``). Nothing else changes: the
group's results arrive the same way, and what it cannot answer is asked of a process of its own.

A crash or a hang is plausible in a CUDA kernel or an extension, so nothing a group cannot answer
for sure is taken from it: a check that failed in a group is asked again of a process of its own
(its error text and log then are exactly those of a lone run), and so is every check left without
a result when the group died or hung (a segfault, a sticky CUDA error that fails every later
check). So a broken env is classified as if every check ran alone; only passes come from a group.
"""

from __future__ import annotations

import os
import queue
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from sdenv import _cleanup, _target
from sdenv.errors import UsageError
from sdenv.smoke_checks import CheckSpec, Status
from sdenv.target.protocol import parse_line, results

LOG_TAIL = 4000  # characters of a check's stderr kept in the report and fed to classify


class SmokeError(UsageError):
    """The target interpreter cannot be run at all (bad --python): no checks were possible."""


@dataclass
class Raw:
    """One check's outcome as the target process reported it (or its death)."""

    status: Status
    detail: str
    error: str
    facts: dict[str, Any]
    seconds: float
    log: str


@dataclass(frozen=True)
class Node:
    """A check to schedule: the checks it needs (that are run), and the group whose process it
    may share (None: a process of its own)."""

    name: str
    needs: tuple[str, ...]
    group: str | None


# A running target process that can take a group's checks: given the names and the GPU flag, it
# returns the queue its stdout lines will arrive on (None at its end), or None when it cannot.
Attach = Callable[[Sequence[str], bool], "queue.Queue[str | None] | None"]


def _flag(gpu: bool | None) -> list[str]:
    return [] if gpu is None else ["--gpu" if gpu else "--no-gpu"]


def _spawn(python: str, root: Path, names: Sequence[str], gpu: bool | None) -> Any:
    cmd = _target.command(python, root, "smoke", [*names, *_flag(gpu)])
    try:
        # Its own session, so a timeout or a signal kills the whole process group (any workers
        # it started); it dies with sdenv even on a SIGKILL.
        return _cleanup.spawn(
            cmd,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            errors="replace",
            cwd=root,
            env=_target.child_env(),
        )
    except OSError as exc:
        raise SmokeError(f"--python {python}: cannot run it ({exc.strerror or exc})") from exc


def _raw(record: Mapping[str, Any], seconds: float, log: str) -> Raw:
    error = str(record.get("error", ""))
    return Raw(record["status"], record["detail"], error, record.get("facts", {}), seconds, log)


def _death(returncode: int) -> str:
    if returncode < 0:
        try:
            return f"crashed: killed by {signal.Signals(-returncode).name}"
        except ValueError:
            return f"crashed: killed by signal {-returncode}"
    return f"crashed: exited with code {returncode} and no result"


def run_one(python: str, root: Path, name: str, gpu: bool | None, timeout: float) -> Raw:
    """Run one check alone in a process of ``python`` (the staged target package at ``root``)."""
    start = time.perf_counter()
    proc = _spawn(python, root, [name], gpu)
    try:
        stdout, stderr = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        _cleanup.release(proc, kill=True)
        stdout, stderr = proc.communicate()
        what = f"timed out after {timeout:g} s"
        return Raw("fail", what, what, {}, time.perf_counter() - start, stderr[-LOG_TAIL:])
    finally:
        _cleanup.release(proc, kill=True)
    seconds = time.perf_counter() - start
    log = stderr[-LOG_TAIL:]
    found = [r for r in results(stdout) if r.get("check", name) == name]
    if found:
        return _raw(found[-1], seconds, log)
    what = _death(proc.returncode)
    return Raw("fail", what, what, {}, seconds, f"{log}\n{stdout[-1000:]}".strip())


def resolve_python(python: Path | str | None) -> str:
    if python is None:
        return sys.executable
    path = Path(_target.interpreter_path(python))
    if not path.exists():
        raise SmokeError(f"--python {python}: no such interpreter; pass a venv's bin/python")
    if path.is_dir():
        raise SmokeError(f"--python {python}: is a directory; pass a venv's bin/python")
    return str(path)


def run_env(exe: str, root: Path, gpu: bool | None, timeout: float) -> dict[str, Any]:
    """The stdlib-only ``env`` probe: proves the interpreter runs and gathers versions."""
    limit = min(timeout, 60.0)
    raw = run_one(exe, root, "env", gpu, limit)
    if raw.status != "pass" and raw.detail.startswith("timed out"):
        # The interpreter did not fail: it was not given time to start (--timeout too small).
        raise SmokeError(
            f"--timeout {timeout:g}: the interpreter check of {exe} timed out after {limit:g} s "
            "before it could answer; give each check more time (e.g. --timeout 180)"
        )
    if raw.status != "pass":
        first = (raw.log.strip().splitlines() or [raw.detail])[-1]
        raise SmokeError(f"--python {exe}: not a working Python interpreter ({first})")
    facts = dict(raw.facts)
    if gpu is not None:
        facts["gpu_wanted"] = gpu
    return facts


class Group:
    """The shared process: runs ``names`` in order and hands each result to its waiter."""

    def __init__(
        self,
        python: str,
        root: Path,
        names: Sequence[str],
        gpu: bool,
        timeout: float,
        attach: Attach | None = None,
    ):
        self.python, self.root, self.names = python, root, list(names)
        self.gpu, self.timeout, self.attach = gpu, timeout, attach
        self._results: dict[str, Raw] = {}
        self._done = {name: threading.Event() for name in names}
        self._stderr: list[str] = []
        self._lock = threading.Lock()

    def result(self, name: str) -> Raw | None:
        """The group's result for ``name``; None when the group ended without one."""
        self._done[name].wait()
        return self._results.get(name)

    def run(self, slots: threading.Semaphore) -> None:
        try:
            lent = self.attach(self.names, self.gpu) if self.attach is not None else None
            if lent is not None:
                # Its stderr is the lender's: a pass needs none, a failure re-runs alone. Not a
                # process of ours, so it takes none of the slots our processes share.
                self._collect(lent)
            else:
                with slots:
                    self._run()
        finally:
            for event in self._done.values():
                event.set()

    def _drain(self, stream: Any, lines: queue.Queue[str | None] | None) -> None:
        for line in stream:
            if lines is not None:
                lines.put(line)
            else:
                with self._lock:
                    self._stderr.append(line)
        if lines is not None:
            lines.put(None)

    def _run(self) -> None:
        proc = _spawn(self.python, self.root, self.names, self.gpu)
        lines: queue.Queue[str | None] = queue.Queue()
        readers = [
            threading.Thread(target=self._drain, args=(proc.stdout, lines), daemon=True),
            threading.Thread(target=self._drain, args=(proc.stderr, None), daemon=True),
        ]
        for reader in readers:
            reader.start()
        try:
            self._collect(lines)
        finally:
            _cleanup.release(proc, kill=True)
            proc.wait()

    def _collect(self, lines: queue.Queue[str | None]) -> None:
        """Each result as it arrives; stop when the process ends or one check takes longer than
        ``timeout`` (what is left is then run alone, where a hang is classified as before)."""
        last = time.perf_counter()
        while True:
            try:
                line = lines.get(timeout=max(0.0, last + self.timeout - time.perf_counter()))
            except queue.Empty:
                return
            if line is None:
                return
            record = parse_line(line.rstrip("\n"))
            if record is None or record.get("check") not in self._done:
                continue
            now = time.perf_counter()
            with self._lock:  # this check's stderr: what arrived since the previous result
                log, self._stderr = "".join(self._stderr)[-LOG_TAIL:], []
            name = str(record["check"])
            self._results[name] = _raw(record, now - last, log)
            self._done[name].set()
            last = now
            if len(self._results) == len(self._done):
                return  # a lent process goes on with its own work


def run_graph(
    python: str,
    root: Path,
    nodes: Sequence[Node],
    gpu: bool,
    timeout: float,
    workers: int,
    done: Mapping[str, Raw],
    on_result: Callable[[str, Raw], None],
    attach: Attach | None = None,
) -> None:
    """Run checks as their prerequisites pass, at most ``workers`` processes at a time.

    ``done``: outcomes known beforehand (GPU checks skipped). Every outcome, skips of checks
    whose prerequisite did not pass included, goes to ``on_result`` as soon as it is known.
    ``attach``: a running process that may take the ``imports`` group.
    """
    outcome: dict[str, Raw] = dict(done)
    for name, raw in done.items():
        on_result(name, raw)
    pending = {node.name: node for node in nodes if node.name not in outcome}
    slots = threading.Semaphore(workers)

    def make(key: str, names: list[str]) -> Group:
        lender = attach if key == IMPORTS else None
        return Group(python, root, names, gpu, timeout, lender)

    groups = _groups(nodes, pending, make)

    def job(name: str) -> Raw:
        raw = groups[name].result(name) if name in groups else None
        if raw is None or raw.status == "fail":
            with slots:
                raw = run_one(python, root, name, gpu, timeout)
        return raw

    running: dict[Future[Raw], str] = {}
    with ThreadPoolExecutor(max_workers=len(nodes) + len(groups) + 1) as pool:
        for group in dict.fromkeys(groups.values()):
            pool.submit(group.run, slots)
        while pending or running:
            for name, skip in _ready(pending, outcome):
                if skip is None:
                    running[pool.submit(job, name)] = name
                else:
                    outcome[name] = skip
                    on_result(name, skip)
            if not running:
                if pending:  # unreachable with acyclic prerequisites; never spin
                    raise RuntimeError(f"smoke checks never became ready: {sorted(pending)}")
                continue
            finished, _ = wait(running, return_when=FIRST_COMPLETED)
            for fut in finished:
                name = running.pop(fut)
                outcome[name] = fut.result()
                on_result(name, outcome[name])


def _groups(
    nodes: Sequence[Node], pending: Mapping[str, Node], make: Callable[[str, list[str]], Group]
) -> dict[str, Group]:
    """Check name -> the process of its group, for the groups of two or more checks to run (a
    group of one is a lone run)."""
    groups: dict[str, Group] = {}
    for key in dict.fromkeys(n.group for n in nodes if n.group is not None):
        members = [n.name for n in nodes if n.group == key and n.name in pending]
        if len(members) > 1:
            groups |= dict.fromkeys(members, make(key, members))
    return groups


def _ready(pending: dict[str, Node], outcome: Mapping[str, Raw]) -> list[tuple[str, Raw | None]]:
    """Checks whose prerequisites are all known, removed from ``pending``: None to run it, or
    the skip it is because a prerequisite did not pass. Repeats until nothing moves (a skip can
    unblock further skips)."""
    ready: list[tuple[str, Raw | None]] = []
    known = dict(outcome)
    moved = True
    while moved:
        moved = False
        for name, node in list(pending.items()):
            if any(n not in known for n in node.needs):
                continue
            moved = True
            del pending[name]
            blocked = [n for n in node.needs if known[n].status != "pass"]
            if not blocked:
                ready.append((name, None))
                continue
            dep = known[blocked[0]]
            why = "failed" if dep.status == "fail" else f"skipped: {dep.detail}"
            skip = Raw("skip", f"needs {blocked[0]} ({why})", "", {}, 0.0, "")
            known[name] = skip
            ready.append((name, skip))
    return ready


IMPORTS = "imports"


def _group(spec: CheckSpec, use_gpu: bool) -> str | None:
    if spec.extension:
        return spec.extension
    return "gpu" if use_gpu and (spec.gpu_only or spec.gpu_kernels) else IMPORTS


def run_checks(
    exe: str,
    root: Path,
    selected: Sequence[CheckSpec],
    gpu_flag: bool | None,
    use_gpu: bool,
    timeout: float,
    workers: int | None,
    on_result: Callable[[str, Raw], None],
    attach: Attach | None = None,
) -> None:
    """Checks run as their prerequisites pass, sharing a process per group: ``imports`` (in the
    process ``attach`` lends, where it does), ``gpu`` for the checks that launch CUDA kernels,
    and one per C++ extension."""
    names = {spec.name for spec in selected}
    skipped = "GPU checks off (--no-gpu)" if gpu_flag is False else "no NVIDIA GPU (no driver)"
    done = {
        spec.name: Raw("skip", skipped, "", {}, 0.0, "")
        for spec in selected
        if spec.gpu_only and not use_gpu
    }
    nodes = [
        Node(
            spec.name,
            tuple(n for n in spec.needs + (spec.needs_on_gpu if use_gpu else ()) if n in names),
            group=_group(spec, use_gpu),
        )
        for spec in selected
    ]
    n_workers = workers or max(1, min(4, os.cpu_count() or 1))
    run_graph(exe, root, nodes, use_gpu, timeout, n_workers, done, on_result, attach)
