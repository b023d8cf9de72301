"""docs/compat-matrix.md is what benchmarks/results/gpu-proof-*.json say, and names stale proofs."""

from __future__ import annotations

import hashlib
import importlib.util
import json
import subprocess
import sys
from pathlib import Path
from types import ModuleType

import pytest


def _script(repo: Path) -> ModuleType:
    spec = importlib.util.spec_from_file_location(
        "compat_matrix", repo / "scripts/compat_matrix.py"
    )
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_page_is_up_to_date(repo: Path) -> None:
    proc = subprocess.run(
        [sys.executable, "scripts/compat_matrix.py", "--check"],
        cwd=repo,
        capture_output=True,
        text=True,
        check=False,
    )
    assert proc.returncode == 0, proc.stderr


def test_rows_say_verdict_bench_and_lock_state(repo: Path, tmp_path: Path) -> None:
    matrix = _script(repo)
    lock = repo / "lockfiles" / "sd35-fp8-cu121-py3.11-linux_x86_64.txt"
    proof = {
        "lock": "lockfiles/sd35-fp8-cu121-py3.11-linux_x86_64.txt",
        "lock_sha256": hashlib.sha256(lock.read_bytes()).hexdigest(),
        "gpu": {"name": "NVIDIA H200", "cc": "9.0", "driver": "580.159.04"},
        "verify": {"verdict": "pass", "fp8_mode": "emulated", "model_mode": "emulated"},
        "generate": {"mode": "emulated"},
        "bench": {
            "results": [
                {"mode": "bf16", "status": "ok", "median_ms": 146.2, "peak_bytes": 17 * 1024**3},
                {"mode": "fp8-emulated", "status": "timeout", "reason": "over 240 s"},
            ]
        },
        "not_run": ["bench fp8-native: torch 2.4.1 has no native FP8 backend"],
    }
    (tmp_path / "gpu-proof-x.json").write_text(json.dumps(proof))
    page = matrix.render(tmp_path)
    (row,) = [ln for ln in page.splitlines() if ln.startswith("| `sd35")]
    assert "NVIDIA H200 (cc 9.0, driver 580.159.04)" in row
    assert "pass (FP8 emulated, model emulated)" in row
    assert "bf16 146.2 ms, peak 17.0 GiB<br>fp8-emulated: timeout (over 240 s)" in row
    assert "| current |" in row
    assert "torch 2.4.1 has no native FP8 backend" in page
    proof["lock_sha256"] = "0" * 64
    (tmp_path / "gpu-proof-x.json").write_text(json.dumps(proof))
    assert "stale (lock changed since)" in matrix.render(tmp_path)
    # Another header, the same pins: still the proven set of wheels.
    text = lock.read_text()
    proof["pins_sha256"] = matrix.pins_sha256("# data-sha256: another\n" + text)
    (tmp_path / "gpu-proof-x.json").write_text(json.dumps(proof))
    assert "current pins (lock header re-generated since)" in matrix.render(tmp_path)
    first_pin = next(ln for ln in text.splitlines() if "==" in ln and not ln.startswith("#"))
    proof["pins_sha256"] = matrix.pins_sha256(text.replace(first_pin, first_pin + "1", 1))
    (tmp_path / "gpu-proof-x.json").write_text(json.dumps(proof))
    assert "stale (lock changed since)" in matrix.render(tmp_path)


@pytest.mark.parametrize("field", ["lock", "lock_sha256"])
def test_every_proof_names_its_lock(repo: Path, field: str) -> None:
    for path in sorted((repo / "benchmarks/results").glob("gpu-proof-*.json")):
        assert json.loads(path.read_text())[field], path
