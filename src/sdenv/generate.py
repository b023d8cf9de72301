"""The deployment loader: an SD3/SD3.5 pipeline from a local diffusers directory, in an FP8 mode.

Modes (the transformer only; text encoders and VAE stay bf16):
- ``native``: torchao ``Float8DynamicActivationFloat8WeightConfig(PerRow)`` on the transformer's
  linear layers: FP8 weights *and* FP8 matmuls (``torch._scaled_mm``, compute capability >= 8.9).
  ``compile=True`` adds ``torch.compile``: FP8 is slower than bf16 eager and pays
  only compiled (100 ms vs 186 ms per step on an H200, after a long first call;
  ``docs/evidence.md#E-h200-large-step``).
- ``emulated``: diffusers ``enable_layerwise_casting``: weights stored float8_e4m3fn, upcast to
  bf16 per layer for compute. Halves the transformer's weight memory anywhere torch has float8.
- ``off``: bf16.
- ``auto``: what ``sdenv probe`` says this box can do.

Everything that can be checked before the long load is checked first, from files alone: layout
(model_index.json and each component), no pickle checkpoints (safetensors only: a pickle can run
code when loaded), complete safetensors files (headers parsed, sizes checked, sharded indexes
complete) and memory (parameter counts from the headers vs free memory on the device).

Standard library only at module level; ``python -m sdenv.generate check`` is the model check that
``sdenv verify`` runs inside a target interpreter, printing one JSON object.
"""

from __future__ import annotations

import io
import itertools
import json
import os
import struct
import sys
import time
import warnings
from collections.abc import Callable, Mapping
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from sdenv._fs import write_atomic
from sdenv.errors import SdenvError, UsageError

MODES = ("native", "emulated", "off")
PICKLE_SUFFIXES = (".ckpt", ".bin", ".pt", ".pth", ".pkl", ".pickle")
_MODEL_COMPONENTS = ("transformer", "vae", "text_encoder", "text_encoder_2", "text_encoder_3")
_REQUIRED: tuple[str, ...] = ("transformer", "vae", "scheduler", "text_encoder", "text_encoder_2")
_REQUIRED += ("tokenizer", "tokenizer_2")
# SD3 can run without T5 (tokenizer_3/text_encoder_3 null in model_index.json).
_OPTIONAL = ("text_encoder_3", "tokenizer_3")
_DTYPE_BYTES = {"F64": 8, "F32": 4, "F16": 2, "BF16": 2, "F8_E4M3": 1, "F8_E5M2": 1, "I64": 8}
_DTYPE_BYTES |= {"I32": 4, "I16": 2, "I8": 1, "U8": 1, "BOOL": 1}
# Activations, CUDA context and allocator slack on top of the weights.
_HEADROOM_FRACTION = 0.15
_HEADROOM_BYTES = 1 << 30
GiB = float(1 << 30)


class GenerateError(SdenvError):
    """Loading or running the pipeline failed."""


class ModelLayoutError(UsageError):
    """The model directory is not a complete diffusers SD3 pipeline; the message names the file."""


class PickleRefused(ModelLayoutError):
    """A pickle checkpoint (.ckpt/.bin/.pt...) in the model directory: refused, safetensors only."""


class InsufficientMemory(GenerateError):
    """The model cannot fit the device in the requested mode; found before loading."""


class Fp8Unavailable(GenerateError):
    """The requested FP8 mode cannot run on this box (GPU, torch or torchao missing)."""


# --------------------------------------------------------------------------- checks from files


@dataclass(frozen=True)
class TensorStats:
    params: int = 0
    matrix_params: int = 0  # 2-D weights: what FP8 modes store in one byte
    file_bytes: int = 0


def read_safetensors_header(path: Path) -> dict[str, Any]:
    """The JSON header of a safetensors file, checking the file is as long as it says."""
    try:
        with path.open("rb") as fh:
            raw = fh.read(8)
            if len(raw) != 8:
                raise ModelLayoutError(f"{path}: truncated safetensors file; download it again")
            (n,) = struct.unpack("<Q", raw)
            if n > 100 << 20:
                raise ModelLayoutError(f"{path}: not a safetensors file (header length {n})")
            header = json.loads(fh.read(n))
    except (json.JSONDecodeError, UnicodeDecodeError):
        raise ModelLayoutError(
            f"{path}: unreadable safetensors header; download it again"
        ) from None
    if not isinstance(header, dict):
        raise ModelLayoutError(f"{path}: unreadable safetensors header; download it again")
    end = max((v["data_offsets"][1] for k, v in header.items() if k != "__metadata__"), default=0)
    size = path.stat().st_size
    if size < 8 + n + end:
        raise ModelLayoutError(
            f"{path}: truncated ({size} bytes, header says {8 + n + end}); download it again"
        )
    return header


def _stats(files: list[Path]) -> TensorStats:
    params = matrix = nbytes = 0
    for f in files:
        for name, info in read_safetensors_header(f).items():
            if name == "__metadata__":
                continue
            count = 1
            for d in info["shape"]:
                count *= int(d)
            params += count
            if len(info["shape"]) == 2:
                matrix += count
            nbytes += count * _DTYPE_BYTES.get(info["dtype"], 4)
    return TensorStats(params, matrix, nbytes)


def _weight_files(comp_dir: Path, model_dir: Path) -> list[Path]:
    indexes = sorted(comp_dir.glob("*.safetensors.index.json"))
    if indexes:
        files: list[Path] = []
        for index in indexes:
            try:
                shards = sorted(set(json.loads(index.read_text())["weight_map"].values()))
            except (json.JSONDecodeError, KeyError, TypeError):
                raise ModelLayoutError(
                    f"{index}: unreadable shard index; download it again"
                ) from None
            missing = [s for s in shards if not (comp_dir / s).is_file()]
            if missing:
                raise ModelLayoutError(
                    f"{comp_dir / missing[0]}: missing shard ({len(missing)} of {len(shards)} "
                    f"listed in {index.name}); finish the download"
                )
            files += [comp_dir / s for s in shards]
        return files
    files = sorted(comp_dir.glob("*.safetensors"))
    if not files:
        raise ModelLayoutError(
            f"{comp_dir}: no .safetensors weights; download the safetensors files of "
            f"{model_dir.name}/{comp_dir.name}"
        )
    return files


def find_pickles(model_dir: Path) -> list[Path]:
    return sorted(
        p for p in model_dir.rglob("*") if p.suffix.lower() in PICKLE_SUFFIXES and p.is_file()
    )


@dataclass(frozen=True)
class ModelLayout:
    path: Path
    pipeline_class: str
    components: dict[str, TensorStats]  # model components only

    def total_params(self) -> int:
        return sum(s.params for s in self.components.values())


def check_model_dir(model_dir: Path) -> ModelLayout:
    """Everything about ``model_dir`` that files can tell, before any import of torch."""
    if not model_dir.is_dir():
        what = (
            "is a file, not a model directory" if model_dir.exists() else "no such model directory"
        )
        raise ModelLayoutError(
            f"{model_dir}: {what}; pass a local diffusers-format SD3.5 directory"
        )
    pickles = find_pickles(model_dir)
    if pickles:
        raise PickleRefused(
            f"{pickles[0]}: pickle checkpoint refused (loading a pickle can run arbitrary code); "
            "use the model's .safetensors files and delete the pickle files"
        )
    index_path = model_dir / "model_index.json"
    if not index_path.is_file():
        single = sorted(model_dir.glob("*.safetensors"))
        hint = (
            f" ({single[0].name} is a single-file checkpoint: use the diffusers-format repo)"
            if single
            else ""
        )
        raise ModelLayoutError(f"{index_path}: missing; not a diffusers pipeline directory{hint}")
    try:
        index = json.loads(index_path.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise ModelLayoutError(f"{index_path}: invalid JSON ({exc}); download it again") from None
    cls = str(index.get("_class_name", ""))
    if not cls.startswith("StableDiffusion3"):
        raise ModelLayoutError(
            f"{index_path}: _class_name is {cls!r}, not a StableDiffusion3 pipeline"
        )
    components: dict[str, TensorStats] = {}
    for name in (*_REQUIRED, *_OPTIONAL):
        entry = index.get(name)
        if entry is None or entry == [None, None]:
            if name in _REQUIRED:
                raise ModelLayoutError(f"{index_path}: component {name!r} missing; re-download it")
            continue
        comp_dir = model_dir / name
        if not comp_dir.is_dir():
            raise ModelLayoutError(f"{comp_dir}: missing component directory; finish the download")
        if name == "scheduler":
            needed = ["scheduler_config.json"]
        elif name.startswith("tokenizer"):
            needed = []
            if not any(
                (comp_dir / f).is_file() for f in ("tokenizer.json", "vocab.json", "spiece.model")
            ):
                raise ModelLayoutError(
                    f"{comp_dir}: no tokenizer files (tokenizer.json, vocab.json or spiece.model)"
                )
        else:
            needed = ["config.json"]
        for f in needed:
            if not (comp_dir / f).is_file():
                raise ModelLayoutError(f"{comp_dir / f}: missing; finish the download")
        if name in _MODEL_COMPONENTS:
            components[name] = _stats(_weight_files(comp_dir, model_dir))
    return ModelLayout(model_dir, cls, components)


@dataclass(frozen=True)
class MemoryPlan:
    mode: str
    weights_bytes: int
    needed_bytes: int


def plan_memory(layout: ModelLayout, mode: str) -> MemoryPlan:
    """Weights in bf16, the transformer's matrices in one byte in the FP8 modes, plus headroom."""
    weights = 0
    for name, s in layout.components.items():
        if name == "transformer" and mode in ("native", "emulated"):
            weights += s.matrix_params + 2 * (s.params - s.matrix_params)
        else:
            weights += 2 * s.params
    needed = int(weights * (1 + _HEADROOM_FRACTION)) + _HEADROOM_BYTES
    return MemoryPlan(mode, weights, needed)


def check_memory(plan: MemoryPlan, available: int, device: str) -> None:
    if plan.needed_bytes > available:
        hint = (
            "try --fp8 native or --fp8 emulated (FP8 halves the transformer)"
            if plan.mode == "off"
            else "use a device with more free memory"
        )
        raise InsufficientMemory(
            f"model needs about {plan.needed_bytes / GiB:.1f} GiB on {device} in mode "
            f"{plan.mode!r} ({plan.weights_bytes / GiB:.1f} GiB of weights), "
            f"{available / GiB:.1f} GiB free; {hint}"
        )


def host_available_bytes() -> int:
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemAvailable:"):
                return int(line.split()[1]) * 1024
    except OSError:
        pass
    return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_AVPHYS_PAGES")


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
        raise UsageError(f"--fp8 {requested!r}: choose auto, native, emulated or off")
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
    plan: MemoryPlan
    timings: dict[str, float] = field(default_factory=dict)


def load_pipeline(
    model_dir: Path,
    mode: str = "auto",
    *,
    compile: bool = False,
    available_bytes: int | None = None,
    probe_fn: Callable[[], str] = probe_mode,
) -> LoadedPipeline:
    """Check, then load ``model_dir`` onto the GPU (or CPU) in ``mode``; raises before loading."""
    t0 = time.perf_counter()
    layout = check_model_dir(model_dir)
    resolved = resolve_mode(mode, probe_fn)
    import torch

    device = _device()
    if resolved == "native":
        _require_native(device)
    if resolved == "emulated" and not hasattr(torch, "float8_e4m3fn"):
        raise Fp8Unavailable(
            f"--fp8 emulated needs torch >= 2.1 (float8 dtypes); this is torch {torch.__version__}"
        )
    plan = plan_memory(layout, resolved)
    if available_bytes is None:
        available_bytes = (
            torch.cuda.mem_get_info()[0] if device == "cuda" else host_available_bytes()
        )
    check_memory(plan, available_bytes, device)
    timings = {"check_s": time.perf_counter() - t0}

    from diffusers import StableDiffusion3Pipeline as _Pipeline

    from sdenv.tinymodel import quiet_libraries

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
    _sync(device)
    timings["load_s"] = time.perf_counter() - t

    t = time.perf_counter()
    if resolved == "native":
        from sdenv.fp8 import apply_native

        apply_native(pipe.transformer)
    elif resolved == "emulated":
        pipe.transformer.enable_layerwise_casting(
            storage_dtype=torch.float8_e4m3fn, compute_dtype=torch.bfloat16
        )
    if compile:
        pipe.transformer.compile()
    _sync(device)
    timings["fp8_s"] = time.perf_counter() - t
    return LoadedPipeline(pipe, resolved, device, layout, plan, timings)


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
        fp8=fp8_storage(pipe.transformer),
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


def size_multiple(model_dir: Path) -> int:
    """Height and width must be multiples of the VAE's downscale times the transformer's patch
    size (8 x 2 = 16 for SD3.5), read from the model's own config files."""

    def config(sub: str) -> dict[str, Any]:
        try:
            data = json.loads((model_dir / sub / "config.json").read_text(encoding="utf-8"))
        except (OSError, ValueError):
            return {}
        return data if isinstance(data, dict) else {}

    blocks = config("vae").get("block_out_channels") or [0, 0, 0, 0]
    patch = config("transformer").get("patch_size") or 2
    return int(2 ** (len(blocks) - 1) * int(patch))


def check_size(model_dir: Path, height: int | None, width: int | None) -> None:
    multiple = size_multiple(model_dir)
    for option, value in (("--height", height), ("--width", width)):
        if value is not None and (value < multiple or value % multiple):
            near = max(multiple, round(value / multiple) * multiple)
            raise UsageError(
                f"{option} {value}: must be a positive multiple of {multiple} for this model "
                f"(VAE downscale x patch size); e.g. {near}"
            )


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
) -> GenerateResult:
    """Load, run and write the PNG atomically (no file at all on failure)."""
    if out.suffix.lower() != ".png":
        raise UsageError(f"--out {out}: must end in .png")
    if out.is_dir():
        raise UsageError(f"--out {out}: is a directory; name the PNG file to write")
    if steps < 1:
        raise UsageError(f"--steps {steps}: must be at least 1")
    check_size(model_dir, height, width)  # before the slow load, not after it
    loaded = load_pipeline(model_dir, mode, compile=compile)
    result, image = run_pipeline(loaded, prompt, steps=steps, seed=seed, height=height, width=width)
    if not result.finite:
        raise GenerateError(
            f"{model_dir}: the image has NaN/inf values in mode {result.mode!r}; "
            "try --fp8 off to tell the model from the FP8 path"
        )
    result.image = str(out)
    write_atomic(out, png_bytes(image, result))
    return result


# --------------------------------------------------------------------------- model check


CHECK_PROMPT = "a photograph of an astronaut riding a horse"


def model_check(
    mode: str, model_dir: Path | None = None, *, steps: int = 2, workdir: Path | None = None
) -> dict[str, Any]:
    """The verify model check: load (the tiny model by default) in ``mode``, run ``steps`` steps."""
    from sdenv._cleanup import throwaway_dir
    from sdenv.tinymodel import make_tiny_model

    # Owner-marked: when verify kills this check (timeout, SIGTERM), the next sdenv run removes it.
    with throwaway_dir("sdenv-tiny-", workdir) as tmp:
        t = time.perf_counter()
        made_s = 0.0
        if model_dir is None:
            model_dir = make_tiny_model(tmp / "tiny-sd3")
            made_s = time.perf_counter() - t
        # The model's own size: a smaller one can exceed what its position embedding covers.
        loaded = load_pipeline(model_dir, mode, probe_fn=lambda: mode)
        result, _ = run_pipeline(loaded, CHECK_PROMPT, steps=steps, seed=0)
        result.timings["make_tiny_s"] = round(made_s, 4)
        return {"ok": result.finite and result.fp8_ok(), "fp8_ok": result.fp8_ok()} | asdict(result)


def _check_main(argv: list[str]) -> int:
    import argparse

    p = argparse.ArgumentParser(prog="python -m sdenv.generate check")
    p.add_argument("--mode", choices=MODES, required=True)
    p.add_argument("--model", type=Path)
    p.add_argument("--steps", type=int, default=2)
    args = p.parse_args(argv)
    try:
        report = model_check(args.mode, args.model, steps=args.steps)
    except SdenvError as exc:
        report = {"ok": False, "error": str(exc), "error_type": type(exc).__name__}
    except Exception as exc:  # the check reports any crash as data for verify
        report = {"ok": False, "error": f"{type(exc).__name__}: {exc}", "error_type": "crash"}
    # Last line of stdout, so library chatter above it cannot break the parse.
    sys.stdout.write("\n" + json.dumps(report) + "\n")
    return 0 if report.get("ok") else 1


def parse_check_output(stdout: str) -> Mapping[str, Any] | None:
    for line in reversed(stdout.strip().splitlines()):
        if line.startswith("{"):
            try:
                obj = json.loads(line)
            except json.JSONDecodeError:
                return None
            return obj if isinstance(obj, dict) else None
    return None


if __name__ == "__main__":
    if sys.argv[1:2] != ["check"]:
        print("usage: python -m sdenv.generate check --mode MODE [--model DIR]", file=sys.stderr)
        sys.exit(2)
    sys.exit(_check_main(sys.argv[2:]))
