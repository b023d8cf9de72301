"""FP8 with calibrated static activation scales (``fp8-static``): no amax at run time.

The native mode (``sdenv.fp8.apply_native``, torchao's dynamic row-wise FP8) measures every
activation before each FP8 matmul: an amax reduction over the activation, then the scale, then the
cast. On an H200 at SD3.5 Large shapes that costs about 8 ms of a ~100 ms step. Here the scale of
each Linear's input is measured once, on a few calibration inputs, and stored as safetensors next
to the model; at run time quantizing an activation is a multiply, a clamp and a cast that inductor
fuses into the kernel producing the activation.

Weights keep one scale per output channel (row-wise), as in the native mode; the activation's one
scale is broadcast to the row-wise layout, so the matmul is the same row-wise FP8 GEMM
(``torch._scaled_mm``, torch >= 2.5 on compute capability >= 8.9). torchao is not needed.
Layers that always read the same input (q, k and v) share one calibrated scale, so the compiled
graph quantizes that input once. ``granularity="tensor"`` gives each weight one scale instead:
with the activation's one scale that is the tensor-wise FP8 GEMM (cuBLASLt, no scale broadcast),
at some cost in weight precision.

Imports torch at module level: only code that already runs torch imports this module (the bench
worker and generate inside the env under test), never the probe.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import torch

from sdenv.fp8 import linear_filter

FORMAT = "sdenv-fp8-static/1"
# Stored beside the transformer's weights: diffusers ignores files it does not know.
SCALES_FILE = "fp8_static_scales.safetensors"
E4M3 = torch.float8_e4m3fn
E4M3_MAX = float(torch.finfo(E4M3).max)  # 448
GRANULARITIES = ("row", "tensor")  # of the weight scales
# A layer whose calibration inputs were all zero still needs a usable (non-zero) scale.
MIN_AMAX = 1e-4


# Without torch installed (the dev venv) mypy sees Linear as Any and flags subclassing it.
class StaticFP8Linear(torch.nn.Linear):  # type: ignore[misc, unused-ignore]
    """A bf16 Linear turned FP8: e4m3 weights with row-wise scales, a fixed input scale.

    A subclass of ``nn.Linear`` so that code counting Linears (``generate.fp8_storage``) sees it,
    with ``weight`` holding the float8 data in Linear's (out, in) layout.
    """

    weight_scale: torch.Tensor  # buffers, registered in __init__; declared for the type checker
    input_scale: torch.Tensor

    def __init__(self, linear: torch.nn.Linear, input_amax: float, granularity: str = "row"):
        torch.nn.Module.__init__(self)  # Linear.__init__ would allocate a second weight
        if granularity not in GRANULARITIES:
            raise ValueError(f"granularity {granularity!r}: choose {' or '.join(GRANULARITIES)}")
        self.in_features = linear.in_features
        self.out_features = linear.out_features
        self.rowwise = granularity == "row"
        w = linear.weight.detach().float()
        if self.rowwise:
            w_scale = w.abs().amax(dim=1, keepdim=True).clamp(min=1e-12) / E4M3_MAX  # (out, 1)
        else:
            w_scale = w.abs().amax().clamp(min=1e-12) / E4M3_MAX  # one scale, 0-dim
        q = (w / w_scale).clamp(-E4M3_MAX, E4M3_MAX).to(E4M3)
        self.weight = torch.nn.Parameter(q, requires_grad=False)
        self.bias = linear.bias
        # (1, out) for _scaled_mm's row-wise B; 0-dim for its tensor-wise form.
        self.register_buffer("weight_scale", w_scale.t().contiguous() if self.rowwise else w_scale)
        x_scale = max(float(input_amax), MIN_AMAX) / E4M3_MAX
        self.register_buffer("input_scale", torch.tensor(x_scale, device=w.device))
        self.out_dtype = linear.weight.dtype

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        lead = x.shape[:-1]
        x2 = x.reshape(-1, self.in_features)
        xq = (x2.float() / self.input_scale).clamp(-E4M3_MAX, E4M3_MAX).to(E4M3)
        scale_a = self.input_scale
        if self.rowwise:  # row-wise _scaled_mm takes one scale per row of A: the one, repeated
            scale_a = scale_a.expand(x2.shape[0], 1).contiguous()
        out = torch._scaled_mm(
            xq,
            self.weight.t(),  # (in, out), column-major: the layout _scaled_mm wants for B
            scale_a=scale_a,
            scale_b=self.weight_scale,
            bias=self.bias,
            out_dtype=self.out_dtype,
            use_fast_accum=True,  # as the native mode (torchao's default for inference)
        )
        return out.reshape(*lead, self.out_features)

    def extra_repr(self) -> str:
        return (
            f"in_features={self.in_features}, out_features={self.out_features}, "
            f"input_scale={float(self.input_scale):.3g}, "
            f"weight_scale={'row' if self.rowwise else 'tensor'}"
        )


def try_rowwise_scaled_mm(device: str) -> tuple[bool, str | None]:
    """Run one tiny row-wise FP8 matmul on ``device``: the whole requirement of fp8-static.

    CUDA needs compute capability >= 8.9 and torch >= 2.5; the CPU kernel came later (torch
    2.14 has it, 2.4 does not). Trying it is the one answer that holds for every build.
    """
    try:
        a = torch.ones(16, 32, device=device).to(E4M3)
        out = torch._scaled_mm(
            a,
            a.t(),
            scale_a=torch.ones(16, 1, device=device),
            scale_b=torch.ones(1, 16, device=device),
            out_dtype=torch.bfloat16,
        )
        if float(out[0, 0]) != 32.0:
            return False, f"wrong result {float(out[0, 0])} (expected 32)"
        return True, None
    except Exception as exc:  # the failure is the finding (old torch, old GPU, no CPU kernel)
        lines = str(exc).strip().splitlines()
        return False, f"{type(exc).__name__}: {lines[0] if lines else ''}"[:300]


def eligible(model: torch.nn.Module) -> Iterator[tuple[str, torch.nn.Linear]]:
    """The Linears both FP8 modes quantize (``sdenv.fp8.linear_filter``), by qualified name."""
    for name, mod in model.named_modules():
        if linear_filter(mod, name):
            yield name, mod


@contextmanager
def recording_inputs(
    model: torch.nn.Module,
) -> Iterator[tuple[dict[str, torch.Tensor], dict[str, str | None]]]:
    """While active: every eligible Linear's largest |input| (kept as tensors on the layer's
    device: a ``float()`` per call would sync the GPU per layer), and per layer the layer called
    just before it on the very same input tensor (``None`` once any call saw a different input):
    q, k and v of one attention."""
    amax: dict[str, torch.Tensor] = {}
    shares: dict[str, str | None] = {}
    last: list[Any] = [None, None]  # the previous call's (layer name, input); one tensor alive
    handles = []

    def hook(name: str) -> Callable[[Any, tuple[torch.Tensor, ...]], None]:
        def record(_mod: Any, args: tuple[torch.Tensor, ...]) -> None:
            seen = args[0].detach().abs().amax().float()
            amax[name] = torch.maximum(amax[name], seen) if name in amax else seen
            prev = last[0] if args[0] is last[1] else None
            shares[name] = prev if shares.get(name, prev) == prev else None
            last[:] = [name, args[0]]

        return record

    for name, mod in eligible(model):
        handles.append(mod.register_forward_pre_hook(hook(name)))
    try:
        yield amax, shares
    finally:
        last[:] = [None, None]
        for h in handles:
            h.remove()


def input_groups(shares: Mapping[str, str | None]) -> list[list[str]]:
    """Pure: chains of layers that always read one input tensor (``shares`` from calibration),
    each of two or more layers, in call order."""
    head: dict[str, str] = {}  # layer -> the first layer of its chain (itself when alone)
    groups: dict[str, list[str]] = {}
    for name, prev in shares.items():
        head[name] = head.get(prev, name) if prev is not None else name
        groups.setdefault(head[name], []).append(name)
    return [members for members in groups.values() if len(members) > 1]


def calibrate(model: torch.nn.Module, run: Callable[[], object]) -> dict[str, float]:
    """Run ``run`` (a few forward passes of ``model`` in bf16) and return each layer's amax.

    Layers that always read the same input (q, k and v) get the largest amax of their group:
    one scale, so their input is quantized once (``apply_static`` shares the scale tensor and
    the compiler then computes the identical quantization once).
    """
    with torch.no_grad(), recording_inputs(model) as (amax, shares):
        run()
    missing = [name for name, _ in eligible(model) if name not in amax]
    if missing:
        # Layers the calibration never reached would get no scale; say which, do not guess one.
        raise ValueError(
            f"calibration did not reach {len(missing)} FP8 layers (first: {missing[0]})"
        )
    found = {name: float(v) for name, v in amax.items()}
    for group in input_groups(shares):
        top = max(found[name] for name in group)
        found.update(dict.fromkeys(group, top))
    return found


def apply_static(
    model: torch.nn.Module, amax: Mapping[str, float], granularity: str = "row"
) -> int:
    """Swap every eligible Linear for a ``StaticFP8Linear`` with its calibrated scale (weights
    scaled per ``granularity``). Layers with the same amax share one scale tensor (the same
    value either way; for layers reading one input it lets the compiler quantize it once).

    Returns how many layers were swapped. A layer without a calibrated amax is an error: the
    scales belong to another model (or another version of it).
    """
    targets = list(eligible(model))
    unknown = [name for name, _ in targets if name not in amax]
    if unknown:
        raise ValueError(
            f"no calibrated scale for {len(unknown)} of {len(targets)} FP8 layers "
            f"(first: {unknown[0]}): the scales were made for another model; recalibrate"
        )
    shared: dict[tuple[float, torch.device], torch.Tensor] = {}
    for name, linear in targets:
        parent_name, _, attr = name.rpartition(".")
        parent = model.get_submodule(parent_name) if parent_name else model
        fp8 = StaticFP8Linear(linear, amax[name], granularity)
        key = (amax[name], fp8.input_scale.device)
        fp8.input_scale = shared.setdefault(key, fp8.input_scale)
        setattr(parent, attr, fp8)
    return len(targets)


def save_scales(path: Path, amax: Mapping[str, float], about: Mapping[str, object]) -> None:
    """Write the calibrated amax per layer as safetensors (one float32 scalar each)."""
    from safetensors.torch import save

    from sdenv._fs import write_atomic

    tensors = {name: torch.tensor(value, dtype=torch.float32) for name, value in amax.items()}
    meta = {"format": FORMAT, "about": json.dumps(dict(about), sort_keys=True)}
    # save() gives bytes, written through the atomic helper: never half a file beside a model.
    write_atomic(path, save(tensors, metadata=meta))


def load_scales(path: Path) -> dict[str, float]:
    """Read scales written by ``save_scales``; a file of another format is a ValueError."""
    from safetensors import safe_open

    with safe_open(str(path), framework="pt") as f:
        meta = f.metadata() or {}
        if meta.get("format") != FORMAT:
            found = meta.get("format")
            raise ValueError(f"{path}: not an sdenv FP8 scales file (format {found!r})")
        return {name: float(f.get_tensor(name)) for name in f.keys()}  # noqa: SIM118
