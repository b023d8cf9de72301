"""verify's processes in the target interpreter: one-shot runs (``run_target``) and the model
check's process (``ModelCheck``), which verify starts first and lends to the probe and the smoke.

sdenv's own modules run in the target without being installed there (``target_env`` puts this
checkout's ``sdenv`` on its PYTHONPATH), always from an empty throwaway cwd, so nothing in the
caller's cwd shadows a module of the target.
"""

from __future__ import annotations

import contextlib
import queue
import subprocess
import threading
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from sdenv import _cleanup
from sdenv._cleanup import throwaway_dir
from sdenv._target import child_env
from sdenv.target.protocol import parse_line


def sdenv_path() -> str:
    """The directory holding the ``sdenv`` package, to put on a target's PYTHONPATH."""
    return str(Path(__file__).resolve().parent.parent)


def target_env() -> dict[str, str]:
    # sdenv's own modules run in the target without being installed there; the ones used
    # (probe, decide, compat, generate, tinymodel) import only the standard library at top level.
    # Not offline: --model may name a model the target loads the way it deploys it.
    return child_env(pythonpath=[sdenv_path()], offline=False)


def run_target(python: str, args: list[str], timeout: float) -> tuple[int | None, str, str]:
    # cwd: an empty directory, so nothing in the caller's cwd shadows a module in the target.
    with throwaway_dir("sdenv-verify-") as cwd:
        try:
            proc = _cleanup.run(
                [python, *args],
                capture_output=True,
                text=True,
                timeout=timeout,
                env=target_env(),
                cwd=cwd,
            )
        except subprocess.TimeoutExpired as exc:
            out = exc.stdout.decode() if isinstance(exc.stdout, bytes) else (exc.stdout or "")
            return None, out, f"timed out after {timeout:.0f} s"
        except OSError as exc:
            return None, "", f"{python}: {exc.strerror or exc}"
    return proc.returncode, proc.stdout, proc.stderr


def last_line(text: str) -> str:
    lines = [ln for ln in text.strip().splitlines() if ln.strip()]
    return lines[-1] if lines else "no output"


PROBE_TIMEOUT = 120.0

# The probe's facts from the model check's process (None: none came, run the probe alone; a str:
# why it could not answer), and the seconds it took.
Collected = tuple[dict[str, Any] | str | None, float]


ModelRun = tuple[int | None, str, str, float]  # exit code (None: timed out), out, err, s


class ModelCheck:
    """The model check in the target, started before its mode is known; it is also the probe.

    Its process first writes the probe's facts where verify asks (``--probe``, on a box of few
    CPUs: the torch import and the CUDA context are the ones the model needs anyway; elsewhere
    it imports torch meanwhile), then runs the smoke's ``imports`` group when
    the smoke asks for it in time (``--smoke``, :meth:`attach_smoke`: the same imports again),
    then makes the tiny model (importing diffusers and transformers: most of its time) while
    verify decides; :meth:`run` then hands it the mode on stdin (``--mode -``) and waits for its
    result. Nothing is run twice and nothing is guessed: the probe's facts still pick the mode
    before any model loads. ``model_part`` turns the run into the verdict.
    """

    def __init__(
        self, python: str, model: Path | None, *, timeout: float, probe: bool = True
    ) -> None:
        self.python, self.timeout = python, timeout
        self.args = ["-m", "sdenv.runtime.check", "--mode", "-", "--smoke"]
        self.args += ["--probe"] if probe else []
        if model is not None:
            self.args += ["--model", str(model.resolve())]
        self._stack = contextlib.ExitStack()
        self._proc: subprocess.Popen[str] | None = None
        self._error = ""
        self._t0 = time.perf_counter()
        self._out: list[str] = []
        self._err: list[str] = []
        self._probe: dict[str, Any] = {}
        self._probed = threading.Event()
        self._readers: list[threading.Thread] = []
        self._stdin = threading.Lock()  # the smoke's line and the mode come from two threads
        self._first_sent = False  # the process reads one line before its smoke checks
        self._smoke: queue.Queue[str | None] | None = None
        self._ended = False  # its stdout is closed: nothing more can come

    def __enter__(self) -> ModelCheck:
        # cwd: an empty directory, so nothing in the caller's cwd shadows a module in the target.
        cwd = self._stack.enter_context(throwaway_dir("sdenv-verify-"))
        try:
            self._proc = _cleanup.spawn(
                [self.python, *self.args],
                stdin=subprocess.PIPE,
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
                text=True,
                errors="replace",
                env=target_env(),
                cwd=cwd,
            )
        except OSError as exc:
            self._error = f"{self.python}: {exc.strerror or exc}"
            self._probed.set()
            return self
        self._readers = [
            threading.Thread(target=self._read_out, args=(self._proc.stdout,), daemon=True),
            threading.Thread(target=self._err.extend, args=(self._proc.stderr,), daemon=True),
        ]
        for reader in self._readers:
            reader.start()
        return self

    def __exit__(self, *exc: object) -> None:
        if self._proc is not None:
            _cleanup.release(self._proc, kill=True)
            self._proc.wait()
        self._stack.close()

    def _read_out(self, stream: Any) -> None:
        for line in stream:
            record = parse_line(line.rstrip("\n"))
            if (
                record is not None
                and not self._probed.is_set()
                and ("probe_facts" in record or "probe_error" in record)
            ):
                self._probe = record
                self._probed.set()
                continue
            smoke = self._smoke
            if smoke is not None and record is not None and "check" in record:
                smoke.put(line)  # a smoke result: the smoke's, never the model's
                continue
            self._out.append(line)
        self._probed.set()  # the process ended without its facts
        with self._stdin:  # an attach now or later sees the end; one before gets it
            self._ended = True
            if self._smoke is not None:
                self._smoke.put(None)

    def _send_first(self, line: str) -> bool:
        """Write the line the process reads after its probe; False when that was written."""
        proc = self._proc
        with self._stdin:
            if self._first_sent or proc is None or proc.stdin is None:
                return False
            self._first_sent = True
            try:
                proc.stdin.write(line + "\n")
                proc.stdin.flush()
            except (BrokenPipeError, ValueError):
                return False
        return True

    def attach_smoke(self, names: Sequence[str], gpu: bool) -> queue.Queue[str | None] | None:
        """Lend this process to the smoke's imports group (``sdenv._smoke_run.Attach``): the
        queue its result lines arrive on; None when the mode was sent first or it has ended."""
        lines: queue.Queue[str | None] = queue.Queue()
        with self._stdin:
            if self._first_sent or self._ended or self._proc is None:
                return None
            self._smoke = lines  # before the line goes: no result can come ahead of it
        if not self._send_first(f"smoke {'on' if gpu else 'off'} {' '.join(names)}"):
            self._smoke = None
            return None
        return lines

    def probe_facts(self, timeout: float) -> Collected:
        """The facts the check's process collected before making any model, and the seconds
        since it started; None when it could not give them (verify then runs the probe alone),
        the reason when it hung (a lone probe would hang as long)."""
        if not self._probed.wait(timeout):
            return f"timed out after {timeout:.0f} s", self._elapsed()
        facts = self._probe.get("probe_facts")
        return (facts if isinstance(facts, dict) else None), self._elapsed()

    def run(self, mode: str) -> ModelRun:
        """Send ``mode``; the check's exit code, output and seconds since it started."""
        proc = self._proc
        if proc is None:
            return None, "", self._error, 0.0
        left = max(1.0, self.timeout - (time.perf_counter() - self._t0))
        rc: int | None
        try:
            assert proc.stdin is not None
            with contextlib.suppress(BrokenPipeError):  # it died already: its exit code says
                # The first line it reads, unless the smoke's went ahead: then the second.
                if not self._send_first(mode):
                    with self._stdin:
                        proc.stdin.write(mode + "\n")
                with self._stdin:
                    proc.stdin.close()
            rc = proc.wait(timeout=left)
        except subprocess.TimeoutExpired:
            _cleanup.release(proc, kill=True)
            proc.wait()
            rc = None
        for reader in self._readers:
            reader.join()
        out, err = "".join(self._out), "".join(self._err)
        if rc is None:
            return None, out, f"timed out after {self.timeout:.0f} s", self._elapsed()
        return rc, out, err, self._elapsed()

    def _elapsed(self) -> float:
        return time.perf_counter() - self._t0
