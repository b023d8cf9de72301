# The packages under test vary by version in how typed they are; their calls are checked at
# run time by the checks themselves.
# mypy: disable-error-code="no-untyped-call, attr-defined, import-untyped"
"""Smoke checks that run INSIDE the target interpreter.

Standard library plus the packages under test only: target venvs and images do not have sdenv
(nor rich, nor packaging) installed. The host stages this package in an empty directory and runs
``smoke.py <check> [<check> ...] [--gpu|--no-gpu]`` (``sdenv._target.command``): one process may
run several checks, in the order given, each reporting one result record through
``sdenv.target.protocol`` as soon as it is done:
``{"check": name, "status": "pass"|"fail"|"skip", "detail": str, "error": str, "facts": {...},
"seconds": float}``. A crash or hang produces no record for the checks left; the host turns that
into a failure (re-running each one alone).
"""

from __future__ import annotations

import json
import math
import os
import sys
import time
import traceback
from collections.abc import Callable
from typing import Any

from sdenv.target.protocol import MARKER, emit

__all__ = ["CHECKS", "MARKER", "main", "run"]

# The directory the host staged this package in: not a place packages under test come from.
_STAGE_ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

# Distributions the report names by version (importlib.metadata, no imports of the packages).
WATCHED = (
    *("torch", "xformers", "diffusers", "transformers", "huggingface-hub", "tokenizers"),
    *("accelerate", "safetensors", "sentencepiece", "protobuf", "numpy", "torchao", "triton"),
)

# FP8 formats: mantissa bits, largest finite value, smallest normal value (OCP FP8 spec).
FP8_FORMATS = {
    "float8_e4m3fn": (3, 448.0, 2.0**-6),
    "float8_e5m2": (2, 57344.0, 2.0**-14),
}


class Skip(Exception):
    """The check does not apply here (no GPU, no FP8 hardware, package not installed)."""


class CheckFailed(Exception):
    """A functional check ran and found a wrong answer (not a Python error)."""

    def __init__(self, message: str, facts: dict[str, Any] | None = None) -> None:
        super().__init__(message)
        self.facts = facts or {}


def _gpu_wanted(mode: str) -> bool:
    """``--gpu``: required; ``--no-gpu``: never; auto: when an NVIDIA driver is loaded."""
    if mode == "on":
        return True
    if mode == "off":
        return False
    return _driver_version() is not None


def _driver_version() -> str | None:
    try:
        with open("/proc/driver/nvidia/version", encoding="utf-8") as fh:
            text = fh.read()
    except OSError:
        return None
    for token in text.split():
        parts = token.split(".")
        if len(parts) >= 2 and all(p.isdigit() for p in parts):
            return token
    return "unknown"


def _module_dists() -> dict[str, list[str]]:
    from importlib import metadata

    try:
        return {k: sorted(set(v)) for k, v in metadata.packages_distributions().items()}
    except Exception:  # very old importlib.metadata: the host falls back to name rules
        return {}


def check_env(mode: str) -> dict[str, Any]:
    """Interpreter, versions of the watched distributions and the NVIDIA driver: no imports."""
    import platform
    from importlib import metadata

    versions: dict[str, str | None] = {}
    for name in WATCHED:
        try:
            versions[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            versions[name] = None
    dists = _module_dists()
    return {
        "detail": f"Python {platform.python_version()} at {sys.executable}",
        "facts": {
            "python_version": platform.python_version(),
            "executable": sys.executable,
            "platform": platform.platform(),
            "versions": versions,
            "driver": _driver_version(),
            "gpu_wanted": _gpu_wanted(mode),
            "module_dists": {k: v for k, v in dists.items() if not k.startswith("_")},
            "sys_path": [p for p in sys.path if p and os.path.abspath(p) != _STAGE_ROOT],
        },
    }


def check_torch(mode: str) -> dict[str, Any]:
    import torch

    facts: dict[str, Any] = {
        "torch": torch.__version__,
        "torch_cuda": torch.version.cuda,
        "torch_git": getattr(torch.version, "git_version", None),
    }
    build = f"CUDA {torch.version.cuda}" if torch.version.cuda else "CPU-only build"
    # A real op, not just an import: a broken BLAS/OpenMP would show here.
    x = torch.arange(6, dtype=torch.float32).reshape(2, 3)
    if float((x @ x.T).sum()) != 83.0:
        raise CheckFailed("torch CPU matmul returned a wrong result")
    return {"detail": f"torch {torch.__version__} ({build})", "facts": facts}


def check_cuda(mode: str) -> dict[str, Any]:
    """A kernel really launches: catches 'no kernel image' (arch) and a too-old driver."""
    if not _gpu_wanted(mode):
        raise Skip("no NVIDIA GPU (no driver loaded)" if mode == "auto" else "GPU checks off")
    import torch

    if torch.version.cuda is None:
        raise CheckFailed(f"torch {torch.__version__} is a CPU-only build but a GPU is wanted")
    facts: dict[str, Any] = {"arch_list": torch.cuda.get_arch_list(), "driver": _driver_version()}
    torch.cuda.init()  # raises the driver's own message ("driver ... too old") when it fails
    if not torch.cuda.is_available():
        raise CheckFailed("torch.cuda.is_available() is False with an NVIDIA driver loaded")
    cc = torch.cuda.get_device_capability(0)
    facts.update(
        device=torch.cuda.get_device_name(0),
        cc=f"{cc[0]}.{cc[1]}",
        devices=torch.cuda.device_count(),
    )
    y = torch.ones(1024, device="cuda") * 2 + 1  # launches elementwise kernels: arch coverage
    torch.cuda.synchronize()
    if float(y.sum()) != 3072.0:
        raise CheckFailed("a CUDA elementwise kernel returned a wrong result")
    return {
        "detail": f"{facts['device']} cc {facts['cc']}, driver {facts['driver']}, "
        f"torch CUDA {torch.version.cuda}",
        "facts": facts,
    }


def _xformers_build_record() -> dict[str, Any] | None:
    import importlib.util

    spec = importlib.util.find_spec("xformers")
    if spec is None or not spec.submodule_search_locations:
        return None
    for location in spec.submodule_search_locations:
        path = os.path.join(location, "cpp_lib.json")
        if os.path.exists(path):
            with open(path, encoding="utf-8") as fh:
                record: dict[str, Any] = json.load(fh)
                return record
    return None


def check_xformers(mode: str) -> dict[str, Any]:
    import importlib.util

    if importlib.util.find_spec("xformers") is None:
        raise Skip("xformers is not installed (optional: torch SDPA is used instead)")
    record = _xformers_build_record()
    import torch
    import xformers
    import xformers._cpp_lib as cpp_lib

    version = record.get("version", {}) if record else {}
    built_torch = version.get("torch")
    facts = {
        "xformers": xformers.__version__,
        "built_for_torch": built_torch,
        "built_for_cuda": version.get("cuda"),
        "built_arch_list": (record or {}).get("env", {}).get("TORCH_CUDA_ARCH_LIST"),
        "running_torch": torch.__version__,
    }
    exc = cpp_lib._cpp_library_load_exception
    if exc is not None:
        # xformers only warns; the loader's own error ("undefined symbol: ...") is the cause.
        raise CheckFailed(
            f"xformers {xformers.__version__} C++ extension did not load: built for torch "
            f"{built_torch}, running torch {torch.__version__}: {_causes(exc.__cause__ or exc)}",
            facts,
        )
    same = built_torch is not None and built_torch.split("+")[0] == torch.__version__.split("+")[0]
    note = "" if same else f"; built for torch {built_torch}, loaded anyway"
    return {
        "detail": f"xformers {xformers.__version__}, C++ extension loaded "
        f"(torch {torch.__version__}){note}",
        "facts": facts,
    }


def _causes(exc: BaseException) -> str:
    """The chain of causes, outermost first: torch.ops.load_library (2.11) wraps the dlopen
    error ("undefined symbol", "cannot open shared object file") in its own OSError."""
    parts: list[str] = []
    seen: set[int] = set()
    current: BaseException | None = exc
    while current is not None and id(current) not in seen and len(parts) < 4:
        seen.add(id(current))
        text = " ".join(str(current).split())
        parts.append(f"{type(current).__name__}: {text}"[:400])
        current = current.__cause__ or current.__context__
    return "; caused by ".join(parts)


def check_diffusers(mode: str) -> dict[str, Any]:
    import diffusers

    # diffusers imports lazily: touching the attributes does the real imports.
    from diffusers import SD3Transformer2DModel, StableDiffusion3Pipeline

    layerwise = hasattr(SD3Transformer2DModel, "enable_layerwise_casting")
    return {
        "detail": f"diffusers {diffusers.__version__}: {StableDiffusion3Pipeline.__name__}, "
        f"{SD3Transformer2DModel.__name__}"
        + ("" if layerwise else " (no enable_layerwise_casting: FP8 storage needs >= 0.33)"),
        "facts": {"diffusers": diffusers.__version__, "layerwise_casting": layerwise},
    }


def check_transformers(mode: str) -> dict[str, Any]:
    import transformers
    from transformers.utils import is_torch_available

    if not is_torch_available():
        try:
            from importlib import metadata

            torch_version = metadata.version("torch")
        except Exception:
            torch_version = "not installed"
        raise CheckFailed(
            f"transformers {transformers.__version__}: is_torch_available() is False with torch "
            f"{torch_version} (transformers torch backend disabled: 'PyTorch was not found')"
        )
    # The SD3 text encoders, through the torch backend.
    from transformers import CLIPTextModelWithProjection, T5EncoderModel

    return {
        "detail": f"transformers {transformers.__version__}: torch backend on, "
        f"{CLIPTextModelWithProjection.__name__}, {T5EncoderModel.__name__}",
        "facts": {"transformers": transformers.__version__},
    }


def check_accelerate(mode: str) -> dict[str, Any]:
    import accelerate
    import torch
    from accelerate import init_empty_weights

    with init_empty_weights():
        layer = torch.nn.Linear(4, 4)
    if layer.weight.device.type != "meta":
        raise CheckFailed("accelerate.init_empty_weights did not put weights on the meta device")
    return {"detail": f"accelerate {accelerate.__version__}: init_empty_weights works", "facts": {}}


def check_safetensors(mode: str) -> dict[str, Any]:
    import safetensors
    import torch
    from safetensors.torch import load, save

    tensors = {"w": torch.arange(12, dtype=torch.bfloat16).reshape(3, 4)}
    if hasattr(torch, "float8_e4m3fn"):
        tensors["w8"] = torch.linspace(-2, 2, 8).to(torch.float8_e4m3fn)
    back = load(save(tensors))
    for name, tensor in tensors.items():
        if back[name].dtype != tensor.dtype or not torch.equal(back[name].float(), tensor.float()):
            raise CheckFailed(f"safetensors round trip changed tensor {name!r}")
    return {
        "detail": f"safetensors {safetensors.__version__}: save/load round trip of "
        + ", ".join(str(t.dtype).replace("torch.", "") for t in tensors.values()),
        "facts": {},
    }


def check_fp8_backend(mode: str) -> dict[str, Any]:
    """torchao imports next to this torch and builds the config of sdenv's native FP8 transform.

    The same classes as ``sdenv.fp8.native_config`` (this script runs standalone, without sdenv);
    whether the pair is one the table supports and whether the transform runs on the GPU is the
    probe's stack verdict.
    """
    import importlib.util

    if importlib.util.find_spec("torchao") is None:
        raise Skip("torchao is not installed (the env runs FP8 emulated)")
    import torch
    import torchao
    from torchao.quantization import Float8DynamicActivationFloat8WeightConfig, PerRow

    config = Float8DynamicActivationFloat8WeightConfig(granularity=PerRow())
    return {
        "detail": f"torchao {torchao.__version__} on torch {torch.__version__}: "
        f"{type(config).__name__}(PerRow) built",
        "facts": {"torchao": torchao.__version__},
    }


def _device(mode: str) -> str:
    import torch

    return "cuda" if _gpu_wanted(mode) and torch.cuda.is_available() else "cpu"


def check_fp8_dtypes(mode: str) -> dict[str, Any]:
    import torch

    missing = [name for name in FP8_FORMATS if not hasattr(torch, name)]
    if missing:
        raise CheckFailed(f"torch {torch.__version__} lacks {', '.join(missing)} (needs >= 2.1)")
    facts: dict[str, Any] = {}
    parts = []
    device = _device(mode)
    for name, (mantissa, fmax, min_normal) in FP8_FORMATS.items():
        dtype = getattr(torch, name)
        info = torch.finfo(dtype)
        if float(info.max) != fmax:
            raise CheckFailed(f"torch.finfo({name}).max is {info.max}, expected {fmax}")
        # Normal values across the whole exponent range, both signs: round to nearest keeps the
        # relative error within half a unit in the last place, 2**-(mantissa+1).
        mags = torch.logspace(math.log10(min_normal), math.log10(fmax), 2001, dtype=torch.float64)
        mags = mags.clamp(min_normal, fmax)
        x = torch.cat([mags, -mags]).to(torch.float32)
        back = x.to(dtype).to(torch.float32)
        rel = float(((back - x).abs() / x.abs()).max())
        bound = 2.0 ** -(mantissa + 1)
        if not rel <= bound:
            raise CheckFailed(
                f"{name} round trip relative error {rel:.4g} exceeds {bound:.4g} on normal values"
            )
        # Out of range: e4m3fn has no inf, so a plain cast cannot saturate; report what it does.
        big = torch.tensor([fmax * 4, -fmax * 4, float("inf")], dtype=torch.float32)
        plain = [_fmt(v) for v in big.to(dtype).to(torch.float32).tolist()]
        if device == "cuda":  # CUDA's cast kernel may differ from the CPU one: report both
            on_gpu = big.to(device).to(dtype).to(torch.float32).tolist()
            facts.setdefault("cuda_plain_cast", {})[name] = [_fmt(v) for v in on_gpu]
        saturated = [_fmt(v) for v in big.clamp(-fmax, fmax).to(dtype).to(torch.float32).tolist()]
        if saturated != [_fmt(fmax), _fmt(-fmax), _fmt(fmax)]:
            raise CheckFailed(f"{name} saturating (clamp) cast gave {saturated}, expected +-{fmax}")
        facts[name] = {
            "max": fmax,
            "round_trip_rel_err": rel,
            "bound": bound,
            "plain_cast_4max_-4max_inf": plain,
            "clamp_cast_4max_-4max_inf": saturated,
        }
        parts.append(
            f"{name.replace('float8_', '')}: round trip {rel:.3g} <= {bound:g}, "
            f"plain cast of [4max,-4max,inf] -> [{', '.join(plain)}], clamp -> +-{fmax:g}"
        )
    if "cuda_plain_cast" in facts:
        parts.append(
            "on CUDA plain cast -> "
            + ", ".join(
                f"{k.replace('float8_', '')} [{', '.join(v)}]"
                for k, v in facts["cuda_plain_cast"].items()
            )
        )
    return {"detail": "; ".join(parts), "facts": facts}


def _fmt(value: float) -> str:
    if math.isnan(value):
        return "nan"
    if math.isinf(value):
        return "inf" if value > 0 else "-inf"
    return f"{value:g}"


def check_fp8_matmul(mode: str) -> dict[str, Any]:
    """FP8 weight storage, bf16 compute: what diffusers' layerwise casting and torchao's
    weight-only FP8 do. Scaled per tensor (amax -> 448) so small weights stay normal."""
    import torch

    if not hasattr(torch, "float8_e4m3fn"):
        raise CheckFailed(f"torch {torch.__version__} has no float8_e4m3fn")
    device = _device(mode)
    gen = torch.Generator().manual_seed(0)
    x = torch.randn(32, 256, generator=gen).to(device, torch.bfloat16)
    w = (torch.randn(128, 256, generator=gen) * 0.02).to(device, torch.bfloat16)
    scale = w.float().abs().max() / 448.0
    w8 = (w.float() / scale).to(torch.float8_e4m3fn)  # what is stored: 1 byte per weight
    ref = x @ w.T
    out = x @ (w8.to(torch.float32) * scale).to(torch.bfloat16).T
    err = float((out.float() - ref.float()).norm() / ref.float().norm())
    # Unscaled storage (a plain cast of small weights) pushes many into subnormals: report it.
    raw = x @ w.to(torch.float8_e4m3fn).to(torch.bfloat16).T
    raw_err = float((raw.float() - ref.float()).norm() / ref.float().norm())
    tol = 0.05  # e4m3 keeps 3 mantissa bits: per-weight error <= 6.25 %, ~2-3 % after the sum
    facts = {"device": device, "rel_err": err, "tolerance": tol, "unscaled_rel_err": raw_err}
    if not (math.isfinite(err) and err <= tol):
        raise CheckFailed(f"FP8-stored weights matmul rel. error {err:.4g} > {tol} vs bf16")
    return {
        "detail": f"e4m3 storage + bf16 compute on {device}: rel. error {err:.3g} <= {tol} "
        f"(unscaled cast: {raw_err:.3g})",
        "facts": facts,
    }


def _fp8_gpu(mode: str) -> tuple[Any, tuple[int, int]]:
    if not _gpu_wanted(mode):
        raise Skip("no NVIDIA GPU (no driver loaded)" if mode == "auto" else "GPU checks off")
    import torch

    if not torch.cuda.is_available():
        raise CheckFailed("a GPU is wanted but torch.cuda.is_available() is False")
    return torch, torch.cuda.get_device_capability(0)


def check_scaled_mm(mode: str) -> dict[str, Any]:
    torch, cc = _fp8_gpu(mode)
    if cc < (8, 9):
        raise Skip(f"cc {cc[0]}.{cc[1]} has no native FP8 (needs >= 8.9)")
    if not hasattr(torch, "_scaled_mm"):
        raise CheckFailed(f"torch {torch.__version__} has no torch._scaled_mm")
    gen = torch.Generator(device="cuda").manual_seed(0)
    a = torch.randn(64, 128, device="cuda", generator=gen)
    b = torch.randn(96, 128, device="cuda", generator=gen)
    sa = (a.abs().max() / 448.0).float()
    sb = (b.abs().max() / 448.0).float()
    a8 = (a / sa).to(torch.float8_e4m3fn)
    b8 = (b / sb).to(torch.float8_e4m3fn)
    # Keywords work for both signatures: 2.1-2.3 returned (out, amax), 2.4+ a tensor.
    result = torch._scaled_mm(a8, b8.t(), scale_a=sa, scale_b=sb, out_dtype=torch.bfloat16)
    out = result[0] if isinstance(result, tuple) else result
    ref = (a8.float() * sa) @ (b8.float() * sb).t()
    err = float((out.float() - ref).norm() / ref.norm())
    tol = 0.01  # same FP8 inputs; only the bf16 output rounding (2**-9) differs
    if not (math.isfinite(err) and err <= tol):
        raise CheckFailed(f"torch._scaled_mm rel. error {err:.4g} > {tol} vs float32 reference")
    return {
        "detail": f"torch._scaled_mm e4m3 x e4m3 -> bf16 on cc {cc[0]}.{cc[1]}: "
        f"rel. error {err:.3g} <= {tol}",
        "facts": {"rel_err": err, "tuple_return": isinstance(result, tuple)},
    }


def check_xformers_attention(mode: str) -> dict[str, Any]:
    torch, _cc = _fp8_gpu(mode)
    import importlib.util

    if importlib.util.find_spec("xformers") is None:
        raise Skip("xformers is not installed")
    import torch.nn.functional as F
    import xformers.ops as xops

    gen = torch.Generator(device="cuda").manual_seed(0)
    shape = (2, 256, 4, 64)  # xformers layout: batch, tokens, heads, head dim
    q, k, v = (torch.randn(shape, device="cuda", generator=gen, dtype=torch.float16) for _ in "qkv")
    out = xops.memory_efficient_attention(q, k, v)
    ref = F.scaled_dot_product_attention(q.transpose(1, 2), k.transpose(1, 2), v.transpose(1, 2))
    diff = float((out.float() - ref.transpose(1, 2).float()).abs().max())
    tol = 1e-2
    if not diff <= tol:
        raise CheckFailed(f"xformers attention differs from SDPA by {diff:.4g} (> {tol})")
    return {
        "detail": f"memory_efficient_attention vs SDPA (fp16 {list(shape)}): max diff {diff:.2g}",
        "facts": {"max_abs_diff": diff},
    }


def check_sd3_forward(mode: str) -> dict[str, Any]:
    """A tiny SD3.5-shaped transformer (qk RMSNorm, a dual-attention block) runs in bf16 and
    with FP8 weight storage (diffusers enable_layerwise_casting); outputs must be finite."""
    import torch
    from diffusers import SD3Transformer2DModel

    device = _device(mode)
    torch.manual_seed(0)
    model = SD3Transformer2DModel(
        sample_size=16,
        patch_size=2,
        in_channels=4,
        num_layers=2,
        attention_head_dim=16,
        num_attention_heads=2,
        joint_attention_dim=32,
        caption_projection_dim=32,
        pooled_projection_dim=32,
        out_channels=4,
        pos_embed_max_size=16,
        qk_norm="rms_norm",
        dual_attention_layers=(0,),
    ).to(device, torch.bfloat16)
    model.eval()
    gen = torch.Generator().manual_seed(1)
    inputs = {
        "hidden_states": torch.randn(1, 4, 16, 16, generator=gen),
        "encoder_hidden_states": torch.randn(1, 8, 32, generator=gen),
        "pooled_projections": torch.randn(1, 32, generator=gen),
        "timestep": torch.tensor([500.0]),
    }
    inputs = {k: v.to(device, torch.bfloat16) for k, v in inputs.items()}
    with torch.no_grad():
        out_bf16 = model(**inputs, return_dict=False)[0].float()
    if not bool(torch.isfinite(out_bf16).all()):
        raise CheckFailed("tiny SD3Transformer2DModel bf16 forward produced non-finite values")
    if not hasattr(model, "enable_layerwise_casting"):
        raise CheckFailed(
            "diffusers lacks ModelMixin.enable_layerwise_casting (FP8 storage needs >= 0.33)"
        )
    model.enable_layerwise_casting(storage_dtype=torch.float8_e4m3fn, compute_dtype=torch.bfloat16)
    stored = {p.dtype for p in model.parameters()}
    with torch.no_grad():
        out_fp8 = model(**inputs, return_dict=False)[0].float()
    if not bool(torch.isfinite(out_fp8).all()):
        raise CheckFailed(
            "tiny SD3Transformer2DModel FP8-storage forward produced non-finite values"
        )
    if torch.float8_e4m3fn not in stored:
        raise CheckFailed("enable_layerwise_casting stored no weight in float8_e4m3fn")
    diff = float((out_fp8 - out_bf16).norm() / out_bf16.norm())
    return {
        "detail": f"tiny SD3.5-shaped transformer on {device}: bf16 and FP8-storage outputs "
        f"finite, FP8 vs bf16 rel. diff {diff:.3g}",
        "facts": {"device": device, "fp8_vs_bf16_rel_diff": diff},
    }


CHECKS: dict[str, Callable[[str], dict[str, Any]]] = {
    "env": check_env,
    "torch": check_torch,
    "cuda": check_cuda,
    "xformers": check_xformers,
    "diffusers": check_diffusers,
    "transformers": check_transformers,
    "accelerate": check_accelerate,
    "safetensors": check_safetensors,
    "fp8-dtypes": check_fp8_dtypes,
    "fp8-matmul": check_fp8_matmul,
    "fp8-backend": check_fp8_backend,
    "scaled-mm": check_scaled_mm,
    "xformers-attention": check_xformers_attention,
    "sd3-forward": check_sd3_forward,
}


def run(name: str, mode: str) -> dict[str, Any]:
    start = time.perf_counter()
    try:
        result = CHECKS[name](mode)
        record = {"status": "pass", "detail": result["detail"], "error": "", **result}
    except Skip as exc:
        record = {"status": "skip", "detail": str(exc), "error": "", "facts": {}}
    except CheckFailed as exc:
        record = {"status": "fail", "detail": str(exc), "error": str(exc), "facts": exc.facts}
    except BaseException as exc:  # any import/runtime error is the finding itself
        record = {
            "status": "fail",
            # One line: diffusers' lazy import errors put the cause on the following line.
            "detail": " ".join(f"{type(exc).__name__}: {exc}".split())[:400],
            "error": traceback.format_exc(),
            "facts": {},
        }
    record["check"] = name
    record["seconds"] = time.perf_counter() - start
    return record


def main(argv: list[str]) -> int:
    names = [a for a in argv if not a.startswith("--")]
    if not names or any(n not in CHECKS for n in names):
        print(f"usage: smoke.py {{{','.join(CHECKS)}}}... [--gpu|--no-gpu]")
        return 2
    mode = "on" if "--gpu" in argv else "off" if "--no-gpu" in argv else "auto"
    for name in names:
        emit(run(name, mode))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
