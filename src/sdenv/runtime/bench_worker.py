"""One ``sdenv bench`` measurement in its own process.

``python -m sdenv.runtime.bench_worker REQ``: REQ is a JSON request written by
``sdenv.runtime.bench``: ``{"kind": "info"}`` (what this box has) or ``{"kind": "mode", ...}``
(build the SD3.5 transformer, apply one mode, time it). The answer is one result line of
``sdenv.target.protocol`` on stdout; failures become ``{"status": "error", "reason": ...}``
there, so the harness records them as data. torch, diffusers and torchao are imported here only.
"""

from __future__ import annotations

import contextlib
import gc
import json
import platform
import sys
import time
import traceback
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

from sdenv.gpu.compat import FP8_NATIVE_MIN_CC


def _log(tag: str, msg: str) -> None:
    print(f"[bench {tag}] {msg}", file=sys.stderr, flush=True)


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return f"{type(exc).__name__}: {text[0] if text else ''}"[:400]


# ---------------------------------------------------------------- info


def _fp8_verdict(torch: Any) -> tuple[str | None, str]:
    """The probe's verdict for GPU 0; the compat rule as a fallback if the probe fails here."""
    try:
        from sdenv.gpu.probe import probe

        gpus = probe().gpus
        if not gpus:
            return None, "sdenv.gpu.probe: no GPU"
        fp8 = gpus[0].fp8
        return fp8.verdict, f"sdenv.gpu.probe: {fp8.reason}"
    except Exception as exc:  # the probe is optional here; say why it was not used
        source = f"compat rule (sdenv.gpu.probe failed: {_first_line(exc)})"
    if not torch.cuda.is_available():
        return None, source
    if not hasattr(torch, "float8_e4m3fn"):
        return "unsupported", source
    cc = torch.cuda.get_device_capability(0)
    if cc >= FP8_NATIVE_MIN_CC and hasattr(torch, "_scaled_mm"):
        return "native", source
    return "emulated", source


def info() -> dict[str, Any]:
    res: dict[str, Any] = {"status": "ok", "python": platform.python_version()}
    try:
        import torch
    except ImportError as exc:
        res.update(torch=None, torch_error=_first_line(exc), cuda_available=False)
        return res
    res.update(
        torch=torch.__version__,
        torch_cuda=torch.version.cuda,
        cuda_available=torch.cuda.is_available(),
        has_float8=hasattr(torch, "float8_e4m3fn"),
        has_scaled_mm=hasattr(torch, "_scaled_mm"),
    )
    if torch.cuda.is_available():
        props = torch.cuda.get_device_properties(0)
        res.update(
            device_name=props.name,
            compute_capability=list(torch.cuda.get_device_capability(0)),
            device_memory_bytes=props.total_memory,
        )
    else:
        res.update(device_name=f"CPU ({platform.processor() or platform.machine()})")
    try:
        import diffusers
        from diffusers import ModelMixin

        res.update(
            diffusers=diffusers.__version__,
            layerwise_casting=hasattr(ModelMixin, "enable_layerwise_casting"),
        )
    except Exception as exc:
        res.update(diffusers=None, diffusers_error=_first_line(exc))
    try:
        import torchao

        res.update(torchao=torchao.__version__)
    except Exception as exc:
        res.update(torchao=None, torchao_error=_first_line(exc))
    verdict, source = _fp8_verdict(torch)
    res.update(fp8_verdict=verdict, fp8_verdict_source=source)
    res.update(_try_rowwise_scaled_mm(torch))
    return res


def _try_rowwise_scaled_mm(torch: Any) -> dict[str, Any]:
    """fp8-static's one requirement, tried on the bench's device (``sdenv.runtime.fp8_static``)."""
    from sdenv.runtime.fp8_static import try_rowwise_scaled_mm

    ok, error = try_rowwise_scaled_mm("cuda" if torch.cuda.is_available() else "cpu")
    return {"scaled_mm_rowwise": ok, "scaled_mm_rowwise_error": error}


# ---------------------------------------------------------------- one mode


def _tensor_bytes(t: Any) -> int:
    # torchao's Float8Tensor is a traceable subclass: its storage is the fp8 data plus scales,
    # which __tensor_flatten__ names; numel() * element_size() would report the logical bf16 size.
    if hasattr(t, "__tensor_flatten__"):
        names, _ = t.__tensor_flatten__()
        return sum(_tensor_bytes(getattr(t, n)) for n in names)
    return int(t.numel() * t.element_size())


def _build_model(req: dict[str, Any], device: Any) -> tuple[Any, str]:
    import torch
    from diffusers import SD3Transformer2DModel as _Model

    model_cls: Any = _Model  # diffusers is untyped
    spec = req["model"]
    if spec["path"]:
        path = Path(spec["path"])
        if any(path.glob("*.safetensors")) or any(path.glob("*.bin")):
            model = model_cls.from_pretrained(path, torch_dtype=torch.bfloat16)
            return model.to(device).eval(), "pretrained"
        config = model_cls.load_config(path)
    else:
        config = spec["config"]
    # Random weights, identical in every process: a seeded RNG and the same construction order.
    # Built on the target device in bf16 so an 8B model needs neither 32 GB of fp32 nor minutes.
    torch.manual_seed(req["seed"])
    previous = torch.get_default_dtype()
    torch.set_default_dtype(torch.bfloat16)
    try:
        with torch.device(device):
            model = model_cls.from_config(config)
    finally:
        torch.set_default_dtype(previous)
    return model.to(torch.bfloat16).eval(), "random"


def _inputs(
    req: dict[str, Any], model: Any, device: Any, seed: int | None = None, timestep: float = 500.0
) -> dict[str, Any]:
    import torch

    cfg = model.config
    g = torch.Generator().manual_seed(req["seed"] + 1 if seed is None else seed)
    side = req["resolution"] // 8
    b = req["batch"]
    bf16 = torch.bfloat16
    return {
        "hidden_states": torch.randn(b, cfg.in_channels, side, side, generator=g).to(device, bf16),
        "encoder_hidden_states": torch.randn(
            b, req["text_tokens"], cfg.joint_attention_dim, generator=g
        ).to(device, bf16),
        "pooled_projections": torch.randn(b, cfg.pooled_projection_dim, generator=g).to(
            device, bf16
        ),
        "timestep": torch.full((b,), timestep).to(device),
        "return_dict": False,
    }


# Calibration inputs for fp8-static: other seeds than the timed input (seed + 1) and timesteps
# across the schedule, since activation ranges move with the noise level.
CALIBRATION_TIMESTEPS = (950.0, 700.0, 300.0, 50.0)


def _calibrate_static(req: dict[str, Any], model: Any, device: Any) -> dict[str, Any]:
    from sdenv.runtime import fp8_static

    def run() -> None:
        for i, t in enumerate(CALIBRATION_TIMESTEPS):
            model(**_inputs(req, model, device, seed=req["seed"] + 100 + i, timestep=t))

    t0 = time.perf_counter()
    amax = fp8_static.calibrate(model, run)
    calibrate_s = time.perf_counter() - t0
    if req.get("save_scales"):
        about = {"inputs": "random", "timesteps": list(CALIBRATION_TIMESTEPS), "seed": req["seed"]}
        fp8_static.save_scales(Path(req["save_scales"]), amax, about)
    granularity = req["fp8_granularity"]
    layers = fp8_static.apply_static(model, amax, granularity)
    return {
        "quantizer": f"sdenv.runtime.fp8_static ({granularity}-wise weights, calibrated "
        "activation scales)",
        "granularity": granularity,
        "calibration_inputs": len(CALIBRATION_TIMESTEPS),
        "calibrate_s": round(calibrate_s, 3),
        "fp8_layers": layers,
    }


def _set_inductor_tuning() -> None:
    # torchao's recommended_inductor_config_setter(), applied to every mode alike so that bf16
    # and FP8 are compiled with the same settings (torchao would set them for FP8 only).
    import torch._inductor.config as ic

    ic.coordinate_descent_tuning = True
    ic.coordinate_descent_check_all_directions = True
    ic.force_fuse_int_mm_with_mul = True
    ic.fx_graph_cache = True
    ic.triton.unique_kernel_names = True


def _apply_mode(req: dict[str, Any], model: Any) -> dict[str, Any]:
    import torch

    mode = req["mode"]
    if mode == "fp8-emulated":
        # Weights stored as e4m3, upcast per layer to bf16 for the matmul: memory only.
        model.enable_layerwise_casting(
            storage_dtype=torch.float8_e4m3fn, compute_dtype=torch.bfloat16
        )
        return {"storage": "float8_e4m3fn", "compute": "bfloat16"}
    if mode == "fp8-native":
        from sdenv.fp8 import apply_native

        # The transform generate deploys, with bench's knobs: a measurement of what ships.
        apply_native(
            model,
            granularity=req["fp8_granularity"],
            fast_accum=req["fast_accum"],
            set_inductor_config=req["inductor_tuning"],
        )
        return {
            "granularity": req["fp8_granularity"],
            "fast_accum": req["fast_accum"],
            "quantizer": "sdenv.fp8.apply_native (torchao Float8DynamicActivationFloat8Weight)",
        }
    if mode == "fp8-static":
        return _calibrate_static(req, model, torch.device(next(model.parameters()).device))
    return {}


def _inductor_cache_warm() -> bool | None:
    """Whether inductor's on-disk cache already held entries: a warm cache turns a first compile
    of minutes into seconds, so a compile time means little without this."""
    try:
        from torch._inductor.runtime.cache_dir_utils import cache_dir

        path = Path(cache_dir())
        return path.is_dir() and any(path.iterdir())
    except Exception:
        return None


@contextlib.contextmanager
def _attention(backend: str) -> Iterator[None]:
    if backend == "auto":
        yield
        return
    from torch.nn.attention import SDPBackend, sdpa_kernel

    names = {
        "flash": SDPBackend.FLASH_ATTENTION,
        "cudnn": SDPBackend.CUDNN_ATTENTION,
        "efficient": SDPBackend.EFFICIENT_ATTENTION,
        "math": SDPBackend.MATH,
    }
    with sdpa_kernel([names[backend]]):
        yield


def _profile(fwd: Callable[[], Any], sync: Callable[[], None], steps: int) -> dict[str, Any]:
    from torch.profiler import ProfilerActivity, profile

    from sdenv.runtime.bench import profile_breakdown

    with profile(activities=[ProfilerActivity.CUDA]) as prof:
        for _ in range(steps):
            fwd()
        sync()
    kernels: dict[str, float] = {}
    for ev in prof.events():
        if getattr(ev.device_type, "name", "") == "CUDA":  # kernels, memcpys, memsets
            kernels[ev.name] = kernels.get(ev.name, 0.0) + ev.time_range.elapsed_us()
    return profile_breakdown(kernels, steps)


def _compiled(req: dict[str, Any], model: Any, options: dict[str, Any]) -> Any:
    """The callable to time: the model, or the model with its blocks (or all of it) compiled."""
    import torch

    if not req["compile"]:
        return model
    # Regional compilation: every transformer block compiled in place. Identical blocks share
    # one graph, so compile time is a fraction of the whole model's at nearly the same speed.
    torch._dynamo.config.cache_size_limit = max(64, torch._dynamo.config.cache_size_limit)
    options.update(
        compile_scope=req["compile_scope"],
        inductor_tuning=req["inductor_tuning"],
        inductor_cache_warm=_inductor_cache_warm(),
    )
    if req["compile_scope"] == "full":
        return torch.compile(model)
    for block in model.transformer_blocks:
        block.compile()
    return model


def _time_steps(fwd: Callable[[], Any], sync: Callable[[], None], steps: int) -> list[float]:
    """Milliseconds per call of ``fwd``, ``steps`` times."""
    import torch

    if not torch.cuda.is_available():
        timings = []
        for _ in range(steps):
            t = time.perf_counter()
            fwd()
            timings.append((time.perf_counter() - t) * 1000)
        return timings
    # Events on the stream time the GPU work of each step without a host sync between steps,
    # the way a denoising loop runs.
    event: Any = torch.cuda.Event
    events = []
    for _ in range(steps):
        start, end = event(enable_timing=True), event(enable_timing=True)
        start.record()
        fwd()
        end.record()
        events.append((start, end))
    sync()
    return [s.elapsed_time(e) for s, e in events]


def _compare(req: dict[str, Any], out: Any) -> float | None:
    """Save bf16's output as the reference, or the relative L2 error against it."""
    import torch

    result = out.float().cpu()
    if req.get("save_output"):
        torch.save(result, req["save_output"])
    if not req.get("reference"):
        return None
    ref = torch.load(req["reference"])
    return float((result - ref).norm() / ref.norm())


def run_mode(req: dict[str, Any]) -> dict[str, Any]:
    import torch

    tag = req["mode"]
    cuda = torch.cuda.is_available()
    device = torch.device("cuda" if cuda else "cpu")

    def sync() -> None:
        if cuda:
            torch.cuda.synchronize()

    t0 = time.perf_counter()
    model, source = _build_model(req, device)
    options: dict[str, Any] = {"weights": source, "compile": req["compile"]}
    if req["compile"] and req["inductor_tuning"]:
        _set_inductor_tuning()
    options.update(_apply_mode(req, model))
    gc.collect()
    if cuda:
        torch.cuda.empty_cache()
    weight_bytes = sum(_tensor_bytes(p) for p in model.parameters())
    resident = torch.cuda.memory_allocated() if cuda else None
    call = _compiled(req, model, options)
    options["attention"] = req["attention"]
    inputs = _inputs(req, model, device)
    sync()
    setup_s = time.perf_counter() - t0
    _log(tag, f"model ready in {setup_s:.1f} s ({weight_bytes / 2**30:.2f} GiB of weights)")

    def fwd() -> Any:
        return call(**inputs)[0]

    # no_grad, as diffusers pipelines run (inference_mode trips some tensor-subclass paths).
    with torch.no_grad(), _attention(req["attention"]):
        t1 = time.perf_counter()
        out = fwd()
        sync()
        first_call_s = time.perf_counter() - t1
        _log(tag, f"first call {first_call_s:.1f} s")
        for _ in range(req["warmup"] - 1):
            out = fwd()
        sync()
        if cuda:
            torch.cuda.reset_peak_memory_stats()
        timings = _time_steps(fwd, sync, req["steps"])
        out = fwd()  # the output compared with bf16: one more step, outside the timed ones
        sync()
        peak = torch.cuda.max_memory_allocated() if cuda else None
        profile = _profile(fwd, sync, 3) if req["profile"] and cuda else None
    rel_l2 = _compare(req, out)
    error = "" if rel_l2 is None else f", rel. L2 vs bf16 {rel_l2:.4f}"
    _log(tag, f"median {sorted(timings)[len(timings) // 2]:.1f} ms/step{error}")
    return {
        "status": "ok",
        "device": torch.cuda.get_device_name(0) if cuda else "cpu",
        "options": options,
        "timings_ms": timings,
        "setup_s": setup_s,
        "first_call_s": first_call_s,
        "weight_bytes": weight_bytes,
        "resident_bytes": resident,
        "peak_bytes": peak,
        "output_finite": bool(torch.isfinite(out.float()).all()),
        "rel_l2_vs_bf16": rel_l2,
        "profile": profile,
    }


def main(argv: list[str]) -> int:
    if len(argv) != 1:
        print("usage: python -m sdenv.runtime.bench_worker REQUEST.json", file=sys.stderr)
        return 2
    from sdenv.target.protocol import emit

    req = json.loads(Path(argv[0]).read_text())
    try:
        res = info() if req["kind"] == "info" else run_mode(req)
        code = 0
    except Exception as exc:  # any failure of a mode is a result, not a crash of the harness
        traceback.print_exc()
        res = {"status": "error", "reason": _first_line(exc)}
        code = 1
    emit(res)  # the one result protocol (sdenv.target.protocol)
    return code


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
