"""``sdenv probe`` on a real NVIDIA GPU (marker ``gpu``: run on the device box, not in CI).

python3 -m pytest -m gpu tests/test_probe_gpu.py -p no:cacheprovider
"""

from __future__ import annotations

import pytest

from sdenv.gpu.decide import ProbeReport, decide
from sdenv.gpu.probe import collect_driver, collect_facts

pytestmark = pytest.mark.gpu


@pytest.fixture(scope="module")
def report() -> ProbeReport:
    facts = collect_facts(with_torch=True)
    if not facts.gpus:
        pytest.skip(f"no NVIDIA GPU: {facts.notes}")
    return decide(facts)


def test_fp8_verdict_matches_the_hardware(report: ProbeReport) -> None:
    for gpu in report.gpus:
        assert gpu.cc is not None
        major, minor = (int(x) for x in gpu.cc.split("."))
        if (major, minor) >= (8, 9):
            assert gpu.fp8.verdict == "native" and gpu.fp8.checked, gpu.fp8.reason
            assert "torch._scaled_mm e4m3" in gpu.fp8.reason
        else:
            assert gpu.fp8.verdict in ("emulated", "unsupported"), gpu.fp8.reason
    assert report.fp8_mode == {"native": "native", "emulated": "emulated"}.get(
        report.gpus[0].fp8.verdict, "off"
    )


def test_kernel_and_arch_checks_pass(report: ProbeReport) -> None:
    status = {(c.name, c.gpu): c.status for c in report.checks}
    for gpu in report.gpus:
        assert status[("torch-kernel", gpu.index)] == "pass"
        assert status[("torch-arch", gpu.index)] == "pass"
    assert status[("torch-driver", None)] in ("pass", "warn")


def test_fact_sources_agree() -> None:
    nvml = collect_driver([], ("nvml",))
    smi = collect_driver([], ("nvidia-smi",))
    proc = collect_driver([], ("proc",))
    assert nvml[0].version == smi[0].version == proc[0].version
    assert nvml[0].cuda == smi[0].cuda
    assert [(g.name, g.cc, g.uuid) for g in nvml[1]] == [(g.name, g.cc, g.uuid) for g in smi[1]]
    assert [g.name for g in proc[1]] == [g.name for g in nvml[1]]
