"""``sdenv probe`` on this machine for real: no NVML library, no /proc/driver/nvidia, no nvidia-smi.

Nothing is faked: the fact sources really fail here and the probe must say so and exit 0, with
torch (the runtime env's, in the tests marked runtime) and without it. The FP8 GEMM check runs for
real on CPU.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from sdenv.cli import main
from sdenv.gpu.facts import DriverFacts, MachineFacts
from sdenv.gpu.probe import DRIVER_SOURCES, collect_driver, collect_facts, probe

NO_GPU_HERE = not Path("/proc/driver/nvidia").exists() and shutil.which("nvidia-smi") is None
needs_no_gpu = pytest.mark.skipif(not NO_GPU_HERE, reason="this box has an NVIDIA driver")
SRC = str(Path(__file__).resolve().parents[1] / "src")


def _nvml_note() -> str:
    try:
        import pynvml  # noqa: F401
    except ImportError:
        return "NVML: nvidia-ml-py not installed"
    return "NVML: NVML Shared Library Not Found"


@needs_no_gpu
def test_every_driver_source_fails_here_and_says_why() -> None:
    notes: list[str] = []
    driver, gpus = collect_driver(notes)
    assert (driver.version, driver.source, gpus) == (None, "none", [])
    assert notes == [
        _nvml_note(),
        "nvidia-smi: not on PATH",
        "/proc/driver/nvidia/version: absent (no NVIDIA kernel module)",
    ]
    assert DRIVER_SOURCES == ("nvml", "nvidia-smi", "proc")


@needs_no_gpu
def test_torch_free_probe_on_this_box() -> None:
    report = probe(with_torch=False)
    assert report.facts.torch is None
    assert report.gpus == [] and report.fp8_mode == "off"
    assert "torch" not in {m.split(".")[0] for m in _imported_after_probe(no_torch=True)}


def _imported_after_probe(no_torch: bool) -> list[str]:
    code = (
        "import sys; from sdenv.gpu.probe import probe; "
        f"probe(with_torch={not no_torch}); print(' '.join(sys.modules))"
    )
    out = subprocess.run(
        [sys.executable, "-c", code],
        capture_output=True,
        text=True,
        check=True,
        env={"PYTHONPATH": SRC, "PATH": "/usr/bin:/bin"},
    ).stdout
    return out.split()


def test_probe_modules_import_only_the_stdlib() -> None:
    # The probe runs inside target envs: nothing beyond the standard library at import time.
    # (pynvml is imported lazily by the NVML reader on purpose, where it is installed.)
    top = {m.split(".")[0] for m in _imported_after_probe(no_torch=True)}
    assert not {"rich", "packaging", "torch", "numpy"} & top


@needs_no_gpu
@pytest.mark.runtime
def test_full_probe_on_this_box_with_real_torch() -> None:
    import torch

    facts = collect_facts(with_torch=True)
    assert facts.torch is not None and facts.torch.installed
    assert facts.torch.version == torch.__version__
    assert "float8_e4m3fn" in facts.torch.float8_dtypes
    assert facts.torch.cuda_available is False and facts.torch.devices == []
    if torch.version.cuda:  # a CUDA build without a driver says so in torch's own words
        assert facts.torch.cuda_error and "NVIDIA driver" in facts.torch.cuda_error
        assert "sm_90" in facts.torch.arch_list
    report = probe(with_torch=True)
    assert report.fp8_mode == "off" and report.gpus == []
    assert {c.name: c.status for c in report.checks}["torch"] == "pass"


def _probe_in_subprocess(block: str) -> MachineFacts:
    # Block an import for real (sys.modules[name] = None makes `import name` raise ImportError).
    code = (
        f"import sys; sys.modules[{block!r}] = None\n"
        "from sdenv.gpu.probe import collect_facts\n"
        "print(collect_facts(with_torch=True).to_json())"
    )
    out = subprocess.run(
        [sys.executable, "-c", code],
        capture_output=True,
        text=True,
        check=True,
        env={"PYTHONPATH": SRC, "PATH": "/usr/bin:/bin"},
    ).stdout
    return MachineFacts.from_json(out)


@needs_no_gpu
def test_without_torch_installed_the_probe_still_answers() -> None:
    facts = _probe_in_subprocess("torch")
    assert facts.torch is not None and not facts.torch.installed
    assert facts.torch.import_error and "torch" in facts.torch.import_error
    assert facts.gpus == []


@needs_no_gpu
def test_without_nvidia_ml_py_the_probe_falls_back() -> None:
    facts = _probe_in_subprocess("pynvml")
    assert facts.notes[0] == "NVML: nvidia-ml-py not installed"
    assert facts.notes[1] == "nvidia-smi: not on PATH"


@pytest.mark.runtime
def test_scaled_mm_check_runs_for_real_on_cpu() -> None:
    import torch

    if not hasattr(torch, "float8_e4m3fn"):
        pytest.skip("torch without float8")
    from sdenv.gpu.probe import _scaled_mm_check

    facts = _scaled_mm_check(torch, "cpu")
    if facts.error and "CPU" in facts.error:
        pytest.skip(f"this torch has no CPU _scaled_mm: {facts.error}")
    assert facts.ran and facts.ok, facts
    assert facts.signature == "tensor"  # torch >= 2.4
    assert facts.max_rel_err is not None and facts.max_rel_err <= 0.02


# ---- CLI ---------------------------------------------------------------------------------------


@needs_no_gpu
def test_cli_json_no_torch_exits_zero(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch, repo: Path
) -> None:
    monkeypatch.chdir(repo)
    assert main(["probe", "--json", "--no-torch"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["fp8_mode"] == "off" and report["gpus"] == []
    assert [e["env"] for e in report["envs"]] == sorted(p.stem for p in Path("envs").glob("*.toml"))
    assert report["facts"]["torch"] is None


def test_cli_renders_a_recorded_machine(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch, repo: Path
) -> None:
    monkeypatch.chdir(repo)
    monkeypatch.setenv("COLUMNS", "200")
    facts = repo / "src/sdenv/data/machines/rtx5090-cu121.json"
    assert main(["probe", "--facts", str(facts), "--env", "sd35-fp8-cu121"]) == 0
    text = capsys.readouterr().out
    assert "unsupported" in text and "no kernel image for sm_120" in text
    assert "FP8 mode: off" in text and "env: none" in text


def test_cli_save_facts_round_trips(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch, tmp_path: Path, repo: Path
) -> None:
    monkeypatch.chdir(repo)
    src = repo / "src/sdenv/data/machines/t4.json"
    out = tmp_path / "sub" / "facts.json"
    assert main(["probe", "--json", "--facts", str(src), "--save-facts", str(out)]) == 0
    assert MachineFacts.from_json(out.read_text()) == MachineFacts.from_json(src.read_text())
    assert json.loads(capsys.readouterr().out)["gpus"][0]["fp8"]["verdict"] == "emulated"


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--env", "nope"], "no env named 'nope'"),
        (["--facts", "missing.json"], "missing.json: cannot read"),
    ],
)
def test_cli_bad_input_is_one_line_exit_2(
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
    repo: Path,
    args: list[str],
    message: str,
) -> None:
    monkeypatch.chdir(repo)
    assert main(["probe", "--no-torch", *args]) == 2
    err = capsys.readouterr().err.strip()
    assert message in err and err.count("\n") == 0


def test_cli_bad_fact_file_names_the_field(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    bad = tmp_path / "bad.json"
    bad.write_text('{"gpus": [{"index": "zero", "name": "x"}]}')
    assert main(["probe", "--facts", str(bad), "--envs-dir", str(tmp_path)]) == 2
    err = capsys.readouterr().err
    assert f"{bad}.gpus[0].index: expected int, got 'zero'" in err


# ---- fallback parsers, fed the formats the real tools print -------------------------------------

SMI_SCRIPT = """#!/bin/sh
if [ -z "$1" ]; then
  echo "| NVIDIA-SMI 580.159.04   Driver Version: 580.159.04   CUDA Version: 13.0     |"
  exit 0
fi
echo "0, NVIDIA H200, GPU-58061743-7616, 9.0, 143771, 143156, Disabled, 580.159.04"
echo "1, NVIDIA A100-SXM4-80GB, GPU-aaaa, 8.0, 81920, [N/A], Enabled, 580.159.04"
echo "2, Tesla K80, GPU-bbbb, [N/A], 11441, 11300, [N/A], 580.159.04"
"""


def test_nvidia_smi_csv_is_parsed(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    smi = tmp_path / "nvidia-smi"
    smi.write_text(SMI_SCRIPT)
    smi.chmod(0o755)
    monkeypatch.setenv("PATH", f"{tmp_path}:/usr/bin:/bin")
    notes: list[str] = []
    driver, gpus = collect_driver(notes, ("nvidia-smi",))
    assert (driver.version, driver.cuda, driver.source) == ("580.159.04", "13.0", "nvidia-smi")
    assert [(g.name, g.cc, g.memory_free_mib, g.mig_mode) for g in gpus] == [
        ("NVIDIA H200", "9.0", 143156, "disabled"),
        ("NVIDIA A100-SXM4-80GB", "8.0", None, "enabled"),
        ("Tesla K80", None, 11300, None),
    ]
    assert notes == []


def test_failing_nvidia_smi_is_a_note(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    smi = tmp_path / "nvidia-smi"
    smi.write_text(
        "#!/bin/sh\necho 'NVIDIA-SMI has failed because it could not communicate'\nexit 9\n"
    )
    smi.chmod(0o755)
    monkeypatch.setenv("PATH", f"{tmp_path}:/usr/bin:/bin")
    notes: list[str] = []
    assert collect_driver(notes, ("nvidia-smi",)) == (DriverFacts(), [])
    assert notes == ["nvidia-smi: exit 9: NVIDIA-SMI has failed because it could not communicate"]


@pytest.mark.parametrize(
    "line",
    [
        "NVRM version: NVIDIA UNIX x86_64 Kernel Module  535.104.05  Sat Aug 19 01:15:15 UTC 2023",
        "NVRM version: NVIDIA UNIX Open Kernel Module for x86_64  535.104.05  Release Build",
    ],
)
def test_proc_driver_version_is_parsed(
    line: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import sdenv.gpu.probe as probe_mod

    (tmp_path / "version").write_text(line + "\nGCC version:  gcc version 12.2.0\n")
    gpu_dir = tmp_path / "gpus" / "0000:3b:00.0"
    gpu_dir.mkdir(parents=True)
    (gpu_dir / "information").write_text("Model: \t\t Tesla T4\nIRQ:   \t\t 35\n")
    monkeypatch.setattr(probe_mod, "PROC_VERSION", tmp_path / "version")
    monkeypatch.setattr(probe_mod, "PROC_GPUS", tmp_path / "gpus")
    driver, gpus = collect_driver([], ("proc",))
    assert (driver.version, driver.source) == ("535.104.05", "proc")
    assert [(g.name, g.cc, g.source) for g in gpus] == [("Tesla T4", None, "proc")]
