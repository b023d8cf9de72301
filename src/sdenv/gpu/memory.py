"""Will SD3.5 fit in this GPU's free memory: per model, precision and placement, and advice.

Pure and standard-library only. The parameter counts are data (``data/sd35_params.json``, each
row with its source); the reserve and the preference order are measured policy, below.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from sdenv import _data
from sdenv.gpu.facts import GpuFacts
from sdenv.runtime import memory as runtime_memory


@dataclass
class MemoryPlan:
    model: str  # large | medium
    precision: str  # bf16 | fp8 (the transformer stored in FP8, as generate loads it)
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


@dataclass(frozen=True)
class Sd35Params:
    """Parameter counts: the transformer per model (large, medium), the components both share."""

    transformers: Mapping[str, float]
    shared: Mapping[str, float]  # clip_l, clip_g, t5_xxl, vae


def _load_params() -> Sd35Params:
    """``data/sd35_params.json`` (each count with its source)."""
    data = _data.load_json("sd35_params.json")
    return Sd35Params(
        {str(r["model"]): float(r["params"]) for r in data["transformers"]},
        {str(r["component"]): float(r["params"]) for r in data["shared"]},
    )


PARAMS = _load_params()
# One memory model with the loader (sdenv.runtime.memory): what its FP8 modes store in one byte
# (the transformer only; T5, CLIPs and VAE stay bf16) and the measured reserve above the weights.
FP8_COMPONENTS = runtime_memory.FP8_COMPONENTS
GIB = runtime_memory.GIB
RESERVE_GIB = runtime_memory.RESERVE_BYTES / GIB


def memory_plans(fp8_mode: str, free_gib: float | None) -> list[MemoryPlan]:
    plans = []
    for model in ("large", "medium"):
        for precision in ("bf16", "fp8"):
            params = {"transformer": PARAMS.transformers[model], **PARAMS.shared}
            comps = {
                name: round(
                    runtime_memory.weight_bytes(
                        n, n, fp8=precision == "fp8" and name in FP8_COMPONENTS
                    )
                    / GIB,
                    2,
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
