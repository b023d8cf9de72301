"""The pure checks behind `sdenv lock` (`sdenv.lock.checks`), on the recorded facts of
docs/evidence.md."""

from __future__ import annotations

import json

import pytest

from pypi_index import ARCHS_CU121
from sdenv.errors import UsageError
from sdenv.lock import checks
from sdenv.lock.checks import CppLib, Rule

# docs/evidence.md#E-xformers-cpp-lib: what the wheels' xformers/cpp_lib.json say.
CPP_0028 = CppLib("2.4.1+cu121", 1201, "6.0+PTX 7.0 7.5 8.0+PTX 9.0a")
CPP_0035 = CppLib("2.10.0+cu128", 1208, "7.5 8.0+PTX 8.0 9.0a")


@pytest.mark.parametrize(
    ("pins", "expected"),
    [
        # docs/evidence.md#E-torch-cuda-lines
        ({"torch": "2.4.1", "nvidia-cuda-runtime-cu12": "12.1.105"}, "cu121"),
        ({"torch": "2.6.0", "nvidia-cuda-runtime-cu12": "12.4.127"}, "cu124"),
        ({"torch": "2.11.0", "nvidia-cuda-runtime": "13.0.96"}, "cu130"),  # no -cu12 suffix
        # torch 2.15.0: cuda-toolkit==13.2.2 pins nvidia-cuda-runtime==13.2.86.*
        ({"torch": "2.15.0", "cuda-toolkit": "13.2.2", "nvidia-cuda-runtime": "13.2.86"}, "cu132"),
        ({"torch": "2.14.1", "cuda-toolkit": "13.0.3.0"}, "cu130"),  # runtime package missing
        ({"torch": "2.14.1", "cuda-toolkit": "13.0.3", "nvidia-cuda-runtime": "13.0.96"}, "cu130"),
        ({"torch": "2.5.1+cu121"}, "cu121"),  # PyTorch index local version
        ({"torch": "2.5.1+cpu"}, "cpu"),
    ],
)
def test_cuda_of_pins(pins: dict[str, str], expected: str) -> None:
    found = checks.cuda_of_pins(pins)
    assert found is not None and found[0] == expected


def test_check_cuda_names_torch_and_the_fix() -> None:
    ok = checks.check_cuda({"torch": "2.4.1", "nvidia-cuda-runtime-cu12": "12.1.105"}, "cu121")
    assert ok.status == "pass"
    bad = checks.check_cuda({"torch": "2.5.1", "nvidia-cuda-runtime-cu12": "12.4.127"}, "cu121")
    assert bad.status == "fail" and "cu124" in bad.detail and bad.packages == ("torch",)
    assert "env.cuda" in bad.fix
    cu132 = {"torch": "2.15.0", "cuda-toolkit": "13.2.2", "nvidia-cuda-runtime": "13.2.86"}
    assert checks.check_cuda(cu132, "cu132").status == "pass"
    wrong = checks.check_cuda(cu132, "cu130")
    assert wrong.status == "fail" and "cu132" in wrong.detail
    assert "nvidia-cuda-runtime==13.2.86" in wrong.detail  # the runtime, not the meta-package
    cpu = checks.check_cuda({"torch": "2.4.1"}, "cu121")
    assert cpu.status == "fail" and "CPU build" in cpu.detail


def test_xformers_abi_on_facts_2() -> None:
    pins = {"torch": "2.4.1", "xformers": "0.0.28.post1"}
    assert checks.check_xformers_abi(pins, CPP_0028, "cu121").status == "pass"
    # 0.0.35's metadata accepts torch 2.11 (cu130) but _C.so was built for 2.10.0+cu128.
    bad = checks.check_xformers_abi({"torch": "2.11.0", "xformers": "0.0.35"}, CPP_0035, "cu130")
    assert bad.status == "fail"
    assert "built for torch 2.10.0+cu128" in bad.detail and "torch 2.11.0" in bad.detail
    assert "torch==2.10.0" in bad.fix
    # Same torch, other CUDA major: also a mismatch.
    assert not checks.xformers_matches(CPP_0035, "2.10.0", "cu130")
    assert checks.xformers_matches(CPP_0035, "2.10.0", "cu128")
    assert checks.check_xformers_abi({"torch": "2.4.1"}, None, "cu121").status == "skip"


def test_cpp_lib_parse_reads_the_real_layout() -> None:
    raw = json.dumps(
        {
            "version": {"cuda": 1201, "hip": None, "torch": "2.4.1+cu121", "python": "3.11.10"},
            "env": {"TORCH_CUDA_ARCH_LIST": "6.0+PTX 7.0 7.5 8.0+PTX 9.0a"},
        }
    ).encode()
    assert CppLib.parse(raw) == CPP_0028 and CPP_0028.cuda_major == 12


def test_gpu_coverage() -> None:
    # Ada 8.9 runs sm_86 SASS (torch) and sm_80 SASS (xformers); Hopper needs 9.0a exactly.
    ok = checks.check_coverage("cu121", ARCHS_CU121, ["8.0", "8.6", "8.9", "9.0"])
    assert ok.status == "pass"
    blackwell = checks.check_coverage("cu121", ARCHS_CU121, ["12.0"])
    assert blackwell.status == "fail" and "torch 12.0" in blackwell.detail
    # cu128 torch covers sm_120; the cu121-built xformers only through its 8.0 PTX... not for
    # a higher major: PTX JITs forward, so it is covered (slowly).
    x = checks.check_coverage("cu128", "7.5 8.0+PTX 8.0 9.0a", ["12.0"])
    assert x.status == "pass"
    no_ptx = checks.check_coverage("cu128", "7.5 8.0 9.0a", ["12.0"])
    assert no_ptx.status == "fail" and "xformers 12.0" in no_ptx.detail


def test_pypi_torch_bound_from_the_table() -> None:
    assert checks.pypi_torch_bound("cu121", ">=2.4") == ">=2.4,<2.5"
    assert checks.pypi_torch_bound("cu124", ">=2.4") == ">=2.5,<2.7"
    assert checks.pypi_torch_bound("cu128", ">=2.9") == ">=2.9,<2.11"
    assert checks.pypi_torch_bound("cu130", ">=2.11,<2.15") == ">=2.11,<2.15"
    assert checks.pypi_torch_bound("cu132", ">=2.11") == ">=2.15,<2.16"
    with pytest.raises(UsageError, match=r"download.pytorch.org/whl/cu118"):
        checks.pypi_torch_bound("cu118", ">=2.4")
    with pytest.raises(UsageError, match="widen requirements.torch"):
        checks.pypi_torch_bound("cu121", ">=2.5")


def test_shipped_rules_have_evidence_and_fire_on_facts_3() -> None:
    rules = checks.default_rules()
    assert rules and all(r.reason and r.evidence for r in rules)
    naive = {"torch": "2.4.1", "diffusers": "0.42.1", "transformers": "5.23.0"}
    fired = {r.id for r in checks.violated_rules(rules, naive)}
    assert {"diffusers-torch-accelerator", "transformers5-needs-torch-2.6"} <= fired
    working = {"torch": "2.4.1", "diffusers": "0.35.2", "transformers": "4.57.6"}
    assert checks.check_rules(rules, working).status == "pass"
    bad = checks.check_rules(rules, naive)
    assert bad.status == "fail" and "diffusers==0.42.1" in bad.detail


def test_rules_before_resolve_only_when_every_torch_candidate_matches() -> None:
    rules = checks.default_rules()
    only_24 = checks.rules_before_resolve(rules, ["2.4.0", "2.4.99"])
    assert {r.id for r in only_24} == {
        "diffusers-torch-accelerator",
        "transformers5-needs-torch-2.6",
        "torchao-none-on-torch-2.4",  # data/fp8_backends.json rows are rules too
    }
    # Spans 2.6 (where the diffusers/transformers rules stop): only the torchao pair holds.
    spanning = checks.rules_before_resolve(rules, ["2.5.0", "2.6.99"])
    assert {r.id for r in spanning} == {"torchao-0.12-for-torch-2.5-2.7"}
    assert checks.rules_before_resolve(rules, []) == []  # unknown index: after resolving only


def test_rule_toml_round_trip_and_errors() -> None:
    rule = Rule("x", {"torch": "==2.4.*"}, {"diffusers": "<0.36.0"}, 'says "why"', "seen")
    (back,) = checks.parse_rules(rule.to_toml())
    assert (back.id, dict(back.when), dict(back.require), back.reason) == (
        "x",
        {"torch": "==2.4.*"},
        {"diffusers": "<0.36.0"},
        'says "why"',
    )
    with pytest.raises(checks.RulesError, match=r"rules\[0\].require.diffusers: bad range"):
        checks.parse_rules(
            '[[rules]]\nid = "y"\nwhen = {torch = "<2"}\nrequire = {diffusers = "<<1"}'
        )
    with pytest.raises(checks.RulesError, match=r"rules\[0\].when"):
        checks.parse_rules('[[rules]]\nid = "y"\nrequire = {a = "<1"}')
