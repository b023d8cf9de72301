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

This module is the public surface: the CLI, scripts and other packages use only the names in
``__all__``; tests of one concern import its module. By concern: ``engine`` (docker-py client,
image queries), ``inputs`` (base, target, lock freshness), ``context`` (lock split into layers,
Dockerfile templates under ``docker/``, shipped as package data), ``transport`` (CA and index
settings served to RUN steps), ``build`` (one build's stream and error message), ``bootstrap``
(the Debian OS base), ``smoke_run`` (the smoke inside), ``base`` and ``app`` (the two commands).
``docker`` is imported inside functions: the CLI imports this package where docker-py is absent.
"""

from __future__ import annotations

from sdenv.image.app import BuildRequest, ImageResult, build_image
from sdenv.image.base import DEFAULT_OUT_DIR, BaseResult, build_base
from sdenv.image.bootstrap import BOOTSTRAP_TAG, bootstrap_os_image
from sdenv.image.context import app_tags, build_sdenv_wheel
from sdenv.image.engine import connect, image_exists
from sdenv.image.errors import (
    BaseImageMissing,
    EngineUnreachable,
    ImageError,
    LockStale,
    PythonMismatch,
    SmokeFailed,
)
from sdenv.image.inputs import image_python, resolve_target
from sdenv.image.smoke_run import SmokeOutcome
from sdenv.image.transport import Transport

__all__ = [
    "BOOTSTRAP_TAG",
    "DEFAULT_OUT_DIR",
    "BaseImageMissing",
    "BaseResult",
    "BuildRequest",
    "EngineUnreachable",
    "ImageError",
    "ImageResult",
    "LockStale",
    "PythonMismatch",
    "SmokeFailed",
    "SmokeOutcome",
    "Transport",
    "app_tags",
    "bootstrap_os_image",
    "build_base",
    "build_image",
    "build_sdenv_wheel",
    "connect",
    "image_exists",
    "image_python",
    "resolve_target",
]
