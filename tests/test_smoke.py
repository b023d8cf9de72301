"""Offline tests of ``sdenv smoke``: classification on recorded real failures, crash/timeout
isolation with small real scripts, FP8 checks on the runtime env's torch, and the CLI contract."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
from pathlib import Path
from typing import Any

import pytest

from sdenv import _target
from sdenv._smoke_run import run_one
from sdenv.cli import main
from sdenv.errors import UsageError
from sdenv.smoke import (
    CHECK_NAMES,
    CHECKS,
    SmokeError,
    SmokeReport,
    classify,
    frame_packages,
    run_smoke,
)
from sdenv.target import smoke as target

RECORDED = Path(__file__).with_name("smoke_recorded")


def _recorded(name: str) -> dict[str, Any]:
    data: dict[str, Any] = json.loads((RECORDED / f"{name}.json").read_text())
    return data


def _classify_recorded(name: str) -> Any:
    rec = _recorded(name)
    assert rec["status"] == "fail"
    return classify(rec["check"], rec["error"], rec["facts"], log=rec["log"])


# --------------------------------------------------------------- classify on real error strings


def test_naive_diffusers_is_too_new_for_torch() -> None:
    f = _classify_recorded("naive-diffusers-0.42.1")
    assert f.kind == "too-new-for-torch"
    assert f.culprits == ["diffusers"]
    assert "torch.accelerator" in f.hint and "torch 2.4.1" in f.hint
    assert "diffusers<0.36" in f.hint  # measured to work: docs/evidence.md#E-working-set
    assert f.error == "AttributeError: module 'torch' has no attribute 'accelerator'"


def test_naive_transformers_backend_disabled() -> None:
    f = _classify_recorded("naive-transformers-5.23.0")
    assert f.kind == "backend-disabled"
    assert f.culprits == ["transformers"]
    assert "requires torch >= 2.6" in f.hint  # parsed from transformers' own log line
    assert "transformers<5" in f.hint


def test_custom_op_schema_error_blames_diffusers() -> None:
    f = _classify_recorded("diffusers-0.38.0-torch-2.4.1")
    assert (f.kind, f.culprits) == ("too-new-for-torch", ["diffusers"])


def test_missing_module_wins_over_a_warning_in_the_log() -> None:
    # The log of this run also says "PyTorch was not found" (transformers imported by
    # diffusers): the traceback, read first, decides.
    rec = _recorded("diffusers-0.36.0-hub-2.4.0")
    assert "PyTorch was not found" in rec["log"]
    f = _classify_recorded("diffusers-0.36.0-hub-2.4.0")
    assert f.kind == "missing-dependency"
    assert f.culprits == ["diffusers"]
    assert "httpx" in f.hint


def test_removed_name_blames_importer_and_provider() -> None:
    f = _classify_recorded("diffusers-0.34.0-transformers-5")
    assert f.kind == "api-mismatch"
    assert f.culprits == ["diffusers", "transformers"]
    assert "FLAX_WEIGHTS_NAME" in f.hint and "transformers<5" in f.hint


def test_xformers_undefined_symbol_is_abi_mismatch() -> None:
    rec = _recorded("xformers-0.0.29.post1-torch-2.4.1")
    assert "undefined symbol" in rec["error"]
    f = _classify_recorded("xformers-0.0.29.post1-torch-2.4.1")
    assert f.kind == "abi-mismatch"
    assert f.culprits == ["xformers"]
    assert "built for torch 2.5.1+cu121 but torch 2.4.1+cu121 runs" in f.hint
    assert "install xformers==0.0.28.post1" in f.hint


def test_xformers_hint_when_no_build_is_known() -> None:
    facts = {"torch": "2.11.0+cu130", "versions": {"xformers": "0.0.35"}, "built_for_torch": "x"}
    f = classify(
        "xformers", "OSError: /s/site-packages/xformers/_C.so: undefined symbol: _Z", facts
    )
    assert f.kind == "abi-mismatch"
    assert "install the xformers built for torch 2.11.0" in f.hint


def test_missing_cuda_runtime_of_an_extension() -> None:
    text = (
        "xformers 0.0.35 C++ extension did not load: built for torch 2.10.0+cu128, running torch "
        "2.11.0+cu130: OSError: libcudart.so.12: cannot open shared object file: No such file or "
        "directory"
    )
    facts = {"torch": "2.11.0+cu130", "torch_cuda": "13.0", "built_for_torch": "2.10.0+cu128"}
    f = classify("xformers", text, facts)
    assert f.kind == "missing-shared-library"
    assert f.culprits == ["xformers"]
    assert "libcudart.so.12" in f.hint and "CUDA 13.0" in f.hint


# torch's own messages (c10/cuda and torch/cuda/__init__.py), as a GPU box prints them.
NO_KERNEL = (
    "Traceback (most recent call last):\n"
    '  File "/v/lib/python3.11/site-packages/torch/_tensor.py", line 1, in f\n'
    "RuntimeError: CUDA error: no kernel image is available for execution on the device\n"
)
OLD_DRIVER = (
    "RuntimeError: The NVIDIA driver on your system is too old (found version 11040). Please "
    "update your GPU driver by downloading and installing a new version from the URL: "
    "http://www.nvidia.com/Download/index.aspx"
)


def test_no_kernel_image_uses_arch_coverage() -> None:
    facts = {
        "torch": "2.4.1+cu121",
        "cc": "12.0",
        "arch_list": ["sm_50", "sm_60", "sm_70", "sm_75", "sm_80", "sm_86", "sm_90"],
    }
    f = classify("cuda", NO_KERNEL, facts)
    assert (f.kind, f.culprits) == ("no-kernel-image", ["torch"])
    assert "no kernel for 12.0" in f.hint  # from compat.arch_coverage


def test_driver_too_old_uses_driver_floors() -> None:
    facts = {"torch": "2.4.1+cu121", "torch_cuda": "12.1", "driver": "470.82.01"}
    f = classify("cuda", OLD_DRIVER, facts)
    assert (f.kind, f.culprits) == ("driver-too-old", ["torch"])
    assert "needs >= 525.60.13" in f.hint  # compat.driver_fit: CUDA 12 minor-version floor


def test_crash_blames_the_package_on_the_faulthandler_stack() -> None:
    log = (
        "Fatal Python error: Segmentation fault\n\nCurrent thread 0x1 (most recent call first):\n"
        '  File "/v/lib/python3.11/site-packages/torch/_ops.py", line 1295 in load_library\n'
        '  File "/v/lib/python3.11/site-packages/xformers/_cpp_lib.py", line 132 in _register\n'
    )
    f = classify("xformers", "crashed: killed by SIGSEGV", {}, log=log)
    assert f.kind == "crash"
    assert f.culprits == ["xformers"]


def test_numerics_and_unknown_fallback() -> None:
    f = classify("fp8-matmul", "FP8-stored weights matmul rel. error 0.3 > 0.05 vs bf16", {})
    assert (f.kind, f.culprits) == ("numerics", ["torch"])
    g = classify("accelerate", "ValueError: something new", {})
    assert (g.kind, g.culprits) == ("error", ["accelerate"])


def test_frame_packages_follow_pythonpath_dirs() -> None:
    text = (
        '  File "/tmp/site/diffusers/utils/torch_utils.py", line 1, in f\n'
        '  File "/tmp/site/torch/__init__.py", line 2, in g\n'
    )
    assert frame_packages(text, {"sys_path": ["/tmp/site", "/usr/lib/python3.12"]}) == [
        "diffusers",
        "torch",
    ]
    dists = {"module_dists": {"huggingface_hub": ["huggingface-hub"]}}
    text = '  File "/v/lib/python3.11/site-packages/huggingface_hub/x.py", line 1, in f\n'
    assert frame_packages(text, dists) == ["huggingface-hub"]


# --------------------------------------------------------------- runner isolation (real processes)


def _script(tmp_path: Path, body: str) -> Path:
    """A staged target package whose smoke module is ``body``; returns the staging root."""
    root = _target.stage(tmp_path)
    (root / "sdenv" / "target" / "smoke.py").write_text(textwrap.dedent(body))
    return root


def test_segfault_is_a_failed_check(tmp_path: Path) -> None:
    script = _script(tmp_path, "import ctypes\nctypes.string_at(0)\n")
    raw = run_one(sys.executable, script, "torch", False, 30)
    assert raw.status == "fail"
    assert raw.error == "crashed: killed by SIGSEGV"
    assert "Segmentation fault" in raw.log  # PYTHONFAULTHANDLER's report


def test_hang_is_killed_at_the_timeout(tmp_path: Path) -> None:
    script = _script(
        tmp_path,
        """
        import subprocess, sys, time
        # A child in the same process group must die with it.
        subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
        time.sleep(60)
        """,
    )
    raw = run_one(sys.executable, script, "torch", False, 1.5)
    assert raw.status == "fail"
    assert raw.detail == "timed out after 1.5 s"
    assert raw.seconds < 10


def test_no_result_line_is_a_failure(tmp_path: Path) -> None:
    script = _script(tmp_path, "import sys\nprint('hello')\nsys.exit(3)\n")
    raw = run_one(sys.executable, script, "torch", False, 30)
    assert (raw.status, raw.error) == ("fail", "crashed: exited with code 3 and no result")


def _write_fake_packages(site: Path) -> Path:
    """Packages that break the way real ones do, shadowing the real ones via PYTHONPATH."""
    (site / "diffusers").mkdir(parents=True)
    (site / "diffusers" / "__init__.py").write_text(
        "import torch\ntorch.sdenv_attribute_from_the_future  # like torch.accelerator on 2.4\n"
    )
    (site / "accelerate").mkdir()
    (site / "accelerate" / "__init__.py").write_text("import ctypes\nctypes.string_at(0)\n")
    return site


@pytest.fixture
def fake_packages(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    site = _write_fake_packages(tmp_path / "site")
    monkeypatch.setenv("PYTHONPATH", str(site))
    return site


@pytest.fixture(scope="module")
def mixed_report(tmp_path_factory: pytest.TempPathFactory) -> SmokeReport:
    """One run (the checks cost a torch import each): a crashing accelerate, a diffusers too
    new for torch, and the real safetensors and FP8 checks of the runtime env's torch."""
    site = _write_fake_packages(tmp_path_factory.mktemp("fake") / "site")
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("PYTHONPATH", str(site))
        return run_smoke(
            gpu=False,
            checks=["accelerate", "safetensors", "sd3-forward", "fp8-matmul", "scaled-mm"],
        )


@pytest.mark.runtime
def test_a_crash_does_not_take_the_run_down(mixed_report: SmokeReport) -> None:
    report = mixed_report
    by_name = {c.name: c for c in report.checks}
    assert list(by_name) == [
        "torch",
        "cuda",
        "diffusers",
        "accelerate",
        "safetensors",
        "fp8-dtypes",
        "fp8-matmul",
        "scaled-mm",
        "sd3-forward",
    ]
    assert by_name["torch"].status == "pass"
    assert by_name["safetensors"].status == "pass"
    crash = by_name["accelerate"]
    assert crash.status == "fail" and crash.failure is not None
    assert crash.detail == "crashed: killed by SIGSEGV"
    assert (crash.failure.kind, crash.failure.culprits) == ("crash", ["accelerate"])
    broken = by_name["diffusers"].failure
    assert broken is not None
    assert (broken.kind, broken.culprits) == ("too-new-for-torch", ["diffusers"])
    assert "torch.sdenv_attribute_from_the_future" in broken.hint
    assert not report.ok
    assert report.culprits == ["diffusers", "accelerate"]


@pytest.mark.runtime
def test_dependents_of_a_failed_check_are_skipped_not_passed(mixed_report: SmokeReport) -> None:
    sd3 = mixed_report.check("sd3-forward")
    assert (sd3.status, sd3.detail) == ("skip", "needs diffusers (failed)")
    assert sd3.failure is None


# --------------------------------------------------------------- FP8 checks on the runtime's torch


@pytest.mark.runtime
def test_fp8_checks_pass_on_cpu_with_reported_overflow(mixed_report: SmokeReport) -> None:
    dtypes = mixed_report.check("fp8-dtypes")
    assert dtypes.status == "pass"
    e4m3 = dtypes.facts["float8_e4m3fn"]
    assert e4m3["round_trip_rel_err"] <= e4m3["bound"] == 2**-4
    assert e4m3["clamp_cast_4max_-4max_inf"] == ["448", "-448", "448"]
    # e4m3fn has no inf: a plain cast of inf is NaN (torch 2.4) or 448 (newer), never inf.
    assert e4m3["plain_cast_4max_-4max_inf"][2] in ("nan", "448")
    assert dtypes.facts["float8_e5m2"]["plain_cast_4max_-4max_inf"] == ["inf", "-inf", "inf"]
    matmul = mixed_report.check("fp8-matmul")
    assert matmul.status == "pass" and matmul.facts["device"] == "cpu"
    assert matmul.facts["rel_err"] <= matmul.facts["tolerance"]
    for name in ("cuda", "scaled-mm"):
        skipped = mixed_report.check(name)
        assert (skipped.status, skipped.detail) == ("skip", "GPU checks off (--no-gpu)")


# --------------------------------------------------------------- API and CLI contract


def test_every_check_has_a_target_function() -> None:
    # The target imports only the standard library: tests/test_target.py.
    assert set(CHECK_NAMES) <= set(target.CHECKS)
    # Prerequisites exist and come first, so one pass of the scheduler resolves a chain.
    for i, spec in enumerate(CHECKS):
        for need in spec.needs + spec.needs_on_gpu:
            assert need in CHECK_NAMES[:i], (spec.name, need)


@pytest.mark.runtime
def test_gpu_required_without_gpu_fails_and_relative_python(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    venv_bin = Path(sys.executable).parent
    monkeypatch.chdir(venv_bin.parent)
    report = run_smoke(f"{venv_bin.name}/{Path(sys.executable).name}", gpu=True, checks=["cuda"])
    assert report.python == sys.executable  # absolute, the venv's symlink not resolved
    assert report.facts["executable"] == sys.executable
    cuda = report.check("cuda")
    assert cuda.status == "fail" and cuda.failure is not None
    # torch's own message: "Found no NVIDIA driver on your system."
    assert cuda.failure.kind == "no-gpu"
    assert cuda.failure.culprits == []
    assert not report.ok


def test_env_without_torch_fails_once_and_skips_the_rest(tmp_path: Path) -> None:
    from sdenv.venv import create_venv

    bare = create_venv(tmp_path / "bare", sys.executable)  # offline: pip/setuptools only
    report = run_smoke(bare, gpu=False)
    torch = report.check("torch")
    assert torch.failure is not None
    assert (torch.failure.kind, torch.failure.culprits) == ("not-installed", ["torch"])
    rest = [c for c in report.checks if c.name != "torch"]
    assert all(c.status == "skip" for c in rest)
    assert report.check("diffusers").detail == "needs torch (failed)"
    assert report.culprits == ["torch"]


def test_unknown_check_and_bad_python() -> None:
    with pytest.raises(UsageError, match="unknown smoke check nope"):
        run_smoke(checks=["nope"])
    with pytest.raises(SmokeError, match="no such interpreter"):
        run_smoke("/nonexistent/bin/python")


@pytest.mark.runtime
def test_cli_json_and_exit_codes(
    capsys: pytest.CaptureFixture[str], fake_packages: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    assert main(["smoke", "--json", "--no-gpu", "--check", "diffusers"]) == 1
    data = json.loads(capsys.readouterr().out)
    assert data["ok"] is False
    assert data["culprits"] == ["diffusers"]
    failed = [c for c in data["checks"] if c["status"] == "fail"]
    assert failed[0]["failure"]["kind"] == "too-new-for-torch"

    assert main(["smoke", "--python", "/nonexistent/python"]) == 2
    err = capsys.readouterr().err
    assert err.strip().splitlines()[-1] == (
        "sdenv: error: --python /nonexistent/python: no such interpreter; pass a venv's bin/python"
    )

    # Table for people: skipped checks are listed as skipped, and the run passes.
    monkeypatch.delenv("PYTHONPATH")
    assert main(["smoke", "--no-gpu", "--check", "cuda"]) == 0
    out = capsys.readouterr().out
    assert "GPU checks off (--no-gpu)" in out and "all checks passed (1 skipped)" in out


@pytest.mark.runtime
def test_target_runs_standalone_without_sdenv(tmp_path: Path) -> None:
    # As in an image: a staged copy, an interpreter that cannot import sdenv (-I).
    root = _target.stage(tmp_path)
    cmd = _target.command(sys.executable, root, "smoke", ["env"], isolated=True)
    proc = subprocess.run(cmd, capture_output=True, text=True, check=True, cwd=root)
    line = proc.stdout.strip().splitlines()[-1]
    assert line.startswith(target.MARKER)
    record = json.loads(line[len(target.MARKER) :])
    assert record["status"] == "pass" and record["facts"]["versions"]["torch"]


@pytest.mark.parametrize(
    ("torch", "bounded"), [("2.4.1", True), ("2.5.1", True), ("2.6.0", False), ("2.10.0", False)]
)
def test_bound_hints_are_the_shipped_rules(torch: str, bounded: bool) -> None:
    from sdenv.lock.checks import default_rules

    rule = next(r for r in default_rules() if r.id == "diffusers-torch-accelerator")
    rec = _recorded("naive-diffusers-0.42.1")
    f = classify(rec["check"], rec["error"], {**rec["facts"], "torch": torch}, log=rec["log"])
    bound = f"diffusers{rule.require['diffusers']} is known to work with torch {torch}"
    assert (bound in f.hint) is bounded, f.hint
    assert ("known to work" in f.hint) is bounded
