"""Build contexts from a lock: layers split from the lock, Dockerfiles rendered from the packaged
templates, labels and tags, the in-build installer. (The builds: test_image_docker.py, marker
`docker`; the templates in an installed wheel: test_image_package.py.)"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from conftest import REPO
from sdenv.image import context
from sdenv.image.errors import ImageError
from sdenv.lock.lockfile import Pin, make_lockfile
from sdenv.lock.spec import load_spec

H = "sha256:" + "a" * 64
ENVS = REPO / "envs"


def _lock(*names: str) -> object:
    return make_lockfile(
        [("env", "sd35-fp8-cu121"), ("python", "3.11")],
        [Pin(n, "1.0", (H,)) for n in names],
    )


def test_split_lock_puts_cuda_torch_deps_and_app_in_their_layers() -> None:
    lock = _lock(
        "torch",
        "triton",
        "nvidia-cublas-cu12",
        "cuda-bindings",
        "diffusers",
        "rich",
        "sdenv",
        "xformers",
        "numpy",
    )
    parts = context.split_lock(lock, ["Diffusers", "torch", "xformers"])  # type: ignore[arg-type]
    assert [p.name for p in parts.cuda] == ["cuda-bindings", "nvidia-cublas-cu12"]
    assert [p.name for p in parts.torch] == ["torch", "triton"]
    # xformers follows torch's version, so it sits with the stable dependencies, not the app.
    assert [p.name for p in parts.deps] == ["numpy", "rich", "xformers"]
    assert [p.name for p in parts.app] == ["diffusers"]
    # sdenv comes from the wheel of this checkout, never from the lock.
    assert all(
        p.name != "sdenv" for part in (parts.cuda, parts.torch, parts.deps, parts.app) for p in part
    )


def test_a_small_pin_change_leaves_every_lower_part_byte_identical() -> None:
    names = ["diffusers"]
    before = context.split_lock(_lock("torch", "nvidia-cublas-cu12", "numpy", "diffusers"), names)  # type: ignore[arg-type]
    after_lock = make_lockfile(
        [],
        [
            Pin("torch", "1.0", (H,)),
            Pin("nvidia-cublas-cu12", "1.0", (H,)),
            Pin("numpy", "1.0", (H,)),
            Pin("diffusers", "2.0", (H,)),
        ],
    )
    after = context.split_lock(after_lock, names)
    for part in ("cuda", "torch", "deps"):
        assert context.render_requirements(getattr(before, part)) == context.render_requirements(
            getattr(after, part)
        )
    assert context.render_requirements(before.app) != context.render_requirements(after.app)
    assert before.cuda_sha256 == after.cuda_sha256


def test_render_requirements_is_pip_hash_mode_syntax() -> None:
    text = context.render_requirements([Pin("torch", "2.4.1", (H, "sha256:" + "b" * 64))])
    assert text == f"torch==2.4.1 --hash={H} --hash=sha256:{'b' * 64}\n"
    assert context.render_requirements([]) == ""


def test_templates_fill_every_placeholder() -> None:
    base = context.render_template(
        "base.Dockerfile", {"BASE_IMAGE": "sdenv/base:bookworm", "TRANSPORT": "x", "LABELS": "a=b"}
    )
    assert "@" not in base.replace("@ signs", "")
    assert base.splitlines()[4] == "FROM sdenv/base:bookworm"
    assert "NVIDIA_DRIVER_CAPABILITIES=compute,utility" in base
    assert "NVIDIA_VISIBLE_DEVICES=all" in base
    values = {
        "CUDA_BASE": "c",
        "TRANSPORT": "t",
        "WHEEL": "sdenv-0.1.0-py3-none-any.whl",
        "LOCK_NAME": "l.txt",
        "ENV": "e",
        "PYTHON": "3.11",
        "LABELS": "a=b",
    }
    app = context.render_template("app.Dockerfile", values)
    lines = [ln for ln in app.splitlines() if ln and not ln.startswith("#")]
    runs = [ln for ln in lines if ln.startswith("RUN ")]
    # Heavy and stable first: a small pin change reuses every layer below its own.
    assert [r.rsplit("/", 1)[1] for r in runs] == ["torch.txt", "deps.txt", "app.txt", "sdenv.txt"]
    assert 'ENTRYPOINT ["sdenv"]' in lines
    assert 'CMD ["verify", "--lock", "/opt/sdenv/lock/l.txt"]' in lines
    assert "USER sdenv" in lines
    # No secret-bearing build argument: only the transport address is an ARG.
    assert [ln for ln in lines if ln.startswith("ARG ")] == ["ARG SDENV_TRANSPORT=t"]


def test_template_and_values_out_of_step_is_an_error() -> None:
    with pytest.raises(ImageError, match=r"placeholders \['LABELS'\] have no value"):
        context.render_template("base.Dockerfile", {"BASE_IMAGE": "b", "TRANSPORT": "t"})


def test_labels_render_as_one_quoted_instruction() -> None:
    text = context.render_labels({"b": 'say "hi"', "a": "x >= 1"})
    assert text == '"a"="x >= 1" \\\n    "b"="say \\"hi\\""'


def test_tags_and_slugs() -> None:
    assert context.os_slug("sdenv/base:bookworm") == "bookworm"
    assert context.os_slug("python:3.11-slim-bookworm") == "python-3.11-slim-bookworm"
    spec = load_spec("sd35-fp8-cu121", ENVS)
    parts = context.split_lock(_lock("nvidia-cublas-cu12"))  # type: ignore[arg-type]
    tag = context.cuda_base_tag(spec, "3.11", "sdenv/base:bookworm", parts)
    assert tag == f"sdenv/cuda-base:cu121-py3.11-bookworm-{parts.cuda_sha256[:8]}"
    target = spec.targets[1]
    assert context.app_tags(target, "f" * 64) == (
        "sdenv/sd35-fp8-cu121:py3.11",
        "sdenv/sd35-fp8-cu121:py3.11-ffffffffffff",
    )


def test_app_labels_carry_env_lock_torch_cuda_python_fp8() -> None:
    spec = load_spec("sd35-fp8-cu121", ENVS)
    lock = make_lockfile([], [Pin("torch", "2.4.1", (H,))])
    labels = context.app_labels(spec, spec.targets[1], lock, "d" * 64, "sdenv/base:bookworm")
    assert labels["io.sdenv.env"] == "sd35-fp8-cu121"
    assert labels["io.sdenv.lock.sha256"] == "d" * 64
    assert labels["io.sdenv.torch"] == "2.4.1"
    assert labels["io.sdenv.cuda"] == "cu121"
    assert labels["io.sdenv.python"] == "3.11"
    assert labels["io.sdenv.fp8"] == spec.fp8 == "emulated"
    assert labels["org.opencontainers.image.base.name"] == "sdenv/base:bookworm"


def test_install_helper_skips_an_empty_part(tmp_path: Path) -> None:
    req = tmp_path / "empty.txt"
    req.write_text("# nothing\n\n")
    proc = subprocess.run(
        [sys.executable, str(context.TEMPLATES / "sdenv-install"), str(req)],
        capture_output=True,
        text=True,
        env={"SDENV_TRANSPORT": ""},
        check=False,
    )
    assert proc.returncode == 0
    assert "pins nothing; skipped" in proc.stdout
