"""Build contexts from a lock: the lock split into layers, Dockerfiles rendered from templates.

Pure except for writing the context folder. The templates and the in-build installer ship inside
the package (``sdenv/image/docker/``) and are read with importlib.resources, so an installed sdenv
builds images without a source checkout.
"""

from __future__ import annotations

import functools
import hashlib
import json
import re
import shutil
import subprocess
import sys
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from importlib.resources import files
from pathlib import Path
from typing import TYPE_CHECKING

from packaging.utils import canonicalize_name

from sdenv import __version__
from sdenv.image.errors import ImageError
from sdenv.image.transport import TRANSPORT_PORT
from sdenv.lock.lockfile import Lockfile, Pin
from sdenv.lock.spec import EnvSpec, Target

if TYPE_CHECKING:
    if sys.version_info >= (3, 11):
        from importlib.resources.abc import Traversable
    else:
        from importlib.abc import Traversable

LABEL_PREFIX = "io.sdenv"
CUDA_BASE_REPO = "sdenv/cuda-base"
# The Dockerfile templates and sdenv-install (run inside a build), shipped as package data.
TEMPLATES: Traversable = files("sdenv.image") / "docker"
# The source checkout this module runs from, when it does (an installed wheel has none).
REPO_ROOT = Path(__file__).resolve().parents[3]
_PLACEHOLDER = re.compile(r"@([A-Z_]+)@")
# Torch and what only torch needs; heavy and stable, so it gets its own layer.
_TORCH_LAYER = frozenset({"torch", "triton", "pytorch-triton"})


@dataclass(frozen=True)
class LockParts:
    cuda: tuple[Pin, ...]
    torch: tuple[Pin, ...]
    deps: tuple[Pin, ...]
    app: tuple[Pin, ...]

    @property
    def cuda_sha256(self) -> str:
        return hashlib.sha256(render_requirements(self.cuda).encode()).hexdigest()


def split_lock(lock: Lockfile, app_names: Iterable[str] = ()) -> LockParts:
    """nvidia-*/cuda-* wheels (the CUDA base), torch and triton, their dependencies, the app.

    ``app_names`` are the libraries the env names (diffusers, transformers, ...): the pins that
    move most get the last layer, so bumping one rebuilds only it (torch's own dependencies and
    xformers stay in ``deps``). sdenv is left out: the image installs the wheel of this checkout.
    """
    app_set = {canonicalize_name(n) for n in app_names} - _TORCH_LAYER - {"xformers"}
    cuda = tuple(p for p in lock.pins if p.name.startswith(("nvidia-", "cuda-")))
    torch = tuple(p for p in lock.pins if p.name in _TORCH_LAYER)
    others = [p for p in lock.pins if p not in cuda and p not in torch and p.name != "sdenv"]
    app = tuple(p for p in others if p.name in app_set)
    deps = tuple(p for p in others if p.name not in app_set)
    return LockParts(cuda, torch, deps, app)


def render_requirements(pins: Sequence[Pin]) -> str:
    """A pip requirements file for a part of a lock; deterministic, so layers cache by content."""
    lines = []
    for pin in sorted(pins, key=lambda p: p.name):
        hashes = " ".join(f"--hash={h}" for h in pin.hashes)
        lines.append(f"{pin.name}=={pin.version} {hashes}")
    return "".join(line + "\n" for line in lines)


def render_template(
    name: str, values: Mapping[str, str], templates: Traversable = TEMPLATES
) -> str:
    """Fill ``@NAME@`` placeholders of ``docker/<name>``; an unfilled or unused one is a bug."""
    text = (templates / name).read_text(encoding="utf-8")
    wanted = set(_PLACEHOLDER.findall(text))
    missing = wanted - set(values)
    extra = set(values) - wanted
    if missing or extra:
        raise ImageError(
            f"{templates / name}: placeholders {sorted(missing)} have no value and values "
            f"{sorted(extra)} have no placeholder; keep the template and sdenv.image in step"
        )
    return _PLACEHOLDER.sub(lambda m: values[m.group(1)], text)


def render_labels(labels: Mapping[str, str]) -> str:
    """One LABEL instruction (one build step): ``"k"="v"`` pairs, JSON-quoted, which the
    Dockerfile parser reads as double-quoted strings."""
    return " \\\n    ".join(f"{json.dumps(k)}={json.dumps(v)}" for k, v in sorted(labels.items()))


def os_slug(base_image: str) -> str:
    """``sdenv/base:bookworm`` -> ``bookworm``; ``python:3.11-slim-bookworm`` -> same, sanitised."""
    if base_image.startswith("sdenv/base:"):
        return base_image.split(":", 1)[1]
    return re.sub(r"[^a-z0-9.]+", "-", base_image.lower()).strip("-")


def cuda_base_tag(spec: EnvSpec, python: str, base_image: str, parts: LockParts) -> str:
    """One tag per (CUDA variant, Python, OS) and CUDA pin set: two locks of one variant that pin
    the same nvidia-* wheels share it; different pins never overwrite each other's base."""
    return f"{CUDA_BASE_REPO}:{spec.cuda}-py{python}-{os_slug(base_image)}-{parts.cuda_sha256[:8]}"


def app_tags(target: Target, lock_sha256: str, repo: str | None = None) -> tuple[str, str]:
    """A moving tag per target and an immutable one per lock content."""
    repo = repo or f"sdenv/{target.env}"
    return f"{repo}:py{target.python}", f"{repo}:py{target.python}-{lock_sha256[:12]}"


def app_labels(
    spec: EnvSpec, target: Target, lock: Lockfile, lock_sha256: str, base_image: str
) -> dict[str, str]:
    torch = lock.pin("torch")
    labels = {
        "org.opencontainers.image.title": f"sdenv {target.env}",
        "org.opencontainers.image.description": spec.description or target.env,
        "org.opencontainers.image.version": __version__,
        "org.opencontainers.image.source": "https://github.com/sdenv/sdenv",
        "org.opencontainers.image.licenses": "Apache-2.0",
        "org.opencontainers.image.base.name": base_image,
        f"{LABEL_PREFIX}.env": target.env,
        f"{LABEL_PREFIX}.target": target.slug,
        f"{LABEL_PREFIX}.lock.sha256": lock_sha256,
        f"{LABEL_PREFIX}.spec.sha256": spec.sha256,
        f"{LABEL_PREFIX}.torch": torch.version if torch else "none",
        f"{LABEL_PREFIX}.cuda": spec.cuda,
        f"{LABEL_PREFIX}.python": target.python,
        f"{LABEL_PREFIX}.fp8": spec.fp8,
    }
    revision = _git_revision()
    if revision:
        labels["org.opencontainers.image.revision"] = revision
    return labels


def _git_revision() -> str | None:
    try:
        proc = subprocess.run(
            ["git", "-C", str(REPO_ROOT), "rev-parse", "HEAD"],
            capture_output=True,
            text=True,
            timeout=10,
        )
    except (OSError, subprocess.TimeoutExpired):
        return None
    return proc.stdout.strip() if proc.returncode == 0 else None


def build_sdenv_wheel(dest: Path) -> Path:
    """A wheel of this checkout (uv build, hatchling: reproducible timestamps)."""
    from sdenv.venv import run_uv

    if not (REPO_ROOT / "pyproject.toml").is_file():
        raise ImageError(
            "sdenv's source tree is not beside this install; pass an sdenv wheel "
            "(--sdenv-wheel FILE)"
        )
    run_uv(["build", "--wheel", "--out-dir", str(dest), str(REPO_ROOT)])
    wheels = sorted(dest.glob("sdenv-*.whl"))
    if not wheels:
        raise ImageError(f"uv build made no sdenv wheel in {dest}")
    return wheels[-1]


def sha256_file(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as fh:
        for block in iter(functools.partial(fh.read, 1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def normalise_modes(ctx: Path) -> None:
    """COPY keeps a context file's mode, and the image runs as a non-root user: a 0600 file (as
    atomic writes leave lockfiles) would be unreadable there. 0644 also keeps the cache key the
    same however the checkout was made."""
    for path in ctx.rglob("*"):
        path.chmod(0o755 if path.is_dir() else 0o644)


def write_cuda_context(ctx: Path, base: str, labels: Mapping[str, str], parts: LockParts) -> None:
    """The CUDA base's context: its Dockerfile, sdenv-install and the nvidia-* pins."""
    values = {
        "BASE_IMAGE": base,
        "TRANSPORT": f"127.0.0.1:{TRANSPORT_PORT}",
        "LABELS": render_labels(labels),
    }
    (ctx / "Dockerfile").write_text(render_template("base.Dockerfile", values))
    (ctx / "sdenv-install").write_bytes((TEMPLATES / "sdenv-install").read_bytes())
    (ctx / "cuda.txt").write_text(render_requirements(parts.cuda))
    normalise_modes(ctx)


def write_app_context(
    ctx: Path,
    *,
    cuda_tag: str,
    target: Target,
    parts: LockParts,
    lock_path: Path,
    wheel: Path,
    labels: Mapping[str, str],
) -> None:
    """The app image's context: its Dockerfile, a requirements file per layer, the sdenv wheel
    (hash-pinned like every other install) and the lock itself."""
    shutil.copy(wheel, ctx / wheel.name)
    (ctx / "torch.txt").write_text(render_requirements(parts.torch))
    (ctx / "deps.txt").write_text(render_requirements(parts.deps))
    (ctx / "app.txt").write_text(render_requirements(parts.app))
    (ctx / "sdenv.txt").write_text(
        f"sdenv @ file:///opt/sdenv/wheels/{wheel.name} --hash=sha256:{sha256_file(wheel)}\n"
    )
    shutil.copy(lock_path, ctx / "lock.txt")
    values = {
        "CUDA_BASE": cuda_tag,
        "TRANSPORT": f"127.0.0.1:{TRANSPORT_PORT}",
        "WHEEL": wheel.name,
        "LOCK_NAME": lock_path.name,
        "ENV": target.env,
        "PYTHON": target.python,
        "LABELS": render_labels(labels),
    }
    (ctx / "Dockerfile").write_text(render_template("app.Dockerfile", values))
    normalise_modes(ctx)
