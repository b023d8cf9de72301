"""The FP8 stack verdict: hardware and stack per GPU, the env's promise, the torch/torchao table.

Recorded facts from an H200 box without index access (torch 2.11.0+cu130 of the box, with and
without torchao 0.18.0 beside it) and a documented H100 on the default env's torch 2.4.1 are the
oracles; rules the recordings do not reach are shown by changing the one fact they are about.
"""

from __future__ import annotations

import copy
import dataclasses
import json
from pathlib import Path

import pytest

from sdenv.fp8 import BACKENDS_FILE, TransformFacts, backend_pairs, backend_support, in_range
from sdenv.gpu.decide import decide
from sdenv.gpu.facts import Fp8BackendFacts, MachineFacts, recorded_machines
from sdenv.lock import checks
from sdenv.lock.spec import EnvSpec, load_specs
from sdenv.verify import fp8_promise

MACHINES = recorded_machines()


@pytest.fixture
def envs(repo: Path) -> list[EnvSpec]:
    specs, errors = load_specs(repo / "envs")
    assert not errors
    return specs


def machine(name: str) -> MachineFacts:
    return copy.deepcopy(MACHINES[name])


# ---- the recorded H200 runs ------------------------------------------------------------------


def test_h200_without_torchao_runs_emulated_and_names_the_native_env(
    envs: list[EnvSpec],
) -> None:
    report = decide(MACHINES["h200-torch211"], envs)
    (gpu,) = report.gpus
    assert gpu.hardware is not None and gpu.stack is not None
    assert (gpu.hardware.verdict, gpu.stack.verdict, gpu.fp8.verdict) == (
        "native",
        "emulated",
        "emulated",
    )
    assert "torchao is not installed (torch 2.11.0+cu130 needs torchao>=0.17)" in gpu.stack.reason
    assert report.fp8_mode == "emulated" and report.fp8_hardware_mode == "native"
    assert report.native_env == "sd35-fp8-cu130"
    assert report.fp8_advisory is not None
    assert "env sd35-fp8-cu130 runs native on this box" in report.fp8_advisory
    assert "sd35-fp8-cu130" in report.fp8_mode_reason


def test_h200_with_torchao_runs_native_checked_on_the_gpu(envs: list[EnvSpec]) -> None:
    report = decide(MACHINES["h200-torch211-torchao"], envs)
    (gpu,) = report.gpus
    assert gpu.stack is not None
    assert (gpu.stack.verdict, gpu.stack.checked) == ("native", True)
    assert "FP8 transform on a 64x256->128 Linear matched bf16" in gpu.stack.reason
    assert (gpu.fp8.verdict, gpu.fp8.checked, report.fp8_mode) == ("native", True, "native")
    assert report.fp8_advisory is None
    assert report.recommended_env == report.native_env == "sd35-fp8-cu130"


def test_h100_on_the_default_envs_torch_is_emulated_by_the_table(envs: list[EnvSpec]) -> None:
    report = decide(MACHINES["h100-torch241"], envs)
    (gpu,) = report.gpus
    assert gpu.stack is not None
    assert gpu.stack.verdict == "emulated"
    assert "native FP8 through torchao needs torch >= 2.5" in gpu.stack.reason
    # driver 550: cu124 is the newest CUDA line with a full driver fit
    assert report.native_env == "sd35-fp8-cu124"


def test_no_gpu_box_has_no_advisory(envs: list[EnvSpec]) -> None:
    report = decide(MACHINES["no-gpu"], envs)
    assert (report.fp8_mode, report.fp8_hardware_mode) == ("off", "off")
    assert report.native_env is None and report.fp8_advisory is None


# ---- stack rules on one fact changed ----------------------------------------------------------


def _backend(facts: MachineFacts, **changes: object) -> MachineFacts:
    assert facts.torch is not None and facts.torch.fp8_backend is not None
    facts.torch.fp8_backend = dataclasses.replace(facts.torch.fp8_backend, **changes)  # type: ignore[arg-type]
    return facts


def _transform(facts: MachineFacts, check: TransformFacts) -> MachineFacts:
    assert facts.torch is not None
    facts.torch.devices[0].fp8_transform = check
    return facts


@pytest.mark.parametrize(
    ("variant", "verdict", "reason"),
    [
        (
            lambda f: _backend(f, version="0.16.0"),
            "emulated",
            "torchao 0.16.0 is outside torchao>=0.17, the range built for torch 2.11.0+cu130",
        ),
        (
            lambda f: _backend(f, import_error="ImportError: undefined symbol: _ZN3c10"),
            "emulated",
            "torchao 0.18.0 does not import on torch 2.11.0+cu130: ImportError",
        ),
        (
            lambda f: _transform(f, TransformFacts(ran=True, error="RuntimeError: scale_a")),
            "emulated",
            "FP8 transform failed: RuntimeError: scale_a",
        ),
        (
            lambda f: _transform(f, TransformFacts(ran=True, rel_err=0.4, tolerance=0.1)),
            "emulated",
            "rel err 0.4 > 0.1",
        ),
        (
            lambda f: _transform(f, TransformFacts(skipped="torch._scaled_mm did not match")),
            "native",
            "the transform was not run here: torch._scaled_mm did not match",
        ),
    ],
    ids=["out-of-range", "import-error", "transform-error", "transform-mismatch", "not-run"],
)
def test_stack_rules(variant: object, verdict: str, reason: str) -> None:
    facts = variant(machine("h200-torch211-torchao"))  # type: ignore[operator]
    (gpu,) = decide(facts).gpus
    assert gpu.stack is not None
    assert gpu.stack.verdict == verdict
    assert reason in gpu.stack.reason
    if verdict == "emulated":
        assert gpu.fp8.verdict == "emulated"
        assert gpu.fp8.reason.startswith("FP8 tensor cores, but this env runs FP8 emulated")


def test_unchecked_transform_is_not_a_checked_native() -> None:
    facts = _transform(machine("h200-torch211-torchao"), TransformFacts(skipped="x"))
    (gpu,) = decide(facts).gpus
    assert (gpu.fp8.verdict, gpu.fp8.checked) == ("native", False)


@pytest.mark.parametrize(
    ("packages", "verdict", "reason"),
    [
        ({"torch": "2.11.0", "torchao": "0.18.0"}, "native", "torchao 0.18.0 is built for"),
        ({"torch": "2.11.0"}, "emulated", "torchao is not installed"),
        ({"torch": "2.4.1", "torchao": "0.11.0"}, "emulated", "needs torch >= 2.5"),
        ({}, "unsupported", "torch is not installed"),
    ],
)
def test_torch_free_probe_predicts_the_stack_from_metadata(
    packages: dict[str, str], verdict: str, reason: str
) -> None:
    facts = dataclasses.replace(machine("h200-torch211-torchao"), torch=None, packages=packages)
    (gpu,) = decide(facts).gpus
    assert gpu.stack is not None
    assert (gpu.stack.verdict, gpu.stack.checked) == (verdict, False)
    assert reason in gpu.stack.reason and "predicted" in gpu.stack.reason


def test_facts_recorded_before_the_stack_verdict_still_load() -> None:
    # h200.json (2026-11-21) has no fp8_backend, no fp8_transform, no packages.
    facts = machine("h200")
    assert facts.torch is not None and facts.torch.fp8_backend is None
    (gpu,) = decide(facts).gpus
    assert gpu.stack is not None and gpu.stack.checked is False


def test_backend_facts_round_trip() -> None:
    facts = machine("h200-torch211-torchao")
    again = MachineFacts.from_json(facts.to_json())
    assert again.torch is not None
    assert again.torch.fp8_backend == Fp8BackendFacts("torchao", "0.18.0", None)
    assert again == facts


# ---- the env's promise in verify ----------------------------------------------------------------


def _report(name: str, envs: list[EnvSpec]) -> dict[str, object]:
    from sdenv._json import to_jsonable

    return dict(to_jsonable(decide(MACHINES[name], envs)))


@pytest.mark.parametrize(
    ("promise", "machine_name", "kept", "line"),
    [
        ("native", "h200-torch211", False, "the env promises native FP8"),
        ("native", "h200-torch211-torchao", True, None),
        ("native", "a100", True, None),  # no FP8 tensor cores: nothing promised there
        ("emulated", "h200-torch211", True, "env sd35-fp8-cu130 runs native on this box"),
        ("auto", "h200-torch211", True, "env sd35-fp8-cu130 runs native on this box"),
        (None, "no-gpu", True, None),
    ],
)
def test_fp8_promise(
    envs: list[EnvSpec], promise: str | None, machine_name: str, kept: bool, line: str | None
) -> None:
    ok, text = fp8_promise(promise, _report(machine_name, envs))
    assert ok is kept
    if line is None:
        assert text is None
    else:
        assert text is not None and line in text


# ---- the table and the lock-time check ----------------------------------------------------------


def test_table_rows_cover_every_torch_from_2_4_once() -> None:
    pairs = backend_pairs()
    for torch in (
        "2.4.1",
        "2.5.1",
        "2.6.0",
        "2.7.1",
        "2.8.0",
        "2.9.1",
        "2.10.0",
        "2.14.1",
        "2.15.0",
    ):
        hits = [p.id for p in pairs if in_range(torch, p.torch)]
        assert len(hits) == 1, (torch, hits)
    data = json.loads(BACKENDS_FILE.read_text())
    assert all(row["evidence"] and row["reason"] for row in data["pairs"])


@pytest.mark.parametrize(
    ("torch", "torchao", "ok"),
    [
        ("2.4.1+cu121", "0.11.0", False),
        ("2.6.0", "0.12.0", True),
        ("2.6.0", "0.13.0", False),
        ("2.8.0", "0.14.0", True),
        ("2.8.0", "0.14.1", False),
        ("2.9.0", "0.14.1", True),
        ("2.10.0", "0.16.0", True),
        ("2.14.1", "0.18.0", True),
        ("2.14.1", None, False),
    ],
)
def test_backend_support(torch: str, torchao: str | None, ok: bool) -> None:
    assert backend_support(torch, torchao).ok is ok


@pytest.mark.parametrize(
    ("version", "spec", "inside"),
    [
        ("2.5.0", ">=2.5,<2.8", True),
        ("2.8", ">=2.5,<2.8", False),
        ("2.4.1+cu121", "<2.5", True),
        ("0.14.1", ">=0.13,<0.14.1", False),
        ("0.14.1.dev0", "==0.14.1", True),
        ("1.0", "", True),
    ],
)
def test_in_range(version: str, spec: str, inside: bool) -> None:
    assert in_range(version, spec) is inside


def test_in_range_rejects_what_it_cannot_read() -> None:
    with pytest.raises(ValueError, match="unsupported range clause"):
        in_range("1.0", "~=1.0")


def test_table_rows_are_lock_rules() -> None:
    ids = {r.id for r in checks.default_rules()}
    assert {p.id for p in backend_pairs()} <= ids
    rule = next(r for r in checks.default_rules() if r.id == "torchao-0.12-for-torch-2.5-2.7")
    assert rule.holds_for({"torch": "2.6.0"})
    assert rule.violations({"torch": "2.6.0", "torchao": "0.13.0"}) == ["torchao==0.13.0"]


@pytest.mark.parametrize(
    ("pins", "fp8", "status", "text"),
    [
        ({"torch": "2.6.0", "torchao": "0.12.0"}, "native", "pass", "built for torch 2.6.0"),
        ({"torch": "2.6.0"}, "native", "fail", "torchao is not installed"),
        ({"torch": "2.4.1", "torchao": "0.11.0"}, "native", "fail", "needs torch >= 2.5"),
        ({"torch": "2.4.1"}, "emulated", "pass", "no native backend needed"),
        ({"torch": "2.6.0", "torchao": "0.12.0"}, "auto", "pass", "torchao 0.12.0 locked"),
    ],
)
def test_lock_check_fp8_backend(pins: dict[str, str], fp8: str, status: str, text: str) -> None:
    result = checks.check_fp8_backend(pins, fp8)
    assert result.status == status
    assert text in result.detail
    if status == "fail":
        assert "fp8 = 'emulated'" in result.fix


def test_every_shipped_env_promises_a_mode_its_torch_can_keep(envs: list[EnvSpec]) -> None:
    by_name = {e.name: e for e in envs}
    assert by_name["sd35-fp8-cu121"].fp8 == "emulated"
    for env in envs:
        # torch 2.15 (cu132) ships no cp310 wheel and declares Requires-Python >= 3.11.
        assert env.pythons == (
            ("3.11", "3.12") if env.cuda == "cu132" else ("3.10", "3.11", "3.12")
        )
        if env.fp8 == "native":
            assert "torchao" in env.requirements, env.name
