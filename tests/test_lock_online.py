"""`sdenv lock` on real PyPI wheels (torch 2.4.1 + CUDA 12.1 libraries, ~3.5 GB, uv-cached).

Runs in CI through `make test-online`. It proves what the offline suite can only mimic: the
default env's lock imports and computes (the full smoke), and the naive set
(docs/evidence.md#E-naive-resolve) does not and is not written.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from packaging.version import Version

from sdenv import lock as core
from sdenv.lock.lockfile import read_lockfile
from sdenv.lock.spec import DEFAULT_ENV, load_spec
from sdenv.venv import find_python

pytestmark = [pytest.mark.online, pytest.mark.timeout(1800)]

# docs/evidence.md#E-naive-resolve: what a plain resolve gets for the SD3.5 stack on torch 2.4.
NAIVE = """\
[env]
name = "naive"
pythons = ["3.11"]
platforms = ["linux_x86_64"]
cuda = "cu121"
compute_capabilities = ["8.9"]

[[indexes]]
name = "pypi"
url = "https://pypi.org/simple"

[requirements]
torch = ">=2.4,<2.5"
xformers = ""
diffusers = ">=0.31"
transformers = ""
accelerate = ""
safetensors = ""
sentencepiece = ""
protobuf = ""
"""


def test_default_env_locks_and_proves_on_real_wheels(repo: Path, tmp_path: Path) -> None:
    spec = load_spec(DEFAULT_ENV, repo / "envs")
    results = core.lock_env(spec, core.LockOptions(lock_dir=tmp_path))
    assert results and all(r.status == "written" for r in results), [r.message for r in results]
    for r in results:
        lock = read_lockfile(r.path)
        expected = "passed" if find_python(r.target.python) else "unverified"
        assert (lock.get("proof") or "").startswith(expected), lock.get("proof")
        pins = lock.versions()
        assert pins["torch"] == "2.4.1" and pins["xformers"] == "0.0.28.post1"
        assert pins["nvidia-cuda-runtime-cu12"] == "12.1.105"
        assert Version(pins["diffusers"]) < Version("0.36") and pins["transformers"].startswith(
            "4."
        )
        assert {"packaging", "rich"} <= set(pins)
    # The committed locks are what this command makes (make lock-check in CI).
    fresh = core.check_env(spec, core.LockOptions(lock_dir=repo / "lockfiles"))
    assert all(r.status == "fresh" for r in fresh), [r.message for r in fresh]


def test_naive_facts3_set_is_caught_and_not_written(tmp_path: Path) -> None:
    if find_python("3.11") is None:
        pytest.skip("needs Python 3.11 for the import proof")
    path = tmp_path / "naive.toml"
    path.write_text(NAIVE)
    spec = load_spec(path)
    result = core.lock_target(spec, spec.targets[0], core.LockOptions(lock_dir=tmp_path, rules=()))
    assert Version(result.pins["diffusers"]) >= Version("0.36") and result.pins[
        "transformers"
    ].startswith("5.")
    assert result.status == "failed" and result.proof.status == "failed"
    culprits = {c for f in result.proof.failures for c in f.culprits}
    assert {"diffusers", "transformers"} <= culprits
    assert "torch.accelerator" in result.message or "accelerator" in result.message
    assert not result.path.exists()
