"""The tables shipped in ``src/sdenv/data/``: one lookup for all of them, and which ones locks hash.

Standard library only: ``sdenv.gpu.compat`` reads its tables through this module inside target
envs (the probe), where nothing but the packages under test is installed. Every reader goes
through ``data_file``, so a test can point the lookup at an edited copy of the data.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

# The data files a lock depends on: `sdenv lock` reads each of them (the pins, the rules applied,
# the header's check lines and the proof's classification all come from them), so each goes into
# the lock's data-sha256 and editing any makes `sdenv lock --check` report the lock stale.
# tests/test_lock_data.py checks that this is exactly the set the lock code reads.
LOCK_DATA = (
    "rules.toml",  # compatibility rules applied before and after resolving
    "torch_cuda.toml",  # the CUDA line of each torch series on PyPI: torch's range per target
    "fp8_backends.json",  # torch/torchao pairs, applied as rules
    "torch_arch_lists.json",  # the gpu-coverage check line of the header
    "xformers_arch_lists.json",  # read with the arch table (sdenv.gpu.compat)
    "driver_floors.json",  # read with the arch table; the proof's driver hints
    "xformers_for_torch.json",  # the proof's xformers ABI hint (sdenv.smoke)
)


def data_dir() -> Path:
    return Path(__file__).with_name("data")


def data_file(name: str) -> Path:
    """The shipped data file ``name`` (``rules.toml``, ``driver_floors.json``, ...)."""
    return data_dir() / name


def load_json(name: str) -> dict[str, Any]:
    """A shipped JSON table; a broken one names the file (it is a bug of this sdenv)."""
    path = data_file(name)
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise RuntimeError(f"{path}: unreadable shipped table ({exc}); reinstall sdenv") from exc
    if not isinstance(data, dict):
        raise RuntimeError(f"{path}: expected a JSON object; reinstall sdenv")
    return data
