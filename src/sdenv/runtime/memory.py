"""How much memory an SD3.5 pipeline needs in an FP8 mode: the one model sdenv uses.

``sdenv generate`` checks it against free memory before the load (from the parameter counts in
the safetensors headers); ``sdenv probe`` plans with it for the public checkpoints (from their
published parameter counts). Standard library only.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from sdenv.runtime.errors import InsufficientMemory

GIB = 1 << 30
# What sdenv's FP8 modes store in one byte: the transformer's matrices. Text encoders, VAE,
# norms, biases and embeddings stay bf16 (generate quantizes only the transformer's Linears).
FP8_COMPONENTS = ("transformer",)
FP8_MODES = ("native", "emulated", "static")
# Above the weights: activations at 1024x1024 with CFG (batch 2), the CUDA context and allocator
# slack. Measured on an H200: the FP8-stored Large transformer peaked at 10.7 GiB with 7.5 GiB of
# weights (docs/evidence.md#E-h200-large-step): 3.2 GiB, rounded to 3.
RESERVE_BYTES = 3 * GIB


def weight_bytes(params: int | float, matrix_params: int | float, fp8: bool) -> int:
    """bf16 everywhere, but one byte per matrix element when the component is stored in FP8."""
    if fp8:
        return int(matrix_params + 2 * (params - matrix_params))
    return int(2 * params)


def pipeline_weight_bytes(
    components: Mapping[str, tuple[int | float, int | float]], mode: str
) -> int:
    """Weights of a pipeline in ``mode``: component -> (params, params in matrices)."""
    return sum(
        weight_bytes(params, matrices, mode in FP8_MODES and name in FP8_COMPONENTS)
        for name, (params, matrices) in components.items()
    )


def needed_bytes(weights: int) -> int:
    return weights + RESERVE_BYTES


@dataclass(frozen=True)
class MemoryNeed:
    mode: str
    weights_bytes: int
    needed_bytes: int


def plan_memory(components: Mapping[str, tuple[int | float, int | float]], mode: str) -> MemoryNeed:
    weights = pipeline_weight_bytes(components, mode)
    return MemoryNeed(mode, weights, needed_bytes(weights))


def check_memory(plan: MemoryNeed, available: int, device: str) -> None:
    if plan.needed_bytes > available:
        hint = (
            "try --fp8 native or --fp8 emulated (FP8 halves the transformer)"
            if plan.mode == "off"
            else "use a device with more free memory"
        )
        raise InsufficientMemory(
            f"model needs about {plan.needed_bytes / GIB:.1f} GiB on {device} in mode "
            f"{plan.mode!r} ({plan.weights_bytes / GIB:.1f} GiB of weights), "
            f"{available / GIB:.1f} GiB free; {hint}"
        )


def host_available_bytes() -> int:
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemAvailable:"):
                return int(line.split()[1]) * 1024
    except OSError:
        pass
    return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_AVPHYS_PAGES")
