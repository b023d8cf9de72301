"""Env specs for the local index (tests/pypi_index.py) and lock options for its stand-in stack."""

from __future__ import annotations

import json
import sys
from pathlib import Path

from sdenv.lock import LockOptions

HOST = f"{sys.version_info[0]}.{sys.version_info[1]}"
# The smoke checks the fake stack can answer (the rest need real tensors).
SMOKE = ("torch", "xformers", "diffusers", "transformers")
STACK_REQS = {"torch": ">=2.4,<2.5", "xformers": "", "diffusers": ">=0.31", "transformers": ""}


def write_spec(
    dest: Path,
    url: str,
    reqs: dict[str, str] | None = None,
    *,
    name: str = "demo",
    pythons: tuple[str, ...] = (HOST,),
    cuda: str = "cu121",
    ccs: tuple[str, ...] = ("8.0", "8.6", "8.9", "9.0"),
) -> Path:
    """``dest/<name>.toml``: an env of ``reqs`` (the SD3.5 stand-in stack by default) on ``url``."""
    reqs = STACK_REQS if reqs is None else reqs
    lines = [
        "[env]",
        f'name = "{name}"',
        f"pythons = {json.dumps(list(pythons))}",
        'platforms = ["linux_x86_64"]',
        f'cuda = "{cuda}"',
        f"compute_capabilities = {json.dumps(list(ccs))}",
        "[[indexes]]",
        'name = "local"',
        f'url = "{url}"',
        "[requirements]",
        *(f'{k} = "{v}"' for k, v in reqs.items()),
    ]
    path = dest / f"{name}.toml"
    path.write_text("\n".join(lines) + "\n")
    return path


def lock_options(lock_dir: Path, **kw: object) -> LockOptions:
    """Options that run only the smoke checks the stand-in stack can answer."""
    return LockOptions(lock_dir=lock_dir, smoke_checks=SMOKE, **kw)  # type: ignore[arg-type]
