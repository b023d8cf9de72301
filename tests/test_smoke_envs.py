"""``sdenv smoke`` against real venvs built from PyPI wheels (docs/evidence.md#E-naive-resolve):
one that works, the naive resolve that does not import, and an xformers built for another torch.

Online + slow: the first run downloads torch 2.4.1 and its CUDA wheels (~3.5 GB, uv cache);
venvs are kept under pytest's cache dir keyed by their install steps, so repeats cost seconds.
"""

from __future__ import annotations

import hashlib
import json
import shutil
from collections.abc import Sequence
from pathlib import Path

import pytest
from filelock import FileLock

from sdenv.smoke import SmokeReport, run_smoke
from sdenv.venv import create_venv, install

pytestmark = [pytest.mark.online, pytest.mark.slow, pytest.mark.timeout(1800)]

# docs/evidence.md#E-working-set: constraints diffusers<0.36, transformers<5 on torch 2.4.1
# import and work.
WORKING = [
    "torch==2.4.1",
    "xformers==0.0.28.post1",
    "diffusers==0.35.2",
    "transformers==4.57.6",
    "huggingface-hub==0.36.2",
    "tokenizers==0.22.2",
    "accelerate==1.15.0",
    "safetensors",
    "sentencepiece",
    "protobuf",
]
# docs/evidence.md#E-naive-resolve: what a naive `uv pip compile` picks for the same requirements.
NAIVE = [
    "torch==2.4.1",
    "xformers==0.0.28.post1",
    "diffusers==0.42.1",
    "transformers==5.23.0",
    "huggingface-hub==2.4.0",
    "accelerate",
    "safetensors",
    "sentencepiece",
    "protobuf",
]
# docs/evidence.md#E-xformers-cpp-lib: xformers 0.0.29.post1's _C.so was built for torch 2.5.1;
# forced next to 2.4.1.
ABI = [WORKING, ["--no-deps", "--reinstall-package", "xformers", "xformers==0.0.29.post1"]]


def _venv(root: Path, name: str, steps: Sequence[Sequence[str]]) -> Path:
    """Build (once) a venv with ``uv pip install`` of each step; reuse it while steps match."""
    recipe = [["--compile-bytecode", *step] for step in steps]
    key = hashlib.sha256(json.dumps(recipe).encode()).hexdigest()[:12]
    dest = root / f"{name}-{key}"
    python = dest / "bin" / "python"
    done = dest / ".sdenv-smoke-complete"
    with FileLock(str(root / f"{name}.lock")):
        if done.exists() and python.exists():
            return python
        for stale in root.glob(f"{name}-*"):
            if stale.is_dir():
                shutil.rmtree(stale)
        python = create_venv(dest, "3.11")
        # Byte-compiled like a pip-built image: otherwise (uv's default, and with
        # PYTHONDONTWRITEBYTECODE set) every check recompiles torch/diffusers from source.
        for step in recipe:
            install(python, step)
        done.write_text(json.dumps(recipe))
    return python


@pytest.fixture(scope="session")
def venv_root(request: pytest.FixtureRequest) -> Path:
    return Path(request.config.cache.mkdir("sdenv-smoke-venvs"))


@pytest.fixture(scope="session")
def working_report(venv_root: Path) -> SmokeReport:
    return run_smoke(_venv(venv_root, "working", [WORKING]), gpu=False)


@pytest.fixture(scope="session")
def naive_report(venv_root: Path) -> SmokeReport:
    return run_smoke(_venv(venv_root, "naive", [NAIVE]), gpu=False)


@pytest.fixture(scope="session")
def abi_report(venv_root: Path) -> SmokeReport:
    return run_smoke(_venv(venv_root, "abi", ABI), gpu=False)


def test_working_set_passes_on_cpu(working_report: SmokeReport) -> None:
    r = working_report
    assert r.ok, [(c.name, c.detail) for c in r.failures]
    assert r.facts["versions"]["torch"] == "2.4.1"
    status = {c.name: c.status for c in r.checks}
    cpu_checks = [
        "torch",
        "xformers",
        "diffusers",
        "transformers",
        "accelerate",
        "safetensors",
        "fp8-dtypes",
        "fp8-matmul",
        "sd3-forward",
    ]
    assert all(status[n] == "pass" for n in cpu_checks), status
    # GPU checks are listed as skipped with the reason, never as passed.
    for name in ("cuda", "scaled-mm", "xformers-attention"):
        assert status[name] == "skip"
        assert r.check(name).detail == "GPU checks off (--no-gpu)"
    xf = r.check("xformers")
    assert xf.facts["built_for_torch"] == "2.4.1+cu121"
    assert "C++ extension loaded" in xf.detail
    # torch 2.4.1: a plain cast past e4m3fn's range gives NaN (no inf); clamping saturates.
    e4m3 = r.check("fp8-dtypes").facts["float8_e4m3fn"]
    assert e4m3["plain_cast_4max_-4max_inf"] == ["nan", "nan", "nan"]
    assert e4m3["clamp_cast_4max_-4max_inf"] == ["448", "-448", "448"]
    assert r.culprits == []


def test_naive_set_blames_diffusers_and_transformers(naive_report: SmokeReport) -> None:
    r = naive_report
    assert not r.ok
    assert set(r.culprits) == {"diffusers", "transformers"}
    diffusers = r.check("diffusers").failure
    assert diffusers is not None and diffusers.kind == "too-new-for-torch"
    assert "torch.accelerator" in diffusers.hint
    transformers = r.check("transformers").failure
    assert transformers is not None and transformers.kind == "backend-disabled"
    assert "requires torch >= 2.6" in transformers.hint
    # What still works is said to work; what depends on the broken import is skipped.
    assert r.check("xformers").status == "pass"
    assert r.check("fp8-matmul").status == "pass"
    assert r.check("sd3-forward").detail == "needs diffusers (failed)"


def test_xformers_for_another_torch_is_an_abi_mismatch(abi_report: SmokeReport) -> None:
    r = abi_report
    assert not r.ok
    assert r.culprits == ["xformers"]
    xf = r.check("xformers")
    assert xf.failure is not None
    assert xf.failure.kind == "abi-mismatch"
    assert "undefined symbol" in xf.failure.error
    assert "built for torch 2.5.1+cu121 but torch 2.4.1+cu121 runs" in xf.failure.hint
    assert "install xformers==0.0.28.post1" in xf.failure.hint
    # Only xformers is broken: the rest of the working set still passes.
    assert [c.name for c in r.failures] == ["xformers"]
    assert r.check("sd3-forward").status == "pass"


def test_cli_exit_code_on_a_broken_env(naive_report: SmokeReport, venv_root: Path) -> None:
    from sdenv.cli import main

    assert main(["smoke", "--python", naive_report.python, "--no-gpu", "--check", "diffusers"]) == 1
