"""Smoke-test an environment: imports with function, FP8 numerics, GPU kernels, classified failures.

Every check runs in its own process of the *target* interpreter (``_smoke_target.py``, standard
library + the packages under test), under a timeout, so a segfault, an ``undefined symbol`` or a
hang in one import cannot take the run down. Failures are classified by ``classify``, a pure
function of the check name, the error text and the facts gathered, into a kind, the distributions
to blame and a fix hint. Rendering-free: the CLI draws the table.

This module is imported by the CLI (and by ``lock``/``verify``/the image builder): standard
library + sdenv.gpu.compat only at import time.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Iterable, Mapping, Sequence
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from sdenv import _cleanup
from sdenv._cleanup import throwaway_dir
from sdenv._data import load_json
from sdenv.errors import UsageError
from sdenv.gpu import compat

Status = Literal["pass", "fail", "skip"]

TARGET_SCRIPT = Path(__file__).with_name("_smoke_target.py")
MARKER = "@@SDENV-SMOKE@@"
LOG_TAIL = 4000  # characters of a check's stderr kept in the report and fed to classify


class SmokeError(UsageError):
    """The target interpreter cannot be run at all (bad --python): no checks were possible."""


@dataclass
class Failure:
    """Why a check failed: ``kind`` (see KINDS), the distributions to blame, what to do."""

    kind: str
    culprits: list[str]
    hint: str
    error: str


@dataclass
class SmokeCheck:
    name: str
    status: Status
    detail: str
    seconds: float
    failure: Failure | None = None
    facts: dict[str, Any] = field(default_factory=dict)
    log: str = ""  # a failure's traceback + stderr tail; else stderr (warnings such as xformers')


@dataclass
class SmokeReport:
    python: str
    ok: bool
    checks: list[SmokeCheck]
    gpu: bool = False  # whether the GPU checks ran (not skipped as "no GPU"/"GPU off")
    seconds: float = 0.0
    culprits: list[str] = field(default_factory=list)  # union over failures, first seen first
    facts: dict[str, Any] = field(default_factory=dict)  # interpreter, versions, driver, torch

    def check(self, name: str) -> SmokeCheck:
        for item in self.checks:
            if item.name == name:
                return item
        raise KeyError(name)

    @property
    def failures(self) -> list[SmokeCheck]:
        return [c for c in self.checks if c.status == "fail"]


@dataclass(frozen=True)
class CheckSpec:
    name: str
    title: str
    package: str  # the distribution blamed when nothing more specific is known
    needs: tuple[str, ...] = ()
    gpu_only: bool = False
    needs_on_gpu: tuple[str, ...] = ()  # extra prerequisites when the GPU is used


CHECKS: tuple[CheckSpec, ...] = (
    CheckSpec("torch", "torch imports and computes; CUDA build", "torch"),
    CheckSpec("cuda", "CUDA kernel launch (arch, driver)", "torch", ("torch",), gpu_only=True),
    CheckSpec("xformers", "xformers C++ extension loaded", "xformers", ("torch",)),
    CheckSpec("diffusers", "diffusers SD3 classes import", "diffusers", ("torch",)),
    CheckSpec("transformers", "transformers torch backend on", "transformers", ("torch",)),
    CheckSpec("accelerate", "accelerate init_empty_weights", "accelerate", ("torch",)),
    CheckSpec("safetensors", "safetensors round trip", "safetensors", ("torch",)),
    CheckSpec("fp8-dtypes", "FP8 dtypes, round trip, overflow", "torch", ("torch",)),
    CheckSpec(
        "fp8-matmul", "FP8 weight storage matmul", "torch", ("fp8-dtypes",), needs_on_gpu=("cuda",)
    ),
    CheckSpec("fp8-backend", "torchao imports, FP8 config builds", "torchao", ("fp8-dtypes",)),
    CheckSpec(
        "scaled-mm", "torch._scaled_mm FP8 GEMM", "torch", ("cuda", "fp8-dtypes"), gpu_only=True
    ),
    CheckSpec(
        "xformers-attention",
        "xformers attention == SDPA",
        "xformers",
        ("cuda", "xformers"),
        gpu_only=True,
    ),
    CheckSpec(
        "sd3-forward",
        "tiny SD3 transformer bf16 + FP8 storage",
        "diffusers",
        ("diffusers", "fp8-dtypes"),
        needs_on_gpu=("cuda",),
    ),
)
CHECK_NAMES = tuple(spec.name for spec in CHECKS)
_SPECS = {spec.name: spec for spec in CHECKS}

# Failure kinds, for docs and the CLI legend.
KINDS: Mapping[str, str] = {
    "abi-mismatch": "a C++ extension was built for another torch (undefined symbol)",
    "missing-shared-library": "an extension needs a shared library (a CUDA runtime) absent here",
    "too-new-for-torch": "a package uses torch API this torch lacks",
    "backend-disabled": "transformers disabled its torch backend (too new for this torch)",
    "api-mismatch": "a package imports a name another package no longer/not yet provides",
    "missing-dependency": "a package needs a module that is not installed",
    "not-installed": "the package under test is not installed",
    "no-kernel-image": "the torch build has no kernel for this GPU's architecture",
    "driver-too-old": "the NVIDIA driver is too old for torch's CUDA runtime",
    "cpu-only-torch": "a GPU is wanted but torch is a CPU-only build",
    "cuda-unavailable": "torch cannot use the GPU",
    "no-gpu": "a GPU is wanted but there is no NVIDIA driver/device (no culprit package)",
    "gpu-memory": "the GPU ran out of memory",
    "numerics": "a computation ran but gave a wrong or non-finite answer",
    "crash": "the check process died (signal): a native extension crashed",
    "timeout": "the check did not finish in time",
    "error": "any other error",
}


def _load_xformers_for_torch() -> dict[str, str]:
    """``data/xformers_for_torch.json``: torch release -> the xformers release built for it."""
    return {
        str(r["torch"]): str(r["xformers"]) for r in load_json("xformers_for_torch.json")["pairs"]
    }


XFORMERS_FOR_TORCH: Mapping[str, str] = _load_xformers_for_torch()


# --------------------------------------------------------------------------- classification


_FRAME_RE = re.compile(r'^\s*File "([^"]+)", line \d+', re.MULTILINE)
_SITE_RE = re.compile(
    r"[/\\](?:site|dist)-packages[/\\]([A-Za-z0-9_.]+?)(?:[/\\]|\.py|\.cpython|\.so)"
)
_SO_RE = re.compile(r"(\S+\.so(?:\.\d+)*): (?:undefined symbol|cannot open shared object)")
_TORCH_ATTR_RE = re.compile(r"module '(torch(?:\.\w+)*)' has no attribute '(\w+)'")
_NO_MODULE_RE = re.compile(r"No module named '([\w.]+)'")
_CANNOT_IMPORT_RE = re.compile(r"cannot import name '(\w+)' from '([\w.]+)'")
_TORCH_NEEDED_RE = re.compile(r"PyTorch >= ?([\d.]+) is required")
_MISSING_LIB_RE = re.compile(r"(lib[\w.+-]+\.so[\w.]*): cannot open shared object file")


def _canon(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def _dist_of(module: str, facts: Mapping[str, Any]) -> str:
    top = module.split(".")[0]
    dists = facts.get("module_dists", {}).get(top)
    if dists:
        return _canon(str(dists[0]))
    return _canon(top)


def _module_of_path(path: str, facts: Mapping[str, Any]) -> str | None:
    """The top-level module a traceback file belongs to (site-packages or a PYTHONPATH dir)."""
    m = _SITE_RE.search(path)
    if m:
        return m.group(1).split(".")[0]
    for entry in facts.get("sys_path", ()):
        entry = str(entry).rstrip("/")
        if entry and path.startswith(entry + "/") and "/lib/python3" not in entry:
            rest = path[len(entry) + 1 :]
            return rest.split("/")[0].split(".")[0] if "/" in rest else None
    return None


def frame_packages(error_text: str, facts: Mapping[str, Any] | None = None) -> list[str]:
    """Distributions of the traceback frames, innermost last, consecutive repeats folded."""
    facts = facts or {}
    out: list[str] = []
    for path in _FRAME_RE.findall(error_text):
        module = _module_of_path(path, facts)
        if module is None:
            continue
        dist = _dist_of(module, facts)
        if not out or out[-1] != dist:
            out.append(dist)
    return out


def _torch_version(facts: Mapping[str, Any]) -> str:
    return str(facts.get("torch") or facts.get("versions", {}).get("torch") or "unknown")


def _version(dist: str, facts: Mapping[str, Any]) -> str:
    versions = facts.get("versions", {})
    return str(versions.get(dist) or versions.get(dist.replace("-", "_")) or "?")


def _release(version: str) -> str:
    return version.split("+")[0]


def _bound_hint(dist: str, facts: Mapping[str, Any]) -> str:
    """The bound data/rules.toml puts on ``dist`` for this torch (the rules lock applies)."""
    from packaging.version import InvalidVersion, Version

    from sdenv.checks import default_rules  # packaging: host side only, not at import time

    torch = _release(_torch_version(facts))
    try:
        Version(torch)
    except InvalidVersion:
        return ""
    for rule in default_rules():
        if (
            set(rule.when) == {"torch"}
            and dist in rule.require
            and rule.holds_for({"torch": torch})
        ):
            return f" ({dist}{rule.require[dist]} is known to work with torch {torch})"
    return ""


def _innermost_non_torch(frames: Sequence[str], default: str) -> str:
    for dist in reversed(frames):
        if dist != "torch":
            return dist
    return default


def _cuda_tuple(text: str | None) -> tuple[int, int] | None:
    m = re.match(r"(\d+)\.(\d+)", text or "")
    return (int(m.group(1)), int(m.group(2))) if m else None


def _abi_hint(culprit: str, facts: Mapping[str, Any]) -> str:
    torch = _torch_version(facts)
    if culprit != "xformers":
        return (
            f"{culprit} {_version(culprit, facts)} has a native extension built for another "
            f"torch than torch {torch}: install the {culprit} build made for torch {torch}"
        )
    built = facts.get("built_for_torch") or "another torch"
    have = _version("xformers", facts)
    match = XFORMERS_FOR_TORCH.get(_release(torch))
    fix = (
        f"install xformers=={match} (built for torch {_release(torch)})"
        if match and match != have
        else f"install the xformers built for torch {_release(torch)} (see its cpp_lib.json)"
        if not match
        else "reinstall it from a clean wheel"
    )
    also = (
        f", or torch=={_release(str(built))}"
        if built != "another torch" and _release(str(built)) != _release(torch)
        else ""
    )
    return (
        f"xformers {have} was built for torch {built} but torch {torch} runs: {fix}{also}; "
        "a --no-deps install or a metadata range (xformers>=0.0.35 accepts any newer torch) "
        "does not guarantee the ABI"
    )


def classify(
    check: str,
    error_text: str,
    facts: Mapping[str, Any] | None = None,
    *,
    log: str = "",
    summary: str | None = None,
) -> Failure:
    """Turn a failed check's error into a kind, culprit distributions and a fix hint.

    Pure: ``error_text`` is the check's own error (traceback, or "crashed: ..."/"timed out
    ..."), ``log`` the process's stderr (warnings, a faulthandler stack); the error is read
    first, so a stray warning in the log cannot override what the traceback says. ``facts`` is
    what the run gathered (``versions`` by distribution, ``torch``, ``torch_cuda``, ``driver``,
    ``cc``, ``arch_list``, ``built_for_torch``, ``module_dists``, ``sys_path``). Recorded
    strings from real failures (``docs/evidence.md#E-naive-resolve``) are its tests. ``summary``
    is the one-line error kept in the Failure (default: the last exception line of ``error_text``).
    """
    facts = facts or {}
    spec = _SPECS.get(check)
    default = spec.package if spec else check
    error = summary or _summary(error_text)
    found = _match(check, error_text, facts, default, error, log)
    if found is None and log:
        found = _match(check, log, facts, default, error, log)
    if found is None:
        culprit = _innermost_non_torch(frame_packages(error_text, facts), default)
        found = Failure(
            "error",
            [culprit],
            f"run the check alone to see the full error: python {TARGET_SCRIPT.name} {check}",
            error,
        )
    return found


def _match(
    check: str,
    error_text: str,
    facts: Mapping[str, Any],
    default: str,
    error: str,
    log: str,
) -> Failure | None:
    """The first rule that recognises ``error_text``, or None."""
    frames = frame_packages(error_text, facts)
    torch = _torch_version(facts)

    def fail(kind: str, culprits: Iterable[str], hint: str) -> Failure:
        unique = list(dict.fromkeys(c for c in culprits if c))
        return Failure(kind, unique or [default], hint, error)

    if error_text.startswith("timed out"):
        return fail(
            "timeout",
            [default],
            f"the {check} check hung; run it alone to see where: "
            f"python -X faulthandler {TARGET_SCRIPT.name} {check}",
        )
    if error_text.startswith("crashed"):
        # PYTHONFAULTHANDLER put the Python stack of the crash into the log.
        so = _SO_RE.search(log)
        module = _module_of_path(so.group(1), facts) if so else None
        culprit = (
            _dist_of(module, facts)
            if module
            else _innermost_non_torch(frame_packages(log, facts), default)
        )
        return fail(
            "crash",
            [culprit],
            f"a native extension crashed during the {check} check (often an ABI mismatch); "
            f"run it alone: python -X faulthandler {TARGET_SCRIPT.name} {check}",
        )
    missing_lib = _MISSING_LIB_RE.search(error_text)
    if missing_lib:
        so = _SO_RE.search(error_text)
        module = (_module_of_path(so.group(1), facts) if so else None) or default
        culprit = _dist_of(module, facts)
        lib = missing_lib.group(1)
        cuda_note = ""
        if "cudart" in lib or "cublas" in lib or "cuda" in lib:
            cuda_note = (
                f" (torch {torch} ships CUDA {facts.get('torch_cuda') or '?'}): "
                f"the extension was built for another CUDA major"
            )
        hint = (
            f"{culprit} {_version(culprit, facts)} needs {lib}, which this env lacks{cuda_note}; "
            + (
                _abi_hint(culprit, facts)
                if culprit == "xformers"
                else f"install the {culprit} build made for torch {torch}"
            )
        )
        return fail("missing-shared-library", [culprit], hint)
    if (
        "undefined symbol" in error_text
        or "C++ extension did not load" in error_text
        or "can't load C++/CUDA extensions" in error_text
    ):
        so = _SO_RE.search(error_text)
        module = (_module_of_path(so.group(1), facts) if so else None) or default
        culprit = _dist_of(module, facts)
        return fail("abi-mismatch", [culprit], _abi_hint(culprit, facts))
    if "no kernel image is available" in error_text:
        cc = facts.get("cc")
        arch_list = facts.get("arch_list") or []
        how = compat.arch_coverage(arch_list, cc).how if cc and arch_list else ""
        culprit = _innermost_non_torch(frames, "torch") if check != "cuda" else "torch"
        return fail(
            "no-kernel-image",
            [culprit],
            f"{culprit} {_version(culprit, facts)} has no kernel for this GPU (cc {cc or '?'})"
            + (f": {how}" if how else "")
            + "; install a build whose arch list covers it (Blackwell needs CUDA >= 12.8, "
            "torch >= 2.7)",
        )
    if (
        "driver on your system is too old" in error_text
        or "driver version is insufficient" in error_text
        or "cudaErrorInsufficientDriver" in error_text
    ):
        driver = facts.get("driver")
        cuda = _cuda_tuple(facts.get("torch_cuda"))
        if driver and driver != "unknown" and cuda:
            reason = compat.driver_fit(str(driver), cuda).reason
        else:
            reason = f"torch {torch} needs a newer NVIDIA driver"
        return fail(
            "driver-too-old",
            ["torch"],
            f"{reason}; or install a torch built for an older CUDA "
            "(any cu12x build runs on >= 525.60.13)",
        )
    if "Found no NVIDIA driver" in error_text or "no CUDA-capable device" in error_text:
        # The machine, not a package: no culprit distribution.
        return Failure(
            "no-gpu",
            [],
            "a GPU is wanted but torch finds no NVIDIA driver/device: run on a GPU machine "
            "(containers: --gpus all), or use --no-gpu",
            error,
        )
    if "CUDA out of memory" in error_text or "OutOfMemoryError" in error_text:
        return fail("gpu-memory", [default], "free the GPU (another process holds its memory)")
    attr = _TORCH_ATTR_RE.search(error_text)
    if attr or "infer_schema" in error_text or "nsupported type annotation" in error_text:
        culprit = _innermost_non_torch(frames, default)
        what = f"{attr.group(1)}.{attr.group(2)}" if attr else "a torch.library custom-op feature"
        return fail(
            "too-new-for-torch",
            [culprit],
            f"{culprit} {_version(culprit, facts)} uses {what}, which torch {torch} lacks: "
            f"{culprit} is too new for this torch; bound it{_bound_hint(culprit, facts)} "
            "or upgrade torch",
        )
    if "is_torch_available() is False" in error_text or "PyTorch was not found" in error_text:
        need = _TORCH_NEEDED_RE.search(error_text + "\n" + log)
        why = f" (it requires torch >= {need.group(1)})" if need else ""
        return fail(
            "backend-disabled",
            ["transformers"],
            f"transformers {_version('transformers', facts)} disabled its torch backend for "
            f"torch {torch}{why}: transformers is too new for this torch; bound it"
            f"{_bound_hint('transformers', facts)} or upgrade torch",
        )
    cannot = _CANNOT_IMPORT_RE.search(error_text)
    if cannot:
        provider = _dist_of(cannot.group(2), facts)
        importer = _innermost_non_torch([f for f in frames if f != provider], default)
        return fail(
            "api-mismatch",
            [importer, provider],
            f"{importer} {_version(importer, facts)} imports {cannot.group(1)} from "
            f"{cannot.group(2)}, which {provider} {_version(provider, facts)} does not provide: "
            f"bound {provider}{_bound_hint(provider, facts)} or upgrade {importer}",
        )
    nomod = _NO_MODULE_RE.search(error_text)
    if nomod:
        missing = _dist_of(nomod.group(1), facts)
        if missing == _canon(default) or missing == _canon(check):
            return fail(
                "not-installed", [missing], f"{missing} is not installed in this env: install it"
            )
        importer = _innermost_non_torch([f for f in frames if f != missing], default)
        return fail(
            "missing-dependency",
            [importer],
            f"{importer} {_version(importer, facts)} needs module {nomod.group(1)!r}, which is "
            f"not installed: install {missing} (a --no-deps install or an incomplete lock?), "
            f"or pick a {importer} version that does not need it",
        )
    if "CPU-only build" in error_text:
        return fail(
            "cpu-only-torch",
            ["torch"],
            f"torch {torch} has no CUDA: install a CUDA build (PyPI torch wheels are CUDA builds; "
            "a +cpu local version is not)",
        )
    if "is_available() is False" in error_text:
        return fail(
            "cuda-unavailable",
            ["torch"],
            "torch sees no usable GPU although a driver is loaded: check nvidia-smi, "
            "CUDA_VISIBLE_DEVICES and the container's GPU access",
        )
    if any(
        s in error_text for s in ("rel. error", "non-finite", "differs from", "round trip", "wrong")
    ):
        return fail(
            "numerics",
            [default],
            f"{default} {_version(default, facts)} computed a wrong answer in {check}: "
            "check the build (debug/emulated kernels) and report it upstream",
        )
    return None


def _summary(error_text: str) -> str:
    """The line that says what went wrong: the last exception line of a traceback."""
    lines = [ln.rstrip() for ln in error_text.strip().splitlines() if ln.strip()]
    for line in reversed(lines):
        if re.match(r"^[\w.]+(Error|Exception|Failed|Interrupt|Exit)\b", line) or line.startswith(
            ("crashed", "timed out")
        ):
            return line[:500]
    return (lines[-1] if lines else "")[:500]


# --------------------------------------------------------------------------- running


@dataclass
class _Raw:
    status: Status
    detail: str
    error: str
    facts: dict[str, Any]
    seconds: float
    log: str


def _child_env() -> dict[str, str]:
    env = dict(os.environ)
    env.update(
        PYTHONUNBUFFERED="1",
        PYTHONFAULTHANDLER="1",  # a segfault prints the Python stack on stderr
        HF_HUB_OFFLINE="1",  # a smoke test never downloads
        TRANSFORMERS_OFFLINE="1",
        TOKENIZERS_PARALLELISM="false",
    )
    return env


def _run_one(python: str, script: Path, name: str, gpu: bool | None, timeout: float) -> _Raw:
    flag = [] if gpu is None else ["--gpu" if gpu else "--no-gpu"]
    cmd = [python, str(script), name, *flag]
    start = time.perf_counter()
    try:
        # Its own session, so a timeout or a signal kills the whole process group (any workers
        # it started); it dies with sdenv even on a SIGKILL.
        proc = _cleanup.spawn(
            cmd,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            errors="replace",
            cwd=script.parent,
            env=_child_env(),
        )
    except OSError as exc:
        raise SmokeError(f"--python {python}: cannot run it ({exc.strerror or exc})") from exc
    try:
        stdout, stderr = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        _cleanup.release(proc, kill=True)
        stdout, stderr = proc.communicate()
        seconds = time.perf_counter() - start
        what = f"timed out after {timeout:g} s"
        return _Raw("fail", what, what, {}, seconds, stderr[-LOG_TAIL:])
    finally:
        _cleanup.release(proc, kill=True)
    seconds = time.perf_counter() - start
    log = stderr[-LOG_TAIL:]
    for line in reversed(stdout.splitlines()):
        if line.startswith(MARKER):
            record = json.loads(line[len(MARKER) :])
            status: Status = record["status"]
            error = record.get("error", "")
            return _Raw(status, record["detail"], error, record.get("facts", {}), seconds, log)
    if proc.returncode < 0:
        try:
            sig = signal.Signals(-proc.returncode).name
        except ValueError:
            sig = f"signal {-proc.returncode}"
        what = f"crashed: killed by {sig}"
    else:
        what = f"crashed: exited with code {proc.returncode} and no result"
    return _Raw("fail", what, what, {}, seconds, f"{log}\n{stdout[-1000:]}".strip())


def _select(only: Sequence[str] | None) -> list[CheckSpec]:
    if not only:
        return list(CHECKS)
    unknown = [n for n in only if n not in _SPECS]
    if unknown:
        raise UsageError(
            f"unknown smoke check {', '.join(unknown)}: choose from {', '.join(CHECK_NAMES)}"
        )
    wanted: set[str] = set()
    stack = list(only)
    while stack:
        name = stack.pop()
        if name not in wanted:
            wanted.add(name)
            spec = _SPECS[name]
            stack.extend(spec.needs + spec.needs_on_gpu)
    return [spec for spec in CHECKS if spec.name in wanted]


def _resolve_python(python: Path | str | None) -> str:
    if python is None:
        return sys.executable
    found = shutil.which(str(python)) if os.sep not in str(python) else None
    path = Path(found or python)
    if not path.exists():
        raise SmokeError(f"--python {python}: no such interpreter; pass a venv's bin/python")
    if path.is_dir():
        raise SmokeError(f"--python {python}: is a directory; pass a venv's bin/python")
    # Absolute (checks run in a temp dir) but not resolved: a venv's python is a symlink whose
    # target would run outside the venv.
    return os.path.abspath(path)


def run_smoke(
    python: Path | str | None = None,
    *,
    gpu: bool | None = None,
    timeout: float = 180.0,
    checks: Sequence[str] | None = None,
    workers: int | None = None,
) -> SmokeReport:
    """Smoke-test the environment of ``python`` (default: this interpreter).

    ``gpu``: None detects an NVIDIA driver inside the target; True makes a missing GPU a
    failure; False skips the GPU checks. ``timeout`` applies to each check's process.
    ``checks`` limits the run to those checks (their prerequisites are added).
    """
    started = time.perf_counter()
    exe = _resolve_python(python)
    selected = _select(checks)
    with throwaway_dir("sdenv-smoke-") as tmp:
        # A private copy: the script's directory lands first on sys.path and must shadow nothing.
        script = tmp / TARGET_SCRIPT.name
        shutil.copyfile(TARGET_SCRIPT, script)
        env = _run_env(exe, script, gpu, timeout)
        facts: dict[str, Any] = dict(env)
        use_gpu = bool(gpu) if gpu is not None else bool(env.get("gpu_wanted"))
        results = _run_graph(exe, script, selected, gpu, use_gpu, timeout, workers, facts)
    ordered = [results[spec.name] for spec in selected]
    culprits: list[str] = []
    for item in ordered:
        if item.failure:
            culprits.extend(c for c in item.failure.culprits if c not in culprits)
    ran_gpu = use_gpu and any(c.status != "skip" for c in ordered if _SPECS[c.name].gpu_only)
    return SmokeReport(
        python=exe,
        ok=all(c.status != "fail" for c in ordered),
        checks=ordered,
        gpu=ran_gpu,
        seconds=time.perf_counter() - started,
        culprits=culprits,
        facts=facts,
    )


def _run_env(exe: str, script: Path, gpu: bool | None, timeout: float) -> dict[str, Any]:
    """The stdlib-only ``env`` probe: proves the interpreter runs and gathers versions."""
    limit = min(timeout, 60.0)
    raw = _run_one(exe, script, "env", gpu, limit)
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


def _skip(name: str, reason: str) -> SmokeCheck:
    return SmokeCheck(name, "skip", reason, 0.0)


def _run_graph(
    exe: str,
    script: Path,
    selected: Sequence[CheckSpec],
    gpu_flag: bool | None,
    use_gpu: bool,
    timeout: float,
    workers: int | None,
    facts: dict[str, Any],
) -> dict[str, SmokeCheck]:
    """Run checks as their prerequisites pass, several processes at a time."""
    results: dict[str, SmokeCheck] = {}
    pending = {spec.name: spec for spec in selected}
    names = set(pending)
    for spec in selected:
        if spec.gpu_only and not use_gpu:
            reason = (
                "GPU checks off (--no-gpu)" if gpu_flag is False else "no NVIDIA GPU (no driver)"
            )
            results[spec.name] = _skip(spec.name, reason)
            del pending[spec.name]
    n_workers = workers or max(1, min(4, os.cpu_count() or 1))
    running: dict[Future[_Raw], str] = {}
    with ThreadPoolExecutor(max_workers=n_workers) as pool:
        while pending or running:
            progressed = True
            while progressed:  # skips can unblock further skips: repeat until nothing moves
                progressed = False
                for name, spec in list(pending.items()):
                    needs = [
                        n for n in spec.needs + (spec.needs_on_gpu if use_gpu else ()) if n in names
                    ]
                    if any(n not in results for n in needs):
                        continue
                    progressed = True
                    del pending[name]
                    blocked = [n for n in needs if results[n].status != "pass"]
                    if blocked:
                        dep = results[blocked[0]]
                        why = "failed" if dep.status == "fail" else f"skipped: {dep.detail}"
                        results[name] = _skip(name, f"needs {dep.name} ({why})")
                        continue
                    fut = pool.submit(_run_one, exe, script, name, use_gpu, timeout)
                    running[fut] = name
            if not running:
                if pending:  # unreachable with CHECKS' acyclic prerequisites; never spin
                    raise RuntimeError(f"smoke checks never became ready: {sorted(pending)}")
                continue
            done, _ = wait(running, return_when=FIRST_COMPLETED)
            for fut in done:
                name = running.pop(fut)
                results[name] = _finish(name, fut.result(), facts)
    return results


def _finish(name: str, raw: _Raw, facts: dict[str, Any]) -> SmokeCheck:
    # Facts of passing checks (torch's CUDA, the GPU's cc, xformers' build) sharpen later hints.
    facts.update({k: v for k, v in raw.facts.items() if not isinstance(v, dict)})
    failure = (
        classify(name, raw.error, facts, log=raw.log, summary=raw.detail)
        if raw.status == "fail"
        else None
    )
    # A failure keeps its traceback before the stderr tail; a pass only its stderr.
    log = f"{raw.error}\n{raw.log}".strip() if raw.status == "fail" else raw.log
    return SmokeCheck(name, raw.status, raw.detail, raw.seconds, failure, raw.facts, log)
