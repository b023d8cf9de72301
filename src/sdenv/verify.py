"""``sdenv verify``: one verdict for a GPU box or an image, with every reason.

Four parts, in this order, each pass / fail / skip with its reasons:
1. probe - GPU, driver, arch, FP8 verdict (``sdenv.gpu.probe``), before the model check loads;
2. drift - installed distributions against the lock, files against their RECORD (``sdenv.drift``);
3. smoke - functional checks of the stack (``sdenv.smoke``);
4. model - a tiny SD3.5-shaped pipeline made on the spot (``sdenv.runtime.tinymodel``), loaded by
   the deployment loader (``sdenv.runtime.generate``) in the FP8 mode the probe chose, two steps
   run: finite image, FP8 storage where the mode says so, timings.

Every part runs in the target interpreter, and all start at once. The model check's process also
runs the smoke's pure-import checks (one torch, diffusers and transformers import instead of two),
and where CPUs are few it collects the probe's facts first, before it makes its tiny model (with
more, the probe runs beside it in a process of its own); the model loads once the probe has chosen
the mode. What that process cannot answer (no facts, a smoke check that failed or got no result)
is asked again of a process of its own, as if it had never been shared. Exit 0 only when every
required part passes; a part skipped for a reason (no GPU, no lock) is shown as skipped and fails
the verdict only with ``fail_on_skip``.
"""

from __future__ import annotations

import os
import platform
import re
import sys
import time
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from sdenv._json import to_jsonable
from sdenv._smoke_run import Attach
from sdenv._target import interpreter_path
from sdenv._verify_target import (
    PROBE_TIMEOUT,
    Collected,
    ModelCheck,
    last_line,
    run_target,
)
from sdenv.errors import SdenvError, UsageError
from sdenv.lock.lockfile import DEFAULT_LOCK_DIR
from sdenv.status import Outcome
from sdenv.target.protocol import last_result

# For Python 3.11 this is lockfiles/sd35-fp8-cu121-py3.11-linux_x86_64.txt.
DEFAULT_LOCK_PATTERN = "lockfiles/sd35-fp8-cu121-py{python}-linux_x86_64.txt"


def default_lock(python_version: str, lock_dir: Path = DEFAULT_LOCK_DIR) -> Path:
    """The default env's lock for the target's Python (``3.11.7`` -> the py3.11 lock)."""
    from sdenv.lock.spec import DEFAULT_ENV, Target

    xy = ".".join(python_version.split(".")[:2])
    return Target(DEFAULT_ENV, xy, "linux_x86_64").lockfile(lock_dir)


PARTS = ("probe", "drift", "smoke", "model")
NO_TORCH = "torch is not installed: the model check cannot run"


class VerifyError(UsageError):
    """verify could not start: bad input (an interpreter that does not run, a bad lock or model
    path). Raised before any slow part starts."""


@dataclass
class Part:
    name: str
    status: Outcome
    required: bool = True
    reasons: list[str] = field(default_factory=list)  # why it failed or skipped; notes if passed
    skipped: list[str] = field(default_factory=list)  # sub-checks skipped inside a passing part
    seconds: float = 0.0
    detail: dict[str, Any] = field(default_factory=dict)

    @property
    def summary(self) -> str:
        return self.reasons[0] if self.reasons else ""


@dataclass
class VerifyResult:
    ok: bool
    verdict: str  # pass | fail
    python: str
    lock: str | None
    fail_on_skip: bool
    fp8_mode: str | None  # what the probe chose
    model_mode: str | None  # what the model check ran in
    parts: list[Part]
    seconds: float
    failed: list[str] = field(default_factory=list)  # "part: reason" for every failing reason
    fp8_promise: str | None = None  # the lock's env fp8: native | emulated | auto (None: no lock)
    advisory: str | None = None  # e.g. emulated here although the GPU runs native: which env does

    def part(self, name: str) -> Part:
        return next(p for p in self.parts if p.name == name)


def verdict(parts: list[Part], fail_on_skip: bool) -> tuple[bool, list[str]]:
    """Pure: the required parts pass; skips (whole parts or sub-checks) fail only if asked."""
    failed: list[str] = []
    for p in parts:
        if not p.required:
            continue
        if p.status == "fail":
            failed += [f"{p.name}: {r}" for r in p.reasons] or [f"{p.name}: failed"]
        elif p.status == "skip" and fail_on_skip:
            failed += [f"{p.name}: skipped ({p.summary}) and --fail-on-skip is set"]
        elif p.status == "pass" and p.skipped and fail_on_skip:
            failed.append(f"{p.name}: sub-checks skipped ({', '.join(p.skipped)})")
    return not failed, failed


# --------------------------------------------------------------------------- parts


# The target collects facts (its torch, its torchao, its GPUs); the host decides, with the env
# specs it has, so the advisory can name the env that runs native FP8 on this box. A string until
# the probe's torch part moves into sdenv.target; it answers through that package's protocol.
_PROBE_SNIPPET = (
    "import dataclasses; from sdenv.gpu.probe import collect_facts; "
    "from sdenv.target.protocol import emit; "
    "emit(dataclasses.asdict(collect_facts(with_torch=True)))"
)


def fp8_promise(promise: str | None, report: dict[str, Any]) -> tuple[bool, str | None]:
    """Pure: does this box keep the env's FP8 promise? (ok, a line to show, or None).

    ``native``: where the hardware runs FP8 native, this env must too. ``emulated``: passes,
    with the advisory naming the native env where the hardware could do more. ``auto`` (or no
    lock): the best the env can run; never a failure by itself.
    """
    hardware = report.get("fp8_hardware_mode")
    mode = report.get("fp8_mode")
    if promise == "native" and hardware == "native" and mode != "native":
        return False, (
            f"the env promises native FP8 and this GPU runs it, but the env runs {mode}: "
            f"{report.get('fp8_mode_reason')}"
        )
    return True, report.get("fp8_advisory")


# From this many CPUs on, the probe runs in a process of its own, beside the model check's, rather
# than first in that process. Each costs a torch import (seconds of CPU): on 2 cores sharing it
# made verify 2-3 s faster, but on 16 it put the probe's imports (torchao's: 3 s in the cu130
# env) before the model check's instead of beside them, and verify took 1-2 s longer
# (docs/benchmarks.md, verify with one target process).
PROBE_APART_CPUS = 4


def available_cpus() -> int:
    """The CPUs this process may run on (its affinity; a container's cpuset)."""
    try:
        return len(os.sched_getaffinity(0))
    except (AttributeError, OSError):  # not on Linux
        return os.cpu_count() or 1


def probe_part(
    python: str | None,
    envs: Sequence[Any] = (),
    promise: str | None = None,
    collected: Collected = (None, 0.0),
) -> tuple[Part, dict[str, Any]]:
    """The probe's verdict. ``collected``: the facts the model check's process wrote before making
    its model, and its seconds until then; without them the probe runs alone (in ``python``, or
    in this process), so a probe that cannot answer fails exactly as a lone probe does."""
    from sdenv.gpu.decide import decide
    from sdenv.gpu.facts import MachineFacts
    from sdenv.gpu.probe import collect_facts

    t0 = time.perf_counter()
    loaded, seconds_before = collected
    if isinstance(loaded, str):
        return Part("probe", "fail", reasons=[f"probe failed in {python}: {loaded}"]), {}
    where = "the model check's process" if loaded is not None else "a process of its own"
    if loaded is None and python is None:
        facts = collect_facts(with_torch=True)
        where = "this process"
    else:
        if loaded is None:
            assert python is not None
            rc, out, errtext = run_target(python, ["-c", _PROBE_SNIPPET], PROBE_TIMEOUT)
            loaded = last_result(out) if rc == 0 else None
            if loaded is None:
                why = last_line(errtext) if rc != 0 else f"no JSON report ({last_line(out)})"
                return Part("probe", "fail", reasons=[f"probe failed in {python}: {why}"]), {}
        try:
            facts = MachineFacts.from_dict(loaded, f"probe facts from {python or sys.executable}")
        except ValueError as exc:
            return Part("probe", "fail", reasons=[f"probe failed in {python}: {exc}"]), {}
    report: dict[str, Any] = to_jsonable(decide(facts, envs))
    seconds = seconds_before + time.perf_counter() - t0
    checks = report.get("checks", [])
    fails = [f"{c['name']}: {c['reason']}" for c in checks if c.get("status") == "fail"]
    kept, fp8_line = fp8_promise(promise, report)
    if not kept and fp8_line:
        fails.append(f"fp8: {fp8_line}")
    gpus = report.get("gpus", [])
    detail = {
        "fp8_mode": report.get("fp8_mode"),
        "fp8_mode_reason": report.get("fp8_mode_reason"),
        "gpus": [
            {"index": g["index"], "name": g["name"], "cc": g["cc"], "fp8": g["fp8"]["verdict"]}
            for g in gpus
        ],
        "warnings": [f"{c['name']}: {c['reason']}" for c in checks if c.get("status") == "warn"],
        "fp8_promise": promise,
        "fp8_hardware_mode": report.get("fp8_hardware_mode"),
        "native_env": report.get("native_env"),
        "advisory": fp8_line if kept else None,
        "collected_in": where,
    }
    if fails:
        return Part("probe", "fail", reasons=fails, seconds=seconds, detail=detail), report
    if not gpus:
        reason = f"no NVIDIA GPU: {report.get('fp8_mode_reason', 'GPU checks not run')}"
        return Part("probe", "skip", reasons=[reason], seconds=seconds, detail=detail), report
    note = f"fp8 {report.get('fp8_mode')}: {report.get('fp8_mode_reason')}"
    notes = [note] + ([f"advisory: {fp8_line}"] if fp8_line and fp8_line not in note else [])
    return Part("probe", "pass", reasons=notes, seconds=seconds, detail=detail), report


def drift_part(
    python: str | None, lock_path: Path | None, *, check_files: bool = True, rehash: bool = False
) -> Part:
    if lock_path is None:
        return Part("drift", "skip", required=False, reasons=["no lock given (--no-lock)"])
    from sdenv.drift import check_drift
    from sdenv.lock.lockfile import header_platform, read_lockfile

    t0 = time.perf_counter()
    lock = read_lockfile(lock_path)  # a missing/bad lock is a usage error: raised, exit 2
    try:
        report = check_drift(lock, python, check_files=check_files, rehash=rehash)
    except SdenvError as exc:
        return Part("drift", "fail", reasons=[str(exc)], seconds=time.perf_counter() - t0)
    reasons = report.reasons()
    detail: dict[str, Any] = to_jsonable(report)
    seconds = time.perf_counter() - t0
    inv_py = _python_version(python)
    want_py = lock.get("python")
    if want_py and inv_py and not inv_py.startswith(want_py + ".") and inv_py != want_py:
        reasons.insert(0, f"lock is for Python {want_py}, this interpreter is {inv_py}")
    want_platform, here = header_platform(lock), _target_platform(python)
    if want_platform is not None and want_platform != here:
        reasons.insert(0, f"lock is for platform {want_platform}, this interpreter runs on {here}")
    if reasons:
        return Part("drift", "fail", reasons=reasons, seconds=seconds, detail=detail)
    note = f"{len(lock.pins)} pins match, {report.checked_files} files match their RECORD"
    if report.unchanged_files:
        note += f" ({report.unchanged_files} unchanged since they last matched: not hashed again)"
    return Part("drift", "pass", reasons=[note], seconds=seconds, detail=detail)


def _python_version(python: str | None) -> str | None:
    if python is None:
        return ".".join(map(str, sys.version_info[:3]))
    rc, out, _ = run_target(
        python, ["-c", "import sys; print('%d.%d.%d' % sys.version_info[:3])"], 30.0
    )
    version = out.strip()
    # Anything that exits 0 (/bin/true) is not an interpreter: it must print its version.
    return version if rc == 0 and re.fullmatch(r"\d+\.\d+\.\d+", version) else None


def _target_platform(python: str | None) -> str | None:
    """``linux_x86_64``: the lock header's platform naming, for the target interpreter."""
    snippet = "import platform, sys; print(sys.platform + '_' + platform.machine())"
    if python is None:
        return f"{sys.platform}_{platform.machine()}"
    rc, out, _ = run_target(python, ["-c", snippet], 30.0)
    return out.strip() if rc == 0 else None


def check_inputs(
    python: str | None, lock: Path | None, no_lock: bool, model: Path | None
) -> Path | None:
    """Every input checked before any slow part starts (well under a second): the interpreter
    runs and is a Python, the lock parses, the model path is a directory. Returns the lock's
    path (the default lock of the interpreter's Python unless given or ``no_lock``)."""
    from sdenv._fs import require_file_arg
    from sdenv.lock.lockfile import read_lockfile

    fix = "pass a venv's bin/python"
    if python is not None:
        require_file_arg(Path(python), "--python", "interpreter", fix)
        if not os.access(python, os.X_OK):
            raise VerifyError(f"--python {python}: not executable; {fix}")
    version = _python_version(python)
    if version is None:
        raise VerifyError(f"--python {python}: not a working Python interpreter; {fix}")
    if no_lock:
        lock = None
    elif lock is None:
        lock = default_lock(version)
    if lock is not None:
        read_lockfile(lock)  # a malformed lock fails now, not after the smoke and model runs
    if model is not None and not model.is_dir():
        what = "is a file, not a model directory" if model.exists() else "no such model directory"
        raise VerifyError(
            f"--model {model}: {what}; pass a local diffusers-format SD3.5 directory "
            "(the one holding model_index.json)"
        )
    return lock


def smoke_part(
    python: str | None, *, gpu: bool | None, timeout: float, attach: Attach | None = None
) -> Part:
    """The smoke's verdict; ``attach``: the model check's process, lent to its imports group."""
    from sdenv.smoke import run_smoke

    t0 = time.perf_counter()
    try:
        report = run_smoke(python, gpu=gpu, timeout=timeout, attach=attach)
    except SdenvError as exc:
        return Part("smoke", "fail", reasons=[str(exc)], seconds=time.perf_counter() - t0)
    seconds = time.perf_counter() - t0
    checks = list(report.checks)
    failed = [
        f"{c.name}: {c.detail}" + (f" ({c.failure.hint})" if c.failure and c.failure.hint else "")
        for c in checks
        if c.status == "fail"
    ]
    skipped = [c.name for c in checks if c.status == "skip"]
    detail = {
        "checks": {
            c.name: {"status": c.status, "detail": c.detail, "seconds": round(c.seconds, 3)}
            for c in checks
        }
    }
    if failed or not report.ok:
        return Part(
            "smoke", "fail", reasons=failed or ["smoke failed"], seconds=seconds, detail=detail
        )
    if checks and len(skipped) == len(checks):
        return Part("smoke", "skip", reasons=["every smoke check skipped"], seconds=seconds)
    passed = len(checks) - len(skipped)
    note = f"{passed}/{len(checks)} checks pass" + (
        f", skipped: {', '.join(skipped)}" if skipped else ""
    )
    return Part("smoke", "pass", reasons=[note], skipped=skipped, seconds=seconds, detail=detail)


def model_mode(probe_report: dict[str, Any]) -> tuple[str | None, str]:
    """The mode the model check runs in, and why: the probe's, or emulated on a CPU-only box.

    ``None`` means it cannot run; the reason says whether that is a skip (no GPU and no float8
    in torch) or a failure (no torch at all: the environment is broken).
    """
    mode = probe_report.get("fp8_mode") or "off"
    if mode != "off" or probe_report.get("gpus"):
        return mode, f"probe: {probe_report.get('fp8_mode_reason', mode)}"
    torch_facts = (probe_report.get("facts") or {}).get("torch") or {}
    if not torch_facts.get("installed"):
        return None, NO_TORCH
    if "float8_e4m3fn" in (torch_facts.get("float8_dtypes") or []):
        return "emulated", "no GPU: the FP8 emulated path (float8 storage, bf16 compute) on CPU"
    return None, f"no GPU and torch {torch_facts.get('version')} has no float8_e4m3fn"


def model_part(mode: str | None, why: str, model: Path | None, check: ModelCheck) -> Part:
    """The model part: ``check`` was started with the probe and now gets ``mode`` (when there is
    one to run)."""
    if mode is None:
        return Part("model", "fail" if why == NO_TORCH else "skip", reasons=[why])
    rc, out, errtext, seconds = check.run(mode)
    report = last_result(out)
    if report is None:
        return Part(
            "model",
            "fail",
            reasons=[f"model check crashed (exit {rc}): {last_line(errtext)}"],
            seconds=seconds,
        )
    detail = dict(report)
    if "error" in report:
        return Part("model", "fail", reasons=[str(report["error"])], seconds=seconds, detail=detail)
    reasons: list[str] = []
    if not report.get("finite"):
        reasons.append(f"the image has NaN/inf values in mode {mode}")
    if not report.get("fp8_ok"):
        fp8 = report.get("fp8", {})
        reasons.append(
            f"mode {mode}: {fp8.get('block_linears_fp8')}/{fp8.get('block_linears')} block "
            "linear layers hold FP8 weights"
        )
    if reasons:
        return Part("model", "fail", reasons=reasons, seconds=seconds, detail=detail)
    t = report.get("timings", {})
    fp8 = report.get("fp8", {})
    note = (
        f"{'tiny SD3.5' if model is None else model} in {mode} on {report.get('device')}: "
        f"{report.get('steps')} steps {t.get('denoise_s', 0):.2f} s, "
        f"{fp8.get('fp8_linear_layers')}/{fp8.get('linear_layers')} linear layers FP8; {why}"
    )
    return Part("model", "pass", reasons=[note], seconds=seconds, detail=detail)


# --------------------------------------------------------------------------- the whole


def _guarded(name: str, fn: Callable[[], Part], on_part: Callable[[Part], None] | None) -> Part:
    """Run one part: a crash inside it is that part's failure, a usage error aborts verify."""
    start = time.perf_counter()
    try:
        part = fn()
    except SdenvError:
        raise  # a usage error (bad lock) aborts the whole verify with its one line
    except Exception as exc:  # a crash inside one part is that part's failure, not ours
        part = Part(name, "fail", reasons=[f"{type(exc).__name__}: {exc}"])
    part.seconds = part.seconds or time.perf_counter() - start
    if on_part:
        on_part(part)
    return part


def verify(
    *,
    python: str | Path | None = None,
    lock: Path | None = None,
    no_lock: bool = False,
    model: Path | None = None,
    fail_on_skip: bool = False,
    gpu: bool | None = None,
    check_files: bool = True,
    rehash: bool = False,
    smoke_timeout: float = 180.0,
    model_timeout: float = 600.0,
    on_part: Callable[[Part], None] | None = None,
    envs: Sequence[Any] = (),
    on_start: Callable[[str], None] | None = None,
) -> VerifyResult:
    """Probe, then drift, smoke and model check concurrently; one result with every reason."""
    t0 = time.perf_counter()
    # The target runs from a staging dir: a relative path would name nothing there.
    target = interpreter_path(python) if python is not None else None
    lock = check_inputs(target, lock, no_lock, model)
    exe = target or sys.executable
    promise = _lock_promise(lock, envs)
    if on_start:
        on_start(exe)

    def guarded(name: str, fn: Callable[[], Part]) -> Part:
        return _guarded(name, fn, on_part)

    # The probe decides the model check's FP8 mode, so it runs before the model loads: the model
    # check's process collects the probe's facts first, runs the smoke's imports group, makes its
    # tiny model while verify decides, then waits for the mode (ModelCheck). Drift and smoke do
    # not depend on the probe and start at once.
    probe_here = available_cpus() < PROBE_APART_CPUS
    with (
        ThreadPoolExecutor(max_workers=3) as pool,
        ModelCheck(exe, model, timeout=model_timeout, probe=probe_here) as check,
    ):
        drift_f = pool.submit(
            guarded,
            "drift",
            lambda: drift_part(target, lock, check_files=check_files, rehash=rehash),
        )
        smoke_f = pool.submit(
            guarded,
            "smoke",
            lambda: smoke_part(target, gpu=gpu, timeout=smoke_timeout, attach=check.attach_smoke),
        )
        collected = check.probe_facts(PROBE_TIMEOUT) if probe_here else (None, 0.0)
        probe, probe_report = probe_part(target, envs, promise, collected)
        if on_part:
            on_part(probe)
        mode, why = model_mode(probe_report)
        model_f = pool.submit(
            guarded,
            "model",
            lambda: model_part(mode, why, model, check),
        )
        parts = [probe, drift_f.result(), smoke_f.result(), model_f.result()]
    ok, failed = verdict(parts, fail_on_skip)
    return VerifyResult(
        ok=ok,
        verdict="pass" if ok else "fail",
        python=exe,
        lock=str(lock) if lock else None,
        fail_on_skip=fail_on_skip,
        fp8_mode=probe_report.get("fp8_mode"),
        model_mode=mode,
        parts=parts,
        seconds=round(time.perf_counter() - t0, 3),
        failed=failed,
        fp8_promise=promise,
        advisory=probe.detail.get("advisory"),
    )


def _lock_promise(lock: Path | None, envs: Sequence[Any]) -> str | None:
    """The env's fp8 promise: the lock header's, else its env spec's (locks made before it)."""
    if lock is None:
        return None
    from sdenv.lock.lockfile import read_lockfile

    header = read_lockfile(lock)
    promise = header.get("fp8")
    if promise is None:
        name = header.get("env")
        promise = next((str(e.fp8) for e in envs if e.name == name), None)
    return promise
