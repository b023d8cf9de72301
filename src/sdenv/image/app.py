"""``sdenv image build``: lock -> CUDA base -> app image -> smoke inside -> tags.

The app image installs torch, then the rest of the lock (their dependencies, then the libraries
the env names, whose pins move most), then sdenv itself, each from the lock alone. Its tag moves
only after ``sdenv smoke --json`` passed inside the image; the smoke report, a full build log and
the SBOM of the lock are kept under ``build/images/<target>/``.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from sdenv._cleanup import throwaway_dir
from sdenv._fs import write_atomic
from sdenv._json import dumps
from sdenv.image.base import DEFAULT_OUT_DIR, build_cuda_base
from sdenv.image.build import BuildOutcome, run_build
from sdenv.image.context import (
    LockParts,
    app_labels,
    app_tags,
    build_sdenv_wheel,
    sha256_file,
    split_lock,
    write_app_context,
)
from sdenv.image.engine import (
    connect,
    engine_has_gpu,
    history,
    image_id_or_none,
    remove_if_untagged,
    short_id,
)
from sdenv.image.errors import PythonMismatch, SmokeFailed
from sdenv.image.inputs import (
    check_lock_fresh,
    choose_base,
    ensure_base_present,
    image_python,
    resolve_target,
)
from sdenv.image.smoke_run import SmokeOutcome, run_smoke
from sdenv.image.transport import DEFAULT_TRANSPORT, Transport, serve_transport
from sdenv.lock.lockfile import DEFAULT_LOCK_DIR, Lockfile, read_lockfile
from sdenv.lock.spec import DEFAULT_ENVS_DIR, EnvSpec, Target, load_spec
from sdenv.supply.sbom import sbom_path, write_sbom


@dataclass(frozen=True)
class BuildRequest:
    env: str | Path
    python: str | None = None
    base: str | None = None  # OS base image; None: sdenv/base:bookworm if present, else python-slim
    lock_path: Path | None = None
    lock_dir: Path = DEFAULT_LOCK_DIR
    envs_dir: Path = DEFAULT_ENVS_DIR
    out_dir: Path = DEFAULT_OUT_DIR
    transport: Transport = DEFAULT_TRANSPORT
    gpu: bool = False
    smoke_command: tuple[str, ...] = ("smoke", "--json")
    sdenv_wheel: Path | None = None  # None: built from the source checkout sdenv runs from
    check_lock: bool = True
    nocache: bool = False  # cold build: every step runs again (benchmarks)
    repository: str | None = None  # default sdenv/<env>; benchmarks tag elsewhere


@dataclass
class ImageResult:
    env: str
    target: str
    image_id: str
    tags: list[str]
    tagged: bool
    base_image: str
    cuda_base: str
    lock: str
    lock_sha256: str
    labels: dict[str, str]
    size: int
    layers: int
    build_seconds: float
    cuda_base_seconds: float
    cuda_base_cached: bool
    steps: int
    cached_steps: int
    new_layer_bytes: int
    smoke: SmokeOutcome
    log: str
    summary: str
    sbom: str  # CycloneDX of exactly what the image installed (its lock)
    history: list[dict[str, Any]] = field(default_factory=list)


@dataclass(frozen=True)
class _Plan:
    """Everything checked and named before the first build step runs."""

    spec: EnvSpec
    target: Target
    base: str
    lock_path: Path
    lock: Lockfile
    lock_sha256: str
    parts: LockParts
    out_dir: Path
    tags: list[str]
    labels: dict[str, str]


@dataclass(frozen=True)
class _Built:
    cuda_tag: str
    cuda: BuildOutcome
    app: BuildOutcome
    smoke: SmokeOutcome


def build_image(
    req: BuildRequest,
    client: Any | None = None,
    on_step: Callable[[str], None] | None = None,
) -> ImageResult:
    """Lock -> CUDA base -> app image -> smoke inside -> tags. Raises ImageError on any failure;
    a failure leaves every tag where it was."""
    spec = load_spec(req.env, req.envs_dir)
    client = client or connect()
    plan = _plan(req, spec, client)
    built = _build_and_smoke(req, plan, client, on_step)
    if built.smoke.passed:
        _move_tags(client, plan.tags, built.app.image_id)
    result = _result(plan, built, client)
    write_atomic(Path(result.summary), dumps(result) + "\n")
    if not built.smoke.passed:
        raise SmokeFailed(
            f"smoke test failed inside {built.app.image_id[:19]} ({built.smoke.failure}); "
            f"no tag moved; report and log in {plan.out_dir}"
        )
    return result


def _plan(req: BuildRequest, spec: EnvSpec, client: Any) -> _Plan:
    """The base, its Python's lock target and that lock, checked; the tags and labels to give."""
    base = choose_base(client, req.base, req.python)
    ensure_base_present(client, base)
    base_python = image_python(client, base)
    target = resolve_target(spec, req.python, base_python, base)
    lock_path = req.lock_path or target.lockfile(req.lock_dir)
    lock = read_lockfile(lock_path)
    lock_sha256 = sha256_file(lock_path)
    lock_python = lock.get("python")
    if lock_python and lock_python != target.python:
        raise PythonMismatch(
            f"{lock_path}: locked for Python {lock_python}, but the image has {target.python}; "
            "use the lock of the image's Python"
        )
    if req.check_lock:
        check_lock_fresh(spec, lock)
    return _Plan(
        spec=spec,
        target=target,
        base=base,
        lock_path=lock_path,
        lock=lock,
        lock_sha256=lock_sha256,
        parts=split_lock(lock, spec.requirements),
        out_dir=req.out_dir / target.slug,
        tags=list(app_tags(target, lock_sha256, req.repository)),
        labels=app_labels(spec, target, lock, lock_sha256, base),
    )


def _build_and_smoke(
    req: BuildRequest, plan: _Plan, client: Any, on_step: Callable[[str], None] | None
) -> _Built:
    """CUDA base, app image (untagged), smoke run; the log goes in place only when complete."""
    plan.out_dir.mkdir(parents=True, exist_ok=True)
    target = plan.target
    with (
        throwaway_dir("sdenv-ctx-") as ctx,
        serve_transport(req.transport.with_spec_indexes(plan.spec)) as addr,
    ):
        partial = plan.out_dir / ".build.log.partial"
        with partial.open("w", encoding="utf-8") as log:
            log.write(
                f"# sdenv image build {target.slug} from {plan.lock_path} ({plan.lock_sha256})\n"
            )
            cuda_tag, cuda = build_cuda_base(
                client,
                plan.spec,
                target.python,
                plan.base,
                plan.parts,
                addr,
                log,
                on_step,
                nocache=req.nocache,
            )
            wheel = req.sdenv_wheel or build_sdenv_wheel(ctx / "dist")
            write_app_context(
                ctx,
                cuda_tag=cuda_tag,
                target=target,
                parts=plan.parts,
                lock_path=plan.lock_path,
                wheel=wheel,
                labels=plan.labels,
            )
            app = run_build(
                client, ctx, {"SDENV_TRANSPORT": addr}, log, on_step, nocache=req.nocache
            )
            smoke_gpu = req.gpu and engine_has_gpu(client)
            command = [*req.smoke_command, *(["--gpu"] if smoke_gpu else [])]
            smoke = run_smoke(client, app.image_id, command, smoke_gpu)
            log.write(f"# smoke {'passed' if smoke.passed else 'FAILED'}: exit {smoke.exit_code}\n")
            log.write(smoke.output_tail + "\n")
        os.replace(partial, plan.out_dir / "build.log")
    return _Built(cuda_tag, cuda, app, smoke)


def _move_tags(client: Any, tags: list[str], image_id: str) -> None:
    """Give ``image_id`` every tag; the image the moving tag held before goes if nothing else
    holds it."""
    previous = image_id_or_none(client, tags[0])
    image = client.images.get(image_id)
    for ref in tags:
        repo, _, tagname = ref.rpartition(":")
        image.tag(repo, tagname)
    if previous and previous != image_id:
        remove_if_untagged(client, previous)


def _result(plan: _Plan, built: _Built, client: Any) -> ImageResult:
    """The summary of a build: sizes, cache use, the bytes of new layers, the smoke; writes the
    SBOM of the lock beside it."""
    app, cuda = built.app, built.cuda
    image = client.images.get(app.image_id)
    layers = history(client, app.image_id)
    new_ids = {s.image_id for s in app.steps if s.image_id and not s.cached}
    new_bytes = sum(h["size"] for h in layers if h["id"] and short_id(h["id"]) in new_ids)
    return ImageResult(
        env=plan.target.env,
        target=plan.target.slug,
        image_id=app.image_id,
        tags=plan.tags,
        tagged=built.smoke.passed,
        base_image=plan.base,
        cuda_base=built.cuda_tag,
        lock=str(plan.lock_path),
        lock_sha256=plan.lock_sha256,
        labels=plan.labels,
        size=int(image.attrs.get("Size", 0)),
        layers=len(image.attrs.get("RootFS", {}).get("Layers", [])),
        build_seconds=round(app.seconds, 1),
        cuda_base_seconds=round(cuda.seconds, 1),
        cuda_base_cached=cuda.cached_steps >= len(cuda.steps) - 1,
        steps=len(app.steps),
        cached_steps=app.cached_steps,
        new_layer_bytes=new_bytes,
        smoke=built.smoke,
        log=str(plan.out_dir / "build.log"),
        summary=str(plan.out_dir / "summary.json"),
        sbom=str(write_sbom(plan.lock_path, sbom_path(plan.out_dir, plan.lock_path))),
        history=layers,
    )
