"""What one target is resolved from: requirements and constraints, each constraint with its why.

The spec's requirements plus sdenv's own in-image runtime deps; constraints from the spec, the
PyPI torch/CUDA table (data/torch_cuda.toml) and the rules (data/rules.toml) whose torch condition
holds for every torch the target may get. :func:`data_sha256` hashes the shipped data these come
from, so a changed table or rule makes the locks made from it stale.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

from sdenv.lock import checks
from sdenv.lock.checks import Rule
from sdenv.lock.spec import EnvSpec, Target


def runtime_requirements(python: str) -> list[str]:
    """sdenv's own in-image deps: the app image installs sdenv --no-deps from the lock."""
    reqs = ["packaging>=24", "rich>=13"]
    if python == "3.10":
        reqs.append("tomli>=2")
    return reqs


def data_sha256() -> str:
    """Hash of the shipped data the lock depends on: a changed rule makes locks stale."""
    h = hashlib.sha256()
    from sdenv import _data

    for name in _data.LOCK_DATA:
        h.update(_data.data_file(name).read_bytes())
    return h.hexdigest()


def canon_all(names: Iterable[str]) -> set[str]:
    return {canonicalize_name(n) for n in names}


def req_name(requirement: str) -> str:
    """The canonical project name of a requirement or constraint line."""
    return canonicalize_name(Requirement(requirement).name)


@dataclass
class Inputs:
    requirements: list[str]
    constraints: list[tuple[str, str]]  # (constraint, why)

    def constraint_lines(self) -> list[str]:
        return [c for c, _ in self.constraints]


def base_inputs(spec: EnvSpec, target: Target, rules: Sequence[Rule]) -> Inputs:
    reqs = spec.requirement_lines()
    present = {req_name(r) for r in reqs}
    reqs += [r for r in runtime_requirements(target.python) if req_name(r) not in present]
    cons: list[tuple[str, str]] = [(c, "spec") for c in spec.constraint_lines()]
    torch_spec = spec.requirements.get("torch", "")
    candidates: list[str] = []
    if spec.indexes and checks.is_pypi(spec.indexes[0].url) and len(spec.indexes) == 1:
        bound = checks.pypi_torch_bound(spec.cuda, torch_spec)
        cons.append((f"torch{bound}", f"PyPI torch built for {spec.cuda}: data/torch_cuda.toml"))
        series = checks.pypi_torch_series(spec.cuda, torch_spec)
        candidates = [v for s in series for v in (f"{s.series}.0", f"{s.series}.99")]
    for rule in checks.rules_before_resolve(rules, candidates):
        for c in rule.constraints():
            cons.append((c, f"rule {rule.id}"))
    return Inputs(reqs, cons)
