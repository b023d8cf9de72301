"""FP8 verdicts per GPU, from recorded facts: what the hardware can run, what this stack runs.

Pure and standard-library only. ``fp8_verdict`` (hardware): ``native`` when cc >= 8.9 (FP8
tensor cores), torch has float8 dtypes and a real ``torch._scaled_mm`` on e4m3 inputs matched a
bf16 reference (or, torch not checked, predicted from cc alone: ``checked`` is then False);
``emulated`` with float8 dtypes but no FP8 tensor cores (weights stored in FP8, compute in bf16,
fp16 below cc 8.0); ``unsupported`` without torch, float8 dtypes or a usable GPU.
``stack_verdict``: this interpreter's FP8 backend (torchao) imports, its version is the one built
for the installed torch (``data/fp8_backends.json``) and the transform ``generate`` deploys
matched bf16 on a tiny Linear on that GPU. ``effective_verdict``: the lower of the two.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass

from sdenv.fp8 import BACKEND, backend_support
from sdenv.gpu.compat import FP8_NATIVE_MIN_CC, parse_cc
from sdenv.gpu.facts import GpuFacts, MachineFacts, ScaledMmFacts, TorchDeviceFacts, TorchFacts

# float8 dtypes arrived in torch 2.1 (e4m3fn/e5m2); _scaled_mm returns a Tensor since 2.4.
FP8_DTYPE = "float8_e4m3fn"
BF16_MIN_CC = (8, 0)


@dataclass
class Fp8Verdict:
    verdict: str  # native | emulated | unsupported
    reason: str
    compute_dtype: str | None = None  # bfloat16 | float16 (what the matmuls run in)
    checked: bool = False  # True: torch ran the check here; False: predicted from facts alone


# --------------------------------------------------------------------------------------------
# FP8 verdict
# --------------------------------------------------------------------------------------------


def _cc_tuple(cc: str | None) -> tuple[int, int] | None:
    return parse_cc(cc) if cc else None


def _compute_dtype(cc: tuple[int, int]) -> str:
    # bf16 needs Ampere (8.0); Turing and older compute in fp16.
    return "bfloat16" if cc >= BF16_MIN_CC else "float16"


def torch_device_for(gpu: GpuFacts, torch: TorchFacts) -> TorchDeviceFacts | None:
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


def _predicted_verdict(cc: tuple[int, int] | None) -> Fp8Verdict:
    """Torch-free probe: a prediction from the hardware alone, marked unchecked."""
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


def fp8_verdict(gpu: GpuFacts, facts: MachineFacts) -> Fp8Verdict:
    torch = facts.torch
    if torch is None:
        return _predicted_verdict(_cc_tuple(gpu.cc))
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
    dev = torch_device_for(gpu, torch)
    if dev is None:
        return Fp8Verdict(
            "unsupported", "not visible to torch (hidden by CUDA_VISIBLE_DEVICES?)", None, True
        )
    cc = parse_cc(dev.cc)
    if not dev.kernel_ok:
        return Fp8Verdict("unsupported", kernel_reason(dev, torch), None, True)
    if cc < FP8_NATIVE_MIN_CC:
        dtype = _compute_dtype(cc)
        return Fp8Verdict(
            "emulated",
            f"{_native_cc_text(cc)}: no FP8 tensor cores; weights stored in FP8, "
            f"compute in {dtype}",
            dtype,
            True,
        )
    return _scaled_mm_verdict(cc, dev.scaled_mm)


def _scaled_mm_verdict(cc: tuple[int, int], mm: ScaledMmFacts | None) -> Fp8Verdict:
    """cc >= 8.9 with a working torch: native as far as the real ``_scaled_mm`` check says."""
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
    dev = torch_device_for(gpu, torch) if torch.cuda_available else None
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


def kernel_reason(dev: TorchDeviceFacts, torch: TorchFacts) -> str:
    error = dev.kernel_error or "unknown error"
    if "no kernel image" in error:
        archs = " ".join(torch.arch_list) or "none"
        return (
            f"no kernel image for sm_{dev.cc.replace('.', '')} in torch {torch.version} "
            f"(arch list: {archs}): install a build whose arch list covers cc {dev.cc}"
            + (" (cu128 or newer for Blackwell)" if parse_cc(dev.cc) >= (10, 0) else "")
        )
    return f"a tiny kernel failed on this GPU: {error}"
