"""`sdenv verify`: the verdict rules, the model-check mode, and whole runs on small real venvs."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from sdenv.cli import main
from sdenv.verify import NO_TORCH, Part, model_mode, smoke_part, verdict, verify
from test_drift import DEMO, _lock, _site_file, _venv, wheels  # noqa: F401 (fixture)


def _parts(*statuses: tuple[str, str]) -> list[Part]:
    return [Part(name, status, reasons=[f"{name} {status}"]) for name, status in statuses]


def test_verdict_required_parts_and_skips() -> None:
    ok_parts = _parts(("probe", "pass"), ("drift", "pass"), ("smoke", "pass"), ("model", "pass"))
    assert verdict(ok_parts, fail_on_skip=True) == (True, [])

    cpu = _parts(("probe", "skip"), ("drift", "pass"), ("smoke", "pass"), ("model", "pass"))
    assert verdict(cpu, fail_on_skip=False)[0]
    ok, failed = verdict(cpu, fail_on_skip=True)
    assert not ok and failed == ["probe: skipped (probe skip) and --fail-on-skip is set"]

    # A passing part with skipped sub-checks (smoke's GPU checks on CPU) counts as a skip.
    cpu[2].skipped = ["scaled-mm"]
    assert verdict(cpu, fail_on_skip=True)[1][-1] == "smoke: sub-checks skipped (scaled-mm)"

    # A part that is not required (drift with --no-lock) never fails the verdict.
    nolock = [Part("drift", "skip", required=False, reasons=["no lock"])]
    assert verdict(nolock, fail_on_skip=True) == (True, [])

    bad = _parts(("probe", "pass"), ("drift", "fail"), ("model", "fail"))
    assert verdict(bad, fail_on_skip=False) == (False, ["drift: drift fail", "model: model fail"])


def _probe(mode: str, gpus: list[Any], torch: dict[str, Any] | None) -> dict[str, Any]:
    return {"fp8_mode": mode, "fp8_mode_reason": "r", "gpus": gpus, "facts": {"torch": torch}}


def test_model_mode_follows_probe_and_falls_back_to_emulated_on_cpu() -> None:
    h200 = [{"index": 0, "name": "NVIDIA H200", "cc": "9.0", "fp8": {"verdict": "native"}}]
    assert model_mode(_probe("native", h200, {"installed": True}))[0] == "native"
    a100 = [{"index": 0, "name": "A100", "cc": "8.0", "fp8": {"verdict": "emulated"}}]
    assert model_mode(_probe("emulated", a100, {"installed": True}))[0] == "emulated"
    cpu_torch = {"installed": True, "version": "2.4.1", "float8_dtypes": ["float8_e4m3fn"]}
    mode, why = model_mode(_probe("off", [], cpu_torch))
    assert mode == "emulated" and why.startswith("no GPU")
    old_torch = {"installed": True, "version": "2.0.1", "float8_dtypes": []}
    assert model_mode(_probe("off", [], old_torch)) == (
        None,
        "no GPU and torch 2.0.1 has no float8_e4m3fn",
    )
    assert model_mode(_probe("off", [], {"installed": False})) == (None, NO_TORCH)


def test_verify_small_venv_reports_every_reason(tmp_path: Path, wheels: Path) -> None:  # noqa: F811
    """A real venv without torch: drift is checked; smoke and model fail for the missing torch."""
    py = _venv(tmp_path / "v", wheels, f"{DEMO}==1.0")
    lock = _lock(tmp_path, wheels, **{DEMO: "1.0"})
    result = verify(python=py, lock=lock)
    parts = {p.name: p for p in result.parts}
    assert [p.name for p in result.parts] == ["probe", "drift", "smoke", "model"]
    assert parts["drift"].status == "pass", parts["drift"].reasons
    assert parts["smoke"].status == "fail" and "torch" in parts["smoke"].summary
    assert parts["model"].status == "fail" and parts["model"].summary == NO_TORCH
    assert not result.ok and result.verdict == "fail"
    # One process gave the probe's facts and would have run the model: one torch import.
    assert parts["probe"].detail["collected_in"] == "the model check's process"
    # Its smoke checks failed in that process and were asked again alone: the smoke's verdict is
    # the one of a smoke that shares no process with the model check.
    alone = smoke_part(str(py), gpu=None, timeout=180.0)
    assert (parts["smoke"].status, parts["smoke"].reasons) == (alone.status, alone.reasons)

    # Tamper with a file: drift now fails too, naming package and file.
    init = _site_file(py, "drift_demo/__init__.py")
    init.write_text(init.read_text() + "EVIL = 1\n")
    result = verify(python=py, lock=lock)
    drift = next(p for p in result.parts if p.name == "drift")
    assert drift.status == "fail"
    assert "sdenv-drift-demo==1.0: 1 file(s) modified, e.g. drift_demo/__init__.py" in drift.summary
    assert any(f.startswith("drift: files differ from RECORD") for f in result.failed)


def test_verify_cli_swapped_version_json(
    tmp_path: Path,
    wheels: Path,  # noqa: F811
    capsys: pytest.CaptureFixture[str],
) -> None:
    py = _venv(tmp_path / "v", wheels, f"{DEMO}==2.0")
    lock = _lock(tmp_path, wheels, **{DEMO: "1.0"})
    code = main(["verify", "--python", str(py), "--lock", str(lock), "--json"])
    assert code == 1
    result = json.loads(capsys.readouterr().out)
    drift = next(p for p in result["parts"] if p["name"] == "drift")
    assert drift["status"] == "fail"
    assert drift["reasons"][0].startswith(f"other versions: {DEMO} 2.0 (lock 1.0)")
    assert drift["detail"]["versions"] == [{"name": DEMO, "locked": "1.0", "installed": "2.0"}]


def test_verify_takes_a_relative_python_path(
    tmp_path: Path,
    wheels: Path,  # noqa: F811
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """`--python .envs/x/bin/python`, as the README writes it: the target runs from a staging
    dir, so the path is made absolute first (it once failed as 'not a working interpreter')."""
    py = _venv(tmp_path / "v", wheels, f"{DEMO}==2.0")
    lock = _lock(tmp_path, wheels, **{DEMO: "1.0"})
    monkeypatch.chdir(tmp_path)
    relative = str(Path(py).relative_to(tmp_path))
    assert main(["verify", "--python", relative, "--lock", str(lock), "--json"]) == 1
    result = json.loads(capsys.readouterr().out)
    drift = next(p for p in result["parts"] if p["name"] == "drift")
    assert drift["reasons"][0].startswith(f"other versions: {DEMO} 2.0 (lock 1.0)")


def test_verify_missing_lock_is_a_usage_error(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    missing = tmp_path / "nope.txt"
    assert main(["verify", "--lock", str(missing)]) == 2
    line = capsys.readouterr().err.strip()
    assert line == f"sdenv: error: {missing}: no such lockfile; create it with `sdenv lock`"


def test_verify_table_and_python_mismatch(
    tmp_path: Path,
    wheels: Path,  # noqa: F811
    capsys: pytest.CaptureFixture[str],
) -> None:
    py = _venv(tmp_path / "v", wheels, f"{DEMO}==1.0")
    lock = _lock(tmp_path, wheels, (("python", "3.9"),), **{DEMO: "1.0"})
    assert main(["verify", "--python", str(py), "--lock", str(lock)]) == 1
    captured = capsys.readouterr()
    text = captured.out
    # Progress on a non-terminal stderr: the start, then one line per part as it ends.
    progress = captured.err.splitlines()
    assert progress[0].startswith(f"verifying {py}: probe, then drift, smoke and the model check")
    assert sorted(ln.split(":")[0].strip() for ln in progress[1:]) == [
        "drift",
        "model",
        "probe",
        "smoke",
    ]
    assert "verdict: fail" in text
    assert "drift: lock is for Python 3.9, this interpreter is 3." in text


def test_the_probe_runs_alone_when_the_model_checks_process_gives_no_facts(
    tmp_path: Path,
    wheels: Path,  # noqa: F811
) -> None:
    """The probe's facts come from the model check's process; when that process dies before
    writing them (here the interpreter refuses to run the check module), verify runs the probe
    alone, which answers as it always did: its facts (no torch in this venv) decide the model
    part."""
    py = _venv(tmp_path / "v", wheels, f"{DEMO}==1.0")
    lock = _lock(tmp_path, wheels, **{DEMO: "1.0"})
    wrapper = tmp_path / "python"
    wrapper.write_text(
        "#!/bin/sh\n"
        'if [ "$2" = sdenv.runtime.check ]; then echo "check refused" >&2; exit 3; fi\n'
        f'exec {py} "$@"\n'
    )
    wrapper.chmod(0o755)
    result = verify(python=wrapper, lock=lock)
    parts = {p.name: p for p in result.parts}
    assert parts["probe"].status != "fail", parts["probe"].reasons
    assert parts["probe"].detail["collected_in"] == "a process of its own"
    assert parts["drift"].status == "pass", parts["drift"].reasons
    assert parts["model"].status == "fail" and parts["model"].summary == NO_TORCH
    assert parts["smoke"].status == "fail" and "torch" in parts["smoke"].summary


def test_the_check_process_runs_the_smoke_checks_named_on_its_first_line(
    capsys: pytest.CaptureFixture[str],
) -> None:
    """The line verify's smoke sends to the model check's process: the checks it knows run there,
    each writing the result line a smoke process of its own writes; any other line is not one."""
    from sdenv.runtime.check import run_smoke_line
    from sdenv.target.protocol import results

    assert run_smoke_line("smoke off env no-such-check\n") == ["env"]
    (record,) = results(capsys.readouterr().out)
    assert record["check"] == "env" and record["status"] == "pass"
    assert run_smoke_line("emulated\n") is None
    assert run_smoke_line("smoke maybe env\n") is None
    assert capsys.readouterr().out == ""
