"""`sdenv lock` against a real local index (tests/pypi_index.py): resolve, checks, proof, write."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from helpers.specs import STACK_REQS, lock_options, write_spec
from pypi_index import (
    RUNTIME_121,
    build_index,
    serve,
    simple_dist,
    torch_dist,
    xformers_dist,
)
from sdenv import lock as core
from sdenv.cli import main
from sdenv.lock.lockfile import read_lockfile
from sdenv.lock.spec import load_spec

pytestmark = pytest.mark.usefixtures("private_cache")


def test_lock_fixes_rules_and_xformers_proves_and_writes(index: str, tmp_path: Path) -> None:
    spec = load_spec(write_spec(tmp_path, index))
    result = core.lock_target(spec, spec.targets[0], lock_options(tmp_path / "locks"))
    assert result.status == "written", result.message
    # Rules (torch < 2.6) bound diffusers and transformers; the loosely pinned xformers 0.0.35
    # (built for torch 2.6) was replaced by the one whose cpp_lib.json says torch 2.4.1.
    assert result.pins["diffusers"] == "0.35.2"
    assert result.pins["transformers"] == "4.57.6"
    assert result.pins["xformers"] == "0.0.28.post1"
    assert result.pins["torch"] == "2.4.1"
    assert {"packaging", "rich"} <= set(result.pins)  # sdenv's in-image runtime
    assert result.proof.status == "passed"
    lock = read_lockfile(result.path)
    assert lock.get("proof", "").startswith("passed")
    assert lock.get("resolver", "").startswith("uv ")
    assert lock.get("spec-sha256") == spec.sha256
    assert lock.get("extra") == "sdenv runtime (packaging, rich)"
    cons = lock.get_all("constraint")
    assert "diffusers<0.36 (rule diffusers-torch-accelerator)" in cons
    assert any(c.startswith("xformers==0.0.28.post1") for c in cons)
    assert "nvidia-cuda-runtime-cu12==12.1.105" in (lock.get("cuda") or "")

    # Plain pip installs it as is: hashes required, no resolution.
    site = tmp_path / "site"
    proc = subprocess.run(
        [
            *(sys.executable, "-m", "pip", "install", "--isolated", "--quiet", "--no-deps"),
            *("--require-hashes", "--index-url", index, "--target", str(site)),
            *("-r", str(result.path)),
        ],
        capture_output=True,
        text=True,
        env={**os.environ, "PIP_CONFIG_FILE": os.devnull},
    )
    assert proc.returncode == 0, proc.stderr
    assert (site / "xformers" / "cpp_lib.json").exists()


def test_relock_is_byte_identical(index: str, tmp_path: Path) -> None:
    spec = load_spec(write_spec(tmp_path, index))
    o = lock_options(tmp_path / "locks", verify=False)
    first = core.lock_target(spec, spec.targets[0], o)
    text = first.path.read_bytes()
    second = core.lock_target(spec, spec.targets[0], o)
    assert (first.status, second.status) == ("written", "unchanged")
    assert first.path.read_bytes() == text
    assert b"proof: unverified: --no-verify" in text
    assert not list(first.path.parent.glob(".*.tmp"))


def test_cuda_mismatch_fails_and_writes_nothing(index: str, tmp_path: Path) -> None:
    # A non-PyPI index gets no torch/CUDA bound: the newest fake torch pins the 12.4 runtime.
    spec = load_spec(write_spec(tmp_path, index, {"torch": ">=2.4"}))
    result = core.lock_target(spec, spec.targets[0], lock_options(tmp_path / "locks"))
    assert result.status == "failed"
    assert "built for cu124" in result.message and "wants cu121" in result.message
    assert "nvidia-cuda-runtime-cu12==12.4.127" in result.message
    assert not (tmp_path / "locks").exists()


def test_cuda_from_local_version_tag(tmp_path: Path) -> None:
    root = build_index(
        [
            torch_dist("2.5.1+cu121", "12.1"),
            simple_dist("packaging", "24.2"),
            simple_dist("rich", "13.9.4"),
            simple_dist("tomli", "2.2.1"),
        ],
        tmp_path / "wheels",
    )
    with serve(root) as url:
        spec = load_spec(write_spec(tmp_path, url, {"torch": ">=2.5"}))
        result = core.lock_target(spec, spec.targets[0], lock_options(tmp_path / "l", verify=False))
    assert result.status == "written", result.message
    cuda = next(c for c in result.checks if c.name == "cuda-variant")
    assert cuda.status == "pass" and "torch 2.5.1+cu121" in cuda.detail


def test_xformers_without_a_matching_build_fails_naming_the_pair(tmp_path: Path) -> None:
    root = build_index(
        [
            simple_dist("nvidia-cuda-runtime-cu12", "12.1.105"),
            torch_dist("2.4.1", "12.1", RUNTIME_121),
            xformers_dist("0.0.35", ">=2.4", "2.6.0+cu124", 1204, "7.5 8.0+PTX 8.0 9.0a"),
            simple_dist("packaging", "24.2"),
            simple_dist("rich", "13.9.4"),
        ],
        tmp_path / "wheels",
    )
    with serve(root) as url:
        spec = load_spec(write_spec(tmp_path, url, {"torch": ">=2.4", "xformers": ""}))
        result = core.lock_target(spec, spec.targets[0], lock_options(tmp_path / "l"))
    assert result.status == "failed"
    assert "xformers 0.0.35 was built for torch 2.6.0+cu124" in result.message
    assert "torch 2.4.1" in result.message and "no xformers release" in result.message
    assert not result.path.exists()


def test_gpu_coverage_gap_fails(index: str, tmp_path: Path) -> None:
    spec = load_spec(write_spec(tmp_path, index, ccs=("8.9", "12.0")))
    result = core.lock_target(spec, spec.targets[0], lock_options(tmp_path / "l", verify=False))
    assert result.status == "failed"
    assert "gpu-coverage" in result.message and "12.0" in result.message
    assert "Blackwell needs cu128" in result.message


def test_failed_proof_is_not_written_and_names_culprits(index: str, tmp_path: Path) -> None:
    # No rules: the naive set in miniature (diffusers 0.42.1 + transformers 5 on 2.4.1;
    # docs/evidence.md#E-naive-resolve).
    spec = load_spec(write_spec(tmp_path, index))
    result = core.lock_target(spec, spec.targets[0], lock_options(tmp_path / "l", rules=()))
    assert result.status == "failed"
    assert result.pins["diffusers"] == "0.42.1" and result.pins["transformers"] == "5.23.0"
    assert result.proof.status == "failed"
    culprits = {c for f in result.proof.failures for c in f.culprits}
    assert {"diffusers", "transformers"} <= culprits
    assert "accelerator" in result.message and "--search" in result.message
    assert not result.path.exists()


def test_unverifiable_target_is_written_marked_unverified(index: str, tmp_path: Path) -> None:
    spec = load_spec(write_spec(tmp_path, index, pythons=("3.14",)))
    result = core.lock_target(spec, spec.targets[0], lock_options(tmp_path / "l"))
    assert result.status == "written", result.message
    assert read_lockfile(result.path).get("proof") == "unverified: no Python 3.14 on this machine"


def test_upgrade_package_moves_only_that_pin_and_shows_the_table(
    index: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = write_spec(tmp_path, index, {**STACK_REQS, "diffusers": "<0.35"})
    locks = tmp_path / "locks"
    args = ["lock", str(path), "--lock-dir", str(locks), "--no-verify"]
    assert main(args) == 0
    assert read_lockfile(next(locks.glob("*.txt"))).versions()["diffusers"] == "0.34.0"
    path.write_text(path.read_text().replace('diffusers = "<0.35"', 'diffusers = ">=0.31"'))
    assert main(args) == 0  # the existing pin is a preference: kept
    assert read_lockfile(next(locks.glob("*.txt"))).versions()["diffusers"] == "0.34.0"
    capsys.readouterr()
    assert main([*args, "--upgrade-package", "diffusers"]) == 0
    out = capsys.readouterr().out
    assert read_lockfile(next(locks.glob("*.txt"))).versions()["diffusers"] == "0.35.2"
    assert "0.34.0" in out and "0.35.2" in out and "changes" in out


def test_json_output(index: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = write_spec(tmp_path, index)
    code = main(["lock", str(path), "--lock-dir", str(tmp_path / "l"), "--no-verify", "--json"])
    data = json.loads(capsys.readouterr().out)
    assert code == 0 and data["ok"] is True
    (target,) = data["targets"]
    assert target["status"] == "written" and target["pins"]["torch"] == "2.4.1"
    assert {c["name"] for c in target["checks"]} >= {"cuda-variant", "xformers-abi", "gpu-coverage"}


def test_runs_on_one_env_are_serialised(index: str, tmp_path: Path) -> None:
    spec = load_spec(write_spec(tmp_path, index))
    locks = tmp_path / "locks"
    held = core.env_file_lock(locks, spec.name)
    held.acquire()
    results: list[core.TargetResult] = []
    worker = threading.Thread(
        target=lambda: results.extend(core.lock_env(spec, lock_options(locks, verify=False)))
    )
    worker.start()
    time.sleep(1.0)
    assert not results and not locks.exists()  # waiting for the lock
    held.release()
    worker.join(60)
    assert [r.status for r in results] == ["written"]


def test_cli_bad_rules_file_exits_2_and_writes_nothing(
    index: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = write_spec(tmp_path, index)
    rules = tmp_path / "rules.toml"
    rules.write_text(
        '[[rules]]\nid = "x"\nwhen = { torch = "<2.6" }\nrequire = { diffusers = "<<1" }\n'
    )
    locks = tmp_path / "locks"
    code = main(["lock", str(path), "--lock-dir", str(locks), "--rules", str(rules)])
    err = capsys.readouterr().err.strip()
    assert code == 2 and err.count("\n") == 0
    assert "rules[0].require.diffusers: bad range '<<1'" in err
    assert not locks.exists()


def test_cli_renders_a_failed_proof_as_one_error_line(
    index: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    # The full smoke on the fake stack fails (its torch has no FP8 dtypes): nothing is written
    # and the table, checks and error line render.
    path = write_spec(tmp_path, index)
    locks = tmp_path / "locks"
    assert main(["lock", str(path), "--lock-dir", str(locks)]) == 1
    captured = capsys.readouterr()
    assert "failed" in captured.out and "xformers-abi" in captured.out
    errors = [ln for ln in captured.err.splitlines() if ln.startswith("sdenv: error:")]
    assert len(errors) == 1 and "import proof failed, lock not written" in errors[0]
    assert not locks.exists()


def test_cli_rules_file_replaces_the_shipped_rules_and_is_recorded(
    index: str, tmp_path: Path
) -> None:
    path = write_spec(tmp_path, index)
    empty = tmp_path / "none.toml"
    empty.write_text("")
    locks = tmp_path / "locks"
    assert (
        main(["lock", str(path), "--lock-dir", str(locks), "--no-verify", "--rules", str(empty)])
        == 0
    )
    lock = read_lockfile(next(locks.glob("*.txt")))
    assert lock.get("rules") == str(empty)
    assert lock.versions()["diffusers"] == "0.42.1"  # nothing bounded it
    assert not [c for c in lock.get_all("constraint") if "rule " in c]


def test_the_interface_loads_its_names_on_first_use_only() -> None:
    # Every command reads specs and locks: that must not import the resolver, index client and
    # checks behind `sdenv.lock`'s names.
    code = (
        "import sys, sdenv.lock.spec, sdenv.lock.lockfile; "
        "print(' '.join(sorted(m for m in sys.modules if m.startswith('sdenv.lock'))))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.split() == ["sdenv.lock", "sdenv.lock.lockfile", "sdenv.lock.spec"]
    for name in core.__all__:
        assert getattr(core, name).__module__.startswith("sdenv.lock."), name
    with pytest.raises(AttributeError, match="has no attribute 'lock_everything'"):
        core.lock_everything  # noqa: B018
