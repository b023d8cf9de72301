"""What a build starts from, checked before anything is built: the OS base (chosen, present, its
Python), the lock target that Python selects, and the lock's freshness."""

from __future__ import annotations

import contextlib
import platform
from typing import Any

from sdenv.errors import UsageError
from sdenv.image.bootstrap import BOOTSTRAP_TAG
from sdenv.image.context import LABEL_PREFIX
from sdenv.image.engine import image_exists
from sdenv.image.errors import BaseImageMissing, LockStale, PythonMismatch
from sdenv.lock.lockfile import Lockfile
from sdenv.lock.spec import EnvSpec, Target

_BASE_FIX = (
    "pick a base with Python and its venv module "
    "(python:X.Y-slim, or `sdenv image base --bootstrap`)"
)


def default_base(python: str) -> str:
    return f"python:{python}-slim-bookworm"


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
                f"({out.splitlines()[-1][:160] if out else 'no output'}); {_BASE_FIX}"
            )
    except DockerException as exc:
        reason = str(getattr(exc, "explanation", None) or exc).strip().splitlines()[-1][:160]
        raise BaseImageMissing(
            f"base image {ref} has no usable python3 with venv ({reason}); {_BASE_FIX}"
        ) from None
    finally:
        if container is not None:
            with contextlib.suppress(DockerException):
                container.remove(force=True)
    return out


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
