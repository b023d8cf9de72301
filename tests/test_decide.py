"""Every FP8 verdict, fit rule and memory plan of ``sdenv.gpu.decide`` over the recorded fact table.

The table (``src/sdenv/data/machines``) holds an H200 box without index access as ``sdenv probe``
recorded it there (also through nvidia-smi and /proc alone), documented public machines, and
this development box (no GPU). Rules the table does not reach are shown on a recorded set with
the one fact that the rule is about changed.
"""

from __future__ import annotations

import copy
import dataclasses
from pathlib import Path

import pytest

from sdenv.gpu.decide import decide
from sdenv.gpu.facts import (
    GpuFacts,
    MachineFacts,
    ScaledMmFacts,
    TorchDeviceFacts,
    TorchFacts,
    XformersFacts,
    recorded_machines,
)
from sdenv.lock.spec import EnvSpec, load_spec

MACHINES = recorded_machines()


@pytest.fixture
def envs(repo: Path) -> dict[str, EnvSpec]:
    return {p.stem: load_spec(p, repo / "envs") for p in sorted((repo / "envs").glob("*.toml"))}


def machine(name: str) -> MachineFacts:
    return copy.deepcopy(MACHINES[name])


def test_table_has_the_required_machines() -> None:
    assert {
        "h200",
        "a100",
        "l4",
        "rtx4090",
        "t4",
        "rtx5090-cu121",
        "no-gpu",
    } <= set(MACHINES)
    assert MACHINES["h200"].source.startswith("recorded")
    assert MACHINES["no-gpu"].source.startswith("recorded")


@pytest.mark.parametrize(
    ("name", "verdict", "checked", "mode", "reason"),
    [
        # Recorded on the H200 box: a real e4m3 _scaled_mm matched bf16.
        ("h200", "native", True, "native", "torch._scaled_mm e4m3 64x128x32 matched bf16"),
        (
            "h200-nvidia-smi",
            "native",
            False,
            "native",
            "cc 9.0 >= 8.9: FP8 tensor cores (predicted",
        ),
        ("h200-proc", "unsupported", False, "off", "compute capability unknown"),
        (
            "h200-hidden",  # recorded with CUDA_VISIBLE_DEVICES= : NVML sees it, torch does not
            "unsupported",
            True,
            "off",
            "cannot use the GPU: RuntimeError: No CUDA GPUs are available",
        ),
        ("l4", "native", False, "native", "_scaled_mm not run: not recorded"),
        ("rtx4090", "native", False, "native", "cc 8.9 >= 8.9"),
        ("a100", "emulated", True, "emulated", "cc 8.0 < 8.9: no FP8 tensor cores"),
        ("t4", "emulated", True, "emulated", "compute in float16"),
        ("rtx5090-cu121", "unsupported", True, "off", "no kernel image for sm_120 in torch 2.4.1"),
    ],
)
def test_fp8_verdict_per_recorded_machine(
    name: str, verdict: str, checked: bool, mode: str, reason: str
) -> None:
    report = decide(MACHINES[name])
    (gpu,) = report.gpus
    assert gpu.hardware is not None
    assert gpu.hardware.verdict == verdict
    assert gpu.hardware.checked is checked
    assert reason in gpu.hardware.reason
    assert report.fp8_hardware_mode == mode


def test_no_gpu_box_is_an_answer_not_an_error() -> None:
    report = decide(MACHINES["no-gpu"])
    assert report.gpus == []
    assert report.fp8_mode == "off"
    assert "no usable NVIDIA GPU" in report.fp8_mode_reason
    status = {c.name: c.status for c in report.checks}
    assert status["driver"] == "skip" and status["gpus"] == "skip"
    assert report.memory.recommended is None and report.memory.free_gib is None


def _set_device(facts: MachineFacts, **changes: object) -> MachineFacts:
    assert facts.torch is not None
    facts.torch.devices[0] = dataclasses.replace(facts.torch.devices[0], **changes)  # type: ignore[arg-type]
    return facts


def _set_torch(facts: MachineFacts, **changes: object) -> MachineFacts:
    assert facts.torch is not None
    facts.torch = dataclasses.replace(facts.torch, **changes)  # type: ignore[arg-type]
    return facts


@pytest.mark.parametrize(
    ("variant", "verdict", "reason"),
    [
        (
            lambda f: _set_device(
                f,
                scaled_mm=ScaledMmFacts(
                    ran=True, error="RuntimeError: CUBLAS_STATUS_NOT_SUPPORTED"
                ),
            ),
            "emulated",
            "torch._scaled_mm failed (RuntimeError: CUBLAS_STATUS_NOT_SUPPORTED)",
        ),
        (
            lambda f: _set_device(
                f,
                scaled_mm=ScaledMmFacts(
                    ran=True, ok=False, signature="tensor", max_rel_err=0.5, tolerance=0.02
                ),
            ),
            "emulated",
            "max rel err 0.5 > 0.02",
        ),
        (
            lambda f: _set_device(
                f,
                scaled_mm=ScaledMmFacts(
                    ran=True,
                    ok=True,
                    signature="tuple",
                    shape="64x128x32",
                    max_rel_err=0.006,
                    tolerance=0.02,
                ),
            ),
            "native",
            "tuple return of torch < 2.5",
        ),
        (lambda f: _set_torch(f, version="2.0.1", float8_dtypes=[]), "unsupported", "no float8"),
        (
            lambda f: _set_torch(f, installed=False, import_error="ModuleNotFoundError: torch"),
            "unsupported",
            "torch not importable: ModuleNotFoundError",
        ),
        (
            lambda f: _set_torch(f, cuda_build=None, cuda_available=False, devices=[]),
            "unsupported",
            "CPU-only build",
        ),
        (
            lambda f: _set_torch(
                f,
                cuda_available=False,
                devices=[],
                cuda_error="RuntimeError: The NVIDIA driver on your system is too old",
            ),
            "unsupported",
            "cannot use the GPU: RuntimeError: The NVIDIA driver on your system is too old",
        ),
        (
            lambda f: _set_device(f, kernel_ok=False, kernel_error="RuntimeError: CUDA error: ECC"),
            "unsupported",
            "a tiny kernel failed on this GPU: RuntimeError: CUDA error: ECC",
        ),
        (lambda f: dataclasses.replace(f, torch=None), "native", "predicted; torch not checked"),
    ],
    ids=[
        "scaled-mm-error",
        "scaled-mm-mismatch",
        "pre-2.4-signature",
        "no-float8",
        "no-torch",
        "cpu-build",
        "cuda-unavailable",
        "kernel-error",
        "torch-free",
    ],
)
def test_fp8_rules_on_h200_variants(variant: object, verdict: str, reason: str) -> None:
    facts = variant(machine("h200"))  # type: ignore[operator]
    (gpu,) = decide(facts).gpus
    assert gpu.hardware is not None
    assert gpu.hardware.verdict == verdict
    assert reason in gpu.hardware.reason


def test_torch_free_below_8_9_is_emulated_with_fp16_on_turing() -> None:
    facts = dataclasses.replace(machine("t4"), torch=None)
    (gpu,) = decide(facts).gpus
    assert gpu.hardware is not None
    assert (gpu.hardware.verdict, gpu.hardware.compute_dtype, gpu.hardware.checked) == (
        "emulated",
        "float16",
        False,
    )


def test_uuid_join_follows_cuda_visible_devices() -> None:
    # Two GPUs in NVML; CUDA_VISIBLE_DEVICES=1 makes the second one torch's cuda:0.
    facts = machine("h200-torch211-torchao")
    assert facts.torch is not None
    second = dataclasses.replace(facts.gpus[0], index=1, uuid="GPU-aaaa")
    facts.gpus.append(second)
    facts.torch.devices[0].uuid = "GPU-aaaa"
    report = decide(facts)
    assert [g.fp8.verdict for g in report.gpus] == ["unsupported", "native"]
    assert "not visible to torch" in report.gpus[0].fp8.reason
    assert report.fp8_mode == "native" and report.fp8_mode_reason.startswith("GPU 1")
    assert report.memory.gpu == 1


def test_torch_devices_stand_in_when_nvml_and_smi_are_missing() -> None:
    facts = dataclasses.replace(machine("h200-torch211-torchao"), gpus=[])
    report = decide(facts)
    assert [(g.name, g.fp8.verdict) for g in report.gpus] == [("NVIDIA H200", "native")]


# ---- fit checks ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("name", "check", "status", "reason"),
    [
        (
            "h200",
            "torch-driver",
            "pass",
            "driver 580.159.04 >= 580.65.06, the full CUDA 13.0 floor",
        ),
        ("h200", "torch-arch", "pass", "torch 2.11.0+cu130: sm_90 SASS"),
        ("h200", "torch-kernel", "pass", "a tiny kernel ran"),
        ("rtx5090-cu121", "torch-arch", "fail", "no kernel for 12.0"),
        ("rtx5090-cu121", "torch-kernel", "fail", "install a build whose arch list covers cc 12.0"),
        ("l4", "torch-arch", "pass", "sm_86 SASS runs on 8.9"),  # Ada is never listed
        ("rtx4090", "xformers-arch", "pass", "xformers 0.0.29.post1: sm_80 SASS runs on 8.9"),
        ("rtx4090", "xformers-torch", "pass", "built for torch 2.5.1+cu121"),
        ("a100", "torch-driver", "pass", "the full CUDA 12.1 floor"),
        ("no-gpu", "torch-driver", "skip", "no NVIDIA driver"),
        ("no-gpu", "driver", "skip", "nvidia-smi: not on PATH"),
    ],
)
def test_box_checks(name: str, check: str, status: str, reason: str) -> None:
    found = [c for c in decide(MACHINES[name]).checks if c.name == check]
    assert found, f"no {check} check for {name}"
    assert found[0].status == status
    assert reason in found[0].reason


@pytest.mark.parametrize(
    ("name", "env", "check", "status", "reason"),
    [
        ("h200", "sd35-fp8-cu121", "env-driver", "pass", "the full CUDA 12.1 floor"),
        ("a100", "sd35-fp8-cu124", "env-driver", "warn", "minor-version compatibility"),
        ("t4", "sd35-fp8-cu128", "env-driver", "warn", "PTX JIT needs >= 570.26"),
        ("rtx5090-cu121", "sd35-fp8-cu121", "env-torch-arch", "fail", "no kernel for 12.0"),
        ("rtx5090-cu121", "sd35-fp8-cu128", "env-torch-arch", "pass", "sm_120 SASS"),
        ("rtx5090-cu121", "sd35-fp8-cu121", "env-xformers-arch", "warn", "PTX compute_80 JIT"),
        ("rtx5090-cu121", "sd35-fp8-cu124", "env-cc", "warn", "cc 12.0 not in"),
        ("h200", "sd35-fp8-cu128", "env-xformers-arch", "pass", "sm_90a SASS"),
        ("t4", "sd35-fp8-cu121", "env-cc", "warn", "cc 7.5 not in"),
        ("h200-proc", "sd35-fp8-cu121", "env-torch-arch", "warn", "arch fit not checked"),
    ],
)
def test_env_checks(
    envs: dict[str, EnvSpec], name: str, env: str, check: str, status: str, reason: str
) -> None:
    report = decide(MACHINES[name], list(envs.values()))
    fit = next(f for f in report.envs if f.env == env)
    found = [c for c in fit.checks if c.name == check]
    assert found, f"no {check} check for {env} on {name}"
    assert (found[0].status, found[0].env) == (status, env)
    assert reason in found[0].reason


@pytest.mark.parametrize(
    ("name", "recommended", "statuses"),
    [
        # envs in name order: cu121 cu124 cu126 cu128 cu130 cu132
        ("h200", "sd35-fp8-cu130", ("warn", "pass", "pass", "pass", "pass", "warn")),
        ("h100-torch241", "sd35-fp8-cu124", ("warn", "pass", "warn", "warn", "fail", "fail")),
        ("a100", "sd35-fp8-cu121", ("pass", "warn", "warn", "warn", "fail", "fail")),
        ("l4", "sd35-fp8-cu124", ("warn", "pass", "warn", "warn", "fail", "fail")),
        ("rtx4090", "sd35-fp8-cu126", ("warn", "pass", "pass", "warn", "fail", "fail")),
        ("t4", "sd35-fp8-cu121", ("warn", "warn", "warn", "warn", "fail", "fail")),
        ("rtx5090-cu121", "sd35-fp8-cu128", ("fail", "fail", "fail", "warn", "fail", "fail")),
        ("no-gpu", None, ("fail",) * 6),
    ],
)
def test_env_choice(
    envs: dict[str, EnvSpec], name: str, recommended: str | None, statuses: tuple[str, ...]
) -> None:
    report = decide(MACHINES[name], [envs[k] for k in sorted(envs)])
    assert tuple(f.status for f in report.envs) == statuses
    assert report.recommended_env == recommended
    if recommended is None:
        assert report.recommended_env_reason.startswith("no env fits this box")


def test_old_driver_fails_every_env(envs: dict[str, EnvSpec]) -> None:
    facts = machine("t4")
    facts.driver.version = "470.82.01"
    report = decide(facts, list(envs.values()))
    assert {f.status for f in report.envs} == {"fail"}
    assert report.recommended_env is None
    assert "driver 470.82.01 is too old for CUDA 12.1: needs >= 525.60.13" in (
        report.recommended_env_reason
    )


def test_env_fp8_promise_against_the_hardware(envs: dict[str, EnvSpec]) -> None:
    # An emulated env on FP8 tensor cores warns (and ranks below the native envs) ...
    fit = decide(MACHINES["h200-torch211-torchao"], [envs["sd35-fp8-cu121"]]).envs[0]
    (check,) = [c for c in fit.checks if c.name == "env-fp8"]
    assert (check.status, fit.status) == ("warn", "warn")
    assert "FP8 tensor cores" in check.reason
    # ... a native env on Ampere runs emulated like every env: no reason to fail it.
    fit = decide(MACHINES["a100"], [envs["sd35-fp8-cu124"]]).envs[0]
    (check,) = [c for c in fit.checks if c.name == "env-fp8"]
    assert check.status == "pass" and "no native FP8" in check.reason


def test_mig_and_xformers_mismatch_warn() -> None:
    facts = machine("h200")
    facts.gpus[0].mig_mode = "enabled"
    facts.xformers = XformersFacts("0.0.35", "2.10.0+cu128", "12.8", "7.5 8.0+PTX 8.0 9.0a")
    checks = {c.name: c for c in decide(facts).checks}
    assert checks["mig"].status == "warn"
    assert checks["xformers-torch"].status == "warn"
    assert "may not load" in checks["xformers-torch"].reason
    assert checks["xformers-arch"].status == "pass"


# ---- memory ------------------------------------------------------------------------------------


def _free(facts: MachineFacts, mib: int) -> MachineFacts:
    facts.gpus[0].memory_free_mib = mib
    if facts.torch and facts.torch.devices:
        facts.torch.devices[0].memory_free_mib = mib
    return facts


@pytest.mark.parametrize(
    ("facts", "recommended", "advice"),
    [
        (lambda: machine("h200"), "large/bf16/gpu", "SD3.5 Large fits in bf16 (~28.6 GiB"),
        (lambda: machine("a100"), "large/bf16/gpu", "FP8 weights (emulated) cut it to ~21.1 GiB"),
        (lambda: machine("l4"), "large/fp8/gpu", "load it with FP8 weights (emulated, ~21.1 GiB)"),
        (lambda: machine("t4"), "large/fp8/model-offload", "enable_model_cpu_offload() (fp8"),
        (lambda: machine("rtx5090-cu121"), "large/bf16/gpu", "fits in bf16"),
        # Offload peaks at the largest component: T5-XXL stays bf16 (8.9 GiB) in every mode.
        (lambda: _free(machine("l4"), 12 * 1024), "large/fp8/model-offload", "peak ~11.9 GiB"),
        (
            lambda: _free(machine("rtx5090-cu121"), 12 * 1024),  # no FP8: Large offload 18 GiB
            "medium/bf16/model-offload",
            "use SD3.5 Medium",
        ),
        (lambda: _free(machine("l4"), 4 * 1024), None, "enable_sequential_cpu_offload()"),
        (lambda: _free(machine("a100"), 22 * 1024), "large/fp8/gpu", "22.0 GiB free on GPU 0"),
        (
            lambda: _free(machine("rtx5090-cu121"), 20 * 1024),  # no FP8 here: bf16 offload
            "large/bf16/model-offload",
            "(bf16, peak ~18.0 GiB) or use SD3.5 Medium",
        ),
        (lambda: machine("no-gpu"), None, "no GPU memory to compare with"),
    ],
    ids=[
        "h200",
        "a100",
        "l4",
        "t4",
        "5090",
        "12GiB",
        "12GiB-off",
        "4GiB",
        "22GiB",
        "20GiB-off",
        "no-gpu",
    ],
)
def test_memory_advice(facts: object, recommended: str | None, advice: str) -> None:
    memory = decide(facts()).memory  # type: ignore[operator]
    assert memory.recommended == recommended
    assert advice in memory.advice


def test_memory_components_and_fp8_availability() -> None:
    plans = {
        (p.model, p.precision, p.placement): p
        for p in decide(MACHINES["rtx5090-cu121"]).memory.plans
    }
    large = plans[("large", "bf16", "gpu")]
    assert set(large.components_gib) == {"transformer", "clip_l", "clip_g", "t5_xxl", "vae"}
    assert large.components_gib["transformer"] == pytest.approx(15.01, abs=0.01)  # 8.06 B x 2 B
    # FP8 is the transformer only, as generate loads it: T5-XXL stays bf16 (4.76 B x 2 B).
    fp8 = plans[("large", "fp8", "gpu")].components_gib
    assert fp8["transformer"] == pytest.approx(7.51, abs=0.01)
    assert fp8["t5_xxl"] == large.components_gib["t5_xxl"] == pytest.approx(8.87, abs=0.01)
    assert plans[("medium", "bf16", "gpu")].need_gib < large.need_gib
    # No FP8 on this box (fp8_mode off): FP8 plans are listed but not usable.
    assert not plans[("large", "fp8", "gpu")].usable and large.usable


# ---- the recorded table's format --------------------------------------------------------------


@pytest.mark.parametrize("name", sorted(MACHINES))
def test_recorded_facts_round_trip(name: str) -> None:
    facts = MACHINES[name]
    assert MachineFacts.from_json(facts.to_json()) == facts


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ('{"gpus": [{"index": 0, "name": "x", "cc": 9}]}', "facts.gpus[0].cc: expected str, got 9"),
        ('{"driver": {"versoin": "1"}}', "facts.driver: unknown field 'versoin'"),
        ('{"torch": {"devices": 3}}', "facts.torch.devices: expected a list"),
        ('{"schema": 99}', "schema 99 unsupported"),
        ("[1]", "expected a JSON object"),
        ("{", "invalid JSON"),
        ('{"gpus": [{"index": 0}]}', "facts.gpus[0]:"),
    ],
)
def test_bad_fact_files_name_the_field(text: str, message: str) -> None:
    with pytest.raises(ValueError, match=message.replace("[", r"\[").replace("]", r"\]")):
        MachineFacts.from_json(text)


def test_device_facts_types_are_exported_from_probe() -> None:
    import sdenv.gpu.probe as probe

    for name in ("MachineFacts", "ProbeReport", "GpuFacts", "TorchFacts", "decide", "probe"):
        assert hasattr(probe, name)
    assert probe.TorchDeviceFacts is TorchDeviceFacts and probe.GpuFacts is GpuFacts
    assert probe.TorchFacts is TorchFacts


def test_unreadable_xformers_build_record_warns() -> None:
    facts = machine("rtx4090")
    facts.xformers = XformersFacts("0.0.29.post1", error="cpp_lib.json: JSONDecodeError: bad")
    checks = {c.name: c for c in decide(facts).checks}
    assert checks["xformers-build"].status == "warn"
    assert "cpp_lib.json: JSONDecodeError" in checks["xformers-build"].reason
