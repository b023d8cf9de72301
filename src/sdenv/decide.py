"""From recorded machine facts to verdicts: FP8 per GPU, fit checks, env choice, memory advice.

Pure and standard-library only (plus ``sdenv.compat``): ``decide`` reads a ``MachineFacts``
(collected by ``sdenv.probe`` or loaded from ``sdenv/data/machines/*.json``) and never touches a
GPU, so every rule is tested on fact sets recorded from real and documented machines.

FP8 verdicts (per GPU), two of them, and what this env runs:
- ``hardware`` (``fp8_verdict``): ``native`` when cc >= 8.9 (FP8 tensor cores), torch has float8
  dtypes and a real ``torch._scaled_mm`` on e4m3 inputs matched a bf16 reference (or, torch not
  checked, predicted from cc alone: ``checked`` is then False); ``emulated`` with float8 dtypes
  but no FP8 tensor cores (weights stored in FP8, compute in bf16, fp16 below cc 8.0);
  ``unsupported`` without torch, float8 dtypes or a usable GPU.
- ``stack`` (``stack_verdict``): this interpreter's FP8 backend (torchao) imports, its version is
  the one built for the installed torch (``data/fp8_backends.json``) and the transform ``generate``
  deploys matched bf16 on a tiny Linear on that GPU.
- ``fp8`` (``effective_verdict``): the lower of the two, what the model step will run. Where the
  hardware is native and the env is not, ``native_env`` names the env spec that runs native here.
"""

from __future__ import annotations

import dataclasses
import json
import re
import types
import typing
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

from sdenv.compat import (
    FP8_NATIVE_MIN_CC,
    TORCH_ARCH_LISTS,
    XFORMERS_ARCH_LISTS,
    arch_coverage,
    driver_fit,
    parse_cc,
)
from sdenv.fp8 import BACKEND, TransformFacts, backend_support

SCHEMA = 1
MACHINES_DIR = Path(__file__).parent / "data" / "machines"

# float8 dtypes arrived in torch 2.1 (e4m3fn/e5m2); _scaled_mm returns a Tensor since 2.4.
FP8_DTYPE = "float8_e4m3fn"
BF16_MIN_CC = (8, 0)


# --------------------------------------------------------------------------------------------
# Facts: what a probe saw (JSON-serialisable; the recorded table uses exactly this shape).
# --------------------------------------------------------------------------------------------


@dataclass
class DriverFacts:
    version: str | None = None  # "580.159.04"; None: no NVIDIA driver seen
    cuda: str | None = None  # highest CUDA this driver supports, "13.0"
    source: str = "none"  # nvml | nvidia-smi | proc | none


@dataclass
class GpuFacts:
    index: int
    name: str
    cc: str | None = None  # "9.0"; None where the source cannot tell (/proc)
    memory_total_mib: int | None = None
    memory_free_mib: int | None = None
    mig_mode: str | None = None  # "enabled" | "disabled" | None (not supported / unknown)
    uuid: str | None = None
    source: str = "nvml"  # nvml | nvidia-smi | proc | torch


@dataclass
class ScaledMmFacts:
    """A real ``torch._scaled_mm`` on small e4m3 inputs against a bf16 reference."""

    ran: bool = False
    ok: bool = False
    signature: str | None = None  # "tensor" (torch >= 2.4) | "tuple" (2.1-2.3: (out, amax))
    shape: str = ""  # "MxKxN", all multiples of 16 as _scaled_mm demands
    max_rel_err: float | None = None
    tolerance: float | None = None
    error: str | None = None  # the exception, one line
    skipped: str | None = None  # why it was not run


@dataclass
class TorchDeviceFacts:
    index: int  # torch's index (after CUDA_VISIBLE_DEVICES)
    name: str
    cc: str
    uuid: str | None = None
    memory_total_mib: int | None = None
    memory_free_mib: int | None = None
    kernel_ok: bool = False
    kernel_error: str | None = None
    scaled_mm: ScaledMmFacts | None = None
    # The native FP8 transform sdenv deploys (sdenv.fp8.apply_native) on a tiny Linear here.
    fp8_transform: TransformFacts | None = None


@dataclass
class Fp8BackendFacts:
    """The FP8 backend of this interpreter (torchao), as imported by the probe."""

    name: str = BACKEND
    version: str | None = None  # None: not installed
    import_error: str | None = None  # installed but ``import torchao`` failed


@dataclass
class XformersFacts:
    """What an installed xformers records in ``xformers/cpp_lib.json`` (read, never imported)."""

    version: str | None = None
    built_for_torch: str | None = None  # "2.4.1+cu121"
    built_for_cuda: str | None = None  # "12.1"
    arch_list: str | None = None  # TORCH_CUDA_ARCH_LIST, "6.0+PTX 7.0 7.5 8.0+PTX 9.0a"
    error: str | None = None


@dataclass
class TorchFacts:
    installed: bool = False
    version: str | None = None
    import_error: str | None = None
    cuda_build: str | None = None  # torch.version.cuda; None for CPU builds
    arch_list: list[str] = field(default_factory=list)
    float8_dtypes: list[str] = field(default_factory=list)
    cuda_available: bool = False
    cuda_error: str | None = None  # why torch.cuda is unavailable, as torch said it
    devices: list[TorchDeviceFacts] = field(default_factory=list)
    seconds: float = 0.0
    fp8_backend: Fp8BackendFacts | None = None  # None: not checked (recorded before it existed)


@dataclass
class MachineFacts:
    schema: int = SCHEMA
    label: str = ""
    source: str = "collected"  # provenance: "recorded ..." or "public: ..." with its sources
    collected_at: str = ""
    python: str = ""
    platform: str = ""
    driver: DriverFacts = field(default_factory=DriverFacts)
    gpus: list[GpuFacts] = field(default_factory=list)
    torch: TorchFacts | None = None  # None: not checked (--no-torch)
    xformers: XformersFacts | None = None  # None: not installed
    notes: list[str] = field(default_factory=list)  # why each fact source failed
    seconds: float = 0.0
    # Installed versions read from package metadata without importing (torch, torchao, ...):
    # what a torch-free probe predicts the stack verdict from.
    packages: dict[str, str] = field(default_factory=dict)

    def to_json(self) -> str:
        return json.dumps(dataclasses.asdict(self), indent=2) + "\n"

    @classmethod
    def from_dict(cls, data: Mapping[str, Any], where: str = "facts") -> MachineFacts:
        facts = _build(cls, data, where)
        assert isinstance(facts, MachineFacts)
        if facts.schema != SCHEMA:
            raise FactsError(f"{where}: schema {facts.schema} unsupported; expected {SCHEMA}")
        # A cc is compared as a version everywhere after this: refuse one that is not, here.
        ccs = [(f"gpus[{i}]", g.cc) for i, g in enumerate(facts.gpus)]
        if facts.torch is not None:
            ccs += [(f"torch.devices[{i}]", d.cc) for i, d in enumerate(facts.torch.devices)]
        for field_, cc in ccs:
            if cc is None:
                continue
            try:
                parse_cc(cc)
            except ValueError:
                raise FactsError(
                    f"{where}.{field_}.cc: {cc!r} is not a compute capability such as '8.9'; "
                    "fix it or re-record the facts with `sdenv probe --save-facts`"
                ) from None
        return facts

    @classmethod
    def from_json(cls, text: str, where: str = "facts") -> MachineFacts:
        try:
            data = json.loads(text)
        except json.JSONDecodeError as exc:
            raise FactsError(f"{where}: invalid JSON: {exc}; fix or re-record the file") from exc
        if not isinstance(data, dict):
            raise FactsError(f"{where}: expected a JSON object; re-record with `sdenv probe`")
        return cls.from_dict(data, where)


class FactsError(ValueError):
    """A fact set that does not match the schema; the message names the field."""


def _build(tp: Any, value: Any, where: str) -> Any:
    origin = typing.get_origin(tp)
    if origin in (typing.Union, types.UnionType):
        args = typing.get_args(tp)
        if value is None and type(None) in args:
            return None
        (inner,) = [a for a in args if a is not type(None)]
        return _build(inner, value, where)
    if dataclasses.is_dataclass(tp):
        if not isinstance(value, dict):
            raise FactsError(f"{where}: expected an object, got {type(value).__name__}")
        hints = typing.get_type_hints(tp)
        names = {f.name for f in dataclasses.fields(tp)}
        unknown = sorted(set(value) - names)
        if unknown:
            raise FactsError(f"{where}: unknown field {unknown[0]!r}; known: {sorted(names)}")
        kwargs = {k: _build(hints[k], v, f"{where}.{k}") for k, v in value.items()}
        try:
            return typing.cast(Any, tp)(**kwargs)
        except TypeError as exc:
            raise FactsError(f"{where}: {exc}") from exc
    if origin is list:
        if not isinstance(value, list):
            raise FactsError(f"{where}: expected a list, got {type(value).__name__}")
        (inner,) = typing.get_args(tp)
        return [_build(inner, v, f"{where}[{i}]") for i, v in enumerate(value)]
    if tp is float and isinstance(value, int) and not isinstance(value, bool):
        return float(value)
    if tp in (str, int, float, bool) and not (
        isinstance(value, tp) and not (tp is int and isinstance(value, bool))
    ):
        raise FactsError(f"{where}: expected {tp.__name__}, got {value!r}")
    return value


def recorded_machines(directory: Path = MACHINES_DIR) -> dict[str, MachineFacts]:
    """The recorded table: file stem -> facts (``h100``, ``a100``, ``rtx5090-cu121``, ...)."""
    return {
        p.stem: MachineFacts.from_json(p.read_text(encoding="utf-8"), str(p))
        for p in sorted(directory.glob("*.json"))
    }


# --------------------------------------------------------------------------------------------
# Report
# --------------------------------------------------------------------------------------------


@dataclass
class Check:
    name: str  # driver | torch-cuda | torch-kernel | torch-arch | xformers-arch | env-* ...
    status: str  # pass | warn | fail | skip
    reason: str
    gpu: int | None = None
    env: str | None = None


@dataclass
class Fp8Verdict:
    verdict: str  # native | emulated | unsupported
    reason: str
    compute_dtype: str | None = None  # bfloat16 | float16 (what the matmuls run in)
    checked: bool = False  # True: torch ran the check here; False: predicted from facts alone


@dataclass
class GpuReport:
    index: int
    name: str
    cc: str | None
    memory_total_mib: int | None
    memory_free_mib: int | None
    mig_mode: str | None
    fp8: Fp8Verdict  # what this env runs on this GPU: the lower of hardware and stack
    checks: list[Check] = field(default_factory=list)
    hardware: Fp8Verdict | None = None  # FP8 tensor cores, float8 dtypes, a real _scaled_mm
    stack: Fp8Verdict | None = None  # this interpreter's FP8 backend and the deployed transform


@dataclass
class EnvFit:
    env: str
    cuda: str
    status: str  # pass | warn | fail
    reason: str
    checks: list[Check] = field(default_factory=list)


@dataclass
class MemoryPlan:
    model: str  # large | medium
    precision: str  # bf16 | fp8 (transformer + T5-XXL stored in FP8; CLIPs and VAE bf16)
    placement: str  # gpu (all resident) | model-offload (one component at a time)
    need_gib: float
    components_gib: dict[str, float]
    usable: bool  # fp8 plans need fp8_mode != off
    fits: bool | None  # None: no GPU to compare with


@dataclass
class MemoryReport:
    gpu: int | None
    free_gib: float | None
    reserve_gib: float
    plans: list[MemoryPlan]
    recommended: str | None  # "large/fp8/gpu"
    advice: str


@dataclass
class ProbeReport:
    facts: MachineFacts
    gpus: list[GpuReport]
    fp8_mode: str  # native | emulated | off: the loading mode the model step will use
    fp8_mode_reason: str
    checks: list[Check]
    envs: list[EnvFit]
    recommended_env: str | None
    recommended_env_reason: str
    memory: MemoryReport
    # The shipped env that runs FP8 native on this box (None: the hardware is not native, or no
    # env promising native fits); named whenever this env runs less than the hardware could.
    native_env: str | None = None
    fp8_advisory: str | None = None  # one line, set when the hardware is native but fp8_mode not
    fp8_hardware_mode: str = "off"  # what the model GPU's hardware alone could run


class EnvLike(Protocol):
    """The parts of ``sdenv.lock.spec.EnvSpec`` the decision reads (not imported: stdlib only)."""

    @property
    def name(self) -> str: ...
    @property
    def cuda(self) -> str: ...
    @property
    def cuda_version(self) -> tuple[int, int]: ...
    @property
    def compute_capabilities(self) -> tuple[str, ...]: ...
    @property
    def fp8(self) -> str: ...
    @property
    def requirements(self) -> Mapping[str, str]: ...


# --------------------------------------------------------------------------------------------
# FP8 verdict
# --------------------------------------------------------------------------------------------


def _cc_tuple(cc: str | None) -> tuple[int, int] | None:
    return parse_cc(cc) if cc else None


def _compute_dtype(cc: tuple[int, int]) -> str:
    # bf16 needs Ampere (8.0); Turing and older compute in fp16.
    return "bfloat16" if cc >= BF16_MIN_CC else "float16"


def _torch_device_for(gpu: GpuFacts, torch: TorchFacts) -> TorchDeviceFacts | None:
    """Join an NVML GPU to torch's view: by UUID, else by index (CUDA_VISIBLE_DEVICES unset)."""
    if gpu.uuid:
        for dev in torch.devices:
            if dev.uuid and _norm_uuid(dev.uuid) == _norm_uuid(gpu.uuid):
                return dev
        if any(dev.uuid for dev in torch.devices):
            return None
    for dev in torch.devices:
        if dev.index == gpu.index:
            return dev
    return None


def _norm_uuid(uuid: str) -> str:
    return uuid.lower().removeprefix("gpu-").removeprefix("mig-")


def _native_cc_text(cc: tuple[int, int]) -> str:
    floor = f"{FP8_NATIVE_MIN_CC[0]}.{FP8_NATIVE_MIN_CC[1]}"
    return f"cc {cc[0]}.{cc[1]} {'>=' if cc >= FP8_NATIVE_MIN_CC else '<'} {floor}"


def fp8_verdict(gpu: GpuFacts, facts: MachineFacts) -> Fp8Verdict:
    cc = _cc_tuple(gpu.cc)
    torch = facts.torch
    if torch is None:
        # Torch-free probe: a prediction from the hardware alone, marked unchecked.
        if cc is None:
            return Fp8Verdict("unsupported", "compute capability unknown (no NVML/nvidia-smi)")
        if cc >= FP8_NATIVE_MIN_CC:
            return Fp8Verdict(
                "native",
                f"{_native_cc_text(cc)}: FP8 tensor cores (predicted; torch not checked)",
                "bfloat16",
            )
        return Fp8Verdict(
            "emulated",
            f"{_native_cc_text(cc)}: no FP8 tensor cores; FP8 storage, "
            f"{_compute_dtype(cc)} compute (predicted; torch not checked)",
            _compute_dtype(cc),
        )
    if not torch.installed:
        return Fp8Verdict("unsupported", f"torch not importable: {torch.import_error}", None, True)
    if FP8_DTYPE not in torch.float8_dtypes:
        return Fp8Verdict(
            "unsupported",
            f"torch {torch.version} has no float8 dtypes (needs torch >= 2.1; envs pin >= 2.4)",
            None,
            True,
        )
    if not torch.cuda_build:
        return Fp8Verdict(
            "unsupported",
            f"torch {torch.version} is a CPU-only build: install a CUDA build",
            None,
            True,
        )
    if not torch.cuda_available:
        return Fp8Verdict(
            "unsupported",
            f"torch {torch.version} cannot use the GPU: {torch.cuda_error or 'CUDA unavailable'}",
            None,
            True,
        )
    dev = _torch_device_for(gpu, torch)
    if dev is None:
        return Fp8Verdict(
            "unsupported", "not visible to torch (hidden by CUDA_VISIBLE_DEVICES?)", None, True
        )
    cc = parse_cc(dev.cc)
    if not dev.kernel_ok:
        return Fp8Verdict("unsupported", _kernel_reason(dev, torch), None, True)
    if cc < FP8_NATIVE_MIN_CC:
        dtype = _compute_dtype(cc)
        return Fp8Verdict(
            "emulated",
            f"{_native_cc_text(cc)}: no FP8 tensor cores; weights stored in FP8, "
            f"compute in {dtype}",
            dtype,
            True,
        )
    mm = dev.scaled_mm
    if mm is None or not mm.ran:
        why = (mm.skipped if mm else None) or "not recorded"
        return Fp8Verdict(
            "native",
            f"{_native_cc_text(cc)}: FP8 tensor cores (predicted; _scaled_mm not run: {why})",
            "bfloat16",
            False,
        )
    if mm.ok:
        # torch <= 2.4.1 returns (out, amax); 2.5+ a Tensor.
        sig = "" if mm.signature == "tensor" else f", {mm.signature} return of torch < 2.5"
        return Fp8Verdict(
            "native",
            f"{_native_cc_text(cc)}: torch._scaled_mm e4m3 {mm.shape} matched bf16 "
            f"(max rel err {mm.max_rel_err:.2g} <= {mm.tolerance}{sig})",
            "bfloat16",
            True,
        )
    problem = mm.error or (
        f"max rel err {mm.max_rel_err:.2g} > {mm.tolerance}"
        if mm.max_rel_err is not None
        else "no result"
    )
    return Fp8Verdict(
        "emulated",
        f"{_native_cc_text(cc)} but torch._scaled_mm failed ({problem}): FP8 storage, bf16 compute",
        "bfloat16",
        True,
    )


_ORDER = {"unsupported": 0, "emulated": 1, "native": 2}


def stack_verdict(gpu: GpuFacts, facts: MachineFacts) -> Fp8Verdict:
    """Can this interpreter run sdenv's native FP8 transform on this GPU?

    ``native``: torchao imports, its version is in the range built for the installed torch
    (``data/fp8_backends.json``) and the deployed transform on a tiny Linear on this GPU matched
    bf16. ``emulated``: float8 dtypes but no usable backend (FP8 storage, bf16 compute).
    ``unsupported``: no torch with float8 dtypes. Without torch (``--no-torch``) the verdict is
    predicted from package metadata alone and marked unchecked.
    """
    torch = facts.torch
    if torch is None:
        version = facts.packages.get("torch")
        if version is None:
            return Fp8Verdict("unsupported", "torch is not installed (predicted)", None, False)
        sup = backend_support(version, facts.packages.get(BACKEND))
        verdict = "native" if sup.ok else "emulated"
        return Fp8Verdict(verdict, f"{sup.reason} (predicted; not imported)", "bfloat16", False)
    if not torch.installed or not torch.version:
        return Fp8Verdict("unsupported", f"torch not importable: {torch.import_error}", None, True)
    if FP8_DTYPE not in torch.float8_dtypes:
        return Fp8Verdict("unsupported", f"torch {torch.version} has no float8 dtypes", None, True)
    backend = torch.fp8_backend
    if backend is None:
        return Fp8Verdict("emulated", f"{BACKEND} not checked by this probe", "bfloat16", False)
    if backend.import_error:
        return Fp8Verdict(
            "emulated",
            f"{BACKEND} {backend.version} does not import on torch {torch.version}: "
            f"{backend.import_error}",
            "bfloat16",
            True,
        )
    sup = backend_support(torch.version, backend.version)
    if not sup.ok:
        return Fp8Verdict("emulated", sup.reason, "bfloat16", True)
    dev = _torch_device_for(gpu, torch) if torch.cuda_available else None
    check = dev.fp8_transform if dev is not None else None
    if check is None or not check.ran:
        why = (check.skipped or check.error) if check else "torch cannot use this GPU"
        return Fp8Verdict(
            "native", f"{sup.reason}; the transform was not run here: {why}", "bfloat16", False
        )
    if check.ok:
        return Fp8Verdict(
            "native",
            f"{sup.reason}; its FP8 transform on a {check.shape} Linear matched bf16 "
            f"(rel err {check.rel_err:.2g} <= {check.tolerance})",
            "bfloat16",
            True,
        )
    problem = check.error or f"rel err {check.rel_err} > {check.tolerance}"
    why = f"{BACKEND} {backend.version}: FP8 transform failed: {problem}"
    return Fp8Verdict("emulated", why, "bfloat16", True)


def effective_verdict(hardware: Fp8Verdict, stack: Fp8Verdict) -> Fp8Verdict:
    """What this env runs on the GPU: native only when both the hardware and the stack are."""
    if _ORDER[hardware.verdict] <= _ORDER[stack.verdict]:
        if hardware.verdict != "native":
            return hardware
        return dataclasses.replace(
            hardware,
            reason=f"{hardware.reason}; {stack.reason}",
            checked=hardware.checked and stack.checked,
        )
    return dataclasses.replace(
        stack,
        reason=f"FP8 tensor cores, but this env runs FP8 {stack.verdict}: {stack.reason}",
        compute_dtype=stack.compute_dtype or hardware.compute_dtype,
    )


def _kernel_reason(dev: TorchDeviceFacts, torch: TorchFacts) -> str:
    error = dev.kernel_error or "unknown error"
    if "no kernel image" in error:
        archs = " ".join(torch.arch_list) or "none"
        return (
            f"no kernel image for sm_{dev.cc.replace('.', '')} in torch {torch.version} "
            f"(arch list: {archs}): install a build whose arch list covers cc {dev.cc}"
            + (" (cu128 or newer for Blackwell)" if parse_cc(dev.cc) >= (10, 0) else "")
        )
    return f"a tiny kernel failed on this GPU: {error}"


# --------------------------------------------------------------------------------------------
# Fit checks
# --------------------------------------------------------------------------------------------


def _cuda_tuple(version: str | None) -> tuple[int, int] | None:
    if not version:
        return None
    m = re.match(r"^(\d+)\.(\d+)", version)
    return (int(m.group(1)), int(m.group(2))) if m else None


_FIT_STATUS = {"full": "pass", "minor-compat": "warn", "too-old": "fail"}


def _driver_check(facts: MachineFacts, cuda: tuple[int, int], name: str, env: str | None) -> Check:
    if not facts.driver.version:
        return Check(name, "skip", "no NVIDIA driver on this box", env=env)
    fit = driver_fit(facts.driver.version, cuda)
    return Check(name, _FIT_STATUS[fit.status], fit.reason, env=env)


def _arch_check(
    name: str, arch_list: Sequence[str] | str, gpu: GpuFacts, label: str, env: str | None = None
) -> Check:
    if not gpu.cc:
        # /proc alone cannot tell the arch: a fit that was not checked is not a pass.
        return Check(
            name, "warn", "compute capability unknown: arch fit not checked", gpu.index, env
        )
    cov = arch_coverage(arch_list, gpu.cc)
    status = "pass" if cov.covered else "fail"
    if cov.covered and "PTX" in cov.how:
        status = "warn"  # runs, but JIT-compiled on first use (minutes, cached afterwards)
    return Check(name, status, f"{label}: {cov.how}", gpu=gpu.index, env=env)


def box_checks(facts: MachineFacts, gpus: Sequence[GpuFacts]) -> list[Check]:
    checks: list[Check] = []
    if facts.driver.version:
        cuda = f", supports CUDA <= {facts.driver.cuda}" if facts.driver.cuda else ""
        checks.append(
            Check("driver", "pass", f"driver {facts.driver.version}{cuda} ({facts.driver.source})")
        )
    else:
        checks.append(Check("driver", "skip", "no NVIDIA driver: " + "; ".join(facts.notes)))
    if not gpus:
        checks.append(Check("gpus", "skip", "no NVIDIA GPU on this box"))
    for gpu in gpus:
        if gpu.mig_mode == "enabled":
            checks.append(
                Check(
                    "mig",
                    "warn",
                    "MIG enabled: torch sees only MIG instances, memory is per instance",
                    gpu=gpu.index,
                )
            )
    torch = facts.torch
    if torch is None:
        checks.append(Check("torch", "skip", "not checked (--no-torch)"))
    elif not torch.installed:
        checks.append(Check("torch", "skip", f"torch not importable: {torch.import_error}"))
    else:
        checks.append(
            Check(
                "torch",
                "pass",
                f"torch {torch.version}, CUDA build {torch.cuda_build or 'none (CPU)'}, "
                f"float8: {', '.join(torch.float8_dtypes) or 'none'}",
            )
        )
        build = _cuda_tuple(torch.cuda_build)
        if build:
            checks.append(_driver_check(facts, build, "torch-driver", None))
        for gpu in gpus:
            if torch.arch_list:
                checks.append(
                    _arch_check("torch-arch", torch.arch_list, gpu, f"torch {torch.version}")
                )
            dev = _torch_device_for(gpu, torch) if torch.cuda_available else None
            if dev is not None:
                if dev.kernel_ok:
                    checks.append(Check("torch-kernel", "pass", "a tiny kernel ran", gpu.index))
                else:
                    checks.append(
                        Check("torch-kernel", "fail", _kernel_reason(dev, torch), gpu.index)
                    )
    xf = facts.xformers
    if xf is not None and xf.error:
        checks.append(Check("xformers-build", "warn", f"build record unreadable: {xf.error}"))
    if xf is not None:
        if xf.arch_list:
            for gpu in gpus:
                checks.append(
                    _arch_check("xformers-arch", xf.arch_list, gpu, f"xformers {xf.version}")
                )
        if xf.built_for_torch and torch is not None and torch.version:
            same = xf.built_for_torch.split("+")[0] == torch.version.split("+")[0]
            checks.append(
                Check(
                    "xformers-torch",
                    "pass" if same else "warn",
                    f"xformers {xf.version} built for torch {xf.built_for_torch}, "
                    f"installed torch {torch.version}"
                    + ("" if same else ": its C++ ops may not load (xformers only warns)"),
                )
            )
    return checks


def env_fit(env: EnvLike, facts: MachineFacts, gpus: Sequence[GpuFacts], fp8: str) -> EnvFit:
    checks = [_driver_check(facts, env.cuda_version, "env-driver", env.name)]
    torch_archs = TORCH_ARCH_LISTS.get(env.cuda)
    xf_archs = XFORMERS_ARCH_LISTS.get(env.cuda) if "xformers" in env.requirements else None
    for gpu in gpus:
        if torch_archs:
            checks.append(
                _arch_check("env-torch-arch", torch_archs, gpu, f"torch {env.cuda}", env.name)
            )
        if xf_archs:
            checks.append(
                _arch_check("env-xformers-arch", xf_archs, gpu, f"xformers {env.cuda}", env.name)
            )
        if gpu.cc and gpu.cc not in env.compute_capabilities:
            checks.append(
                Check(
                    "env-cc",
                    "warn",
                    f"cc {gpu.cc} not in the env's compute_capabilities "
                    f"({', '.join(env.compute_capabilities)}): untested there",
                    gpu.index,
                    env.name,
                )
            )
    if env.fp8 in ("native", "emulated") and gpus:
        checks.append(_env_fp8_check(env, fp8))
    if not gpus:
        return EnvFit(env.name, env.cuda, "fail", "no NVIDIA GPU on this box", checks)
    worst = _worst(c.status for c in checks)
    bad = [c.reason for c in checks if c.status == worst and worst in ("fail", "warn")]
    reason = "; ".join(bad) if bad else f"driver and kernels fit every GPU ({env.cuda})"
    return EnvFit(env.name, env.cuda, worst, reason, checks)


def _env_fp8_check(env: EnvLike, hardware: str) -> Check:
    """The env's FP8 promise against what this box's hardware can do (not this interpreter's)."""
    if env.fp8 == "native":
        if hardware == "native":
            return Check("env-fp8", "pass", "runs FP8 native here (torchao)", env=env.name)
        return Check(
            "env-fp8",
            "pass",
            f"FP8 {hardware} here: the hardware has no native FP8, as for every env",
            env=env.name,
        )
    if hardware == "native":  # an emulated env on FP8 tensor cores leaves speed on the table
        return Check(
            "env-fp8",
            "warn",
            "runs FP8 emulated although this GPU has FP8 tensor cores (an env with fp8 = "
            "'native' runs native here)",
            env=env.name,
        )
    return Check("env-fp8", "pass", f"FP8 {hardware} here, as the env promises", env=env.name)


def _worst(statuses: typing.Iterable[str]) -> str:
    rank = {"fail": 3, "warn": 2, "pass": 1, "skip": 0}
    worst = max(statuses, key=lambda s: rank[s], default="pass")
    return "pass" if worst == "skip" else worst


def _fit_rank(f: EnvFit, cuda: tuple[int, int]) -> tuple[bool, int, bool, tuple[int, int]]:
    # Clean fits first, then the fewest warnings, then a full (not minor-compat) driver fit,
    # then the newest CUDA among them (newer torch, better FP8 kernels).
    warns = sum(c.status == "warn" for c in f.checks)
    driver_full = any(c.name == "env-driver" and c.status == "pass" for c in f.checks)
    return (f.status == "pass", -warns, driver_full, cuda)


def native_env(fits: Sequence[EnvFit], envs: Sequence[EnvLike], hardware: str) -> str | None:
    """The best-fitting env that promises native FP8, when this box's hardware runs native."""
    if hardware != "native":
        return None
    promised = {e.name: e for e in envs if e.fp8 == "native"}
    usable = [f for f in fits if f.env in promised and f.status != "fail"]
    if not usable:
        return None
    return max(usable, key=lambda f: _fit_rank(f, promised[f.env].cuda_version)).env


def recommend_env(fits: Sequence[EnvFit], envs: Sequence[EnvLike]) -> tuple[str | None, str]:
    if not fits:
        return None, "no env specs given"
    cuda = {e.name: e.cuda_version for e in envs}
    usable = [f for f in fits if f.status != "fail"]
    if not usable:
        return None, "no env fits this box: " + "; ".join(f"{f.env}: {f.reason}" for f in fits)

    def rank(f: EnvFit) -> tuple[bool, int, bool, tuple[int, int]]:
        return _fit_rank(f, cuda[f.env])

    best = max(usable, key=rank)
    return best.env, f"{best.env} ({best.status}): {best.reason}"


# --------------------------------------------------------------------------------------------
# Memory estimate
# --------------------------------------------------------------------------------------------

# Parameter counts from the stabilityai/stable-diffusion-3.5-{large,medium} diffusers repos
# (fp16 safetensors sizes / 2) and the Large transformer counted on an H200: 8.06 B
# (docs/evidence.md#E-h200-large-step).
TRANSFORMER_PARAMS = {"large": 8.06e9, "medium": 2.47e9}
SHARED_PARAMS = {
    "clip_l": 0.124e9,  # text_encoder: CLIPTextModelWithProjection (ViT-L)
    "clip_g": 0.695e9,  # text_encoder_2: OpenCLIP bigG
    "t5_xxl": 4.76e9,  # text_encoder_3: T5EncoderModel (xxl)
    "vae": 0.084e9,  # AutoencoderKL, 16 latent channels
}
FP8_COMPONENTS = ("transformer", "t5_xxl")  # stored in FP8; CLIPs and VAE stay bf16
# Activations at 1024x1024 with CFG (batch 2), VAE decode and the CUDA context: an H200 measured
# a 10.7 GiB peak for the FP8-stored Large transformer, 7.5 GiB of it weights
# (docs/evidence.md#E-h200-large-step).
RESERVE_GIB = 3.0
GIB = 1024**3


def memory_plans(fp8_mode: str, free_gib: float | None) -> list[MemoryPlan]:
    plans = []
    for model in ("large", "medium"):
        for precision in ("bf16", "fp8"):
            params = {"transformer": TRANSFORMER_PARAMS[model], **SHARED_PARAMS}
            comps = {
                name: round(
                    n * (1 if precision == "fp8" and name in FP8_COMPONENTS else 2) / GIB, 2
                )
                for name, n in params.items()
            }
            for placement, weights in (
                ("gpu", sum(comps.values())),
                ("model-offload", max(comps.values())),
            ):
                need = round(weights + RESERVE_GIB, 1)
                usable = precision == "bf16" or fp8_mode != "off"
                fits = None if free_gib is None else need <= free_gib
                plans.append(MemoryPlan(model, precision, placement, need, comps, usable, fits))
    return plans


def memory_report(gpu: GpuFacts | None, free_mib: int | None, fp8_mode: str) -> MemoryReport:
    free_gib = round(free_mib / 1024, 1) if free_mib is not None else None
    plans = memory_plans(fp8_mode, free_gib)
    by = {(p.model, p.precision, p.placement): p for p in plans}
    if gpu is None or free_gib is None:
        large = by[("large", "bf16", "gpu")]
        return MemoryReport(
            None,
            None,
            RESERVE_GIB,
            plans,
            None,
            f"no GPU memory to compare with: SD3.5 Large needs ~{large.need_gib} GiB in bf16, "
            f"~{by[('large', 'fp8', 'gpu')].need_gib} GiB with FP8 weights",
        )
    # Preference: Large before Medium, resident before offload, bf16 before FP8 when both fit
    # (eager FP8 is slower than bf16, docs/evidence.md#E-h200-large-step: FP8 is for memory unless
    # compiled).
    order = [
        (m, pr, pl)
        for m in ("large", "medium")
        for pl in ("gpu", "model-offload")
        for pr in ("bf16", "fp8")
    ]
    chosen = next((by[k] for k in order if by[k].usable and by[k].fits), None)
    lb, lf = by[("large", "bf16", "gpu")], by[("large", "fp8", "gpu")]
    have = f"{free_gib} GiB free on GPU {gpu.index}"
    if chosen is None:
        advice = (
            f"even SD3.5 Medium with model offload needs "
            f"~{by[('medium', 'fp8' if fp8_mode != 'off' else 'bf16', 'model-offload')].need_gib}"
            f" GiB and {have}: use enable_sequential_cpu_offload() (slow) or a bigger GPU"
        )
        return MemoryReport(gpu.index, free_gib, RESERVE_GIB, plans, None, advice)
    key = f"{chosen.model}/{chosen.precision}/{chosen.placement}"
    if key == "large/bf16/gpu":
        advice = f"SD3.5 Large fits in bf16 (~{lb.need_gib} GiB, {have})"
        if fp8_mode != "off":
            advice += f"; FP8 weights ({fp8_mode}) cut it to ~{lf.need_gib} GiB"
    elif key == "large/fp8/gpu":
        advice = (
            f"SD3.5 Large needs ~{lb.need_gib} GiB in bf16 but {have}: load it with FP8 "
            f"weights ({fp8_mode}, ~{lf.need_gib} GiB)"
        )
    elif chosen.model == "large":
        medium = by[("medium", chosen.precision, "gpu")]
        advice = (
            f"SD3.5 Large does not fit whole ({have}; ~{lf.need_gib if lf.usable else lb.need_gib}"
            f" GiB needed): call pipe.enable_model_cpu_offload() ({chosen.precision}, peak "
            f"~{chosen.need_gib} GiB) or use SD3.5 Medium (~{medium.need_gib} GiB"
            f"{', fits' if medium.fits else ''})"
        )
    else:
        advice = (
            f"SD3.5 Large does not fit even with offload ({have}): use SD3.5 Medium "
            f"({chosen.precision}, {chosen.placement}, ~{chosen.need_gib} GiB)"
        )
    return MemoryReport(gpu.index, free_gib, RESERVE_GIB, plans, key, advice)


# --------------------------------------------------------------------------------------------
# decide
# --------------------------------------------------------------------------------------------


def effective_gpus(facts: MachineFacts) -> list[GpuFacts]:
    """NVML/nvidia-smi GPUs; where neither answered but torch saw devices, torch's view."""
    if facts.gpus:
        return list(facts.gpus)
    if facts.torch and facts.torch.devices:
        return [
            GpuFacts(
                d.index, d.name, d.cc, d.memory_total_mib, d.memory_free_mib, None, d.uuid, "torch"
            )
            for d in facts.torch.devices
        ]
    return []


def _model_gpu(facts: MachineFacts, gpus: Sequence[GpuFacts]) -> GpuFacts | None:
    """The GPU the model step loads onto: torch's cuda:0, else the first GPU seen."""
    torch = facts.torch
    if torch and torch.cuda_available and torch.devices:
        dev0 = min(torch.devices, key=lambda d: d.index)
        for gpu in gpus:
            if _torch_device_for(gpu, torch) is dev0:
                return gpu
    return gpus[0] if gpus else None


_MODE = {"native": "native", "emulated": "emulated", "unsupported": "off"}


def decide(facts: MachineFacts, envs: Sequence[EnvLike] = ()) -> ProbeReport:
    gpus = effective_gpus(facts)
    checks = box_checks(facts, gpus)
    reports = []
    for gpu in gpus:
        hardware = fp8_verdict(gpu, facts)
        stack = stack_verdict(gpu, facts)
        own = [c for c in checks if c.gpu == gpu.index]
        reports.append(
            GpuReport(
                gpu.index,
                gpu.name,
                gpu.cc,
                gpu.memory_total_mib,
                gpu.memory_free_mib,
                gpu.mig_mode,
                effective_verdict(hardware, stack),
                own,
                hardware,
                stack,
            )
        )
    model_gpu = _model_gpu(facts, gpus)
    hardware_mode = "off"
    if model_gpu is None:
        fp8_mode, mode_reason = "off", "no usable NVIDIA GPU: the model step runs without FP8"
        free_mib = None
    else:
        rep = next(r for r in reports if r.index == model_gpu.index)
        fp8_mode = _MODE[rep.fp8.verdict]
        hardware_mode = _MODE[rep.hardware.verdict] if rep.hardware else fp8_mode
        mode_reason = f"GPU {rep.index} ({rep.name}) is {rep.fp8.verdict}: {rep.fp8.reason}"
        free_mib = model_gpu.memory_free_mib
        if facts.torch and facts.torch.cuda_available:
            dev = _torch_device_for(model_gpu, facts.torch)
            if dev is not None and dev.memory_free_mib is not None:
                free_mib = dev.memory_free_mib
    fits = [env_fit(env, facts, gpus, hardware_mode) for env in envs]
    recommended, why = recommend_env(fits, envs)
    native = native_env(fits, envs, hardware_mode)
    advisory = None
    if hardware_mode == "native" and fp8_mode != "native":
        where = (
            f"env {native} runs native on this box"
            if native
            else "no env spec given promises native FP8 and fits this box"
        )
        advisory = f"FP8 {fp8_mode} here although the GPU runs FP8 native: {where}"
        mode_reason += f"; {where}"
    memory = memory_report(model_gpu, free_mib, fp8_mode)
    return ProbeReport(
        facts,
        reports,
        fp8_mode,
        mode_reason,
        checks,
        fits,
        recommended,
        why,
        memory,
        native,
        advisory,
        hardware_mode,
    )
