"""What ``sdenv smoke`` checks and reports: the check table (prerequisites, which checks may share
a process), the report types and the failure kinds. Standard library only."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from sdenv.errors import UsageError
from sdenv.status import Outcome

Status = Outcome  # the smoke's name for the shared outcome type


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
    # A third-party C++ extension is loaded: the check runs apart from the others, sharing a
    # process only with the checks of the same extension (its name here).
    extension: str | None = None
    # It launches CUDA kernels when the GPU is used: it shares the ``gpu`` group's process then
    # (gpu_only checks always do), not the imports' (``sdenv._smoke_run``).
    gpu_kernels: bool = False


CHECKS: tuple[CheckSpec, ...] = (
    CheckSpec("torch", "torch imports and computes; CUDA build", "torch"),
    CheckSpec("cuda", "CUDA kernel launch (arch, driver)", "torch", ("torch",), gpu_only=True),
    CheckSpec(
        "xformers", "xformers C++ extension loaded", "xformers", ("torch",), extension="xformers"
    ),
    CheckSpec("diffusers", "diffusers SD3 classes import", "diffusers", ("torch",)),
    CheckSpec("transformers", "transformers torch backend on", "transformers", ("torch",)),
    CheckSpec("accelerate", "accelerate init_empty_weights", "accelerate", ("torch",)),
    CheckSpec("safetensors", "safetensors round trip", "safetensors", ("torch",)),
    CheckSpec(
        "fp8-dtypes", "FP8 dtypes, round trip, overflow", "torch", ("torch",), gpu_kernels=True
    ),
    CheckSpec(
        "fp8-matmul",
        "FP8 weight storage matmul",
        "torch",
        ("fp8-dtypes",),
        needs_on_gpu=("cuda",),
        gpu_kernels=True,
    ),
    CheckSpec(
        "fp8-backend",
        "torchao imports, FP8 config builds",
        "torchao",
        ("fp8-dtypes",),
        extension="torchao",  # torchao loads its C++ ops at import
    ),
    CheckSpec(
        "scaled-mm", "torch._scaled_mm FP8 GEMM", "torch", ("cuda", "fp8-dtypes"), gpu_only=True
    ),
    CheckSpec(
        "xformers-attention",
        "xformers attention == SDPA",
        "xformers",
        ("cuda", "xformers"),
        gpu_only=True,
        extension="xformers",
    ),
    CheckSpec(
        "sd3-forward",
        "tiny SD3 transformer bf16 + FP8 storage",
        "diffusers",
        ("diffusers", "fp8-dtypes"),
        needs_on_gpu=("cuda",),
        gpu_kernels=True,
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


def select(only: Sequence[str] | None) -> list[CheckSpec]:
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
