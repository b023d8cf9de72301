"""``sdenv bench``: does FP8 pay on this GPU? Per-step latency, memory and error, per mode.

The harness is stdlib-only: it asks a worker process (``sdenv.runtime.bench_worker``) what the
box has, decides which modes may run (the probe's FP8 verdict), then runs each mode in its own
process so that one mode's allocations, compiled graphs and CUDA context never colour the next
one's figures. The worker talks JSON through two files (request in, result out) because
diffusers, torch and inductor all print to stdout/stderr.

Everything that turns figures into a verdict (statistics, ratios, the recommendation, the kernel
categories of a profile) is a pure function here, tested on recorded numbers
(``docs/evidence.md#E-h200-large-step``).
"""

from __future__ import annotations

import datetime as _dt
import json
import statistics
import subprocess
import sys
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any

from sdenv import __version__, _cleanup
from sdenv._cleanup import throwaway_dir
from sdenv.errors import SdenvError, UsageError

SCHEMA = "sdenv-bench/1"
MODES: tuple[str, ...] = ("bf16", "fp8-emulated", "fp8-native", "fp8-static")
BASELINE = "bf16"

# diffusers SD3Transformer2DModel configs of the public checkpoints (transformer/config.json of
# stabilityai/stable-diffusion-3.5-large and -medium). Large: 38 heads x 64 = 2432 hidden, no dual
# attention; Medium: 24 x 64 = 1536 hidden, dual attention in blocks 0..12.
MODEL_CONFIGS: Mapping[str, Mapping[str, Any]] = {
    "large": {
        "sample_size": 128,
        "patch_size": 2,
        "in_channels": 16,
        "num_layers": 38,
        "attention_head_dim": 64,
        "num_attention_heads": 38,
        "joint_attention_dim": 4096,
        "caption_projection_dim": 2432,
        "pooled_projection_dim": 2048,
        "out_channels": 16,
        "pos_embed_max_size": 192,
        "dual_attention_layers": [],
        "qk_norm": "rms_norm",
    },
    "medium": {
        "sample_size": 128,
        "patch_size": 2,
        "in_channels": 16,
        "num_layers": 24,
        "attention_head_dim": 64,
        "num_attention_heads": 24,
        "joint_attention_dim": 4096,
        "caption_projection_dim": 1536,
        "pooled_projection_dim": 2048,
        "out_channels": 16,
        "pos_embed_max_size": 384,
        "dual_attention_layers": list(range(13)),
        "qk_norm": "rms_norm",
    },
}

# 77 CLIP tokens + 256 T5 tokens: what StableDiffusion3Pipeline feeds the transformer by default.
TEXT_TOKENS = 333
VAE_SCALE = 8  # latents are 1/8 of the image side
ATTENTION_BACKENDS = ("auto", "flash", "cudnn", "efficient", "math")

# Below a 5% difference two modes are called a tie: run-to-run spread on a shared GPU is of that
# order, and a tie goes to bf16 (exact weights, no extra dependency).
MIN_SPEEDUP = 1.05
# A mode whose output differs from bf16's by more than this (relative L2) is not recommended.
# FP8 e4m3 has a 3-bit mantissa (2^-4 relative rounding); a few per cent through a deep
# transformer is expected, tens of per cent means something is broken.
MAX_REL_L2 = 0.25
# Offer a leaner mode as the memory fallback only when it saves a real share of peak memory.
MEMORY_FALLBACK_RATIO = 0.8


class BenchError(SdenvError):
    """The harness itself failed (worker could not start, unreadable result)."""


@dataclass(frozen=True)
class BenchConfig:
    model: str = "large"  # large | medium | a directory
    modes: tuple[str, ...] = MODES
    compile: bool = False
    compile_scope: str = "regional"  # regional: each transformer block; full: the whole model
    steps: int = 10
    warmup: int = 3
    resolution: int = 1024
    batch: int = 2  # classifier-free guidance doubles the batch
    text_tokens: int = TEXT_TOKENS
    seed: int = 0
    fp8_granularity: str = "row"  # row | tensor (torchao PerRow / PerTensor)
    fast_accum: bool = True  # torchao's default for Float8DynamicActivationFloat8WeightConfig
    inductor_tuning: bool = False  # torchao's recommended inductor settings, for every mode
    attention: str = "auto"
    profile: bool = False
    timeout_s: float = 1800.0


@dataclass
class ModeResult:
    mode: str
    status: str  # ok | skipped | error
    reason: str | None = None
    options: dict[str, Any] = field(default_factory=dict)
    device: str | None = None
    timings_ms: list[float] = field(default_factory=list)
    median_ms: float | None = None
    q1_ms: float | None = None
    q3_ms: float | None = None
    min_ms: float | None = None
    max_ms: float | None = None
    setup_s: float | None = None
    first_call_s: float | None = None
    compile_s: float | None = None
    weight_bytes: int | None = None
    resident_bytes: int | None = None
    peak_bytes: int | None = None
    output_finite: bool | None = None
    rel_l2_vs_bf16: float | None = None
    speedup_vs_bf16: float | None = None
    weight_ratio_vs_bf16: float | None = None
    peak_ratio_vs_bf16: float | None = None
    profile: dict[str, Any] | None = None


@dataclass(frozen=True)
class Recommendation:
    mode: str | None
    reason: str
    memory_fallback: str | None = None


@dataclass
class BenchReport:
    schema: str
    sdenv_version: str
    created_utc: str
    config: dict[str, Any]
    environment: dict[str, Any]
    results: list[ModeResult]
    recommendation: Recommendation


# ---------------------------------------------------------------- pure functions


@dataclass(frozen=True)
class Stats:
    n: int
    median: float
    q1: float
    q3: float
    min: float
    max: float


def summarize(samples: Sequence[float]) -> Stats:
    """Median and spread of per-step times. Quartiles by the inclusive method (no extrapolation
    beyond the observed min/max, which matters for the 5-20 samples a benchmark takes)."""
    if not samples:
        raise ValueError("no samples")
    xs = sorted(samples)
    if len(xs) == 1:
        q1 = q3 = xs[0]
    else:
        q1, _, q3 = statistics.quantiles(xs, n=4, method="inclusive")
    return Stats(len(xs), statistics.median(xs), q1, q3, xs[0], xs[-1])


def _emulated_blocker(env: Mapping[str, Any]) -> str | None:
    if not env.get("has_float8"):
        return "this torch has no float8_e4m3fn dtype (needs torch >= 2.1)"
    if env.get("fp8_verdict") == "unsupported":
        return "probe verdict 'unsupported': FP8 storage does not work on this GPU"
    if not env.get("layerwise_casting"):
        return "diffusers has no enable_layerwise_casting (needs diffusers >= 0.33)"
    return None


def _native_blocker(env: Mapping[str, Any]) -> str | None:
    if not env.get("cuda_available"):
        return "no CUDA GPU: native FP8 matmuls need compute capability >= 8.9"
    verdict = env.get("fp8_verdict")
    if verdict != "native":
        cc = env.get("compute_capability")
        where = f"compute capability {cc[0]}.{cc[1]}" if cc else "this GPU"
        return (
            f"probe verdict '{verdict}': native FP8 matmuls need compute capability"
            f" >= 8.9, {where} has none (use fp8-emulated for the memory saving)"
        )
    if not env.get("torchao"):
        detail = env.get("torchao_error") or "not installed"
        return f"torchao unavailable ({detail}): pip install torchao"
    return None


def _static_blocker(env: Mapping[str, Any]) -> str | None:
    # fp8-static runs torch's row-wise _scaled_mm itself (no torchao); the info worker tried one
    # on the device the bench uses, which is the whole requirement.
    if env.get("scaled_mm_rowwise") is True:
        return None
    detail = env.get("scaled_mm_rowwise_error") or "not tried"
    return f"row-wise FP8 matmul (torch._scaled_mm) does not run here: {detail}"


_BLOCKERS = {
    "fp8-emulated": _emulated_blocker,
    "fp8-native": _native_blocker,
    "fp8-static": _static_blocker,
}


def plan_modes(
    requested: Sequence[str], env: Mapping[str, Any], cpu_model: str | None = None
) -> dict[str, str | None]:
    """Which requested modes may run here: mode -> None (run) or the reason it is skipped.

    ``cpu_model`` names a full-size model (large/medium) that must not be run on the CPU.

    ``env`` is what the info worker reported (see ``bench_worker.info``): ``diffusers``,
    ``cuda_available``, ``fp8_verdict`` (native | emulated | unsupported | None without a GPU),
    ``has_float8``, ``layerwise_casting``, ``torchao`` (version or None), ``torchao_error``,
    ``scaled_mm_rowwise`` (a row-wise FP8 matmul ran on the bench's device).
    """
    plan: dict[str, str | None] = {}
    for mode in requested:
        reason: str | None = None
        if not env.get("diffusers"):
            reason = "diffusers is not installed (pip install 'diffusers>=0.33')"
        elif not env.get("torch"):
            reason = "torch is not installed"
        elif cpu_model and not env.get("cuda_available"):
            reason = (
                f"no CUDA GPU: SD3.5 {cpu_model} on the CPU takes minutes per step;"
                " run on a GPU box, or give --model a folder with a small config"
            )
        elif mode in _BLOCKERS:
            reason = _BLOCKERS[mode](env)
        plan[mode] = reason
    return plan


def with_ratios(results: Sequence[ModeResult]) -> list[ModeResult]:
    """Speed-up and memory ratios of every measured mode against the bf16 run."""
    base = next((r for r in results if r.mode == BASELINE and r.status == "ok"), None)
    out: list[ModeResult] = []
    for r in results:
        if base is None or r.status != "ok":
            out.append(r)
            continue
        out.append(
            replace(
                r,
                speedup_vs_bf16=_ratio(base.median_ms, r.median_ms),
                weight_ratio_vs_bf16=_ratio(r.weight_bytes, base.weight_bytes),
                peak_ratio_vs_bf16=_ratio(r.peak_bytes, base.peak_bytes),
            )
        )
    return out


def _ratio(num: float | None, den: float | None) -> float | None:
    if num is None or den is None or den == 0:
        return None
    return num / den


def _usable(r: ModeResult) -> bool:
    if r.status != "ok" or r.median_ms is None or r.output_finite is False:
        return False
    return r.rel_l2_vs_bf16 is None or r.rel_l2_vs_bf16 <= MAX_REL_L2


def recommend(results: Sequence[ModeResult], compiled: bool) -> Recommendation:
    """Which mode to deploy on this box, from measured figures (with ratios filled in).

    Speed decides; a tie (under ``MIN_SPEEDUP``) goes to bf16. When bf16 wins but an FP8 mode
    needs clearly less memory, that mode is named as the fallback for memory-bound deployments.
    """
    usable = [r for r in results if _usable(r)]
    rejected = [
        f"{r.mode} (output {'not finite' if r.output_finite is False else 'off by'}"
        + ("" if r.output_finite is False else f" {r.rel_l2_vs_bf16:.0%} vs bf16")
        + ")"
        for r in results
        if r.status == "ok" and not _usable(r)
    ]
    note = f"; rejected: {', '.join(rejected)}" if rejected else ""
    if not usable:
        return Recommendation(None, "no mode produced a usable measurement" + note)
    how = "compiled" if compiled else "eager"
    base = next((r for r in usable if r.mode == BASELINE), None)
    fastest = min(usable, key=lambda r: r.median_ms or 0.0)
    if base is None:
        return Recommendation(
            fastest.mode,
            f"{fastest.mode}: fastest measured ({fastest.median_ms:.1f} ms/step {how});"
            " bf16 was not measured, so no speed-up figure" + note,
        )
    if fastest is not base and (fastest.speedup_vs_bf16 or 0.0) >= MIN_SPEEDUP:
        mem = ""
        if fastest.weight_ratio_vs_bf16 is not None:
            mem = f", weights {fastest.weight_ratio_vs_bf16:.0%} of bf16"
        if fastest.peak_ratio_vs_bf16 is not None:
            mem += f", peak memory {fastest.peak_ratio_vs_bf16:.0%}"
        return Recommendation(
            fastest.mode,
            f"{fastest.mode}: {fastest.speedup_vs_bf16:.2f}x faster than bf16 {how}"
            f" ({fastest.median_ms:.1f} vs {base.median_ms:.1f} ms/step){mem}" + note,
        )
    lean = [
        r
        for r in usable
        if r is not base
        and r.peak_ratio_vs_bf16 is not None
        and r.peak_ratio_vs_bf16 <= MEMORY_FALLBACK_RATIO
    ]
    fallback = None
    if lean:
        pick = max(lean, key=lambda r: r.speedup_vs_bf16 or 0.0)
        fallback = (
            f"{pick.mode} if GPU memory is short: peak {pick.peak_ratio_vs_bf16:.0%} of bf16"
            f" at {pick.speedup_vs_bf16:.2f}x bf16 speed"
        )
    slower = [r for r in usable if r is not base]
    why = "no FP8 mode ran" if not slower else "no FP8 mode is >= 5% faster"
    hint = (
        ""
        if compiled or not any(r.mode == "fp8-native" for r in slower)
        else "; FP8 matmuls usually pay only with --compile (quantization fuses into kernels)"
    )
    return Recommendation(
        BASELINE,
        f"bf16: {why} ({how}, bf16 {base.median_ms:.1f} ms/step){hint}" + note,
        fallback,
    )


# Kernel-name families seen in CUDA profiles of SD3.5 steps on an H200 (torch 2.11, cu130):
# cuDNN/flash/efficient attention ("cudnn_generated_fort_native_sdpa_sm90_flash_fprop..."),
# cuBLASLt "nvjet_sm90_tst_*" bf16 GEMMs and "nvjet_sm90_qqtst_*" FP8 GEMMs (CUTLASS/xmma names
# carry e4m3/f8f8), and inductor's Triton kernels. A Triton kernel whose name holds "amax" or
# "_scaled_mm" quantizes activations to FP8 (with the LayerNorm/GELU producing them fused in).
_ATTENTION_KEYS = ("flash", "fmha", "sdpa", "attention", "attn")
_GEMM_KEYS = ("gemm", "xmma", "nvjet", "cutlass", "gemv", "matmul", "wgmma", "triton_tem")
_FP8_KEYS = ("e4m3", "f8f8", "fp8", "float8", "qgmma", "e5m2", "_qq", "scaled_mm")
KERNEL_CATEGORIES = ("attention", "gemm-bf16", "gemm-fp8", "fp8-quantize", "fused-triton", "other")


def categorize_kernel(name: str) -> str:
    n = name.lower()
    if n.startswith("triton") and not n.startswith("triton_tem"):
        if "amax" in n or "_scaled_mm" in n:
            return "fp8-quantize"
        return "fused-triton"
    if any(k in n for k in _ATTENTION_KEYS):
        return "attention"
    if any(k in n for k in _GEMM_KEYS):
        return "gemm-fp8" if any(k in n for k in _FP8_KEYS) else "gemm-bf16"
    return "other"


def profile_breakdown(kernels: Mapping[str, float], steps: int) -> dict[str, Any]:
    """Per-step GPU time by kernel category, from {kernel name: total microseconds}."""
    per_cat: dict[str, float] = {}
    for name, us in kernels.items():
        cat = categorize_kernel(name)
        per_cat[cat] = per_cat.get(cat, 0.0) + us
    total = sum(per_cat.values())
    top = sorted(kernels.items(), key=lambda kv: kv[1], reverse=True)[:12]
    return {
        "gpu_ms_per_step": total / 1000 / steps,
        "ms_per_step": {c: round(v / 1000 / steps, 3) for c, v in sorted(per_cat.items())},
        "share": {c: round(v / total, 4) for c, v in sorted(per_cat.items())} if total else {},
        "top_kernels": [
            {"name": n[:160], "category": categorize_kernel(n), "ms_per_step": us / 1000 / steps}
            for n, us in top
        ],
    }


# ---------------------------------------------------------------- processes


def resolve_model(model: str) -> dict[str, Any]:
    """``large``/``medium`` -> their architecture config; a directory -> its path, checked."""
    if model in MODEL_CONFIGS:
        return {"name": model, "config": dict(MODEL_CONFIGS[model]), "path": None}
    path = Path(model)
    if not path.is_dir():
        raise UsageError(
            f"--model {model!r}: not 'large', 'medium' or a directory"
            " (give a diffusers SD3Transformer2DModel folder or a pipeline folder)"
        )
    for cfg in (path / "config.json", path / "transformer" / "config.json"):
        if cfg.is_file():
            try:
                data = json.loads(cfg.read_text())
            except (OSError, ValueError) as exc:
                raise UsageError(f"{cfg}: not readable JSON ({exc}); fix or replace it") from exc
            cls = data.get("_class_name", "SD3Transformer2DModel")
            if cls != "SD3Transformer2DModel":
                raise UsageError(
                    f"{cfg}: _class_name is {cls!r}, want 'SD3Transformer2DModel'"
                    " (point --model at the SD3.5 transformer)"
                )
            return {"name": str(path), "config": None, "path": str(cfg.parent.resolve())}
    raise UsageError(
        f"--model {model}: no config.json or transformer/config.json in that folder"
        " (point it at a diffusers SD3.5 model or pipeline folder)"
    )


def validate(config: BenchConfig) -> None:
    bad = [m for m in config.modes if m not in MODES]
    if bad or not config.modes:
        what = ", ".join(bad) or "(none given)"
        raise UsageError(f"--modes: unknown mode {what}; choose from {','.join(MODES)}")
    if config.steps < 1:
        raise UsageError(f"--steps {config.steps}: must be at least 1")
    if config.warmup < 1:
        raise UsageError(f"--warmup {config.warmup}: must be at least 1 (the first call)")
    if config.resolution < 64 or config.resolution % 16:
        raise UsageError(f"--resolution {config.resolution}: must be a multiple of 16, >= 64")
    if config.fp8_granularity not in ("row", "tensor"):
        raise UsageError(f"--fp8-granularity {config.fp8_granularity}: choose row or tensor")
    if config.compile_scope not in ("regional", "full"):
        raise UsageError(f"--compile-scope {config.compile_scope}: choose regional or full")
    if config.attention not in ATTENTION_BACKENDS:
        raise UsageError(
            f"--attention {config.attention}: choose from {', '.join(ATTENTION_BACKENDS)}"
        )


def _call_worker(
    request: Mapping[str, Any], workdir: Path, tag: str, timeout_s: float, python: str
) -> dict[str, Any]:
    """Run one worker; its answer is the result line of the one target protocol on its stdout."""
    from sdenv._target import child_env
    from sdenv.target.protocol import MARKER, last_result

    req_path = workdir / f"{tag}.request.json"
    req_path.write_text(json.dumps(request))
    # The worker must import this very sdenv, also when it runs from a source tree.
    env = child_env(pythonpath=[str(Path(__file__).resolve().parents[2])])
    cmd = [python, "-m", "sdenv.runtime.bench_worker", str(req_path)]
    try:
        proc = _cleanup.run(cmd, env=env, timeout=timeout_s, stdout=subprocess.PIPE, text=True)
    except subprocess.TimeoutExpired:
        return {"status": "error", "reason": f"timed out after {timeout_s:.0f} s"}
    except OSError as exc:
        raise BenchError(f"cannot start the bench worker with {python}: {exc}") from exc
    # Worker chatter (diffusers, inductor) goes to our stderr: stdout stays clean for --json.
    chatter = [ln for ln in (proc.stdout or "").splitlines() if not ln.startswith(MARKER)]
    if any(chatter):
        sys.stderr.write("\n".join(chatter) + "\n")
    result = last_result(proc.stdout or "")
    if result is not None:
        return result
    hint = " (killed: out of memory?)" if proc.returncode < 0 or proc.returncode == 137 else ""
    return {
        "status": "error",
        "reason": f"worker exited with code {proc.returncode} and no result{hint}",
    }


def environment(python: str = sys.executable, timeout_s: float = 300.0) -> dict[str, Any]:
    with throwaway_dir("sdenv-bench-") as tmp:
        env = _call_worker({"kind": "info"}, tmp, "info", timeout_s, python)
    if env.get("status") == "error":
        raise BenchError(f"bench worker could not inspect this box: {env.get('reason')}")
    return env


def run_bench(
    config: BenchConfig, python: str = sys.executable, env: Mapping[str, Any] | None = None
) -> BenchReport:
    validate(config)
    model = resolve_model(config.model)
    info = dict(env) if env is not None else environment(python)
    # bf16 first: its output is the reference the FP8 modes are compared against.
    order = sorted(dict.fromkeys(config.modes), key=lambda m: m != BASELINE)
    plan = plan_modes(order, info, cpu_model=None if model["path"] else model["name"])
    results: list[ModeResult] = []
    with throwaway_dir("sdenv-bench-") as workdir:
        reference = workdir / "bf16-output.pt"
        for mode in order:
            if plan[mode] is not None:
                results.append(ModeResult(mode, "skipped", plan[mode]))
                continue
            request = {
                "kind": "mode",
                "mode": mode,
                "model": model,
                **{k: v for k, v in asdict(config).items() if k not in ("model", "modes")},
                "save_output": str(reference) if mode == BASELINE else None,
                "reference": str(reference) if reference.is_file() else None,
            }
            raw = _call_worker(request, workdir, mode, config.timeout_s, python)
            results.append(_mode_result(mode, raw))
    results = with_ratios(results)
    return BenchReport(
        schema=SCHEMA,
        sdenv_version=__version__,
        created_utc=_dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
        config={**asdict(config), "model_config": model["config"], "model_path": model["path"]},
        environment={k: v for k, v in info.items() if k != "status"},
        results=results,
        recommendation=recommend(results, config.compile),
    )


def _mode_result(mode: str, raw: Mapping[str, Any]) -> ModeResult:
    status = raw.get("status", "error")
    if status != "ok":
        return ModeResult(mode, "error", str(raw.get("reason", "unknown error")))
    timings = [float(t) for t in raw["timings_ms"]]
    st = summarize(timings)
    first = raw.get("first_call_s")
    compiled = bool(raw.get("options", {}).get("compile"))
    return ModeResult(
        mode=mode,
        status="ok",
        options=dict(raw.get("options", {})),
        device=raw.get("device"),
        timings_ms=timings,
        median_ms=st.median,
        q1_ms=st.q1,
        q3_ms=st.q3,
        min_ms=st.min,
        max_ms=st.max,
        setup_s=raw.get("setup_s"),
        first_call_s=first,
        # The first call of a compiled model is compilation plus one step; report the compile part.
        compile_s=(first - st.median / 1000) if compiled and first is not None else None,
        weight_bytes=raw.get("weight_bytes"),
        resident_bytes=raw.get("resident_bytes"),
        peak_bytes=raw.get("peak_bytes"),
        output_finite=raw.get("output_finite"),
        rel_l2_vs_bf16=raw.get("rel_l2_vs_bf16"),
        profile=raw.get("profile"),
    )


def report_from_json(data: Mapping[str, Any]) -> BenchReport:
    """Read back a saved ``--json`` report (for re-rendering and for tests)."""
    if data.get("schema") != SCHEMA:
        raise UsageError(f"not an {SCHEMA} report (schema {data.get('schema')!r})")
    return BenchReport(
        schema=data["schema"],
        sdenv_version=data["sdenv_version"],
        created_utc=data["created_utc"],
        config=dict(data["config"]),
        environment=dict(data["environment"]),
        results=[ModeResult(**r) for r in data["results"]],
        recommendation=Recommendation(**data["recommendation"]),
    )
