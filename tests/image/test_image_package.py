"""An installed sdenv builds images without a source checkout: the Dockerfile templates and the
in-build installer ship as package data (sdist and wheel) and are found through importlib.resources.

The wheel and sdist are built here offline (``uv build --no-build-isolation`` with this venv's
hatchling) and the wheel is installed into a bare folder with uv, away from the checkout.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tarfile
import zipfile
from pathlib import Path

import pytest

from conftest import REPO
from sdenv.venv import run_uv

pytestmark = pytest.mark.slow

SHIPPED = ("app.Dockerfile", "base.Dockerfile", "sdenv-install")

# Runs on the installed copy: render both templates, write a CUDA base context, and ask for a
# wheel of the checkout that is not there.
PROBE = """
import json, sys, tempfile
from pathlib import Path
import sdenv
from sdenv.image import context
from sdenv.image.errors import ImageError
from sdenv.lock.lockfile import Pin, make_lockfile

lock = make_lockfile([], [Pin("nvidia-cublas-cu12", "1.0", ("sha256:" + "a" * 64,))])
parts = context.split_lock(lock)
ctx = Path(tempfile.mkdtemp())
context.write_cuda_context(ctx, "sdenv/base:bookworm", {"a": "b"}, parts)
app = context.render_template("app.Dockerfile", {k: "x" for k in
    ("CUDA_BASE", "TRANSPORT", "WHEEL", "LOCK_NAME", "ENV", "PYTHON", "LABELS")})
try:
    context.build_sdenv_wheel(ctx / "dist")
    wheel_error = ""
except ImageError as exc:
    wheel_error = str(exc)
print(json.dumps({
    "sdenv": sdenv.__file__,
    "templates": str(context.TEMPLATES),
    "context": sorted(p.name for p in ctx.iterdir()),
    "base_from": (ctx / "Dockerfile").read_text().splitlines()[4],
    "app_runs": sum(line.startswith("RUN ") for line in app.splitlines()),
    "wheel_error": wheel_error,
}))
"""


@pytest.fixture(scope="module")
def dist(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("dist")
    build = ["build", "--wheel", "--sdist", "--no-build-isolation", "--offline"]
    run_uv([*build, "--python", sys.executable, "--out-dir", str(out), str(REPO)])
    return out


def test_sdist_and_wheel_carry_the_templates(dist: Path) -> None:
    (sdist,) = dist.glob("sdenv-*.tar.gz")
    with tarfile.open(sdist) as tar:
        names = {n.split("/", 1)[1] for n in tar.getnames() if "/" in n}
    assert {f"src/sdenv/image/docker/{f}" for f in SHIPPED} <= names
    (wheel,) = dist.glob("sdenv-*.whl")
    with zipfile.ZipFile(wheel) as whl:
        assert {f"sdenv/image/docker/{f}" for f in SHIPPED} <= set(whl.namelist())


def test_an_installed_copy_renders_contexts_from_its_own_templates(
    dist: Path, tmp_path: Path
) -> None:
    (wheel,) = dist.glob("sdenv-*.whl")
    site = tmp_path / "site"
    install = ["pip", "install", "--offline", "--no-deps", "--target", str(site)]
    run_uv([*install, "--python", sys.executable, str(wheel)])
    # The installed copy first on the path; sdenv's dependencies come from this venv.
    env = {**os.environ, "PYTHONPATH": str(site)}
    proc = subprocess.run(
        [sys.executable, "-c", PROBE],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        check=False,
    )
    assert proc.returncode == 0, proc.stderr
    got = json.loads(proc.stdout)
    assert Path(got["sdenv"]).is_relative_to(site)
    assert Path(got["templates"]) == site / "sdenv" / "image" / "docker"
    assert got["context"] == ["Dockerfile", "cuda.txt", "sdenv-install"]
    assert got["base_from"] == "FROM sdenv/base:bookworm"
    assert got["app_runs"] == 4
    # No checkout beside the install: the app build asks for a wheel instead of failing later.
    assert "pass an sdenv wheel (--sdenv-wheel FILE)" in got["wheel_error"]
