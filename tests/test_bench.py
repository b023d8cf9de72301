"""sdenv bench: the pure parts (statistics, mode plan, ratios, recommendation, kernel categories)
on recorded figures: docs/evidence.md#E-h200-large-step (H200) and the reports in
benchmarks/results/."""

from __future__ import annotations

import json
import statistics
from pathlib import Path

import pytest

from sdenv.errors import UsageError
from sdenv.runtime.bench import (
    MAX_REL_L2,
    BenchConfig,
    ModeResult,
    categorize_kernel,
    plan_modes,
    profile_breakdown,
    recommend,
    report_from_json,
    resolve_model,
    run_bench,
    summarize,
    validate,
    with_ratios,
)

GIB = 2**30

# What the info worker reported on the boxes these tests stand for.
H200_ENV = {
    "torch": "2.11.0+cu130",
    "diffusers": "0.42.1",
    "torchao": "0.18.0",
    "cuda_available": True,
    "has_float8": True,
    "layerwise_casting": True,
    "fp8_verdict": "native",
    "compute_capability": [9, 0],
}
T4_ENV = {**H200_ENV, "fp8_verdict": "emulated", "compute_capability": [7, 5]}
CPU_ENV = {**H200_ENV, "cuda_available": False, "fp8_verdict": None, "torchao": None}
del CPU_ENV["compute_capability"]


def ok(
    mode: str, median: float, peak_gib: float, weight_gib: float, l2: float | None = None
) -> ModeResult:
    return ModeResult(
        mode,
        "ok",
        timings_ms=[median],
        median_ms=median,
        peak_bytes=int(peak_gib * GIB),
        weight_bytes=int(weight_gib * GIB),
        output_finite=True,
        rel_l2_vs_bf16=l2,
    )


def test_summarize_median_and_quartiles() -> None:
    st = summarize([5.0, 1.0, 4.0, 2.0, 3.0])
    assert (st.n, st.median, st.q1, st.q3, st.min, st.max) == (5, 3.0, 2.0, 4.0, 1.0, 5.0)
    one = summarize([7.5])
    assert (one.median, one.q1, one.q3) == (7.5, 7.5, 7.5)
    with pytest.raises(ValueError):
        summarize([])


def test_plan_modes_h200_runs_everything() -> None:
    assert plan_modes(["bf16", "fp8-emulated", "fp8-native"], H200_ENV) == {
        "bf16": None,
        "fp8-emulated": None,
        "fp8-native": None,
    }


def test_plan_modes_t4_skips_native_and_says_why() -> None:
    plan = plan_modes(["bf16", "fp8-emulated", "fp8-native"], T4_ENV)
    assert plan["bf16"] is None and plan["fp8-emulated"] is None
    assert plan["fp8-native"] is not None
    assert "'emulated'" in plan["fp8-native"] and "7.5" in plan["fp8-native"]


def test_plan_modes_cpu_and_missing_packages() -> None:
    plan = plan_modes(["bf16", "fp8-emulated", "fp8-native"], CPU_ENV)
    assert plan["bf16"] is None and plan["fp8-emulated"] is None
    assert "no CUDA GPU" in (plan["fp8-native"] or "")
    no_ao = plan_modes(["fp8-native"], {**H200_ENV, "torchao": None, "torchao_error": "boom"})
    assert "torchao unavailable (boom)" in (no_ao["fp8-native"] or "")
    no_diffusers = plan_modes(["bf16", "fp8-native"], {**H200_ENV, "diffusers": None})
    assert all("diffusers is not installed" in (r or "") for r in no_diffusers.values())
    old = plan_modes(["fp8-emulated"], {**H200_ENV, "layerwise_casting": False})
    assert "diffusers >= 0.33" in (old["fp8-emulated"] or "")
    full_size = plan_modes(["bf16", "fp8-emulated"], CPU_ENV, cpu_model="large")
    assert all((r or "").startswith("no CUDA GPU: SD3.5 large") for r in full_size.values())
    assert plan_modes(["bf16"], H200_ENV, cpu_model="large") == {"bf16": None}
    static = plan_modes(["fp8-static"], {**H200_ENV, "torchao": None, "scaled_mm_rowwise": True})
    assert static == {"fp8-static": None}  # torch's own row-wise FP8 matmul, no torchao
    err = "RuntimeError: the worker's one-line error"
    no_mm = plan_modes(
        ["fp8-static"], {**T4_ENV, "scaled_mm_rowwise": False, "scaled_mm_rowwise_error": err}
    )
    assert no_mm["fp8-static"] == f"row-wise FP8 matmul (torch._scaled_mm) does not run here: {err}"
    assert "not tried" in (plan_modes(["fp8-static"], H200_ENV)["fp8-static"] or "")
    unsupported = plan_modes(["fp8-emulated"], {**T4_ENV, "fp8_verdict": "unsupported"})
    assert "unsupported" in (unsupported["fp8-emulated"] or "")


def test_recommend_facts6_h200_compiled_picks_fp8_native() -> None:
    # docs/evidence.md#E-h200-large-step: bf16 torch.compile 129 ms, peak 15.7 GiB; torchao FP8
    # compiled 100 ms, 8.05 GiB.
    results = with_ratios([ok("bf16", 129, 15.7, 15.0), ok("fp8-native", 100, 8.05, 7.5, 0.04)])
    native = results[1]
    assert native.speedup_vs_bf16 == pytest.approx(1.29, abs=0.005)
    assert native.peak_ratio_vs_bf16 == pytest.approx(8.05 / 15.7)
    rec = recommend(results, compiled=True)
    assert rec.mode == "fp8-native"
    assert "1.29x faster than bf16 compiled" in rec.reason
    assert rec.memory_fallback is None


def test_recommend_facts6_h200_eager_keeps_bf16_with_memory_fallback() -> None:
    # docs/evidence.md#E-h200-large-step, eager: bf16 186 ms / 15.7 GiB, layerwise casting
    # 205 / 10.7, torchao 241 / 9.0.
    results = with_ratios(
        [
            ok("bf16", 186, 15.7, 15.0),
            ok("fp8-emulated", 205, 10.7, 10.0, 0.02),
            ok("fp8-native", 241, 9.0, 7.5, 0.04),
        ]
    )
    rec = recommend(results, compiled=False)
    assert rec.mode == "bf16"
    assert "--compile" in rec.reason  # eager FP8 loses: say how it could pay
    # Both FP8 modes save memory; the faster of them is the fallback.
    assert rec.memory_fallback is not None and rec.memory_fallback.startswith("fp8-emulated")
    assert "0.91x" in rec.memory_fallback


def test_recommend_tie_goes_to_bf16() -> None:
    results = with_ratios([ok("bf16", 100, 16, 15), ok("fp8-native", 97, 15.5, 15, 0.01)])
    rec = recommend(results, compiled=True)
    assert rec.mode == "bf16" and ">= 5% faster" in rec.reason
    assert rec.memory_fallback is None  # 97% of the peak is no saving worth naming


def test_recommend_rejects_broken_outputs() -> None:
    nan = ok("fp8-native", 50, 8, 7.5)
    nan.output_finite = False
    off = ok("fp8-emulated", 60, 10, 10, MAX_REL_L2 * 2)
    rec = recommend(with_ratios([ok("bf16", 100, 16, 15), nan, off]), compiled=True)
    assert rec.mode == "bf16"
    assert "fp8-native (output not finite)" in rec.reason
    assert "fp8-emulated (output off by 50% vs bf16)" in rec.reason


def test_recommend_without_baseline_or_results() -> None:
    rec = recommend(with_ratios([ok("fp8-native", 100, 8, 7.5)]), compiled=True)
    assert rec.mode == "fp8-native" and "bf16 was not measured" in rec.reason
    failed = ModeResult("bf16", "error", "worker exited with code -9")
    assert recommend([failed], compiled=False).mode is None


def test_with_ratios_leaves_skipped_and_failed_alone() -> None:
    skipped = ModeResult("fp8-native", "skipped", "no CUDA GPU")
    out = with_ratios([ok("bf16", 10, 1, 1), skipped])
    assert out[1] == skipped
    assert with_ratios([skipped]) == [skipped]


# Kernel names recorded in a CUDA profile of one SD3.5 Large step on the H200 (torch 2.11).
RECORDED_KERNELS = {
    "cudnn_generated_fort_native_sdpa_sm90_flash_fprop_wgmma_f16_knob_7_64x128x64_4x1x1": (
        "attention"
    ),
    "nvjet_sm90_tst_128x256_64x4_2x1_v_bz_coopA_bias_TNN": "gemm-bf16",
    "nvjet_sm90_qqtst_128x128_128x6_2x1_v_bz_ovscale_bias_TNT": "gemm-fp8",
    "triton_red_fused__scaled_mm__to_copy_abs_amax_clamp_div_gelu_t_unsqueeze_view_12": (
        "fp8-quantize"
    ),
    "triton_red_fused_abs_amax_gelu_view_24": "fp8-quantize",
    "triton_poi_fused_gelu_view_13": "fused-triton",
    "triton_red_fused_add_mul_native_layer_norm_split_unsqueeze_1": "fused-triton",
    "void at::native::unrolled_elementwise_kernel<at::native::direct_copy_kernel_cuda>": "other",
    "sm90_xmma_gemm_e4m3e4m3_e4m3f32_f32_tn_n_tilesize128x128x64": "gemm-fp8",
    "void pytorch_flash::flash_fwd_kernel<Flash_fwd_kernel_traits<64, 128>>": "attention",
}


def test_categorize_recorded_kernel_names() -> None:
    for name, category in RECORDED_KERNELS.items():
        assert categorize_kernel(name) == category, name


def test_profile_breakdown_per_step_and_shares() -> None:
    kernels = {
        "nvjet_sm90_tst_128x256": 6000.0,
        "cudnn_generated_fort_native_sdpa": 3000.0,
        "triton_poi_fused_gelu": 1000.0,
    }
    bd = profile_breakdown(kernels, steps=2)
    assert bd["gpu_ms_per_step"] == pytest.approx(5.0)
    assert bd["ms_per_step"] == {"attention": 1.5, "fused-triton": 0.5, "gemm-bf16": 3.0}
    assert bd["share"]["gemm-bf16"] == pytest.approx(0.6)
    assert [k["category"] for k in bd["top_kernels"]] == ["gemm-bf16", "attention", "fused-triton"]


def test_validate_rejects_bad_options() -> None:
    with pytest.raises(UsageError, match="--modes: unknown mode fp4"):
        validate(BenchConfig(modes=("bf16", "fp4")))
    with pytest.raises(UsageError, match="--steps 0"):
        validate(BenchConfig(steps=0))
    with pytest.raises(UsageError, match="--resolution 1000"):
        validate(BenchConfig(resolution=1000))
    with pytest.raises(UsageError, match="--attention"):
        validate(BenchConfig(attention="fast"))


def test_resolve_model(tmp_path: Path) -> None:
    assert resolve_model("large")["config"]["num_attention_heads"] == 38
    assert resolve_model("medium")["config"]["dual_attention_layers"] == list(range(13))
    with pytest.raises(UsageError, match="not 'large', 'medium' or a directory"):
        resolve_model(str(tmp_path / "nope"))
    with pytest.raises(UsageError, match="no config.json"):
        resolve_model(str(tmp_path))
    (tmp_path / "transformer").mkdir()
    cfg = tmp_path / "transformer" / "config.json"
    cfg.write_text(json.dumps({"_class_name": "FluxTransformer2DModel"}))
    with pytest.raises(UsageError, match="_class_name is 'FluxTransformer2DModel'"):
        resolve_model(str(tmp_path))
    cfg.write_text("{not json")
    with pytest.raises(UsageError, match="not readable JSON"):
        resolve_model(str(tmp_path))
    cfg.write_text(json.dumps({"_class_name": "SD3Transformer2DModel"}))
    assert resolve_model(str(tmp_path))["path"] == str(cfg.parent.resolve())


def test_worker_timeout_is_a_result_not_a_crash(tmp_path: Path) -> None:
    (tmp_path / "config.json").write_text("{}")
    report = run_bench(
        BenchConfig(model=str(tmp_path), modes=("bf16",), timeout_s=0.01), env=CPU_ENV
    )
    (bf16,) = report.results
    assert bf16.status == "error" and bf16.reason is not None
    assert bf16.reason.startswith("timed out after")
    assert report.recommendation.mode is None


@pytest.mark.parametrize(
    "name",
    [
        "h200-large-compiled.json",
        "h200-large-compiled-tuned.json",
        "h200-large-compiled-full.json",
        "h200-large-eager.json",
        "h200-medium-compiled.json",
    ],
)
def test_recorded_h200_reports_are_consistent(repo: Path, name: str) -> None:
    """The committed device reports: medians are those of their timings, ratios and the
    recommendation follow from the figures, and the issue's memory goal holds."""
    data = json.loads((repo / "benchmarks" / "results" / name).read_text())
    report = report_from_json(data)
    assert report.environment["device_name"] == "NVIDIA H200"
    for r in report.results:
        assert r.status == "ok"
        assert r.median_ms == pytest.approx(statistics.median(r.timings_ms))
        assert len(r.timings_ms) == report.config["steps"]
    assert with_ratios(report.results) == report.results
    assert recommend(report.results, report.config["compile"]) == report.recommendation
    native = next(r for r in report.results if r.mode == "fp8-native")
    assert native.weight_ratio_vs_bf16 is not None and native.weight_ratio_vs_bf16 <= 0.55


@pytest.mark.parametrize(
    "name",
    [
        "h200-large-compiled-static.json",
        "h200-large-compiled-native-2.json",
        "h200-cu130-large-compiled-static-tensor.json",
        "h200-large-compiled-static-shared.json",
    ],
)
def test_recorded_static_run_is_consistent(repo: Path, name: str) -> None:
    """The fp8-static H200 reports: medians, ratios and recommendation follow from the timings."""
    report = report_from_json(json.loads((repo / "benchmarks" / "results" / name).read_text()))
    assert report.environment["device_name"] == "NVIDIA H200"
    for r in report.results:
        assert r.status == "ok" and r.median_ms == pytest.approx(statistics.median(r.timings_ms))
    assert with_ratios(report.results) == report.results
    assert recommend(report.results, report.config["compile"]) == report.recommendation
    static = [r for r in report.results if r.mode == "fp8-static"]
    if static:
        # The static scales keep the error of the dynamic mode (0.042) and halve the weights.
        assert static[0].rel_l2_vs_bf16 is not None and static[0].rel_l2_vs_bf16 < 0.05
        assert static[0].weight_ratio_vs_bf16 is not None
        assert static[0].weight_ratio_vs_bf16 <= 0.55
