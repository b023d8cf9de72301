"""``sdenv image base``: the OS base (bootstrapped when asked) and the CUDA base of an env's lock.

The CUDA base is a venv holding the nvidia-* wheels the lock pins, plus the NVIDIA container
environment, shared by every app image of that (CUDA variant, Python, OS) and CUDA pin set.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TextIO

from sdenv._cleanup import throwaway_dir
from sdenv.image.bootstrap import BOOTSTRAP_TAG, bootstrap_os_image
from sdenv.image.build import BuildOutcome, run_build
from sdenv.image.context import (
    LABEL_PREFIX,
    LockParts,
    cuda_base_tag,
    split_lock,
    write_cuda_context,
)
from sdenv.image.engine import connect, image_exists
from sdenv.image.inputs import (
    check_lock_fresh,
    choose_base,
    ensure_base_present,
    image_python,
    resolve_target,
)
from sdenv.image.transport import DEFAULT_TRANSPORT, Transport, serve_transport
from sdenv.lock.lockfile import DEFAULT_LOCK_DIR, read_lockfile
from sdenv.lock.spec import DEFAULT_ENVS_DIR, EnvSpec, load_spec

DEFAULT_OUT_DIR = Path("build/images")


@dataclass
class BaseResult:
    os_image: str
    bootstrapped: bool
    python: str
    cuda_base: str | None = None
    cuda_base_id: str | None = None
    seconds: float = 0.0
    size: int | None = None


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
    labels = {
        f"{LABEL_PREFIX}.cuda": spec.cuda,
        f"{LABEL_PREFIX}.python": python,
        f"{LABEL_PREFIX}.cuda-pins.sha256": parts.cuda_sha256,
        "org.opencontainers.image.base.name": base,
        "org.opencontainers.image.title": f"sdenv CUDA base {spec.cuda} py{python}",
    }
    with throwaway_dir("sdenv-ctx-") as ctx:
        write_cuda_context(ctx, base, labels, parts)
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


def build_base(
    env: str | Path,
    *,
    bootstrap: bool = False,
    base: str | None = None,
    python: str | None = None,
    lock_dir: Path = DEFAULT_LOCK_DIR,
    envs_dir: Path = DEFAULT_ENVS_DIR,
    transport: Transport = DEFAULT_TRANSPORT,
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
            parts = split_lock(lock, spec.requirements)
            tag, outcome = build_cuda_base(
                client, spec, target.python, base, parts, addr, log, on_step
            )
        result.cuda_base, result.cuda_base_id = tag, outcome.image_id
        result.size = int(client.images.get(tag).attrs.get("Size", 0))
    result.seconds = round(time.monotonic() - started, 1)
    return result
