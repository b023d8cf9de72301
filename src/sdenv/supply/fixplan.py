"""``sdenv audit --fix``: does each proposed bump fit its env? The spec's specifiers first, then a
dry-run re-lock with that one bump (so a failure names its bump), then each env's passing bumps
re-locked together (the set must resolve and pass the compat rules as well)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

from packaging.version import Version

from sdenv.errors import SdenvError
from sdenv.lock.lockfile import DEFAULT_LOCK_DIR
from sdenv.lock.spec import EnvSpec
from sdenv.supply.audit import FixProposal
from sdenv.supply.locks import LockTarget


@dataclass(frozen=True)
class FixCheck:
    """Whether one proposed bump fits its env: the spec's specifiers, then a real re-lock."""

    env: str
    package: str
    version: str
    proposed: str | None
    spec_status: str  # ok | fail | skip
    spec_note: str
    lock_status: str  # ok | fail | skip
    lock_note: str


@dataclass(frozen=True)
class SetCheck:
    """The bumps of one env that fit on their own, re-locked together: the set must hold too."""

    env: str
    pins: tuple[str, ...]
    lock_status: str
    lock_note: str
    command: str  # applies the set; "" when it does not re-lock


@dataclass(frozen=True)
class FixPlan:
    checks: tuple[FixCheck, ...] = ()
    sets: tuple[SetCheck, ...] = ()


def spec_allows(spec: EnvSpec, name: str, version: str) -> tuple[str, str]:
    """Does ``name==version`` satisfy the spec's requirement and constraint for ``name``?"""
    from packaging.specifiers import SpecifierSet

    parts = [s for s in (spec.requirements.get(name), spec.constraints.get(name)) if s]
    if not parts:
        return "ok", "not constrained by the spec"
    wanted = SpecifierSet(",".join(parts))
    if wanted.contains(Version(version), prereleases=True):
        return "ok", f"{name}{wanted} allows it"
    return "fail", f"{name}{wanted} excludes {version}; widen envs/{spec.name}.toml"


def check_fixes(
    fixes: Sequence[FixProposal],
    targets: Sequence[LockTarget],
    lock_dir: Path = DEFAULT_LOCK_DIR,
) -> FixPlan:
    """Check each proposal in each env whose locks pin it: against the env spec, then by a dry-run
    re-lock with that one bump (so a failure names its bump); then re-lock each env with all of
    its bumps that passed (the bumped *set* must resolve and pass the compat rules as well)."""
    by_label = {t.label: t for t in targets}
    checks: list[FixCheck] = []
    specs: dict[str, EnvSpec] = {}
    for fix in fixes:
        envs = {
            t.spec.name: t.spec
            for t in (by_label.get(label) for label in fix.locks)
            if t is not None and t.spec is not None
        }
        specs.update(envs)
        checks += _check_one(fix, envs, lock_dir)
    passed: dict[str, list[str]] = {}
    for c in checks:
        if c.spec_status == "ok" and c.lock_status == "ok":
            passed.setdefault(c.env, []).append(f"{c.package}=={c.proposed}")
    sets = [
        _check_set(env, pins, checks, specs[env], lock_dir) for env, pins in sorted(passed.items())
    ]
    return FixPlan(tuple(checks), tuple(sets))


def _check_one(fix: FixProposal, envs: Mapping[str, EnvSpec], lock_dir: Path) -> list[FixCheck]:
    """One proposal in each env whose locks pin it: the spec, then a re-lock with it alone."""
    if not envs:
        note = "lock given by path (--lock): no env spec; audit by ENV name to re-lock"
        return [FixCheck("-", fix.package, fix.version, fix.proposed, "skip", note, "skip", "")]
    found = []
    for env, spec in sorted(envs.items()):
        if fix.proposed is None:
            found.append(
                FixCheck(env, fix.package, fix.version, None, "skip", fix.note, "skip", "")
            )
            continue
        spec_status, spec_note = spec_allows(spec, fix.package, fix.proposed)
        if spec_status == "fail":
            lock_status, lock_note = "skip", "the spec excludes it"
        else:
            pin = f"{fix.package}=={fix.proposed}"
            lock_status, lock_note = relock_with(spec, [pin], lock_dir)
        found.append(
            FixCheck(
                env,
                fix.package,
                fix.version,
                fix.proposed,
                spec_status,
                spec_note,
                lock_status,
                lock_note,
            )
        )
    return found


def _check_set(
    env: str, pins: list[str], checks: Sequence[FixCheck], spec: EnvSpec, lock_dir: Path
) -> SetCheck:
    """The env's passing bumps together; one bump alone was re-locked already."""
    if len(pins) == 1:
        (one,) = [c for c in checks if c.env == env and f"{c.package}=={c.proposed}" in pins]
        status, note = one.lock_status, one.lock_note
    else:
        status, note = relock_with(spec, pins, lock_dir)
    command = (
        f"sdenv lock {env} " + " ".join(f"--upgrade-package {p}" for p in pins)
        if status == "ok"
        else ""
    )
    return SetCheck(env, tuple(pins), status, note, command)


def relock_with(spec: EnvSpec, pins: Sequence[str], lock_dir: Path) -> tuple[str, str]:
    """Re-lock ``spec`` with ``pins`` (``name==version``) as ``--upgrade-package`` bumps, as a dry
    run: the resolve and every compatibility check of ``sdenv lock`` run, the locks stay as they
    are. ("ok", what would change) or ("fail", why) or ("skip", why it could not run)."""
    try:
        from sdenv.lock import LockOptions, lock_env
    except ImportError as exc:  # pragma: no cover - only before the lock engine exists
        return "skip", f"`sdenv lock --upgrade-package` is not available here ({exc})"
    # verify=False: the import proof installs the whole stack per target (GBs); `sdenv lock`
    # runs it when the bump is applied. The resolve and the compat rules are the question here.
    opts = LockOptions(lock_dir=lock_dir, upgrade_packages=tuple(pins), dry_run=True, verify=False)
    try:
        results = lock_env(spec, opts)
    except SdenvError as exc:
        return "fail", f"{spec.name}: {exc}"
    notes: list[str] = []
    status = "ok"
    wanted = dict(p.split("==", 1) for p in pins)
    for res in results:
        if not res.ok:
            status = "fail"
            notes.append(res.message or f"{res.target.slug}: {res.status}")
            continue
        got = {n: res.pins.get(n) for n in wanted}
        off = [
            f"{n} {v} (wanted {wanted[n]})"
            for n, v in got.items()
            if v is None or Version(v).public != Version(wanted[n]).public
        ]
        if off:
            status = "fail"
            notes.append(f"{res.target.slug}: resolved {', '.join(off)}")
            continue
        moved = [f"{n} {a or '-'}->{b or '-'}" for n, a, b in res.changes]
        notes.append(
            f"{res.target.slug}: resolves and passes the compat checks"
            + (f"; changes {', '.join(moved)}" if moved else "")
        )
    return status, "; ".join(notes)
