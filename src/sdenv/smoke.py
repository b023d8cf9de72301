"""Smoke-test an environment: imports with function, FP8 numerics, GPU kernels, classified failures.

The checks run in processes of the *target* interpreter (``sdenv.target.smoke``, standard
library + the packages under test), under a timeout, so a segfault, an ``undefined symbol`` or a
hang in one import cannot take the run down: the ones where a crash is plausible one per process,
the rest together in one process whose failures are re-run alone (``sdenv._smoke_run``).
Failures are classified by ``classify``, a pure function of the check name, the error text and
the facts gathered, into a kind, the distributions to blame and a fix hint: an ordered table of
small classifiers, the first that recognises the text decides. Rendering-free: the CLI draws
the table.

This module is imported by the CLI (and by ``lock``/``verify``/the image builder): standard
library + sdenv.gpu.compat only at import time.
"""

from __future__ import annotations

import re
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from sdenv import _target
from sdenv._cleanup import throwaway_dir
from sdenv._data import load_json
from sdenv._smoke_run import (
    LOG_TAIL,
    Attach,
    Raw,
    SmokeError,
    resolve_python,
    run_checks,
    run_env,
)
from sdenv.gpu import compat

# The check table and report types (sdenv.smoke_checks) are part of this module's API.
from sdenv.smoke_checks import (
    _SPECS,
    CHECK_NAMES,
    CHECKS,
    KINDS,
    CheckSpec,
    Failure,
    SmokeCheck,
    SmokeReport,
    Status,
    select,
)

__all__ = [
    "CHECKS",
    "CHECK_NAMES",
    "KINDS",
    "LOG_TAIL",
    "CheckSpec",
    "Failure",
    "SmokeCheck",
    "SmokeError",
    "SmokeReport",
    "Status",
    "classify",
    "frame_packages",
    "run_smoke",
]


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

    from sdenv.lock.checks import default_rules  # packaging: host side only, not at import time

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
    found = _match(_Case(check, error_text, facts, default, error, log))
    if found is None and log:
        found = _match(_Case(check, log, facts, default, error, log))
    if found is None:
        culprit = _innermost_non_torch(frame_packages(error_text, facts), default)
        found = Failure(
            "error", [culprit], f"run the check alone to see the full error: {_alone(check)}", error
        )
    return found


def _alone(check: str) -> str:
    return f"sdenv smoke --python <the env's python> --check {check}"


@dataclass(frozen=True)
class _Case:
    """What the classifiers read: the failed check, the text under test and the run's facts."""

    check: str
    text: str  # the error (or, on a second pass, the log)
    facts: Mapping[str, Any]
    default: str  # the check's own distribution
    error: str  # the one-line summary kept in the Failure
    log: str

    @property
    def frames(self) -> list[str]:
        return frame_packages(self.text, self.facts)

    @property
    def torch(self) -> str:
        return _torch_version(self.facts)

    def fail(self, kind: str, culprits: Iterable[str], hint: str) -> Failure:
        unique = list(dict.fromkeys(c for c in culprits if c))
        return Failure(kind, unique or [self.default], hint, self.error)

    def so_culprit(self, text: str) -> str:
        """The distribution of the shared object an error names, else the check's own."""
        so = _SO_RE.search(text)
        module = (_module_of_path(so.group(1), self.facts) if so else None) or self.default
        return _dist_of(module, self.facts)


def _timeout(c: _Case) -> Failure | None:
    if not c.text.startswith("timed out"):
        return None
    return c.fail(
        "timeout",
        [c.default],
        f"the {c.check} check hung; run it alone to see where: {_alone(c.check)}",
    )


def _crash(c: _Case) -> Failure | None:
    if not c.text.startswith("crashed"):
        return None
    # PYTHONFAULTHANDLER put the Python stack of the crash into the log.
    so = _SO_RE.search(c.log)
    module = _module_of_path(so.group(1), c.facts) if so else None
    culprit = (
        _dist_of(module, c.facts)
        if module
        else _innermost_non_torch(frame_packages(c.log, c.facts), c.default)
    )
    return c.fail(
        "crash",
        [culprit],
        f"a native extension crashed during the {c.check} check (often an ABI mismatch); "
        f"run it alone: {_alone(c.check)}",
    )


def _missing_library(c: _Case) -> Failure | None:
    missing_lib = _MISSING_LIB_RE.search(c.text)
    if not missing_lib:
        return None
    culprit = c.so_culprit(c.text)
    lib = missing_lib.group(1)
    cuda_note = ""
    if "cudart" in lib or "cublas" in lib or "cuda" in lib:
        cuda_note = (
            f" (torch {c.torch} ships CUDA {c.facts.get('torch_cuda') or '?'}): "
            f"the extension was built for another CUDA major"
        )
    hint = (
        f"{culprit} {_version(culprit, c.facts)} needs {lib}, which this env lacks{cuda_note}; "
        + (
            _abi_hint(culprit, c.facts)
            if culprit == "xformers"
            else f"install the {culprit} build made for torch {c.torch}"
        )
    )
    return c.fail("missing-shared-library", [culprit], hint)


_ABI_SIGNS = ("undefined symbol", "C++ extension did not load", "can't load C++/CUDA extensions")


def _abi(c: _Case) -> Failure | None:
    if not any(sign in c.text for sign in _ABI_SIGNS):
        return None
    culprit = c.so_culprit(c.text)
    return c.fail("abi-mismatch", [culprit], _abi_hint(culprit, c.facts))


def _no_kernel(c: _Case) -> Failure | None:
    if "no kernel image is available" not in c.text:
        return None
    cc = c.facts.get("cc")
    arch_list = c.facts.get("arch_list") or []
    how = compat.arch_coverage(arch_list, cc).how if cc and arch_list else ""
    culprit = _innermost_non_torch(c.frames, "torch") if c.check != "cuda" else "torch"
    return c.fail(
        "no-kernel-image",
        [culprit],
        f"{culprit} {_version(culprit, c.facts)} has no kernel for this GPU (cc {cc or '?'})"
        + (f": {how}" if how else "")
        + "; install a build whose arch list covers it (Blackwell needs CUDA >= 12.8, "
        "torch >= 2.7)",
    )


_OLD_DRIVER_SIGNS = (
    "driver on your system is too old",
    "driver version is insufficient",
    "cudaErrorInsufficientDriver",
)


def _old_driver(c: _Case) -> Failure | None:
    if not any(sign in c.text for sign in _OLD_DRIVER_SIGNS):
        return None
    driver = c.facts.get("driver")
    cuda = _cuda_tuple(c.facts.get("torch_cuda"))
    if driver and driver != "unknown" and cuda:
        reason = compat.driver_fit(str(driver), cuda).reason
    else:
        reason = f"torch {c.torch} needs a newer NVIDIA driver"
    return c.fail(
        "driver-too-old",
        ["torch"],
        f"{reason}; or install a torch built for an older CUDA "
        "(any cu12x build runs on >= 525.60.13)",
    )


def _no_gpu(c: _Case) -> Failure | None:
    if "Found no NVIDIA driver" not in c.text and "no CUDA-capable device" not in c.text:
        return None
    # The machine, not a package: no culprit distribution.
    return Failure(
        "no-gpu",
        [],
        "a GPU is wanted but torch finds no NVIDIA driver/device: run on a GPU machine "
        "(containers: --gpus all), or use --no-gpu",
        c.error,
    )


def _gpu_memory(c: _Case) -> Failure | None:
    if "CUDA out of memory" not in c.text and "OutOfMemoryError" not in c.text:
        return None
    return c.fail("gpu-memory", [c.default], "free the GPU (another process holds its memory)")


def _too_new(c: _Case) -> Failure | None:
    attr = _TORCH_ATTR_RE.search(c.text)
    if not (attr or "infer_schema" in c.text or "nsupported type annotation" in c.text):
        return None
    culprit = _innermost_non_torch(c.frames, c.default)
    what = f"{attr.group(1)}.{attr.group(2)}" if attr else "a torch.library custom-op feature"
    return c.fail(
        "too-new-for-torch",
        [culprit],
        f"{culprit} {_version(culprit, c.facts)} uses {what}, which torch {c.torch} lacks: "
        f"{culprit} is too new for this torch; bound it{_bound_hint(culprit, c.facts)} "
        "or upgrade torch",
    )


def _backend_disabled(c: _Case) -> Failure | None:
    if "is_torch_available() is False" not in c.text and "PyTorch was not found" not in c.text:
        return None
    need = _TORCH_NEEDED_RE.search(c.text + "\n" + c.log)
    why = f" (it requires torch >= {need.group(1)})" if need else ""
    return c.fail(
        "backend-disabled",
        ["transformers"],
        f"transformers {_version('transformers', c.facts)} disabled its torch backend for "
        f"torch {c.torch}{why}: transformers is too new for this torch; bound it"
        f"{_bound_hint('transformers', c.facts)} or upgrade torch",
    )


def _cannot_import(c: _Case) -> Failure | None:
    cannot = _CANNOT_IMPORT_RE.search(c.text)
    if not cannot:
        return None
    provider = _dist_of(cannot.group(2), c.facts)
    importer = _innermost_non_torch([f for f in c.frames if f != provider], c.default)
    return c.fail(
        "api-mismatch",
        [importer, provider],
        f"{importer} {_version(importer, c.facts)} imports {cannot.group(1)} from "
        f"{cannot.group(2)}, which {provider} {_version(provider, c.facts)} does not provide: "
        f"bound {provider}{_bound_hint(provider, c.facts)} or upgrade {importer}",
    )


def _no_module(c: _Case) -> Failure | None:
    nomod = _NO_MODULE_RE.search(c.text)
    if not nomod:
        return None
    missing = _dist_of(nomod.group(1), c.facts)
    if missing in (_canon(c.default), _canon(c.check)):
        return c.fail(
            "not-installed", [missing], f"{missing} is not installed in this env: install it"
        )
    importer = _innermost_non_torch([f for f in c.frames if f != missing], c.default)
    return c.fail(
        "missing-dependency",
        [importer],
        f"{importer} {_version(importer, c.facts)} needs module {nomod.group(1)!r}, which is "
        f"not installed: install {missing} (a --no-deps install or an incomplete lock?), "
        f"or pick a {importer} version that does not need it",
    )


def _cpu_only(c: _Case) -> Failure | None:
    if "CPU-only build" not in c.text:
        return None
    return c.fail(
        "cpu-only-torch",
        ["torch"],
        f"torch {c.torch} has no CUDA: install a CUDA build (PyPI torch wheels are CUDA builds; "
        "a +cpu local version is not)",
    )


def _cuda_unavailable(c: _Case) -> Failure | None:
    if "is_available() is False" not in c.text:
        return None
    return c.fail(
        "cuda-unavailable",
        ["torch"],
        "torch sees no usable GPU although a driver is loaded: check nvidia-smi, "
        "CUDA_VISIBLE_DEVICES and the container's GPU access",
    )


_NUMERICS_SIGNS = ("rel. error", "non-finite", "differs from", "round trip", "wrong")


def _numerics(c: _Case) -> Failure | None:
    if not any(sign in c.text for sign in _NUMERICS_SIGNS):
        return None
    return c.fail(
        "numerics",
        [c.default],
        f"{c.default} {_version(c.default, c.facts)} computed a wrong answer in {c.check}: "
        "check the build (debug/emulated kernels) and report it upstream",
    )


# In order: the first classifier that recognises the text decides (a process's death before
# anything it printed; the most specific loader/driver messages before generic import errors).
_CLASSIFIERS: tuple[Callable[[_Case], Failure | None], ...] = (
    _timeout,
    _crash,
    _missing_library,
    _abi,
    _no_kernel,
    _old_driver,
    _no_gpu,
    _gpu_memory,
    _too_new,
    _backend_disabled,
    _cannot_import,
    _no_module,
    _cpu_only,
    _cuda_unavailable,
    _numerics,
)


def _match(case: _Case) -> Failure | None:
    """The first classifier that recognises ``case.text``, or None."""
    for classifier in _CLASSIFIERS:
        found = classifier(case)
        if found is not None:
            return found
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


def run_smoke(
    python: Path | str | None = None,
    *,
    gpu: bool | None = None,
    timeout: float = 180.0,
    checks: Sequence[str] | None = None,
    workers: int | None = None,
    attach: Attach | None = None,
) -> SmokeReport:
    """Smoke-test the environment of ``python`` (default: this interpreter).

    ``gpu``: None detects an NVIDIA driver inside the target; True makes a missing GPU a
    failure; False skips the GPU checks. ``timeout`` applies to each check's process.
    ``checks`` limits the run to those checks (their prerequisites are added). ``attach``: a
    process of ``python`` already running that may run the ``imports`` group (verify's model
    check); what it cannot answer runs in processes of its own, as always.
    """
    started = time.perf_counter()
    exe = resolve_python(python)
    selected = select(checks)
    with throwaway_dir("sdenv-smoke-") as tmp:
        # A private copy of sdenv.target: the target has no sdenv, and the copy shadows nothing.
        root = _target.stage(tmp)
        env = run_env(exe, root, gpu, timeout)
        facts: dict[str, Any] = dict(env)
        use_gpu = bool(gpu) if gpu is not None else bool(env.get("gpu_wanted"))
        results: dict[str, SmokeCheck] = {}

        def record(name: str, raw: Raw) -> None:
            results[name] = _finish(name, raw, facts)

        run_checks(exe, root, selected, gpu, use_gpu, timeout, workers, record, attach)
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


def _finish(name: str, raw: Raw, facts: dict[str, Any]) -> SmokeCheck:
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
