"""Throwaway dirs and child processes that never outlive the sdenv run that made them.

Three mechanisms, one per way a run can end:

- normal return or an exception: :func:`throwaway_dir` removes its dir and :func:`run` /
  :func:`spawn` kill the child's whole process group (each child gets its own session);
- SIGINT/SIGTERM (Ctrl-C, CI cancel, ``timeout``, ``docker stop``): :func:`handle_signals`
  kills every live child, then raises :class:`Interrupted` in the main thread, so the ``with``
  blocks above remove their dirs on the way out; the CLI exits 128 + the signal number;
- SIGKILL (no handler can run): every child asks the kernel for SIGKILL when its parent dies
  (``PR_SET_PDEATHSIG``), and every throwaway dir carries its owner's pid and start time in its
  name, so the next sdenv run removes the dirs of owners that are gone (:func:`reap_stale`).
"""

from __future__ import annotations

import contextlib
import ctypes
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from types import FrameType
from typing import Any

PREFIX = "sdenv-"
# sdenv-proof-<slug>-o<pid>.<start>-<random>: the owner's pid and its start time (clock ticks
# since boot), so a pid reused by another process after a reboot or wrap is not taken for ours.
_OWNER_RE = re.compile(r"-o(\d+)\.(\d+)-[^/]*$")
_PR_SET_PDEATHSIG = 1

_lock = threading.Lock()
_children: set[subprocess.Popen[Any]] = set()
_dirs: set[Path] = set()
_stopping = threading.Event()


class Interrupted(BaseException):
    """SIGINT or SIGTERM arrived. A BaseException: no ``except Exception`` or ``except
    SdenvError`` on the way up may turn a stop request into a result."""

    def __init__(self, signum: int) -> None:
        self.signum = signum
        self.name = signal.Signals(signum).name
        super().__init__(f"interrupted by {self.name}")

    @property
    def exit_code(self) -> int:
        return 128 + self.signum  # the shell's convention: 130 for SIGINT, 143 for SIGTERM


# --------------------------------------------------------------------------- owners


def _start_time(pid: int) -> int | None:
    """Field 22 of /proc/PID/stat: when the process started, in clock ticks since boot."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    # The command name (field 2) may hold spaces and parentheses: split after its last ')'.
    return int(stat.rsplit(")", 1)[1].split()[19])


def owner_mark(pid: int | None = None) -> str:
    pid = os.getpid() if pid is None else pid
    return f"o{pid}.{_start_time(pid) or 0}"


def _owner_alive(pid: int, start: int) -> bool:
    now = _start_time(pid)
    return now is not None and (start == 0 or now == start)


@contextlib.contextmanager
def throwaway_dir(prefix: str, parent: Path | str | None = None) -> Iterator[Path]:
    """A temp dir named ``<prefix>o<pid>.<start>-XXXX``, removed on exit, on SIGINT/SIGTERM, and
    by the next run after a SIGKILL. ``prefix`` starts with ``sdenv-``."""
    if not prefix.startswith(PREFIX):
        raise ValueError(f"throwaway dir prefix {prefix!r} must start with {PREFIX!r}")
    path = Path(tempfile.mkdtemp(prefix=f"{prefix}{owner_mark()}-", dir=parent))
    with _lock:
        _dirs.add(path)
    try:
        yield path
    finally:
        shutil.rmtree(path, ignore_errors=True)
        with _lock:
            _dirs.discard(path)


def reap_stale(parents: Sequence[Path | str] | None = None) -> list[Path]:
    """Remove the throwaway dirs whose owner is dead (a SIGKILLed run). Returns what it removed."""
    removed: list[Path] = []
    for parent in parents if parents is not None else (tempfile.gettempdir(), "/var/tmp"):
        try:
            entries = list(Path(parent).glob(f"{PREFIX}*"))
        except OSError:
            continue
        for entry in entries:
            m = _OWNER_RE.search(entry.name)
            if m is None or not entry.is_dir() or entry.is_symlink():
                continue
            pid, start = int(m.group(1)), int(m.group(2))
            if pid == os.getpid() or _owner_alive(pid, start):
                continue
            shutil.rmtree(entry, ignore_errors=True)
            if not entry.exists():
                removed.append(entry)
    return removed


# --------------------------------------------------------------------------- children


def _die_with_parent() -> Callable[[], None] | None:
    if not sys.platform.startswith("linux"):
        return None
    try:
        prctl = ctypes.CDLL(None, use_errno=True).prctl
    except (OSError, AttributeError):
        return None
    parent = os.getpid()

    def preexec() -> None:
        prctl(_PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)
        if os.getppid() != parent:  # the parent died between fork and prctl
            os._exit(1)

    return preexec


def _kill_group(proc: subprocess.Popen[Any]) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(proc.pid, signal.SIGKILL)


def spawn(cmd: Sequence[str], **kwargs: Any) -> subprocess.Popen[Any]:
    """``subprocess.Popen`` in its own session, dying with us; call :func:`release` when done."""
    if _stopping.is_set():
        raise Interrupted(signal.SIGTERM)
    kwargs.setdefault("start_new_session", True)
    preexec = _die_with_parent()
    if preexec is not None:
        kwargs.setdefault("preexec_fn", preexec)
    proc: subprocess.Popen[Any] = subprocess.Popen(list(cmd), **kwargs)
    with _lock:
        _children.add(proc)
    return proc


def release(proc: subprocess.Popen[Any], *, kill: bool = False) -> None:
    if kill:
        _kill_group(proc)
    with _lock:
        _children.discard(proc)


def run(
    cmd: Sequence[str],
    *,
    timeout: float | None = None,
    input: str | None = None,
    capture_output: bool = False,
    check: bool = False,
    **kwargs: Any,
) -> subprocess.CompletedProcess[Any]:
    """``subprocess.run`` whose child (and all it started) dies on timeout, error or signal."""
    if capture_output:
        kwargs["stdout"] = kwargs["stderr"] = subprocess.PIPE
    if input is not None:
        kwargs["stdin"] = subprocess.PIPE
    proc = spawn(cmd, **kwargs)
    try:
        try:
            stdout, stderr = proc.communicate(input, timeout=timeout)
        except subprocess.TimeoutExpired as exc:
            _kill_group(proc)
            stdout, stderr = proc.communicate()
            raise subprocess.TimeoutExpired(
                proc.args, exc.timeout, output=stdout, stderr=stderr
            ) from None
        except BaseException:
            _kill_group(proc)
            proc.wait()
            raise
        # The child is done; anything it left running in its group goes with it.
        _kill_group(proc)
    finally:
        release(proc)
    result = subprocess.CompletedProcess(proc.args, proc.returncode, stdout, stderr)
    if check:
        result.check_returncode()
    return result


def kill_children(wait: float = 0.0) -> None:
    """SIGKILL every child's process group; with ``wait``, also reap them (up to that many
    seconds each), so that a dir a child owned is seen as its dead owner's."""
    with _lock:
        live = list(_children)
    for proc in live:
        _kill_group(proc)
    for proc in live if wait else ():
        with contextlib.suppress(subprocess.TimeoutExpired):
            proc.wait(timeout=wait)


def remove_dirs() -> None:
    with _lock:
        dirs = list(_dirs)
    for path in dirs:
        shutil.rmtree(path, ignore_errors=True)


# --------------------------------------------------------------------------- signals


def _on_signal(signum: int, frame: FrameType | None) -> None:
    _stopping.set()
    kill_children()
    raise Interrupted(signum)


@contextlib.contextmanager
def handle_signals() -> Iterator[None]:
    """SIGINT/SIGTERM -> kill the children, raise :class:`Interrupted`; on the way out, remove
    any throwaway dir still registered (a worker thread may have held one) and restore the
    previous handlers. Outside the main thread (a test calling ``main``) it does nothing."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    old = {s: signal.signal(s, _on_signal) for s in (signal.SIGINT, signal.SIGTERM)}
    try:
        yield
    finally:
        # Ignore further SIGINT/SIGTERM while cleaning up, so a second Ctrl-C cannot leave half.
        for s in old:
            signal.signal(s, signal.SIG_IGN)
        stopping = _stopping.is_set()
        if stopping:
            kill_children(wait=5.0)
            remove_dirs()
            # The throwaway dirs our children made (the model check's tiny model, say) died with
            # them: their owners are gone now, so they go now rather than at the next run.
            reap_stale()
        for s, handler in old.items():
            signal.signal(s, handler)
        _stopping.clear()
