"""``sdenv lock --check``: is each committed lock still what the spec and the data make?

Cheapest first: the lock parses, its header names this target, its pylock twin agrees, the spec
and data hashes match; then a fresh resolve from the lock's own constraints (its pins as
preferences) must give the same versions, every hash must still be one the index serves, and the
header's CUDA line must be what these pins make.
"""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

from sdenv.lock.checked import Checked, resolve_and_check
from sdenv.lock.header import build_lockfile, constraints_from_header, header_mismatch
from sdenv.lock.inputs import base_inputs, data_sha256
from sdenv.lock.lockfile import Lockfile, LockfileError, read_lockfile
from sdenv.lock.options import LockError, LockOptions
from sdenv.lock.proof import Proof
from sdenv.lock.pylock import disagreement, pylock_path
from sdenv.lock.resolve import ResolveError
from sdenv.lock.spec import EnvSpec, Target
from sdenv.lock.target import TargetResult, pin_changes


def _stale_on_its_face(lock: Lockfile, spec: EnvSpec, target: Target, path: Path) -> str:
    """Why the lock is stale without resolving ("" if nothing says so)."""
    # The header first: a field edited to another target is named as such (the pylock twin
    # check below would only say that the two files differ).
    fix = f"run `sdenv lock {spec.name}`"
    wrong = header_mismatch(lock, spec, target)
    if wrong:
        return f"{path}: {wrong}; {fix}"
    disagrees = disagreement(lock, pylock_path(path))
    if disagrees:
        return disagrees
    if lock.get("spec-sha256") != spec.sha256:
        return f"{path}: made from another version of {spec.path.name}; {fix}"
    if lock.get("data-sha256") != data_sha256():
        return f"{path}: made with other rules/torch tables than this sdenv; {fix}"
    return ""


def _stale_after_resolve(
    lock: Lockfile, spec: EnvSpec, target: Target, checked: Checked, path: Path
) -> str:
    """Same versions: why the lock is still stale ("" if it is fresh)."""
    # Every hash must still be one the index serves (an edited or re-uploaded file is refused by
    # `pip --require-hashes` at install time; say so now), and the header's CUDA line must be
    # what these pins make.
    fix = f"run `sdenv lock {spec.name}`"
    fresh = {p.name: set(p.hashes) for p in checked.resolution.pins}
    for pin in lock.pins:
        unknown = sorted(set(pin.hashes) - fresh.get(pin.name, set()))
        if unknown:
            return (
                f"{path}: {pin.name}=={pin.version} has {len(unknown)} hash(es) the index does "
                f"not serve ({unknown[0][:20]}...): install would refuse it; {fix}"
            )
    want_cuda = build_lockfile(spec, target, checked, Proof("unverified", "")).get("cuda")
    if lock.get("cuda") != want_cuda:
        return f"{path}: header cuda is {lock.get('cuda')!r}, the pins make {want_cuda!r}; {fix}"
    return ""


def check_target(spec: EnvSpec, target: Target, opts: LockOptions) -> TargetResult:
    """Is the committed lock still what the spec and data make? Header first, then a re-resolve."""
    path = target.lockfile(opts.lock_dir)
    result = TargetResult(target, path, status="fresh")
    try:
        lock = read_lockfile(path)
    except LockfileError as exc:
        return result.done("stale", f"{exc}")
    result.pins = lock.versions()
    why = _stale_on_its_face(lock, spec, target, path)
    if why:
        return result.done("stale", why)
    rules = opts.rule_set()
    inputs = base_inputs(spec, target, rules)
    inputs.constraints += [c for c in constraints_from_header(lock) if c not in inputs.constraints]
    fixed = replace(opts, upgrade=False, upgrade_packages=())
    try:
        checked = resolve_and_check(spec, target, inputs, fixed, rules, lock.pins)
    except (ResolveError, LockError) as exc:
        return result.done("stale", f"{path}: no longer resolves: {exc}")
    result.changes = pin_changes(lock.versions(), checked.resolution.versions())
    if result.changes:
        return result.done(
            "stale",
            f"{path}: a fresh resolve differs in {len(result.changes)} pins; "
            f"run `sdenv lock {spec.name}`",
        )
    why = _stale_after_resolve(lock, spec, target, checked, path)
    return result.done("stale", why) if why else result


def check_env(spec: EnvSpec, opts: LockOptions) -> list[TargetResult]:
    return [check_target(spec, t, opts) for t in spec.targets]
