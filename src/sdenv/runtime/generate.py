"""The deployment loader: an SD3/SD3.5 pipeline from a local diffusers directory, in an FP8 mode.

Modes (the transformer only; text encoders and VAE stay bf16):
- ``native``: torchao ``Float8DynamicActivationFloat8WeightConfig(PerRow)`` on the transformer's
  linear layers: FP8 weights *and* FP8 matmuls (``torch._scaled_mm``, compute capability >= 8.9).
  ``compile=True`` adds ``torch.compile``: FP8 is slower than bf16 eager and pays
  only compiled (100 ms vs 186 ms per step on an H200, after a long first call;
  ``docs/evidence.md#E-h200-large-step``).
- ``emulated``: diffusers ``enable_layerwise_casting``: weights stored float8_e4m3fn, upcast to
  bf16 per layer for compute. Halves the transformer's weight memory anywhere torch has float8.
- ``static``: FP8 weights and matmuls like ``native``, with each activation's scale calibrated
  once on a few prompts and stored beside the model (``sdenv.runtime.fp8_static``): no amax per
  step, no torchao; needs torch's row-wise ``_scaled_mm`` (torch >= 2.5, compute capability >= 8.9).
- ``off``: bf16.
- ``auto``: what ``sdenv probe`` says this box can do (never ``static``: it needs calibration).

Everything that can be checked before the long load is checked first, from files alone: layout
(model_index.json and each component), no pickle checkpoints (safetensors only: a pickle can run
code when loaded), complete safetensors files (headers parsed, sizes checked, sharded indexes
complete) and memory (parameter counts from the headers vs free memory on the device).

The checks from files live in ``sdenv.runtime.modelfiles``, the memory model in
``sdenv.runtime.memory``; ``sdenv.runtime.check`` is the model check ``sdenv verify`` runs inside
a target interpreter. Standard library only at module level.
"""

from __future__ import annotations

import io
import itertools
import json
import time
import warnings
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from sdenv._fs import write_atomic
from sdenv.errors import UsageError
from sdenv.runtime.errors import Fp8Unavailable, GenerateError
from sdenv.runtime.memory import MemoryNeed, check_memory, host_available_bytes, plan_memory
from sdenv.runtime.modelfiles import ModelLayout, check_model_dir, check_size

MODES = ("native", "emulated", "static", "off")


# --------------------------------------------------------------------------- modes


def probe_mode() -> str:
    """The FP8 mode ``sdenv probe`` chose for this box."""
    from sdenv.gpu.probe import probe

    mode = str(probe(with_torch=True).fp8_mode)
    return mode if mode in MODES else "off"


def resolve_mode(requested: str, probe_fn: Callable[[], str] = probe_mode) -> str:
    if requested == "auto":
        return probe_fn()
    if requested not in MODES:
        raise UsageError(f"--fp8 {requested!r}: choose auto, native, emulated, static or off")
    return requested


def _device() -> str:
    import torch

    return "cuda" if torch.cuda.is_available() else "cpu"


def _require_native(device: str) -> None:
    import torch

    from sdenv.gpu.compat import FP8_NATIVE_MIN_CC

    if device != "cuda":
        raise Fp8Unavailable(
            "--fp8 native needs an NVIDIA GPU with compute capability >= 8.9; none here "
            "(use --fp8 emulated)"
        )
    cc = torch.cuda.get_device_capability()
    if cc < FP8_NATIVE_MIN_CC:
        raise Fp8Unavailable(
            f"--fp8 native needs compute capability >= 8.9, {torch.cuda.get_device_name()} "
            f"is {cc[0]}.{cc[1]}; use --fp8 emulated"
        )
    import importlib.metadata

    from sdenv.fp8 import BACKEND, backend_support

    try:
        backend = importlib.metadata.version(BACKEND)
    except importlib.metadata.PackageNotFoundError:
        backend = None
    support = backend_support(str(torch.__version__), backend)
    if not support.ok:
        raise Fp8Unavailable(
            f"--fp8 native: {support.reason}; use an env whose fp8 is 'native' "
            "(`sdenv probe` names one) or --fp8 emulated"
        )


def _require_static(device: str) -> None:
    from sdenv.runtime.fp8_static import try_rowwise_scaled_mm

    ok, error = try_rowwise_scaled_mm(device)
    if not ok:
        raise Fp8Unavailable(
            f"--fp8 static needs a row-wise FP8 matmul (torch._scaled_mm) on {device}: {error}; "
            "use --fp8 emulated"
        )


# Calibration prompts besides the user's own: different subjects and styles, so the activation
# ranges of one prompt do not set every scale.
CALIBRATION_PROMPTS = (
    "a photograph of an astronaut riding a horse",
    "a watercolor painting of a lighthouse on a cliff at dusk",
    "close-up portrait of an old fisherman, dramatic light, 85mm",
)
CALIBRATION_STEPS = 8  # the scheduler still spans the whole noise range in fewer steps


def default_scales_path(model_dir: Path) -> Path:
    from sdenv.runtime.fp8_static import SCALES_FILE

    return model_dir / "transformer" / SCALES_FILE


def _apply_static(pipe: Any, model_dir: Path, scales: Path | None, prompt: str) -> dict[str, Any]:
    """Load the calibrated scales (or calibrate now and store them), then swap the Linears."""
    from sdenv.runtime import fp8_static

    path = scales or default_scales_path(model_dir)
    info: dict[str, Any] = {"scales": str(path), "calibrated_now": False}
    if path.is_file():
        try:
            amax = fp8_static.load_scales(path)
        except Exception as exc:  # safetensors' own errors; the file is named, the fix given
            raise UsageError(
                f"--fp8-scales {path}: unreadable ({exc}); delete it to recalibrate"
            ) from None
    else:
        prompts = (prompt, *CALIBRATION_PROMPTS) if prompt else CALIBRATION_PROMPTS
        t = time.perf_counter()

        def run() -> None:
            for i, text in enumerate(prompts):
                pipe(prompt=text, num_inference_steps=CALIBRATION_STEPS, output_type="latent",
                     generator=_generator(pipe, i))  # fmt: skip

        amax = fp8_static.calibrate(pipe.transformer, run)
        about = {"prompts": list(prompts), "steps": CALIBRATION_STEPS, "model": str(model_dir)}
        try:
            fp8_static.save_scales(path, amax, about)
        except OSError as exc:
            raise UsageError(
                f"--fp8-scales {path}: cannot write the calibrated scales ({exc.strerror}); "
                "pass --fp8-scales FILE in a writable place"
            ) from None
        info.update(calibrated_now=True, calibrate_s=round(time.perf_counter() - t, 3))
        info["calibration_prompts"] = len(prompts)
    try:
        info["fp8_layers"] = fp8_static.apply_static(pipe.transformer, amax)
    except ValueError as exc:
        raise UsageError(f"--fp8-scales {path}: {exc}") from None
    return info


def _generator(pipe: Any, seed: int) -> Any:
    import torch

    return torch.Generator(device=pipe.device).manual_seed(seed)


def fp8_storage(transformer: Any) -> dict[str, Any]:
    """How many of the transformer's linear layers really hold FP8 weights, and their bytes."""
    import torch

    from sdenv.fp8 import is_fp8_weight

    total = fp8 = fp8_params = all_params = 0
    blocks_total = blocks_fp8 = 0
    for name, mod in transformer.named_modules():
        if not isinstance(mod, torch.nn.Linear):
            continue
        total += 1
        n = mod.in_features * mod.out_features
        all_params += n
        is8 = is_fp8_weight(mod.weight)
        fp8 += int(is8)
        fp8_params += n if is8 else 0
        # The attention and MLP matrices of the blocks: the bulk of SD3.5's weights.
        if name.startswith("transformer_blocks.") and (".attn" in name or ".ff" in name):
            blocks_total += 1
            blocks_fp8 += int(is8)
    return {
        "linear_layers": total,
        "fp8_linear_layers": fp8,
        "fp8_param_share": round(fp8_params / all_params, 4) if all_params else 0.0,
        "block_linears": blocks_total,
        "block_linears_fp8": blocks_fp8,
    }


# --------------------------------------------------------------------------- load and run


@dataclass
class LoadedPipeline:
    pipe: Any
    mode: str
    device: str
    layout: ModelLayout
    plan: MemoryNeed
    timings: dict[str, float] = field(default_factory=dict)
    fp8_info: dict[str, Any] = field(default_factory=dict)  # static: the scales file used


def load_pipeline(
    model_dir: Path,
    mode: str = "auto",
    *,
    compile: bool = False,
    available_bytes: int | None = None,
    probe_fn: Callable[[], str] = probe_mode,
    scales: Path | None = None,
    calibration_prompt: str = "",
) -> LoadedPipeline:
    """Check, then load ``model_dir`` onto the GPU (or CPU) in ``mode``; raises before loading."""
    t0 = time.perf_counter()
    layout = check_model_dir(model_dir)
    resolved = resolve_mode(mode, probe_fn)
    import torch

    device = _device()
    if resolved == "native":
        _require_native(device)
    if resolved == "static":
        _require_static(device)
    if resolved == "emulated" and not hasattr(torch, "float8_e4m3fn"):
        raise Fp8Unavailable(
            f"--fp8 emulated needs torch >= 2.1 (float8 dtypes); this is torch {torch.__version__}"
        )
    plan = plan_memory(layout.param_counts(), resolved)
    if available_bytes is None:
        available_bytes = (
            torch.cuda.mem_get_info()[0] if device == "cuda" else host_available_bytes()
        )
    check_memory(plan, available_bytes, device)
    timings = {"check_s": time.perf_counter() - t0}

    from diffusers import StableDiffusion3Pipeline as _Pipeline

    from sdenv.runtime.tinymodel import quiet_libraries

    pipeline_cls: Any = _Pipeline  # diffusers ships partial annotations
    quiet_libraries()
    t = time.perf_counter()
    try:
        with warnings.catch_warnings():
            # diffusers >= 0.36 renames torch_dtype to dtype; older ones (the locks) know only this.
            warnings.filterwarnings("ignore", message=".*torch_dtype.*", category=FutureWarning)
            pipe = pipeline_cls.from_pretrained(
                str(model_dir),
                torch_dtype=torch.bfloat16,
                use_safetensors=True,
                local_files_only=True,
            )
    except (OSError, ValueError) as exc:
        raise GenerateError(f"{model_dir}: loading failed: {exc}") from None
    pipe.set_progress_bar_config(disable=True)
    pipe.to(device)
    if device == "cpu":
        decode_in_float32(pipe.vae)
    _sync(device)
    timings["load_s"] = time.perf_counter() - t

    t = time.perf_counter()
    fp8_info: dict[str, Any] = {}
    if resolved == "native":
        from sdenv.fp8 import apply_native

        apply_native(pipe.transformer)
    elif resolved == "static":
        fp8_info = _apply_static(pipe, model_dir, scales, calibration_prompt)
    elif resolved == "emulated":
        pipe.transformer.enable_layerwise_casting(
            storage_dtype=torch.float8_e4m3fn, compute_dtype=torch.bfloat16
        )
    if compile:
        pipe.transformer.compile()
    _sync(device)
    timings["fp8_s"] = time.perf_counter() - t
    return LoadedPipeline(pipe, resolved, device, layout, plan, timings, fp8_info)


def decode_in_float32(vae: Any) -> None:
    """The VAE in float32, its inputs cast to it: on a CPU without bf16 instructions, bf16
    convolutions are some 50x slower (docs/evidence.md#E-cpu-bf16-conv). The VAE is a small part
    of the model (84M parameters in SD3.5), and FP8 concerns the transformer alone."""
    import torch

    def to_float32(_module: Any, args: tuple[Any, ...]) -> tuple[Any, ...]:
        return tuple(
            a.float() if isinstance(a, torch.Tensor) and a.is_floating_point() else a for a in args
        )

    vae.to(torch.float32)
    # The pipeline hands the decoder the transformer's bf16 latents.
    for module in (getattr(vae, "post_quant_conv", None), vae.decoder):
        if module is not None:
            module.register_forward_pre_hook(to_float32)


def _sync(device: str) -> None:
    if device == "cuda":
        import torch

        torch.cuda.synchronize()


@dataclass
class GenerateResult:
    model: str
    mode: str
    device: str
    prompt: str
    seed: int
    steps: int
    height: int
    width: int
    finite: bool
    fp8: dict[str, Any]
    timings: dict[str, Any]
    peak_memory_bytes: int | None
    image: str | None = None
    versions: dict[str, str] = field(default_factory=dict)

    def fp8_ok(self) -> bool:
        """FP8 where the mode says so: every attention/MLP matrix of the blocks in one byte."""
        if self.mode == "off":
            return bool(self.fp8["fp8_linear_layers"] == 0)
        return bool(self.fp8["block_linears"]) and bool(
            self.fp8["block_linears_fp8"] == self.fp8["block_linears"]
        )


def run_pipeline(
    loaded: LoadedPipeline,
    prompt: str,
    *,
    steps: int = 28,
    seed: int = 0,
    height: int | None = None,
    width: int | None = None,
    guidance_scale: float = 7.0,
) -> tuple[GenerateResult, Any]:
    """Run ``steps`` denoising steps; returns the result and the PIL image."""
    import numpy as np
    import torch

    pipe, device = loaded.pipe, loaded.device
    if steps < 1:
        raise UsageError(f"--steps {steps}: must be at least 1")
    if device == "cuda":
        torch.cuda.reset_peak_memory_stats()
    step_times: list[float] = []

    def on_step(_pipe: Any, _i: int, _t: Any, kwargs: dict[str, Any]) -> dict[str, Any]:
        _sync(device)
        step_times.append(time.perf_counter())
        return kwargs

    generator = torch.Generator(device=device).manual_seed(seed)
    _sync(device)
    t0 = time.perf_counter()
    with torch.inference_mode():
        out = pipe(
            prompt=prompt,
            num_inference_steps=steps,
            guidance_scale=guidance_scale,
            height=height,
            width=width,
            generator=generator,
            output_type="np",
            callback_on_step_end=on_step,
        )
    _sync(device)
    t_end = time.perf_counter()
    arr = out.images[0]
    finite = bool(np.isfinite(arr).all())
    image = pipe.image_processor.numpy_to_pil(np.nan_to_num(arr)[None])[0]
    edges = [t0, *step_times]
    per_step = [round(b - a, 4) for a, b in itertools.pairwise(edges)]
    timings: dict[str, Any] = {k: round(v, 4) for k, v in loaded.timings.items()}
    timings |= {
        # The first step includes prompt encoding (and compilation when compiled).
        "steps_s": per_step,
        "denoise_s": round(step_times[-1] - t0, 4) if step_times else 0.0,
        "decode_s": round(t_end - (step_times[-1] if step_times else t0), 4),
        "run_s": round(t_end - t0, 4),
    }
    import diffusers

    result = GenerateResult(
        model=str(loaded.layout.path),
        mode=loaded.mode,
        device=torch.cuda.get_device_name() if device == "cuda" else "cpu",
        prompt=prompt,
        seed=seed,
        steps=steps,
        height=image.height,
        width=image.width,
        finite=finite,
        fp8=fp8_storage(pipe.transformer) | loaded.fp8_info,
        timings=timings,
        peak_memory_bytes=torch.cuda.max_memory_allocated() if device == "cuda" else None,
        versions={"torch": torch.__version__, "diffusers": diffusers.__version__},
    )
    return result, image


def png_bytes(image: Any, result: GenerateResult) -> bytes:
    """The PNG with the run in its text chunks: prompt, seed, steps, mode, timings, all of it."""
    from PIL.PngImagePlugin import PngInfo

    info = PngInfo()
    info.add_text("prompt", result.prompt)
    info.add_text("seed", str(result.seed))
    info.add_text("steps", str(result.steps))
    info.add_text("fp8_mode", result.mode)
    info.add_text("timings", json.dumps(result.timings))
    info.add_text("sdenv", json.dumps(asdict(result)))
    buf = io.BytesIO()
    image.save(buf, format="PNG", pnginfo=info)
    return buf.getvalue()


def generate(
    model_dir: Path,
    prompt: str,
    out: Path,
    *,
    mode: str = "auto",
    steps: int = 28,
    seed: int = 0,
    compile: bool = False,
    height: int | None = None,
    width: int | None = None,
    scales: Path | None = None,
) -> GenerateResult:
    """Load, run and write the PNG atomically (no file at all on failure)."""
    if out.suffix.lower() != ".png":
        raise UsageError(f"--out {out}: must end in .png")
    if out.is_dir():
        raise UsageError(f"--out {out}: is a directory; name the PNG file to write")
    if steps < 1:
        raise UsageError(f"--steps {steps}: must be at least 1")
    check_size(model_dir, height, width)  # before the slow load, not after it
    loaded = load_pipeline(
        model_dir, mode, compile=compile, scales=scales, calibration_prompt=prompt
    )
    result, image = run_pipeline(loaded, prompt, steps=steps, seed=seed, height=height, width=width)
    if not result.finite:
        raise GenerateError(
            f"{model_dir}: the image has NaN/inf values in mode {result.mode!r}; "
            "try --fp8 off to tell the model from the FP8 path"
        )
    result.image = str(out)
    write_atomic(out, png_bytes(image, result))
    return result
