"""Container images from a lock, built with the Docker SDK and smoke-tested before they are tagged.

Three images stack up:

* an OS base with Python: ``python:X.Y-slim-bookworm`` where a registry is reachable, or
  ``sdenv/base:bookworm`` made here from Debian packages (debootstrap + import), with no registry;
* a CUDA base per (CUDA variant, Python, OS): a venv holding the nvidia-* wheels the lock pins,
  plus the NVIDIA container environment, shared by every app image of that CUDA;
* an app image per lock target: torch, then the rest of the lock (their dependencies, then the
  libraries the env names, whose pins move most), then sdenv itself.

Every install comes from the lock (``--require-hashes --no-deps --only-binary :all:``), so a build
resolves nothing. Builds and runs use the host network only: bridge networks need private address
ranges that some hosts forbid. The app tag moves only after ``sdenv smoke --json`` passed inside the
image; the smoke report and a full build log are kept under ``build/images/``.

``docker`` is imported inside functions: the CLI imports this module where docker-py is absent.
"""

from __future__ import annotations

import contextlib
import functools
import hashlib
import http.server
import json
import os
import platform
import re
import shutil
import socketserver
import subprocess
import tempfile
import threading
import time
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TextIO

from packaging.utils import canonicalize_name

from sdenv import __version__, _cleanup
from sdenv._cleanup import throwaway_dir
from sdenv._fs import write_atomic
from sdenv._json import dumps
from sdenv.errors import SdenvError, UsageError
from sdenv.lock.lockfile import DEFAULT_LOCK_DIR, Lockfile, Pin, read_lockfile
from sdenv.lock.spec import DEFAULT_ENVS_DIR, EnvSpec, Target, load_spec
from sdenv.sbom import sbom_path, write_sbom

BOOTSTRAP_TAG = "sdenv/base:bookworm"
BOOTSTRAP_SUITE = "bookworm"
BOOTSTRAP_MIRROR = "http://deb.debian.org/debian"
BOOTSTRAP_PACKAGES = ("python3", "python3-venv", "ca-certificates")
CUDA_BASE_REPO = "sdenv/cuda-base"
# Fixed so that the ARG value, part of the classic builder's cache key, stays the same between
# builds; another port is used (and the cache missed) only when this one is taken.
TRANSPORT_PORT = 47311
LABEL_PREFIX = "io.sdenv"
DEFAULT_OUT_DIR = Path("build/images")
_REPO_ROOT = Path(__file__).resolve().parents[2]
_DOCKER_DIR = _REPO_ROOT / "docker"
_PLACEHOLDER = re.compile(r"@([A-Z_]+)@")
# Torch and what only torch needs; heavy and stable, so it gets its own layer.
_TORCH_LAYER = frozenset({"torch", "triton", "pytorch-triton"})


class ImageError(SdenvError):
    """An image could not be built, tested or tagged; the message says why and the fix."""


class EngineUnreachable(ImageError):
    pass


class BaseImageMissing(ImageError):
    pass


class PythonMismatch(UsageError):
    pass


class LockStale(UsageError):
    pass


class SmokeFailed(ImageError):
    pass


# -- engine --------------------------------------------------------------------------------------


def engine_address() -> str:
    return os.environ.get("DOCKER_HOST") or "unix:///var/run/docker.sock"


def connect(timeout: int = 600) -> Any:
    """A docker-py client for ``DOCKER_HOST`` (or the default socket) that answered a ping."""
    from docker.client import DockerClient
    from docker.errors import DockerException

    where = engine_address()
    try:
        client = DockerClient.from_env(timeout=timeout)
        client.ping()
    except DockerException as exc:
        reason = str(exc).splitlines()[0][:160] if str(exc) else type(exc).__name__
        raise EngineUnreachable(
            f"Docker engine not reachable at {where} ({reason}); start it with "
            "`scripts/docker-engine.sh start` and export the DOCKER_HOST it prints"
        ) from None
    return client


# -- lock splitting and rendering (pure) ---------------------------------------------------------


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


def render_template(name: str, values: Mapping[str, str], docker_dir: Path = _DOCKER_DIR) -> str:
    """Fill ``@NAME@`` placeholders of ``docker/<name>``; an unfilled or unused one is a bug."""
    text = (docker_dir / name).read_text(encoding="utf-8")
    wanted = set(_PLACEHOLDER.findall(text))
    missing = wanted - set(values)
    extra = set(values) - wanted
    if missing or extra:
        raise ImageError(
            f"{docker_dir / name}: placeholders {sorted(missing)} have no value and values "
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


def default_base(python: str) -> str:
    return f"python:{python}-slim-bookworm"


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
            ["git", "-C", str(_REPO_ROOT), "rev-parse", "HEAD"],
            capture_output=True,
            text=True,
            timeout=10,
        )
    except (OSError, subprocess.TimeoutExpired):
        return None
    return proc.stdout.strip() if proc.returncode == 0 else None


# -- transport: CA bundle and index settings reach RUN steps without entering a layer ------------


@dataclass(frozen=True)
class Transport:
    ca_bundle: Path | None = None
    index_url: str | None = None
    extra_index_urls: tuple[str, ...] = ()

    def files(self) -> dict[str, bytes]:
        out: dict[str, bytes] = {}
        if self.ca_bundle is not None:
            try:
                out["ca.pem"] = self.ca_bundle.read_bytes()
            except OSError as exc:
                raise UsageError(
                    f"{self.ca_bundle}: cannot read the CA bundle ({exc.strerror}); "
                    "pass a readable PEM file to --ca-bundle"
                ) from None
        conf = ["[global]"]
        if self.index_url:
            conf.append(f"index-url = {self.index_url}")
        if self.extra_index_urls:
            conf.append("extra-index-url = " + " ".join(self.extra_index_urls))
        if len(conf) > 1:
            out["pip.conf"] = ("\n".join(conf) + "\n").encode()
        return out

    def with_spec_indexes(self, spec: EnvSpec) -> Transport:
        """The env's [[indexes]] unless index URLs were given: the lock was resolved there."""
        if self.index_url or not spec.indexes:
            return self
        first, *others = spec.indexes
        extras = self.extra_index_urls or tuple(i.url for i in others)
        return Transport(self.ca_bundle, first.url, extras)


@contextlib.contextmanager
def serve_transport(transport: Transport) -> Iterator[str]:
    """Serve the transport files on 127.0.0.1 for the duration of a build; yields host:port.

    sdenv builds take turns (a file lock) so that each gets the fixed port, and with it the same
    ``SDENV_TRANSPORT`` value, which the classic builder hashes into the cache key of every RUN.
    """
    from filelock import FileLock

    files = transport.files()
    turn = FileLock(str(Path(tempfile.gettempdir()) / f"sdenv-image-{TRANSPORT_PORT}.lock"))
    with turn, _serve(files) as addr:
        yield addr


@contextlib.contextmanager
def _serve(files: Mapping[str, bytes]) -> Iterator[str]:

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            body = files.get(self.path.lstrip("/"))
            if body is None:
                self.send_error(404)
                return
            self.send_response(200)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, format: str, *args: Any) -> None:
            pass

    class Server(socketserver.ThreadingMixIn, http.server.HTTPServer):
        daemon_threads = True
        allow_reuse_address = True

    try:
        server = Server(("127.0.0.1", TRANSPORT_PORT), Handler)
    except OSError:
        server = Server(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()


# -- build plumbing ------------------------------------------------------------------------------


@dataclass
class BuildStep:
    text: str
    cached: bool = False
    image_id: str | None = None


@dataclass
class BuildOutcome:
    image_id: str
    steps: list[BuildStep]
    seconds: float

    @property
    def cached_steps(self) -> int:
        return sum(s.cached for s in self.steps)


_STEP_RE = re.compile(r"^Step (\d+)/(\d+) : (.*)$")
_ANSI_RE = re.compile(r"\x1b\[[0-9;]*m")
_ID_RE = re.compile(r"^ ---> ([0-9a-f]{12,64})$")


def run_build(
    client: Any,
    context: Path,
    buildargs: Mapping[str, str],
    log: TextIO,
    on_step: Callable[[str], None] | None = None,
    tag: str | None = None,
    nocache: bool = False,
) -> BuildOutcome:
    """``docker build`` through the SDK (classic builder), host network, output streamed.

    The image is left untagged unless ``tag`` is given: app images get their tag only after the
    smoke test.
    """
    from docker.errors import APIError

    started = time.monotonic()
    steps: list[BuildStep] = []
    image_id: str | None = None
    tail: list[str] = []
    try:
        stream = client.api.build(
            path=str(context),
            tag=tag,
            nocache=nocache,
            rm=True,
            forcerm=True,
            decode=True,
            network_mode="host",
            buildargs=dict(buildargs),
            use_config_proxy=False,
        )
        for chunk in stream:
            if "stream" in chunk:
                text = chunk["stream"]
                log.write(text)
                log.flush()  # the log is for watching a long build too
                for line in text.splitlines():
                    tail = [*tail[-19:], line]
                    if m := _STEP_RE.match(line):
                        steps.append(BuildStep(m.group(3)))
                        if on_step:
                            on_step(line)
                    elif line.strip() == "---> Using cache" and steps:
                        steps[-1].cached = True
                    elif (m2 := _ID_RE.match(line)) and steps:
                        steps[-1].image_id = m2.group(1)
            elif "aux" in chunk and "ID" in chunk["aux"]:
                image_id = chunk["aux"]["ID"]
            elif "error" in chunk:
                log.write(chunk["error"] + "\n")
                detail = _ANSI_RE.sub("", chunk["error"]).strip().splitlines()[-1]
                raise ImageError(
                    f"build failed at step {len(steps)} ({steps[-1].text[:80] if steps else '?'})"
                    f": {detail}; last output: {_last_output(tail)}{_space_hint(tail, client)}"
                )
    except APIError as exc:
        raise ImageError(f"build failed: {exc.explanation or exc}") from None
    finally:
        log.flush()
    if image_id is None:
        raise ImageError("build finished without an image id; see the build log")
    return BuildOutcome(image_id, steps, time.monotonic() - started)


def _last_output(tail: list[str], limit: int = 400) -> str:
    """The build's last meaningful lines, cut from the front: the error is at the end.

    Download progress bars and intermediate-container notes say nothing about a failure and
    would push the error itself out of the message.
    """
    lines = [_ANSI_RE.sub("", t).strip() for t in tail]
    lines = [t for t in lines if t and "━" not in t and not t.startswith("Removing interm")]
    text = " | ".join(lines[-3:])
    return text if len(text) <= limit else "…" + text[-limit:]


def _space_hint(tail: list[str], client: Any) -> str:
    """Name the full disk when the build died of it (errno 28), with the engine's data root."""
    if not any("No space left on device" in t or "Errno 28" in t for t in tail):
        return ""
    try:
        root = str(client.info().get("DockerRootDir") or "the engine's data root")
    except Exception:  # the hint is best effort; the build error itself is what matters
        root = "the engine's data root"
    return f"; the disk under {root} is full: free space there (docker system prune) and rerun"


def image_exists(client: Any, ref: str) -> bool:
    from docker.errors import ImageNotFound

    try:
        client.images.get(ref)
    except ImageNotFound:
        return False
    return True


def image_python(client: Any, ref: str) -> str:
    """The ``X.Y`` of ``python3`` in an image: from its sdenv label, else by running it."""
    image = client.images.get(ref)
    label = (image.labels or {}).get(f"{LABEL_PREFIX}.python")
    if label:
        return str(label)
    from docker.errors import DockerException

    cmd = ["python3", "-c", "import sys, venv; print('%d.%d' % sys.version_info[:2])"]
    container = None
    try:
        # create/start/remove rather than run(remove=True): a start that fails (no python3 in
        # the image) would leave a "Created" container behind.
        container = client.containers.create(ref, cmd, entrypoint=[], network_mode="none")
        container.start()
        code = int(container.wait(timeout=120).get("StatusCode", 1))
        out: str = container.logs(stdout=True, stderr=True).decode(errors="replace").strip()
        if code != 0:
            raise BaseImageMissing(
                f"base image {ref}: python3 -c 'import venv' exited {code} "
                f"({out.splitlines()[-1][:160] if out else 'no output'}); pick a base with "
                "Python and its venv module (python:X.Y-slim, or `sdenv image base --bootstrap`)"
            )
    except DockerException as exc:
        reason = str(getattr(exc, "explanation", None) or exc).strip().splitlines()[-1][:160]
        raise BaseImageMissing(
            f"base image {ref} has no usable python3 with venv ({reason}); pick a base with "
            "Python and its venv module (python:X.Y-slim, or `sdenv image base --bootstrap`)"
        ) from None
    finally:
        if container is not None:
            with contextlib.suppress(DockerException):
                container.remove(force=True)
    return out


# -- OS base: debootstrap + import --------------------------------------------------------------


@dataclass
class BaseResult:
    os_image: str
    bootstrapped: bool
    python: str
    cuda_base: str | None = None
    cuda_base_id: str | None = None
    seconds: float = 0.0
    size: int | None = None


def bootstrap_os_image(
    client: Any,
    tag: str = BOOTSTRAP_TAG,
    suite: str = BOOTSTRAP_SUITE,
    mirror: str = BOOTSTRAP_MIRROR,
    packages: Sequence[str] = BOOTSTRAP_PACKAGES,
    log: TextIO | None = None,
) -> str:
    """Make ``tag`` from Debian packages: no registry involved. Returns the image id."""
    if shutil.which("debootstrap") is None:
        raise ImageError(
            "debootstrap not found; install it (scripts/docker-engine.sh start does) "
            "or pass --base IMAGE"
        )
    with throwaway_dir("sdenv-bootstrap-", "/var/tmp") as work:
        rootfs = work / "rootfs"
        cmd = [
            "debootstrap",
            "--variant=minbase",
            f"--include={','.join(packages)}",
            suite,
            str(rootfs),
            mirror,
        ]
        proc = _cleanup.run(cmd, capture_output=True, text=True)
        if log is not None:
            log.write(proc.stdout + proc.stderr)
        if proc.returncode != 0:
            tail = (proc.stderr or proc.stdout).strip().splitlines()[-3:]
            raise ImageError(f"debootstrap {suite} failed: {' | '.join(tail)}")
        # Package caches and lists are build leftovers, not part of the OS an image needs.
        for sub in ("var/cache/apt/archives", "var/lib/apt/lists"):
            for item in (rootfs / sub).glob("*"):
                if item.is_file():
                    item.unlink()
        tarball = work / "rootfs.tar"
        _cleanup.run(
            ["tar", "--numeric-owner", "-C", str(rootfs), "-cf", str(tarball), "."], check=True
        )
        repo, _, tagname = tag.partition(":")
        result = client.api.import_image_from_file(
            str(tarball),
            repository=repo,
            tag=tagname or "latest",
            changes=[
                "ENV PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
                "ENV LANG=C.UTF-8",
                'CMD ["/bin/bash"]',
            ],
        )
    status = json.loads(result.strip().splitlines()[-1]) if isinstance(result, str) else result
    return str(status.get("status", "")) if isinstance(status, dict) else str(status)


# -- orchestration -------------------------------------------------------------------------------


@dataclass
class SmokeOutcome:
    passed: bool
    exit_code: int
    gpu: bool
    seconds: float
    report: Any = None
    failure: str | None = None
    output_tail: str = ""


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
class BuildRequest:
    env: str | Path
    python: str | None = None
    base: str | None = None  # OS base image; None: sdenv/base:bookworm if present, else python-slim
    lock_path: Path | None = None
    lock_dir: Path = DEFAULT_LOCK_DIR
    envs_dir: Path = DEFAULT_ENVS_DIR
    out_dir: Path = DEFAULT_OUT_DIR
    transport: Transport = Transport()
    gpu: bool = False
    smoke_command: tuple[str, ...] = ("smoke", "--json")
    sdenv_wheel: Path | None = None
    check_lock: bool = True
    nocache: bool = False  # cold build: every step runs again (benchmarks)
    repository: str | None = None  # default sdenv/<env>; benchmarks tag elsewhere


def choose_base(client: Any, base: str | None, python: str | None) -> str:
    if base:
        return base
    if image_exists(client, BOOTSTRAP_TAG):
        return BOOTSTRAP_TAG
    return default_base(python or "3.11")


def ensure_base_present(client: Any, base: str) -> None:
    if image_exists(client, base):
        return
    from docker.errors import DockerException

    try:
        client.images.pull(base)
    except DockerException as exc:
        reason = str(getattr(exc, "explanation", None) or exc).splitlines()[0][:120]
        raise BaseImageMissing(
            f"base image {base} is not in the engine and could not be pulled ({reason}); "
            "make one with `sdenv image base --bootstrap` or pass --base with a local image"
        ) from None


def resolve_target(spec: EnvSpec, python: str | None, base_python: str, base: str) -> Target:
    wanted = python or (base_python if base_python in spec.pythons else spec.pythons[0])
    if wanted not in spec.pythons:
        raise UsageError(
            f"{spec.path}: env.pythons: {wanted} is not a Python of env {spec.name} "
            f"({', '.join(spec.pythons)}); pick one of those with --python"
        )
    if wanted != base_python:
        raise PythonMismatch(
            f"base image {base} has Python {base_python} but the lock target needs {wanted}; "
            f"pass --python {base_python} (if the env has it) or --base with Python {wanted}"
        )
    host = {"x86_64": "linux_x86_64", "aarch64": "linux_aarch64"}.get(platform.machine(), "")
    plat = host if host in spec.platforms else spec.platforms[0]
    return Target(spec.name, wanted, plat)


def check_lock_fresh(spec: EnvSpec, lock: Lockfile) -> None:
    """A lock made from another spec, or by an sdenv with other rules, is stale: no image from it.

    The header check of ``sdenv lock --check`` (no network); ``make image`` runs the full check,
    with its re-resolve, before building.
    """
    from sdenv.lock import data_sha256

    if lock.get("spec-sha256") != spec.sha256:
        why = f"made from another version of {spec.path}"
    elif lock.get("data-sha256") != data_sha256():
        why = "made with other rules/torch tables than this sdenv"
    else:
        return
    raise LockStale(f"{lock.path}: stale, {why}; run `sdenv lock {spec.name}` and commit it")


def build_sdenv_wheel(dest: Path) -> Path:
    """A wheel of this checkout (uv build, hatchling: reproducible timestamps)."""
    from sdenv.venv import run_uv

    if not (_REPO_ROOT / "pyproject.toml").is_file():
        raise ImageError(
            "sdenv's source tree is not beside this install; pass an sdenv wheel (sdenv_wheel)"
        )
    run_uv(["build", "--wheel", "--out-dir", str(dest), str(_REPO_ROOT)])
    wheels = sorted(dest.glob("sdenv-*.whl"))
    if not wheels:
        raise ImageError(f"uv build made no sdenv wheel in {dest}")
    return wheels[-1]


def _normalise_modes(ctx: Path) -> None:
    """COPY keeps a context file's mode, and the image runs as a non-root user: a 0600 file (as
    atomic writes leave lockfiles) would be unreadable there. 0644 also keeps the cache key the
    same however the checkout was made."""
    for path in ctx.rglob("*"):
        path.chmod(0o755 if path.is_dir() else 0o644)


def _sha256_file(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as fh:
        for block in iter(functools.partial(fh.read, 1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def build_cuda_base(
    client: Any,
    spec: EnvSpec,
    python: str,
    base: str,
    parts: LockParts,
    transport_addr: str,
    log: TextIO,
    on_step: Callable[[str], None] | None = None,
    nocache: bool = False,
) -> tuple[str, BuildOutcome]:
    tag = cuda_base_tag(spec, python, base, parts)
    with throwaway_dir("sdenv-ctx-") as ctx:
        labels = {
            f"{LABEL_PREFIX}.cuda": spec.cuda,
            f"{LABEL_PREFIX}.python": python,
            f"{LABEL_PREFIX}.cuda-pins.sha256": parts.cuda_sha256,
            "org.opencontainers.image.base.name": base,
            "org.opencontainers.image.title": f"sdenv CUDA base {spec.cuda} py{python}",
        }
        (ctx / "Dockerfile").write_text(
            render_template(
                "base.Dockerfile",
                {
                    "BASE_IMAGE": base,
                    "TRANSPORT": f"127.0.0.1:{TRANSPORT_PORT}",
                    "LABELS": render_labels(labels),
                },
            )
        )
        shutil.copy(_DOCKER_DIR / "sdenv-install", ctx / "sdenv-install")
        (ctx / "cuda.txt").write_text(render_requirements(parts.cuda))
        _normalise_modes(ctx)
        outcome = run_build(
            client,
            ctx,
            {"SDENV_TRANSPORT": transport_addr},
            log,
            on_step,
            tag=tag,
            nocache=nocache,
        )
    return tag, outcome


def _smoke(client: Any, image_id: str, command: Sequence[str], gpu: bool) -> SmokeOutcome:
    from docker.types import DeviceRequest

    kwargs: dict[str, Any] = {}
    if gpu:
        kwargs["device_requests"] = [DeviceRequest(count=-1, capabilities=[["gpu"]])]
    started = time.monotonic()
    container = client.containers.create(
        image_id, list(command), network_mode="none", detach=True, **kwargs
    )
    try:
        container.start()
        status = container.wait(timeout=1800)
        stdout = container.logs(stdout=True, stderr=False).decode(errors="replace")
        stderr = container.logs(stdout=False, stderr=True).decode(errors="replace")
    finally:
        container.remove(force=True)
    code = int(status.get("StatusCode", 1))
    report: Any = None
    with contextlib.suppress(ValueError):
        report = json.loads(stdout) if stdout.strip() else None
    passed = code == 0
    failure = None if passed else classify_smoke_failure(report, stderr or stdout, code)
    tail = (stderr + stdout).strip()[-2000:]
    return SmokeOutcome(passed, code, gpu, time.monotonic() - started, report, failure, tail)


def classify_smoke_failure(report: Any, output: str, code: int) -> str:
    """One line for a failed smoke: the first failed check with sdenv.smoke's classification
    (kind, culprits, hint); the last output line when there is no report."""
    if isinstance(report, Mapping):
        checks = report.get("checks")
        failed = [c for c in checks or [] if isinstance(c, Mapping) and c.get("status") == "fail"]
        if failed:
            first = failed[0]
            words = [f"{first.get('name', 'check')}:"]
            failure = first.get("failure")
            if isinstance(failure, Mapping):
                words.append(str(failure.get("kind") or "failed"))
                if failure.get("culprits"):
                    words.append(f"({', '.join(map(str, failure['culprits']))})")
            if first.get("detail"):
                words.append(f"- {first['detail']}")
            if isinstance(failure, Mapping) and failure.get("hint"):
                words.append(f"- fix: {failure['hint']}")
            more = f" (+{len(failed) - 1} more failed)" if len(failed) > 1 else ""
            return " ".join(words).replace("\n", " ")[:400] + more
    lines = [ln.strip() for ln in output.strip().splitlines() if ln.strip()]
    return f"exit {code}: {lines[-1][:300]}" if lines else f"exit {code}, no output"


def _history(client: Any, image_id: str) -> list[dict[str, Any]]:
    return [
        {"id": h.get("Id"), "created_by": h.get("CreatedBy", ""), "size": int(h.get("Size", 0))}
        for h in client.api.history(image_id)
    ]


def build_image(
    req: BuildRequest,
    client: Any | None = None,
    on_step: Callable[[str], None] | None = None,
) -> ImageResult:
    """Lock -> CUDA base -> app image -> smoke inside -> tags. Raises ImageError on any failure;
    a failure leaves every tag where it was."""
    spec = load_spec(req.env, req.envs_dir)
    client = client or connect()
    base = choose_base(client, req.base, req.python)
    ensure_base_present(client, base)
    base_python = image_python(client, base)
    target = resolve_target(spec, req.python, base_python, base)
    lock_path = req.lock_path or target.lockfile(req.lock_dir)
    lock = read_lockfile(lock_path)
    lock_sha256 = _sha256_file(lock_path)
    lock_python = lock.get("python")
    if lock_python and lock_python != target.python:
        raise PythonMismatch(
            f"{lock_path}: locked for Python {lock_python}, but the image has {target.python}; "
            "use the lock of the image's Python"
        )
    if req.check_lock:
        check_lock_fresh(spec, lock)
    parts = split_lock(lock, spec.requirements)

    out_dir = req.out_dir / target.slug
    out_dir.mkdir(parents=True, exist_ok=True)
    log_path = out_dir / "build.log"
    summary_path = out_dir / "summary.json"
    tags = list(app_tags(target, lock_sha256, req.repository))
    labels = app_labels(spec, target, lock, lock_sha256, base)

    with (
        throwaway_dir("sdenv-ctx-") as tmp,
        serve_transport(req.transport.with_spec_indexes(spec)) as transport_addr,
    ):
        partial = out_dir / ".build.log.partial"
        with partial.open("w", encoding="utf-8") as log:
            log.write(f"# sdenv image build {target.slug} from {lock_path} ({lock_sha256})\n")
            cuda_tag, cuda_outcome = build_cuda_base(
                client, spec, target.python, base, parts, transport_addr, log, on_step, req.nocache
            )
            ctx = tmp
            wheel = req.sdenv_wheel or build_sdenv_wheel(ctx / "dist")
            shutil.copy(wheel, ctx / wheel.name)
            (ctx / "torch.txt").write_text(render_requirements(parts.torch))
            (ctx / "deps.txt").write_text(render_requirements(parts.deps))
            (ctx / "app.txt").write_text(render_requirements(parts.app))
            (ctx / "sdenv.txt").write_text(
                f"sdenv @ file:///opt/sdenv/wheels/{wheel.name} "
                f"--hash=sha256:{_sha256_file(wheel)}\n"
            )
            shutil.copy(lock_path, ctx / "lock.txt")
            (ctx / "Dockerfile").write_text(
                render_template(
                    "app.Dockerfile",
                    {
                        "CUDA_BASE": cuda_tag,
                        "TRANSPORT": f"127.0.0.1:{TRANSPORT_PORT}",
                        "WHEEL": wheel.name,
                        "LOCK_NAME": lock_path.name,
                        "ENV": target.env,
                        "PYTHON": target.python,
                        "LABELS": render_labels(labels),
                    },
                )
            )
            _normalise_modes(ctx)
            outcome = run_build(
                client, ctx, {"SDENV_TRANSPORT": transport_addr}, log, on_step, nocache=req.nocache
            )
            smoke_gpu = req.gpu and _engine_has_gpu(client)
            command = [*req.smoke_command, *(["--gpu"] if smoke_gpu else [])]
            smoke = _smoke(client, outcome.image_id, command, smoke_gpu)
            log.write(f"# smoke {'passed' if smoke.passed else 'FAILED'}: exit {smoke.exit_code}\n")
            log.write(smoke.output_tail + "\n")
        os.replace(partial, log_path)

    tagged = False
    if smoke.passed:
        previous = _image_id_or_none(client, tags[0])
        image = client.images.get(outcome.image_id)
        for ref in tags:
            repo, _, tagname = ref.rpartition(":")
            image.tag(repo, tagname)
        tagged = True
        if previous and previous != outcome.image_id:
            _remove_if_untagged(client, previous)
    image = client.images.get(outcome.image_id)
    history = _history(client, outcome.image_id)
    new_ids = {s.image_id for s in outcome.steps if s.image_id and not s.cached}
    new_bytes = sum(h["size"] for h in history if h["id"] and _short(h["id"]) in new_ids)
    result = ImageResult(
        env=target.env,
        target=target.slug,
        image_id=outcome.image_id,
        tags=tags,
        tagged=tagged,
        base_image=base,
        cuda_base=cuda_tag,
        lock=str(lock_path),
        lock_sha256=lock_sha256,
        labels=labels,
        size=int(image.attrs.get("Size", 0)),
        layers=len(image.attrs.get("RootFS", {}).get("Layers", [])),
        build_seconds=round(outcome.seconds, 1),
        cuda_base_seconds=round(cuda_outcome.seconds, 1),
        cuda_base_cached=cuda_outcome.cached_steps >= len(cuda_outcome.steps) - 1,
        steps=len(outcome.steps),
        cached_steps=outcome.cached_steps,
        new_layer_bytes=new_bytes,
        smoke=smoke,
        log=str(log_path),
        summary=str(summary_path),
        sbom=str(write_sbom(lock_path, sbom_path(out_dir, lock_path))),
        history=history,
    )
    write_atomic(summary_path, dumps(result) + "\n")
    if not smoke.passed:
        raise SmokeFailed(
            f"smoke test failed inside {outcome.image_id[:19]} ({smoke.failure}); no tag moved; "
            f"report and log in {out_dir}"
        )
    return result


def _image_id_or_none(client: Any, ref: str) -> str | None:
    from docker.errors import ImageNotFound

    try:
        return str(client.images.get(ref).id)
    except ImageNotFound:
        return None


def _remove_if_untagged(client: Any, image_id: str) -> None:
    """The image a moved tag left behind, when no other tag holds it: it would only pile up.
    Layers it shares with other images stay; one still used by a container stays too."""
    from docker.errors import DockerException

    with contextlib.suppress(DockerException):
        if not client.images.get(image_id).tags:
            client.images.remove(image_id)


def _short(image_id: str) -> str:
    return image_id.split(":", 1)[-1][:12]


def _engine_has_gpu(client: Any) -> bool:
    runtimes = client.info().get("Runtimes") or {}
    return "nvidia" in runtimes


def build_base(
    env: str | Path,
    *,
    bootstrap: bool = False,
    base: str | None = None,
    python: str | None = None,
    lock_dir: Path = DEFAULT_LOCK_DIR,
    envs_dir: Path = DEFAULT_ENVS_DIR,
    transport: Transport = Transport(),
    client: Any | None = None,
    on_step: Callable[[str], None] | None = None,
    out_dir: Path = DEFAULT_OUT_DIR,
) -> BaseResult:
    """The OS base (bootstrapped when asked and missing) and the CUDA base of ``env``'s lock."""
    spec = load_spec(env, envs_dir)
    client = client or connect()
    started = time.monotonic()
    bootstrapped = False
    out_dir.mkdir(parents=True, exist_ok=True)
    if bootstrap and base is None:
        base = BOOTSTRAP_TAG
        if not image_exists(client, base):
            with (out_dir / "bootstrap.log").open("w", encoding="utf-8") as log:
                bootstrap_os_image(client, base, log=log)
            bootstrapped = True
    base = choose_base(client, base, python)
    ensure_base_present(client, base)
    base_python = image_python(client, base)
    target = resolve_target(spec, python, base_python, base)
    result = BaseResult(base, bootstrapped, base_python)
    lock_path = target.lockfile(lock_dir)
    if lock_path.is_file():
        lock = read_lockfile(lock_path)
        check_lock_fresh(spec, lock)
        with (
            serve_transport(transport.with_spec_indexes(spec)) as addr,
            (out_dir / f"cuda-base-{spec.cuda}-py{target.python}.log").open("w") as log,
        ):
            tag, outcome = build_cuda_base(
                client,
                spec,
                target.python,
                base,
                split_lock(lock, spec.requirements),
                addr,
                log,
                on_step,
            )
        result.cuda_base, result.cuda_base_id = tag, outcome.image_id
        result.size = int(client.images.get(tag).attrs.get("Size", 0))
    result.seconds = round(time.monotonic() - started, 1)
    return result
