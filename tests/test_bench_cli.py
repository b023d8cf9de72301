"""`sdenv bench` end to end on the CPU: a tiny SD3.5-shaped transformer (2 blocks, one with dual
attention, RMS qk-norm), real worker processes, real diffusers layerwise casting."""

from __future__ import annotations

import json
import statistics
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

pytestmark = pytest.mark.runtime  # torch and diffusers: the runtime env's

TINY = {
    "_class_name": "SD3Transformer2DModel",
    "sample_size": 16,
    "patch_size": 2,
    "in_channels": 16,
    "num_layers": 2,
    "attention_head_dim": 8,
    "num_attention_heads": 2,
    "joint_attention_dim": 32,
    "caption_projection_dim": 16,
    "pooled_projection_dim": 32,
    "out_channels": 16,
    "pos_embed_max_size": 16,
    "dual_attention_layers": [0],
    "qk_norm": "rms_norm",
}
ARGS = ["--resolution", "128", "--steps", "4", "--warmup", "1"]


def sdenv(repo: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "sdenv", *args],
        cwd=repo,
        capture_output=True,
        text=True,
        timeout=300,
    )


@pytest.fixture(scope="module")
def tiny(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("tiny")
    (path / "config.json").write_text(json.dumps(TINY))
    return path


@pytest.fixture(scope="module")
def bench_run(tiny: Path) -> tuple[subprocess.CompletedProcess[str], dict[str, Any], Path]:
    repo = Path(__file__).resolve().parents[1]
    out = tiny.parent / "report.json"
    modes = "bf16,fp8-emulated,fp8-native,fp8-static"
    proc = sdenv(repo, "bench", "--model", str(tiny), "--modes", modes, *ARGS, "--json",
                 "--output", str(out))  # fmt: skip
    assert proc.returncode == 0, proc.stderr[-3000:]
    return proc, json.loads(proc.stdout), out


def test_json_report_schema_and_figures(bench_run: Any) -> None:
    _, report, out = bench_run
    assert report["schema"] == "sdenv-bench/1"
    assert json.loads(out.read_text()) == report  # --output holds the same report
    assert report["config"]["model_config"] is None and report["config"]["model_path"]
    env = report["environment"]
    assert env["diffusers"] and env["torch"]
    assert env["fp8_verdict_source"].startswith(("sdenv.gpu.probe", "compat rule"))
    by_mode = {r["mode"]: r for r in report["results"]}
    assert list(by_mode) == ["bf16", "fp8-emulated", "fp8-native", "fp8-static"]
    bf16 = by_mode["bf16"]
    assert bf16["status"] == "ok" and bf16["options"]["weights"] == "random"
    assert len(bf16["timings_ms"]) == 4
    assert bf16["median_ms"] == pytest.approx(statistics.median(bf16["timings_ms"]))
    assert bf16["min_ms"] <= bf16["q1_ms"] <= bf16["median_ms"] <= bf16["q3_ms"] <= bf16["max_ms"]
    assert bf16["speedup_vs_bf16"] == 1.0 and bf16["output_finite"] is True
    assert bf16["rel_l2_vs_bf16"] is None  # it is the reference
    emu = by_mode["fp8-emulated"]
    assert emu["status"] == "ok", emu["reason"]
    # Same seed, same weights: only FP8 storage rounding separates the outputs.
    assert 0 < emu["rel_l2_vs_bf16"] < 0.1
    assert 0.5 < emu["weight_ratio_vs_bf16"] < 1.0  # norms and embeddings stay bf16
    assert emu["speedup_vs_bf16"] == pytest.approx(bf16["median_ms"] / emu["median_ms"])
    # Speed decides among the modes that ran (CPU timings of a tiny model: any of them may win).
    ran = [m for m, r in by_mode.items() if r["status"] == "ok"]
    assert report["recommendation"]["mode"] in ran


def test_static_fp8_runs_where_the_rowwise_matmul_does(bench_run: Any) -> None:
    """fp8-static needs only torch's row-wise _scaled_mm: the CPU kernel is in torch 2.14, not in
    the default lock's 2.4, so on this box it runs in one env and is skipped, with why, in the
    other; both are the info worker's finding, not a guess."""
    _, report, _ = bench_run
    static = {r["mode"]: r for r in report["results"]}["fp8-static"]
    if not report["environment"]["scaled_mm_rowwise"]:
        assert static["status"] == "skipped"
        assert static["reason"].startswith("row-wise FP8 matmul (torch._scaled_mm) does not run")
        return
    assert static["status"] == "ok", static["reason"]
    opts = static["options"]
    assert opts["fp8_layers"] > 0 and opts["calibration_inputs"] == 4
    # FP8 weights and one calibrated scale per activation: a few percent off bf16, not more.
    assert 0 < static["rel_l2_vs_bf16"] < 0.15
    assert static["weight_ratio_vs_bf16"] < 0.8 and static["output_finite"] is True


def test_native_fp8_skipped_with_reason_on_cpu(bench_run: Any) -> None:
    _, report, _ = bench_run
    if report["environment"]["cuda_available"]:
        pytest.skip("this box has a GPU")
    native = {r["mode"]: r for r in report["results"]}["fp8-native"]
    assert native["status"] == "skipped"
    assert native["reason"].startswith("no CUDA GPU")


def test_table_for_people(bench_run: Any, capsys: pytest.CaptureFixture[str]) -> None:
    from sdenv.cli.bench import render
    from sdenv.runtime.bench import report_from_json

    _, report, _ = bench_run
    render(report_from_json(report))
    text = " ".join(capsys.readouterr().out.split())
    assert "Recommendation: " + " ".join(report["recommendation"]["reason"].split()) in text
    if not report["environment"]["cuda_available"]:
        assert "fp8-native skipped: no CUDA GPU" in text


def test_bad_input_one_line_exit_2_no_output(tmp_path: Path, repo: Path) -> None:
    out = tmp_path / "r.json"
    proc = sdenv(repo, "bench", "--model", str(tmp_path / "missing"), "--output", str(out))
    assert proc.returncode == 2
    assert proc.stderr.strip().count("\n") == 0
    assert "--model" in proc.stderr and "directory" in proc.stderr
    assert not out.exists()
    proc = sdenv(repo, "bench", "--modes", "bf16,int4", "--model", "medium")
    assert proc.returncode == 2 and "unknown mode int4" in proc.stderr


def test_failing_mode_is_data(tmp_path: Path) -> None:
    from sdenv.runtime.bench import BenchConfig, run_bench

    # caption_projection_dim must equal heads x head_dim: the forward pass fails in the worker.
    (tmp_path / "config.json").write_text(json.dumps({**TINY, "caption_projection_dim": 24}))
    env = {"torch": "x", "diffusers": "x", "has_float8": True, "cuda_available": False}
    config = BenchConfig(model=str(tmp_path), modes=("bf16",), resolution=128, steps=2, warmup=1)
    (bf16,) = run_bench(config, env=env).results
    assert bf16.status == "error" and bf16.reason is not None
    assert bf16.reason.split(":")[0].endswith("Error")
