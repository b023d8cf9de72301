"""``sdenv lock``: resolve each target of an env, check the set, prove it imports, write it.

Per target (env, python, platform):

1. inputs (:mod:`.inputs`): the spec's requirements (:mod:`.spec`) plus sdenv's own in-image
   runtime deps; constraints from the spec, the PyPI torch/CUDA table (data/torch_cuda.toml) and
   the rules (data/rules.toml) whose torch condition holds for every torch the target may get;
2. resolve for the target (:mod:`.resolve`, uv by default), then check (:mod:`.checks`, pure):
   rules against the pins (re-resolve with the rule's constraint when one fires), CUDA variant,
   xformers ABI (its cpp_lib.json, read by range requests: :mod:`.wheelmeta`; re-resolve with the
   matching xformers when wrong), GPU coverage; the loop is :mod:`.checked`;
3. the import proof (:mod:`.proof`): install the lock into a throwaway venv and run the smoke
   there, for every target whose Python exists here; ``--search`` (:mod:`.search`) bisects the
   culprit of a failure;
4. write atomically (:mod:`.target`), under a file lock per env, the lock (:mod:`.lockfile`, its
   header: :mod:`.header`) with its PEP 751 twin (:mod:`.pylock`) beside it. A target that fails
   is not written. ``--check`` is :mod:`.freshness`; :mod:`.torch_releases` reports PyPI torch
   releases no shipped env covers.

This module is the interface; its names load on first use, so that importing a light part (every
command reads specs and locks) does not import the resolver, the index client and the checks.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from sdenv.lock.freshness import check_env as check_env
    from sdenv.lock.freshness import check_target as check_target
    from sdenv.lock.header import constraints_from_header as constraints_from_header
    from sdenv.lock.inputs import base_inputs as base_inputs
    from sdenv.lock.inputs import data_sha256 as data_sha256
    from sdenv.lock.options import LockError as LockError
    from sdenv.lock.options import LockOptions as LockOptions
    from sdenv.lock.proof import Proof as Proof
    from sdenv.lock.proof import ProofFailure as ProofFailure
    from sdenv.lock.target import TargetResult as TargetResult
    from sdenv.lock.target import env_file_lock as env_file_lock
    from sdenv.lock.target import host_python as host_python
    from sdenv.lock.target import lock_env as lock_env
    from sdenv.lock.target import lock_target as lock_target

_API = {
    "LockError": "options",
    "LockOptions": "options",
    "Proof": "proof",
    "ProofFailure": "proof",
    "TargetResult": "target",
    "base_inputs": "inputs",
    "check_env": "freshness",
    "check_target": "freshness",
    "constraints_from_header": "header",
    "data_sha256": "inputs",
    "env_file_lock": "target",
    "host_python": "target",
    "lock_env": "target",
    "lock_target": "target",
}

__all__ = sorted(_API)


def __getattr__(name: str) -> Any:
    module = _API.get(name)
    if module is None:  # a submodule not imported yet, or no such name
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(importlib.import_module(f"{__name__}.{module}"), name)
    globals()[name] = value
    return value
